// Bare mediasoup baseline for bench/media.ts: one process with its own worker, router and
// WebRtcServer, and libwebrtc peers (@roamhq/wrtc + mediasoup-client) wired to the router by
// direct function calls: no Socket.IO, no session, no validation, no room. The same media as the
// benchmark's "ours" side (one 640x480 VP8 camera). Commands over IPC like test/helpers/mediaPeer.cjs.
'use strict';
const { performance } = require('node:perf_hooks');
const wrtc = require('@roamhq/wrtc');
Object.assign(globalThis, { RTCPeerConnection: wrtc.RTCPeerConnection, RTCSessionDescription: wrtc.RTCSessionDescription, RTCIceCandidate: wrtc.RTCIceCandidate, MediaStream: wrtc.MediaStream, MediaStreamTrack: wrtc.MediaStreamTrack });
const fs = require('node:fs');
const path = require('node:path');
if (!process.env.MEDIASOUP_WORKER_BIN) process.env.MEDIASOUP_WORKER_BIN = fs.readFileSync(path.join(__dirname, '..', 'node_modules', '.mediasoup-worker-bin'), 'utf8').trim();
const mediasoup = require('mediasoup');
const { Device } = require('mediasoup-client');

const CODECS = [
  { kind: 'audio', mimeType: 'audio/opus', clockRate: 48000, channels: 2 },
  { kind: 'video', mimeType: 'video/VP8', clockRate: 90000, parameters: { 'x-google-start-bitrate': 1000 } },
];

let worker, server, router, producer;
const consumers = [];
const timers = [];

function videoTrack(width, height) {
  const source = new wrtc.nonstandard.RTCVideoSource();
  const track = source.createTrack();
  const data = new Uint8ClampedArray(width * height * 1.5);
  let n = 0;
  timers.push(setInterval(() => {
    n = (n + 3) % 255;
    for (let i = 0; i < width * height; i += 97) data[i] = (n + i) % 255;
    source.onFrame({ width, height, data });
  }, 33));
  return track;
}

async function transport(device, direction) {
  const t = await router.createWebRtcTransport({ webRtcServer: server, enableUdp: true, enableTcp: true, preferUdp: true, initialAvailableOutgoingBitrate: 1_000_000 });
  const options = { id: t.id, iceParameters: t.iceParameters, iceCandidates: t.iceCandidates, dtlsParameters: t.dtlsParameters };
  const local = direction === 'send' ? device.createSendTransport(options) : device.createRecvTransport(options);
  local.on('connect', ({ dtlsParameters }, done, fail) => t.connect({ dtlsParameters }).then(done, fail));
  if (direction === 'send') {
    local.on('produce', ({ kind, rtpParameters }, done, fail) => t.produce({ kind, rtpParameters }).then((p) => { producer = p; done({ id: p.id }); }, fail));
  }
  return { server: t, local };
}

async function newConsumer() {
  const device = await Device.factory({ handlerName: 'Chrome74' });
  await device.load({ routerRtpCapabilities: router.rtpCapabilities });
  const recv = await transport(device, 'recv');
  const c = await recv.server.consume({ producerId: producer.id, rtpCapabilities: device.rtpCapabilities, paused: true });
  const local = await recv.local.consume({ id: c.id, producerId: producer.id, kind: c.kind, rtpParameters: c.rtpParameters });
  await c.resume();
  const entry = { serverConsumer: c, local, recv };
  consumers.push(entry);
  return entry;
}

async function framesOf(entry) {
  const report = await entry.recv.local.getStats();
  let frames = 0;
  report.forEach((s) => { if (s.type === 'inbound-rtp') frames += s.framesDecoded || 0; });
  return frames;
}

const commands = {
  async start() {
    worker = await mediasoup.createWorker({ logLevel: 'warn' });
    server = await worker.createWebRtcServer({ listenInfos: [{ protocol: 'udp', ip: '127.0.0.1' }, { protocol: 'tcp', ip: '127.0.0.1' }] });
    router = await worker.createRouter({ mediaCodecs: CODECS });
    const device = await Device.factory({ handlerName: 'Chrome74' });
    await device.load({ routerRtpCapabilities: router.rtpCapabilities });
    const send = await transport(device, 'send');
    await send.local.produce({ track: videoTrack(640, 480) });
    return { pid: worker.pid };
  },
  /** A new receiver: device, transport, consume, resume, until its first decoded frame (ms). */
  async timeToFirstFrame() {
    const started = performance.now();
    const entry = await newConsumer();
    for (;;) {
      if ((await framesOf(entry)) > 0) return { ms: performance.now() - started };
      if (performance.now() - started > 20000) throw new Error('no frame');
      await new Promise((r) => setTimeout(r, 10));
    }
  },
  async addConsumers({ count }) {
    for (let i = 0; i < count; i++) await newConsumer();
    return { consumers: consumers.length };
  },
  async closeConsumers() {
    for (const c of consumers.splice(0)) { c.local.close(); c.recv.local.close(); c.recv.server.close(); }
    return null;
  },
  /** Worker CPU (user + system, ms) and the bytes its consumers sent. */
  async usage() {
    const u = await worker.getResourceUsage();
    let bytes = 0;
    let packets = 0;
    for (const c of consumers) {
      for (const s of await c.serverConsumer.getStats()) {
        if (s.type !== 'outbound-rtp') continue;
        bytes += s.byteCount;
        packets += s.packetCount;
      }
    }
    return { cpuMs: u.ru_utime + u.ru_stime, bytes, packets, consumers: consumers.length };
  },
};

process.on('message', async (msg) => {
  if (msg.cmd === 'exit') {
    for (const t of timers) clearInterval(t);
    process.exit(0);
  }
  try {
    process.send({ id: msg.id, ok: true, result: await commands[msg.cmd](msg.args || {}) });
  } catch (err) {
    process.send({ id: msg.id, ok: false, error: { message: err.message } });
  }
});
process.on('disconnect', () => process.exit(0));
process.send({ ready: true });
