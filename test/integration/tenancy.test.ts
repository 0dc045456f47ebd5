// Tenancy: the site comes from the session only. An admin of site A can neither read nor change
// anything of site B through any identity route; B's records are untouched afterwards.
import { startTestServer, type TestClient, type TestServer } from '../helpers/server';

let t: TestServer;
let adminA: TestClient;
let siteB: string;
let userB: string;
let snapshotB: string;

beforeAll(async () => {
  t = await startTestServer();
  adminA = (await t.demoLogin('site_admin')).client;
  const site = await t.server.app.identity.createSite('Other Hospital');
  siteB = site.id;
  const created = await t.server.app.identity.createUser(null, { ip: null, userAgent: null }, {
    siteId: siteB,
    email: 'doctor@other.example',
    name: 'Other Doctor',
    role: 'clinician',
  });
  userB = created.user.id;
  snapshotB = JSON.stringify(await t.server.store.users.findById(siteB, userB));
});
afterAll(() => t.close());

test('site A admin sees only site A users', async () => {
  const list = await adminA.get('/api/admin/users').expect(200);
  expect(list.body.users.every((u: { siteId: string }) => u.siteId !== siteB)).toBe(true);
  expect(JSON.stringify(list.body)).not.toContain('other.example');
});

test.each([
  ['read', (c: TestClient) => c.get(`/api/admin/users/${userB}`)],
  ['update', (c: TestClient) => c.patch(`/api/admin/users/${userB}`, { role: 'site_admin', permissions: { stopAccess: true } })],
  ['reset password', (c: TestClient) => c.post(`/api/admin/users/${userB}/reset-password`)],
  ['revoke sessions', (c: TestClient) => c.post(`/api/admin/users/${userB}/revoke-sessions`)],
])('site A admin cannot %s a site B user: 404, as if it did not exist', async (_label, call) => {
  const res = await call(adminA);
  expect(res.status).toBe(404);
  expect(res.body.error.code).toBe('NOT_FOUND');
  expect(JSON.stringify(await t.server.store.users.findById(siteB, userB))).toBe(snapshotB);
});

test('a siteId in the body or query cannot pick another site', async () => {
  const body = await adminA.post('/api/admin/users', { email: 'planted@other.example', name: 'P', role: 'clinician', siteId: siteB }).expect(400);
  expect(body.body.error.code).toBe('VALIDATION_FAILED');
  await adminA.get(`/api/admin/users?siteId=${siteB}`).expect(400);
  await adminA.patch('/api/admin/site/policy', { requireTotp: true, siteId: siteB }).expect(400);
  expect((await t.server.store.sites.findById(siteB))!.policy.requireTotp).toBe(false);
  expect(await t.server.store.users.listBySite(siteB)).toHaveLength(1);
});

test('site policy changes apply to the admin\'s own site only', async () => {
  await adminA.patch('/api/admin/site/policy', { lockoutThreshold: 7 }).expect(200);
  expect((await t.server.store.sites.findById(siteB))!.policy.lockoutThreshold).toBe(5);
  await adminA.patch('/api/admin/site/policy', { lockoutThreshold: 5 }).expect(200);
});
