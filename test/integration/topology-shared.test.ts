// Two nodes on one store, joined by a real Redis (started here): what must be global is global.
// HTTP rate limits count in Redis (a client spread over nodes gets one budget, and a Redis outage
// falls back to per-node counters instead of failing requests); the login lockout counts in the
// store (failures landing on both nodes at once lock the account once); and a node drained with
// SIGTERM's code path tells its clients to move, answers what it already received, refuses new
// joins, and finishes as soon as its clients have gone.
import type { Socket as ClientSocket } from 'socket.io-client';
import { TestRedis } from '../helpers/redis';
import { call, connect, lastPasswords, nextEvent, socketFor, startTestServer, waitFor, type TestClient, type TestServer } from '../helpers/server';

let redis: TestRedis;
let a: TestServer;
let b: TestServer;
const sockets: ClientSocket[] = [];
const LOGIN_PER_IP = 6;

/** A login attempt from `ip` (the nodes trust one proxy hop, as behind HAProxy). */
async function attempt(node: TestServer, ip: string, email: string, password: string): Promise<{ status: number; code?: string }> {
  const c = node.client();
  const token = await c.csrf();
  const res = await c.agent.post('/api/auth/login').set('X-CSRF-Token', token).set('X-Forwarded-For', ip).send({ email, password });
  return { status: res.status, code: res.body?.error?.code };
}

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
  const env = { REDIS_URL: redis.url, TRUST_PROXY_HOPS: '1', SHUTDOWN_GRACE_SECONDS: '20' };
  const rateLimits = { loginPerIpPerMinute: LOGIN_PER_IP };
  a = await startTestServer(env, { rateLimits });
  await a.demoLogin('clinician');
  await a.demoLogin('pathologist');
  b = await startTestServer(env, { dataDir: a.dataDir, rateLimits });
}, 60_000);

afterAll(async () => {
  for (const s of sockets) s.disconnect();
  await b?.close();
  await a?.close();
  await redis?.kill();
});

test('the per-IP login budget is one for both nodes', async () => {
  const ip = '203.0.113.10';
  const results = [];
  // Alternate nodes, as a load balancer would: each node alone would allow LOGIN_PER_IP.
  for (let i = 0; i < LOGIN_PER_IP + 2; i++) results.push(await attempt(i % 2 === 0 ? a : b, ip, 'nobody@demo.local', 'wrong password here'));
  expect(results.slice(0, LOGIN_PER_IP).map((r) => r.status)).toEqual(Array(LOGIN_PER_IP).fill(401));
  expect(results.slice(LOGIN_PER_IP).map((r) => r.code)).toEqual(['RATE_LIMITED', 'RATE_LIMITED']);
  // Another address has its own budget.
  expect((await attempt(b, '203.0.113.11', 'nobody@demo.local', 'wrong password here')).status).toBe(401);
});

test('failures on both nodes at once lock the account once, for both nodes', async () => {
  const email = 'pathologist@demo.local';
  // Five failures (the default threshold), concurrently, spread over both nodes and addresses.
  const failures = await Promise.all([a, b, a, b, a].map((node, i) => attempt(node, `198.51.100.${i + 1}`, email, `wrong-password-${i}`)));
  expect(failures.map((f) => f.code)).toEqual(Array(5).fill('INVALID_CREDENTIALS'));
  // The right password is refused on either node now: the lock lives in the shared store.
  expect((await attempt(b, '198.51.100.20', email, lastPasswords.get(email)!)).code).toBe('INVALID_CREDENTIALS');
  expect((await attempt(a, '198.51.100.21', email, lastPasswords.get(email)!)).code).toBe('INVALID_CREDENTIALS');
  const admin = await a.demoLogin('site_admin');
  const alerts = await admin.client.get('/api/admin/alerts?days=1').expect(200);
  expect(alerts.body.lockouts.filter((l: { email: string }) => l.email === email)).toHaveLength(1);
});

test('with Redis down the limits fall back to each node and requests still get answers', async () => {
  await redis.kill();
  try {
    const outcome = await attempt(a, '203.0.113.30', 'nobody@demo.local', 'wrong password here');
    // Not a 500 and not a hang: the node's own counters take over.
    expect(outcome.status).toBe(401);
    const burst = [];
    for (let i = 0; i < LOGIN_PER_IP + 1; i++) burst.push(await attempt(a, '203.0.113.31', 'nobody@demo.local', 'wrong password here'));
    expect(burst.at(-1)!.code).toBe('RATE_LIMITED');
  } finally {
    await redis.restart();
  }
  await waitFor(async () => (await a.client().get('/readyz')).status === 200 && (await b.client().get('/readyz')).status === 200, 'both nodes see Redis again', 15_000, 100);
});

test('a draining node moves its clients, answers what it received, and stops as soon as they have gone', async () => {
  const clinician = await loginOn(a, 'clinician@demo.local');
  const caseId = (await clinician.post('/api/cases', { title: 'Drain' }).expect(201)).body.case.id as string;
  const onA = await socketOn(a, clinician);
  expect((await call(onA, 'room:join', { caseId })).ok).toBe(true);
  const stubborn = await socketOn(a, clinician);
  expect((await call(stubborn, 'room:join', { caseId })).ok).toBe(true);
  // A member on the other node, who must not notice node A leaving.
  const onB = await socketOn(b, await loginOn(b, 'clinician@demo.local'));
  expect((await call(onB, 'room:join', { caseId })).ok).toBe(true);

  const told = nextEvent<{ reconnect: boolean }>(onA, 'server:draining');
  // A write sent just before SIGTERM: it must be persisted and acknowledged, not cut off.
  const inFlight = call<{ seq: number; text: string }>(onA, 'chat:send', { caseId, text: 'sent as the node drains', clientId: 'drain-write-0001' });
  const started = Date.now();
  const drained = a.server.drain();
  expect((await told).reconnect).toBe(true);
  const ack = await inFlight;
  expect(ack.ok).toBe(true);

  // While draining: the node takes no new room joins, and no new connections.
  const refused = await call(stubborn, 'room:join', { caseId: 'AAAAAAAAAAAAAAAAAAAAAA' });
  expect(!refused.ok && refused.error.code).toBe('SERVER_DRAINING');
  const late = socketFor(a.url, a.ca, clinician);
  await expect(connect(late)).rejects.toBeTruthy();
  late.close();
  expect((await a.client().get('/readyz').catch(() => ({ status: 0 }))).status).not.toBe(200);

  // The clients move (what a client does on server:draining), and the node stops well before
  // its 20 s grace period.
  onA.disconnect();
  stubborn.disconnect();
  await drained;
  expect(Date.now() - started).toBeLessThan(10_000);
  expect(onB.connected).toBe(true);
  expect((await call(onB, 'chat:sync', { caseId, afterSeq: 0 })).ok).toBe(true);

  const moved = await socketOn(b, await loginOn(b, 'clinician@demo.local'));
  const rejoined = await call<{ chat: { text: string; seq: number }[] }>(moved, 'room:join', { caseId, lastChatSeq: 0 });
  expect(rejoined.ok && rejoined.data.chat.map((m) => m.text)).toEqual(['sent as the node drains']);
  expect(ack.ok && rejoined.ok && rejoined.data.chat[0].seq).toBe(ack.ok && ack.data.seq);
}, 60_000);

test('a node whose Redis is gone still drains and exits (nothing waits for a Redis that is not coming back)', async () => {
  const lonely = await TestRedis.start();
  const c = await startTestServer({ REDIS_URL: lonely.url, SHUTDOWN_GRACE_SECONDS: '2', MEDIASOUP_WORKERS: '0' }, { dataDir: a.dataDir });
  try {
    const clinician = await loginOn(c, 'clinician@demo.local');
    const caseId = (await clinician.post('/api/cases', { title: 'Redis gone' }).expect(201)).body.case.id as string;
    const member = await connect(socketFor(c.url, c.ca, clinician));
    sockets.push(member);
    expect((await call(member, 'room:join', { caseId })).ok).toBe(true);
    await lonely.kill();
    const started = Date.now();
    // The member ignores server:draining; the grace period (2 s) ends it, then the node stops.
    await c.server.drain();
    expect(Date.now() - started).toBeLessThan(8000);
    await waitFor(() => member.disconnected, 'the member was disconnected');
  } finally {
    await c.close();
    await lonely.kill();
  }
}, 60_000);
