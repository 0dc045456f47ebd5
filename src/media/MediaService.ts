// MediaService: this node's media. It owns the worker pool and one MediaRoom per room with media
// open (get-or-create serialised per room id), answers every media request of a peer against its
// room, moves rooms off a worker that died, and disposes of a room shortly after its last peer
// leaves. The socket layer (media/handlers.ts) decides who may ask; this class only does it.
import { EventEmitter } from 'node:events';
import { AppError } from '../errors';
import type { Logger } from '../observability/logger';
import type { MediaRequest, MediaRequestName, MediaResponses } from '../protocol/media';
import type { Mediasoup } from './mediasoup';
import type { PeerIdentity } from './MediaPeer';
import { MediaRoom, type MediaAuditEvent, type MediaNotifier, type MediaRoomSettings } from './MediaRoom';
import { turnCredentials, type TurnConfig } from './turn';
import { WorkerPool, type WorkerPoolOptions } from './WorkerPool';

export interface MediaConfig {
  pool: WorkerPoolOptions;
  room: MediaRoomSettings;
  turn: TurnConfig;
  /** How long an empty room keeps its router, so a member reconnecting at once finds it. */
  emptyRoomGraceMs: number;
}

/** Where a request goes: the room, the Socket.IO room reaching its members, and its site. */
export interface MediaTarget {
  roomId: string;
  broadcastRoom: string;
  siteId: string;
}

interface MediaServiceEvents {
  audit: [MediaAuditEvent];
}

export class MediaService extends EventEmitter<MediaServiceEvents> {
  readonly #rooms = new Map<string, MediaRoom>();
  readonly #creating = new Map<string, Promise<MediaRoom>>();
  readonly #emptyTimers = new Map<string, NodeJS.Timeout>();
  #closed = false;

  private constructor(
    readonly pool: WorkerPool,
    private readonly config: MediaConfig,
    private readonly notifier: MediaNotifier,
    private readonly logger: Logger,
    private readonly clock: () => Date,
  ) {
    super();
    pool.on('died', (worker) => {
      for (const room of this.#rooms.values()) if (room.isOn(worker)) void room.moveAfterWorkerDeath();
    });
  }

  static async create(config: MediaConfig, notifier: MediaNotifier, logger: Logger, clock: () => Date = () => new Date()): Promise<MediaService> {
    const pool = await WorkerPool.create(config.pool, logger);
    return new MediaService(pool, config, notifier, logger.child({ module: 'media' }), clock);
  }

  room(roomId: string): MediaRoom | undefined {
    const room = this.#rooms.get(roomId);
    return room && !room.closed ? room : undefined;
  }

  rooms(): MediaRoom[] {
    return [...this.#rooms.values()];
  }

  async #getOrCreate(target: MediaTarget): Promise<MediaRoom> {
    if (this.#closed) throw new AppError('MEDIA_UNAVAILABLE');
    const existing = this.room(target.roomId);
    if (existing) return existing;
    const pending = this.#creating.get(target.roomId);
    if (pending) return pending;
    const creation = MediaRoom.create(target.roomId, target.broadcastRoom, target.siteId, this.pool, this.notifier, this.config.room, this.logger).then((room) => {
      room.on('audit', (event) => this.emit('audit', event));
      room.on('empty', () => this.#scheduleDispose(room));
      room.once('closed', () => {
        if (this.#rooms.get(room.roomId) === room) this.#rooms.delete(room.roomId);
        this.#cancelDispose(room.roomId);
      });
      this.#rooms.set(room.roomId, room);
      return room;
    });
    this.#creating.set(target.roomId, creation);
    try {
      return await creation;
    } catch (err) {
      this.logger.error({ roomId: target.roomId, err: { message: (err as Error).message } }, 'media room could not be created');
      throw new AppError('MEDIA_UNAVAILABLE');
    } finally {
      this.#creating.delete(target.roomId);
    }
  }

  #scheduleDispose(room: MediaRoom): void {
    this.#cancelDispose(room.roomId);
    const timer = setTimeout(() => {
      this.#emptyTimers.delete(room.roomId);
      if (room.peerCount === 0) room.close();
    }, this.config.emptyRoomGraceMs);
    timer.unref();
    this.#emptyTimers.set(room.roomId, timer);
  }

  #cancelDispose(roomId: string): void {
    const timer = this.#emptyTimers.get(roomId);
    if (timer) clearTimeout(timer);
    this.#emptyTimers.delete(roomId);
  }

  #existing(roomId: string): MediaRoom {
    const room = this.room(roomId);
    if (!room) throw new AppError('CONFLICT', 'Join the room media first (media:join).');
    return room;
  }

  /** Answers one media request of `peer` (already authorised by the caller). */
  async handle<N extends MediaRequestName>(name: N, peer: PeerIdentity, target: MediaTarget, input: MediaRequest<N>): Promise<MediaResponses[N]> {
    return (await this.#dispatch(name, peer, target, input as never)) as MediaResponses[N];
  }

  async #dispatch(name: MediaRequestName, peer: PeerIdentity, target: MediaTarget, input: Record<string, unknown>): Promise<unknown> {
    const socketId = peer.socketId;
    switch (name) {
      case 'media:join': {
        const room = await this.#getOrCreate(target);
        this.#cancelDispose(room.roomId);
        return room.join(peer, turnCredentials(this.config.turn, peer.userId, this.clock()));
      }
      case 'media:leave':
        this.room(target.roomId)?.leave(socketId);
        return null;
      case 'media:transport:create':
        return this.#existing(target.roomId).createTransport(socketId, input.direction as 'send' | 'recv');
      case 'media:transport:connect':
        await this.#existing(target.roomId).connectTransport(socketId, input.transportId as string, input.dtlsParameters as Mediasoup.types.DtlsParameters);
        return null;
      case 'media:transport:restartIce':
        return this.#existing(target.roomId).restartIce(socketId, input.transportId as string);
      case 'media:produce':
        return this.#existing(target.roomId).produce(socketId, input as never);
      case 'media:producer:pause':
      case 'media:producer:resume':
        await this.#existing(target.roomId).setProducerPaused(socketId, input.producerId as string, name === 'media:producer:pause');
        return null;
      case 'media:producer:close':
        await this.#existing(target.roomId).closeProducer(socketId, input.producerId as string);
        return null;
      case 'media:consume':
        return this.#existing(target.roomId).consume(socketId, input as never);
      case 'media:consumer:pause':
      case 'media:consumer:resume':
        await this.#existing(target.roomId).setConsumerPaused(socketId, input.consumerId as string, name === 'media:consumer:pause');
        return null;
      case 'media:consumer:layers':
        await this.#existing(target.roomId).setConsumerLayers(socketId, input.consumerId as string, input.spatialLayer as number, input.temporalLayer as number | undefined);
        return null;
      default: {
        const never: never = name;
        throw new AppError('VALIDATION_FAILED', `unknown media request ${String(never)}`);
      }
    }
  }

  /** A connection left the room or disconnected: its media ends. */
  leave(roomId: string, socketId: string): void {
    this.room(roomId)?.leave(socketId);
  }

  /** Counts for the metrics and /readyz. */
  counts(): { workers: number; routers: number; peers: number; transports: number; producers: number; consumers: number } {
    let peers = 0;
    let transports = 0;
    let producers = 0;
    let consumers = 0;
    for (const room of this.#rooms.values()) {
      for (const peer of room.peers()) {
        peers++;
        transports += peer.transports.size;
        producers += peer.producers.size;
        consumers += peer.consumers.size;
      }
    }
    return { workers: this.pool.size, routers: this.#rooms.size, peers, transports, producers, consumers };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const timer of this.#emptyTimers.values()) clearTimeout(timer);
    this.#emptyTimers.clear();
    await Promise.allSettled([...this.#creating.values()]);
    for (const room of [...this.#rooms.values()]) room.close();
    this.#rooms.clear();
    await this.pool.close();
    this.removeAllListeners();
  }
}
