// Logs never carry a password, session id, cookie, CSRF token, TOTP secret or code: a whole
// session of activity is run and every captured log line is searched for each secret.
import * as otp from 'otplib';
import { startTestServer } from '../helpers/server';

test('no secret of a full login, admin and TOTP session reaches the logs', async () => {
  const t = await startTestServer();
  try {
    const secrets: string[] = [];
    const { client, email, password } = await t.demoLogin('site_admin');
    secrets.push(password, ...t.server.demoAccounts!.map((a) => a.oneTimePassword), client.csrfToken!);
    const created = await client.post('/api/admin/users', { email: 'log.check@demo.local', name: 'Log Check', role: 'clinician' }).expect(201);
    secrets.push(created.body.oneTimePassword);
    const reset = await client.post(`/api/admin/users/${created.body.user.id}/reset-password`).expect(200);
    secrets.push(reset.body.oneTimePassword);
    const enrol = await client.post('/api/auth/totp/enrol').expect(200);
    secrets.push(enrol.body.secret);
    const code = await otp.generate({ secret: enrol.body.secret, epoch: Math.floor(t.clock.now().getTime() / 1000) });
    await client.post('/api/auth/totp/confirm', { code }).expect(200);
    secrets.push(code);
    await t.client().login(email, 'the wrong password logged nowhere').expect(401);
    secrets.push('the wrong password logged nowhere');
    const jar = (client.agent as unknown as { jar: { getCookies(o: object): { name: string; value: string }[] } }).jar;
    for (const c of jar.getCookies({ domain: '127.0.0.1', path: '/', secure: true, script: false })) {
      secrets.push(c.value, decodeURIComponent(c.value));
      const unsigned = decodeURIComponent(c.value).replace(/^s:/, '').split('.')[0]!;
      if (unsigned.length >= 16) secrets.push(unsigned);
    }
    await client.post('/api/auth/logout').expect(204);

    const all = t.logs.join('');
    expect(t.logs.length).toBeGreaterThanOrEqual(10); // the requests were logged at all
    expect(all).toContain('"path":"/api/auth/login"');
    for (const secret of secrets.filter((s) => s && s.length >= 6)) {
      expect(all.includes(secret) ? `log contains ${secret.slice(0, 3)}…` : 'clean').toBe('clean');
    }
    expect(all).not.toMatch(/set-cookie|"cookie"|x-csrf-token/i);
  } finally {
    await t.close();
  }
});
