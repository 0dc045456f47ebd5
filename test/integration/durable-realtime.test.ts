// Chat and annotations in a room: persisted before the ack, broadcast after, ordered by a per-case
// sequence; a client that was away (or whose server restarted) gets exactly what it missed.
import sharp from 'sharp';
import type { Socket as ClientSocket } from 'socket.io-client';
import { call, connect, lastPasswords, nextEvent, startTestServer, waitFor, type TestClient, type TestServer } from '../helpers/server';

let t: TestServer;
let clinician: TestClient;
let pathologist: TestClient;
let caseId: string;
let materialId: string;
const sockets: ClientSocket[] = [];

async function socketOf(client: TestClient, node = t): Promise<ClientSocket> {
  const s = await connect(node.socket(client));
  sockets.push(s);
  return s;
}

const square = (x: number) => ({ type: 'Polygon', coordinates: [[[x, x], [x + 100, x], [x + 100, x + 100], [x, x + 100], [x, x]]] });
let n = 0;
const clientId = () => `client-${Date.now()}-${n++}`;

beforeAll(async () => {
  t = await startTestServer();
  clinician = (await t.demoLogin('clinician')).client;
  pathologist = (await t.demoLogin('pathologist')).client;
  caseId = (await clinician.post('/api/cases', { title: 'Tumour board' }).expect(201)).body.case.id;
  const png = await sharp({ create: { width: 512, height: 512, channels: 3, background: '#d9b' } }).png().toBuffer();
  materialId = (
    await clinician.agent
      .post(`/api/cases/${caseId}/materials?name=slide.png`)
      .set('X-CSRF-Token', clinician.csrfToken!)
      .set('Content-Type', 'application/octet-stream')
      .send(png)
      .expect(202)
  ).body.material.id;
  await waitFor(async () => (await clinician.get(`/api/cases/${caseId}/materials/${materialId}`)).body.material.status === 'ready', 'material ready');
});
afterAll(async () => {
  for (const s of sockets) s.disconnect();
  await t.close();
});

test('chat: acked after persisting, broadcast to the room, ordered, idempotent on retry', async () => {
  const a = await socketOf(clinician);
  const b = await socketOf(pathologist);
  await call(a, 'room:join', { caseId });
  await call(b, 'room:join', { caseId });
  const heard = nextEvent<{ message: { text: string; seq: number } }>(b, 'chat:message');
  const id = clientId();
  const sent = await call<{ seq: number; text: string; userName: string }>(a, 'chat:send', { caseId, text: 'Margins look clear to me.', clientId: id });
  expect(sent.ok && sent.data).toMatchObject({ text: 'Margins look clear to me.', userName: 'Demo Clinician' });
  expect((await heard).message.text).toBe('Margins look clear to me.');
  const retry = await call<{ seq: number }>(a, 'chat:send', { caseId, text: 'Margins look clear to me.', clientId: id });
  expect(retry.ok && sent.ok && retry.data.seq).toBe(sent.ok && sent.data.seq);
  const second = await call<{ seq: number }>(b, 'chat:send', { caseId, text: 'Agreed.', clientId: clientId() });
  expect(second.ok && sent.ok && second.data.seq).toBe(sent.ok && sent.data.seq + 1);
});

test('annotations: versioned ops with a typed conflict the client can recover from, and full history', async () => {
  const a = await socketOf(clinician);
  const b = await socketOf(pathologist);
  await call(a, 'room:join', { caseId });
  await call(b, 'room:join', { caseId });
  const seen = nextEvent<{ op: { op: string } }>(b, 'annotation:op');
  const created = await call<{ seq: number; annotation: { id: string; version: number } }>(a, 'annotation:create', {
    caseId,
    materialId,
    clientId: clientId(),
    kind: 'rectangle',
    geometry: square(10),
    properties: { label: 'Tumour', color: '#ff0000', text: 'Invasive front' },
  });
  expect(created.ok).toBe(true);
  if (!created.ok) return;
  expect((await seen).op.op).toBe('create');
  const annotationId = created.data.annotation.id;

  // Both edit from version 1: the first wins, the second gets VERSION_CONFLICT with the current state.
  const first = await call<{ annotation: { version: number } }>(a, 'annotation:update', { caseId, annotationId, baseVersion: 1, properties: { label: 'Tumour (pT2)' } });
  expect(first.ok && first.data.annotation.version).toBe(2);
  const stale = await call(b, 'annotation:update', { caseId, annotationId, baseVersion: 1, geometry: square(20) });
  expect(stale.ok).toBe(false);
  if (stale.ok) return;
  expect(stale.error.code).toBe('VERSION_CONFLICT');
  expect((stale.error.current as { version: number }).version).toBe(2);
  // Recovering: retry on the current version.
  const recovered = await call<{ annotation: { version: number } }>(b, 'annotation:update', { caseId, annotationId, baseVersion: 2, geometry: square(20) });
  expect(recovered.ok && recovered.data.annotation.version).toBe(3);
  const removed = await call(a, 'annotation:delete', { caseId, annotationId, baseVersion: 3 });
  expect(removed.ok).toBe(true);

  const history = await call<{ op: string; userId: string }[]>(a, 'annotation:history', { caseId, annotationId });
  expect(history.ok && history.data.map((o) => o.op)).toEqual(['create', 'update', 'update', 'delete']);
});

test('a client that was offline rejoins with its last seqs and gets exactly what it missed, in order; also after a restart', async () => {
  const a = await socketOf(clinician);
  const first = await call<{ latestChatSeq: number; latestAnnotationSeq: number }>(a, 'room:join', { caseId });
  if (!first.ok) throw new Error('join failed');
  const { latestChatSeq, latestAnnotationSeq } = first.data;
  a.disconnect();

  const b = await socketOf(pathologist);
  await call(b, 'room:join', { caseId });
  for (let i = 0; i < 5; i++) await call(b, 'chat:send', { caseId, text: `missed ${i}`, clientId: clientId() });
  const made = await call<{ annotation: { id: string } }>(b, 'annotation:create', { caseId, materialId, clientId: clientId(), kind: 'point', geometry: { type: 'Point', coordinates: [5, 6] }, properties: { label: 'Mitosis', color: '#00ff00', text: '' } });
  expect(made.ok).toBe(true);

  // The whole server restarts; the store keeps everything that was acknowledged.
  await t.close();
  t = await startTestServer({}, { dataDir: t.dataDir });
  clinician = t.client();
  await clinician.login('clinician@demo.local', lastPasswords.get('clinician@demo.local')!).expect(200);
  const back = await socketOf(clinician);
  const rejoin = await call<{ chat: { text: string; seq: number }[]; annotationOps: { op: string; seq: number }[]; annotations: null }>(back, 'room:join', {
    caseId,
    lastChatSeq: latestChatSeq,
    lastAnnotationSeq: latestAnnotationSeq,
  });
  expect(rejoin.ok).toBe(true);
  if (!rejoin.ok) return;
  expect(rejoin.data.chat.map((m) => m.text)).toEqual(['missed 0', 'missed 1', 'missed 2', 'missed 3', 'missed 4']);
  expect(rejoin.data.chat.map((m) => m.seq)).toEqual([1, 2, 3, 4, 5].map((i) => latestChatSeq + i));
  expect(rejoin.data.annotations).toBeNull();
  expect(rejoin.data.annotationOps.map((o) => o.op)).toEqual(['create']);
  expect(rejoin.data.annotationOps[0]!.seq).toBe(latestAnnotationSeq + 1);
});

test('durable events need a joined room and a valid payload', async () => {
  const s = await socketOf(pathologist);
  const notJoined = await call(s, 'chat:send', { caseId, text: 'hello', clientId: clientId() });
  expect(notJoined.ok === false && notJoined.error.code).toBe('FORBIDDEN');
  const bad = await call(s, 'annotation:create', { caseId, materialId, clientId: clientId(), kind: 'point', geometry: { type: 'Point', coordinates: [Infinity, 0] }, properties: { label: '', color: '#000000', text: '' } });
  expect(bad.ok === false && bad.error.code).toMatch(/VALIDATION_FAILED|FORBIDDEN/);
});
