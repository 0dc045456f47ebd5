// Backups: `npm run backup` takes an encrypted online backup of a running node's store and
// materials; `npm run restore` puts it into a fresh data directory; a real server started there
// serves every case, material tile, annotation, chat message and audit record of the moment of
// the backup, and the audit chains still verify. The keep policy holds 7 daily and 5 weekly.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { KeyRing } from '../../src/crypto/keyring';
import { backupsToKeep, listBackups, pruneBackups, readManifest, restoreBackup } from '../../src/governance/backup';
import { runBackup } from '../../src/governance/backupSchedule';
import { SQLITE_FILE } from '../../src/store';
import type { SqliteStore } from '../../src/store/sqlite';
import { call, connect, lastPasswords, startTestServer, waitFor, type TestClient, type TestServer } from '../helpers/server';

const ROOT = path.resolve(__dirname, '../..');
let a: TestServer;
let backupDir: string;
let clinician: TestClient;
let clinicianEmail: string;
let adminEmail: string;
let caseId: string;
let materialId: string;

function cli(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(ROOT, 'dist/governance/backupCli.js'), ...args], { env: { ...process.env, ...env, LOG_LEVEL: 'silent' } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}

beforeAll(async () => {
  a = await startTestServer();
  backupDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cc-backups-'));
  const admin = await a.demoLogin('site_admin');
  adminEmail = admin.email;
  const c = await a.demoLogin('clinician');
  clinician = c.client;
  clinicianEmail = c.email;
  caseId = (await clinician.post('/api/cases', { title: 'Backed-up case', patient: { name: 'Ann Example', dateOfBirth: '1960-02-03', medicalRecordNumber: 'MRN-BK-1', sex: 'female' } }).expect(201)).body.case.id;
  const png = await sharp({ create: { width: 300, height: 200, channels: 3, background: '#8040c0' } }).png().toBuffer();
  materialId = (await clinician.agent.post(`/api/cases/${caseId}/materials?name=slide.png`).set('X-CSRF-Token', clinician.csrfToken!).set('Content-Type', 'application/octet-stream').send(png).expect(202)).body.material.id;
  await waitFor(async () => (await clinician.get(`/api/cases/${caseId}/materials/${materialId}`).expect(200)).body.material.status === 'ready', 'material converted', 60_000);
  const s = await connect(a.socket(clinician));
  try {
    await call(s, 'room:join', { caseId });
    const made = await call(s, 'annotation:create', { caseId, materialId, clientId: 'backup-annotation-1', kind: 'point', geometry: { type: 'Point', coordinates: [10, 20] }, properties: { label: 'Mitosis', color: '#00ff00', text: 'backed up' } });
    expect(made.ok).toBe(true);
    expect((await call(s, 'chat:send', { caseId, text: 'Saved in the backup.', clientId: 'backup-chat-1' })).ok).toBe(true);
  } finally {
    s.disconnect();
  }
});
afterAll(() => a.close());

test('npm run backup (online, while the node serves) and npm run restore into a fresh directory: a real server there has everything, chains verify', async () => {
  const env = { DATA_DIR: a.dataDir, BACKUP_DIR: backupDir };
  const taken = await cli(['backup'], env);
  expect(taken.stderr).toBe('');
  expect(taken.code).toBe(0);
  expect(taken.stdout).toMatch(/^ok {6}audit chain /m);
  const [backup] = listBackups(backupDir);
  const manifest = readManifest(backup!.dir);
  // Encrypted: the patient's name and the chat text are nowhere in the backup in clear.
  const dbBytes = fs.readFileSync(path.join(backup!.dir, manifest.db.file));
  for (const clear of ['Ann Example', 'MRN-BK-1', 'Backed-up case', 'SQLite format 3']) expect(dbBytes.includes(Buffer.from(clear))).toBe(false);
  expect(manifest.materials.files).toBeGreaterThan(1);

  // What the store held at the backup: every audit record up to the heads in the manifest.
  const siteChain = manifest.auditChains.find((h) => h.siteId !== '_system')!;
  const atBackup = await a.server.store.audit.listChain(siteChain.siteId, 0, siteChain.seq);
  // Written after the backup: not in it (a backup is a point in time).
  const after = (await clinician.post('/api/cases', { title: 'After the backup' }).expect(201)).body.case.id;

  const fresh = fs.mkdtempSync(path.join(os.tmpdir(), 'cc-restored-'));
  const noKey = await cli(['restore', backup!.dir, fresh], {});
  expect(noKey.code).toBe(1);
  expect(noKey.stderr).toMatch(/no master key file/);
  expect(fs.existsSync(path.join(fresh, SQLITE_FILE))).toBe(false);
  fs.copyFileSync(path.join(a.dataDir, 'master.key'), path.join(fresh, 'master.key'));
  const restored = await cli(['restore', backup!.dir, fresh], {});
  expect(restored.stderr).toBe('');
  expect(restored.code).toBe(0);
  expect(restored.stdout).toContain('database integrity: ok');
  // Restoring over an existing store is refused.
  expect((await cli(['restore', backup!.dir, fresh], {})).stderr).toMatch(/exists: restore into an empty data directory/);

  const b = await startTestServer({}, { dataDir: fresh });
  try {
    const c = b.client();
    await c.login(clinicianEmail, lastPasswords.get(clinicianEmail)!).expect(200);
    const cases = (await c.get('/api/cases?limit=200').expect(200)).body.cases.map((x: { id: string }) => x.id);
    expect(cases).toContain(caseId);
    expect(cases).not.toContain(after);
    const detail = (await c.get(`/api/cases/${caseId}`).expect(200)).body;
    expect(detail.case.patient).toMatchObject({ name: 'Ann Example', medicalRecordNumber: 'MRN-BK-1' });
    expect(detail.materials[0]).toMatchObject({ id: materialId, status: 'ready' });
    const tile = await c.get(`/api/cases/${caseId}/materials/${materialId}/slide_files/0/0_0.jpeg`).buffer(true).expect(200);
    expect((await sharp(tile.body as Buffer).metadata()).format).toBe('jpeg');
    const geo = JSON.parse((await c.get(`/api/cases/${caseId}/materials/${materialId}/annotations.geojson`).buffer(true).expect(200)).text);
    expect(geo.features.map((f: { properties: { name: string; text: string } }) => [f.properties.name, f.properties.text])).toEqual([['Mitosis', 'backed up']]);
    expect((await b.server.store.chat.listAfter(detail.case.siteId, caseId, 0, 100)).length).toBe(1);
    // Every audit record of the backup's moment is there, unchanged; the chains verify.
    const restoredChain = await b.server.store.audit.listChain(siteChain.siteId, 0, siteChain.seq);
    expect(restoredChain.map((r) => r.hash)).toEqual(atBackup.map((r) => r.hash));
    const adminClient = b.client();
    await adminClient.login(adminEmail, lastPasswords.get(adminEmail)!).expect(200);
    const verified = await adminClient.post('/api/admin/audit/verify').expect(200);
    expect(verified.body).toMatchObject({ intact: true, firstBreak: null });
    expect(verified.body.records).toBeGreaterThanOrEqual(atBackup.length);
  } finally {
    await b.close();
  }
});

test('a backup altered on disk, or opened without its master key, is refused and restores nothing', async () => {
  const keyring = KeyRing.open(path.join(a.dataDir, 'master.key'));
  const run = await runBackup({ db: (a.server.store as SqliteStore).db, dataDir: a.dataDir, backupDir, keyring, keep: { daily: 7, weekly: 5 }, audit: a.server.app.audit, trigger: 'command' });
  expect(run.sound).toBe(true);
  const dbFile = path.join(run.dir, run.manifest.db.file);
  const bytes = fs.readFileSync(dbFile);
  bytes[Math.floor(bytes.length / 2)] ^= 0x01;
  fs.writeFileSync(dbFile, bytes);
  const target = fs.mkdtempSync(path.join(os.tmpdir(), 'cc-restored-'));
  await expect(restoreBackup(run.dir, target, keyring)).rejects.toThrow();
  expect(fs.existsSync(path.join(target, SQLITE_FILE))).toBe(false);
  const otherKey = path.join(target, 'other.key');
  fs.writeFileSync(otherKey, `${Buffer.alloc(32, 7).toString('base64')}\n`, { mode: 0o600 });
  const good = await runBackup({ db: (a.server.store as SqliteStore).db, dataDir: a.dataDir, backupDir, keyring, keep: { daily: 7, weekly: 5 }, audit: a.server.app.audit, trigger: 'command' });
  await expect(restoreBackup(good.dir, target, KeyRing.open(otherKey))).rejects.toThrow(/master key .* is needed/);
  // Unchanged material files are shared with the previous backup (hard links), not copied again.
  expect(good.manifest.materials.files).toBeGreaterThan(1);
  expect(good.manifest.materials.linked).toBe(good.manifest.materials.files);
  // The older backup of the same day was pruned; the shared files stay whole in this one.
  expect(fs.existsSync(run.dir)).toBe(false);
  expect(fs.statSync(path.join(good.dir, 'materials', materialId, 'original.enc')).size).toBeGreaterThan(0);
  expect(fs.existsSync(path.join(target, SQLITE_FILE))).toBe(false);
  // Each run is on the system audit chain, with its outcome.
  const system = await a.server.store.audit.listChain('_system', 0, 100_000);
  expect(system.filter((r) => r.type === 'backup.create' && r.outcome === 0).length).toBeGreaterThanOrEqual(3);
});

test('the keep policy retains the newest backup of each of the last 7 days and 5 ISO weeks', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cc-keep-'));
  const keyring = KeyRing.open(path.join(a.dataDir, 'master.key'));
  // 45 days of daily backups at 14:00 UTC ending on Wednesday 2026-11-18 (ISO W47), and an
  // earlier one that last day (02:00), which the newer one of the same day replaces.
  const end = Date.UTC(2026, 10, 18, 14);
  const times = Array.from({ length: 45 }, (_, i) => end - (44 - i) * 24 * 3600_000);
  times.splice(44, 0, end - 12 * 3600_000);
  const runs: string[] = [];
  for (const at of times) {
    const r = await runBackup({ db: (a.server.store as SqliteStore).db, dataDir: a.dataDir, backupDir: dir, keyring, keep: { daily: 7, weekly: 5 }, audit: a.server.app.audit, trigger: 'schedule', now: new Date(at) });
    runs.push(r.manifest.createdAt);
  }
  const kept = listBackups(dir).map((b) => b.createdAt.toISOString()).sort();
  expect(kept).toEqual([
    // weekly: the newest of each of the last 5 ISO weeks; W47's (this week) and W46's (Sunday
    // the 15th) are also daily ones
    '2026-10-25T14:00:00.000Z', // W43, Sunday
    '2026-11-01T14:00:00.000Z', // W44
    '2026-11-08T14:00:00.000Z', // W45
    // daily: the newest of each of the last 7 days
    '2026-11-12T14:00:00.000Z',
    '2026-11-13T14:00:00.000Z',
    '2026-11-14T14:00:00.000Z',
    '2026-11-15T14:00:00.000Z',
    '2026-11-16T14:00:00.000Z',
    '2026-11-17T14:00:00.000Z',
    '2026-11-18T14:00:00.000Z',
  ]);
  expect(runs).toHaveLength(46);
  // Pure policy, same answer; and pruning again removes nothing.
  expect(backupsToKeep(listBackups(dir), { daily: 7, weekly: 5 }).size).toBe(10);
  expect(await pruneBackups(dir, { daily: 7, weekly: 5 })).toEqual([]);
});
