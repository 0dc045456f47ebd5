// Transfer Study between two sites: only to a site that agreed to receive from the sender, only
// with Transfer Study; the receiver's inbox; accept gives the receiver its own re-encrypted copy
// (patient details, tiles, original); refuse; both audit chains record each step.
import sharp from 'sharp';
import { startTestServer, waitFor, type TestClient, type TestServer } from '../helpers/server';

let t: TestServer;
let senderAdmin: TestClient;
let clinician: TestClient;
let receiverAdmin: TestClient;
let senderSiteId: string;
let receiverSiteId: string;
const patient = { name: 'Transfer Patient', dateOfBirth: '1980-05-06', medicalRecordNumber: 'TR-77', sex: 'other' };

async function activate(email: string, oneTimePassword: string): Promise<TestClient> {
  const c = t.client();
  await c.login(email, oneTimePassword).expect(200);
  await c.post('/api/auth/password', { currentPassword: oneTimePassword, newPassword: "a sufficiently long referral passphrase" }).expect(200);
  return c;
}

beforeAll(async () => {
  t = await startTestServer();
  senderAdmin = (await t.demoLogin('site_admin')).client;
  clinician = (await t.demoLogin('clinician')).client;
  senderSiteId = (await senderAdmin.get('/api/me')).body.site.id;
  const receiver = await t.server.app.identity.createSite('Regional Referral Centre');
  receiverSiteId = receiver.id;
  const { oneTimePassword } = await t.server.app.identity.createUser(null, { ip: null, userAgent: null }, {
    siteId: receiverSiteId,
    email: 'admin@referral.example',
    name: 'Referral Admin',
    role: 'site_admin',
  });
  receiverAdmin = await activate('admin@referral.example', oneTimePassword);
});
afterAll(() => t.close());

async function caseWithSlide(client: TestClient) {
  const c = (await client.post('/api/cases', { title: 'Second opinion: lymph node', patient }).expect(201)).body.case;
  const jpeg = await sharp({ create: { width: 900, height: 700, channels: 3, background: '#b4a' } }).jpeg().toBuffer();
  const m = (
    await client.agent
      .post(`/api/cases/${c.id}/materials?name=node.jpg`)
      .set('X-CSRF-Token', client.csrfToken!)
      .set('Content-Type', 'application/octet-stream')
      .send(jpeg)
      .expect(202)
  ).body.material;
  await waitFor(async () => (await client.get(`/api/cases/${c.id}/materials/${m.id}`)).body.material.status === 'ready', 'source material ready');
  return { caseId: c.id as string, materialId: m.id as string, jpeg };
}

test('sending needs the receiver\'s agreement and Transfer Study', async () => {
  const { caseId } = await caseWithSlide(senderAdmin);
  const refused = await senderAdmin.post(`/api/cases/${caseId}/transfers`, { toSiteId: receiverSiteId }).expect(403);
  expect(refused.body.error.message).toMatch(/not agreed/);

  // The receiving admin agrees to receive from the sender (directional).
  const partners = await receiverAdmin.get('/api/transfer-partners').expect(200);
  expect(partners.body.directory.map((s: { siteId: string }) => s.siteId)).toContain(senderSiteId);
  await receiverAdmin.agent.put(`/api/admin/transfer-partners/${senderSiteId}`).set('X-CSRF-Token', receiverAdmin.csrfToken!).expect(204);
  expect((await senderAdmin.get('/api/transfer-partners').expect(200)).body.sendTo).toEqual([{ siteId: receiverSiteId, name: 'Regional Referral Centre' }]);
  expect((await receiverAdmin.get('/api/transfer-partners').expect(200)).body.sendTo).toEqual([]);

  // A clinician without Transfer Study cannot send.
  const noPerm = await clinician.post(`/api/cases/${caseId}/transfers`, { toSiteId: receiverSiteId }).expect(403);
  expect(noPerm.body.error.code).toBe('FORBIDDEN');
});

test('accept: the receiver gets its own copy, re-encrypted, with patient details and tiles; both sides audited', async () => {
  const { caseId, materialId } = await caseWithSlide(senderAdmin);
  const sent = await senderAdmin.post(`/api/cases/${caseId}/transfers`, { toSiteId: receiverSiteId, note: 'Please review margins' }).expect(201);
  const transferId = sent.body.transfer.id;
  expect(sent.body.transfer).toMatchObject({ status: 'pending', toSite: { id: receiverSiteId } });

  const inbox = await receiverAdmin.get('/api/transfers/inbox').expect(200);
  expect(inbox.body.transfers[0]).toMatchObject({ id: transferId, title: 'Second opinion: lymph node', note: 'Please review margins', fromSite: { id: senderSiteId, name: 'Demo Hospital' } });
  // The sender cannot accept on the receiver's behalf.
  await senderAdmin.post(`/api/transfers/${transferId}/accept`).expect(404);

  const accepted = await receiverAdmin.post(`/api/transfers/${transferId}/accept`).expect(200);
  const newCaseId = accepted.body.transfer.receivedCaseId;
  expect(accepted.body.transfer.status).toBe('accepted');
  await receiverAdmin.post(`/api/transfers/${transferId}/accept`).expect(409);

  const copy = await receiverAdmin.get(`/api/cases/${newCaseId}`).expect(200);
  expect(copy.body.case).toMatchObject({ title: 'Second opinion: lymph node', patient, siteId: receiverSiteId });
  const copiedMaterial = copy.body.materials[0];
  expect(copiedMaterial.id).not.toBe(materialId);
  const ready = await waitFor(async () => {
    const m = (await receiverAdmin.get(`/api/cases/${newCaseId}/materials/${copiedMaterial.id}`)).body.material;
    return m.status === 'ready' ? m : null;
  }, 'the copied material is re-encrypted');
  expect(ready).toMatchObject({ width: 900, height: 700, name: 'node.jpg' });
  const mine = await senderAdmin.get(`/api/cases/${caseId}/materials/${materialId}/slide_files/10/1_1.jpeg`).expect(200);
  const theirs = await receiverAdmin.get(`/api/cases/${newCaseId}/materials/${copiedMaterial.id}/slide_files/10/1_1.jpeg`).expect(200);
  expect(Buffer.compare(mine.body as Buffer, theirs.body as Buffer)).toBe(0);
  // Different case keys: the copy is not the same ciphertext.
  expect((await t.server.store.dataKeys.findByOwner(`case:${newCaseId}`))!.id).not.toBe((await t.server.store.dataKeys.findByOwner(`case:${caseId}`))!.id);
  // The sender still has its case; the receiver cannot reach the sender's.
  await senderAdmin.get(`/api/cases/${caseId}`).expect(200);
  await receiverAdmin.get(`/api/cases/${caseId}`).expect(404);

  const senderChain = (await t.server.store.audit.listChain(senderSiteId, 0, 1_000_000)).map((r) => r.type);
  const receiverChain = (await t.server.store.audit.listChain(receiverSiteId, 0, 1_000_000)).map((r) => r.type);
  expect(senderChain).toEqual(expect.arrayContaining(['case.transfer.send', 'case.transfer.accepted']));
  expect(receiverChain).toEqual(expect.arrayContaining(['case.transfer.receive', 'case.transfer.accept']));
  expect((await senderAdmin.get('/api/transfers/outbox').expect(200)).body.transfers[0]).toMatchObject({ id: transferId, status: 'accepted' });
});

test('refuse: nothing is copied and the sender sees the refusal', async () => {
  const { caseId } = await caseWithSlide(senderAdmin);
  const before = (await receiverAdmin.get('/api/cases').expect(200)).body.total;
  const transferId = (await senderAdmin.post(`/api/cases/${caseId}/transfers`, { toSiteId: receiverSiteId }).expect(201)).body.transfer.id;
  const refused = await receiverAdmin.post(`/api/transfers/${transferId}/refuse`, { reason: 'Out of scope' }).expect(200);
  expect(refused.body.transfer).toMatchObject({ status: 'refused', receivedCaseId: null });
  expect((await receiverAdmin.get('/api/cases').expect(200)).body.total).toBe(before);
  expect((await senderAdmin.get('/api/transfers/outbox').expect(200)).body.transfers.find((x: { id: string }) => x.id === transferId).status).toBe('refused');
  const chain = (await t.server.store.audit.listChain(senderSiteId, 0, 1_000_000)).map((r) => r.type);
  expect(chain).toContain('case.transfer.refused');
});

test('an agreement can be withdrawn; then sending is refused again', async () => {
  const { caseId } = await caseWithSlide(senderAdmin);
  await receiverAdmin.agent.delete(`/api/admin/transfer-partners/${senderSiteId}`).set('X-CSRF-Token', receiverAdmin.csrfToken!).expect(204);
  await senderAdmin.post(`/api/cases/${caseId}/transfers`, { toSiteId: receiverSiteId }).expect(403);
  await receiverAdmin.agent.delete(`/api/admin/transfer-partners/${senderSiteId}`).set('X-CSRF-Token', receiverAdmin.csrfToken!).expect(404);
});
