// Tile-serving benchmark: what the authorised, encrypted tile endpoint costs against serving the
// very same DeepZoom tiles as plain static files. Run with `npm run bench` (about a minute).
//
//   (a) our node: GET /api/cases/:caseId/materials/:materialId/slide_files/:level/:x_y.jpeg
//       (session cookie, authorisation, AES-256-GCM decryption per request)
//   (b) express.static over the plaintext pyramid, HTTPS, same key and certificate
//   (c) nginx over the plaintext pyramid, HTTPS, same key and certificate, if /usr/sbin/nginx exists
//   control: GET /api/me on our node (session + authentication, no tile), to split the gap
//
// Every target gets 64 connections cycling through the same ~200 tile paths, a 2 s warm-up and a
// 10 s measurement, one target at a time. The servers run in a child process (bench/tiles-server),
// nginx in its own; autocannon runs here. Also measured: decryptBuffer / encryptBuffer on the actual
// tiles (µs per tile) and the store calls an authorised request makes.
//
// Environment (all optional): BENCH_DURATION (s, 10), BENCH_WARMUP (s, 2), BENCH_CONNECTIONS (64),
// BENCH_TILES (200), BENCH_IMAGE_SIZE (px, 4096), BENCH_NGINX (path, /usr/sbin/nginx), BENCH_TMPDIR
// (where the data directory and pyramid go; default the OS temp directory), BENCH_RESULTS (JSON path),
// BENCH_RETRIES (2: a measurement during which other processes used more than 0.2 cores is repeated),
// BENCH_COMMIT (recorded in the JSON; default `git rev-parse --short HEAD`),
// BENCH_PROFILE (a directory: write a V8 CPU profile of the server per node target; slows it down).
import { fork, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { setTimeout as delay } from 'node:timers/promises';
import autocannon from 'autocannon';
import sharp from 'sharp';
import type { ChildCommand, ReadyMessage } from './tiles-server';

const env = (name: string, fallback: number) => (process.env[name] ? Number(process.env[name]) : fallback);
const DURATION_S = env('BENCH_DURATION', 10);
const WARMUP_S = env('BENCH_WARMUP', 2);
const CONNECTIONS = env('BENCH_CONNECTIONS', 64);
const TILE_COUNT = env('BENCH_TILES', 200);
const IMAGE_SIZE = env('BENCH_IMAGE_SIZE', 4096);
const NGINX = process.env.BENCH_NGINX || '/usr/sbin/nginx';
const RETRIES = env('BENCH_RETRIES', 2);
const ROOT = path.resolve(__dirname, '..', '..', '..');
const RESULTS = path.resolve(process.env.BENCH_RESULTS || path.join(ROOT, 'bench', 'results', 'tiles.json'));
const PROFILE_DIR = process.env.BENCH_PROFILE ? path.resolve(process.env.BENCH_PROFILE) : null;
const CLK_TCK = 100; // Linux USER_HZ: /proc/<pid>/stat counts CPU time in 1/100 s

/** The server's DeepZoom parameters (src/cases/converter.ts): 256 px tiles, no overlap, JPEG q85. */
const TILE_SIZE = 256;
const JPEG_QUALITY = 85;
const deepZoomLevels = (width: number, height: number) => Math.ceil(Math.log2(Math.max(width, height))) + 1;

const log = (message: string) => process.stderr.write(`[bench] ${message}\n`);
const fmt = (v: number | null | undefined, digits = 1) => (v === null || v === undefined || Number.isNaN(v) ? '-' : v.toFixed(digits));

// ------------------------------------------------------------------ HTTPS client with a cookie jar

interface Reply {
  status: number;
  body: Buffer;
  json<T>(): T;
}

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

  request(method: string, p: string, body?: Buffer | object, extraHeaders: Record<string, string> = {}): Promise<Reply> {
    const payload = body === undefined ? undefined : Buffer.isBuffer(body) ? body : Buffer.from(JSON.stringify(body));
    const headers: Record<string, string> = { ...extraHeaders };
    if (payload) {
      headers['content-length'] = String(payload.length);
      headers['content-type'] ??= 'application/json';
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
          const buf = Buffer.concat(chunks);
          resolve({ status: res.statusCode ?? 0, body: buf, json: <T>() => JSON.parse(buf.toString('utf8')) as T });
        });
      });
      req.on('error', reject);
      req.end(payload);
    });
  }

  async expect(status: number, method: string, p: string, body?: Buffer | object, headers?: Record<string, string>): Promise<Reply> {
    const reply = await this.request(method, p, body, headers);
    if (reply.status !== status) throw new Error(`${method} ${p}: expected ${status}, got ${reply.status}: ${reply.body.toString('utf8').slice(0, 300)}`);
    return reply;
  }

  close(): void {
    this.agent.destroy();
  }
}

// ------------------------------------------------------------------ the server child process

class ServerChild {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve(v: unknown): void; reject(e: Error): void }>();
  readonly ready: Promise<ReadyMessage>;

  constructor(readonly proc: ChildProcess) {
    this.ready = new Promise((resolve, reject) => {
      proc.once('exit', (code) => reject(new Error(`server child exited with ${code}`)));
      proc.on('message', (msg: ReadyMessage | { id: number; ok: boolean; result?: unknown; error?: string }) => {
        if ('type' in msg) return resolve(msg);
        const waiter = this.pending.get(msg.id);
        this.pending.delete(msg.id);
        if (msg.ok) waiter?.resolve(msg.result);
        else waiter?.reject(new Error(msg.error));
      });
    });
  }

  call<T>(command: ChildCommand): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.proc.send({ ...command, id });
    });
  }
}

/** Whole-machine CPU time by state, in µs (from /proc/stat); null off Linux. */
function systemCpuMicros(): { busy: number; interrupts: number; iowait: number; steal: number; idle: number } | null {
  try {
    const [user, nice, system, idle, iowait, irq, softirq, steal] = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    const us = (ticks: number) => (ticks * 1_000_000) / CLK_TCK;
    return { busy: us(user + nice + system), interrupts: us(irq + softirq), iowait: us(iowait), steal: us(steal), idle: us(idle) };
  } catch {
    return null;
  }
}

/** CPU ticks of every process on the machine (kernel threads included), by pid; empty off Linux. */
function processTicks(): Map<number, { comm: string; ticks: number; ppid: number }> {
  const table = new Map<number, { comm: string; ticks: number; ppid: number }>();
  let pids: string[] = [];
  try {
    pids = fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d));
  } catch {
    return table;
  }
  for (const pid of pids) {
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      table.set(Number(pid), { comm, ppid: Number(fields[1]), ticks: Number(fields[11]) + Number(fields[12]) });
    } catch {
      // gone meanwhile
    }
  }
  return table;
}

/** The processes (outside `exclude` and their children) that used the most CPU between two tables, in cores. */
function topOthers(before: Map<number, { ticks: number }>, after: Map<number, { comm: string; ticks: number; ppid: number }>, exclude: number[], wallUs: number) {
  const excluded = new Set(exclude);
  const others: { pid: number; comm: string; cores: number }[] = [];
  for (const [pid, p] of after) {
    if (excluded.has(pid) || excluded.has(p.ppid)) continue;
    const ticks = p.ticks - (before.get(pid)?.ticks ?? 0);
    if (ticks > 0) others.push({ pid, comm: p.comm, cores: (ticks * 1_000_000) / CLK_TCK / wallUs });
  }
  return others.sort((a, b) => b.cores - a.cores).slice(0, 5);
}

/** CPU time (user + system, all threads) of a process and its direct children, in µs; null off Linux. */
function cpuMicros(pid: number): number | null {
  try {
    let total = 0;
    const pids = [pid];
    for (const task of fs.readdirSync(`/proc/${pid}/task`)) {
      const children = fs.readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim();
      if (children) pids.push(...children.split(/\s+/).map(Number));
    }
    for (const p of pids) {
      const stat = fs.readFileSync(`/proc/${p}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      total += Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14 and 15 of stat)
    }
    return (total * 1_000_000) / CLK_TCK;
  } catch {
    return null;
  }
}

// ------------------------------------------------------------------ nginx (optional)

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function startNginx(bin: string, root: string, certFile: string, keyFile: string, work: string): Promise<{ url: string; proc: ChildProcess; version: string }> {
  const version = await new Promise<string>((resolve) => {
    const p = spawn(bin, ['-v'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let out = '';
    p.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    p.on('close', () => resolve(out.trim().replace(/^nginx version:\s*/, '')));
  });
  const port = await freePort();
  fs.mkdirSync(path.join(work, 'tmp'), { recursive: true });
  const user = process.getuid?.() === 0 ? `user ${os.userInfo().username};` : '';
  // One worker, like the one node process; keep-alive without a request cap, like node.
  const conf = `
${user}
worker_processes 1;
pid ${work}/nginx.pid;
error_log ${work}/error.log warn;
events { worker_connections 4096; }
http {
  types { image/jpeg jpeg jpg; }
  default_type application/octet-stream;
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_timeout 75s;
  keepalive_requests 1000000;
  client_body_temp_path ${work}/tmp/body;
  proxy_temp_path ${work}/tmp/proxy;
  fastcgi_temp_path ${work}/tmp/fastcgi;
  uwsgi_temp_path ${work}/tmp/uwsgi;
  scgi_temp_path ${work}/tmp/scgi;
  server {
    listen 127.0.0.1:${port} ssl;
    ssl_certificate ${certFile};
    ssl_certificate_key ${keyFile};
    ssl_protocols TLSv1.2 TLSv1.3;
    root ${root};
  }
}
`;
  const confFile = path.join(work, 'nginx.conf');
  fs.writeFileSync(confFile, conf);
  const proc = spawn(bin, ['-p', work, '-e', path.join(work, 'error.log'), '-c', confFile, '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const deadline = Date.now() + 5000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`nginx exited (${proc.exitCode}): ${stderr.trim()}`);
    const up = await new Promise<boolean>((resolve) => {
      const s = tls.connect({ host: '127.0.0.1', port, servername: 'localhost', rejectUnauthorized: false }, () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (up) break;
    if (Date.now() > deadline) {
      proc.kill('SIGTERM');
      throw new Error(`nginx did not start: ${stderr.trim()}`);
    }
    await delay(50);
  }
  return { url: `https://127.0.0.1:${port}`, proc, version };
}

// ------------------------------------------------------------------ load runs

interface LoadResult {
  target: string;
  url: string;
  requestsPerSecond: number;
  latencyMs: { p50: number; p90: number; p99: number; mean: number; max: number };
  autocannonLatencyMs: { p50: number; p99: number };
  requests2xx: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  statusCodes: Record<string, number>;
  megabytesPerSecond: number;
  serverCpuUsPerRequest: number | null;
  serverCpuCores: number | null;
  /** Share of wall time the server's event loop was not waiting for events (node targets only). */
  serverEventLoopUtilization: number | null;
  clientCpuCores: number;
  /** Whole machine during the run, in cores: busy in processes (user+system), in interrupts (irq+softirq: loopback network, disk completions), iowait, steal. */
  machineCores: { busy: number; interrupts: number; iowait: number; steal: number } | null;
  /** Process CPU (user+system) not accounted for by the server and autocannon: other processes. */
  otherLoadCores: number | null;
  /** The other processes that used the most CPU during the run (kernel threads included). */
  topOtherProcesses: { pid: number; comm: string; cores: number }[];
  durationS: number;
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

interface Elu {
  idle: number;
  active: number;
}

/** Above this much foreign process CPU (cores) during a measurement, the measurement is repeated. */
const NOISE_CORES = 0.2;

/** `load`, repeated (up to BENCH_RETRIES times) while other processes disturbed it; keeps the quietest attempt. */
async function measure(...args: Parameters<typeof load>): Promise<LoadResult & { attempts: number }> {
  let best: LoadResult | null = null;
  let attempts = 0;
  do {
    const result = await load(...args);
    attempts++;
    if (!best || (result.otherLoadCores ?? 0) < (best.otherLoadCores ?? 0)) best = result;
    if ((best.otherLoadCores ?? 0) <= NOISE_CORES) break;
    if (attempts <= RETRIES) log(`${args[0]}: other processes used ${fmt(result.otherLoadCores, 2)} cores; measuring again`);
  } while (attempts <= RETRIES);
  return { ...best, attempts };
}

async function load(
  target: string,
  url: string,
  paths: string[],
  headers: Record<string, string>,
  serverPid: number,
  elu: (() => Promise<Elu>) | null,
  profile?: { start(): Promise<unknown>; stop(): Promise<unknown> },
): Promise<LoadResult> {
  let next = 0;
  const options = (duration: number): autocannon.Options => ({
    url,
    connections: CONNECTIONS,
    duration,
    servername: 'localhost',
    headers,
    // One request template whose path advances through the list on every request (all clients share
    // the cursor, so the list is covered evenly and the same way for every target).
    requests: [{ setupRequest: (req) => ({ ...req, path: paths[next++ % paths.length] }) }],
  });
  log(`${target}: warm-up ${WARMUP_S} s`);
  await autocannon(options(WARMUP_S));
  log(`${target}: measuring ${DURATION_S} s at ${CONNECTIONS} connections`);
  let latencies = new Float64Array(1 << 16);
  let count = 0;
  await profile?.start();
  const elu0 = elu ? await elu() : null;
  const server0 = cpuMicros(serverPid);
  const machine0 = systemCpuMicros();
  const procs0 = processTicks();
  const client0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const run = autocannon(options(DURATION_S));
  run.on('response', (_client, status, _bytes, ms) => {
    if (status < 200 || status > 299) return;
    if (count === latencies.length) {
      const bigger = new Float64Array(latencies.length * 2);
      bigger.set(latencies);
      latencies = bigger;
    }
    latencies[count++] = ms;
  });
  const result = await run;
  const wallUs = Number(process.hrtime.bigint() - t0) / 1000;
  const server1 = cpuMicros(serverPid);
  const machine1 = systemCpuMicros();
  const procs1 = processTicks();
  const client = process.cpuUsage(client0);
  const elu1 = elu ? await elu() : null;
  await profile?.stop();
  const sorted = latencies.subarray(0, count).sort();
  const serverCpu = server0 !== null && server1 !== null ? server1 - server0 : null;
  const ok = result['2xx'];
  let sum = 0;
  for (const v of sorted) sum += v;
  return {
    target,
    url,
    requestsPerSecond: ok / result.duration,
    latencyMs: { p50: percentile(sorted, 50), p90: percentile(sorted, 90), p99: percentile(sorted, 99), mean: sum / count, max: sorted[count - 1] },
    autocannonLatencyMs: { p50: result.latency.p50, p99: result.latency.p99 },
    requests2xx: ok,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    statusCodes: Object.fromEntries(Object.entries(result.statusCodeStats).map(([k, v]) => [k, v.count])),
    megabytesPerSecond: result.throughput.average / 1e6,
    serverCpuUsPerRequest: serverCpu !== null && ok > 0 ? serverCpu / ok : null,
    serverCpuCores: serverCpu !== null ? serverCpu / wallUs : null,
    serverEventLoopUtilization: elu0 && elu1 ? (elu1.active - elu0.active) / (elu1.active - elu0.active + elu1.idle - elu0.idle) : null,
    clientCpuCores: (client.user + client.system) / wallUs,
    machineCores:
      machine0 && machine1
        ? {
            busy: (machine1.busy - machine0.busy) / wallUs,
            interrupts: (machine1.interrupts - machine0.interrupts) / wallUs,
            iowait: (machine1.iowait - machine0.iowait) / wallUs,
            steal: (machine1.steal - machine0.steal) / wallUs,
          }
        : null,
    otherLoadCores:
      machine0 && machine1 && serverCpu !== null ? (machine1.busy - machine0.busy - serverCpu - client.user - client.system) / wallUs : null,
    topOtherProcesses: topOthers(procs0, procs1, [process.pid, serverPid], wallUs),
    durationS: result.duration,
  };
}

// ------------------------------------------------------------------ main

/** The commit measured ("<sha> (modified)" when the work tree differs), or null outside a git checkout. */
function gitCommit(): string | null {
  const git = (...args: string[]) => spawnSync('git', args, { cwd: ROOT, encoding: 'utf8' });
  const head = git('rev-parse', '--short', 'HEAD');
  if (head.status !== 0) return null;
  const dirty = git('status', '--porcelain', '--', 'src', 'bench', 'package-lock.json').stdout.trim() !== '';
  return `${head.stdout.trim()}${dirty ? ' (modified)' : ''}`;
}

/**
 * A slide-like test image: pink stroma with purple nuclei (a seeded 1024 px SVG tile repeated by
 * libvips), so the tiles compress like real H&E tiles rather than like noise or a flat colour.
 */
async function syntheticSlide(size: number, file: string): Promise<void> {
  let state = 20240611;
  const random = () => (state = (state * 16807) % 2147483647) / 2147483647;
  const shapes: string[] = [];
  for (let i = 0; i < 60; i++) {
    const [x, y] = [random() * 1024, random() * 1024];
    const q = [random() * 200 - 100, random() * 200 - 100, random() * 300 - 150, random() * 300 - 150].map((v) => v.toFixed(0)).join(' ');
    shapes.push(`<path d="M${x.toFixed(0)} ${y.toFixed(0)} q ${q}" stroke="rgb(226,150,185)" stroke-width="${(4 + random() * 8).toFixed(1)}" fill="none" stroke-opacity="0.6"/>`);
  }
  for (let i = 0; i < 320; i++) {
    const [cx, cy, rx, ry, angle] = [random() * 1024, random() * 1024, 5 + random() * 12, 4 + random() * 9, random() * 180];
    const fill = `rgb(${80 + Math.floor(random() * 50)},${40 + Math.floor(random() * 35)},${130 + Math.floor(random() * 60)})`;
    shapes.push(`<ellipse cx="${cx.toFixed(1)}" cy="${cy.toFixed(1)}" rx="${rx.toFixed(1)}" ry="${ry.toFixed(1)}" transform="rotate(${angle.toFixed(0)} ${cx.toFixed(1)} ${cy.toFixed(1)})" fill="${fill}" fill-opacity="0.85"/>`);
  }
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="1024" height="1024">${shapes.join('')}</svg>`;
  const tile = await sharp(Buffer.from(svg)).png().toBuffer();
  await sharp({ create: { width: size, height: size, channels: 3, background: { r: 242, g: 208, b: 224 } }, limitInputPixels: false })
    .composite([{ input: tile, tile: true, blend: 'over' }])
    .jpeg({ quality: 90 })
    .toFile(file);
}

function tileList(width: number, height: number): { level: number; name: string }[] {
  const levels = deepZoomLevels(width, height);
  const all: { level: number; name: string }[] = [];
  for (let level = 0; level < levels; level++) {
    const scale = 2 ** (levels - 1 - level);
    const cols = Math.ceil(Math.ceil(width / scale) / TILE_SIZE);
    const rows = Math.ceil(Math.ceil(height / scale) / TILE_SIZE);
    for (let y = 0; y < rows; y++) for (let x = 0; x < cols; x++) all.push({ level, name: `${x}_${y}.jpeg` });
  }
  return all;
}

/** `n` tiles spread evenly over the whole pyramid (so in proportion to each level's tile count). */
function pick<T>(all: T[], n: number): T[] {
  if (all.length <= n) return all;
  return Array.from({ length: n }, (_, i) => all[Math.floor((i * all.length) / n)]);
}


async function main(): Promise<void> {
  const started = Date.now();
  const work = fs.mkdtempSync(path.join(process.env.BENCH_TMPDIR || os.tmpdir(), 'cc-bench-tiles-'));
  const dataDir = path.join(work, 'data');
  const plainDir = path.join(work, 'plain');
  fs.mkdirSync(plainDir);
  let child: ServerChild | null = null;
  let nginx: ChildProcess | null = null;
  try {
    // 1. The source image and the plaintext pyramid (the same libvips pipeline as the converter).
    log(`generating a ${IMAGE_SIZE} x ${IMAGE_SIZE} JPEG (synthetic slide)`);
    const source = path.join(work, 'bench.jpg');
    await syntheticSlide(IMAGE_SIZE, source);
    const upload = fs.readFileSync(source);
    log('writing the plaintext pyramid with sharp');
    await sharp(source, { limitInputPixels: false, failOn: 'error' })
      .autoOrient()
      .flatten({ background: '#ffffff' })
      .jpeg({ quality: JPEG_QUALITY })
      .tile({ size: TILE_SIZE, overlap: 0, layout: 'dz' })
      .toFile(path.join(plainDir, 'slide'));
    const plainTiles = path.join(plainDir, 'slide_files');

    // 2. The servers (our node and express.static), in a child process.
    const proc = fork(path.join(__dirname, 'tiles-server.js'), [dataDir, plainTiles], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    child = new ServerChild(proc);
    const ready = await child.ready;
    const ca = fs.readFileSync(path.join(dataDir, 'tls', 'cert.pem'), 'utf8');
    log(`node ${ready.url}, express.static ${ready.staticUrl}`);

    // 3. Log in as the demo site admin, change the one-time password, create a case, upload.
    const admin = ready.accounts.find((a) => a.role === 'site_admin');
    if (!admin) throw new Error('no demo site admin');
    const client = new Client(ready.url, ca);
    client.csrfToken = (await client.expect(200, 'GET', '/api/auth/csrf')).json<{ csrfToken: string }>().csrfToken;
    const login = await client.expect(200, 'POST', '/api/auth/login', { email: admin.email, password: admin.oneTimePassword });
    client.csrfToken = login.json<{ csrfToken: string }>().csrfToken;
    await client.expect(200, 'POST', '/api/auth/password', { currentPassword: admin.oneTimePassword, newPassword: `bench-${randomBytes(12).toString('base64url')}` });
    const caseId = (await client.expect(201, 'POST', '/api/cases', { title: 'Tile benchmark' })).json<{ case: { id: string } }>().case.id;
    log(`uploading ${(upload.length / 1e6).toFixed(1)} MB and waiting for the conversion`);
    const uploadStarted = Date.now();
    const materialId = (
      await client.expect(202, 'POST', `/api/cases/${caseId}/materials?name=bench.jpg`, upload, { 'content-type': 'application/octet-stream' })
    ).json<{ material: { id: string } }>().material.id;
    let material: { status: string; width: number | null; height: number | null; error: string | null };
    for (;;) {
      material = (await client.expect(200, 'GET', `/api/cases/${caseId}/materials/${materialId}`)).json<{ material: typeof material }>().material;
      if (material.status === 'ready') break;
      if (material.status === 'failed') throw new Error(`conversion failed: ${material.error}`);
      if (Date.now() - uploadStarted > 180_000) throw new Error('conversion did not finish in 3 minutes');
      await delay(200);
    }
    const conversionMs = Date.now() - uploadStarted;
    const width = material.width!;
    const height = material.height!;

    // 4. The tile set, checked against both servers: same bytes from the decrypting endpoint and on disk.
    const all = tileList(width, height);
    const tiles = pick(all, TILE_COUNT);
    const tilePrefix = `/api/cases/${caseId}/materials/${materialId}/slide_files`;
    const encryptedPaths = tiles.map((t) => `${tilePrefix}/${t.level}/${t.name}`);
    const plainPaths = tiles.map((t) => `/${t.level}/${t.name}`);
    const staticClient = new Client(ready.staticUrl, ca);
    let identical = 0;
    let plainBytes = 0;
    for (let i = 0; i < tiles.length; i++) {
      const a = await client.expect(200, 'GET', encryptedPaths[i]);
      const b = await staticClient.expect(200, 'GET', plainPaths[i]);
      if (a.body.equals(b.body)) identical++;
      plainBytes += b.body.length;
    }
    staticClient.close();
    const perLevel: Record<number, number> = {};
    for (const t of tiles) perLevel[t.level] = (perLevel[t.level] ?? 0) + 1;
    log(`${tiles.length} of ${all.length} tiles selected; ${identical} byte-identical between the two servers`);

    // 5. Store calls per request (counted over 20 sequential requests of each kind).
    const perRequest = async (p: string): Promise<Record<string, number>> => {
      await child!.call({ cmd: 'probe-start' });
      for (let i = 0; i < 20; i++) await client.expect(200, 'GET', p);
      const counts = await child!.call<Record<string, number>>({ cmd: 'probe-stop' });
      return Object.fromEntries(Object.entries(counts).map(([k, v]) => [k, v / 20]));
    };
    const storeCallsPerTile = await perRequest(encryptedPaths[tiles.length - 1]);
    const storeCallsPerMe = await perRequest('/api/me');

    // 6. nginx, if installed.
    const haveNginx = fs.existsSync(NGINX);
    let nginxInfo: { url: string; version: string } | null = null;
    if (haveNginx) {
      const started = await startNginx(NGINX, plainTiles, path.join(dataDir, 'tls', 'cert.pem'), path.join(dataDir, 'tls', 'key.pem'), path.join(work, 'nginx'));
      nginx = started.proc;
      nginxInfo = { url: started.url, version: started.version };
      const nginxClient = new Client(started.url, ca);
      await nginxClient.expect(200, 'GET', plainPaths[0]);
      nginxClient.close();
      log(`nginx ${started.version} ${started.url}`);
    } else {
      log(`nginx: not installed (${NGINX} not found)`);
    }

    // 7. Load, one target at a time.
    const sessionCookie = `__Host-sid=${client.cookies.get('__Host-sid')}`;
    const results: (LoadResult & { attempts: number })[] = [];
    const elu = () => child!.call<Elu>({ cmd: 'elu' });
    const profile = (name: string) => {
      if (!PROFILE_DIR) return undefined;
      fs.mkdirSync(PROFILE_DIR, { recursive: true });
      return { start: () => child!.call({ cmd: 'profile-start' }), stop: () => child!.call({ cmd: 'profile-stop', file: path.join(PROFILE_DIR, `${name}.cpuprofile`) }) };
    };
    results.push(await measure('(a) authorised encrypted tiles (node)', ready.url, encryptedPaths, { cookie: sessionCookie }, proc.pid!, elu, profile('a-encrypted')));
    results.push(await measure('(b) express.static plaintext (node)', ready.staticUrl, plainPaths, {}, proc.pid!, elu, profile('b-static')));
    if (nginxInfo && nginx) results.push(await measure('(c) nginx plaintext', nginxInfo.url, plainPaths, {}, nginx.pid!, null));
    results.push(await measure('control: GET /api/me (session+auth, no tile)', ready.url, ['/api/me'], { cookie: sessionCookie }, proc.pid!, elu, profile('control-me')));

    // 8. Micro-benchmarks in the server process: decryption of the actual tiles, and the store calls.
    log('micro-benchmarks: decryptBuffer / encryptBuffer on the tiles, store calls');
    const sid = decodeURIComponent(client.cookies.get('__Host-sid')!).replace(/^s:/, '').replace(/\.[^.]*$/, '');
    const micro = await child.call<{
      tiles: number;
      meanTileBytes: number;
      decryptUsPerTile: number;
      encryptUsPerTile: number;
      readSealedFileUsPerTile: number;
      storeUsPerCall: Record<string, number>;
    }>({ cmd: 'micro', sid, caseId, materialId, tiles });
    client.close();

    // 9. Report.
    const staticRps = results.find((r) => r.target.startsWith('(b)'))!.requestsPerSecond;
    const storeUs = (calls: Record<string, number>) =>
      Object.entries(calls).reduce((sum, [k, n]) => sum + n * (micro.storeUsPerCall[k] ?? 0), 0);
    const machine = {
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model ?? 'unknown',
      totalMemoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
      node: process.version,
      openssl: process.versions.openssl,
      libvips: sharp.versions.vips,
      os: `${os.type()} ${os.release()} ${os.arch()}`,
    };
    const header = ['target', 'req/s', 'p50 ms', 'p99 ms', 'vs express.static', 'server CPU µs/req', 'server cores', 'loop busy', 'client cores', 'non-2xx'];
    const rows: string[][] = results.map((r) => [
      r.target,
      fmt(r.requestsPerSecond, 0),
      fmt(r.latencyMs.p50, 2),
      fmt(r.latencyMs.p99, 2),
      `${fmt(r.requestsPerSecond / staticRps, 2)}x`,
      fmt(r.serverCpuUsPerRequest, 0),
      fmt(r.serverCpuCores, 2),
      r.serverEventLoopUtilization === null ? '-' : `${fmt(r.serverEventLoopUtilization * 100, 0)}%`,
      fmt(r.clientCpuCores, 2),
      String(r.non2xx + r.errors),
    ]);
    if (!nginxInfo) rows.splice(2, 0, ['(c) nginx plaintext', 'not installed', '', '', '', '', '', '', '', '']);
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
    const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ');
    console.log('');
    console.log(`Tiles: ${CONNECTIONS} connections, ${WARMUP_S} s warm-up + ${DURATION_S} s per target, ${tiles.length} tile paths (mean ${(plainBytes / tiles.length / 1024).toFixed(1)} KiB), HTTPS on 127.0.0.1`);
    console.log(`Machine: ${machine.cpus} CPU (${machine.cpuModel}), ${machine.totalMemoryGiB} GiB RAM, Node ${machine.node}, OpenSSL ${machine.openssl}, ${machine.os}`);
    console.log('');
    console.log(line(header));
    console.log(line(widths.map((w) => '-'.repeat(w))));
    for (const r of rows) console.log(line(r));
    console.log('');
    for (const r of results.filter((x) => x.non2xx + x.errors + x.timeouts > 0)) {
      console.log(`WARNING: ${r.target}: ${r.non2xx} non-2xx answers (${JSON.stringify(r.statusCodes)}), ${r.errors} errors, ${r.timeouts} timeouts; req/s counts 2xx only.`);
    }
    const noisy = results.filter((r) => (r.otherLoadCores ?? 0) > NOISE_CORES);
    if (noisy.length) {
      console.log(
        `WARNING: other processes used the CPU during ${noisy
          .map((r) => `${r.target.split(' ')[0]} (${fmt(r.otherLoadCores, 2)} cores: ${r.topOtherProcesses.slice(0, 3).map((p) => `${p.comm} ${fmt(p.cores, 2)}`).join(', ')})`)
          .join('; ')}; ` +
          'these numbers are not comparable. Re-run on a quiet machine.',
      );
    }
    console.log(`nginx: ${nginxInfo ? nginxInfo.version : `not installed (${NGINX})`}`);
    console.log(
      `Encryption per tile (AES-256-GCM, mean ${(micro.meanTileBytes / 1024).toFixed(1)} KiB): decryptBuffer ${fmt(micro.decryptUsPerTile, 1)} µs, encryptBuffer ${fmt(micro.encryptUsPerTile, 1)} µs` +
        ` (reading the sealed file: ${fmt(micro.readSealedFileUsPerTile, 1)} µs)`,
    );
    console.log(
      `Store per authorised tile request: ${Object.entries(storeCallsPerTile)
        .map(([k, n]) => `${k} x${n} ${fmt(micro.storeUsPerCall[k], 1)} µs`)
        .join(', ')} = ${fmt(storeUs(storeCallsPerTile), 0)} µs`,
    );
    console.log(`Tiles byte-identical between the decrypting endpoint and the plaintext pyramid: ${identical}/${tiles.length}`);

    const output = {
      benchmark: 'tiles',
      date: new Date().toISOString(),
      commit: process.env.BENCH_COMMIT || gitCommit(),
      command: 'npm run bench',
      machine,
      profiled: PROFILE_DIR !== null,
      settings: { connections: CONNECTIONS, warmupS: WARMUP_S, durationS: DURATION_S, imageSize: IMAGE_SIZE, tileSize: TILE_SIZE, tmpdir: path.dirname(work) },
      material: { width, height, levels: deepZoomLevels(width, height), tilesInPyramid: all.length, uploadBytes: upload.length, conversionMs },
      tileSet: { count: tiles.length, perLevel, meanBytes: plainBytes / tiles.length, byteIdenticalAcrossServers: identical },
      nginx: nginxInfo ? { installed: true, version: nginxInfo.version } : { installed: false, path: NGINX },
      results: results.map((r) => ({ ...r, ratioVsExpressStatic: r.requestsPerSecond / staticRps })),
      perTileCrypto: {
        meanTileBytes: micro.meanTileBytes,
        decryptUs: micro.decryptUsPerTile,
        encryptUs: micro.encryptUsPerTile,
        readSealedFileUs: micro.readSealedFileUsPerTile,
      },
      store: {
        usPerCall: micro.storeUsPerCall,
        callsPerTileRequest: storeCallsPerTile,
        callsPerMeRequest: storeCallsPerMe,
        usPerTileRequest: storeUs(storeCallsPerTile),
        usPerMeRequest: storeUs(storeCallsPerMe),
      },
      totalSeconds: (Date.now() - started) / 1000,
    };
    fs.mkdirSync(path.dirname(RESULTS), { recursive: true });
    fs.writeFileSync(RESULTS, `${JSON.stringify(output, null, 2)}\n`);
    console.log(`\nWritten ${path.relative(process.cwd(), RESULTS)} (${output.totalSeconds.toFixed(0)} s in all)`);
  } finally {
    if (nginx && nginx.exitCode === null) {
      nginx.kill('SIGTERM');
      await new Promise((resolve) => nginx!.once('exit', resolve));
    }
    if (child) {
      await Promise.race([child.call({ cmd: 'close' }).catch(() => undefined), delay(5000)]);
      if (child.proc.exitCode === null) child.proc.kill('SIGTERM');
    }
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
