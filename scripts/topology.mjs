#!/usr/bin/env node
// Starts the production topology as plain processes on this machine, the same shape as
// docker-compose.yml: a real redis-server, N app nodes (`node dist/main.js`, one port each, one
// shared DATA_DIR: the SQLite file is shared by the nodes, which is what BEGIN IMMEDIATE is for;
// production uses MongoDB), and Debian's haproxy in front with deploy/haproxy/haproxy.cfg
// (TLS terminated with the nodes' certificate, re-encrypted to the nodes, /readyz health checks).
//
//   node scripts/topology.mjs [--nodes 2] [--port 9443] [--dir DIR] [--json]
//
// It prints where everything listens (one JSON line with --json, for the integration test) and
// runs until SIGTERM/SIGINT, which drains the nodes and stops everything. Needs `dist/` (npm run
// build, or the set-up step), redis-server and haproxy (apt-get install redis-server haproxy).
import { spawn, spawnSync } from 'node:child_process';
import dgram from 'node:dgram';
import fs from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

function parseArgs(argv) {
  const out = { nodes: 2, port: 0, dir: null, json: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--json') out.json = true;
    else if (a === '--nodes') out.nodes = Number(argv[++i]);
    else if (a === '--port') out.port = Number(argv[++i]);
    else if (a === '--dir') out.dir = argv[++i];
    else {
      process.stderr.write(`unknown argument ${a}\nusage: node scripts/topology.mjs [--nodes 2] [--port 9443] [--dir DIR] [--json]\n`);
      process.exit(2);
    }
  }
  if (!Number.isInteger(out.nodes) || out.nodes < 1 || out.nodes > 8) {
    process.stderr.write('--nodes must be 1..8\n');
    process.exit(2);
  }
  return out;
}

const args = parseArgs(process.argv.slice(2));
const children = [];
let stopping = false;

function say(line) {
  if (!args.json) process.stdout.write(`${line}\n`);
}

function fail(message) {
  process.stderr.write(`[topology] ${message}\n`);
  void stop(1);
}

/** A port free for TCP and UDP on 127.0.0.1 (media uses both on the same number). */
async function freePort(udpToo = false) {
  for (;;) {
    const port = await new Promise((resolve, reject) => {
      const srv = net.createServer();
      srv.once('error', reject);
      srv.listen(0, '127.0.0.1', () => {
        const p = srv.address().port;
        srv.close(() => resolve(p));
      });
    });
    if (!udpToo) return port;
    const udpFree = await new Promise((resolve) => {
      const sock = dgram.createSocket('udp4');
      sock.once('error', () => resolve(false));
      sock.bind(port, '127.0.0.1', () => sock.close(() => resolve(true)));
    });
    if (udpFree) return port;
  }
}

function start(name, cmd, argv, env, logFile) {
  const log = fs.openSync(logFile, 'a');
  const child = spawn(cmd, argv, { cwd: ROOT, env, stdio: ['ignore', 'pipe', log] });
  child.stdout.on('data', (chunk) => fs.appendFileSync(logFile, chunk));
  child.on('exit', (code, signal) => {
    if (!stopping) process.stderr.write(`[topology] ${name} exited (${signal ?? code})\n`);
  });
  children.push({ name, child });
  return child;
}

/** Resolves with stdout lines up to the one matching `pattern`. */
function untilLine(child, pattern, what, timeoutMs = 120_000) {
  return new Promise((resolve, reject) => {
    const lines = [];
    let buffer = '';
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), timeoutMs);
    const onData = (chunk) => {
      buffer += chunk;
      const parts = buffer.split('\n');
      buffer = parts.pop();
      for (const line of parts) {
        lines.push(line);
        if (pattern.test(line)) {
          clearTimeout(timer);
          child.stdout.off('data', onData);
          resolve(lines);
        }
      }
    };
    child.stdout.on('data', onData);
    child.once('exit', (code) => reject(new Error(`${what}: process exited with ${code}`)));
  });
}

function get(url, ca) {
  return new Promise((resolve) => {
    const req = https.get(url, { ca, timeout: 2000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('error', () => resolve(0));
    req.on('timeout', () => req.destroy());
  });
}

async function waitUntil(check, what, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function workerBin() {
  if (process.env.MEDIASOUP_WORKER_BIN) return process.env.MEDIASOUP_WORKER_BIN;
  try {
    return fs.readFileSync(path.join(ROOT, 'node_modules', '.mediasoup-worker-bin'), 'utf8').trim() || null;
  } catch {
    return null;
  }
}

async function stop(code = 0) {
  if (stopping) return;
  stopping = true;
  // Nodes first (they drain: SIGTERM), then the proxy and Redis they need while draining.
  const order = [...children].sort((a, b) => Number(b.name.startsWith('node')) - Number(a.name.startsWith('node')));
  for (const { name, child } of order) {
    if (child.exitCode !== null || child.signalCode !== null) continue;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), name.startsWith('node') ? 15_000 : 5_000);
    await exited;
    clearTimeout(timer);
  }
  process.exit(code);
}

async function main() {
  const main = path.join(ROOT, 'dist', 'main.js');
  if (!fs.existsSync(main)) throw new Error('dist/main.js is missing: run `npm run build` (or `node scripts/setup.mjs`) first');
  for (const tool of ['redis-server', 'haproxy']) {
    if (spawnSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' }).status !== 0) {
      throw new Error(`${tool} is not installed: apt-get install -y --no-install-recommends redis-server haproxy`);
    }
  }
  const dir = args.dir ? path.resolve(args.dir) : fs.mkdtempSync(path.join(os.tmpdir(), 'cc-topology-'));
  const dataDir = path.join(dir, 'data');
  fs.mkdirSync(dataDir, { recursive: true });

  const redisPort = await freePort();
  const redis = start('redis', 'redis-server', ['--port', String(redisPort), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], process.env, path.join(dir, 'redis.log'));
  await untilLine(redis, /Ready to accept connections/, 'redis-server');
  const redisUrl = `redis://127.0.0.1:${redisPort}`;

  const proxyPort = args.port || (await freePort());
  const proxyHttpPort = await freePort();
  const publicUrl = `https://localhost:${proxyPort}`;
  const bin = workerBin();
  const nodes = [];
  let demoAccounts = [];
  for (let i = 1; i <= args.nodes; i++) {
    const port = await freePort();
    const metricsPort = await freePort();
    const rtcPort = await freePort(true);
    const logFile = path.join(dir, `node${i}.log`);
    const env = {
      ...process.env,
      PORT: String(port),
      HOST: '127.0.0.1',
      PUBLIC_URL: publicUrl,
      DATA_DIR: dataDir,
      REDIS_URL: redisUrl,
      TRUST_PROXY_HOPS: '1',
      METRICS_PORT: String(metricsPort),
      LOG_LEVEL: process.env.LOG_LEVEL || 'info',
      DEMO_SLIDE: 'false',
      SHUTDOWN_GRACE_SECONDS: process.env.SHUTDOWN_GRACE_SECONDS || '10',
      // Media: one worker per node on this machine, each node its own port; clients send RTP to
      // the node that is the room's media home (src/media/remote.ts), at this announced address.
      MEDIASOUP_WORKERS: bin ? '1' : '0',
      MEDIASOUP_LISTEN_IP: '127.0.0.1',
      MEDIASOUP_ANNOUNCED_IP: '127.0.0.1',
      RTC_MIN_PORT: String(rtcPort),
      RTC_MAX_PORT: String(rtcPort),
      ...(bin ? { MEDIASOUP_WORKER_BIN: bin } : {}),
    };
    const child = start(`node${i}`, process.execPath, [main], env, logFile);
    // The first node creates the store, the certificate and the demo accounts; the others
    // start after it so that they find them instead of racing to create them.
    const lines = await untilLine(child, /^listening on /, `node${i}`);
    if (i === 1) {
      demoAccounts = lines
        .map((l) => /^\s+(site_admin|clinician|pathologist)\s+(\S+)\s+(\S+)\s*$/.exec(l))
        .filter(Boolean)
        .map((m) => ({ role: m[1], email: m[2], oneTimePassword: m[3] }));
    }
    nodes.push({ name: `node${i}`, pid: child.pid, url: `https://127.0.0.1:${port}`, port, metricsUrl: `http://127.0.0.1:${metricsPort}/metrics`, rtcPort, log: logFile });
  }

  // The proxy presents the nodes' certificate (generated in DATA_DIR on the first start; in
  // production a mounted one) and verifies the nodes against it.
  const certFile = path.join(dataDir, 'tls', 'cert.pem');
  const pem = path.join(dir, 'proxy.pem');
  fs.copyFileSync(certFile, pem);
  fs.copyFileSync(path.join(dataDir, 'tls', 'key.pem'), `${pem}.key`);
  fs.chmodSync(`${pem}.key`, 0o600);
  let cfg = fs.readFileSync(path.join(ROOT, 'deploy', 'haproxy', 'haproxy.cfg'), 'utf8');
  // The shipped file names two nodes (its last section is the backend): add lines for more.
  for (let i = 3; i <= args.nodes; i++) cfg += `    server node${i} "\${NODE${i}_ADDR}"\n`;
  if (args.nodes < 2) cfg = cfg.replace(/^\s+server node2 .*$/m, '');
  const cfgFile = path.join(dir, 'haproxy.cfg');
  fs.writeFileSync(cfgFile, cfg);
  const proxyEnv = {
    ...process.env,
    HAPROXY_BIND: `127.0.0.1:${proxyPort}`,
    HAPROXY_HTTP_BIND: `127.0.0.1:${proxyHttpPort}`,
    TLS_PEM: pem,
    TURN_HOST: 'turn.invalid',
    TURN_TLS_ADDR: '127.0.0.1:5349',
    NODES_CA_FILE: certFile,
    NODES_TLS_NAME: 'localhost',
    ...Object.fromEntries(nodes.map((n, i) => [`NODE${i + 1}_ADDR`, `127.0.0.1:${n.port}`])),
  };
  const check = spawnSync('haproxy', ['-c', '-q', '-f', cfgFile], { env: proxyEnv, encoding: 'utf8' });
  if (check.status !== 0) throw new Error(`haproxy rejected its configuration:\n${check.stdout}${check.stderr}`);
  const proxy = start('haproxy', 'haproxy', ['-db', '-f', cfgFile], proxyEnv, path.join(dir, 'haproxy.log'));
  const ca = fs.readFileSync(certFile);
  await waitUntil(async () => (await get(`https://127.0.0.1:${proxyPort}/readyz`, ca)) === 200, 'the proxy to reach a ready node');

  const info = {
    url: `https://127.0.0.1:${proxyPort}`,
    publicUrl,
    httpUrl: `http://127.0.0.1:${proxyHttpPort}`,
    ca: certFile,
    dir,
    redis: { url: redisUrl, pid: redis.pid },
    proxy: { pid: proxy.pid, log: path.join(dir, 'haproxy.log') },
    nodes,
    media: Boolean(bin),
    demoAccounts,
  };
  if (args.json) process.stdout.write(`${JSON.stringify(info)}\n`);
  else {
    say(`topology up in ${dir}`);
    say(`  proxy   ${info.url} (plain HTTP ${info.httpUrl} redirects)`);
    for (const n of nodes) say(`  ${n.name}   ${n.url}  pid ${n.pid}  metrics ${n.metricsUrl}  media port ${n.rtcPort}  log ${n.log}`);
    say(`  redis   ${redisUrl}`);
    if (demoAccounts.length) {
      say('  one-time demo passwords:');
      for (const a of demoAccounts) say(`    ${a.role.padEnd(12)} ${a.email.padEnd(24)} ${a.oneTimePassword}`);
    }
    say('Ctrl-C drains the nodes and stops everything.');
  }
}

process.on('SIGTERM', () => void stop(0));
process.on('SIGINT', () => void stop(0));
main().catch((err) => fail(err.message));
