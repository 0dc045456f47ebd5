// Cases: CRUD within a site, patient details sealed at rest and shown only with View Patient
// Info, Can Delete for deletion, every read and write audited, other sites see nothing.
import path from 'node:path';
import Database from 'better-sqlite3';
import { SQLITE_FILE } from '../../src/store';
import { startTestServer, type TestClient, type TestServer } from '../helpers/server';

let t: TestServer;
let admin: TestClient;
let clinician: TestClient;
let pathologist: TestClient;
let siteId: string;

const patient = { name: 'Jane Roe', dateOfBirth: '1961-04-12', medicalRecordNumber: 'MRN-448812', sex: 'female' };

beforeAll(async () => {
  t = await startTestServer();
  admin = (await t.demoLogin('site_admin')).client;
  clinician = (await t.demoLogin('clinician')).client;
  pathologist = (await t.demoLogin('pathologist')).client;
  siteId = (await admin.get('/api/me').expect(200)).body.site.id;
});
afterAll(() => t.close());

async function auditOf(caseId: string) {
  return (await t.server.store.audit.listChain(siteId, 0, 1_000_000)).filter((r) => r.objects.some((o) => o.id === caseId));
}

test('a clinician creates a case with patient details; a pathologist without View Patient Info sees only the pseudonym', async () => {
  const created = await clinician
    .post('/api/cases', { title: 'Liver biopsy, ?steatohepatitis', clinicalQuestion: 'Grade and stage please.', patient })
    .expect(201);
  const c = created.body.case;
  expect(c).toMatchObject({ title: 'Liver biopsy, ?steatohepatitis', status: 'open', patient });
  expect(c.label).toMatch(/^C-[A-Z2-9]{4}-[A-Z2-9]{4}$/);

  const seen = await pathologist.get(`/api/cases/${c.id}`).expect(200);
  expect(seen.body.case.label).toBe(c.label);
  expect(seen.body.case).not.toHaveProperty('patient');
  expect(JSON.stringify(seen.body)).not.toMatch(/Jane|Roe|448812|1961/);
  const list = await pathologist.get('/api/cases').expect(200);
  expect(JSON.stringify(list.body)).not.toMatch(/Jane|Roe|448812|1961/);
  expect(list.body.cases.find((x: { id: string }) => x.id === c.id).label).toBe(c.label);

  // The label is stable across reads.
  expect((await pathologist.get(`/api/cases/${c.id}`).expect(200)).body.case.label).toBe(c.label);

  // At rest the patient fields are sealed: nothing readable in the database file.
  const db = new Database(path.join(t.dataDir, SQLITE_FILE), { readonly: true });
  const row = db.prepare('SELECT * FROM cases WHERE id = ?').get(c.id) as Record<string, unknown>;
  db.close();
  expect(String(row.patient_sealed)).toMatch(/^e1\./);
  expect(JSON.stringify(row)).not.toMatch(/Jane|Roe|448812|1961-04-12/);

  const types = (await auditOf(c.id)).map((r) => r.type);
  expect(types).toEqual(expect.arrayContaining(['case.create', 'case.read', 'case.list']));
});

test('edit and search; editing patient details needs View Patient Info', async () => {
  const c = (await clinician.post('/api/cases', { title: 'Skin excision 50% margin', patient }).expect(201)).body.case;
  const edited = await pathologist.patch(`/api/cases/${c.id}`, { status: 'in_review', clinicalQuestion: 'Margins?' }).expect(200);
  expect(edited.body.case).toMatchObject({ status: 'in_review', clinicalQuestion: 'Margins?' });
  const refused = await pathologist.patch(`/api/cases/${c.id}`, { patient: { ...patient, name: 'Someone Else' } }).expect(403);
  expect(refused.body.error.code).toBe('FORBIDDEN');
  const changed = await clinician.patch(`/api/cases/${c.id}`, { patient: { ...patient, medicalRecordNumber: 'MRN-1' } }).expect(200);
  expect(changed.body.case.patient.medicalRecordNumber).toBe('MRN-1');

  const found = await clinician.get('/api/cases?q=50%25%20margin').expect(200);
  expect(found.body.cases.map((x: { id: string }) => x.id)).toEqual([c.id]);
  const byLabel = await clinician.get(`/api/cases?q=${c.label.toLowerCase()}`).expect(200);
  expect(byLabel.body.cases.map((x: { id: string }) => x.id)).toEqual([c.id]);
  const byStatus = await clinician.get('/api/cases?status=in_review').expect(200);
  expect(byStatus.body.cases.every((x: { status: string }) => x.status === 'in_review')).toBe(true);
  expect(byStatus.body.total).toBeGreaterThanOrEqual(1);
  expect((await auditOf(c.id)).filter((r) => r.type === 'case.update')).toHaveLength(2);
});

test('deleting needs Can Delete; a deleted case is gone with its data key', async () => {
  const c = (await clinician.post('/api/cases', { title: 'To delete', patient }).expect(201)).body.case;
  const refused = await clinician.agent.delete(`/api/cases/${c.id}`).set('X-CSRF-Token', clinician.csrfToken!).expect(403);
  expect(refused.body.error.code).toBe('FORBIDDEN');
  await admin.agent.delete(`/api/cases/${c.id}`).set('X-CSRF-Token', admin.csrfToken!).expect(204);
  await admin.get(`/api/cases/${c.id}`).expect(404);
  expect(await t.server.store.dataKeys.findByOwner(`case:${c.id}`)).toBeNull();
  expect((await auditOf(c.id)).map((r) => r.type)).toContain('case.delete');
});

test('bad input is refused with a typed error and creates nothing', async () => {
  const before = (await admin.get('/api/cases?limit=200').expect(200)).body.total;
  for (const body of [
    { title: '' },
    { title: 'x', patient: { ...patient, dateOfBirth: '12/04/1961' } },
    { title: 'x', patient: { ...patient, ssn: '123' } },
    { title: 'x', status: 'archived' },
    { title: 'x', siteId: 'elsewhere' },
  ]) {
    const res = await clinician.post('/api/cases', body).expect(400);
    expect(res.body.error.code).toBe('VALIDATION_FAILED');
  }
  await clinician.get('/api/cases?limit=100000').expect(400);
  await clinician.get('/api/cases/not-an-id').expect(400);
  expect((await admin.get('/api/cases?limit=200').expect(200)).body.total).toBe(before);
});

test('another site cannot see, change or delete a case', async () => {
  const c = (await clinician.post('/api/cases', { title: 'Private to site A', patient }).expect(201)).body.case;
  const other = await t.server.app.identity.createSite('Elsewhere Clinic');
  const { oneTimePassword } = await t.server.app.identity.createUser(null, { ip: null, userAgent: null }, {
    siteId: other.id,
    email: 'admin@elsewhere.example',
    name: 'Other Admin',
    role: 'site_admin',
  });
  const outsider = t.client();
  await outsider.login('admin@elsewhere.example', oneTimePassword).expect(200);
  await outsider.post('/api/auth/password', { currentPassword: oneTimePassword, newPassword: 'another long and unusual passphrase' }).expect(200);
  expect((await outsider.get('/api/cases').expect(200)).body.total).toBe(0);
  await outsider.get(`/api/cases/${c.id}`).expect(404);
  await outsider.patch(`/api/cases/${c.id}`, { title: 'hijacked' }).expect(404);
  await outsider.agent.delete(`/api/cases/${c.id}`).set('X-CSRF-Token', outsider.csrfToken!).expect(404);
  expect((await clinician.get(`/api/cases/${c.id}`).expect(200)).body.case.title).toBe('Private to site A');
});

test('Stop Access ends case access on the next request', async () => {
  const c = (await clinician.post('/api/cases', { title: 'Stop access check' }).expect(201)).body.case;
  const users = (await admin.get('/api/admin/users').expect(200)).body.users as { id: string; email: string }[];
  const path_ = users.find((u) => u.email === 'pathologist@demo.local')!;
  await pathologist.get(`/api/cases/${c.id}`).expect(200);
  await admin.patch(`/api/admin/users/${path_.id}`, { permissions: { stopAccess: true } }).expect(200);
  await pathologist.get(`/api/cases/${c.id}`).expect(401);
  await admin.patch(`/api/admin/users/${path_.id}`, { permissions: { stopAccess: false } }).expect(200);
});
