// MediaSession: this browser's audio, video and screen share in one room, over the room's
// Socket.IO connection and mediasoup-client. No UI here (VideoGrid draws it; the patient call
// page reuses it). It joins the room's media, keeps one send and one receive transport, consumes
// every producer of the others (created paused on the server, resumed once ours exists), and
// rebuilds everything when the server asks (`media:restart`, the room's worker died) or after a
// reconnect. Camera video is simulcast in three layers; the grid asks for the layer it shows.
import { Device } from 'mediasoup-client';
import type { Consumer, Producer, Transport } from 'mediasoup-client/types';
import type { Socket } from 'socket.io-client';
import type { Ack, AckError } from '../../../src/protocol/realtime';
import type { ConsumerInfo, MediaJoinResult, MediaRequestName, MediaResponses, MediaSource, ProducerInfo, TransportInfo } from '../../../src/protocol/media';

export class MediaError extends Error {
  constructor(readonly error: AckError) {
    super(error.message);
    this.name = 'MediaError';
  }
}

export interface RemoteMedia {
  producerId: string;
  consumerId: string;
  socketId: string;
  userId: string;
  name: string;
  kind: 'audio' | 'video';
  source: MediaSource;
  track: MediaStreamTrack;
  paused: boolean;
  simulcast: boolean;
}

export interface MediaSessionEvents {
  /** The set of remote media changed (added, removed, paused or resumed). */
  remote: (media: RemoteMedia[]) => void;
  /** Our own sources changed (on/off/muted) or a local preview track changed. */
  local: (local: LocalState) => void;
  speaker: (speaker: { socketId: string; userId: string } | null) => void;
  /** 'joining' | 'live' | 'rebuilding' | 'off'; `error` when something failed (shown to the user). */
  status: (status: SessionStatus, error?: string) => void;
}

export type SessionStatus = 'off' | 'joining' | 'live' | 'rebuilding';

export interface LocalState {
  mic: { on: boolean; muted: boolean; deviceId: string | null };
  camera: { on: boolean; deviceId: string | null; track: MediaStreamTrack | null };
  screen: { on: boolean; track: MediaStreamTrack | null };
}

const CAMERA_ENCODINGS: RTCRtpEncodingParameters[] = [
  { rid: 'r0', maxBitrate: 150_000, scaleResolutionDownBy: 4 },
  { rid: 'r1', maxBitrate: 500_000, scaleResolutionDownBy: 2 },
  { rid: 'r2', maxBitrate: 1_200_000 },
];

type Listener<K extends keyof MediaSessionEvents> = MediaSessionEvents[K];

export class MediaSession {
  #device: Device | null = null;
  #send: Transport | null = null;
  #recv: Transport | null = null;
  readonly #producers = new Map<MediaSource, Producer>();
  readonly #remote = new Map<string, { consumer: Consumer; media: RemoteMedia }>();
  readonly #listeners: { [K in keyof MediaSessionEvents]: Listener<K>[] } = { remote: [], local: [], speaker: [], status: [] };
  readonly #local: LocalState = { mic: { on: false, muted: false, deviceId: null }, camera: { on: false, deviceId: null, track: null }, screen: { on: false, track: null } };
  #status: SessionStatus = 'off';
  #closed = false;
  #generation = 0;
  #iceServers: MediaJoinResult['iceServers'] = [];
  readonly #socketHandlers: [string, (...args: never[]) => void][] = [];

  constructor(
    private readonly socket: Socket,
    readonly roomId: string,
  ) {
    this.#on('media:producer:added', ({ roomId, producer }: { roomId: string; producer: ProducerInfo }) => {
      if (roomId === this.roomId && this.#recv) void this.#consume(producer, this.#generation).catch((err: Error) => this.#setStatus(this.#status, err.message));
    });
    this.#on('media:consumer:closed', ({ roomId, consumerId }: { roomId: string; consumerId: string }) => {
      if (roomId !== this.roomId) return;
      for (const [producerId, entry] of this.#remote) {
        if (entry.consumer.id === consumerId) {
          entry.consumer.close();
          this.#remote.delete(producerId);
        }
      }
      this.#emitRemote();
    });
    this.#on('media:producer:closed', ({ roomId, producerId }: { roomId: string; producerId: string }) => {
      if (roomId !== this.roomId) return;
      const entry = this.#remote.get(producerId);
      if (entry) {
        entry.consumer.close();
        this.#remote.delete(producerId);
        this.#emitRemote();
      }
    });
    this.#on('media:producer:state', ({ roomId, producerId, paused }: { roomId: string; producerId: string; paused: boolean }) => {
      const entry = roomId === this.roomId ? this.#remote.get(producerId) : undefined;
      if (entry) {
        entry.media.paused = paused;
        this.#emitRemote();
      }
    });
    this.#on('media:speaker', ({ roomId, speaker }: { roomId: string; speaker: { socketId: string; userId: string } | null }) => {
      if (roomId === this.roomId) for (const l of this.#listeners.speaker) l(speaker);
    });
    this.#on('media:restart', ({ roomId }: { roomId: string }) => {
      if (roomId === this.roomId && this.#status !== 'off') void this.#rebuild();
    });
    // After a network drop the server ended our media with the old connection: rebuild once the
    // room is joined again (media:join answers FORBIDDEN until then, so it is retried).
    this.#on('connect', () => {
      if (this.#status === 'live' || this.#status === 'rebuilding') void this.#rebuild();
    });
  }

  #on(event: string, handler: (...args: never[]) => void): void {
    this.socket.on(event, handler as never);
    this.#socketHandlers.push([event, handler]);
  }

  on<K extends keyof MediaSessionEvents>(event: K, listener: MediaSessionEvents[K]): void {
    (this.#listeners[event] as MediaSessionEvents[K][]).push(listener);
  }

  get status(): SessionStatus {
    return this.#status;
  }

  get local(): LocalState {
    return this.#local;
  }

  remoteMedia(): RemoteMedia[] {
    return [...this.#remote.values()].map((e) => e.media);
  }

  #setStatus(status: SessionStatus, error?: string): void {
    this.#status = status;
    for (const l of this.#listeners.status) l(status, error);
  }

  #emitRemote(): void {
    const list = this.remoteMedia();
    for (const l of this.#listeners.remote) l(list);
  }

  #emitLocal(): void {
    for (const l of this.#listeners.local) l(this.#local);
  }

  async #call<N extends MediaRequestName>(event: N, payload: Record<string, unknown>): Promise<MediaResponses[N]> {
    const timed = this.socket.timeout(15_000) as unknown as { emitWithAck(e: string, p: unknown): Promise<Ack<MediaResponses[N]>> };
    let answer: Ack<MediaResponses[N]>;
    try {
      answer = await timed.emitWithAck(event, { roomId: this.roomId, ...payload });
    } catch {
      throw new MediaError({ code: 'INTERNAL', message: 'The server did not answer in time.' });
    }
    if (!answer.ok) throw new MediaError(answer.error);
    return answer.data;
  }

  /** Joins the room's media: receives everyone else; sends nothing until a source is turned on. */
  async start(): Promise<void> {
    if (this.#closed) throw new Error('MediaSession is closed');
    if (this.#status === 'live' || this.#status === 'joining') return;
    this.#setStatus('joining');
    try {
      await this.#connect(++this.#generation);
      this.#setStatus('live');
    } catch (err) {
      this.#teardown();
      this.#setStatus('off', (err as Error).message);
      throw err;
    }
  }

  async #connect(generation: number): Promise<void> {
    const joined = await this.#call('media:join', {});
    this.#iceServers = joined.iceServers;
    const device = this.#device ?? new Device();
    if (!device.loaded) await device.load({ routerRtpCapabilities: joined.routerRtpCapabilities as never });
    this.#device = device;
    this.#send = await this.#transport('send');
    this.#recv = await this.#transport('recv');
    if (generation !== this.#generation) return;
    for (const producer of joined.producers) await this.#consume(producer, generation);
  }

  async #transport(direction: 'send' | 'recv'): Promise<Transport> {
    const info: TransportInfo = await this.#call('media:transport:create', { direction });
    const options = {
      id: info.id,
      iceParameters: info.iceParameters as never,
      iceCandidates: info.iceCandidates as never,
      dtlsParameters: info.dtlsParameters as never,
      iceServers: this.#iceServers,
    };
    const transport = direction === 'send' ? this.#device!.createSendTransport(options) : this.#device!.createRecvTransport(options);
    transport.on('connect', ({ dtlsParameters }, done, fail) => {
      this.#call('media:transport:connect', { transportId: transport.id, dtlsParameters }).then(() => done(), fail);
    });
    if (direction === 'send') {
      transport.on('produce', ({ kind, rtpParameters, appData }, done, fail) => {
        this.#call('media:produce', { transportId: transport.id, kind, rtpParameters, source: (appData as { source: MediaSource }).source, paused: (appData as { paused?: boolean }).paused ?? false }).then(
          ({ producerId }) => done({ id: producerId }),
          fail,
        );
      });
    }
    transport.on('connectionstatechange', (state) => {
      // A transport that failed ICE (a network change): ask for new ICE credentials.
      if (state === 'failed' && !transport.closed) {
        this.#call('media:transport:restartIce', { transportId: transport.id }).then(
          ({ iceParameters }) => transport.restartIce({ iceParameters: iceParameters as never }),
          () => undefined,
        );
      }
    });
    return transport;
  }

  async #consume(producer: ProducerInfo, generation: number): Promise<void> {
    if (producer.socketId === this.socket.id || this.#remote.has(producer.id) || !this.#recv || !this.#device) return;
    const info: ConsumerInfo = await this.#call('media:consume', { transportId: this.#recv.id, producerId: producer.id, rtpCapabilities: this.#device.rtpCapabilities });
    if (generation !== this.#generation || !this.#recv) return;
    const consumer = await this.#recv.consume({ id: info.id, producerId: info.producerId, kind: info.kind, rtpParameters: info.rtpParameters as never });
    this.#remote.set(producer.id, {
      consumer,
      media: {
        producerId: producer.id,
        consumerId: consumer.id,
        socketId: producer.socketId,
        userId: producer.userId,
        name: producer.name,
        kind: info.kind,
        source: info.source,
        track: consumer.track,
        paused: info.producerPaused,
        simulcast: info.type === 'simulcast',
      },
    });
    // The server created it paused so no packet was lost before our side existed.
    await this.#call('media:consumer:resume', { consumerId: consumer.id });
    this.#emitRemote();
  }

  /** Asks the server for the simulcast layer that fits how large the video is shown. */
  async preferLayer(producerId: string, spatialLayer: 0 | 1 | 2): Promise<void> {
    const entry = this.#remote.get(producerId);
    if (!entry || !entry.media.simulcast) return;
    await this.#call('media:consumer:layers', { consumerId: entry.consumer.id, spatialLayer });
  }

  async enableMic(deviceId?: string): Promise<void> {
    const stream = await navigator.mediaDevices.getUserMedia({ audio: deviceId ? { deviceId: { exact: deviceId } } : true });
    const track = stream.getAudioTracks()[0]!;
    await this.#replaceSource('mic', track, undefined);
    this.#local.mic = { on: true, muted: false, deviceId: track.getSettings().deviceId ?? deviceId ?? null };
    this.#emitLocal();
  }

  async setMicMuted(muted: boolean): Promise<void> {
    const producer = this.#producers.get('mic');
    if (!producer) return;
    if (muted) producer.pause();
    else producer.resume();
    await this.#call(muted ? 'media:producer:pause' : 'media:producer:resume', { producerId: producer.id });
    this.#local.mic.muted = muted;
    this.#emitLocal();
  }

  async enableCamera(deviceId?: string): Promise<void> {
    const stream = await navigator.mediaDevices.getUserMedia({ video: { ...(deviceId ? { deviceId: { exact: deviceId } } : {}), width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 24 } } });
    const track = stream.getVideoTracks()[0]!;
    await this.#replaceSource('camera', track, CAMERA_ENCODINGS);
    this.#local.camera = { on: true, deviceId: track.getSettings().deviceId ?? deviceId ?? null, track };
    this.#emitLocal();
  }

  async shareScreen(): Promise<void> {
    const stream = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { ideal: 15 } }, audio: false });
    const track = stream.getVideoTracks()[0]!;
    // The browser's own "Stop sharing" button ends the track.
    track.addEventListener('ended', () => void this.stop('screen'));
    await this.#replaceSource('screen', track, undefined);
    this.#local.screen = { on: true, track };
    this.#emitLocal();
  }

  async #replaceSource(source: MediaSource, track: MediaStreamTrack, encodings: RTCRtpEncodingParameters[] | undefined): Promise<void> {
    if (!this.#send) {
      track.stop();
      throw new Error('Join the call first.');
    }
    const existing = this.#producers.get(source);
    if (existing) {
      // Switching devices: keep the producer, swap its track.
      const old = existing.track;
      await existing.replaceTrack({ track });
      old?.stop();
      return;
    }
    const producer = await this.#send.produce({
      track,
      ...(encodings ? { encodings } : {}),
      codecOptions: source === 'mic' ? { opusStereo: false, opusDtx: true } : { videoGoogleStartBitrate: 1000 },
      appData: { source },
      stopTracks: true,
    });
    this.#producers.set(source, producer);
  }

  /** Turns a source off: its producer closes and everyone's tile for it goes. */
  async stop(source: MediaSource): Promise<void> {
    const producer = this.#producers.get(source);
    this.#producers.delete(source);
    if (producer) {
      producer.close();
      await this.#call('media:producer:close', { producerId: producer.id }).catch(() => undefined);
    }
    if (source === 'mic') this.#local.mic = { on: false, muted: false, deviceId: this.#local.mic.deviceId };
    if (source === 'camera') this.#local.camera = { on: false, deviceId: this.#local.camera.deviceId, track: null };
    if (source === 'screen') this.#local.screen = { on: false, track: null };
    this.#emitLocal();
  }

  /** Rebuilds transports and producers (worker moved, or reconnected), keeping what was on. */
  async #rebuild(): Promise<void> {
    const generation = ++this.#generation;
    // Microphone and camera come back by themselves; a screen share must be chosen again (the
    // browser asks the user), so it ends here.
    const wanted = { mic: this.#local.mic.on ? { ...this.#local.mic } : null, camera: this.#local.camera.on ? { deviceId: this.#local.camera.deviceId } : null };
    this.#teardown();
    this.#local.mic.on = false;
    this.#local.camera = { on: false, deviceId: this.#local.camera.deviceId, track: null };
    this.#local.screen = { on: false, track: null };
    this.#emitLocal();
    this.#setStatus('rebuilding');
    for (let attempt = 0; attempt < 40 && generation === this.#generation && !this.#closed; attempt++) {
      try {
        await this.#connect(generation);
        if (generation !== this.#generation) return;
        if (wanted.mic) {
          await this.enableMic(wanted.mic.deviceId ?? undefined);
          if (wanted.mic.muted) await this.setMicMuted(true);
        }
        if (wanted.camera) await this.enableCamera(wanted.camera.deviceId ?? undefined);
        this.#setStatus('live');
        return;
      } catch (err) {
        this.#teardown();
        // Not in the room yet (rejoining after a reconnect) or the room is moving: retry shortly.
        const code = err instanceof MediaError ? err.error.code : '';
        if (code !== 'FORBIDDEN' && code !== 'CONFLICT' && code !== 'MEDIA_UNAVAILABLE' && code !== 'INTERNAL') {
          this.#setStatus('off', (err as Error).message);
          return;
        }
        await new Promise((r) => setTimeout(r, 250 + attempt * 50));
      }
    }
  }

  #teardown(): void {
    for (const { consumer } of this.#remote.values()) consumer.close();
    this.#remote.clear();
    for (const producer of this.#producers.values()) producer.close();
    this.#producers.clear();
    this.#send?.close();
    this.#recv?.close();
    this.#send = null;
    this.#recv = null;
    this.#emitRemote();
  }

  /** Leaves the room's media; the session can start again later. */
  async leave(): Promise<void> {
    this.#generation++;
    this.#teardown();
    this.#local.mic = { on: false, muted: false, deviceId: this.#local.mic.deviceId };
    this.#local.camera = { on: false, deviceId: this.#local.camera.deviceId, track: null };
    this.#local.screen = { on: false, track: null };
    this.#emitLocal();
    this.#setStatus('off');
    if (this.socket.connected) await this.#call('media:leave', {}).catch(() => undefined);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    void this.leave();
    for (const [event, handler] of this.#socketHandlers) this.socket.off(event, handler as never);
    for (const key of Object.keys(this.#listeners) as (keyof MediaSessionEvents)[]) this.#listeners[key].length = 0;
  }
}
