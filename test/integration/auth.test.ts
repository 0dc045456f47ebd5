// Login, sessions and their timeouts, CSRF, lockout and rate limits, against a real HTTPS node.
import { startTestServer, type TestServer } from '../helpers/server';

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});
afterAll(() => t.close());

function cookieOf(res: { headers: Record<string, unknown> }, name: string): string | undefined {
  const raw = (res.headers['set-cookie'] as string[] | undefined) ?? [];
  return raw.find((c) => c.startsWith(`${name}=`));
}

describe('login and the session cookie', () => {
  test('a demo user logs in, must change the one-time password first, then reaches /api/me and logs out', async () => {
    const account = t.server.demoAccounts!.find((a) => a.role === 'clinician')!;
    const c = t.client();
    const login = await c.login(account.email, account.oneTimePassword).expect(200);
    expect(login.body.pending).toBe('password_change');
    expect(login.body.user).toMatchObject({ email: account.email, role: 'clinician', mustChangePassword: true });
    expect(login.body.user).not.toHaveProperty('passwordHash');

    const cookie = cookieOf(login, '__Host-sid')!;
    expect(cookie).toMatch(/; Path=\//);
    expect(cookie).toMatch(/; HttpOnly/);
    expect(cookie).toMatch(/; Secure/);
    expect(cookie).toMatch(/; SameSite=Lax/);
    expect(cookie).not.toMatch(/Domain=/);
    // Opaque: the id is >= 128 random bits and says nothing about the user.
    const sid = decodeURIComponent(cookie.split(';')[0]!.split('=')[1]!).replace(/^s:/, '').split('.')[0]!;
    expect(sid.length).toBeGreaterThanOrEqual(22);
    expect(cookie).not.toContain(account.email.split('@')[0]);

    // Anything but the password change is refused until it is done.
    const blocked = await c.get('/api/site').expect(403);
    expect(blocked.body.error.code).toBe('PASSWORD_CHANGE_REQUIRED');

    const weak = await c.post('/api/auth/password', { currentPassword: account.oneTimePassword, newPassword: 'password1234' }).expect(422);
    expect(weak.body.error.code).toBe('PASSWORD_POLICY');
    const short = await c.post('/api/auth/password', { currentPassword: account.oneTimePassword, newPassword: 'Sh0rt!pw' }).expect(422);
    expect(short.body.error.message).toMatch(/at least 12/);

    const newPassword = 'a long passphrase about slides and stains';
    await c.post('/api/auth/password', { currentPassword: account.oneTimePassword, newPassword }).expect(200);
    account.oneTimePassword = newPassword;
    const me = await c.get('/api/me').expect(200);
    expect(me.body.pending).toBeNull();
    expect(me.body.session.idleTimeoutSeconds).toBe(30 * 60);
    await c.get('/api/site').expect(200);

    await c.post('/api/auth/logout').expect(204);
    const after = await c.get('/api/me').expect(401);
    expect(after.body.error.code).toBe('UNAUTHENTICATED');
  });

  test('login issues a new session id (no fixation) and a logged-out cookie is dead even if replayed', async () => {
    const { client, email, password } = await t.demoLogin('pathologist');
    const before = await client.get('/api/me').expect(200);
    expect(before.body.user.email).toBe(email);
    const stolenCookie = (client.agent as unknown as { jar: { getCookie(n: string, o: object): { value: string } } }).jar.getCookie('__Host-sid', {
      domain: '127.0.0.1',
      path: '/',
      secure: true,
      script: false,
    }).value;

    const again = await client.login(email, password).expect(200);
    const newCookie = cookieOf(again, '__Host-sid')!;
    expect(newCookie.split(';')[0]).not.toBe(`__Host-sid=${stolenCookie}`);

    await client.post('/api/auth/logout').expect(204);
    const replay = await t.client().get('/api/me').set('Cookie', `__Host-sid=${stolenCookie}`).expect(401);
    expect(replay.body.error.code).toBe('UNAUTHENTICATED');
  });

  test('state-changing requests without the CSRF token are refused and change nothing', async () => {
    const { client, password } = await t.demoLogin('site_admin');
    const res = await client.agent.post('/api/admin/users').send({ email: 'x@demo.local', name: 'X', role: 'clinician' }).expect(403);
    expect(res.body.error.code).toBe('CSRF_INVALID');
    const forged = await client.agent
      .post('/api/admin/users')
      .set('X-CSRF-Token', 'forged-token')
      .send({ email: 'x@demo.local', name: 'X', role: 'clinician' })
      .expect(403);
    expect(forged.body.error.code).toBe('CSRF_INVALID');
    const list = await client.get('/api/admin/users').expect(200);
    expect(list.body.users.map((u: { email: string }) => u.email)).not.toContain('x@demo.local');
    expect(password).toBeTruthy();
  });
});

describe('generic errors, equal work, lockout', () => {
  test('unknown e-mail and wrong password get the same answer, and both pay for an argon2 verification', async () => {
    const c = t.client();
    const timed = async (email: string) => {
      const start = process.hrtime.bigint();
      const res = await c.login(email, 'definitely-not-the-password').expect(401);
      return { ms: Number(process.hrtime.bigint() - start) / 1e6, body: res.body };
    };
    await timed('admin@demo.local'); // warm both paths
    await timed('nobody@demo.local');
    const known: number[] = [];
    const unknown: number[] = [];
    for (let i = 0; i < 5; i++) {
      const a = await timed('clinician@demo.local');
      const b = await timed('nobody@demo.local');
      expect(b.body).toEqual(a.body);
      expect(a.body.error.code).toBe('INVALID_CREDENTIALS');
      known.push(a.ms);
      unknown.push(b.ms);
    }
    const median = (xs: number[]) => xs.sort((x, y) => x - y)[2]!;
    // argon2id (m=19 MiB, t=2) costs tens of ms; a skipped hash would be ~1 ms (a ratio near
    // 0.03). Same order of cost, with room for a busy machine:
    expect(median(unknown)).toBeGreaterThan(median(known) * 0.3);
  });

  test('five failures lock the account for 15 minutes; the right password is refused while locked; then it works', async () => {
    const admin = await t.demoLogin('site_admin');
    const created = await admin.client.post('/api/admin/users', { email: 'lock.me@demo.local', name: 'Lock Me', role: 'clinician' }).expect(201);
    const otp = created.body.oneTimePassword as string;
    const c = t.client();
    for (let i = 0; i < 5; i++) {
      const res = await c.login('lock.me@demo.local', `wrong-${i}`).expect(401);
      expect(res.body.error.code).toBe('INVALID_CREDENTIALS');
    }
    const locked = await c.login('lock.me@demo.local', otp).expect(401);
    expect(locked.body.error.code).toBe('INVALID_CREDENTIALS');
    const view = await admin.client.get(`/api/admin/users/${created.body.user.id}`).expect(200);
    expect(view.body.user.lockedUntil).not.toBeNull();

    const chain = await t.server.store.audit.listChain(created.body.user.siteId, 0, 10_000);
    const lockouts = chain.filter((r) => r.type === 'auth.lockout' && r.objects.some((o) => o.id === created.body.user.id));
    expect(lockouts).toHaveLength(1);
    // The site's admins see it in-app, with who and from where.
    const alerts = await admin.client.get('/api/admin/alerts?days=1').expect(200);
    expect(alerts.body.lockouts[0]).toMatchObject({ userId: created.body.user.id, email: 'lock.me@demo.local', ip: expect.stringMatching(/127\.0\.0\.1/) });
    expect(alerts.body.failedLogins).toBeGreaterThanOrEqual(5);

    t.clock.advance(15 * 60_000 + 1000);
    await c.login('lock.me@demo.local', otp).expect(200);
  });

  test('login attempts are rate-limited per IP with a typed 429 and Retry-After', async () => {
    const small = await startTestServer({}, { rateLimits: { loginPerIpPerMinute: 3 } });
    try {
      const c = small.client();
      for (let i = 0; i < 3; i++) await c.login(`n${i}@demo.local`, 'whatever-password').expect(401);
      const res = await c.login('n4@demo.local', 'whatever-password').expect(429);
      expect(res.body.error.code).toBe('RATE_LIMITED');
      expect(Number(res.headers['retry-after'])).toBeGreaterThan(0);
    } finally {
      await small.close();
    }
  });
});

describe('session timeouts are enforced by the server', () => {
  test('30 minutes idle ends the session (audited); activity keeps it alive', async () => {
    const { client, email } = await t.demoLogin('clinician');
    t.clock.advance(20 * 60_000);
    await client.get('/api/me').expect(200);
    t.clock.advance(20 * 60_000);
    await client.get('/api/me').expect(200);
    t.clock.advance(30 * 60_000 + 1);
    const res = await client.get('/api/me').expect(401);
    expect(res.body.error.code).toBe('SESSION_EXPIRED');
    await client.get('/api/me').expect(401);
    const users = await t.server.store.users.findByEmail(email);
    const chain = await t.server.store.audit.listChain(users!.siteId, 0, 10_000);
    expect(chain.some((r) => r.type === 'auth.session.expire' && r.details.reason === 'idle' && r.actor.userId === users!.id)).toBe(true);
  });

  test('12 hours after login the session ends even when active', async () => {
    const admin = await t.demoLogin('site_admin');
    await admin.client.patch('/api/admin/site/policy', { idleTimeoutMinutes: 720 }).expect(200);
    try {
      const { client } = await t.demoLogin('pathologist');
      for (let h = 0; h < 11; h++) {
        t.clock.advance(60 * 60_000);
        await client.get('/api/me').expect(200);
      }
      t.clock.advance(60 * 60_000);
      const res = await client.get('/api/me').expect(401);
      expect(res.body.error.code).toBe('SESSION_EXPIRED');
    } finally {
      const again = await t.demoLogin('site_admin');
      await again.client.patch('/api/admin/site/policy', { idleTimeoutMinutes: 30 }).expect(200);
    }
  });
});
