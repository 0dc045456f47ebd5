// Governance commands as an operator runs them: master-key rotation while a node serves (and
// after its restart), and the retention purge (scheduled logic and the CLI).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { keyId } from '../../src/crypto/keyring';
import { lastPasswords, startTestServer, waitFor, type TestClient, type TestServer } from '../helpers/server';

const ROOT = path.resolve(__dirname, '../..');
const patient = { name: 'Rotation Patient', dateOfBirth: '1950-02-03', medicalRecordNumber: 'ROT-1', sex: 'male' };

function cli(dataDir: string, command: string) {
  return spawnSync(process.execPath, [path.join(ROOT, 'dist/governance/cli.js'), command], {
    env: { ...process.env, DATA_DIR: dataDir, LOG_LEVEL: 'silent' },
    encoding: 'utf8',
  });
}

function keyLines(dataDir: string): string[] {
  return fs
    .readFileSync(path.join(dataDir, 'master.key'), 'utf8')
    .split('\n')
    .filter((l) => l && !l.startsWith('#'));
}

async function uploadAndWait(client: TestClient, caseId: string) {
  const jpeg = await sharp({ create: { width: 700, height: 500, channels: 3, background: '#c8a' } }).jpeg().toBuffer();
  const res = await client.agent
    .post(`/api/cases/${caseId}/materials?name=rot.jpg`)
    .set('X-CSRF-Token', client.csrfToken!)
    .set('Content-Type', 'application/octet-stream')
    .send(jpeg)
    .expect(202);
  const id = res.body.material.id as string;
  await waitFor(async () => (await client.get(`/api/cases/${caseId}/materials/${id}`)).body.material.status === 'ready', 'material ready');
  return id;
}

describe('master key rotation', () => {
  let t: TestServer;
  afterAll(() => t.close());

  test('re-wraps every data key under a new master key while the node serves, and everything reads after a restart', async () => {
    t = await startTestServer();
    const { client } = await t.demoLogin('clinician');
    const c = (await client.post('/api/cases', { title: 'Rotation', patient }).expect(201)).body.case;
    const materialId = await uploadAndWait(client, c.id);
    const oldKeys = keyLines(t.dataDir);
    expect(oldKeys).toHaveLength(1);

    const out = cli(t.dataDir, 'rotate-keys');
    expect(out.stderr).toBe('');
    expect(out.status).toBe(0);
    expect(out.stdout).toMatch(/master key rotated: new key [0-9a-f]{16}; \d+ data keys re-wrapped; 1 old key\(s\) retired/);
    const newKeys = keyLines(t.dataDir);
    expect(newKeys).toHaveLength(1);
    expect(newKeys[0]).not.toBe(oldKeys[0]);
    expect((fs.statSync(path.join(t.dataDir, 'master.key')).mode & 0o777).toString(8)).toBe('600');
    const counts = await t.server.store.dataKeys.countByKek();
    expect(Object.keys(counts)).toEqual([keyId(Buffer.from(newKeys[0]!, 'base64'))]);

    // No downtime: the running node keeps serving, and new cases wrap under the new key.
    expect((await client.get(`/api/cases/${c.id}`).expect(200)).body.case.patient).toEqual(patient);
    const c2 = (await client.post('/api/cases', { title: 'After rotation', patient }).expect(201)).body.case;
    expect((await t.server.store.dataKeys.findByOwner(`case:${c2.id}`))!.kekId).toBe(keyId(Buffer.from(newKeys[0]!, 'base64')));

    // After a restart (cold key cache) everything still opens with only the new key on disk.
    await t.close();
    t = await startTestServer({}, { dataDir: t.dataDir });
    const again = t.client();
    await again.login('clinician@demo.local', lastPasswords.get('clinician@demo.local')!).expect(200);
    expect((await again.get(`/api/cases/${c.id}`).expect(200)).body.case.patient).toEqual(patient);
    expect((await again.get(`/api/cases/${c2.id}`).expect(200)).body.case.patient).toEqual(patient);
    await again.get(`/api/cases/${c.id}/materials/${materialId}/slide_files/0/0_0.jpeg`).expect(200);
    const chain = await t.server.store.audit.listChain('_system', 0, 100_000);
    expect(chain.some((r) => r.type === 'keys.rotate')).toBe(true);
  });
});

describe('retention purge', () => {
  test('deletes cases older than the site period with their files and keys, keeps younger ones, and audits the run', async () => {
    const t = await startTestServer();
    try {
      const admin = (await t.demoLogin('site_admin')).client;
      const siteId = (await admin.get('/api/me')).body.site.id;
      await admin.patch('/api/admin/site/policy', { retentionDays: 2 }).expect(200);
      const old = (await admin.post('/api/cases', { title: 'Old case', patient }).expect(201)).body.case;
      const oldMaterial = await uploadAndWait(admin, old.id);
      t.clock.advance(36 * 3600 * 1000);
      // The session ended meanwhile (idle): a write with its stale cookie is told so.
      const stale = await admin.post('/api/cases', { title: 'Young case' }).expect(401);
      expect(stale.body.error.code).toBe('SESSION_EXPIRED');
      const fresh = t.client();
      await fresh.login('admin@demo.local', lastPasswords.get('admin@demo.local')!).expect(200);
      const young = (await fresh.post('/api/cases', { title: 'Young case' }).expect(201)).body.case;
      t.clock.advance(13 * 3600 * 1000); // old is 49 h old, young 13 h

      const reports = await t.server.app.retention.purgeAll('command');
      const mine = reports.find((r) => r.siteId === siteId)!;
      expect(mine.cases).toBeGreaterThanOrEqual(2); // the old case and the demo case
      expect(mine.materials).toBeGreaterThanOrEqual(1);
      const later = t.client();
      await later.login('admin@demo.local', lastPasswords.get('admin@demo.local')!).expect(200);
      await later.get(`/api/cases/${old.id}`).expect(404);
      await later.get(`/api/cases/${young.id}`).expect(200);
      expect(fs.existsSync(path.join(t.dataDir, 'materials', oldMaterial))).toBe(false);
      expect(await t.server.store.dataKeys.findByOwner(`case:${old.id}`)).toBeNull();
      const purge = (await t.server.store.audit.listChain(siteId, 0, 1_000_000)).filter((r) => r.type === 'retention.purge');
      expect(purge).toHaveLength(1);
      expect(purge[0]!.objects.map((o) => o.id)).toContain(old.id);
      expect(purge[0]!.details).toMatchObject({ retentionDays: 2 });
      // The audit trail of the purged case is kept.
      expect((await t.server.store.audit.listChain(siteId, 0, 1_000_000)).some((r) => r.type === 'case.create' && r.objects.some((o) => o.id === old.id))).toBe(true);
    } finally {
      await t.close();
    }
  });

  test('the CLI purges now and reports per site', async () => {
    const t = await startTestServer();
    const dataDir = t.dataDir;
    await t.close();
    const res = cli(dataDir, 'purge');
    expect(res.status).toBe(0);
    expect(res.stdout).toMatch(/site \S+: 0 case\(s\), 0 material\(s\) purged \(created before /);
  });

  test('the retention period cannot be set below one day', async () => {
    const t = await startTestServer();
    try {
      const admin = (await t.demoLogin('site_admin')).client;
      const res = await admin.patch('/api/admin/site/policy', { retentionDays: 0 }).expect(400);
      expect(res.body.error.code).toBe('VALIDATION_FAILED');
    } finally {
      await t.close();
    }
  });
});
