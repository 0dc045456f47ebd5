// The image and the compose file, checked without a Docker engine (none runs here): the
// Dockerfile passes dockerfilelint and builds with the project's own scripts (the worker with
// scripts/mediasoup/build-worker.sh, everything else with scripts/setup.mjs and its npm command);
// its runtime stage installs a package for every shared library the real worker binary loads;
// it runs as non-root with a HEALTHCHECK on /healthz and bakes in no secret. docker-compose.yml
// validates with Debian's docker-compose 1.29 from the example settings, and the HAProxy
// configuration it mounts is accepted by the real haproxy with the compose file's settings.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const ROOT = path.resolve(__dirname, '..', '..');
const dockerfile = fs.readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
const setupScript = fs.readFileSync(path.join(ROOT, 'scripts', 'setup.mjs'), 'utf8');
const compose = fs.readFileSync(path.join(ROOT, 'docker-compose.yml'), 'utf8');

/** Instructions with their continuation lines joined, per stage. */
function stages(): { name: string; from: string; lines: string[] }[] {
  const joined = dockerfile
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  const out: { name: string; from: string; lines: string[] }[] = [];
  for (const line of joined) {
    const from = /^FROM\s+(\S+)(?:\s+AS\s+(\S+))?/i.exec(line);
    if (from) out.push({ name: from[2] ?? String(out.length), from: from[1]!, lines: [] });
    else out.at(-1)!.lines.push(line);
  }
  return out;
}

function aptPackages(lines: string[]): string[] {
  return lines
    .filter((l) => l.startsWith('RUN') && l.includes('apt-get install'))
    .flatMap((l) => l.split('apt-get install')[1]!.split('&&')[0]!.split(/\s+/))
    .filter((w) => w && !w.startsWith('-'));
}

const [build, runtime] = stages();

test('dockerfilelint finds no issue', () => {
  const bin = path.join(ROOT, 'node_modules', '.bin', 'dockerfilelint');
  const out = spawnSync(bin, ['-j', '-c', ROOT, path.join(ROOT, 'Dockerfile')], { encoding: 'utf8' });
  const report = JSON.parse(out.stdout) as { totalIssues: number; files: { issues: unknown[] }[] };
  expect(report.files[0]!.issues).toEqual([]);
  expect(report.totalIssues).toBe(0);
});

test('two stages on Debian bookworm slim with Node 20, the runtime one last', () => {
  expect(stages().map((s) => [s.name, s.from])).toEqual([
    ['build', 'node:20-bookworm-slim'],
    ['runtime', 'node:20-bookworm-slim'],
  ]);
});

test('the build uses the project scripts: build-worker.sh for the worker, setup.mjs and its npm command for the rest', () => {
  const runs = build!.lines.filter((l) => l.startsWith('RUN')).join('\n');
  expect(runs).toMatch(/bash scripts\/mediasoup\/build-worker\.sh/);
  expect(runs).toMatch(/node scripts\/setup\.mjs/);
  // setup.mjs installs with exactly this command; the image runs the same one.
  const setupInstall = /run\('npm', \[([^\]]+)\]\)/.exec(setupScript)![1]!.replace(/['\s]/g, '').split(',').join(' ');
  expect(runs).toContain(`npm ${setupInstall}`);
  // mediasoup's postinstall would try to download a worker without MEDIASOUP_WORKER_BIN.
  const envBeforeInstall = build!.lines.slice(0, build!.lines.findIndex((l) => l.includes('npm install')));
  expect(envBeforeInstall.some((l) => /^ENV .*MEDIASOUP_WORKER_BIN=\/opt\/mediasoup\/mediasoup-worker/.test(l))).toBe(true);
  // The worker's build packages are those setup.mjs names for a checkout.
  const block = setupScript.split('const MEDIASOUP_BUILD_PACKAGES = [')[1]!.split('\n];')[0]!;
  const wanted = [...block.matchAll(/\{ name: '([^']+)', check: 'command -v/g)].map((m) => m[1]!);
  const listed = /\[((?:'[^']+',?\s*)+)\]\.map\(\(name\)/.exec(block)![1]!.match(/'([^']+)'/g)!.map((s) => s.slice(1, -1));
  expect(wanted.length + listed.length).toBeGreaterThan(8);
  expect(aptPackages(build!.lines)).toEqual(expect.arrayContaining([...wanted, ...listed]));
  // The runtime stage takes what setup.mjs built: server, client bundle, pruned node_modules.
  const copies = runtime!.lines.filter((l) => l.startsWith('COPY --from=build'));
  for (const what of ['/opt/mediasoup/mediasoup-worker', '/app/node_modules/', '/app/dist/', '/app/client/dist/']) expect(copies.some((c) => c.includes(what))).toBe(true);
});

test('the runtime stage installs a package for every shared library the built worker loads', () => {
  const bin = fs.readFileSync(path.join(ROOT, 'node_modules', '.mediasoup-worker-bin'), 'utf8').trim();
  const libs = execFileSync('ldd', [bin], { encoding: 'utf8' })
    .split('\n')
    .map((l) => /=>\s+(\/\S+)/.exec(l)?.[1])
    .filter((l): l is string => Boolean(l));
  expect(libs.length).toBeGreaterThan(5);
  const owners = new Set(
    libs.map((lib) => {
      const real = fs.realpathSync(lib);
      const res = spawnSync('dpkg', ['-S', real], { encoding: 'utf8' });
      const answer = res.status === 0 ? res.stdout : spawnSync('dpkg', ['-S', lib], { encoding: 'utf8' }).stdout;
      return answer.split(':')[0]!.trim();
    }),
  );
  // The C and C++ runtimes come with the Node base image (Node itself needs them).
  const base = new Set(['libc6', 'libgcc-s1', 'libstdc++6']);
  const installed = new Set(aptPackages(runtime!.lines));
  const missing = [...owners].filter((p) => !base.has(p) && !installed.has(p));
  expect(missing).toEqual([]);
  // And nothing of the build toolchain ships in the runtime image.
  expect([...installed].filter((p) => /-dev$|^g\+\+$|^meson$|^ninja-build$/.test(p))).toEqual([]);
});

test('runs as a non-root user, with a HEALTHCHECK on /healthz done by node, and the media ports exposed', () => {
  const users = runtime!.lines.filter((l) => l.startsWith('USER '));
  expect(users).toEqual(['USER node']);
  const cmdIndex = runtime!.lines.findIndex((l) => l.startsWith('CMD '));
  expect(runtime!.lines.findIndex((l) => l.startsWith('USER '))).toBeLessThan(cmdIndex);
  const health = runtime!.lines.find((l) => l.startsWith('HEALTHCHECK'))!;
  expect(health).toMatch(/CMD \["node", "-e", .*'\/healthz'/);
  expect(health).not.toMatch(/curl|wget/);
  const expose = runtime!.lines.find((l) => l.startsWith('EXPOSE'))!;
  const env = runtime!.lines.filter((l) => l.startsWith('ENV')).join(' ');
  const min = Number(/RTC_MIN_PORT=(\d+)/.exec(env)![1]);
  const max = Number(/RTC_MAX_PORT=(\d+)/.exec(env)![1]);
  expect(expose).toContain(`${min}-${max}/udp`);
  expect(expose).toContain(`${min}-${max}/tcp`);
  expect(expose).toMatch(/\b8443\/tcp/);
  // Each node of the compose file uses its own range inside the exposed one, published 1:1.
  const ranges = [...compose.matchAll(/RTC_MIN_PORT: "(\d+)"\s+RTC_MAX_PORT: "(\d+)"\s+ports:\s+- "(\d+)-(\d+):(\d+)-(\d+)\/udp"/g)];
  expect(ranges).toHaveLength(2);
  for (const [, lo, hi, pubLo, pubHi, inLo, inHi] of ranges) {
    expect([pubLo, pubHi, inLo, inHi]).toEqual([lo, hi, lo, hi]);
    expect(Number(lo)).toBeGreaterThanOrEqual(min);
    expect(Number(hi)).toBeLessThanOrEqual(max);
  }
  expect(ranges[0]![2]! < ranges[1]![1]!).toBe(true);
});

test('no secret is baked into the image', () => {
  for (const line of dockerfile.split('\n').filter((l) => /^\s*(ENV|ARG)\b/.test(l) || /^\s+\w+=/.test(l))) {
    expect(line).not.toMatch(/SECRET|PASSWORD|TOKEN|MASTER_KEY|MONGODB_URI|REDIS_URL/i);
  }
  const copied = dockerfile.split('\n').filter((l) => /^\s*(COPY|ADD)\b/.test(l) && !l.includes('--from='));
  expect(copied.join('\n')).not.toMatch(/secrets|certs|\.env|\.pem|\.key\b|data\//);
  const ignored = fs.readFileSync(path.join(ROOT, '.dockerignore'), 'utf8').split('\n').map((l) => l.trim());
  for (const entry of ['.git', 'node_modules', 'data', '.env', 'deploy/secrets', 'deploy/certs', '*.pem', '*.key']) expect(ignored).toContain(entry);
});

describe('docker-compose.yml', () => {
  let dir: string;
  beforeAll(() => {
    // A copy with the operator's files made from the examples: env, secrets and certificates.
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cc-compose-'));
    fs.copyFileSync(path.join(ROOT, 'docker-compose.yml'), path.join(dir, 'docker-compose.yml'));
    fs.cpSync(path.join(ROOT, 'deploy'), path.join(dir, 'deploy'), { recursive: true });
    fs.copyFileSync(path.join(ROOT, 'deploy', 'env', 'compose.env.example'), path.join(dir, '.env'));
    fs.writeFileSync(path.join(dir, 'deploy', 'secrets', 'master_key'), 'x'.repeat(44));
    fs.writeFileSync(path.join(dir, 'deploy', 'secrets', 'mongo_keyfile'), 'y'.repeat(100));
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=collab.example.org', '-addext', 'subjectAltName=DNS:collab.example.org', '-keyout', path.join(dir, 'deploy', 'certs', 'server.pem.key'), '-out', path.join(dir, 'deploy', 'certs', 'server.pem')], { stdio: 'ignore' });
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('validates with docker-compose 1.29, every ${VAR} set by the example settings', () => {
    const res = spawnSync('docker-compose', ['-f', 'docker-compose.yml', 'config', '-q'], { cwd: dir, encoding: 'utf8' });
    expect(res.stderr).toBe('');
    expect(res.status).toBe(0);
    const services = spawnSync('docker-compose', ['-f', 'docker-compose.yml', 'config', '--services'], { cwd: dir, encoding: 'utf8' }).stdout.trim().split('\n').sort();
    expect(services).toEqual(['app1', 'app2', 'coturn', 'haproxy', 'mongo', 'mongo-init', 'redis']);
  });

  test('an unset setting is reported, not silently empty', () => {
    fs.writeFileSync(path.join(dir, 'empty.env'), '');
    const res = spawnSync('docker-compose', ['--env-file', 'empty.env', '-f', 'docker-compose.yml', 'config', '-q'], { cwd: dir, encoding: 'utf8' });
    expect(res.stderr).toMatch(/The "?TURN_SECRET"? variable is not set/);
  });

  test('the HAProxy configuration it mounts is valid with the environment it gives haproxy', () => {
    const block = compose.split('\n  haproxy:\n')[1]!.split('\n  mongo:\n')[0]!;
    const envBlock = block.split('    environment:\n')[1]!.split('    volumes:\n')[0]!;
    const example = Object.fromEntries(
      fs
        .readFileSync(path.join(ROOT, 'deploy', 'env', 'compose.env.example'), 'utf8')
        .split('\n')
        .filter((l) => /^[A-Z_]+=/.test(l))
        .map((l) => [l.split('=')[0]!, l.slice(l.indexOf('=') + 1)]),
    );
    const env: Record<string, string> = {};
    for (const line of envBlock.split('\n').filter((l) => l.trim())) {
      const [key, ...rest] = line.trim().split(':');
      env[key!] = rest.join(':').trim().replace(/^"|"$/g, '').replace(/\$\{(\w+)\}/g, (_m, name: string) => example[name] ?? '');
    }
    expect(Object.keys(env).sort()).toEqual(['HAPROXY_BIND', 'HAPROXY_HTTP_BIND', 'NODE1_ADDR', 'NODE2_ADDR', 'NODES_CA_FILE', 'NODES_TLS_NAME', 'TLS_PEM', 'TURN_HOST', 'TURN_TLS_ADDR']);
    // Paths inside the container map to the copy's mounted directory.
    const certs = path.join(dir, 'deploy', 'certs');
    const res = spawnSync('haproxy', ['-c', '-f', path.join(ROOT, 'deploy', 'haproxy', 'haproxy.cfg')], {
      env: { ...process.env, ...env, TLS_PEM: env.TLS_PEM!.replace('/certs', certs), NODES_CA_FILE: path.join(certs, 'server.pem') },
      encoding: 'utf8',
    });
    expect(res.stdout + res.stderr).toMatch(/Configuration file is valid/);
    expect(res.status).toBe(0);
  });

  test('a stopping node gets longer than its drain: Docker does not SIGKILL it mid-drain', () => {
    const grace = Number(/SHUTDOWN_GRACE_SECONDS: "(\d+)"/.exec(compose)![1]);
    const stop = Number(/stop_grace_period: (\d+)s/.exec(compose)![1]);
    expect(stop).toBeGreaterThan(grace + 2);
  });

  test('the MongoDB set-up scripts parse', () => {
    for (const script of ['start.sh', 'init-replica-set.sh']) expect(spawnSync('bash', ['-n', path.join(ROOT, 'deploy', 'mongo', script)]).status).toBe(0);
    expect(spawnSync(process.execPath, ['--check', path.join(ROOT, 'deploy', 'mongo', 'init-replica-set.js')]).status).toBe(0);
  });
});
