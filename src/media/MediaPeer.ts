// MediaPeer: one connection's media in one room. It owns its WebRTC transports, and through them
// its producers and consumers; a peer may only act on objects it owns (lookups are by this peer's
// maps, so another peer's id is simply unknown). close() is idempotent and cascades.
import { EventEmitter } from 'node:events';
import { AppError } from '../errors';
import type { MediaLimits, MediaSource } from '../protocol/media';
import type { Mediasoup } from './mediasoup';

type WebRtcTransport = Mediasoup.types.WebRtcTransport;
type Producer<T extends Mediasoup.types.AppData = Mediasoup.types.AppData> = Mediasoup.types.Producer<T>;
type Consumer = Mediasoup.types.Consumer;

export interface PeerIdentity {
  socketId: string;
  userId: string;
  name: string;
  role: string;
  siteId: string;
  ip: string | null;
  userAgent: string | null;
}

export type ProducerMeta = {
  source: MediaSource;
  socketId: string;
  userId: string;
  name: string;
  /** When the producer started (ms since epoch): media.stop records its duration. */
  startedAt: number;
};

interface MediaPeerEvents {
  /** A producer of this peer closed (by the client, or with the peer). */
  producerClosed: [Producer<ProducerMeta>];
  closed: [];
}

export class MediaPeer extends EventEmitter<MediaPeerEvents> {
  readonly transports = new Map<string, WebRtcTransport>();
  readonly producers = new Map<string, Producer<ProducerMeta>>();
  readonly consumers = new Map<string, Consumer>();
  readonly joinedAt = Date.now();
  #closed = false;

  constructor(
    readonly identity: PeerIdentity,
    readonly limits: MediaLimits,
  ) {
    super();
  }

  get closed(): boolean {
    return this.#closed;
  }

  transport(id: string): WebRtcTransport {
    const t = this.transports.get(id);
    if (!t || t.closed) throw new AppError('NOT_FOUND', 'No such transport on this connection.');
    return t;
  }

  producer(id: string): Producer<ProducerMeta> {
    const p = this.producers.get(id);
    if (!p || p.closed) throw new AppError('NOT_FOUND', 'No such producer on this connection.');
    return p;
  }

  consumer(id: string): Consumer {
    const c = this.consumers.get(id);
    if (!c || c.closed) throw new AppError('NOT_FOUND', 'No such consumer on this connection.');
    return c;
  }

  assertCanAdd(kind: 'transport' | 'producer' | 'consumer'): void {
    if (this.#closed) throw new AppError('CONFLICT', 'Media for this connection has ended; join again.');
    const [count, limit] =
      kind === 'transport'
        ? [this.transports.size, this.limits.transportsPerPeer]
        : kind === 'producer'
          ? [this.producers.size, this.limits.producersPerPeer]
          : [this.consumers.size, this.limits.consumersPerPeer];
    if (count >= limit) throw new AppError('LIMIT_REACHED', `At most ${limit} ${kind}s per connection.`);
  }

  addTransport(transport: WebRtcTransport): void {
    this.transports.set(transport.id, transport);
    transport.observer.once('close', () => this.transports.delete(transport.id));
  }

  addProducer(producer: Producer<ProducerMeta>): void {
    this.producers.set(producer.id, producer);
    producer.observer.once('close', () => {
      this.producers.delete(producer.id);
      this.emit('producerClosed', producer);
    });
  }

  addConsumer(consumer: Consumer): void {
    this.consumers.set(consumer.id, consumer);
    consumer.observer.once('close', () => this.consumers.delete(consumer.id));
  }

  /** Closes every transport (which closes their producers and consumers). Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const t of [...this.transports.values()]) t.close();
    this.transports.clear();
    this.emit('closed');
    this.removeAllListeners();
  }
}
