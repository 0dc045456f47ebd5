#!/usr/bin/env node
// Measures what one node holds, for docs/scaling.md: it starts the topology (scripts/topology.mjs,
// two nodes behind HAProxy, one Redis), then loads node 1 directly with case rooms of ROOM_SIZE
// sockets (one presenter sending viewport updates at RATE Hz, the rest following; half of each
// room's followers on node 2 so that every update also crosses Redis), step by step, and reports
// per step: sockets and rooms on node 1, its resident memory, its CPU (cores, from /proc), the
// delivery latency of the viewport updates (p50/p99, measured in this process) and how many were
// delivered. The load generator shares the machine; its own CPU is reported too.
//
// CPU time per delivery and memory per socket are reported as well: they hold up on a shared
// machine where the absolute latencies do not. A last phase adds idle members (joined, no
// traffic) to node 1 up to each --idle total and reports its memory.
//
//   node scripts/scale-probe.mjs [--rooms 10,25,50] [--room-size 10] [--rate 10] [--seconds 8] [--idle 500,1000]
//
// Needs what the topology needs (dist/, redis-server, haproxy). Prints one JSON document.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(path.join(ROOT, 'package.json'));
const { io } = require('socket.io-client');
const request = require('supertest');

const opt = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const STEPS = opt('rooms', '10,25,50').split(',').map(Number);
const ROOM_SIZE = Number(opt('room-size', '10'));
const RATE = Number(opt('rate', '10'));
const SECONDS = Number(opt('seconds', '8'));
const IDLE = opt('idle', '500,1000').split(',').map(Number);
const TICK = 1000 / RATE;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function cpuSeconds(pid) {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime + stime, in clock ticks of 10 ms
}
function rssMiB(pid) {
  const line = fs.readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmRSS:'));
  return Math.round(Number(line.split(/\s+/)[1]) / 1024);
}
const percentile = (sorted, p) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] : NaN);

async function startTopology() {
  const child = spawn(process.execPath, [path.join(ROOT, 'scripts', 'topology.mjs'), '--json'], { cwd: ROOT, env: { ...process.env, LOG_LEVEL: 'warn' }, stdio: ['ignore', 'pipe', 'inherit'] });
  const info = await new Promise((resolve, reject) => {
    let buffer = '';
    child.stdout.on('data', (c) => {
      buffer += c;
      if (buffer.includes('\n')) resolve(JSON.parse(buffer.split('\n')[0]));
    });
    child.once('exit', (code) => reject(new Error(`topology exited ${code}`)));
  });
  return { child, info };
}

async function account(url, ca, demo) {
  const agent = request.agent(url).ca(ca);
  let token = (await agent.get('/api/auth/csrf')).body.csrfToken;
  const login = await agent.post('/api/auth/login').set('X-CSRF-Token', token).send({ email: demo.email, password: demo.oneTimePassword });
  token = login.body.csrfToken;
  const password = `probe-horse-battery-${Math.random().toString(36).slice(2)}`;
  await agent.post('/api/auth/password').set('X-CSRF-Token', token).send({ currentPassword: demo.oneTimePassword, newPassword: password });
  const cookie = agent.jar.getCookies({ domain: '127.0.0.1', path: '/', secure: true, script: false }).map((c) => `${c.name}=${c.value}`).join('; ');
  return { agent, token, cookie };
}

function socket(url, ca, cookie) {
  return new Promise((resolve, reject) => {
    const s = io(url, { path: '/socket.io', transports: ['websocket'], reconnection: false, ca, extraHeaders: { Cookie: cookie } });
    s.once('connect', () => resolve(s));
    s.once('connect_error', reject);
  });
}

async function main() {
  const { child, info } = await startTopology();
  const ca = fs.readFileSync(info.ca, 'utf8');
  const [node1, node2] = info.nodes;
  const clinician = await account(node1.url, ca, info.demoAccounts.find((a) => a.role === 'clinician'));
  const pathologist = await account(node1.url, ca, info.demoAccounts.find((a) => a.role === 'pathologist'));
  const rooms = [];
  const results = [];
  const baseline = { rssMiB: rssMiB(node1.pid) };
  for (const target of STEPS) {
    // Grow to `target` rooms.
    while (rooms.length < target) {
      const caseId = (await clinician.agent.post('/api/cases').set('X-CSRF-Token', clinician.token).send({ title: `Probe ${rooms.length}` })).body.case.id;
      const presenter = await socket(node1.url, ca, clinician.cookie);
      const joined = await presenter.timeout(10_000).emitWithAck('room:join', { caseId });
      if (!joined.ok) throw new Error(`join: ${joined.error.code}`);
      await presenter.timeout(10_000).emitWithAck('presenter:take', { caseId });
      const followers = [];
      for (let i = 0; i < ROOM_SIZE - 1; i++) {
        // Every other follower on node 2: updates reach them through Redis.
        const s = await socket(i % 2 === 0 ? node1.url : node2.url, ca, pathologist.cookie);
        const r = await s.timeout(10_000).emitWithAck('room:join', { caseId });
        if (!r.ok) throw new Error(`join: ${r.error.code}`);
        followers.push({ s, node: i % 2 === 0 ? 1 : 2 });
      }
      rooms.push({ caseId, presenter, followers });
    }
    await sleep(1000);
    const latencies = [];
    let expected = 0;
    const handlers = [];
    for (const room of rooms) {
      for (const f of room.followers) {
        const h = ({ viewport }) => latencies.push(performance.now() % 1e7 - viewport.center.x);
        f.s.on('viewport', h);
        handlers.push([f.s, h]);
      }
    }
    const cpu0 = { node1: cpuSeconds(node1.pid), node2: cpuSeconds(node2.pid), redis: cpuSeconds(info.redis.pid), self: process.cpuUsage() };
    const t0 = performance.now();
    let seq = 0;
    while (performance.now() - t0 < SECONDS * 1000) {
      const tickStart = performance.now();
      for (const room of rooms) {
        room.presenter.volatile.emit('viewport:update', { caseId: room.caseId, materialId: 'MaterialMaterialMateri', center: { x: performance.now() % 1e7, y: seq }, zoom: 1 + (seq % 5), rotation: 0 });
        expected += room.followers.length;
      }
      seq++;
      await sleep(Math.max(0, TICK - (performance.now() - tickStart)));
    }
    await sleep(500);
    const wall = (performance.now() - t0) / 1000;
    const self = process.cpuUsage(cpu0.self);
    const sorted = latencies.filter((l) => l >= 0).sort((a, b) => a - b);
    for (const [s, h] of handlers) s.off('viewport', h);
    const onNode1 = rooms.length * (1 + Math.ceil((ROOM_SIZE - 1) / 2));
    results.push({
      rooms: rooms.length,
      socketsOnNode1: onNode1,
      socketsOnNode2: rooms.length * Math.floor((ROOM_SIZE - 1) / 2),
      updatesPerSecond: Math.round((rooms.length * seq) / wall),
      deliveriesPerSecond: Math.round(sorted.length / wall),
      delivered: `${sorted.length}/${expected}`,
      p50ms: Number(percentile(sorted, 50).toFixed(2)),
      p99ms: Number(percentile(sorted, 99).toFixed(2)),
      node1Cores: Number(((cpuSeconds(node1.pid) - cpu0.node1) / wall).toFixed(2)),
      node2Cores: Number(((cpuSeconds(node2.pid) - cpu0.node2) / wall).toFixed(2)),
      redisCores: Number(((cpuSeconds(info.redis.pid) - cpu0.redis) / wall).toFixed(2)),
      probeCores: Number(((self.user + self.system) / 1e6 / wall).toFixed(2)),
      node1RssMiB: rssMiB(node1.pid),
      // Node CPU spent per follower delivery, both nodes and Redis together.
      serverCpuMicrosPerDelivery: Math.round((((cpuSeconds(node1.pid) - cpu0.node1) + (cpuSeconds(node2.pid) - cpu0.node2) + (cpuSeconds(info.redis.pid) - cpu0.redis)) * 1e6) / Math.max(1, sorted.length)),
      loadAverage: fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' '),
    });
    process.stderr.write(`[probe] ${JSON.stringify(results.at(-1))}\n`);
  }
  // Idle members on node 1: memory per connected, joined socket.
  const idle = [];
  let extra = 0;
  const onNode1Now = rooms.length * (1 + Math.ceil((ROOM_SIZE - 1) / 2));
  const idleSockets = [];
  for (const total of IDLE) {
    while (onNode1Now + extra < total) {
      const s = await socket(node1.url, ca, pathologist.cookie);
      const r = await s.timeout(10_000).emitWithAck('room:join', { caseId: rooms[extra % rooms.length].caseId });
      if (!r.ok) throw new Error(`join: ${r.error.code}`);
      idleSockets.push(s);
      extra++;
    }
    await sleep(2000);
    idle.push({ socketsOnNode1: onNode1Now + extra, node1RssMiB: rssMiB(node1.pid) });
    process.stderr.write(`[probe] ${JSON.stringify(idle.at(-1))}\n`);
  }
  for (const s of idleSockets) s.disconnect();
  process.stdout.write(JSON.stringify({ roomSize: ROOM_SIZE, rateHz: RATE, seconds: SECONDS, baseline, results, idle }, null, 2) + '\n');
  for (const room of rooms) {
    room.presenter.disconnect();
    for (const f of room.followers) f.s.disconnect();
  }
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
}

main().catch((err) => {
  process.stderr.write(`[probe] ${err.stack ?? err.message}\n`);
  process.exit(1);
});
