// Realtime benchmark: what our case rooms cost against bare baselines measured in the same run.
// Run with `npm run bench` (after the tiles benchmark) or alone with
// `tsc -p bench/tsconfig.json && node bench/dist/bench/realtime.js` (about two minutes).
//
// 1. Viewport fan-out. One presenter (a clinician on node A, holding the presenter role) sends
//    `viewport:update` at a fixed rate with its send time in center.x (and a sequence number in
//    center.y); followers (one pathologist session per node, many sockets) spread evenly over two
//    nodes receive `viewport`. Per-delivery latency, delivered events/s, and the CPU the servers
//    and Redis spend per delivery. Ours and bare take turns (ours, bare, bare, ours) per size.
//      ours: two startServer nodes (own processes) sharing one DATA_DIR and one redis-server;
//      bare: two bare Socket.IO servers (own processes, bench/realtime-node.ts) on HTTPS with the
//            same redis-adapter over the same redis-server (own channel prefix), relaying the same
//            payloads to one room (no session, validation, rate limit or room state).
// 2. Annotation writes. `annotation:create` with ack on one node on the embedded SQLite store
//    (WAL, synchronous=FULL), fanned out to the room, with 1 and 4 writes in flight; against a
//    bare loop of SqliteStore.annotations.create (the same durable insert, no service, socket or
//    fan-out around it) on a file in the same directory. The per-socket write budget (20/s,
//    RATE_LIMITS in src/realtime/dispatch.ts) is respected, not lifted: writes rotate over enough
//    writer sockets that each stays under 18/s (a 1 s probe with 64 of them estimates the rate;
//    1.5x what that needs stay in the room, more join if a row still waited for the budget).
//    Writer sockets are room members too and receive the fan-out.
//
// Environment (all optional): BENCH_RT_SIZES (10,50,200), BENCH_RT_RATE (updates/s, 20),
// BENCH_RT_DURATION (s of viewport measurement per size and target, 8), BENCH_RT_ROUNDS (turns
// those seconds are split into, 2), BENCH_RT_WRITE_DURATION (s per annotation row, 5),
// BENCH_RT_WARMUP (s, 1), BENCH_RT_LISTENERS (10), BENCH_RT_WRITERS (writer sockets; default
// sized by the probe), BENCH_RT_TMPDIR (where data directories go; must be a real disk for the
// fsync numbers; default the OS temp directory), BENCH_RT_RESULTS (JSON path), BENCH_RT_LOG_LEVEL
// (the nodes' log level, on stderr; default silent).
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as delay } from 'node:timers/promises';
import sharp from 'sharp';
import { io as ioClient, type Socket as ClientSocket } from 'socket.io-client';
import type { AnnotationRecord } from '../src/annotations/model';
import { newId } from '../src/ids';
import { RATE_LIMITS } from '../src/realtime/dispatch';
import { SqliteStore } from '../src/store/sqlite';
import type { NodeReady } from './realtime-node';

const env = (name: string, fallback: number) => (process.env[name] ? Number(process.env[name]) : fallback);
const SIZES = (process.env.BENCH_RT_SIZES || '10,50,200').split(',').map(Number);
const RATE = env('BENCH_RT_RATE', 20);
const DURATION_S = env('BENCH_RT_DURATION', 8);
const WRITE_DURATION_S = env('BENCH_RT_WRITE_DURATION', 5);
const WARMUP_S = env('BENCH_RT_WARMUP', 1);
/** Viewport: ours and bare take turns this many times per size, DURATION_S / ROUNDS seconds each. */
const ROUNDS = env('BENCH_RT_ROUNDS', 2);
const LISTENERS = env('BENCH_RT_LISTENERS', 10);
const WRITERS_OVERRIDE = process.env.BENCH_RT_WRITERS ? Number(process.env.BENCH_RT_WRITERS) : null;
const TMPDIR = process.env.BENCH_RT_TMPDIR || os.tmpdir();
const ROOT = path.resolve(__dirname, '..', '..', '..');
const RESULTS = path.resolve(process.env.BENCH_RT_RESULTS || path.join(ROOT, 'bench', 'results', 'realtime.json'));
/** Writes per writer socket per second, under the server's per-socket write budget. */
const WRITES_PER_SOCKET = Math.min(18, RATE_LIMITS.write.points - 2);
/** The client-side window that budget is counted over (a little over the server's 1 s, for jitter). */
const WRITE_WINDOW_MS = RATE_LIMITS.write.duration * 1000 + 100;
const CLK_TCK = 100; // Linux USER_HZ
/** Above this much CPU of other processes during a measurement, it is flagged as disturbed. */
const NOISE_CORES = 0.2;
/** What one writer socket can sustain under that window, per second. */
const PER_SOCKET_RATE = (WRITES_PER_SOCKET * 1000) / WRITE_WINDOW_MS;
/** Writer sockets at most (and during the probe that sizes the pool). */
const MAX_WRITER_SOCKETS = 64;
const PROBE_S = 1;
const FAKE_MATERIAL = 'MaterialMaterialMateri'; // viewport updates do not look the material up

const log = (message: string) => process.stderr.write(`[bench:realtime] ${message}\n`);
const fmt = (v: number | null | undefined, digits = 1) => (v === null || v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(digits));

function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = Float64Array.from(values).sort();
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

function stats(values: number[]): { p50: number; p99: number; max: number; mean: number } {
  let sum = 0;
  let max = 0;
  for (const v of values) {
    sum += v;
    if (v > max) max = v;
  }
  return { p50: percentile(values, 50), p99: percentile(values, 99), max, mean: values.length ? sum / values.length : NaN };
}

// ------------------------------------------------------------------ CPU accounting (Linux /proc)

/** CPU time (user + system) of a process, in µs; 0 when unreadable. */
function processCpuUs(pid: number | undefined): number {
  if (!pid) return 0;
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1_000_000) / CLK_TCK;
  } catch {
    return 0;
  }
}

/** Machine-wide busy CPU (user + nice + system), in µs; null off Linux. */
function machineBusyUs(): number | null {
  try {
    const [user, nice, system] = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    return ((user + nice + system) * 1_000_000) / CLK_TCK;
  } catch {
    return null;
  }
}

interface CpuWindow {
  /** Cores used by the server processes (the two nodes, or the one node). */
  serverCores: number;
  redisCores: number;
  clientCores: number;
  /** Cores used by processes outside this benchmark (noise). */
  otherCores: number | null;
  wallS: number;
}

function cpuMeter(serverPids: number[], redisPid: number | undefined): () => CpuWindow {
  const t0 = performance.now();
  const s0 = serverPids.reduce((n, p) => n + processCpuUs(p), 0);
  const r0 = processCpuUs(redisPid);
  const c0 = process.cpuUsage();
  const m0 = machineBusyUs();
  return () => {
    const wallUs = (performance.now() - t0) * 1000;
    const server = serverPids.reduce((n, p) => n + processCpuUs(p), 0) - s0;
    const redis = processCpuUs(redisPid) - r0;
    const c = process.cpuUsage(c0);
    const client = c.user + c.system;
    const m1 = machineBusyUs();
    return {
      serverCores: server / wallUs,
      redisCores: redis / wallUs,
      clientCores: client / wallUs,
      otherCores: m0 !== null && m1 !== null ? Math.max(0, (m1 - m0 - server - redis - client) / wallUs) : null,
      wallS: wallUs / 1e6,
    };
  };
}

// ------------------------------------------------------------------ processes: redis-server, nodes

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

function answersPing(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('error', () => resolve(false));
    s.once('connect', () => s.write('PING\r\n'));
    s.once('data', (d) => {
      s.destroy();
      resolve(String(d).startsWith('+PONG'));
    });
  });
}

async function stopChild(proc: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((resolve) => proc.once('exit', resolve));
  proc.kill(signal);
  await Promise.race([exited, delay(5000)]);
  if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
}

/** A redis-server on a free port (no persistence), like test/helpers/redis.ts. */
async function startRedis(): Promise<{ url: string; proc: ChildProcess; version: string }> {
  const port = await freePort();
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  const failed = new Promise<never>((_, reject) => proc.once('error', (err) => reject(new Error(`redis-server: ${err.message}`))));
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (await Promise.race([answersPing(port), failed])) break;
    if (Date.now() > deadline) throw new Error(`redis-server did not answer on ${port}`);
    await delay(20);
  }
  const version = await new Promise<string>((resolve) => {
    const p = spawn('redis-server', ['--version'], { stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    p.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    p.on('close', () => resolve(/v=(\S+)/.exec(out)?.[1] ?? 'unknown'));
    p.on('error', () => resolve('unknown'));
  });
  return { url: `redis://127.0.0.1:${port}`, proc, version };
}

class NodeChild {
  readonly proc: ChildProcess;
  readonly ready: Promise<NodeReady>;

  constructor(mode: 'ours' | 'bare', dataDir: string, redisUrl: string) {
    this.proc = fork(path.join(__dirname, 'realtime-node.js'), [mode, dataDir, redisUrl], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
    this.ready = new Promise((resolve, reject) => {
      this.proc.once('exit', (code) => reject(new Error(`${mode} node exited with ${code}`)));
      this.proc.on('message', (msg: NodeReady) => {
        if (msg.type === 'ready') resolve(msg);
      });
    });
  }

  get pid(): number {
    return this.proc.pid!;
  }

  async close(): Promise<void> {
    if (this.proc.exitCode !== null || !this.proc.connected) return stopChild(this.proc);
    const exited = new Promise((resolve) => this.proc.once('exit', resolve));
    this.proc.send({ cmd: 'close', id: 1 });
    await Promise.race([exited, delay(8000)]);
    await stopChild(this.proc);
  }
}

// ------------------------------------------------------------------ HTTPS client with a cookie jar

class Client {
  readonly cookies = new Map<string, string>();
  csrfToken: string | null = null;
  private readonly agent: https.Agent;

  constructor(
    readonly base: string,
    ca: string,
  ) {
    this.agent = new https.Agent({ keepAlive: true, ca });
  }

  get cookieHeader(): string {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  }

  request(method: string, p: string, body?: Buffer | object): Promise<{ status: number; json: any }> {
    const payload = body === undefined ? undefined : Buffer.isBuffer(body) ? body : Buffer.from(JSON.stringify(body));
    const headers: Record<string, string> = {};
    if (payload) {
      headers['content-length'] = String(payload.length);
      headers['content-type'] = Buffer.isBuffer(body) ? 'application/octet-stream' : 'application/json';
    }
    if (this.cookies.size) headers.cookie = this.cookieHeader;
    if (method !== 'GET' && this.csrfToken) headers['x-csrf-token'] = this.csrfToken;
    return new Promise((resolve, reject) => {
      const req = https.request(new URL(p, this.base), { method, headers, agent: this.agent }, (res) => {
        for (const line of res.headers['set-cookie'] ?? []) {
          const pair = line.split(';')[0];
          const eq = pair.indexOf('=');
          const [name, value] = [pair.slice(0, eq).trim(), pair.slice(eq + 1).trim()];
          if (value === '' || /expires=Thu, 01 Jan 1970/i.test(line)) this.cookies.delete(name);
          else this.cookies.set(name, value);
        }
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: unknown = null;
          try {
            json = text ? JSON.parse(text) : null;
          } catch {
            json = text;
          }
          resolve({ status: res.statusCode ?? 0, json });
        });
      });
      req.on('error', reject);
      req.end(payload);
    });
  }

  async expect(status: number, method: string, p: string, body?: Buffer | object): Promise<any> {
    const reply = await this.request(method, p, body);
    if (reply.status !== status) throw new Error(`${method} ${p}: expected ${status}, got ${reply.status}: ${JSON.stringify(reply.json).slice(0, 300)}`);
    return reply.json;
  }

  close(): void {
    this.agent.destroy();
  }
}

/** Logs in (password change first when `newPassword` is given); returns the signed-in client. */
async function login(base: string, ca: string, email: string, password: string, newPassword?: string): Promise<Client> {
  const c = new Client(base, ca);
  c.csrfToken = (await c.expect(200, 'GET', '/api/auth/csrf')).csrfToken;
  c.csrfToken = (await c.expect(200, 'POST', '/api/auth/login', { email, password })).csrfToken;
  if (newPassword) await c.expect(200, 'POST', '/api/auth/password', { currentPassword: password, newPassword });
  return c;
}

// ------------------------------------------------------------------ sockets

const allSockets: ClientSocket[] = [];

function openSocket(url: string, ca: string, cookie: string | null): Promise<ClientSocket> {
  const socket = ioClient(url, {
    path: '/socket.io',
    transports: ['websocket'],
    forceNew: true,
    reconnection: false,
    ca,
    extraHeaders: cookie ? { Cookie: cookie } : {},
  });
  allSockets.push(socket);
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve(socket));
    socket.once('connect_error', (err) => reject(new Error(`socket to ${url}: ${err.message}`)));
  });
}

type Ack<T = unknown> = { ok: true; data: T } | { ok: false; error: { code: string; message: string } };

async function call<T = unknown>(socket: ClientSocket, event: string, payload: unknown, timeoutMs = 15_000): Promise<Ack<T>> {
  try {
    return (await socket.timeout(timeoutMs).emitWithAck(event, payload)) as Ack<T>;
  } catch {
    return { ok: false, error: { code: 'TIMEOUT', message: `no ack within ${timeoutMs} ms` } };
  }
}

async function mustCall<T = unknown>(socket: ClientSocket, event: string, payload: unknown): Promise<T> {
  const r = await call<T>(socket, event, payload);
  if (!r.ok) throw new Error(`${event}: ${r.error.code} ${r.error.message}`);
  return r.data;
}

/** Runs `fn` over `items` with at most `width` at a time. */
async function inBatches<T>(items: T[], width: number, fn: (item: T, i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(width, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        await fn(items[i], i);
      }
    }),
  );
}

// ------------------------------------------------------------------ 1. viewport fan-out

interface FanoutResult {
  target: 'ours' | 'bare';
  followers: number;
  rate: number;
  durationS: number;
  sent: number;
  expected: number;
  delivered: number;
  lossPct: number;
  deliveredPerSecond: number;
  latencyMs: { p50: number; p99: number; max: number; mean: number };
  cpu: CpuWindow;
  /** Server processes plus redis-server, µs of CPU per delivered event. */
  serverAndRedisCpuUsPerDelivery: number;
}

interface Collector {
  from: number;
  to: number;
  latencies: number[];
  firstAt: number;
  lastAt: number;
}

let viewportCollector: Collector | null = null;
let nextSeq = 1;
const WRAP = 1e7; // center.x accepts finite numbers up to 1e7 in magnitude

function onViewport(p: { viewport: { center: { x: number; y: number } } }): void {
  const c = viewportCollector;
  if (!c) return;
  const now = performance.now();
  const seq = p.viewport.center.y;
  if (seq < c.from || seq >= c.to) return;
  let latency = (now % WRAP) - p.viewport.center.x;
  if (latency < 0) latency += WRAP;
  c.latencies.push(latency);
  if (!c.firstAt) c.firstAt = now;
  c.lastAt = now;
}

/** Sends `count` updates at RATE, starting at sequence `from`. */
async function sendUpdates(presenter: ClientSocket, caseId: string, from: number, count: number): Promise<void> {
  const interval = 1000 / RATE;
  const t0 = performance.now();
  for (let i = 0; i < count; i++) {
    const wait = t0 + i * interval - performance.now();
    if (wait > 0) await delay(wait);
    const seq = from + i;
    presenter.emit('viewport:update', { caseId, materialId: FAKE_MATERIAL, center: { x: performance.now() % WRAP, y: seq }, zoom: 1 + (seq % 8), rotation: 0 });
  }
}

interface FanoutRound {
  latencies: number[];
  sent: number;
  expected: number;
  windowS: number;
  cpu: CpuWindow;
}

/** One measurement: warm-up, then DURATION_S / ROUNDS seconds of updates and their deliveries. */
async function fanoutRound(presenter: ClientSocket, caseId: string, followers: number, serverPids: number[], redisPid: number): Promise<FanoutRound> {
  const warm = Math.round(WARMUP_S * RATE);
  const count = Math.round((DURATION_S / ROUNDS) * RATE);
  await sendUpdates(presenter, caseId, nextSeq, warm);
  nextSeq += warm;
  await delay(200);
  const collector: Collector = { from: nextSeq, to: nextSeq + count, latencies: [], firstAt: 0, lastAt: 0 };
  viewportCollector = collector;
  const meter = cpuMeter(serverPids, redisPid);
  const started = performance.now();
  await sendUpdates(presenter, caseId, nextSeq, count);
  nextSeq += count;
  const expected = count * followers;
  const drainUntil = performance.now() + 1000;
  while (collector.latencies.length < expected && performance.now() < drainUntil) await delay(10);
  const cpu = meter();
  viewportCollector = null;
  // Deliveries over the time they took: from the first send to the last receipt.
  return { latencies: collector.latencies, sent: count, expected, windowS: ((collector.lastAt || performance.now()) - started) / 1000, cpu };
}

/** CPU windows of several measurements as one (weighted by their wall time). */
function mergeCpu(windows: CpuWindow[]): CpuWindow {
  const wall = windows.reduce((n, w) => n + w.wallS, 0);
  const avg = (pick: (w: CpuWindow) => number) => windows.reduce((n, w) => n + pick(w) * w.wallS, 0) / wall;
  return {
    serverCores: avg((w) => w.serverCores),
    redisCores: avg((w) => w.redisCores),
    clientCores: avg((w) => w.clientCores),
    otherCores: windows.some((w) => w.otherCores === null) ? null : avg((w) => w.otherCores!),
    wallS: wall,
  };
}

function fanoutResult(target: 'ours' | 'bare', followers: number, rounds: FanoutRound[]): FanoutResult {
  const latencies = rounds.flatMap((r) => r.latencies);
  const sent = rounds.reduce((n, r) => n + r.sent, 0);
  const expected = rounds.reduce((n, r) => n + r.expected, 0);
  const windowS = rounds.reduce((n, r) => n + r.windowS, 0);
  const cpu = mergeCpu(rounds.map((r) => r.cpu));
  const delivered = latencies.length;
  return {
    target,
    followers,
    rate: RATE,
    durationS: DURATION_S,
    sent,
    expected,
    delivered,
    lossPct: (100 * (expected - delivered)) / expected,
    deliveredPerSecond: delivered / windowS,
    latencyMs: stats(latencies),
    cpu,
    serverAndRedisCpuUsPerDelivery: delivered ? ((cpu.serverCores + cpu.redisCores) * cpu.wallS * 1e6) / delivered : NaN,
  };
}

async function viewportBenchmark(work: string, redis: { url: string; proc: ChildProcess }): Promise<{ results: FanoutResult[] }> {
  const dataDir = path.join(work, 'cluster');
  log('viewport: starting node A, node B (startServer, shared DATA_DIR, Redis) and two bare Socket.IO nodes');
  const nodeA = new NodeChild('ours', dataDir, redis.url);
  const readyA = await nodeA.ready;
  // Node B reuses A's store, master key and certificate (started after A created them).
  const nodeB = new NodeChild('ours', dataDir, redis.url);
  const bareA = new NodeChild('bare', dataDir, redis.url);
  const bareB = new NodeChild('bare', dataDir, redis.url);
  const [readyB, readyBareA, readyBareB] = await Promise.all([nodeB.ready, bareA.ready, bareB.ready]);
  const ca = fs.readFileSync(path.join(dataDir, 'tls', 'cert.pem'), 'utf8');
  const clients: Client[] = [];
  try {
    const account = (role: string) => readyA.accounts.find((a) => a.role === role)!;
    const pw = () => `bench-realtime-${randomBytes(12).toString('base64url')}`;
    const clinicianPw = pw();
    const pathologistPw = pw();
    const clinician = await login(readyA.url, ca, account('clinician').email, account('clinician').oneTimePassword, clinicianPw);
    const pathologistA = await login(readyA.url, ca, account('pathologist').email, account('pathologist').oneTimePassword, pathologistPw);
    const pathologistB = await login(readyB.url, ca, account('pathologist').email, pathologistPw);
    clients.push(clinician, pathologistA, pathologistB);
    const caseId: string = (await clinician.expect(201, 'POST', '/api/cases', { title: 'Realtime benchmark' })).case.id;

    const presenter = await openSocket(readyA.url, ca, clinician.cookieHeader);
    await mustCall(presenter, 'room:join', { caseId });
    await mustCall(presenter, 'presenter:take', { caseId });
    const barePresenter = await openSocket(readyBareA.url, ca, null);
    await mustCall(barePresenter, 'join', { caseId });

    const ours: ClientSocket[] = [];
    const bare: ClientSocket[] = [];
    const results: FanoutResult[] = [];
    const cookieOf = [pathologistA.cookieHeader, pathologistB.cookieHeader];
    for (const size of SIZES) {
      // Followers alternate between the nodes: node A, node B, node A, ...
      const addOurs = Array.from({ length: Math.max(0, size - ours.length) }, (_, k) => ours.length + k);
      const addBare = Array.from({ length: Math.max(0, size - bare.length) }, (_, k) => bare.length + k);
      log(`viewport: ${size} followers (${Math.ceil(size / 2)} on node A, ${Math.floor(size / 2)} on node B): connecting and joining`);
      const newOurs: ClientSocket[] = [];
      // One at a time: two nodes writing the shared SQLite file at once (the audit record of a
      // join) can fail with "database is locked" (read-then-write transactions are deferred).
      await inBatches(addOurs, 1, async (i) => {
        const s = await openSocket(i % 2 === 0 ? readyA.url : readyB.url, ca, cookieOf[i % 2]);
        s.on('viewport', onViewport);
        await mustCall(s, 'room:join', { caseId });
        newOurs.push(s);
      });
      ours.push(...newOurs);
      const newBare: ClientSocket[] = [];
      await inBatches(addBare, 20, async (i) => {
        const s = await openSocket(i % 2 === 0 ? readyBareA.url : readyBareB.url, ca, null);
        s.on('viewport', onViewport);
        await mustCall(s, 'join', { caseId });
        newBare.push(s);
      });
      bare.push(...newBare);
      await delay(500);
      // Ours and bare alternate (ours, bare, bare, ours, ...) so that a disturbance or drift of the
      // machine weighs on both alike.
      const rounds: Record<'ours' | 'bare', FanoutRound[]> = { ours: [], bare: [] };
      for (let round = 0; round < ROUNDS; round++) {
        const order: ('ours' | 'bare')[] = round % 2 === 0 ? ['ours', 'bare'] : ['bare', 'ours'];
        for (const target of order) {
          log(`viewport: ${size} followers, ${target} (round ${round + 1}/${ROUNDS}): ${WARMUP_S} s warm-up + ${DURATION_S / ROUNDS} s at ${RATE}/s`);
          rounds[target].push(
            target === 'ours'
              ? await fanoutRound(presenter, caseId, size, [nodeA.pid, nodeB.pid], redis.proc.pid!)
              : await fanoutRound(barePresenter, caseId, size, [bareA.pid, bareB.pid], redis.proc.pid!),
          );
        }
      }
      results.push(fanoutResult('ours', size, rounds.ours), fanoutResult('bare', size, rounds.bare));
    }
    return { results };
  } finally {
    for (const s of allSockets.splice(0)) s.disconnect();
    for (const c of clients) c.close();
    // Let the nodes finish the leaves those disconnects start (they publish to Redis) before closing.
    await delay(1500);
    await Promise.all([nodeA, nodeB, bareA, bareB].map((n) => n.close()));
  }
}

// ------------------------------------------------------------------ 2. annotation writes

interface WriteResult {
  target: 'ours' | 'bare';
  inFlight: number;
  durationS: number;
  ops: number;
  opsPerSecond: number;
  ackLatencyMs: { p50: number; p99: number; max: number; mean: number };
  /** ours: from the emit to a listener's `annotation:op`, over every listener. */
  fanoutLatencyMs: { p50: number; p99: number; max: number; mean: number } | null;
  fanoutDelivered: number | null;
  fanoutExpected: number | null;
  errors: Record<string, number>;
  /** Times a write waited for a writer socket's budget (0: the budget never limited the rate). */
  budgetWaits: number;
  /** ours: writer sockets in the room (each also receives the fan-out). */
  writerSockets: number | null;
  cpu: CpuWindow | null;
  serverCpuUsPerOp: number | null;
}

/** Writer sockets in rotation, each kept under WRITES_PER_SOCKET in any WRITE_WINDOW_MS. */
class WriterPool {
  private readonly windows: number[][];
  private next = 0;
  waits = 0;

  constructor(private readonly sockets: ClientSocket[]) {
    this.windows = sockets.map(() => []);
  }

  async acquire(): Promise<ClientSocket> {
    for (;;) {
      const now = performance.now();
      let earliest = Infinity;
      for (let k = 0; k < this.sockets.length; k++) {
        const i = (this.next + k) % this.sockets.length;
        const w = this.windows[i];
        while (w.length && now - w[0] >= WRITE_WINDOW_MS) w.shift();
        if (w.length < WRITES_PER_SOCKET) {
          w.push(now);
          this.next = (i + 1) % this.sockets.length;
          return this.sockets[i];
        }
        earliest = Math.min(earliest, w[0]);
      }
      this.waits++;
      await delay(Math.max(1, earliest + WRITE_WINDOW_MS - now));
    }
  }
}

const writeSentAt = new Map<string, number>();
let writeFanout: number[] | null = null;

function onAnnotationOp(p: { op: { annotation: { properties: { label: string } } } }): void {
  const sentAt = writeSentAt.get(p.op.annotation.properties.label);
  if (sentAt === undefined || !writeFanout) return;
  writeFanout.push(performance.now() - sentAt);
}

let opCounter = 0;

async function measureOurWrites(pool: WriterPool, caseId: string, materialId: string, inFlight: number, listeners: number, serverPid: number, warmupS = WARMUP_S, durationS = WRITE_DURATION_S): Promise<WriteResult> {
  const payload = (clientId: string) => ({
    caseId,
    materialId,
    clientId,
    kind: 'point',
    geometry: { type: 'Point', coordinates: [100 + (opCounter % 500), 200 + (opCounter % 300)] },
    properties: { label: clientId, color: '#ff8800', text: 'benchmark' },
  });
  const run = async (seconds: number, measured: boolean) => {
    const latencies: number[] = [];
    const errors: Record<string, number> = {};
    const endAt = performance.now() + seconds * 1000;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: inFlight }, async () => {
        while (performance.now() < endAt) {
          const socket = await pool.acquire();
          const clientId = `bench-${measured ? 'm' : 'w'}-${opCounter++}`;
          const t = performance.now();
          if (measured) writeSentAt.set(clientId, t);
          const r = await call(socket, 'annotation:create', payload(clientId));
          if (r.ok) latencies.push(performance.now() - t);
          else errors[r.error.code] = (errors[r.error.code] ?? 0) + 1;
        }
      }),
    );
    return { latencies, errors, seconds: (performance.now() - started) / 1000 };
  };
  await run(warmupS, false);
  writeSentAt.clear();
  writeFanout = [];
  pool.waits = 0;
  const meter = cpuMeter([serverPid], undefined);
  const r = await run(durationS, true);
  const cpu = meter();
  const expected = r.latencies.length * listeners;
  const drainUntil = performance.now() + 2000;
  while (writeFanout.length < expected && performance.now() < drainUntil) await delay(10);
  const fanout = writeFanout;
  writeFanout = null;
  writeSentAt.clear();
  return {
    target: 'ours',
    inFlight,
    durationS: r.seconds,
    ops: r.latencies.length,
    opsPerSecond: r.latencies.length / r.seconds,
    ackLatencyMs: stats(r.latencies),
    fanoutLatencyMs: stats(fanout),
    fanoutDelivered: fanout.length,
    fanoutExpected: expected,
    errors: r.errors,
    budgetWaits: pool.waits,
    writerSockets: null,
    cpu,
    serverCpuUsPerOp: r.latencies.length ? (cpu.serverCores * cpu.wallS * 1e6) / r.latencies.length : null,
  };
}

async function measureBareWrites(store: SqliteStore, inFlight: number): Promise<WriteResult> {
  const siteId = newId();
  const caseId = newId();
  const materialId = newId();
  const userId = newId();
  let n = 0;
  const record = (): AnnotationRecord => {
    const id = newId();
    const now = new Date().toISOString();
    const i = n++;
    return {
      id,
      siteId,
      caseId,
      materialId,
      clientId: `bare-${i}-${randomBytes(6).toString('base64url')}`,
      kind: 'point',
      geometry: { type: 'Point', coordinates: [100 + (i % 500), 200 + (i % 300)] },
      // As long as a real sealed { label, color, text }: "v1.<key id>.<iv + ciphertext + tag>".
      propertiesSealed: `v1.${newId()}.${randomBytes(90).toString('base64url')}`,
      version: 1,
      deleted: false,
      createdBy: userId,
      createdAt: now,
      updatedBy: userId,
      updatedAt: now,
    };
  };
  const run = async (seconds: number) => {
    const latencies: number[] = [];
    const endAt = performance.now() + seconds * 1000;
    const started = performance.now();
    await Promise.all(
      Array.from({ length: inFlight }, async () => {
        while (performance.now() < endAt) {
          const r = record();
          const t = performance.now();
          // Let the other writers (and timers) in first: with several in flight a write waits for
          // those ahead of it, as a request waits in a server's queue (counted in its latency).
          await new Promise<void>((resolve) => setImmediate(resolve));
          await store.annotations.create(r);
          latencies.push(performance.now() - t);
        }
      }),
    );
    return { latencies, seconds: (performance.now() - started) / 1000 };
  };
  // Long enough for the WAL to reach its checkpoint size once, as it has on the node's store.
  await run(Math.max(1, WARMUP_S));
  const meter = cpuMeter([], undefined);
  const r = await run(WRITE_DURATION_S);
  const cpu = meter();
  return {
    target: 'bare',
    inFlight,
    durationS: r.seconds,
    ops: r.latencies.length,
    opsPerSecond: r.latencies.length / r.seconds,
    ackLatencyMs: stats(r.latencies),
    fanoutLatencyMs: null,
    fanoutDelivered: null,
    fanoutExpected: null,
    errors: {},
    budgetWaits: 0,
    writerSockets: null,
    cpu,
    serverCpuUsPerOp: r.latencies.length ? (cpu.clientCores * cpu.wallS * 1e6) / r.latencies.length : null,
  };
}

async function annotationBenchmark(work: string): Promise<{ results: WriteResult[]; listeners: number; inFlight: number[] }> {
  const inFlightModes = [1, 4];
  const bareDir = path.join(work, 'bare-store');
  fs.mkdirSync(bareDir, { recursive: true });
  const store = SqliteStore.open(path.join(bareDir, 'bare.sqlite'));
  const dataDir = path.join(work, 'single');
  log('annotations: starting one node (startServer, embedded SQLite, no Redis)');
  const node = new NodeChild('ours', dataDir, '');
  const clients: Client[] = [];
  try {
    const ready = await node.ready;
    const ca = fs.readFileSync(path.join(dataDir, 'tls', 'cert.pem'), 'utf8');
    const account = (role: string) => ready.accounts.find((a) => a.role === role)!;
    const pw = () => `bench-realtime-${randomBytes(12).toString('base64url')}`;
    const clinician = await login(ready.url, ca, account('clinician').email, account('clinician').oneTimePassword, pw());
    const pathologist = await login(ready.url, ca, account('pathologist').email, account('pathologist').oneTimePassword, pw());
    clients.push(clinician, pathologist);
    const caseId: string = (await clinician.expect(201, 'POST', '/api/cases', { title: 'Annotation benchmark' })).case.id;
    const jpeg = await sharp({ create: { width: 512, height: 512, channels: 3, background: '#d9b' } }).jpeg().toBuffer();
    const materialId: string = (await clinician.expect(202, 'POST', `/api/cases/${caseId}/materials?name=slide.jpg`, jpeg)).material.id;
    const deadline = Date.now() + 60_000;
    for (;;) {
      const m = (await clinician.expect(200, 'GET', `/api/cases/${caseId}/materials/${materialId}`)).material;
      if (m.status === 'ready') break;
      if (m.status === 'failed' || Date.now() > deadline) throw new Error(`material did not become ready: ${m.status}`);
      await delay(100);
    }
    const allWriters = WRITERS_OVERRIDE ?? MAX_WRITER_SOCKETS;
    log(`annotations: ${LISTENERS} listener sockets (pathologist), ${allWriters} writer sockets (clinician, <= ${WRITES_PER_SOCKET}/s each) join the room`);
    const listeners: ClientSocket[] = [];
    await inBatches(Array.from({ length: LISTENERS }, (_, i) => i), 10, async () => {
      const s = await openSocket(ready.url, ca, pathologist.cookieHeader);
      s.on('annotation:op', onAnnotationOp);
      await mustCall(s, 'room:join', { caseId });
      listeners.push(s);
    });
    const writers: ClientSocket[] = [];
    await inBatches(Array.from({ length: allWriters }, (_, i) => i), 10, async () => {
      const s = await openSocket(ready.url, ca, clinician.cookieHeader);
      await mustCall(s, 'room:join', { caseId });
      writers.push(s);
    });
    await delay(500);
    // Every writer socket in the room receives the fan-out too: only as many stay in the room as
    // the measured rate needs (1.5x), the others leave it (and join again if a measurement finds
    // the per-socket budget limited it).
    let inRoom = allWriters;
    const resize = async (n: number) => {
      for (let i = n; i < inRoom; i++) await mustCall(writers[i], 'room:leave', { caseId });
      for (let i = inRoom; i < n; i++) await mustCall(writers[i], 'room:join', { caseId });
      inRoom = n;
      await delay(300);
    };
    if (WRITERS_OVERRIDE === null) {
      log(`annotations: probing the write rate (${PROBE_S} s, 4 in flight, ${allWriters} writer sockets)`);
      const probe = await measureOurWrites(new WriterPool(writers), caseId, materialId, 4, LISTENERS, node.pid, 0, PROBE_S);
      await resize(Math.min(allWriters, Math.max(4, Math.ceil((probe.opsPerSecond * 1.5) / PER_SOCKET_RATE))));
    }

    const results: WriteResult[] = [];
    for (const inFlight of inFlightModes) {
      log(`annotations: bare SqliteStore.annotations.create, ${inFlight} in flight, ${Math.max(1, WARMUP_S)} s warm-up + ${WRITE_DURATION_S} s`);
      const bare = await measureBareWrites(store, inFlight);
      let ours: WriteResult;
      for (let attempt = 0; ; attempt++) {
        log(`annotations: ours annotation:create, ${inFlight} in flight, ${inRoom} writer sockets, ${WARMUP_S} s warm-up + ${WRITE_DURATION_S} s`);
        ours = await measureOurWrites(new WriterPool(writers.slice(0, inRoom)), caseId, materialId, inFlight, LISTENERS, node.pid);
        ours.writerSockets = inRoom;
        if (ours.budgetWaits <= ours.ops * 0.01 || inRoom >= allWriters || attempt >= 2) break;
        log(`annotations: the per-socket budget limited ${ours.budgetWaits} writes; again with more writer sockets`);
        await resize(Math.min(allWriters, Math.ceil(inRoom * 1.5)));
      }
      results.push(ours, bare);
    }
    return { results, listeners: LISTENERS, inFlight: inFlightModes };
  } finally {
    for (const s of allSockets.splice(0)) s.disconnect();
    for (const c of clients) c.close();
    await store.close();
    await delay(500);
    await node.close();
  }
}

// ------------------------------------------------------------------ report

function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i <= 1 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)];
}

function filesystemOf(dir: string): string {
  const types: Record<number, string> = { 0xef53: 'ext4', 0x01021994: 'tmpfs', 0x58465342: 'xfs', 0x9123683e: 'btrfs', 0x794c7630: 'overlayfs', 0x6969: 'nfs', 0x2fc12fc1: 'zfs' };
  try {
    const t = fs.statfsSync(dir).type;
    return types[t] ?? `0x${t.toString(16)}`;
  } catch {
    return 'unknown';
  }
}

async function main(): Promise<void> {
  const started = Date.now();
  fs.mkdirSync(TMPDIR, { recursive: true });
  const work = fs.mkdtempSync(path.join(TMPDIR, 'cc-bench-realtime-'));
  const fsType = filesystemOf(work);
  if (fsType === 'tmpfs') log(`WARNING: ${work} is on tmpfs: fsync costs nothing there; set BENCH_RT_TMPDIR to a real disk`);
  let redis: Awaited<ReturnType<typeof startRedis>> | null = null;
  try {
    redis = await startRedis();
    const viewport = await viewportBenchmark(work, redis);
    const annotations = await annotationBenchmark(work);

    const machine = {
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model ?? 'unknown',
      totalMemoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
      node: process.version,
      os: `${os.type()} ${os.release()} ${os.arch()}`,
      redis: redis.version,
      dataFilesystem: fsType,
    };

    // ---- viewport tables
    const vRows = viewport.results.map((r) => [
      String(r.followers),
      r.target,
      `${r.delivered}/${r.expected}`,
      fmt(r.deliveredPerSecond, 0),
      fmt(r.latencyMs.p50, 2),
      fmt(r.latencyMs.p99, 2),
      fmt(r.latencyMs.max, 1),
      fmt(r.cpu.serverCores, 2),
      fmt(r.cpu.redisCores, 2),
      fmt(r.serverAndRedisCpuUsPerDelivery, 0),
      fmt(r.cpu.clientCores, 2),
    ]);
    const vRatios = SIZES.map((size) => {
      const o = viewport.results.find((r) => r.followers === size && r.target === 'ours')!;
      const b = viewport.results.find((r) => r.followers === size && r.target === 'bare')!;
      return {
        followers: size,
        p50: o.latencyMs.p50 / b.latencyMs.p50,
        p99: o.latencyMs.p99 / b.latencyMs.p99,
        throughput: o.deliveredPerSecond / b.deliveredPerSecond,
        cpuPerDelivery: o.serverAndRedisCpuUsPerDelivery / b.serverAndRedisCpuUsPerDelivery,
      };
    });
    // ---- annotation tables
    const aRows = annotations.results.map((r) => [
      String(r.inFlight),
      r.target === 'ours' ? 'ours (socket, ack, fan-out)' : 'bare (store.annotations.create)',
      r.writerSockets !== null ? `${annotations.listeners} + ${r.writerSockets}` : '-',
      String(r.ops),
      fmt(r.opsPerSecond, 0),
      fmt(r.ackLatencyMs.p50, 2),
      fmt(r.ackLatencyMs.p99, 2),
      r.fanoutLatencyMs ? fmt(r.fanoutLatencyMs.p50, 2) : '-',
      r.fanoutLatencyMs ? fmt(r.fanoutLatencyMs.p99, 2) : '-',
      r.fanoutExpected !== null ? `${r.fanoutDelivered}/${r.fanoutExpected}` : '-',
      fmt(r.serverCpuUsPerOp, 0),
      fmt(r.target === 'ours' ? r.cpu?.serverCores : r.cpu?.clientCores, 2),
      r.target === 'ours' ? fmt(r.cpu?.clientCores, 2) : '-',
      Object.keys(r.errors).length ? Object.entries(r.errors).map(([k, v]) => `${k} ${v}`).join(', ') : '0',
    ]);
    const aRatios = annotations.inFlight.map((inFlight) => {
      const o = annotations.results.find((r) => r.inFlight === inFlight && r.target === 'ours')!;
      const b = annotations.results.find((r) => r.inFlight === inFlight && r.target === 'bare')!;
      return { inFlight, opsPerSecond: o.opsPerSecond / b.opsPerSecond, p50: o.ackLatencyMs.p50 / b.ackLatencyMs.p50, p99: o.ackLatencyMs.p99 / b.ackLatencyMs.p99 };
    });

    const out: string[] = [];
    out.push('');
    out.push(`Machine: ${machine.cpus} CPU (${machine.cpuModel}), ${machine.totalMemoryGiB} GiB RAM, Node ${machine.node}, ${machine.os}, redis-server ${machine.redis}, data on ${machine.dataFilesystem}`);
    out.push('');
    out.push(
      `Viewport fan-out: 1 presenter on node A, ${RATE} updates/s; per row ${DURATION_S} s measured in ${ROUNDS} turns (ours and bare alternating, ${WARMUP_S} s warm-up each); ` +
        'followers alternate node A / node B; websocket, HTTPS, one redis-server',
    );
    out.push('');
    out.push(
      ...table(['followers', 'target', 'delivered', 'events/s', 'p50 ms', 'p99 ms', 'max ms', 'nodes cores', 'redis cores', 'CPU µs/delivery', 'client cores'], vRows),
    );
    out.push('');
    out.push(
      ...table(
        ['followers', 'ours / bare', 'p50', 'p99', 'events/s', 'CPU/delivery'],
        vRatios.map((r) => [String(r.followers), '', `${fmt(r.p50, 2)}x`, `${fmt(r.p99, 2)}x`, `${fmt(r.throughput, 2)}x`, `${fmt(r.cpuPerDelivery, 2)}x`]),
      ),
    );
    out.push('');
    out.push(
      `Annotation writes: annotation:create with ack on one node (embedded SQLite, WAL, synchronous=FULL, ${machine.dataFilesystem}); ${WARMUP_S} s warm-up + ${WRITE_DURATION_S} s per row; ` +
        `room = ${annotations.listeners} listeners (fan-out measured) + the writer sockets (each <= ${WRITES_PER_SOCKET} writes/s under the ${RATE_LIMITS.write.points}/s per-socket budget; they receive the fan-out too)`,
    );
    out.push('');
    out.push(
      ...table(['in flight', 'target', 'room', 'ops', 'ops/s', 'ack p50 ms', 'ack p99 ms', 'fan-out p50 ms', 'fan-out p99 ms', 'delivered', 'CPU µs/op', 'server cores', 'client cores', 'errors'], aRows),
    );
    out.push('');
    out.push(
      ...table(
        ['in flight', 'ours / bare', 'ops/s', 'ack p50', 'ack p99'],
        aRatios.map((r) => [String(r.inFlight), '', `${fmt(r.opsPerSecond, 2)}x`, `${fmt(r.p50, 2)}x`, `${fmt(r.p99, 2)}x`]),
      ),
    );
    const budgetBound = annotations.results.filter((r) => r.target === 'ours' && r.budgetWaits > 0);
    if (budgetBound.length) {
      out.push(
        `NOTE: some writes waited for a writer socket's budget (${budgetBound.map((r) => `${r.inFlight} in flight: ${r.budgetWaits} waits, ${fmt((100 * r.budgetWaits) / r.ops, 1)} % of writes`).join('; ')}); ` +
          'above 1 % the row is measured again with more writer sockets (up to twice), and its ops/s is a floor if that was not enough (see BENCH_RT_WRITERS).',
      );
    }
    const noisy = [...viewport.results.map((r) => ({ what: `viewport ${r.followers} ${r.target}`, cpu: r.cpu })), ...annotations.results.filter((r) => r.cpu).map((r) => ({ what: `annotations ${r.inFlight} ${r.target}`, cpu: r.cpu! }))].filter(
      (x) => (x.cpu.otherCores ?? 0) > NOISE_CORES,
    );
    if (noisy.length) {
      out.push(`WARNING: other processes used the CPU during ${noisy.map((x) => `${x.what} (${fmt(x.cpu.otherCores, 2)} cores)`).join('; ')}: re-run on a quiet machine.`);
    }
    console.log(out.join('\n'));

    const output = {
      benchmark: 'realtime',
      date: new Date().toISOString(),
      command: 'npm run bench',
      machine,
      settings: {
        followerSizes: SIZES,
        viewportRatePerSecond: RATE,
        viewportDurationS: DURATION_S,
        viewportRounds: ROUNDS,
        writeDurationS: WRITE_DURATION_S,
        warmupS: WARMUP_S,
        nodes: 2,
        transport: 'websocket',
        annotationListeners: annotations.listeners,
        writesPerWriterSocketPerSecond: WRITES_PER_SOCKET,
        serverRateLimits: RATE_LIMITS,
        tmpdir: TMPDIR,
      },
      viewport: { results: viewport.results, ratiosOursOverBare: vRatios },
      annotations: { results: annotations.results, ratiosOursOverBare: aRatios },
      totalSeconds: (Date.now() - started) / 1000,
    };
    fs.mkdirSync(path.dirname(RESULTS), { recursive: true });
    fs.writeFileSync(RESULTS, `${JSON.stringify(output, null, 2)}\n`);
    console.log(`\nWritten ${path.relative(process.cwd(), RESULTS)} (${output.totalSeconds.toFixed(0)} s in all)`);
  } finally {
    for (const s of allSockets.splice(0)) s.disconnect();
    if (redis) await stopChild(redis.proc);
    fs.rmSync(work, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`bench failed: ${(err as Error).stack ?? err}\n`);
    process.exit(1);
  },
);
