// The audit trail: ATNA-shaped records for authentication and administration, hash-chained per
// site; `npm run audit:verify` names the first broken record after tampering.
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import Database from 'better-sqlite3';
import { SQLITE_FILE } from '../../src/store';
import { startTestServer, type TestServer } from '../helpers/server';

const ROOT = path.resolve(__dirname, '../..');
let t: TestServer;
beforeAll(async () => {
  t = await startTestServer();
});

function verifyCli(dataDir: string) {
  return spawnSync(process.execPath, [path.join(ROOT, 'dist/audit/cli.js'), 'verify'], {
    env: { ...process.env, DATA_DIR: dataDir },
    encoding: 'utf8',
  });
}

test('login, logout and failures are recorded with actor, IP, user agent, outcome and object', async () => {
  const { client, email } = await t.demoLogin('clinician');
  await client.agent.post('/api/auth/logout').set('X-CSRF-Token', client.csrfToken!).set('User-Agent', 'AuditTest/1.0').expect(204);
  await t.client().login(email, 'a wrong password for the audit').expect(401);
  await t.client().login('ghost@nowhere.example', 'whatever it is').expect(401);
  const user = (await t.server.store.users.findByEmail(email))!;
  const chain = await t.server.store.audit.listChain(user.siteId, 0, 100_000);
  const mine = chain.filter((r) => r.actor.userId === user.id);
  const login = mine.find((r) => r.type === 'auth.login' && r.outcome === 0)!;
  expect(login).toMatchObject({ action: 'E', siteId: user.siteId, objects: [{ type: 'user', id: user.id }] });
  expect(login.actor).toMatchObject({ userId: user.id, role: 'clinician' });
  expect(login.actor.ip).toMatch(/127\.0\.0\.1/);
  expect(new Date(login.time).toISOString()).toBe(login.time);
  expect(mine.find((r) => r.type === 'auth.logout')!.actor.userAgent).toBe('AuditTest/1.0');
  expect(mine.some((r) => r.type === 'auth.login' && r.outcome === 4 && r.details.reason === 'wrong_password')).toBe(true);
  expect(mine.some((r) => r.type === 'auth.password.change')).toBe(true);
  const system = await t.server.store.audit.listChain('_system', 0, 100_000);
  expect(system.some((r) => r.type === 'auth.login' && r.details.reason === 'unknown_account')).toBe(true);
  // Records never carry secrets.
  expect(JSON.stringify(chain)).not.toMatch(/a wrong password|argon2|whatever it is/);
});

test('verify passes on an intact trail, then names the first tampered record', async () => {
  await t.close();
  const ok = verifyCli(t.dataDir);
  expect(ok.stderr).toBe('');
  expect(ok.status).toBe(0);
  expect(ok.stdout).toMatch(/^ok\s+chain \S+: \d+ records intact$/m);

  const db = new Database(path.join(t.dataDir, SQLITE_FILE));
  // The store refuses edits; an attacker with the file drops the guard first.
  expect(() => db.prepare("UPDATE audit_events SET outcome = 0 WHERE seq = 2").run()).toThrow(/append-only/);
  const victim = db.prepare("SELECT id, site_id FROM audit_events WHERE site_id != '_system' AND seq = 3").get() as { id: string; site_id: string };
  db.exec('DROP TRIGGER audit_no_update');
  db.prepare("UPDATE audit_events SET details = '{\"reason\":\"edited\"}' WHERE id = ?").run(victim.id);
  db.close();

  const broken = verifyCli(t.dataDir);
  expect(broken.status).toBe(1);
  expect(broken.stdout).toContain(`BROKEN  chain ${victim.site_id}: first broken record ${victim.id} (seq 3, hash mismatch)`);
});
