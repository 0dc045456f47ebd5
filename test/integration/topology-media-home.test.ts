// The media home's rules (src/media/remote.ts) with two real nodes in this process, each with
// one mediasoup worker, and a real Redis: the first node to open a room's media hosts it and the
// other forwards to it; a member leaving through the other node leaves on the home; if another
// node ends up holding the claim (Redis lost it and someone else took it), the old home gives way
// and tells its members to rebuild; and with Redis down, media requests are refused at once with
// MEDIA_UNAVAILABLE instead of hanging. (WebRTC media itself: topology.test.ts.)
import dgram from 'node:dgram';
import { createClient } from 'redis';
import type { Socket as ClientSocket } from 'socket.io-client';
import { TestRedis } from '../helpers/redis';
import { call, connect, lastPasswords, nextEvent, socketFor, startTestServer, waitFor, type TestClient, type TestServer } from '../helpers/server';

jest.setTimeout(60_000);

let redis: TestRedis;
let a: TestServer;
let b: TestServer;
let clinicianA: TestClient;
let pathologistB: TestClient;
let caseId: string;
const sockets: ClientSocket[] = [];

/** A UDP and TCP port free on 127.0.0.1, for one node's single worker. */
function freeMediaPort(): Promise<number> {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    s.bind(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
}

async function mediaEnv(): Promise<Record<string, string>> {
  const port = await freeMediaPort();
  return { REDIS_URL: redis.url, MEDIASOUP_WORKERS: '1', MEDIASOUP_LISTEN_IP: '127.0.0.1', MEDIASOUP_ANNOUNCED_IP: '127.0.0.1', RTC_MIN_PORT: String(port), RTC_MAX_PORT: String(port) };
}

async function socketOn(node: TestServer, client: TestClient): Promise<ClientSocket> {
  const s = await connect(socketFor(node.url, node.ca, client));
  sockets.push(s);
  expect((await call(s, 'room:join', { caseId })).ok).toBe(true);
  return s;
}

const hosted = (node: TestServer) => node.server.realtime.media?.room(caseId)?.peers().map((p) => p.identity.socketId).sort() ?? null;

beforeAll(async () => {
  redis = await TestRedis.start();
  a = await startTestServer(await mediaEnv());
  clinicianA = (await a.demoLogin('clinician')).client;
  await a.demoLogin('pathologist');
  b = await startTestServer(await mediaEnv(), { dataDir: a.dataDir });
  pathologistB = b.client();
  await pathologistB.login('pathologist@demo.local', lastPasswords.get('pathologist@demo.local')!).expect(200);
  caseId = (await clinicianA.post('/api/cases', { title: 'Media home' }).expect(201)).body.case.id;
}, 60_000);

afterAll(async () => {
  for (const s of sockets) s.disconnect();
  await b?.close();
  await a?.close();
  await redis?.kill();
});

test('the first node to open a room hosts its media; the other forwards to it, joins and leaves included', async () => {
  const onA = await socketOn(a, clinicianA);
  const onB = await socketOn(b, pathologistB);
  expect((await call(onA, 'media:join', { roomId: caseId })).ok).toBe(true);
  const joined = await call<{ routerRtpCapabilities: unknown }>(onB, 'media:join', { roomId: caseId });
  expect(joined.ok).toBe(true);
  // Both peers live on node A; node B opened nothing.
  expect(hosted(a)).toEqual([onA.id, onB.id].sort());
  expect(hosted(b)).toBeNull();
  expect(await a.server.realtime.mediaHome!.homeOf(caseId)).toBe(a.server.realtime.nodeId);
  // A transport requested through node B is created on node A's worker.
  const transport = await call<{ id: string; iceCandidates: { port: number }[] }>(onB, 'media:transport:create', { roomId: caseId, direction: 'recv' });
  expect(transport.ok).toBe(true);
  expect(a.server.realtime.media!.room(caseId)!.peers().find((p) => p.identity.socketId === onB.id)!.transports.size).toBe(1);
  // Leaving through node B (here: the socket goes away) ends the peer on node A.
  onB.disconnect();
  await waitFor(() => hosted(a)?.length === 1, 'the departed member is gone from the home');
  onA.disconnect();
});

test('a home that finds its claim held by another node gives way: its members are told to rebuild', async () => {
  const onA = await socketOn(a, clinicianA);
  const onB = await socketOn(b, pathologistB);
  await waitFor(async () => (await call(onA, 'media:join', { roomId: caseId })).ok, 'node A hosts the room again');
  expect((await call(onB, 'media:join', { roomId: caseId })).ok).toBe(true);
  const home = await a.server.realtime.mediaHome!.homeOf(caseId);
  expect(home).toBe(a.server.realtime.nodeId);
  const toldA = nextEvent<{ roomId: string; reason: string }>(onA, 'media:restart');
  const toldB = nextEvent<{ roomId: string; reason: string }>(onB, 'media:restart');
  // As if Redis had lost the key and node B had claimed the room meanwhile.
  const raw = createClient({ url: redis.url });
  await raw.connect();
  await raw.set(`cc:media:home:${caseId}`, b.server.realtime.nodeId, { PX: 15_000 });
  await raw.quit();
  expect(await toldA).toEqual({ roomId: caseId, reason: 'moved' });
  expect((await toldB).reason).toBe('moved');
  await waitFor(() => hosted(a) === null, 'node A closed its router for the room');
  // The members' rebuild goes to node B now.
  expect((await call(onA, 'media:join', { roomId: caseId })).ok).toBe(true);
  expect(hosted(b)).toEqual([onA.id]);
  onA.disconnect();
  onB.disconnect();
});

test('with Redis down, media requests are refused at once with MEDIA_UNAVAILABLE', async () => {
  const onB = await socketOn(b, pathologistB);
  await redis.kill();
  try {
    const started = Date.now();
    const answer = await call(onB, 'media:join', { roomId: caseId });
    expect(!answer.ok && answer.error.code).toBe('MEDIA_UNAVAILABLE');
    expect(Date.now() - started).toBeLessThan(3000);
  } finally {
    await redis.restart();
  }
});
