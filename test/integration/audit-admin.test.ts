// Audit trail for site admins: search with filters and keyset paging, CSV and FHIR exports,
// chain verification from the admin route; every read is itself audited; other sites' records
// and non-admins stay out.
import path from 'node:path';
import Database from 'better-sqlite3';
import { SQLITE_FILE } from '../../src/store';
import { startTestServer, type TestClient, type TestServer } from '../helpers/server';

let t: TestServer;
let admin: TestClient;
let adminId: string;
let clinician: TestClient;
let clinicianId: string;
let siteId: string;
let caseId: string;

interface Rec {
  id: string;
  seq: number;
  type: string;
  time: string;
  outcome: number;
  actor: { userId: string | null; ip: string | null };
  objects: { type: string; id: string }[];
}

async function allPages(client: TestClient, query: string, limit: number): Promise<Rec[]> {
  const out: Rec[] = [];
  let cursor: string | null = null;
  for (let i = 0; i < 1000; i++) {
    const res: { body: { records: Rec[]; nextCursor: string | null } } = await client
      .get(`/api/admin/audit?${query}&limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`)
      .expect(200);
    out.push(...res.body.records);
    cursor = res.body.nextCursor;
    if (!cursor) return out;
  }
  throw new Error('paging did not end');
}

beforeAll(async () => {
  t = await startTestServer();
  admin = (await t.demoLogin('site_admin')).client;
  const c = await t.demoLogin('clinician');
  clinician = c.client;
  const me = await admin.get('/api/me').expect(200);
  adminId = me.body.user.id;
  siteId = me.body.site.id;
  clinicianId = (await clinician.get('/api/me').expect(200)).body.user.id;
  caseId = (await clinician.post('/api/cases', { title: 'Audit search case' }).expect(201)).body.case.id;
  await clinician.get(`/api/cases/${caseId}`).expect(200);
  await clinician.patch(`/api/cases/${caseId}`, { title: 'Audit search case, renamed' }).expect(200);
  await t.client().login(c.email, 'not the password at all').expect(401);
  // A record of another site that must never appear in this site's searches or exports.
  await t.server.app.audit.record({ siteId: 'OtherSite0000000000000', type: 'case.read', action: 'R', actor: { userId: clinicianId, role: 'clinician', ip: '10.9.9.9', userAgent: null }, objects: [{ type: 'case', id: caseId }] });
});
afterAll(() => t.close());

test('admin finds every record about a case, newest first, and nothing of another site', async () => {
  const res = await admin.get(`/api/admin/audit?objectType=case&objectId=${caseId}`).expect(200);
  const types = res.body.records.map((r: Rec) => r.type);
  expect(types).toEqual(['case.update', 'case.read', 'case.create']);
  expect(res.body.records.every((r: Rec & { siteId: string }) => r.siteId === siteId)).toBe(true);
  expect(res.body.records[0]).toMatchObject({ actor: { userId: clinicianId, role: 'clinician' }, action: 'U' });
  expect(res.body.nextCursor).toBeNull();
});

test('filters by actor, type prefix, outcome, action, IP and time range combine', async () => {
  const byActor = await allPages(admin, `actor=${clinicianId}`, 50);
  expect(byActor.length).toBeGreaterThan(3);
  expect(byActor.every((r) => r.actor.userId === clinicianId)).toBe(true);

  const failed = (await admin.get(`/api/admin/audit?type=auth.*&outcome=4`).expect(200)).body.records as Rec[];
  expect(failed.length).toBeGreaterThanOrEqual(1);
  expect(failed.every((r) => r.type.startsWith('auth.') && r.outcome === 4)).toBe(true);

  const updates = (await admin.get(`/api/admin/audit?action=U&objectType=case`).expect(200)).body.records as Rec[];
  expect(updates.map((r) => r.type)).toEqual(['case.update']);

  const ip = byActor[0]!.actor.ip!;
  const byIp = (await admin.get(`/api/admin/audit?ip=${encodeURIComponent(ip)}&actor=${clinicianId}`).expect(200)).body.records as Rec[];
  expect(byIp.length).toBe(Math.min(50, byActor.filter((r) => r.actor.ip === ip).length));
  expect((await admin.get(`/api/admin/audit?ip=10.1.2.3`).expect(200)).body.records).toEqual([]);

  // Ten minutes later (within the idle timeout), another case: a time window picks one or the other.
  t.clock.advance(600_000);
  const later = (await clinician.post('/api/cases', { title: 'Later case' }).expect(201)).body.case.id;
  const create = byActor.find((r) => r.type === 'case.create')!;
  const hourAfter = new Date(Date.parse(create.time) + 600_000).toISOString();
  const windowed = (await admin.get(`/api/admin/audit?from=${create.time}&to=${hourAfter}&type=case.create&actor=${clinicianId}`).expect(200)).body.records as Rec[];
  expect(windowed.map((r) => r.id)).toEqual([create.id]);
  const since = (await admin.get(`/api/admin/audit?from=${hourAfter}&type=case.create`).expect(200)).body.records as Rec[];
  expect(since.map((r) => r.objects[0]!.id)).toEqual([later]);
});

test('keyset paging walks the whole trail once, in order, with no duplicates or gaps', async () => {
  const whole = (await admin.get('/api/admin/audit?limit=200&type=case.*').expect(200)).body.records as Rec[];
  const paged = await allPages(admin, 'type=case.*', 2);
  expect(paged.map((r) => r.id)).toEqual(whole.map((r) => r.id));
  const all = await allPages(admin, 'from=2000-01-01T00:00:00Z', 3);
  expect(new Set(all.map((r) => r.id)).size).toBe(all.length);
  for (let i = 1; i < all.length; i++) {
    const [a, b] = [all[i - 1]!, all[i]!];
    expect(a.time > b.time || (a.time === b.time && a.seq > b.seq)).toBe(true);
  }
});

test('every search is itself on the audit trail, with its filters', async () => {
  await admin.get(`/api/admin/audit?actor=${clinicianId}&type=case.read`).expect(200);
  const trail = (await admin.get(`/api/admin/audit?type=audit.search&actor=${adminId}&limit=5`).expect(200)).body.records;
  const mine = trail.find((r: Rec & { details: Record<string, unknown> }) => r.details.actor === clinicianId && r.details.type === 'case.read');
  expect(mine).toMatchObject({ action: 'R', outcome: 0, objects: [{ type: 'site', id: siteId }] });
});

test('non-admins are refused and bad input changes nothing', async () => {
  const before = (await t.server.store.audit.listChain(siteId, 0, 1_000_000)).length;
  for (const p of ['/api/admin/audit', '/api/admin/audit/export?format=csv', '/api/admin/audit/verify', '/api/admin/usage']) {
    const res = await clinician.get(p);
    expect([p, res.status, res.body.error?.code]).toEqual([p, 403, 'FORBIDDEN']);
  }
  expect((await clinician.post('/api/admin/audit/verify')).status).toBe(403);
  expect((await t.client().get('/api/admin/audit')).status).toBe(401);
  const cases: [string, string][] = [
    ['unknown key', '/api/admin/audit?siteId=x'],
    ['bad outcome', '/api/admin/audit?outcome=3'],
    ['limit too high', '/api/admin/audit?limit=201'],
    ['objectId without objectType', `/api/admin/audit?objectId=${caseId}`],
    ['bad time', '/api/admin/audit?from=yesterday'],
    ['inverted range', '/api/admin/audit?from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z'],
    ['forged cursor', `/api/admin/audit?cursor=${Buffer.from('nonsense').toString('base64url')}`],
    ['export without format', '/api/admin/audit/export'],
    ['export with cursor', '/api/admin/audit/export?format=csv&cursor=abc'],
  ];
  for (const [label, p] of cases) {
    const res = await admin.get(p);
    expect([label, res.status, res.body.error?.code]).toEqual([label, 400, 'VALIDATION_FAILED']);
  }
  expect((await admin.post('/api/admin/audit/verify', { siteId: 'x' })).status).toBe(400);
  // Refused requests wrote no audit record (only the clinician's logged refusals could).
  const after = await t.server.store.audit.listChain(siteId, before, 1_000_000);
  expect(after.filter((r) => r.type.startsWith('audit.'))).toEqual([]);
});

test('CSV export streams every matching record with a header and neutralised formulas', async () => {
  await t.server.app.audit.record({ siteId, type: 'case.read', action: 'R', actor: { userId: clinicianId, role: 'clinician', ip: '127.0.0.1', userAgent: '=HYPERLINK("http://x")' }, objects: [{ type: 'case', id: caseId }] });
  const res = await admin.get(`/api/admin/audit/export?format=csv&objectType=case&objectId=${caseId}`).buffer(true).parse((r, cb) => {
    let text = '';
    r.on('data', (d: Buffer) => (text += d.toString('utf8')));
    r.on('end', () => cb(null, text));
  }).expect(200);
  expect(res.headers['content-type']).toBe('text/csv; charset=utf-8');
  expect(res.headers['content-disposition']).toMatch(/^attachment; filename="audit-.*\.csv"$/);
  const lines = (res.body as string).trim().split('\r\n');
  expect(lines[0]).toBe('time,seq,id,type,action,outcome,actor_user_id,actor_role,ip,user_agent,objects,details,hash');
  expect(lines).toHaveLength(1 + 4);
  expect(lines[1]).toContain(`"'=HYPERLINK(""http://x"")"`);
  expect(lines.slice(1).every((l) => l.includes(`case:${caseId}`))).toBe(true);
  const exportRecord = (await admin.get(`/api/admin/audit?type=audit.export&limit=1`).expect(200)).body.records[0];
  expect(exportRecord).toMatchObject({ actor: { userId: adminId }, details: { format: 'csv', objectType: 'case', objectId: caseId } });
});

test('FHIR export is an R4 Bundle of AuditEvent resources with DICOM event codes', async () => {
  const res = await admin.get(`/api/admin/audit/export?format=fhir&actor=${clinicianId}`).buffer(true).parse((r, cb) => {
    let text = '';
    r.on('data', (d: Buffer) => (text += d.toString('utf8')));
    r.on('end', () => cb(null, text));
  }).expect(200);
  expect(res.headers['content-type']).toBe('application/fhir+json; charset=utf-8');
  const bundle = JSON.parse(res.body as string);
  expect(bundle).toMatchObject({ resourceType: 'Bundle', type: 'collection' });
  const events = bundle.entry.map((e: { fullUrl: string; resource: Record<string, unknown> }) => {
    expect(e.fullUrl).toMatch(/^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    return e.resource;
  });
  const byActor = await allPages(admin, `actor=${clinicianId}`, 200);
  // The export ran after byActor's searches, which were the admin's: same clinician records.
  expect(events).toHaveLength(byActor.length);
  const login = events.find((e: { subtype: { code: string }[] }) => e.subtype[0]!.code === 'auth.login');
  expect(login).toMatchObject({
    resourceType: 'AuditEvent',
    type: { system: 'http://dicom.nema.org/resources/ontology/DCM', code: '110114' },
    action: 'E',
    agent: [{ who: { identifier: { value: clinicianId } }, requestor: true }],
  });
  const read = events.find((e: { subtype: { code: string }[] }) => e.subtype[0]!.code === 'case.read');
  expect(read.type.code).toBe('110110');
  expect(read.entity[0]).toMatchObject({ what: { identifier: { value: caseId } } });
  expect(read.entity[1].detail.map((d: { type: string }) => d.type)).toEqual(expect.arrayContaining(['seq', 'hash', 'prevHash']));
});

test('verify from the admin route reports an intact chain, then names the first tampered record', async () => {
  const ok = await admin.post('/api/admin/audit/verify').expect(200);
  expect(ok.body).toMatchObject({ siteId, intact: true, firstBreak: null, verifiedBy: adminId });
  expect(ok.body.records).toBeGreaterThan(10);
  const last = await admin.get('/api/admin/audit/verify').expect(200);
  expect(last.body.last).toEqual(ok.body);

  // Tamper with one record behind the server's back (the triggers forbid it; drop them first).
  const db = new Database(path.join(t.dataDir, SQLITE_FILE));
  const victim = db.prepare("SELECT seq FROM audit_events WHERE site_id = ? AND type = 'case.read' ORDER BY seq LIMIT 1").get(siteId) as { seq: number };
  db.exec('DROP TRIGGER audit_no_update');
  db.prepare("UPDATE audit_events SET details = '{\"forged\":true}' WHERE site_id = ? AND seq = ?").run(siteId, victim.seq);
  db.close();
  const broken = await admin.post('/api/admin/audit/verify').expect(200);
  expect(broken.body).toMatchObject({ intact: false, firstBreak: { seq: victim.seq, reason: 'hash mismatch' } });
  expect((await admin.get('/api/admin/audit/verify').expect(200)).body.last.intact).toBe(false);
  const record = (await admin.get('/api/admin/audit?type=audit.verify&outcome=8').expect(200)).body.records[0];
  expect(record.details).toMatchObject({ intact: false, breakSeq: victim.seq });
});

test('exports and verifications are rate-limited per admin (6 a minute): a typed 429 with Retry-After', async () => {
  let res = await admin.post('/api/admin/audit/verify');
  for (let i = 0; i < 6 && res.status === 200; i++) res = await admin.post('/api/admin/audit/verify');
  expect(res.status).toBe(429);
  expect(res.body.error.code).toBe('RATE_LIMITED');
  expect(Number(res.headers['retry-after'])).toBeGreaterThan(0);
  // Searches have their own, larger budget and still answer.
  await admin.get('/api/admin/audit?limit=1').expect(200);
});
