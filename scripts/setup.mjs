#!/usr/bin/env node
// Idempotent set-up run before `npm start` and `npm test` (DESIGN 8): checks Node, installs the
// Debian packages a mode needs (when root; otherwise prints the apt-get line and stops), installs
// npm dependencies from the lockfile when it changed, compiles the server when its sources changed, and
// builds the browser client (client/ -> client/dist) when its sources changed. Each
// step is skipped when a stamp keyed by its inputs says it is done, so a second run is quick.
// Plain Node only: this runs before node_modules exists.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = new Set(process.argv.slice(2));
const MODE = args.has('--test') ? 'test' : 'start';
const QUIET = args.has('--quiet');

/** Debian packages each mode needs, with a command that proves each is present. */
// The mediasoup worker is compiled from Debian's libraries (DESIGN 5): its build needs these, and the
// binary needs their runtime halves (libnss3/libnspr4 because Debian's libsrtp2 links NSS).
const MEDIASOUP_BUILD_PACKAGES = [
  { name: 'meson', check: 'command -v meson' },
  { name: 'ninja-build', check: 'command -v ninja' },
  { name: 'pkg-config', check: 'command -v pkg-config' },
  { name: 'g++', check: 'command -v g++' },
  ...['libuv1-dev', 'libsrtp2-dev', 'libssl-dev', 'libabsl-dev', 'libusrsctp-dev', 'nlohmann-json3-dev', 'libnss3', 'libnspr4'].map((name) => ({
    name,
    check: `dpkg-query -W -f='\${Status}' ${name} 2>/dev/null | grep -q 'install ok installed'`,
  })),
];

const DEBIAN_PACKAGES = {
  start: [...MEDIASOUP_BUILD_PACKAGES],
  // The multi-node tests start their own redis-server instances; the browser end-to-end test drives
  // Debian's Chromium (playwright's own browser download cannot be reached from these machines).
  test: [
    ...MEDIASOUP_BUILD_PACKAGES,
    { name: 'redis-server', check: 'command -v redis-server' },
    { name: 'chromium', check: 'test -x /usr/bin/chromium' },
    // The topology suite puts Debian's HAProxy in front of its nodes and runs coturn with the
    // shipped configuration; the deployment tests validate docker-compose.yml with
    // docker-compose 1.29 (no engine needed) and make throw-away certificates with openssl.
    { name: 'haproxy', check: 'command -v haproxy' },
    { name: 'coturn', check: 'command -v turnserver' },
    { name: 'docker-compose', check: 'command -v docker-compose' },
    { name: 'openssl', check: 'command -v openssl' },
  ],
};

function log(message) {
  if (!QUIET) process.stderr.write(`[setup] ${message}\n`);
}

function run(cmd, argv, opts = {}) {
  const res = spawnSync(cmd, argv, { cwd: ROOT, stdio: QUIET ? ['ignore', 'ignore', 'inherit'] : 'inherit', ...opts });
  if (res.error) throw res.error;
  if (res.status !== 0) {
    process.stderr.write(`[setup] failed: ${cmd} ${argv.join(' ')} (exit ${res.status})\n`);
    process.exit(res.status ?? 1);
  }
}

function hashFiles(files) {
  const h = createHash('sha256');
  for (const f of files) {
    h.update(path.relative(ROOT, f));
    h.update('\0');
    h.update(fs.existsSync(f) ? fs.readFileSync(f) : Buffer.alloc(0));
    h.update('\0');
  }
  return h.digest('hex');
}

function listFiles(dir, filter) {
  if (!fs.existsSync(dir)) return [];
  const out = [];
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, entry.name);
    if (entry.isDirectory()) out.push(...listFiles(p, filter));
    else if (filter(p)) out.push(p);
  }
  return out.sort();
}

function stampPath(name) {
  return path.join(ROOT, 'node_modules', `.setup-stamp-${name}`);
}

function isStamped(name, key) {
  try {
    return fs.readFileSync(stampPath(name), 'utf8') === key;
  } catch {
    return false;
  }
}

function writeStamp(name, key) {
  fs.writeFileSync(stampPath(name), key);
}

function checkNode() {
  const [major, minor] = process.versions.node.split('.').map(Number);
  if (major < 20 || (major === 20 && minor < 19)) {
    process.stderr.write(`[setup] Node ${process.versions.node} is too old: install Node 20.19 or newer.\n`);
    process.exit(1);
  }
}

function ensureDebianPackages() {
  const wanted = DEBIAN_PACKAGES[MODE];
  const missing = wanted.filter(({ check }) => spawnSync('sh', ['-c', check], { stdio: 'ignore' }).status !== 0);
  if (missing.length === 0) return;
  const names = missing.map((p) => p.name);
  const line = `apt-get update && apt-get install -y --no-install-recommends ${names.join(' ')}`;
  if (typeof process.getuid === 'function' && process.getuid() === 0) {
    log(`installing Debian packages: ${names.join(' ')}`);
    run('sh', ['-c', `DEBIAN_FRONTEND=noninteractive ${line}`]);
  } else {
    process.stderr.write(`[setup] missing Debian packages. Run as root:\n  ${line}\n`);
    process.exit(1);
  }
}

/**
 * Builds (or finds in its cache outside the checkout) the mediasoup worker and exports its path
 * before npm runs: mediasoup's postinstall skips its GitHub download only when MEDIASOUP_WORKER_BIN
 * is set. The path is also written to node_modules/.mediasoup-worker-bin for `npm start` and the
 * tests (src/media/mediasoup.ts reads it when the variable is not set).
 */
function ensureMediasoupWorker() {
  if (process.env.MEDIASOUP_WORKER_BIN) return process.env.MEDIASOUP_WORKER_BIN;
  log('mediasoup worker: scripts/mediasoup/build-worker.sh (about 4 minutes the first time, cached after)');
  const res = spawnSync('bash', [path.join(ROOT, 'scripts', 'mediasoup', 'build-worker.sh')], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', QUIET ? 'ignore' : 'inherit'],
    encoding: 'utf8',
  });
  if (res.status !== 0) {
    process.stderr.write(`[setup] failed to build the mediasoup worker (exit ${res.status})\n`);
    process.exit(res.status ?? 1);
  }
  const bin = res.stdout.trim().split('\n').pop();
  process.env.MEDIASOUP_WORKER_BIN = bin;
  return bin;
}

function recordWorkerPath(bin) {
  const file = path.join(ROOT, 'node_modules', '.mediasoup-worker-bin');
  if (!fs.existsSync(file) || fs.readFileSync(file, 'utf8') !== bin) fs.writeFileSync(file, bin);
}

function ensureNodeModules() {
  const key = `${process.versions.node}:${hashFiles([path.join(ROOT, 'package-lock.json')])}`;
  if (fs.existsSync(path.join(ROOT, 'node_modules')) && isStamped('npm', key)) return;
  // `npm install` rather than `npm ci`: the registry reachable here serves only this platform's
  // optional binaries (@swc/core-*, @unrs/resolver-*), so the lockfile cannot list the others and
  // `npm ci` refuses it as out of sync. With a lockfile, `npm install` installs exactly its
  // versions and leaves it unchanged (checked in docs/operations.md).
  log('installing npm dependencies (npm install from the lockfile)');
  run('npm', ['install', '--no-audit', '--no-fund']);
  writeStamp('npm', key);
}

function ensureServerBuild() {
  const inputs = [
    path.join(ROOT, 'tsconfig.json'),
    path.join(ROOT, 'package-lock.json'),
    ...listFiles(path.join(ROOT, 'src'), (p) => p.endsWith('.ts')),
  ];
  const key = hashFiles(inputs);
  if (fs.existsSync(path.join(ROOT, 'dist', 'main.js')) && isStamped('server', key)) return;
  log('compiling the server (tsc)');
  run(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json']);
  writeStamp('server', key);
}

function ensureClientBuild() {
  const clientDir = path.join(ROOT, 'client');
  const outDir = path.join(clientDir, 'dist');
  const inputs = [
    path.join(ROOT, 'package-lock.json'),
    ...listFiles(clientDir, (p) => !p.startsWith(outDir + path.sep) && /\.(ts|tsx|mts|html|css|json)$/.test(p)),
    // The client imports the wire contract's types and constants.
    ...listFiles(path.join(ROOT, 'src', 'protocol'), (p) => p.endsWith('.ts')),
  ];
  const key = hashFiles(inputs);
  if (fs.existsSync(path.join(outDir, 'index.html')) && isStamped('client', key)) return;
  log('building the browser client (tsc --noEmit, vite build)');
  // Vite strips types without checking them: the client's type check runs first.
  run(process.execPath, [path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', path.join('client', 'tsconfig.json')]);
  run(process.execPath, [path.join(ROOT, 'node_modules', 'vite', 'bin', 'vite.js'), 'build', '--logLevel', 'warn'], { cwd: clientDir });
  writeStamp('client', key);
}

checkNode();
ensureDebianPackages();
const workerBin = ensureMediasoupWorker();
ensureNodeModules();
recordWorkerPath(workerBin);
ensureServerBuild();
ensureClientBuild();
