// Two nodes sharing a store, joined by a real Redis (started here): members spread over both see
// one room; the presenter on node A leads followers on node B; revoking a session on A closes its
// socket on B; Redis killed and restarted, delivery resumes.
import type { Socket as ClientSocket } from 'socket.io-client';
import { TestRedis } from '../helpers/redis';
import { call, connect, lastPasswords, nextEvent, socketFor, startTestServer, waitFor, type TestClient, type TestServer } from '../helpers/server';

let redis: TestRedis;
let a: TestServer;
let b: TestServer;
let clinicianA: TestClient;
let pathologistB: TestClient;
let adminA: TestClient;
let caseId: string;
const sockets: ClientSocket[] = [];

async function loginOn(node: TestServer, email: string): Promise<TestClient> {
  const c = node.client();
  await c.login(email, lastPasswords.get(email)!).expect(200);
  return c;
}

async function socketOn(node: TestServer, client: TestClient): Promise<ClientSocket> {
  const s = await connect(socketFor(node.url, node.ca, client));
  sockets.push(s);
  return s;
}

beforeAll(async () => {
  redis = await TestRedis.start();
  a = await startTestServer({ REDIS_URL: redis.url });
  adminA = (await a.demoLogin('site_admin')).client;
  clinicianA = (await a.demoLogin('clinician')).client;
  await a.demoLogin('pathologist');
  b = await startTestServer({ REDIS_URL: redis.url }, { dataDir: a.dataDir });
  pathologistB = await loginOn(b, 'pathologist@demo.local');
  caseId = (await clinicianA.post('/api/cases', { title: 'Across nodes' }).expect(201)).body.case.id;
}, 60_000);

afterAll(async () => {
  for (const s of sockets) s.disconnect();
  await b?.close();
  await a?.close();
  await redis?.kill();
});

test('presence and follow mode cross nodes', async () => {
  const presenter = await socketOn(a, clinicianA);
  const follower = await socketOn(b, pathologistB);
  await call(presenter, 'room:join', { caseId });
  const joined = await call<{ members: { name: string }[] }>(follower, 'room:join', { caseId });
  expect(joined.ok && joined.data.members.map((m) => m.name).sort()).toEqual(['Demo Clinician', 'Demo Pathologist']);

  const changed = nextEvent<{ presenter: { name: string } }>(follower, 'presenter:changed');
  expect((await call(presenter, 'presenter:take', { caseId })).ok).toBe(true);
  expect((await changed).presenter.name).toBe('Demo Clinician');

  const moved = nextEvent<{ viewport: { zoom: number } }>(follower, 'viewport', (p) => p.viewport.zoom === 7);
  presenter.emit('viewport:update', { caseId, materialId: 'MaterialMaterialMateri', center: { x: 0.1, y: 0.2 }, zoom: 7, rotation: 0 });
  expect((await moved).viewport.zoom).toBe(7);

  // The presenter role is one for both nodes: a second clinician login on B cannot silently win a race.
  const clinicianB = await loginOn(b, 'clinician@demo.local');
  const second = await socketOn(b, clinicianB);
  await call(second, 'room:join', { caseId });
  const members = await call<{ members: unknown[] }>(second, 'room:join', { caseId });
  expect(members.ok && members.data.members).toHaveLength(3);
});

test('chat written on node A reaches node B after it is durable', async () => {
  const writer = await socketOn(a, clinicianA);
  const reader = await socketOn(b, pathologistB);
  await call(writer, 'room:join', { caseId });
  await call(reader, 'room:join', { caseId });
  const heard = nextEvent<{ message: { text: string; seq: number } }>(reader, 'chat:message');
  const sent = await call<{ seq: number }>(writer, 'chat:send', { caseId, text: 'Seen from node B?', clientId: 'cross-node-1' });
  expect(sent.ok).toBe(true);
  const message = (await heard).message;
  expect(message.text).toBe('Seen from node B?');
  // Node B reads the same durable stream from the shared store.
  const sync = await call<{ messages: { text: string }[] }>(reader, 'chat:sync', { caseId, afterSeq: 0 });
  expect(sync.ok && sync.data.messages.map((m) => m.text)).toContain('Seen from node B?');
});

test('a session revoked on node A loses its socket on node B within a second', async () => {
  const s = await socketOn(b, pathologistB);
  await call(s, 'room:join', { caseId });
  const users = (await adminA.get('/api/admin/users').expect(200)).body.users as { id: string; email: string }[];
  const id = users.find((u) => u.email === 'pathologist@demo.local')!.id;
  const ended = nextEvent<{ reason: string }>(s, 'session:ended', () => true, 1000);
  const started = Date.now();
  await adminA.post(`/api/admin/users/${id}/revoke-sessions`).expect(200);
  expect((await ended).reason).toBe('revoked');
  await waitFor(() => s.disconnected, 'the socket on node B is closed', 1000);
  expect(Date.now() - started).toBeLessThan(1000);
  pathologistB = await loginOn(b, 'pathologist@demo.local');
});

test('Redis killed and restarted: presence and delivery resume', async () => {
  const presenter = await socketOn(a, clinicianA);
  const follower = await socketOn(b, pathologistB);
  await call(presenter, 'room:join', { caseId });
  await call(follower, 'room:join', { caseId });
  await call(presenter, 'presenter:take', { caseId });

  await redis.kill();
  // While Redis is down the node says it is not ready, so a load balancer can route around it.
  await waitFor(async () => (await a.client().get('/readyz')).status === 503, 'node A reports not ready without Redis', 10_000, 100);
  await redis.restart();
  await waitFor(async () => (await a.client().get('/readyz')).status === 200, 'node A is ready again', 15_000, 100);
  // The adapter reconnects by itself; the presenter role was volatile state and may be gone.
  await waitFor(async () => {
    const took = await call(presenter, 'presenter:take', { caseId });
    return took.ok;
  }, 'node A can write room state again', 15_000, 200);
  await waitFor(async () => {
    const moved = nextEvent<{ viewport: { zoom: number } }>(follower, 'viewport', (p) => p.viewport.zoom === 3, 500).then(() => true, () => false);
    presenter.emit('viewport:update', { caseId, materialId: 'MaterialMaterialMateri', center: { x: 0.5, y: 0.5 }, zoom: 3, rotation: 0 });
    return moved;
  }, 'viewport updates cross nodes again', 15_000, 100);
});
