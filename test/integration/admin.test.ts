// Site administration: users, roles, the six permissions, password reset, session revocation,
// Stop Access; each change audited; bad input refused with a typed error and nothing changed.
import { startTestServer, type TestClient, type TestServer } from '../helpers/server';

let t: TestServer;
let admin: TestClient;
let siteId: string;
beforeAll(async () => {
  t = await startTestServer();
  admin = (await t.demoLogin('site_admin')).client;
  siteId = (await admin.get('/api/me').expect(200)).body.site.id;
});
afterAll(() => t.close());

async function createAndActivate(email: string, role = 'clinician', permissions?: object) {
  const created = await admin.post('/api/admin/users', { email, name: email.split('@')[0], role, ...(permissions ? { permissions } : {}) }).expect(201);
  const user = t.client();
  const password = `a fine long passphrase for ${Math.random().toString(36).slice(2)}`;
  await user.login(email, created.body.oneTimePassword).expect(200);
  await user.post('/api/auth/password', { currentPassword: created.body.oneTimePassword, newPassword: password }).expect(200);
  return { id: created.body.user.id as string, client: user, password, oneTimePassword: created.body.oneTimePassword as string };
}

async function auditTypes(objectId: string): Promise<string[]> {
  const chain = await t.server.store.audit.listChain(siteId, 0, 100_000);
  return chain.filter((r) => r.objects.some((o) => o.id === objectId)).map((r) => r.type);
}

test('a site admin creates a user with a role and permissions; the one-time password works once and must be changed', async () => {
  const res = await admin
    .post('/api/admin/users', { email: 'New.Pathologist@Demo.Local', name: 'New Pathologist', role: 'pathologist', permissions: { canDownload: true } })
    .expect(201);
  expect(res.headers['cache-control']).toBe('no-store');
  expect(res.body.user).toMatchObject({
    email: 'new.pathologist@demo.local',
    role: 'pathologist',
    mustChangePassword: true,
    permissions: { stopAccess: false, canUpload: true, canDownload: true, canDelete: false, transferStudy: false, viewPatientInfo: false },
  });
  expect(res.body.oneTimePassword).toMatch(/^[A-Za-z0-9_-]{20}$/);
  const list = await admin.get('/api/admin/users').expect(200);
  expect(list.body.users.map((u: { email: string }) => u.email)).toContain('new.pathologist@demo.local');
  expect(JSON.stringify(list.body)).not.toMatch(/passwordHash|totpSecret|argon2/);
  expect(await auditTypes(res.body.user.id)).toContain('user.create');
});

test('role and permission changes apply on the next request and each one is audited', async () => {
  const u = await createAndActivate('perm.change@demo.local');
  await u.client.get('/api/admin/users').expect(403);
  const patched = await admin
    .patch(`/api/admin/users/${u.id}`, { role: 'site_admin', permissions: { canDelete: true, viewPatientInfo: false } })
    .expect(200);
  expect(patched.body.user.role).toBe('site_admin');
  expect(patched.body.user.permissions).toMatchObject({ canDelete: true, viewPatientInfo: false });
  await u.client.get('/api/admin/users').expect(200);
  const types = await auditTypes(u.id);
  expect(types.filter((x) => x === 'user.role.change')).toHaveLength(1);
  expect(types.filter((x) => x === 'user.permission.change')).toHaveLength(2);
});

test('a site admin unlocks a locked account: the same password works again at once; only admins may', async () => {
  const u = await createAndActivate('unlock.me@demo.local');
  for (let i = 0; i < 5; i++) await t.client().login('unlock.me@demo.local', 'not the password at all').expect(401);
  expect((await admin.get(`/api/admin/users/${u.id}`).expect(200)).body.user.lockedUntil).not.toBeNull();
  await t.client().login('unlock.me@demo.local', u.password).expect(401);
  await u.client.post(`/api/admin/users/${u.id}/unlock`).expect(403);
  const unlocked = await admin.post(`/api/admin/users/${u.id}/unlock`).expect(200);
  expect(unlocked.body.user.lockedUntil).toBeNull();
  await t.client().login('unlock.me@demo.local', u.password).expect(200);
  const chain = await t.server.store.audit.listChain(siteId, 0, 100_000);
  expect(chain.find((r) => r.type === 'auth.unlock' && r.objects.some((o) => o.id === u.id))).toMatchObject({ action: 'U', details: { wasLocked: true } });
  await admin.post('/api/admin/users/NoSuchUserNoSuchUser00/unlock').expect(404);
});

test('Stop Access takes effect on the very next request and blocks login', async () => {
  const u = await createAndActivate('stop.me@demo.local');
  await u.client.get('/api/me').expect(200);
  await admin.patch(`/api/admin/users/${u.id}`, { permissions: { stopAccess: true } }).expect(200);
  const next = await u.client.get('/api/me');
  expect(next.status).toBe(401); // its sessions were revoked with the change
  const login = await t.client().login('stop.me@demo.local', u.password).expect(403);
  expect(login.body.error.code).toBe('ACCESS_STOPPED');
  await admin.patch(`/api/admin/users/${u.id}`, { permissions: { stopAccess: false } }).expect(200);
  await t.client().login('stop.me@demo.local', u.password).expect(200);
});

test('Stop Access applies even to a session the revocation did not reach (checked on every request)', async () => {
  const u = await createAndActivate('stop.direct@demo.local');
  // Change the stored permission behind the service's back, as another node's write would.
  await t.server.store.users.update(siteId, u.id, {
    permissions: { stopAccess: true, canUpload: true, canDownload: false, canDelete: false, transferStudy: false, viewPatientInfo: true },
    updatedAt: new Date().toISOString(),
    updatedBy: null,
  });
  const res = await u.client.get('/api/me').expect(403);
  expect(res.body.error.code).toBe('ACCESS_STOPPED');
});

test('a password reset issues a new one-time password, ends the user\'s sessions and forces a change', async () => {
  const u = await createAndActivate('reset.me@demo.local');
  const reset = await admin.post(`/api/admin/users/${u.id}/reset-password`).expect(200);
  expect(reset.body.user.mustChangePassword).toBe(true);
  await u.client.get('/api/me').expect(401);
  await t.client().login('reset.me@demo.local', u.password).expect(401);
  const fresh = t.client();
  const login = await fresh.login('reset.me@demo.local', reset.body.oneTimePassword).expect(200);
  expect(login.body.pending).toBe('password_change');
  expect(await auditTypes(u.id)).toContain('auth.password.reset');
});

test('revoking sessions logs the user out everywhere', async () => {
  const u = await createAndActivate('revoke.me@demo.local');
  const second = t.client();
  await second.login('revoke.me@demo.local', u.password).expect(200);
  const res = await admin.post(`/api/admin/users/${u.id}/revoke-sessions`).expect(200);
  expect(res.body.revoked).toBe(2);
  await u.client.get('/api/me').expect(401);
  await second.get('/api/me').expect(401);
  expect(await auditTypes(u.id)).toContain('auth.session.revoke');
});

test('a clinician cannot administer users', async () => {
  const u = await createAndActivate('not.admin@demo.local');
  const res = await u.client.post('/api/admin/users', { email: 'evil@demo.local', name: 'Evil', role: 'site_admin' }).expect(403);
  expect(res.body.error.code).toBe('FORBIDDEN');
  await u.client.patch(`/api/admin/users/${u.id}`, { role: 'site_admin' }).expect(403);
  await u.client.patch('/api/admin/site/policy', { requireTotp: false }).expect(403);
  expect(await t.server.store.users.findByEmail('evil@demo.local')).toBeNull();
});

test('an admin cannot demote or stop themself', async () => {
  const me = (await admin.get('/api/me').expect(200)).body.user;
  const res = await admin.patch(`/api/admin/users/${me.id}`, { permissions: { stopAccess: true } }).expect(409);
  expect(res.body.error.code).toBe('CONFLICT');
  await admin.get('/api/me').expect(200);
});

describe('bad input gets a clear typed error and changes nothing', () => {
  test.each([
    ['unknown key', { email: 'a1@demo.local', name: 'A', role: 'clinician', isAdmin: true }, /unknown field/],
    ['bad role', { email: 'a2@demo.local', name: 'A', role: 'superuser' }, /role/],
    ['bad e-mail', { email: 'not-an-email', name: 'A', role: 'clinician' }, /email/],
    ['unknown permission', { email: 'a3@demo.local', name: 'A', role: 'clinician', permissions: { root: true } }, /unknown field/],
    ['wrong type', { email: 'a4@demo.local', name: 42, role: 'clinician' }, /name/],
  ])('%s', async (_label, body, detail) => {
    const before = (await admin.get('/api/admin/users').expect(200)).body.users.length;
    const res = await admin.post('/api/admin/users', body).expect(400);
    expect(res.body.error.code).toBe('VALIDATION_FAILED');
    expect(JSON.stringify(res.body.error.details)).toMatch(detail);
    expect(JSON.stringify(res.body)).not.toMatch(/at .*\.ts|stack/i);
    expect((await admin.get('/api/admin/users').expect(200)).body.users.length).toBe(before);
  });

  test('malformed JSON, non-JSON bodies, oversize bodies, bad ids, unknown query keys and unknown routes', async () => {
    const token = admin.csrfToken!;
    const malformed = await admin.agent.post('/api/admin/users').set('X-CSRF-Token', token).set('Content-Type', 'application/json').send('{"email": ');
    expect(malformed.status).toBe(400);
    expect(malformed.body.error.code).toBe('VALIDATION_FAILED');
    const form = await admin.agent.post('/api/admin/users').set('X-CSRF-Token', token).type('form').send('email=a@b.c');
    expect(form.status).toBe(415);
    expect(form.body.error.code).toBe('UNSUPPORTED_MEDIA_TYPE');
    const huge = await admin.agent.post('/api/admin/users').set('X-CSRF-Token', token).send({ email: 'x@demo.local', name: 'x'.repeat(100_000), role: 'clinician' });
    expect(huge.status).toBe(413);
    expect(huge.body.error.code).toBe('PAYLOAD_TOO_LARGE');
    const badId = await admin.get('/api/admin/users/..%2F..%2Fetc').expect(400);
    expect(badId.body.error.code).toBe('VALIDATION_FAILED');
    const missing = await admin.get('/api/admin/users/AAAAAAAAAAAAAAAAAAAAAA').expect(404);
    expect(missing.body.error.code).toBe('NOT_FOUND');
    const query = await admin.get('/api/admin/users?role=clinician').expect(400);
    expect(query.body.error.code).toBe('VALIDATION_FAILED');
    const nothing = await admin.get('/api/no/such/route').expect(404);
    expect(nothing.body).toEqual({ error: { code: 'NOT_FOUND', message: 'Not found.' } });
  });

  test('a duplicate e-mail is a conflict', async () => {
    const res = await admin.post('/api/admin/users', { email: 'clinician@demo.local', name: 'Dup', role: 'clinician' }).expect(409);
    expect(res.body.error.code).toBe('CONFLICT');
  });

  test('site policy: 8-character minimum only together with required TOTP', async () => {
    const refused = await admin.patch('/api/admin/site/policy', { minPasswordLength: 8 }).expect(400);
    expect(refused.body.error.code).toBe('VALIDATION_FAILED');
    await admin.patch('/api/admin/site/policy', { minPasswordLength: 7, requireTotp: true }).expect(400);
    const site = await admin.get('/api/site').expect(200);
    expect(site.body.policy.minPasswordLength).toBe(12);
  });
});
