// Audio and video through the real mediasoup worker: WebRTC peers in child processes (libwebrtc via
// @roamhq/wrtc, driven by mediasoup-client) complete ICE, DTLS and SRTP against the server on
// 127.0.0.1 and exchange RTP over the real Socket.IO signalling.
import type { Socket as ClientSocket } from 'socket.io-client';
import { MediaPeerProcess } from '../helpers/media';
import { call, connect, startTestServer, waitFor, type TestClient, type TestServer } from '../helpers/server';

jest.setTimeout(90_000);

let t: TestServer;
let clinician: TestClient;
let pathologist: TestClient;
let admin: TestClient;
let caseId: string;
const peers: MediaPeerProcess[] = [];
const sockets: ClientSocket[] = [];

async function peer(client: TestClient, join = true): Promise<MediaPeerProcess> {
  const p = await MediaPeerProcess.start(t, client);
  peers.push(p);
  if (join) {
    await p.cmd('joinRoom', { caseId });
    await p.cmd('joinMedia');
  }
  return p;
}

function media() {
  const m = t.server.realtime.media;
  if (!m) throw new Error('media is off');
  return m;
}

async function transportsInRouter(): Promise<number> {
  const room = media().room(caseId);
  if (!room) return 0;
  const dump = (await room.router.dump()) as unknown as { transportIds: string[] };
  return dump.transportIds.length;
}

beforeAll(async () => {
  t = await startTestServer({ TURN_URLS: 'turn:turn.example.org:3478?transport=udp,turns:turn.example.org:443?transport=tcp', TURN_SECRET: 'test-turn-secret-0123456789' });
  clinician = (await t.demoLogin('clinician')).client;
  pathologist = (await t.demoLogin('pathologist')).client;
  admin = (await t.demoLogin('site_admin')).client;
  caseId = (await clinician.post('/api/cases', { title: 'Media case' }).expect(201)).body.case.id;
});
afterEach(async () => {
  await Promise.all(peers.splice(0).map((p) => p.close()));
  for (const s of sockets.splice(0)) s.disconnect();
  // Leaving closes everything: no transport of a departed peer lingers in the router.
  await waitFor(async () => (await transportsInRouter()) === 0, 'transports of departed peers closed');
});
afterAll(() => t.close());

test('two peers send and receive audio and video both ways over DTLS/SRTP; a late joiner receives every existing producer', async () => {
  const a = await peer(clinician);
  await a.cmd('produce', { source: 'mic' });
  await a.cmd('produce', { source: 'camera' });
  const b = await peer(pathologist);
  await b.cmd('produce', { source: 'mic' });
  await b.cmd('produce', { source: 'camera' });

  // B joined late: it got A's two producers from media:join; A got B's from media:producer:added.
  await b.waitForFlow('B receives A audio and video', 2);
  await a.waitForFlow('A receives B audio and video', 2);
  expect((await b.stats()).map((s) => s.source).sort()).toEqual(['camera', 'mic']);
  // Video is decoded, not only received (the first keyframe can take a second request to arrive).
  await waitFor(async () => (await b.stats()).find((s) => s.kind === 'video')!.frames > 0, 'B decodes A video frames', 20_000, 100);

  // The server's side agrees: DTLS connected and SRTP flowing on each transport.
  const room = media().room(caseId)!;
  for (const p of room.peers()) {
    for (const transport of p.transports.values()) {
      expect(transport.dtlsState).toBe('connected');
      const [stats] = await transport.getStats();
      expect(stats!.bytesReceived + stats!.bytesSent).toBeGreaterThan(0);
    }
  }

  // A third member joining later still gets all four producers.
  const c = await peer(admin);
  await c.waitForFlow('C receives everything already there', 4);

  // Leaving: the others are told, and nothing of C stays in the router.
  const closedBefore = a.events.filter((e) => e.event === 'media:producer:closed').length;
  await b.cmd('leaveMedia');
  await a.waitForEvent('media:consumer:closed', () => true, 'A told B left');
  await waitFor(() => a.events.filter((e) => e.event === 'media:producer:closed').length >= closedBefore + 2, 'both of B producers announced closed');
  expect(media().room(caseId)!.peers().map((p) => p.identity.socketId).sort()).toEqual([a.socketId, c.socketId].sort());
});

test('join returns time-limited TURN credentials in the coturn REST scheme', async () => {
  const a = await peer(clinician, false);
  await a.cmd('joinRoom', { caseId });
  const joined = await a.cmd<{ iceServers: { urls: string[]; username: string; credential: string }[] }>('joinMedia');
  expect(joined.iceServers).toHaveLength(1);
  const [server] = joined.iceServers;
  expect(server!.urls).toEqual(['turn:turn.example.org:3478?transport=udp', 'turns:turn.example.org:443?transport=tcp']);
  const [expiry] = server!.username.split(':');
  const ttl = Number(expiry) - Math.floor(t.clock.now().getTime() / 1000);
  expect(ttl).toBeGreaterThan(3500);
  expect(ttl).toBeLessThanOrEqual(3600);
  const { createHmac } = await import('node:crypto');
  expect(server!.credential).toBe(createHmac('sha1', 'test-turn-secret-0123456789').update(server!.username).digest('base64'));
});

test('mute: a paused producer stops the flow and everyone is told; resume restarts it; camera off closes it', async () => {
  const a = await peer(clinician);
  await a.cmd('produce', { source: 'camera' });
  const b = await peer(pathologist);
  await b.waitForFlow('B receives A camera', 1, 'video');

  await a.cmd('pause', { source: 'camera' });
  await b.waitForEvent('media:producer:state', (p) => p.paused === true, 'B told A paused');
  // Paused means no RTP: the byte count stops moving (two reads a good while apart agree).
  const stopped = await waitFor(
    async () => {
      const first = (await b.stats())[0]!.bytes;
      const later = await waitFor(async () => {
        const s = await b.stats();
        return s[0]!.bytes === first ? null : s[0]!.bytes;
      }, 'no growth', 1500, 300).catch(() => first);
      return later === first ? first : null;
    },
    'flow stopped after pause',
    15_000,
    100,
  );
  expect(stopped).toBeGreaterThan(0);

  await a.cmd('resume', { source: 'camera' });
  await b.waitForEvent('media:producer:state', (p) => p.paused === false, 'B told A resumed');
  await b.waitForFlow('flow back after resume', 1, 'video');

  await a.cmd('closeProducer', { source: 'camera' });
  await b.waitForEvent('media:consumer:closed', () => true, 'B consumer closed with A camera');
  expect(media().room(caseId)!.peers().find((p) => p.identity.socketId === a.socketId)!.producers.size).toBe(0);
});

test('simulcast camera: the consumer is simulcast and switches to the layer the viewer asks for', async () => {
  const a = await peer(clinician);
  await a.cmd('produce', { source: 'camera', simulcast: true });
  const b = await peer(pathologist);
  await b.waitForFlow('B receives the simulcast camera', 1, 'video');
  const consumed = await b.waitForEvent('consumed', (p) => p.kind === 'video');
  expect(consumed.payload.type).toBe('simulcast');
  const consumerId = consumed.payload.consumerId as string;
  const serverConsumer = () => media().room(caseId)!.peers().find((p) => p.identity.socketId === b.socketId)!.consumers.get(consumerId)!;
  // Ask for the lowest layer (a thumbnail): the server switches to spatial layer 0.
  await waitFor(() => serverConsumer().currentLayers, 'a layer is being forwarded', 20_000);
  await b.cmd('layers', { consumerId, spatialLayer: 0 });
  await waitFor(() => serverConsumer().currentLayers?.spatialLayer === 0, 'switched to spatial layer 0', 20_000);
  expect(serverConsumer().preferredLayers?.spatialLayer).toBe(0);
  // Asking for the top layer moves up as soon as a higher layer is received.
  await b.cmd('layers', { consumerId, spatialLayer: 2 });
  await waitFor(() => (serverConsumer().currentLayers?.spatialLayer ?? 0) > 0, 'moved up a layer', 30_000);
});

test('only members may use media, and only on their own objects; bad signalling gets typed errors and breaks nothing', async () => {
  const a = await peer(clinician);
  await a.cmd('produce', { source: 'camera' });
  const aPeer = media().room(caseId)!.peers().find((p) => p.identity.socketId === a.socketId)!;
  const aTransportId = [...aPeer.transports.keys()][0]!;
  const aProducerId = [...aPeer.producers.keys()][0]!;

  // Not in the room: refused.
  const outsider = await connect(t.socket(pathologist));
  sockets.push(outsider);
  expect(await call(outsider, 'media:join', { roomId: caseId })).toMatchObject({ ok: false, error: { code: 'FORBIDDEN' } });

  const b = await peer(pathologist);
  const raw = (event: string, payload: unknown) => b.cmd<{ ok: boolean; error?: { code: string } }>('raw', { event, payload });
  // Another peer's transport and producer are unknown to B.
  expect(await raw('media:transport:connect', { roomId: caseId, transportId: aTransportId, dtlsParameters: { role: 'client', fingerprints: [{ algorithm: 'sha-256', value: Array(32).fill('AB').join(':') }] } })).toMatchObject({ ok: false, error: { code: 'NOT_FOUND' } });
  expect(await raw('media:producer:close', { roomId: caseId, producerId: aProducerId })).toMatchObject({ ok: false, error: { code: 'NOT_FOUND' } });
  expect(await raw('media:producer:pause', { roomId: caseId, producerId: aProducerId })).toMatchObject({ ok: false, error: { code: 'NOT_FOUND' } });
  // Unknown keys, wrong types, malformed RTP parameters.
  expect(await raw('media:join', { roomId: caseId, extra: 1 })).toMatchObject({ ok: false, error: { code: 'VALIDATION_FAILED' } });
  expect(await raw('media:transport:create', { roomId: caseId, direction: 'sideways' })).toMatchObject({ ok: false, error: { code: 'VALIDATION_FAILED' } });
  const bPeer = media().room(caseId)!.peers().find((p) => p.identity.socketId === b.socketId)!;
  const bSend = [...bPeer.transports.values()].find((tr) => (tr.appData as { direction: string }).direction === 'send')!;
  expect(await raw('media:produce', { roomId: caseId, transportId: bSend.id, kind: 'video', source: 'camera', rtpParameters: { codecs: [] } })).toMatchObject({ ok: false, error: { code: 'VALIDATION_FAILED' } });
  expect(await raw('media:produce', { roomId: caseId, transportId: bSend.id, kind: 'video', source: 'camera', rtpParameters: { codecs: [{ mimeType: 'video/NOPE', payloadType: 101, clockRate: 90000 }], encodings: [{ ssrc: 1 }] } })).toMatchObject({ ok: false, error: { code: 'VALIDATION_FAILED' } });
  expect(await raw('media:produce', { roomId: caseId, transportId: bSend.id, kind: 'audio', source: 'camera', rtpParameters: { codecs: [{ mimeType: 'audio/opus', payloadType: 100, clockRate: 48000, channels: 2 }] } })).toMatchObject({ ok: false, error: { code: 'VALIDATION_FAILED' } });
  expect(await raw('media:consume', { roomId: caseId, transportId: bSend.id, producerId: aProducerId, rtpCapabilities: { codecs: [] } })).toMatchObject({ ok: false, error: { code: 'CONFLICT' } });
  expect(await raw('media:consumer:layers', { roomId: caseId, consumerId: aProducerId, spatialLayer: 7 })).toMatchObject({ ok: false, error: { code: 'VALIDATION_FAILED' } });
  // Limits: a fifth transport is refused.
  for (let i = 0; i < 2; i++) expect(await raw('media:transport:create', { roomId: caseId, direction: 'recv' })).toMatchObject({ ok: true });
  expect(await raw('media:transport:create', { roomId: caseId, direction: 'recv' })).toMatchObject({ ok: false, error: { code: 'LIMIT_REACHED' } });
  // A flood is rate-limited, not served.
  const flood = await Promise.all(Array.from({ length: 320 }, () => raw('media:producer:pause', { roomId: caseId, producerId: aProducerId })));
  expect(flood.some((r) => r.error?.code === 'RATE_LIMITED')).toBe(true);

  // The worker and A's media are unharmed.
  expect(media().pool.healthy()).toBe(true);
  expect(aPeer.producers.get(aProducerId)!.closed).toBe(false);
});

test('a member whose connection drops rebuilds its media on reconnect; the others get its new producers', async () => {
  const a = await peer(clinician);
  await a.cmd('produce', { source: 'camera' });
  const b = await peer(pathologist);
  await b.waitForFlow('B receives A camera', 1, 'video');
  const before = b.events.filter((e) => e.event === 'media:producer:added').length;
  const { socketId } = await a.cmd<{ socketId: string }>('reconnect');
  expect(socketId).not.toBe(a.socketId);
  // B was told the old camera closed and a new one was added, and receives it.
  await b.waitForEvent('media:producer:closed', () => true, 'B told the old camera closed');
  await waitFor(() => b.events.filter((e) => e.event === 'media:producer:added').length > before, 'B told about the new camera');
  await b.waitForFlow('B receives A camera again', 1, 'video');
  // Only the new connection's peer remains on the server.
  const socketIds = media().room(caseId)!.peers().map((p) => p.identity.socketId);
  expect(socketIds).toContain(socketId);
  expect(socketIds).not.toContain(a.socketId);
});

test('a worker that dies: the room moves to a new worker, clients rebuild and media flows again; chat is untouched', async () => {
  const a = await peer(clinician);
  await a.cmd('produce', { source: 'camera' });
  const b = await peer(pathologist);
  await b.cmd('produce', { source: 'mic' });
  await b.waitForFlow('B receives A camera before the kill', 1, 'video');
  const chat = await connect(t.socket(admin));
  sockets.push(chat);
  expect((await call(chat, 'room:join', { caseId })).ok).toBe(true);

  const oldPid = media().room(caseId)!.workerPid;
  process.kill(oldPid, 'SIGKILL');
  await a.waitForEvent('media:restart', () => true, 'A told to rebuild');
  await b.waitForEvent('rebuilt', () => true, 'B rebuilt its transports', 30_000);
  await a.waitForEvent('rebuilt', () => true, 'A rebuilt its transports', 30_000);
  expect(media().room(caseId)!.workerPid).not.toBe(oldPid);
  await b.waitForFlow('B receives A camera again', 1, 'video', 30_000);
  await a.waitForFlow('A receives B mic again', 1, 'audio', 30_000);
  await waitFor(() => media().pool.healthy(), 'the pool replaced the dead worker');
  // The collaboration channel never noticed.
  const sent = await call<{ seq: number }>(chat, 'chat:send', { caseId, clientId: 'kill-test-0000000001', text: 'still here' });
  expect(sent.ok).toBe(true);
  expect(chat.connected).toBe(true);
});

test('media start and stop are audited', async () => {
  const a = await peer(clinician);
  await a.cmd('produce', { source: 'mic' });
  await a.cmd('closeProducer', { source: 'mic' });
  const siteId = (await clinician.get('/api/me').expect(200)).body.user.siteId as string;
  const records = await waitFor(async () => {
    const chain = await t.server.store.audit.listChain(siteId, 0, 100_000);
    return chain.some((r) => r.type === 'media.stop') ? chain : null;
  }, 'media.stop audit record');
  // Earlier tests of this file started microphones too: this test's is the last one started.
  const start = records.filter((r) => r.type === 'media.start' && r.details.source === 'mic').pop();
  expect(start).toMatchObject({ action: 'E', objects: [{ type: 'room', id: caseId }], details: { kind: 'audio', source: 'mic' } });
  const stop = await waitFor(async () => (await t.server.store.audit.listChain(siteId, 0, 100_000)).find((r) => r.type === 'media.stop' && r.details.producerId === start!.details.producerId), 'the stop of this microphone');
  // The stop names the same stream and how long it ran (usage statistics sum it as media minutes).
  expect(typeof stop!.details.durationSeconds).toBe('number');
  expect(stop!.details.durationSeconds as number).toBeGreaterThanOrEqual(0);
});
