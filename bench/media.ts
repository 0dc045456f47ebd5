// Media benchmark: what our signalling layer costs against a bare mediasoup script, side by side
// in one run. Run with `npm run bench` or alone with
// `tsc -p bench/tsconfig.json && node bench/dist/bench/media.js` (about a minute).
//
// 1. Join to first remote frame. A 640x480 VP8 camera is already sent into the room; a new
//    receiver starts and the clock runs until its first decoded frame.
//      ours: a real node (startServer, one worker); the receiver is a libwebrtc peer
//            (@roamhq/wrtc + mediasoup-client, test/helpers/mediaPeer.cjs) that opens nothing
//            but its socket beforehand: room:join, media:join, transports, consume, resume over
//            Socket.IO with the session, schema, permission and rate-limit checks;
//      bare: bench/media-bare.cjs: its own worker and router, the same libwebrtc receiver wired
//            by direct function calls (no socket, no checks).
// 2. Forwarding. One camera, N receivers; the worker's own CPU time (getResourceUsage) per
//    forwarded megabit, and what one worker core would forward at that cost. The forwarding
//    happens inside the worker in both cases; the ratio shows whether our layer adds to it.
//
// Environment: BENCH_MEDIA_ROUNDS (first-frame samples per target, 8), BENCH_MEDIA_RECEIVERS
// (N for forwarding, 6), BENCH_MEDIA_SECONDS (forwarding window, 8), BENCH_MEDIA_RESULTS (JSON).
import { fork, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { cookieHeaderOf, startTestServer, type TestClient, type TestServer } from '../test/helpers/server';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const ROUNDS = Number(process.env.BENCH_MEDIA_ROUNDS || 8);
const RECEIVERS = Number(process.env.BENCH_MEDIA_RECEIVERS || 6);
const SECONDS = Number(process.env.BENCH_MEDIA_SECONDS || 8);
const RESULTS = path.resolve(process.env.BENCH_MEDIA_RESULTS || path.join(ROOT, 'bench', 'results', 'media.json'));

/** A child process answering { id, cmd, args } with { id, ok, result }. */
class Child {
  readonly #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  #next = 1;
  private constructor(readonly proc: ChildProcess) {
    proc.on('message', (msg: { id?: number; ok?: boolean; result?: unknown; error?: { message: string } }) => {
      const p = msg.id === undefined ? undefined : this.#pending.get(msg.id);
      if (!p) return;
      this.#pending.delete(msg.id!);
      if (msg.ok) p.resolve(msg.result);
      else p.reject(new Error(msg.error?.message));
    });
  }
  static async start(script: string): Promise<Child> {
    const proc = fork(script, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    await new Promise<void>((resolve, reject) => {
      proc.once('message', () => resolve());
      proc.once('exit', (code) => reject(new Error(`${script} exited ${code}`)));
    });
    return new Child(proc);
  }
  cmd<T>(cmd: string, args: Record<string, unknown> = {}): Promise<T> {
    const id = this.#next++;
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.proc.send({ id, cmd, args });
    });
  }
  async exit(): Promise<void> {
    if (this.proc.exitCode !== null) return;
    const done = new Promise((r) => this.proc.once('exit', r));
    this.proc.send({ cmd: 'exit' });
    await done;
  }
}

const PEER = path.join(ROOT, 'test', 'helpers', 'mediaPeer.cjs');
const BARE = path.join(ROOT, 'bench', 'media-bare.cjs');

function stats(values: number[]): { p50: number; p90: number; mean: number } {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (p: number) => sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
  return { p50: at(50), p90: at(90), mean: values.reduce((a, b) => a + b, 0) / values.length };
}

async function ourPeer(t: TestServer, client: TestClient): Promise<Child> {
  const peer = await Child.start(PEER);
  await peer.cmd('connect', { url: t.url, cookie: cookieHeaderOf(client), ca: t.ca });
  return peer;
}

async function workerCpuMs(t: TestServer): Promise<number> {
  const [worker] = t.server.realtime.media!.pool.workers();
  const u = await worker!.getResourceUsage();
  return u.ru_utime + u.ru_stime;
}

async function forwarded(t: TestServer, caseId: string): Promise<{ bytes: number; packets: number }> {
  const room = t.server.realtime.media!.room(caseId)!;
  const all = (await Promise.all(room.peers().flatMap((p) => [...p.consumers.values()].map((c) => c.getStats())))).flat();
  let bytes = 0;
  let packets = 0;
  for (const s of all) {
    if (s.type !== 'outbound-rtp') continue;
    bytes += s.byteCount;
    packets += s.packetCount;
  }
  return { bytes, packets };
}

async function main(): Promise<void> {
  const t = await startTestServer({ LOG_LEVEL: 'warn' });
  const sender = await t.demoLogin('clinician');
  const receiver = await t.demoLogin('pathologist');
  const caseId = (await sender.client.post('/api/cases', { title: 'Media bench' }).expect(201)).body.case.id as string;
  const camera = await ourPeer(t, sender.client);
  await camera.cmd('joinRoom', { caseId });
  await camera.cmd('joinMedia');
  await camera.cmd('produce', { source: 'camera' });
  const bare = await Child.start(BARE);
  await bare.cmd('start');

  // 1. first frame: alternate ours and bare so machine noise hits both alike.
  const firstFrame = { ours: [] as number[], bare: [] as number[] };
  /** Where our time goes: room:join, then media:join + transports + consumes. */
  const phases = { room: [] as number[], media: [] as number[] };
  // One warm receiver process for every round, as the bare side (a first RTCPeerConnection in a
  // process starts libwebrtc's threads, which is not what this measures); a warm-up round first.
  // The per-connection join budget (10 per 10 s: room:join, media:join, room:leave) is kept, not
  // lifted: rounds rotate over enough warm receivers that each stays within it.
  const warm: Child[] = [];
  for (let i = 0; i < Math.ceil(ROUNDS / 2); i++) {
    const peer = await ourPeer(t, receiver.client);
    await peer.cmd('timeToFirstFrame', { caseId });
    await peer.cmd('resetRoom');
    warm.push(peer);
  }
  await bare.cmd('timeToFirstFrame');
  await bare.cmd('closeConsumers');
  for (let i = 0; i < ROUNDS; i++) {
    const peer = warm[i % warm.length]!;
    const sample = await peer.cmd<{ ms: number; roomJoinedMs: number; mediaJoinedMs: number }>('timeToFirstFrame', { caseId });
    firstFrame.ours.push(sample.ms);
    phases.room.push(sample.roomJoinedMs);
    phases.media.push(sample.mediaJoinedMs - sample.roomJoinedMs);
    await peer.cmd('resetRoom');
    firstFrame.bare.push((await bare.cmd<{ ms: number }>('timeToFirstFrame')).ms);
    await bare.cmd('closeConsumers');
  }

  await Promise.all(warm.map((p) => p.exit()));

  // 2. forwarding cost with N receivers each side (ours first, then bare, same window).
  const receivers: Child[] = [];
  for (let i = 0; i < RECEIVERS; i++) {
    const peer = await ourPeer(t, receiver.client);
    await peer.cmd('joinRoom', { caseId });
    await peer.cmd('joinMedia');
    receivers.push(peer);
  }
  await delay(2000); // bandwidth estimation ramps up before the window
  const ours0 = { cpu: await workerCpuMs(t), ...(await forwarded(t, caseId)) };
  await delay(SECONDS * 1000);
  const ours1 = { cpu: await workerCpuMs(t), ...(await forwarded(t, caseId)) };
  await Promise.all(receivers.map((r) => r.exit()));
  await bare.cmd('addConsumers', { count: RECEIVERS });
  await delay(2000);
  const bare0 = await bare.cmd<{ cpuMs: number; bytes: number; packets: number }>('usage');
  await delay(SECONDS * 1000);
  const bare1 = await bare.cmd<{ cpuMs: number; bytes: number; packets: number }>('usage');

  // The receivers' bitrates differ with how busy their decoders keep the machine, so the cost is
  // compared per forwarded packet (the worker's work is per packet: SRTP, RTCP, NACK bookkeeping).
  const forwarding = (cpuMs: number, bytes: number, packets: number) => {
    const perConsumerPps = packets / SECONDS / RECEIVERS;
    const cpuUsPerPacket = (cpuMs * 1000) / packets;
    // One core = 1e6 us of CPU per second; a 1.2 Mbit/s 720p camera is about 130 packets/s.
    return { cpuMs, packets, mbitForwarded: (bytes * 8) / 1e6, perConsumerPps, cpuUsPerPacket, consumersPerCoreAt130pps: Math.floor(1e6 / (cpuUsPerPacket * 130)) };
  };
  const result = {
    machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model ?? 'unknown', totalMemoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10, node: process.version },
    rounds: ROUNDS,
    receivers: RECEIVERS,
    seconds: SECONDS,
    firstFrameMs: { ours: stats(firstFrame.ours), bare: stats(firstFrame.bare), oursRoomJoin: stats(phases.room), oursMediaSignalling: stats(phases.media) },
    forwarding: { ours: forwarding(ours1.cpu - ours0.cpu, ours1.bytes - ours0.bytes, ours1.packets - ours0.packets), bare: forwarding(bare1.cpuMs - bare0.cpuMs, bare1.bytes - bare0.bytes, bare1.packets - bare0.packets) },
  };
  fs.mkdirSync(path.dirname(RESULTS), { recursive: true });
  fs.writeFileSync(RESULTS, JSON.stringify(result, null, 2));

  const f = result.firstFrameMs;
  const w = result.forwarding;
  const lines = [
    `media benchmark on ${result.machine.cpus} cores, ${result.machine.totalMemoryGiB} GiB (${result.machine.cpuModel})`,
    '',
    `join to first remote frame (${ROUNDS} samples each)  p50 ms   p90 ms   ratio p50`,
    `  ours (Socket.IO, checks)                    ${f.ours.p50.toFixed(0).padStart(6)}   ${f.ours.p90.toFixed(0).padStart(6)}   ${(f.ours.p50 / f.bare.p50).toFixed(2)}x`,
    `  bare mediasoup (direct calls)               ${f.bare.p50.toFixed(0).padStart(6)}   ${f.bare.p90.toFixed(0).padStart(6)}`,
    `  of ours: room:join ${f.oursRoomJoin.p50.toFixed(0)} ms, media signalling (join, transports, consumes) ${f.oursMediaSignalling.p50.toFixed(0)} ms (p50)`,
    '',
    `forwarding, 1 camera -> ${RECEIVERS} receivers, ${SECONDS} s   worker CPU us/packet   packets/s per receiver   receivers per core at 130 pkt/s   ratio`,
    `  ours   ${w.ours.cpuUsPerPacket.toFixed(1).padStart(31)}   ${w.ours.perConsumerPps.toFixed(0).padStart(22)}   ${String(w.ours.consumersPerCoreAt130pps).padStart(31)}   ${(w.ours.cpuUsPerPacket / w.bare.cpuUsPerPacket).toFixed(2)}x`,
    `  bare   ${w.bare.cpuUsPerPacket.toFixed(1).padStart(31)}   ${w.bare.perConsumerPps.toFixed(0).padStart(22)}   ${String(w.bare.consumersPerCoreAt130pps).padStart(31)}`,
    '',
    `results: ${path.relative(ROOT, RESULTS)}`,
  ];
  process.stdout.write(lines.join('\n') + '\n');
  await camera.exit();
  await bare.exit();
  await t.close();
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`media benchmark failed: ${(err as Error).stack}\n`);
    process.exit(1);
  },
);
