// TOTP (otplib): enrolment with QR and otpauth URI, login with a code, replay refused, and a
// site policy that requires it before anything else.
import * as otp from 'otplib';
import { startTestServer, type TestServer } from '../helpers/server';

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(() => t.close());

const codeAt = (secret: string, date: Date) => otp.generate({ secret, epoch: Math.floor(date.getTime() / 1000) });

test('enrol, then log in only with a valid, unused code', async () => {
  const { client, email, password } = await t.demoLogin('clinician');
  const enrol = await client.post('/api/auth/totp/enrol').expect(200);
  expect(enrol.body.otpauthUri).toMatch(/^otpauth:\/\/totp\/.+secret=[A-Z2-7]+/);
  expect(enrol.body.qrDataUrl).toMatch(/^data:image\/png;base64,/);
  const secret = enrol.body.secret as string;

  const wrong = await client.post('/api/auth/totp/confirm', { code: '000000' === (await codeAt(secret, t.clock.now())) ? '111111' : '000000' }).expect(401);
  expect(wrong.body.error.code).toBe('INVALID_CREDENTIALS');
  const confirmed = await client.post('/api/auth/totp/confirm', { code: await codeAt(secret, t.clock.now()) }).expect(200);
  expect(confirmed.body.user.totpEnabled).toBe(true);
  await client.post('/api/auth/logout').expect(204);

  t.clock.advance(60_000);
  const c = t.client();
  const noCode = await c.login(email, password).expect(401);
  expect(noCode.body.error.code).toBe('TOTP_REQUIRED');
  const badCode = await c.login(email, password, '123456').expect(401);
  expect(badCode.body.error.code).toBe('INVALID_CREDENTIALS');
  const code = await codeAt(secret, t.clock.now());
  await c.login(email, password, code).expect(200);
  // The same code cannot be used twice (someone watching over a shoulder).
  const replay = await t.client().login(email, password, code).expect(401);
  expect(replay.body.error.code).toBe('INVALID_CREDENTIALS');
  const wrongPasswordRightCode = await t.client().login(email, 'not the password at all', code).expect(401);
  expect(wrongPasswordRightCode.body.error.code).toBe('INVALID_CREDENTIALS');

  const user = await t.server.store.users.findByEmail(email);
  // At rest the secret is sealed (AES-256-GCM), never the plain base32 seed.
  expect(user!.totpSecret).toMatch(/^e1\./);
  expect(user!.totpSecret).not.toContain(secret);
  const chain = await t.server.store.audit.listChain(user!.siteId, 0, 100_000);
  expect(chain.some((r) => r.type === 'auth.mfa.enrol' && r.outcome === 0 && r.actor.userId === user!.id)).toBe(true);
});

test('a site that requires TOTP sends users without it to enrolment first, and then allows 8-character passwords', async () => {
  const admin = await t.demoLogin('site_admin');
  await admin.client.patch('/api/admin/site/policy', { requireTotp: true, minPasswordLength: 8 }).expect(200);
  const { client, password } = await t.demoLogin('pathologist');
  const me = await client.get('/api/me').expect(200);
  expect(me.body.pending).toBe('totp_enrolment');
  const blocked = await client.get('/api/site').expect(403);
  expect(blocked.body.error.code).toBe('TOTP_ENROLMENT_REQUIRED');
  const enrol = await client.post('/api/auth/totp/enrol').expect(200);
  await client.post('/api/auth/totp/confirm', { code: await codeAt(enrol.body.secret, t.clock.now()) }).expect(200);
  await client.get('/api/site').expect(200);
  await client.post('/api/auth/password', { currentPassword: password, newPassword: 'Qv7#pL2x' }).expect(200);
  const tooShort = await client.post('/api/auth/password', { currentPassword: 'Qv7#pL2x', newPassword: 'Qv7#pL2' }).expect(422);
  expect(tooShort.body.error.message).toMatch(/at least 8/);
  // Required TOTP cannot be switched off by the user.
  const disable = await client.post('/api/auth/totp/disable', { password: 'irrelevant' }).expect(403);
  expect(disable.body.error.code).toBe('FORBIDDEN');
  const me2 = await client.get('/api/me').expect(200);
  const current = (await t.server.store.users.findById(me2.body.user.siteId, me2.body.user.id))!;
  expect(current.totpSecret).not.toBeNull();
});
