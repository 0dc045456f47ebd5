// MediaRoom: the media of one room (a case room or a follow-up call) on this node. It owns a
// router on the least-loaded worker, an active-speaker observer, and one MediaPeer per connection.
// When its worker dies it takes a router on a healthy worker and tells every member to rebuild
// (`media:restart`); the collaboration channel is not involved. close() is idempotent and cascades.
import { EventEmitter } from 'node:events';
import { AppError } from '../errors';
import type { Logger } from '../observability/logger';
import type { ConsumerInfo, MediaJoinResult, MediaLimits, MediaServerEvents, ProducerInfo, TransportInfo } from '../protocol/media';
import type { Mediasoup } from './mediasoup';
import { MediaPeer, type PeerIdentity, type ProducerMeta } from './MediaPeer';
import type { PoolWorker, WorkerPool } from './WorkerPool';

type Router = Mediasoup.types.Router;
type Producer = Mediasoup.types.Producer<ProducerMeta>;
type ActiveSpeakerObserver = Mediasoup.types.ActiveSpeakerObserver;
type RtpCodecCapability = Mediasoup.types.RtpCodecCapability;

export const MEDIA_CODECS: RtpCodecCapability[] = [
  { kind: 'audio', mimeType: 'audio/opus', clockRate: 48000, channels: 2 },
  { kind: 'video', mimeType: 'video/VP8', clockRate: 90000, parameters: { 'x-google-start-bitrate': 1000 } },
  // H264 constrained baseline for Safari and hardware encoders.
  { kind: 'video', mimeType: 'video/H264', clockRate: 90000, parameters: { 'packetization-mode': 1, 'profile-level-id': '42e01f', 'level-asymmetry-allowed': 1 } },
];

export interface MediaRoomSettings {
  limits: MediaLimits;
  /** Cap on what one peer may send (its send transport), bits/s. */
  maxIncomingBitrate: number;
  /** Cap on what the server sends one peer (its receive transport), bits/s. */
  maxOutgoingBitrate: number;
}

/** How a room reaches its members: implemented over Socket.IO (and its adapter) by the caller. */
export interface MediaNotifier {
  toRoom<E extends keyof MediaServerEvents>(room: string, event: E, payload: Parameters<MediaServerEvents[E]>[0]): void;
  toSocket<E extends keyof MediaServerEvents>(socketId: string, event: E, payload: Parameters<MediaServerEvents[E]>[0]): void;
}

export interface MediaAuditEvent {
  type: 'media.start' | 'media.stop';
  peer: PeerIdentity;
  roomId: string;
  kind: 'audio' | 'video';
  source: string;
  producerId: string;
  /** media.stop only: how long the stream ran (usage statistics sum it as media minutes). */
  durationSeconds?: number;
}

interface MediaRoomEvents {
  audit: [MediaAuditEvent];
  /** The last peer left. */
  empty: [];
  closed: [];
}

export class MediaRoom extends EventEmitter<MediaRoomEvents> {
  readonly #peers = new Map<string, MediaPeer>();
  #router: Router;
  #worker: PoolWorker;
  #speaker: ActiveSpeakerObserver;
  #activeSpeaker: { socketId: string; userId: string } | null = null;
  #closed = false;
  #moving: Promise<void> | null = null;

  private constructor(
    readonly roomId: string,
    /** Socket.IO room that reaches every member of this room. */
    readonly broadcastRoom: string,
    readonly siteId: string,
    private readonly pool: WorkerPool,
    private readonly notifier: MediaNotifier,
    private readonly settings: MediaRoomSettings,
    private readonly logger: Logger,
    worker: PoolWorker,
    router: Router,
    speaker: ActiveSpeakerObserver,
  ) {
    super();
    this.#worker = worker;
    this.#router = router;
    this.#speaker = speaker;
    this.#watchSpeaker();
  }

  static async create(roomId: string, broadcastRoom: string, siteId: string, pool: WorkerPool, notifier: MediaNotifier, settings: MediaRoomSettings, logger: Logger): Promise<MediaRoom> {
    const { worker, router, speaker } = await MediaRoom.#routerOn(pool);
    return new MediaRoom(roomId, broadcastRoom, siteId, pool, notifier, settings, logger.child({ module: 'media.room' }), worker, router, speaker);
  }

  static async #routerOn(pool: WorkerPool): Promise<{ worker: PoolWorker; router: Router; speaker: ActiveSpeakerObserver }> {
    const worker = pool.leastLoaded();
    worker.routers++;
    try {
      const router = await worker.worker.createRouter({ mediaCodecs: MEDIA_CODECS });
      const speaker = await router.createActiveSpeakerObserver({ interval: 300 });
      router.observer.once('close', () => {
        worker.routers--;
      });
      return { worker, router, speaker };
    } catch (err) {
      worker.routers--;
      throw err;
    }
  }

  #watchSpeaker(): void {
    this.#speaker.on('dominantspeaker', ({ producer }) => {
      const meta = (producer as unknown as Producer).appData;
      this.#activeSpeaker = { socketId: meta.socketId, userId: meta.userId };
      this.notifier.toRoom(this.broadcastRoom, 'media:speaker', { roomId: this.roomId, speaker: this.#activeSpeaker });
    });
  }

  get closed(): boolean {
    return this.#closed;
  }

  get peerCount(): number {
    return this.#peers.size;
  }

  get workerPid(): number {
    return this.#worker.worker.pid;
  }

  get router(): Router {
    return this.#router;
  }

  peers(): MediaPeer[] {
    return [...this.#peers.values()];
  }

  /** Used by the pool's `died` handler: does this room live on that worker? */
  isOn(worker: PoolWorker): boolean {
    return this.#worker === worker;
  }

  #producerInfos(): ProducerInfo[] {
    const out: ProducerInfo[] = [];
    for (const peer of this.#peers.values()) for (const p of peer.producers.values()) out.push(this.#info(p));
    return out;
  }

  #info(p: Producer): ProducerInfo {
    return { id: p.id, socketId: p.appData.socketId, userId: p.appData.userId, name: p.appData.name, kind: p.kind, source: p.appData.source, paused: p.paused };
  }

  #peer(socketId: string): MediaPeer {
    const peer = this.#peers.get(socketId);
    if (!peer || peer.closed) throw new AppError('CONFLICT', 'Join the room media first (media:join).');
    return peer;
  }

  async #ready(): Promise<void> {
    if (this.#moving) await this.#moving;
    if (this.#closed) throw new AppError('CONFLICT', 'The room media has ended; join again.');
  }

  /** (Re)starts a connection's media: an earlier peer of the same connection is closed first. */
  async join(identity: PeerIdentity, iceServers: MediaJoinResult['iceServers']): Promise<MediaJoinResult> {
    await this.#ready();
    this.#peers.get(identity.socketId)?.close();
    const peer = new MediaPeer(identity, this.settings.limits);
    peer.on('producerClosed', (producer) => {
      this.notifier.toRoom(this.broadcastRoom, 'media:producer:closed', { roomId: this.roomId, producerId: producer.id });
      this.emit('audit', { type: 'media.stop', peer: identity, roomId: this.roomId, kind: producer.kind, source: producer.appData.source, producerId: producer.id, durationSeconds: Math.max(0, Math.round((Date.now() - producer.appData.startedAt) / 100) / 10) });
    });
    this.#peers.set(identity.socketId, peer);
    return {
      roomId: this.roomId,
      routerRtpCapabilities: this.#router.rtpCapabilities,
      iceServers,
      producers: this.#producerInfos().filter((p) => p.socketId !== identity.socketId),
      activeSpeaker: this.#activeSpeaker,
      limits: this.settings.limits,
    };
  }

  has(socketId: string): boolean {
    return this.#peers.has(socketId);
  }

  async createTransport(socketId: string, direction: 'send' | 'recv'): Promise<TransportInfo> {
    await this.#ready();
    const peer = this.#peer(socketId);
    peer.assertCanAdd('transport');
    const transport = await this.#router.createWebRtcTransport({
      webRtcServer: this.#worker.webRtcServer,
      enableUdp: true,
      enableTcp: true,
      preferUdp: true,
      initialAvailableOutgoingBitrate: 1_000_000,
      appData: { direction },
    });
    if (peer.closed) {
      transport.close();
      throw new AppError('CONFLICT', 'Media for this connection has ended; join again.');
    }
    peer.addTransport(transport);
    // A transport whose DTLS fails or closes is useless: close it so its objects do not linger.
    transport.on('dtlsstatechange', (state) => {
      if (state === 'failed' || state === 'closed') transport.close();
    });
    if (direction === 'send') await transport.setMaxIncomingBitrate(this.settings.maxIncomingBitrate).catch(() => undefined);
    else await transport.setMaxOutgoingBitrate(this.settings.maxOutgoingBitrate).catch(() => undefined);
    return { id: transport.id, iceParameters: transport.iceParameters, iceCandidates: transport.iceCandidates, dtlsParameters: transport.dtlsParameters };
  }

  async connectTransport(socketId: string, transportId: string, dtlsParameters: Mediasoup.types.DtlsParameters): Promise<void> {
    await this.#ready();
    const transport = this.#peer(socketId).transport(transportId);
    if (transport.dtlsState !== 'new') throw new AppError('CONFLICT', 'This transport is already connected.');
    await mediasoupCall(() => transport.connect({ dtlsParameters }));
  }

  async restartIce(socketId: string, transportId: string): Promise<{ iceParameters: unknown }> {
    await this.#ready();
    const transport = this.#peer(socketId).transport(transportId);
    return { iceParameters: await transport.restartIce() };
  }

  async produce(socketId: string, input: { transportId: string; kind: 'audio' | 'video'; rtpParameters: Mediasoup.types.RtpParameters; source: ProducerMeta['source']; paused?: boolean }): Promise<{ producerId: string }> {
    await this.#ready();
    const peer = this.#peer(socketId);
    const transport = peer.transport(input.transportId);
    if ((transport.appData as { direction: string }).direction !== 'send') throw new AppError('CONFLICT', 'Produce on a send transport.');
    if ((input.source === 'mic') !== (input.kind === 'audio')) throw new AppError('VALIDATION_FAILED', 'A microphone is audio; a camera or a screen is video.');
    // One producer per source: a second camera replaces nothing silently; the client closes the first.
    for (const p of peer.producers.values()) if (p.appData.source === input.source) throw new AppError('CONFLICT', `This connection already sends its ${input.source}.`);
    peer.assertCanAdd('producer');
    const meta: ProducerMeta = { source: input.source, socketId, userId: peer.identity.userId, name: peer.identity.name, startedAt: Date.now() };
    const producer = await mediasoupCall(() =>
      transport.produce<ProducerMeta>({ kind: input.kind, rtpParameters: input.rtpParameters, paused: input.paused ?? false, appData: meta }),
    );
    if (peer.closed) {
      producer.close();
      throw new AppError('CONFLICT', 'Media for this connection has ended; join again.');
    }
    peer.addProducer(producer);
    if (producer.kind === 'audio') await this.#speaker.addProducer({ producerId: producer.id }).catch(() => undefined);
    this.emit('audit', { type: 'media.start', peer: peer.identity, roomId: this.roomId, kind: producer.kind, source: input.source, producerId: producer.id });
    this.notifier.toRoom(this.broadcastRoom, 'media:producer:added', { roomId: this.roomId, producer: this.#info(producer) });
    return { producerId: producer.id };
  }

  async setProducerPaused(socketId: string, producerId: string, paused: boolean): Promise<void> {
    await this.#ready();
    const producer = this.#peer(socketId).producer(producerId);
    if (producer.paused === paused) return;
    if (paused) await producer.pause();
    else await producer.resume();
    this.notifier.toRoom(this.broadcastRoom, 'media:producer:state', { roomId: this.roomId, producerId, paused });
  }

  async closeProducer(socketId: string, producerId: string): Promise<void> {
    await this.#ready();
    this.#peer(socketId).producer(producerId).close();
  }

  /** Consumers are created paused: the client resumes once its side exists, so no keyframe is lost. */
  async consume(socketId: string, input: { transportId: string; producerId: string; rtpCapabilities: Mediasoup.types.RtpCapabilities }): Promise<ConsumerInfo> {
    await this.#ready();
    const peer = this.#peer(socketId);
    const transport = peer.transport(input.transportId);
    if ((transport.appData as { direction: string }).direction !== 'recv') throw new AppError('CONFLICT', 'Consume on a receive transport.');
    const producer = this.#findProducer(input.producerId);
    if (!producer) throw new AppError('NOT_FOUND', 'That producer is not in this room.');
    if (producer.appData.socketId === socketId) throw new AppError('CONFLICT', 'A connection does not consume its own media.');
    for (const c of peer.consumers.values()) if (c.producerId === producer.id) throw new AppError('CONFLICT', 'Already consuming this producer.');
    peer.assertCanAdd('consumer');
    if (!this.#router.canConsume({ producerId: producer.id, rtpCapabilities: input.rtpCapabilities })) {
      throw new AppError('VALIDATION_FAILED', 'These receive capabilities cannot decode that producer.');
    }
    const consumer = await mediasoupCall(() => transport.consume({ producerId: producer.id, rtpCapabilities: input.rtpCapabilities, paused: true }));
    if (peer.closed) {
      consumer.close();
      throw new AppError('CONFLICT', 'Media for this connection has ended; join again.');
    }
    peer.addConsumer(consumer);
    const announceClosed = () => this.notifier.toSocket(socketId, 'media:consumer:closed', { roomId: this.roomId, consumerId: consumer.id });
    consumer.on('producerclose', announceClosed);
    consumer.on('layerschange', (layers) =>
      this.notifier.toSocket(socketId, 'media:consumer:layers', { roomId: this.roomId, consumerId: consumer.id, spatialLayer: layers?.spatialLayer ?? null, temporalLayer: layers?.temporalLayer ?? null }),
    );
    return {
      id: consumer.id,
      producerId: producer.id,
      kind: consumer.kind,
      rtpParameters: consumer.rtpParameters,
      type: consumer.type,
      producerPaused: consumer.producerPaused,
      source: producer.appData.source,
      socketId: producer.appData.socketId,
      userId: producer.appData.userId,
    };
  }

  #findProducer(producerId: string): Producer | undefined {
    for (const peer of this.#peers.values()) {
      const p = peer.producers.get(producerId);
      if (p && !p.closed) return p;
    }
    return undefined;
  }

  async setConsumerPaused(socketId: string, consumerId: string, paused: boolean): Promise<void> {
    await this.#ready();
    const consumer = this.#peer(socketId).consumer(consumerId);
    if (paused) await consumer.pause();
    else await consumer.resume();
  }

  async setConsumerLayers(socketId: string, consumerId: string, spatialLayer: number, temporalLayer: number | undefined): Promise<void> {
    await this.#ready();
    const consumer = this.#peer(socketId).consumer(consumerId);
    if (consumer.type !== 'simulcast' && consumer.type !== 'svc') throw new AppError('CONFLICT', 'This consumer has one layer only.');
    await consumer.setPreferredLayers({ spatialLayer, ...(temporalLayer === undefined ? {} : { temporalLayer }) });
  }

  /** A connection leaves: its transports, producers and consumers close (others are told). */
  leave(socketId: string): void {
    const peer = this.#peers.get(socketId);
    if (!peer) return;
    this.#peers.delete(socketId);
    peer.close();
    if (this.#activeSpeaker?.socketId === socketId) {
      this.#activeSpeaker = null;
      this.notifier.toRoom(this.broadcastRoom, 'media:speaker', { roomId: this.roomId, speaker: null });
    }
    if (this.#peers.size === 0) this.emit('empty');
  }

  /**
   * The worker died with our router in it: take a router on a healthy worker and ask every member
   * to rebuild. The peers' objects died with the worker; the peers are forgotten.
   */
  async moveAfterWorkerDeath(): Promise<void> {
    if (this.#closed || this.#moving) return this.#moving ?? undefined;
    this.#moving = (async () => {
      for (const peer of this.#peers.values()) peer.close();
      this.#peers.clear();
      this.#activeSpeaker = null;
      // The replacement worker may still be starting: retry briefly before giving up.
      let lastError: unknown = null;
      for (let attempt = 0; attempt < 50 && !this.#closed; attempt++) {
        try {
          const { worker, router, speaker } = await MediaRoom.#routerOn(this.pool);
          this.#worker = worker;
          this.#router = router;
          this.#speaker = speaker;
          this.#watchSpeaker();
          lastError = null;
          break;
        } catch (err) {
          lastError = err;
          await this.pool.settled();
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      if (lastError) {
        this.logger.error({ roomId: this.roomId, err: { message: (lastError as Error).message } }, 'media room could not move to a healthy worker');
        this.close();
        return;
      }
      this.logger.warn({ roomId: this.roomId, workerPid: this.#worker.worker.pid }, 'media room moved after a worker died');
      this.notifier.toRoom(this.broadcastRoom, 'media:restart', { roomId: this.roomId, reason: 'worker-died' });
    })();
    try {
      await this.#moving;
    } finally {
      this.#moving = null;
    }
  }

  /** Idempotent: closes every peer and the router. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const peer of this.#peers.values()) peer.close();
    this.#peers.clear();
    this.#router.close();
    this.emit('closed');
    this.removeAllListeners();
  }
}

/** mediasoup rejects bad RTP/DTLS parameters with TypeError/UnsupportedError: a client error. */
async function mediasoupCall<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof AppError) throw err;
    const name = (err as Error)?.name;
    if (name === 'TypeError' || name === 'UnsupportedError' || name === 'Error') {
      throw new AppError('VALIDATION_FAILED', 'The media parameters were refused.');
    }
    throw err;
  }
}
