// Usage statistics without identities: per site for its admin (GET /api/admin/usage), across
// sites for the operator (token-protected, on the metrics port); and the log event an operator
// alerts on when one address keeps failing to log in.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { call, connect, startTestServer, waitFor, type TestClient, type TestServer } from '../helpers/server';

let t: TestServer;
let metricsPort: number;
const TOKEN = `operator-token-${'x'.repeat(40)}`;
let admin: TestClient;
let clinician: TestClient;
let pathologist: TestClient;
let clinicianEmail: string;
let siteId: string;
let otherSiteId: string;
const month = () => t.clock.now().toISOString().slice(0, 7);

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

function operatorGet(p: string, token?: string): Promise<{ status: number; body: any }> {
  return fetch(`http://127.0.0.1:${metricsPort}${p}`, { headers: token ? { Authorization: `Bearer ${token}` } : {} }).then(async (r) => ({ status: r.status, body: await r.json().catch(() => null) }));
}

beforeAll(async () => {
  metricsPort = await freePort();
  const tokenFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'cc-op-')), 'operator.token');
  fs.writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
  t = await startTestServer({ METRICS_PORT: String(metricsPort), OPERATOR_TOKEN_FILE: tokenFile });
  admin = (await t.demoLogin('site_admin')).client;
  const c = await t.demoLogin('clinician');
  clinician = c.client;
  clinicianEmail = c.email;
  pathologist = (await t.demoLogin('pathologist')).client;
  siteId = (await admin.get('/api/me').expect(200)).body.site.id;
  const other = await t.server.app.identity.createSite('Other Hospital');
  otherSiteId = other.id;
  await t.server.app.identity.createUser(null, { ip: null, userAgent: null }, { siteId: otherSiteId, email: 'someone@other.example', name: 'Other Person', role: 'clinician' });
});
afterAll(() => t.close());

test('usage counts logins, cases, uploads by type, consultations, follow-ups and media minutes, with no identities', async () => {
  await t.client().login(clinicianEmail, 'definitely not the right password').expect(401);
  const caseA = (await clinician.post('/api/cases', { title: 'Usage case Jane Roe', patient: { name: 'Jane Roe', dateOfBirth: '1970-01-01', medicalRecordNumber: 'MRN-USAGE-1', sex: 'female' } }).expect(201)).body.case.id;
  await clinician.post('/api/cases', { title: 'Usage case two' }).expect(201);
  const png = await sharp({ create: { width: 32, height: 32, channels: 3, background: '#c0ffee' } }).png().toBuffer();
  await clinician.agent.post(`/api/cases/${caseA}/materials?name=usage.png`).set('X-CSRF-Token', clinician.csrfToken!).set('Content-Type', 'application/octet-stream').send(png).expect(202);

  // A consultation: two different users in the case room the same day (a lone join is not one).
  const a = await connect(t.socket(clinician));
  const b = await connect(t.socket(pathologist));
  try {
    expect((await call(a, 'room:join', { caseId: caseA })).ok).toBe(true);
    expect((await call(b, 'room:join', { caseId: caseA })).ok).toBe(true);
  } finally {
    a.disconnect();
    b.disconnect();
  }
  // What the follow-up and media domains record: admissions (a re-admission after a drop is the
  // same follow-up), and media start/stop per stream (two streams: 10 min camera, 90 s screen).
  const clinicianId = (await clinician.get('/api/me').expect(200)).body.user.id;
  const actor = { userId: clinicianId, role: 'clinician', ip: '127.0.0.1', userAgent: null };
  const audit = t.server.app.audit;
  for (const followUp of ['FollowUpAAAAAAAAAAAAAA', 'FollowUpAAAAAAAAAAAAAA', 'FollowUpBBBBBBBBBBBBBB']) {
    await audit.record({ siteId, type: 'followup.admit', action: 'U', actor, objects: [{ type: 'followup', id: followUp }, { type: 'case', id: caseA }] });
  }
  const stream = (type: 'media.start' | 'media.stop', source: string) => audit.record({ siteId, type, action: 'E', actor, objects: [{ type: 'room', id: caseA }], details: { kind: 'video', source } });
  await stream('media.start', 'camera');
  await stream('media.start', 'screen');
  t.clock.advance(90_000);
  await stream('media.stop', 'screen');
  t.clock.advance(510_000);
  await stream('media.stop', 'camera');
  // A stream that started and has not stopped yet counts nothing so far.
  await stream('media.start', 'screen');

  const res = await admin.get(`/api/admin/usage?from=${month()}&to=${month()}`).expect(200);
  const report = res.body;
  expect(report).toMatchObject({ siteId, from: month(), to: month() });
  expect(report.months).toHaveLength(1);
  expect(report.months[0]).toEqual({
    month: month(),
    activeUsers: 3,
    logins: 3,
    failedLogins: 1,
    casesCreated: 3, // the demo case seeded at first start, and these two
    materialsUploaded: 1,
    materialsByType: { 'image/png': 1 },
    roomJoins: 2,
    consultations: 1,
    followUps: 2,
    mediaMinutes: 11.5,
  });
  expect(report.totals).toEqual({ ...report.months[0], month: undefined });
  expect(report.users).toEqual({ total: 3, byRole: { site_admin: 1, clinician: 1, pathologist: 1 }, stopped: 0, locked: 0 });
  expect(report.casesHeld).toBe(3);
  // Counts only: no user, case or patient identity anywhere in the answer.
  const text = JSON.stringify(report);
  for (const secret of [clinicianId, caseA, 'Jane', 'MRN-USAGE-1', clinicianEmail, 'Demo Clinician', 'Usage case']) expect(text).not.toContain(secret);
  // Reading it is audited.
  const trail = (await admin.get('/api/admin/audit?type=usage.read&limit=1').expect(200)).body.records;
  expect(trail[0]).toMatchObject({ action: 'R', details: { from: month(), to: month() } });
});

test('the default range is the last 12 months, every month present', async () => {
  const report = (await admin.get('/api/admin/usage').expect(200)).body;
  expect(report.months).toHaveLength(12);
  expect(report.to).toBe(month());
  expect(report.months[11].month).toBe(month());
  expect(report.months.slice(0, 11).every((m: { logins: number }) => m.logins === 0)).toBe(true);
});

test('usage input is validated and only site admins read it', async () => {
  for (const q of ['from=2026-13', 'from=2026-05&to=2026-04', 'from=2020-01&to=2026-01', 'siteId=x', 'to=2026-1']) {
    const res = await admin.get(`/api/admin/usage?${q}`);
    expect([q, res.status, res.body.error.code]).toEqual([q, 400, 'VALIDATION_FAILED']);
  }
  expect((await clinician.get('/api/admin/usage')).status).toBe(403);
});

test('operator aggregate: every site, behind its own bearer token on the metrics port', async () => {
  expect((await operatorGet('/operator/usage')).status).toBe(401);
  expect((await operatorGet('/operator/usage', 'x'.repeat(60))).status).toBe(401);
  await waitFor(() => t.logs.some((l) => l.includes('"alert":"operator_auth_failed"')), 'operator auth failure logged');
  // A site session is no key to it: the HTTPS port has no such route (the browser app's page
  // fallback answers instead, never JSON figures).
  const viaHttps = await admin.get('/operator/usage');
  expect(viaHttps.headers['content-type']).not.toMatch(/json/);
  expect(viaHttps.text).not.toContain('casesHeld');
  const bad = await operatorGet('/operator/usage?from=2026-99', TOKEN);
  expect([bad.status, bad.body.error.code]).toEqual([400, 'VALIDATION_FAILED']);
  const ok = await operatorGet(`/operator/usage?from=${month()}`, TOKEN);
  expect(ok.status).toBe(200);
  const bySite = Object.fromEntries(ok.body.sites.map((s: { siteId: string }) => [s.siteId, s]));
  expect(Object.keys(bySite).sort()).toEqual([siteId, otherSiteId].sort());
  expect(bySite[otherSiteId]).toMatchObject({ name: 'Other Hospital', users: { total: 1 }, casesHeld: 0, totals: { logins: 0 } });
  expect(ok.body.totals).toMatchObject({ sites: 2, users: 4, casesHeld: 3, logins: bySite[siteId].totals.logins, consultations: 1 });
  expect(JSON.stringify(ok.body)).not.toContain('someone@other.example');
  const system = await t.server.store.audit.listChain('_system', 0, 100_000);
  expect(system.some((r) => r.type === 'usage.operator.read' && r.actor.role === 'operator' && r.outcome === 0)).toBe(true);
  // Metrics are still served beside it, with the age of the newest backup (none yet here).
  const metrics = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
  expect(metrics.status).toBe(200);
  expect(await metrics.text()).toMatch(/^backup_newest_timestamp_seconds 0$/m);
});

test('ten failed logins from one address raise one structured alert line, without the e-mail tried', async () => {
  const tried = 'sprayed-account@nowhere.example';
  for (let i = 0; i < 10; i++) await t.client().login(i % 2 ? tried : clinicianEmail, `wrong password number ${i}`).expect(401);
  await waitFor(() => t.logs.some((l) => l.includes('"alert":"repeated_failed_logins"')), 'alert logged');
  const alerts = t.logs.filter((l) => l.includes('"alert":"repeated_failed_logins"'));
  expect(alerts).toHaveLength(1);
  const line = JSON.parse(alerts[0]!);
  expect(line).toMatchObject({ level: 40, ip: expect.stringMatching(/127\.0\.0\.1/), failures: 10, windowMinutes: 15 });
  expect(alerts[0]).not.toContain(tried);
  expect(alerts[0]).not.toContain(clinicianEmail);
});
