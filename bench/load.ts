// Load benchmarks of one node (bench/load-node.ts in its own process):
//
// 1. Login storm: a case room is active (a presenter sending viewport updates at 20 Hz to
//    BENCH_LOAD_FOLLOWERS followers) while BENCH_LOAD_LOGINS_PER_S sign-ins a second arrive, each
//    a new browser (new TLS connection, GET /api/auth/csrf, POST /api/auth/login with the real
//    argon2id check). Measured before and during the storm, side by side: the node's event-loop
//    delay (p50/p99/max), the room's fan-out latency (presenter send -> follower receive), login
//    latency and achieved logins/s, the node's CPU.
// 2. Connections: memory of idle authenticated sockets. A fresh node (--max-old-space-size=1024,
//    --expose-gc) is measured after a full GC with 0, then BENCH_LOAD_SOCKETS/3, 2/3 and all
//    sockets open (spread over 10 sessions); the slope is the memory per socket, and
//    (1 GiB - baseline heap) / slope the sockets one node holds within a 1 GiB heap.
//
//   npm run bench:load        (or: tsc -p bench/tsconfig.json && node bench/dist/bench/load.js)
//
// Prints tables, writes bench/results/load.json, states the machine.
import { fork, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { io as ioClient, type Socket as ClientSocket } from 'socket.io-client';

const env = (name: string, fallback: number) => (process.env[name] ? Number(process.env[name]) : fallback);
const LOGINS_PER_S = env('BENCH_LOAD_LOGINS_PER_S', 50);
const PHASE_S = env('BENCH_LOAD_PHASE_S', 10);
const FOLLOWERS = env('BENCH_LOAD_FOLLOWERS', 20);
const VIEWPORT_HZ = 20;
const SOCKETS = env('BENCH_LOAD_SOCKETS', 3000);
const ROOT = path.resolve(__dirname, '..', '..', '..');
const RESULTS = path.resolve(process.env.BENCH_LOAD_RESULTS || path.join(ROOT, 'bench', 'results', 'load.json'));
const TMPDIR = process.env.BENCH_LOAD_TMPDIR || os.tmpdir();
const FAKE_MATERIAL = 'MaterialMaterialMateri';

const log = (m: string) => process.stderr.write(`[bench:load] ${m}\n`);
const fmt = (v: number | null | undefined, d = 1) => (v === null || v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(d));
function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ------------------------------------------------------------------ node process

interface NodeHandle {
  proc: ChildProcess;
  url: string;
  ca: string;
  accounts: { role: string; email: string; oneTimePassword: string }[];
  ask<T>(cmd: string, reply: string): Promise<T>;
  close(): Promise<void>;
}

async function startNode(dataDir: string, execArgv: string[]): Promise<NodeHandle> {
  const proc = fork(path.join(__dirname, 'load-node.js'), [dataDir], { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const ready = await new Promise<{ url: string; accounts: NodeHandle['accounts'] }>((resolve, reject) => {
    proc.once('exit', (code) => reject(new Error(`node exited ${code}`)));
    proc.on('message', (m: { type: string; url: string; accounts: NodeHandle['accounts'] }) => m.type === 'ready' && resolve(m));
  });
  const ask = <T>(cmd: string, reply: string) =>
    new Promise<T>((resolve) => {
      const on = (m: { type: string }) => {
        if (m.type !== reply) return;
        proc.off('message', on);
        resolve(m as T);
      };
      proc.on('message', on);
      proc.send({ cmd });
    });
  return {
    proc,
    url: ready.url,
    ca: fs.readFileSync(path.join(dataDir, 'tls', 'cert.pem'), 'utf8'),
    accounts: ready.accounts,
    ask,
    close: async () => {
      const exited = new Promise((r) => proc.once('exit', r));
      proc.send({ cmd: 'close' });
      const t = setTimeout(() => proc.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(t);
    },
  };
}

function cpuUs(pid: number): number {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1e6) / 100; // utime + stime, USER_HZ 100
}

// ------------------------------------------------------------------ HTTP client

class Browser {
  readonly cookies = new Map<string, string>();
  csrf = '';
  constructor(
    readonly url: string,
    readonly ca: string,
    /** A new TLS connection per request, as a new browser makes (false: keep-alive). */
    readonly agent: https.Agent | false = false,
  ) {}

  cookieHeader(): string {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  }

  request(method: string, p: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
    return new Promise((resolve, reject) => {
      const data = body === undefined ? undefined : JSON.stringify(body);
      const u = new URL(p, this.url);
      const req = https.request(
        {
          method,
          host: u.hostname,
          port: u.port,
          path: u.pathname,
          ca: this.ca,
          agent: this.agent,
          headers: { cookie: this.cookieHeader(), 'x-csrf-token': this.csrf, ...(data ? { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(data)) } : {}) },
        },
        (res) => {
          for (const c of res.headers['set-cookie'] ?? []) {
            const [pair] = c.split(';');
            const i = pair!.indexOf('=');
            this.cookies.set(pair!.slice(0, i), pair!.slice(i + 1));
          }
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            let parsed: Record<string, unknown> = {};
            try {
              parsed = JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}');
            } catch {
              /* not JSON */
            }
            if (typeof parsed.csrfToken === 'string') this.csrf = parsed.csrfToken;
            resolve({ status: res.statusCode ?? 0, body: parsed });
          });
        },
      );
      req.on('error', reject);
      req.end(data);
    });
  }

  async login(email: string, password: string): Promise<void> {
    await this.request('GET', '/api/auth/csrf');
    const res = await this.request('POST', '/api/auth/login', { email, password });
    if (res.status !== 200) throw new Error(`login ${email}: ${res.status} ${JSON.stringify(res.body)}`);
  }
}

async function activate(node: NodeHandle, role: string): Promise<{ email: string; password: string }> {
  const a = node.accounts.find((x) => x.role === role)!;
  const b = new Browser(node.url, node.ca);
  await b.login(a.email, a.oneTimePassword);
  const password = `load bench passphrase ${Math.random().toString(36).slice(2)}`;
  const res = await b.request('POST', '/api/auth/password', { currentPassword: a.oneTimePassword, newPassword: password });
  if (res.status !== 200) throw new Error(`password change: ${res.status}`);
  return { email: a.email, password };
}

async function openSocket(url: string, ca: string, cookie: string): Promise<ClientSocket> {
  const s = ioClient(url, { path: '/socket.io', transports: ['websocket'], reconnection: false, autoConnect: false, ca, extraHeaders: { Cookie: cookie } });
  await new Promise<void>((resolve, reject) => {
    s.once('connect', () => resolve());
    s.once('connect_error', reject);
    s.connect();
  });
  return s;
}

async function mustCall(s: ClientSocket, event: string, payload: unknown): Promise<unknown> {
  const r = (await s.timeout(15_000).emitWithAck(event, payload)) as { ok: boolean; data?: unknown; error?: { code: string } };
  if (!r.ok) throw new Error(`${event}: ${r.error?.code}`);
  return r.data;
}

// ------------------------------------------------------------------ 1. login storm

interface Phase {
  phase: 'before' | 'during';
  seconds: number;
  loginsAttempted: number;
  loginsOk: number;
  loginsPerSecond: number;
  loginMs: { p50: number; p99: number };
  eventLoopDelayMs: { p50: number; p99: number; max: number };
  fanout: { sent: number; delivered: number; expected: number; p50Ms: number; p99Ms: number };
  nodeCores: number;
  /** This load generator's own CPU: when it nears a core, the figures measure the client too. */
  clientCores: number;
  /**
   * Linux PSI "some" CPU pressure over the last 10 s (% of time something runnable waited for a
   * core), machine-wide: high values mean other jobs took the cores and the figures say more
   * about them than about the node.
   */
  cpuPressurePercent: number | null;
}

function cpuPressure(): number | null {
  try {
    const m = /some avg10=([\d.]+)/.exec(fs.readFileSync('/proc/pressure/cpu', 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

async function loginStorm(work: string) {
  const node = await startNode(path.join(work, 'storm'), []);
  try {
    const clinician = await activate(node, 'clinician');
    const pathologist = await activate(node, 'pathologist');
    const presenterBrowser = new Browser(node.url, node.ca);
    await presenterBrowser.login(clinician.email, clinician.password);
    const created = await presenterBrowser.request('POST', '/api/cases', { title: 'Storm room' });
    const caseId = (created.body.case as { id: string }).id;
    const presenter = await openSocket(node.url, node.ca, presenterBrowser.cookieHeader());
    await mustCall(presenter, 'room:join', { caseId });
    await mustCall(presenter, 'presenter:take', { caseId });
    const followerBrowser = new Browser(node.url, node.ca);
    await followerBrowser.login(pathologist.email, pathologist.password);
    const followers: ClientSocket[] = [];
    for (let i = 0; i < FOLLOWERS; i++) {
      const s = await openSocket(node.url, node.ca, followerBrowser.cookieHeader());
      await mustCall(s, 'room:join', { caseId });
      followers.push(s);
    }
    // Fan-out probe: the counter travels in center.x; each follower notes arrival.
    const sentAt = new Map<number, number>();
    let latencies: number[] = [];
    let delivered = 0;
    for (const f of followers) {
      f.on('viewport', (p: { viewport: { center: { x: number } } }) => {
        const at = sentAt.get(p.viewport.center.x);
        if (at === undefined) return;
        delivered++;
        latencies.push(performance.now() - at);
      });
    }
    let counter = 0;
    let sent = 0;
    const ticker = setInterval(() => {
      counter++;
      sent++;
      sentAt.set(counter, performance.now());
      presenter.emit('viewport:update', { caseId, materialId: FAKE_MATERIAL, center: { x: counter, y: 0.5 }, zoom: 1, rotation: 0 });
    }, 1000 / VIEWPORT_HZ);

    const accounts = [clinician, pathologist];
    const runPhase = async (phase: 'before' | 'during'): Promise<Phase> => {
      node.proc.send({ cmd: 'lag:reset' });
      latencies = [];
      delivered = 0;
      sent = 0;
      const cpu0 = cpuUs(node.proc.pid!);
      const client0 = process.cpuUsage();
      const t0 = performance.now();
      const loginMs: number[] = [];
      let attempted = 0;
      let ok = 0;
      const inFlight = new Set<Promise<void>>();
      const storm =
        phase === 'during'
          ? setInterval(() => {
              attempted++;
              const acct = accounts[attempted % accounts.length]!;
              const start = performance.now();
              const p = new Browser(node.url, node.ca)
                .login(acct.email, acct.password)
                .then(() => {
                  ok++;
                  loginMs.push(performance.now() - start);
                })
                .catch(() => undefined)
                .finally(() => inFlight.delete(p));
              inFlight.add(p);
            }, 1000 / LOGINS_PER_S)
          : null;
      await sleep(PHASE_S * 1000);
      if (storm) clearInterval(storm);
      const seconds = (performance.now() - t0) / 1000;
      const cores = (cpuUs(node.proc.pid!) - cpu0) / 1e6 / seconds;
      const clientUsage = process.cpuUsage(client0);
      const clientCores = (clientUsage.user + clientUsage.system) / 1e6 / seconds;
      const lag = await node.ask<{ p50Ms: number; p99Ms: number; maxMs: number }>('lag:get', 'lag');
      const result: Phase = {
        phase,
        seconds,
        loginsAttempted: attempted,
        loginsOk: ok,
        loginsPerSecond: ok / seconds,
        loginMs: { p50: percentile(loginMs, 50), p99: percentile(loginMs, 99) },
        eventLoopDelayMs: { p50: lag.p50Ms, p99: lag.p99Ms, max: lag.maxMs },
        fanout: { sent, delivered, expected: sent * FOLLOWERS, p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99) },
        nodeCores: cores,
        clientCores,
        cpuPressurePercent: cpuPressure(),
      };
      await Promise.all(inFlight); // stragglers finish outside the next phase's window
      return result;
    };
    await sleep(2000); // warm-up
    const before = await runPhase('before');
    log(`before: fan-out p99 ${fmt(before.fanout.p99Ms, 2)} ms, loop p99 ${fmt(before.eventLoopDelayMs.p99, 2)} ms`);
    const during = await runPhase('during');
    log(`during: ${fmt(during.loginsPerSecond)} logins/s, fan-out p99 ${fmt(during.fanout.p99Ms, 2)} ms, loop p99 ${fmt(during.eventLoopDelayMs.p99, 2)} ms`);
    clearInterval(ticker);
    presenter.disconnect();
    followers.forEach((f) => f.disconnect());
    return { before, during };
  } finally {
    await node.close();
  }
}

// ------------------------------------------------------------------ 2. idle connections

interface MemoryPoint {
  sockets: number;
  heapUsed: number;
  rss: number;
}

async function connections(work: string) {
  const node = await startNode(path.join(work, 'connections'), ['--expose-gc', '--max-old-space-size=1024']);
  const sockets: ClientSocket[] = [];
  try {
    const clinician = await activate(node, 'clinician');
    const sessions: string[] = [];
    for (let i = 0; i < 10; i++) {
      const b = new Browser(node.url, node.ca);
      await b.login(clinician.email, clinician.password);
      sessions.push(b.cookieHeader());
    }
    const points: MemoryPoint[] = [];
    const measure = async () => {
      await sleep(1500);
      const m = await node.ask<{ heapUsed: number; rss: number; sockets: number; gc: boolean }>('memory', 'memory');
      if (!m.gc) throw new Error('the node was not started with --expose-gc');
      points.push({ sockets: m.sockets, heapUsed: m.heapUsed, rss: m.rss });
      log(`${m.sockets} sockets: heap ${(m.heapUsed / 2 ** 20).toFixed(1)} MiB, rss ${(m.rss / 2 ** 20).toFixed(1)} MiB`);
    };
    await measure();
    const steps = [Math.round(SOCKETS / 3), Math.round((2 * SOCKETS) / 3), SOCKETS];
    for (const target of steps) {
      while (sockets.length < target) {
        const batch = Math.min(50, target - sockets.length);
        const opened = await Promise.all(Array.from({ length: batch }, (_, i) => openSocket(node.url, node.ca, sessions[(sockets.length + i) % sessions.length]!)));
        sockets.push(...opened);
      }
      await measure();
    }
    // Least-squares slope of memory over sockets.
    const slope = (key: 'heapUsed' | 'rss') => {
      const n = points.length;
      const mx = points.reduce((s, p) => s + p.sockets, 0) / n;
      const my = points.reduce((s, p) => s + p[key], 0) / n;
      const num = points.reduce((s, p) => s + (p.sockets - mx) * (p[key] - my), 0);
      const den = points.reduce((s, p) => s + (p.sockets - mx) ** 2, 0);
      return num / den;
    };
    const heapPerSocket = slope('heapUsed');
    const rssPerSocket = slope('rss');
    const heapLimit = 2 ** 30;
    const socketsIn1GiB = Math.floor((heapLimit - points[0]!.heapUsed) / heapPerSocket);
    return { points, heapPerSocketBytes: heapPerSocket, rssPerSocketBytes: rssPerSocket, socketsWithin1GiBHeap: socketsIn1GiB, sessions: sessions.length };
  } finally {
    sockets.forEach((s) => s.disconnect());
    await node.close();
  }
}

// ------------------------------------------------------------------ main

function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  return [line(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)];
}

async function main(): Promise<void> {
  const work = fs.mkdtempSync(path.join(TMPDIR, 'cc-bench-load-'));
  const started = Date.now();
  try {
    const storm = await loginStorm(work);
    // BENCH_LOAD_ONLY=storm skips the connections part (a quicker A/B of the storm).
    const conns = process.env.BENCH_LOAD_ONLY === 'storm' ? { points: [{ sockets: 0, heapUsed: 0, rss: 0 }], heapPerSocketBytes: NaN, rssPerSocketBytes: NaN, socketsWithin1GiBHeap: NaN, sessions: 0 } : await connections(work);
    const machine = {
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model ?? 'unknown',
      totalMemoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
      loadAverage1m: os.loadavg()[0],
      node: process.version,
      os: `${os.type()} ${os.release()} ${os.arch()}`,
    };
    const out: string[] = [];
    out.push(`Machine: ${machine.cpus} cores (${machine.cpuModel}), ${machine.totalMemoryGiB} GiB, Node ${machine.node}, load average ${fmt(machine.loadAverage1m, 2)} at the end`);
    out.push('', `Login storm: ${LOGINS_PER_S} logins/s offered for ${PHASE_S} s, room of 1 presenter + ${FOLLOWERS} followers at ${VIEWPORT_HZ} Hz`);
    out.push(
      ...table(
        ['phase', 'logins/s', 'login p50 ms', 'login p99 ms', 'loop p50 ms', 'loop p99 ms', 'loop max ms', 'fan-out p50 ms', 'fan-out p99 ms', 'delivered', 'node cores', 'client cores', 'cpu pressure %'],
        [storm.before, storm.during].map((p) => [
          p.phase,
          fmt(p.loginsPerSecond),
          fmt(p.loginMs.p50, 0),
          fmt(p.loginMs.p99, 0),
          fmt(p.eventLoopDelayMs.p50, 2),
          fmt(p.eventLoopDelayMs.p99, 2),
          fmt(p.eventLoopDelayMs.max, 1),
          fmt(p.fanout.p50Ms, 2),
          fmt(p.fanout.p99Ms, 2),
          `${p.fanout.delivered}/${p.fanout.expected}`,
          fmt(p.nodeCores, 2),
          fmt(p.clientCores, 2),
          fmt(p.cpuPressurePercent, 0),
        ]),
      ),
    );
    const ratio = {
      loopP99: storm.during.eventLoopDelayMs.p99 / storm.before.eventLoopDelayMs.p99,
      fanoutP50: storm.during.fanout.p50Ms / storm.before.fanout.p50Ms,
      fanoutP99: storm.during.fanout.p99Ms / storm.before.fanout.p99Ms,
    };
    out.push(`during/before: event-loop p99 ${fmt(ratio.loopP99, 2)}x, fan-out p50 ${fmt(ratio.fanoutP50, 2)}x, p99 ${fmt(ratio.fanoutP99, 2)}x`);
    out.push('', `Idle authenticated sockets (WebSocket, ${conns.sessions} sessions, not in a room), node heap limit 1 GiB`);
    out.push(...table(['sockets', 'heap MiB', 'rss MiB'], conns.points.map((p) => [String(p.sockets), fmt(p.heapUsed / 2 ** 20), fmt(p.rss / 2 ** 20)])));
    out.push(`per socket: heap ${fmt(conns.heapPerSocketBytes / 1024, 1)} KiB, rss ${fmt(conns.rssPerSocketBytes / 1024, 1)} KiB; sockets within a 1 GiB heap (extrapolated): ${conns.socketsWithin1GiBHeap}`);
    process.stdout.write(out.join('\n') + '\n');
    fs.mkdirSync(path.dirname(RESULTS), { recursive: true });
    fs.writeFileSync(
      RESULTS,
      JSON.stringify({ benchmark: 'load', date: new Date().toISOString(), durationS: (Date.now() - started) / 1000, machine, settings: { LOGINS_PER_S, PHASE_S, FOLLOWERS, VIEWPORT_HZ, SOCKETS }, loginStorm: { ...storm, ratio }, connections: conns }, null, 2) + '\n',
    );
    log(`results written to ${path.relative(ROOT, RESULTS)}`);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`${(err as Error).stack}\n`);
    process.exit(1);
  },
);
