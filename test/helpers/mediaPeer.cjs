// A real WebRTC peer for media tests: libwebrtc in Node (@roamhq/wrtc) driven by mediasoup-client
// (its Chrome74 handler) over the real Socket.IO signalling. It runs in a child process because a
// process that loaded wrtc can crash on natural exit: it always leaves through process.exit().
// The test sends commands over IPC ({ id, cmd, args }) and gets { id, ok, result | error } back;
// server events worth asserting on are forwarded as { event, payload }.
'use strict';
const { performance } = require('node:perf_hooks');
const wrtc = require('@roamhq/wrtc');
Object.assign(globalThis, {
  RTCPeerConnection: wrtc.RTCPeerConnection,
  RTCSessionDescription: wrtc.RTCSessionDescription,
  RTCIceCandidate: wrtc.RTCIceCandidate,
  MediaStream: wrtc.MediaStream,
  MediaStreamTrack: wrtc.MediaStreamTrack,
});
const { Device } = require('mediasoup-client');
const { io } = require('socket.io-client');

const state = {
  socket: null,
  roomId: null,
  device: null,
  send: null,
  recv: null,
  producers: new Map(), // source -> mediasoup-client Producer
  consumers: new Map(), // consumerId -> { consumer, info }
  sources: [],
  timers: [],
  events: [],
  restarts: 0,
};

function forward(event, payload) {
  state.events.push({ event, payload });
  process.send({ event, payload });
}

async function call(event, payload) {
  const answer = await state.socket.timeout(15000).emitWithAck(event, payload);
  if (!answer.ok) {
    const err = new Error(`${event}: ${answer.error.code} ${answer.error.message}`);
    err.code = answer.error.code;
    throw err;
  }
  return answer.data;
}

function videoTrack(width, height) {
  const source = new wrtc.nonstandard.RTCVideoSource();
  const track = source.createTrack();
  const data = new Uint8ClampedArray(width * height * 1.5);
  let n = 0;
  const timer = setInterval(() => {
    // A moving gradient: the encoder keeps producing real (non-empty) frames.
    n = (n + 3) % 255;
    for (let i = 0; i < width * height; i += 97) data[i] = (n + i) % 255;
    source.onFrame({ width, height, data });
  }, 33);
  state.timers.push(timer);
  return track;
}

function audioTrack() {
  const source = new wrtc.nonstandard.RTCAudioSource();
  const track = source.createTrack();
  const sampleRate = 48000;
  const samples = new Int16Array(sampleRate / 100);
  let t = 0;
  const timer = setInterval(() => {
    for (let i = 0; i < samples.length; i++, t++) samples[i] = Math.round(8000 * Math.sin((2 * Math.PI * 440 * t) / sampleRate));
    source.onData({ samples, sampleRate, bitsPerSample: 16, channelCount: 1, numberOfFrames: samples.length });
  }, 10);
  state.timers.push(timer);
  return track;
}

async function consume(producer) {
  if (producer.socketId === state.socket.id) return;
  for (const c of state.consumers.values()) if (c.info.producerId === producer.id) return;
  const info = await call('media:consume', { roomId: state.roomId, transportId: state.recv.id, producerId: producer.id, rtpCapabilities: state.device.rtpCapabilities });
  const consumer = await state.recv.consume({ id: info.id, producerId: info.producerId, kind: info.kind, rtpParameters: info.rtpParameters });
  state.consumers.set(info.id, { consumer, info });
  // Created paused on the server: resume now that our side exists.
  await call('media:consumer:resume', { roomId: state.roomId, consumerId: info.id });
  forward('consumed', { consumerId: info.id, producerId: info.producerId, kind: info.kind, type: info.type, source: info.source });
}

async function joinMedia() {
  const joined = await call('media:join', { roomId: state.roomId });
  state.device = await Device.factory({ handlerName: 'Chrome74' });
  await state.device.load({ routerRtpCapabilities: joined.routerRtpCapabilities });
  const makeTransport = async (direction) => {
    const info = await call('media:transport:create', { roomId: state.roomId, direction });
    const options = { id: info.id, iceParameters: info.iceParameters, iceCandidates: info.iceCandidates, dtlsParameters: info.dtlsParameters, iceServers: joined.iceServers };
    const transport = direction === 'send' ? state.device.createSendTransport(options) : state.device.createRecvTransport(options);
    transport.on('connect', ({ dtlsParameters }, done, fail) => {
      call('media:transport:connect', { roomId: state.roomId, transportId: transport.id, dtlsParameters }).then(() => done(), fail);
    });
    if (direction === 'send') {
      transport.on('produce', ({ kind, rtpParameters, appData }, done, fail) => {
        call('media:produce', { roomId: state.roomId, transportId: transport.id, kind, rtpParameters, source: appData.source }).then(({ producerId }) => done({ id: producerId }), fail);
      });
    }
    transport.on('connectionstatechange', (s) => forward('transport', { direction, state: s }));
    return transport;
  };
  state.send = await makeTransport('send');
  state.recv = await makeTransport('recv');
  for (const p of joined.producers) await consume(p);
  return { producers: joined.producers.length, iceServers: joined.iceServers };
}

/** Closes every local transport, producer and consumer; returns what was being sent. */
function closeLocalMedia() {
  const sources = [...state.producers.entries()].map(([source, p]) => ({ source, simulcast: (p.rtpParameters.encodings || []).length > 1 }));
  for (const c of state.consumers.values()) c.consumer.close();
  state.consumers.clear();
  for (const p of state.producers.values()) p.close();
  state.producers.clear();
  state.send?.close();
  state.recv?.close();
  state.send = state.recv = null;
  return sources;
}

async function produce(source, { simulcast = false } = {}) {
  const track = source === 'mic' ? audioTrack() : source === 'screen' ? videoTrack(1280, 720) : videoTrack(640, 480);
  const encodings = simulcast
    ? [
        { rid: 'r0', maxBitrate: 100000, scaleResolutionDownBy: 4 },
        { rid: 'r1', maxBitrate: 300000, scaleResolutionDownBy: 2 },
        { rid: 'r2', maxBitrate: 900000 },
      ]
    : undefined;
  const producer = await state.send.produce({ track, encodings, appData: { source } });
  state.producers.set(source, producer);
  return { producerId: producer.id };
}

const commands = {
  /** `recordAll`: forward every event the socket receives ({ event: 'any' }), for tests that check what reaches a patient. */
  async connect({ url, cookie, ca, recordAll = false }) {
    state.socket = io(url, { path: '/socket.io', transports: ['websocket'], reconnection: false, ca, extraHeaders: { Cookie: cookie } });
    if (recordAll) state.socket.onAny((event, payload) => process.send({ event: 'any', payload: { event, payload } }));
    state.socket.on('disconnect', (reason) => process.send({ event: 'socket:disconnect', payload: { reason } }));
    await new Promise((resolve, reject) => {
      state.socket.once('connect', resolve);
      state.socket.once('connect_error', reject);
    });
    for (const event of ['media:producer:added', 'media:producer:closed', 'media:producer:state', 'media:consumer:closed', 'media:speaker', 'media:restart', 'media:consumer:layers']) {
      state.socket.on(event, (payload) => forward(event, payload));
    }
    state.socket.on('media:producer:added', (payload) => {
      if (state.recv && payload.roomId === state.roomId) consume(payload.producer).catch((err) => forward('error', { message: err.message }));
    });
    state.socket.on('media:consumer:closed', ({ consumerId }) => {
      const c = state.consumers.get(consumerId);
      if (c) c.consumer.close();
      state.consumers.delete(consumerId);
    });
    // The room's media moved (worker died): rebuild transports and producers from scratch.
    state.socket.on('media:restart', () => {
      state.restarts++;
      const sources = closeLocalMedia();
      (async () => {
        await joinMedia();
        for (const s of sources) await produce(s.source, { simulcast: s.simulcast });
        forward('rebuilt', { restarts: state.restarts });
      })().catch((err) => forward('error', { message: err.message }));
    });
    return { socketId: state.socket.id };
  },
  async joinRoom({ caseId }) {
    state.roomId = caseId;
    const snapshot = await call('room:join', { caseId });
    return { members: snapshot.members.length };
  },
  /** A follow-up call is joined with its own events, not room:join: name the media room directly. */
  setRoom({ roomId }) {
    state.roomId = roomId;
    return null;
  },
  joinMedia: () => joinMedia(),
  produce: ({ source, simulcast }) => produce(source, { simulcast }),
  async pause({ source }) {
    const p = state.producers.get(source);
    p.pause();
    await call('media:producer:pause', { roomId: state.roomId, producerId: p.id });
    return null;
  },
  async resume({ source }) {
    const p = state.producers.get(source);
    p.resume();
    await call('media:producer:resume', { roomId: state.roomId, producerId: p.id });
    return null;
  },
  async closeProducer({ source }) {
    const p = state.producers.get(source);
    p.close();
    state.producers.delete(source);
    await call('media:producer:close', { roomId: state.roomId, producerId: p.id });
    return null;
  },
  async layers({ consumerId, spatialLayer }) {
    await call('media:consumer:layers', { roomId: state.roomId, consumerId, spatialLayer });
    return null;
  },
  /** Raw request, for refusal tests: returns the ack envelope as is. */
  async raw({ event, payload }) {
    return state.socket.timeout(15000).emitWithAck(event, payload);
  },
  /** Bytes and packets received per consumer, from libwebrtc's own receiver stats. */
  async stats() {
    // wrtc has no per-receiver getStats(): read the receive transport's report and match by SSRC.
    const bySsrc = new Map();
    if (state.recv) {
      const report = await state.recv.getStats();
      report.forEach((s) => {
        if (s.type === 'inbound-rtp') bySsrc.set(s.ssrc, s);
      });
    }
    const out = [];
    for (const { consumer, info } of state.consumers.values()) {
      const ssrc = consumer.rtpParameters.encodings[0].ssrc;
      const s = bySsrc.get(ssrc) || {};
      out.push({ consumerId: info.id, producerId: info.producerId, kind: info.kind, source: info.source, bytes: s.bytesReceived || 0, packets: s.packetsReceived || 0, frames: s.framesDecoded || 0, closed: consumer.closed });
    }
    return out;
  },
  /** Joins the room and its media, then waits for the first decoded remote video frame (ms). */
  async timeToFirstFrame({ caseId, timeoutMs = 20000 }) {
    const started = performance.now();
    state.roomId = caseId;
    await call('room:join', { caseId });
    const roomJoinedMs = performance.now() - started;
    await joinMedia();
    const mediaJoinedMs = performance.now() - started;
    for (;;) {
      const stats = await commands.stats();
      if (stats.some((s) => s.kind === 'video' && s.frames > 0)) return { ms: performance.now() - started, roomJoinedMs, mediaJoinedMs };
      if (performance.now() - started > timeoutMs) throw new Error('no remote frame');
      await new Promise((r) => setTimeout(r, 10));
    }
  },
  /** Leaves the room and closes every local media object, keeping the socket (benchmark rounds). */
  async resetRoom() {
    closeLocalMedia();
    state.device = null;
    await call('room:leave', { caseId: state.roomId });
    return null;
  },
  /** A network drop: the socket goes and comes back; the room is joined again and media rebuilt. */
  async reconnect() {
    const sources = closeLocalMedia();
    state.socket.disconnect();
    await new Promise((resolve, reject) => {
      state.socket.once('connect', resolve);
      state.socket.once('connect_error', reject);
      state.socket.connect();
    });
    await call('room:join', { caseId: state.roomId });
    await joinMedia();
    for (const s of sources) await produce(s.source, { simulcast: s.simulcast });
    return { socketId: state.socket.id };
  },
  async leaveMedia() {
    await call('media:leave', { roomId: state.roomId });
    return null;
  },
  async disconnect() {
    state.socket.disconnect();
    return null;
  },
};

process.on('message', async (msg) => {
  if (msg.cmd === 'exit') {
    for (const t of state.timers) clearInterval(t);
    process.exit(0);
  }
  try {
    const result = await commands[msg.cmd](msg.args || {});
    process.send({ id: msg.id, ok: true, result });
  } catch (err) {
    process.send({ id: msg.id, ok: false, error: { message: err.message, code: err.code } });
  }
});
process.on('disconnect', () => process.exit(0));
process.send({ ready: true });
