// The production topology as processes (scripts/topology.mjs): a real redis-server, three nodes
// (`node dist/main.js`) on one store, and Debian's HAProxy in front with the shipped
// deploy/haproxy/haproxy.cfg. Clients go through the proxy and land on different nodes; the room
// is one room; media flows between WebRTC peers on different nodes (the room's media home hosts
// it); then a node is killed with SIGKILL and its clients resume on another node with nothing
// acknowledged lost, and media is rebuilt there; finally a node is drained with SIGTERM: its
// clients move, the write in flight is kept, the room's media moves, and the node exits.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { chromium } from 'playwright-core';
import sharp from 'sharp';
import type { Socket as ClientSocket } from 'socket.io-client';
import { MediaPeerProcess } from '../helpers/media';
import { call, connect, cookieHeaderOf, nextEvent, RUN_LOG_DIR, socketFor, TestClient, waitFor, type TestServer } from '../helpers/server';

jest.setTimeout(120_000);

const ROOT = path.resolve(__dirname, '..', '..');

interface TopologyNode {
  name: string;
  pid: number;
  url: string;
  metricsUrl: string;
  log: string;
}
interface Topology {
  url: string;
  publicUrl: string;
  proxy: { log: string };
  httpUrl: string;
  ca: string;
  dir: string;
  nodes: TopologyNode[];
  media: boolean;
  demoAccounts: { role: string; email: string; oneTimePassword: string }[];
}

let topo: Topology;
let runner: ChildProcess;
let ca: string;
let clinician: TestClient;
let pathologist: TestClient;
let admin: TestClient;
let caseId: string;
let materialId: string;
const sockets: ClientSocket[] = [];
const peers: MediaPeerProcess[] = [];
let n = 0;
const clientId = (label: string) => `${label}-${Date.now()}-${n++}`.slice(0, 64);

function startTopology(): Promise<{ child: ChildProcess; info: Topology }> {
  const child = spawn(process.execPath, [path.join(ROOT, 'scripts', 'topology.mjs'), '--json', '--nodes', '3'], {
    cwd: ROOT,
    env: { ...process.env, SHUTDOWN_GRACE_SECONDS: '5', LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    let buffer = '';
    child.stdout!.on('data', (chunk) => {
      buffer += chunk;
      const line = buffer.split('\n')[0];
      if (buffer.includes('\n')) resolve({ child, info: JSON.parse(line) as Topology });
    });
    child.once('exit', (code) => reject(new Error(`scripts/topology.mjs exited with ${code}`)));
  });
}

/** Logs in through the proxy with a demo account's one-time password and sets a new one. */
async function account(role: string): Promise<TestClient> {
  const demo = topo.demoAccounts.find((a) => a.role === role)!;
  const client = new TestClient(topo.url, ca);
  await client.login(demo.email, demo.oneTimePassword).expect(200);
  const newPassword = `topology-horse-battery-${Math.random().toString(36).slice(2)}`;
  await client.post('/api/auth/password', { currentPassword: demo.oneTimePassword, newPassword }).expect(200);
  return client;
}

function metric(url: string, name: string, labels = ''): Promise<number> {
  return new Promise((resolve) => {
    http
      .get(url, (res) => {
        let body = '';
        res.on('data', (c) => (body += c));
        res.on('end', () => {
          const line = body.split('\n').find((l) => l.startsWith(`${name}${labels} `));
          resolve(line ? Number(line.split(' ')[1]) : NaN);
        });
      })
      .on('error', () => resolve(NaN));
  });
}

const socketCounts = () => Promise.all(topo.nodes.map((node) => metric(node.metricsUrl, 'sockets_connected')));

/** Connects through the proxy until the socket lands on node `want` (the proxy balances by least connections). */
async function socketOnNode(client: TestClient, want: number): Promise<ClientSocket> {
  for (let attempt = 0; attempt < 10; attempt++) {
    const before = await socketCounts();
    const socket = await connect(socketFor(topo.url, ca, client));
    const landed = await waitFor(async () => {
      const now = await socketCounts();
      const i = now.findIndex((count, k) => count > before[k]);
      return i >= 0 ? i + 1 : 0;
    }, 'the new socket shows on a node');
    if (landed - 1 === want) {
      sockets.push(socket);
      return socket;
    }
    socket.disconnect();
    await waitFor(async () => (await socketCounts()).every((count, k) => count <= before[k]), 'the extra socket is gone');
  }
  throw new Error(`no socket landed on node ${want + 1}`);
}

/** A room member that keeps its last sequence numbers and resumes like the browser client. */
class Member {
  socket!: ClientSocket;
  lastChatSeq = 0;
  lastAnnotationSeq = 0;
  readonly chat = new Map<number, string>();
  readonly ops = new Map<number, { op: string; annotationId: string }>();

  constructor(readonly client: TestClient) {}

  attach(socket: ClientSocket): void {
    this.socket = socket;
    socket.on('chat:message', ({ message }: { message: { seq: number; text: string } }) => this.#seeChat(message));
    socket.on('annotation:op', ({ op }: { op: { seq: number; op: string; annotationId: string } }) => this.#seeOp(op));
  }

  async join(): Promise<{ members: { userId: string }[] }> {
    const first = this.lastChatSeq === 0 && this.lastAnnotationSeq === 0;
    const answer = await call<{ members: { userId: string }[]; chat: { seq: number; text: string }[]; annotationOps: { seq: number; op: string; annotationId: string }[]; latestAnnotationSeq: number }>(
      this.socket,
      'room:join',
      first ? { caseId } : { caseId, lastChatSeq: this.lastChatSeq, lastAnnotationSeq: this.lastAnnotationSeq },
    );
    if (!answer.ok) throw new Error(`join failed: ${answer.error.code}`);
    for (const m of answer.data.chat) this.#seeChat(m);
    for (const op of answer.data.annotationOps) this.#seeOp(op);
    if (first) this.lastAnnotationSeq = answer.data.latestAnnotationSeq;
    return answer.data;
  }

  /** What the client does when its connection drops: connect again through the proxy, rejoin. */
  async resume(): Promise<void> {
    this.socket.removeAllListeners();
    this.socket.close();
    const socket = await waitFor(() => connect(socketFor(topo.url, ca, this.client)).catch(() => null), 'reconnected through the proxy', 30_000, 250);
    sockets.push(socket);
    this.attach(socket);
    await this.join();
  }

  #seeChat(m: { seq: number; text: string }): void {
    this.chat.set(m.seq, m.text);
    while (this.chat.has(this.lastChatSeq + 1)) this.lastChatSeq++;
  }

  #seeOp(op: { seq: number; op: string; annotationId: string }): void {
    this.ops.set(op.seq, op);
    while (this.ops.has(this.lastAnnotationSeq + 1)) this.lastAnnotationSeq++;
  }
}

beforeAll(async () => {
  const distMain = path.join(ROOT, 'dist', 'main.js');
  if (!fs.existsSync(distMain)) throw new Error('dist/main.js is missing: npm test builds it in its set-up step');
  const started = await startTopology();
  runner = started.child;
  topo = started.info;
  ca = fs.readFileSync(topo.ca, 'utf8');
  clinician = await account('clinician');
  pathologist = await account('pathologist');
  admin = await account('site_admin');
  caseId = (await clinician.post('/api/cases', { title: 'Across the topology' }).expect(201)).body.case.id;
  const png = await sharp({ create: { width: 256, height: 256, channels: 3, background: '#9bd' } }).png().toBuffer();
  materialId = (
    await clinician.agent
      .post(`/api/cases/${caseId}/materials?name=slide.png`)
      .set('X-CSRF-Token', clinician.csrfToken!)
      .set('Content-Type', 'application/octet-stream')
      .send(png)
      .expect(202)
  ).body.material.id;
  await waitFor(async () => (await clinician.get(`/api/cases/${caseId}/materials/${materialId}`)).body.material?.status === 'ready', 'material converted', 60_000, 200);
}, 180_000);

afterAll(async () => {
  for (const s of sockets) s.disconnect();
  await Promise.all(peers.map((p) => p.close().catch(() => undefined)));
  if (runner && runner.exitCode === null) {
    const exited = new Promise((resolve) => runner.once('exit', resolve));
    runner.kill('SIGTERM');
    await exited;
  }
  // The nodes' JSON logs join this run's log scan (nothing secret may appear in them).
  for (const node of topo?.nodes ?? []) {
    const lines = fs.existsSync(node.log) ? fs.readFileSync(node.log, 'utf8').split('\n').filter((l) => l.startsWith('{')) : [];
    fs.appendFileSync(path.join(RUN_LOG_DIR, `topology-${process.pid}-${node.name}.log`), lines.join('\n') + '\n');
  }
}, 60_000);

test('the proxy terminates TLS, redirects plain HTTP, health-checks the nodes and passes the client address', async () => {
  const ready = await new TestClient(topo.url, ca).get('/readyz').expect(200);
  expect(ready.body.checks).toContain('redis');
  const redirect = await new Promise<http.IncomingMessage>((resolve, reject) => http.get(`${topo.httpUrl}/api/me`, resolve).on('error', reject));
  expect(redirect.statusCode).toBe(308);
  expect(redirect.headers.location).toMatch(/^https:\/\//);
  const res = await new TestClient(topo.url, ca).get('/api/auth/csrf').expect(200);
  expect(res.headers['strict-transport-security']).toContain('max-age=');
  // The nodes see the client's address from HAProxy's X-Forwarded-For; one the client forges
  // is dropped by the proxy, so it cannot pick its own address for the audit trail or the limits.
  const forger = new TestClient(topo.url, ca);
  const token = await forger.csrf();
  await forger.agent.post('/api/auth/login').set('X-CSRF-Token', token).set('X-Forwarded-For', '203.0.113.99').send({ email: 'clinician@demo.local', password: 'not the password at all' }).expect(401);
  const records = (await admin.get('/api/admin/audit?type=auth.login&outcome=4&limit=5').expect(200)).body.records as { actor: { ip: string | null } }[];
  expect(records.length).toBeGreaterThan(0);
  expect(records[0]!.actor.ip).toBe('127.0.0.1');
});

test('members on different nodes share one room through the proxy: presence, presenter, viewport, chat, annotations', async () => {
  const alice = await socketOnNode(clinician, 0);
  const bob = await socketOnNode(pathologist, 1);
  expect((await call(alice, 'room:join', { caseId })).ok).toBe(true);
  const joined = await call<{ members: { name: string }[] }>(bob, 'room:join', { caseId });
  expect(joined.ok && joined.data.members.map((m) => m.name).sort()).toEqual(['Demo Clinician', 'Demo Pathologist']);

  const presenter = nextEvent<{ presenter: { name: string } }>(bob, 'presenter:changed');
  expect((await call(alice, 'presenter:take', { caseId })).ok).toBe(true);
  expect((await presenter).presenter.name).toBe('Demo Clinician');
  const moved = nextEvent<{ viewport: { zoom: number } }>(bob, 'viewport', (p) => p.viewport.zoom === 5);
  alice.emit('viewport:update', { caseId, materialId, center: { x: 0.25, y: 0.5 }, zoom: 5, rotation: 90 });
  expect((await moved).viewport.zoom).toBe(5);

  const heard = nextEvent<{ message: { text: string } }>(alice, 'chat:message', (p) => p.message.text === 'from node 2');
  expect((await call(bob, 'chat:send', { caseId, text: 'from node 2', clientId: clientId('chat') })).ok).toBe(true);
  expect((await heard).message.text).toBe('from node 2');

  const drawn = nextEvent<{ op: { op: string; annotation: { properties: { label: string } } } }>(bob, 'annotation:op');
  const created = await call(alice, 'annotation:create', { caseId, materialId, clientId: clientId('ann'), kind: 'point', geometry: { type: 'Point', coordinates: [10, 20] }, properties: { label: 'node 1 mark' } });
  expect(created.ok).toBe(true);
  expect((await drawn).op.annotation.properties.label).toBe('node 1 mark');
  alice.disconnect();
  bob.disconnect();
});

test("Debian's Chromium opens the room's WebSocket through the proxy (HTTP/2 to HAProxy, the origin users type)", async () => {
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'] });
  try {
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    const sid = cookieHeaderOf(clinician).split('; ').find((c) => c.startsWith('__Host-sid='))!.slice('__Host-sid='.length);
    await context.addCookies([{ name: '__Host-sid', value: sid, url: `${topo.publicUrl}/`, secure: true, httpOnly: true, sameSite: 'Lax' }]);
    const page = await context.newPage();
    expect((await page.goto(`${topo.publicUrl}/healthz`))!.status()).toBe(200);
    // A Socket.IO handshake by hand: engine.io "open" (0...), then the namespace connect (40) and
    // its answer with the socket id: the session cookie and the Origin passed the node's checks.
    const frames = await page.evaluate(
      (url) =>
        new Promise<string[]>((resolve) => {
          const got: string[] = [];
          const ws = new WebSocket(url);
          ws.onmessage = (e) => {
            const data = String(e.data);
            got.push(data);
            if (data.startsWith('0{')) ws.send('40');
            if (data.startsWith('40{')) {
              ws.close();
              resolve(got);
            }
          };
          ws.onerror = () => resolve([...got, 'error']);
          setTimeout(() => resolve([...got, 'timeout']), 10_000);
        }),
      `${topo.publicUrl.replace('https:', 'wss:')}/socket.io/?EIO=4&transport=websocket`,
    );
    expect(frames.at(-1)).toMatch(/^40\{"sid":/);
    // The browser spoke HTTP/2 to HAProxy, which speaks HTTP/1.1 (and TLS) to the nodes.
    await waitFor(() => fs.readFileSync(topo.proxy.log, 'utf8').includes('"GET https://localhost'), 'the proxy logged the browser request');
    expect(fs.readFileSync(topo.proxy.log, 'utf8')).toMatch(/"GET https:\/\/localhost:\d+\/healthz HTTP\/2\.0"/);
  } finally {
    await browser.close();
  }
});

test('media flows between WebRTC peers on different nodes; the room has one media home', async () => {
  if (!topo.media) throw new Error('the topology started without a mediasoup worker (node_modules/.mediasoup-worker-bin)');
  // Peers connect to the nodes directly so that each is known to be on its node.
  const onNode = (i: number): TestServer => ({ url: topo.nodes[i]!.url, ca }) as unknown as TestServer;
  const p1 = await MediaPeerProcess.start(onNode(0), clinician);
  peers.push(p1);
  await p1.cmd('joinRoom', { caseId });
  await p1.cmd('joinMedia');
  await p1.cmd('produce', { source: 'mic' });
  await p1.cmd('produce', { source: 'camera' });
  const p2 = await MediaPeerProcess.start(onNode(1), pathologist);
  peers.push(p2);
  await p2.cmd('joinRoom', { caseId });
  await p2.cmd('joinMedia');
  await p2.cmd('produce', { source: 'mic' });
  await p2.cmd('produce', { source: 'camera' });
  await p2.waitForFlow('the peer on node 2 receives audio and video from node 1', 2);
  await p1.waitForFlow('the peer on node 1 receives audio and video from node 2', 2);
  // One router for the room, on node 1 (the first to open media); node 2 only forwarded.
  const peersOn = (i: number) => metric(topo.nodes[i]!.metricsUrl, 'media_objects', '{kind="peers"}');
  expect(await peersOn(0)).toBe(2);
  expect(await peersOn(1)).toBe(0);
});

test('a node killed with SIGKILL: its clients resume on the other node with every acknowledged write, and media is rebuilt there', async () => {
  const alice = new Member(clinician);
  alice.attach(await socketOnNode(clinician, 0));
  const bob = new Member(pathologist);
  bob.attach(await socketOnNode(pathologist, 1));
  await alice.join();
  await bob.join();

  // Alice writes a stream of messages and annotations; node 1 dies in the middle of it.
  const acked = new Map<string, number>();
  const unacked: { clientId: string; text: string }[] = [];
  const writes: Promise<void>[] = [];
  for (let i = 0; i < 30; i++) {
    const message = { clientId: clientId(`burst${i}`), text: `burst ${i}` };
    writes.push(
      call<{ seq: number }>(alice.socket, 'chat:send', { caseId, ...message }, 3000).then(
        (answer) => {
          if (answer.ok) acked.set(message.text, answer.data.seq);
          else unacked.push(message);
        },
        () => void unacked.push(message),
      ),
    );
    if (i === 12) {
      await waitFor(() => acked.size >= 5, 'some writes acknowledged before the kill');
      process.kill(topo.nodes[0]!.pid, 'SIGKILL');
    }
    await new Promise((r) => setImmediate(r));
  }
  await Promise.all(writes);
  expect(acked.size).toBeGreaterThan(0);

  // Bob (node 2) keeps writing while Alice is away.
  expect((await call(bob.socket, 'chat:send', { caseId, text: 'while you were away', clientId: clientId('away') })).ok).toBe(true);
  expect((await call(bob.socket, 'annotation:create', { caseId, materialId, clientId: clientId('awayann'), kind: 'point', geometry: { type: 'Point', coordinates: [5, 5] }, properties: { label: 'away' } })).ok).toBe(true);

  // Alice's connection is gone; she reconnects through the proxy (to node 2) and rejoins.
  await waitFor(() => alice.socket.disconnected, 'the socket on the killed node dropped');
  await alice.resume();
  // She is back on a live node (node 1 is gone: its metrics do not answer).
  expect(Number.isNaN((await socketCounts())[0])).toBe(true);
  expect(alice.socket.connected).toBe(true);
  // Writes whose answer never came are sent again with the same clientId: stored once.
  for (const message of unacked) {
    // Sent as fast as the socket's write budget (20/s) allows; RATE_LIMITED means "again shortly".
    const again = await waitFor(async () => {
      const answer = await call<{ seq: number }>(alice.socket, 'chat:send', { caseId, ...message });
      return answer.ok || answer.error.code !== 'RATE_LIMITED' ? answer : null;
    }, 'the resent write is accepted', 20_000, 100);
    expect(again.ok).toBe(true);
    if (again.ok) acked.set(message.text, again.data.seq);
  }
  const all = await call<{ messages: { seq: number; text: string }[] }>(bob.socket, 'chat:sync', { caseId, afterSeq: 0, limit: 500 });
  expect(all.ok).toBe(true);
  const stored = all.ok ? all.data.messages : [];
  // Every acknowledged write is stored, at the seq it was acknowledged with, exactly once.
  for (const [text, seq] of acked) expect(stored.filter((m) => m.text === text).map((m) => m.seq)).toEqual([seq]);
  for (let i = 0; i < 30; i++) expect(stored.filter((m) => m.text === `burst ${i}`)).toHaveLength(1);
  expect(stored.map((m) => m.seq)).toEqual(stored.map((_m, i) => i + 1));
  // Alice saw what happened while she was away (replayed from the store on rejoin).
  await waitFor(() => [...alice.chat.values()].includes('while you were away'), 'alice got the message she missed');
  await waitFor(() => [...alice.ops.values()].some((op) => op.op === 'create') && alice.lastAnnotationSeq >= bob.lastAnnotationSeq, 'alice got the annotation she missed');

  // Media: node 1 was the room's media home. The peer on node 2 is told to rebuild, and its media
  // now lives on node 2; a newcomer there hears and sees it.
  const p2 = peers[1];
  if (p2) {
    await p2.waitForEvent('rebuilt', () => true, 'the peer on node 2 rebuilt its media', 45_000);
    // A newcomer on node 3: its signalling is forwarded to node 2, the new home.
    const p3 = await MediaPeerProcess.start({ url: topo.nodes[2]!.url, ca } as unknown as TestServer, admin);
    peers.push(p3);
    await p3.cmd('joinRoom', { caseId });
    await p3.cmd('joinMedia');
    await p3.waitForFlow('a newcomer on node 3 receives the rebuilt audio and video', 2, undefined, 30_000);
    expect(await metric(topo.nodes[1]!.metricsUrl, 'media_objects', '{kind="routers"}')).toBe(1);
    expect(await metric(topo.nodes[2]!.metricsUrl, 'media_objects', '{kind="routers"}')).toBe(0);
  }
});

test('a node drained with SIGTERM: clients are told to move, the write in flight is kept, the media home moves, the node exits', async () => {
  const alice = new Member(clinician);
  alice.attach(await socketOnNode(clinician, 1));
  const bob = new Member(pathologist);
  bob.attach(await socketOnNode(pathologist, 2));
  await alice.join();
  await bob.join();
  const heard = nextEvent<{ message: { text: string } }>(bob.socket, 'chat:message', (p) => p.message.text === 'sent as node 2 drains');
  const told = nextEvent(alice.socket, 'server:draining');
  const started = Date.now();
  const write = call<{ seq: number }>(alice.socket, 'chat:send', { caseId, text: 'sent as node 2 drains', clientId: clientId('drain') });
  process.kill(topo.nodes[1]!.pid, 'SIGTERM');
  await told;
  // What the client does on server:draining: wait for its answers, then reconnect and rejoin.
  const ack = await write;
  expect(ack.ok).toBe(true);
  expect((await heard).message.text).toBe('sent as node 2 drains');
  await alice.resume();
  const fromNode3 = await call<{ seq: number }>(alice.socket, 'chat:send', { caseId, text: 'now on node 3', clientId: clientId('after') });
  expect(fromNode3.ok && ack.ok && fromNode3.data.seq).toBe(ack.ok && ack.data.seq + 1);

  // Media: node 2 hosted the room; it gave the room up and told its members to rebuild, so the
  // member on node 3 now hosts it there, and a newcomer on node 3 receives its microphone.
  const p3 = peers[2];
  if (p3) {
    await p3.waitForEvent('rebuilt', (e) => Number(e.restarts) >= 1, 'the peer on node 3 rebuilt after the drain', 30_000);
    await p3.cmd('produce', { source: 'mic' });
    const p4 = await MediaPeerProcess.start({ url: topo.nodes[2]!.url, ca } as unknown as TestServer, clinician);
    peers.push(p4);
    await p4.cmd('joinRoom', { caseId });
    await p4.cmd('joinMedia');
    await p4.waitForFlow('media flows on node 3 after the drain', 1, 'audio', 30_000);
    expect(await metric(topo.nodes[2]!.metricsUrl, 'media_objects', '{kind="routers"}')).toBe(1);
  }

  // The node stops by itself: at once when its clients have gone, at the latest after its grace
  // period (5 s here; a media test peer on it ignores server:draining and is disconnected then).
  await waitFor(() => fs.readFileSync(topo.nodes[1]!.log, 'utf8').includes('"msg":"stopped"'), 'node 2 logged that it stopped', 20_000, 200);
  expect(Date.now() - started).toBeLessThan(15_000);
});
