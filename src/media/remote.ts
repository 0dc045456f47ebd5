// Media across nodes: every room's media lives on one node, its media home. The first node that
// opens media for a room records itself in Redis (`cc:media:home:<roomId>`, with an expiry it
// keeps refreshing while it hosts the room); a member connected to another node has its media
// signalling forwarded there over Redis pub/sub, and sends RTP straight to the home's announced
// address. Server events of the room reach every member through the Socket.IO Redis adapter.
// A home that dies (its Redis subscription disappears) or drains gives its rooms up: members
// still connected are told `media:restart`, and their next `media:join` chooses a new home.
// Only standard parts: Redis keys with an expiry, PUBLISH/SUBSCRIBE, and the adapter.
import { randomBytes } from 'node:crypto';
import { createClient, type RedisClientType } from 'redis';
import type { Server } from 'socket.io';
import { AppError } from '../errors';
import type { Logger } from '../observability/logger';
import { isErrorCode } from '../protocol/errors';
import type { MediaRequest, MediaRequestName, MediaResponses, MediaServerEvents } from '../protocol/media';
import type { MediaSignalling } from './handlers';
import type { PeerIdentity } from './MediaPeer';
import type { MediaService, MediaTarget } from './MediaService';

/** A home that stops refreshing its claim loses it after this long. */
export const HOME_TTL_MS = 15_000;
/** How often a home refreshes its claims and every node checks the homes its members use. */
export const HOME_HEARTBEAT_MS = 2_000;
/** Longest wait for the home's answer to one forwarded request. */
const FORWARD_TIMEOUT_MS = 10_000;
/** Longest wait for Redis to acknowledge QUIT at close. */
const QUIT_WAIT_MS = 2_000;

const homeKey = (roomId: string) => `cc:media:home:${roomId}`;
const nodeChannel = (nodeId: string) => `cc:media:node:${nodeId}`;

// Compare-and-set on the claim: only the node that holds it refreshes or releases it.
const REFRESH_IF_MINE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end";
const DELETE_IF = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end";

type Wire =
  | { type: 'request'; id: string; from: string; name: MediaRequestName; peer: PeerIdentity; target: MediaTarget; input: unknown }
  | { type: 'leave'; from: string; roomId: string; socketId: string }
  | { type: 'reply'; id: string; ok: true; data: unknown }
  | { type: 'reply'; id: string; ok: false; error: { code: string; message: string } };

interface RemoteUse {
  home: string;
  broadcastRoom: string;
  /** This node's sockets using the room's media on that home. */
  sockets: Set<string>;
}

export interface MediaHomeOptions {
  redisUrl: string;
  nodeId: string;
  /** This node's media, or null when it runs none (it then only forwards). */
  local: MediaService | null;
  io: Server;
  logger: Logger;
}

export class MediaHome implements MediaSignalling {
  readonly #pending = new Map<string, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  /** Rooms used by this node's sockets whose home is another node. */
  readonly #remote = new Map<string, RemoteUse>();
  /** Peers of other nodes in rooms this node hosts, by their node: cleaned up if that node dies. */
  readonly #guests = new Map<string, Map<string, string>>();
  readonly #heartbeat: NodeJS.Timeout;
  #draining = false;
  #closed = false;

  private constructor(
    private readonly cmd: RedisClientType,
    private readonly sub: RedisClientType,
    private readonly options: MediaHomeOptions,
    private readonly log: Logger,
  ) {
    this.#heartbeat = setInterval(() => void this.#tick().catch((err: Error) => this.log.warn({ err: { message: err.message } }, 'media home heartbeat failed')), HOME_HEARTBEAT_MS);
    this.#heartbeat.unref();
  }

  static async create(options: MediaHomeOptions): Promise<MediaHome> {
    const log = options.logger.child({ module: 'media-home' });
    // Commands fail at once while Redis is unreachable (media requests answer MEDIA_UNAVAILABLE)
    // instead of queueing until it is back.
    const cmd = createClient({ url: options.redisUrl, disableOfflineQueue: true, socket: { reconnectStrategy: (retries) => Math.min(50 + retries * 100, 2000) } }) as RedisClientType;
    const sub = cmd.duplicate() as RedisClientType;
    for (const client of [cmd, sub]) client.on('error', (err: Error) => log.warn({ err: { message: err.message } }, 'redis connection error'));
    await cmd.connect();
    await sub.connect();
    const home = new MediaHome(cmd, sub, options, log);
    await sub.subscribe(nodeChannel(options.nodeId), (message) => home.#onMessage(message));
    return home;
  }

  get nodeId(): string {
    return this.options.nodeId;
  }

  /** The node that hosts `roomId`'s media now, if any. */
  async homeOf(roomId: string): Promise<string | null> {
    return (await this.cmd.get(homeKey(roomId))) as string | null;
  }

  async handle<N extends MediaRequestName>(name: N, peer: PeerIdentity, target: MediaTarget, input: MediaRequest<N>): Promise<MediaResponses[N]> {
    if (this.#closed) throw new AppError('MEDIA_UNAVAILABLE');
    const home = await this.#resolveHome(target.roomId, name === 'media:join').catch((err: Error) => {
      this.log.warn({ err: { message: err.message } }, 'media home lookup failed');
      throw new AppError('MEDIA_UNAVAILABLE');
    });
    if (!home) throw name === 'media:join' ? new AppError('MEDIA_UNAVAILABLE') : new AppError('CONFLICT', 'Join the room media first (media:join).');
    if (home === this.nodeId) {
      if (!this.options.local) throw new AppError('MEDIA_UNAVAILABLE');
      // A member that rebuilt here after its room moved no longer depends on the old home.
      this.#forgetRemote(target.roomId, peer.socketId);
      return this.options.local.handle(name, peer, target, input);
    }
    const data = (await this.#forward(home, { type: 'request', id: randomBytes(9).toString('base64url'), from: this.nodeId, name, peer, target, input })) as MediaResponses[N];
    if (name === 'media:leave') this.#forgetRemote(target.roomId, peer.socketId);
    else this.#rememberRemote(target, home, peer.socketId);
    return data;
  }

  async leave(roomId: string, socketId: string): Promise<void> {
    const remote = this.#remote.get(roomId);
    if (remote?.sockets.has(socketId)) {
      this.#forgetRemote(roomId, socketId);
      // Fire and forget: the home answers nothing, and a home that is gone has nothing to clean.
      await this.cmd.publish(nodeChannel(remote.home), JSON.stringify({ type: 'leave', from: this.nodeId, roomId, socketId } satisfies Wire)).catch(() => 0);
      return;
    }
    this.options.local?.leave(roomId, socketId);
  }

  /**
   * The node is draining: it takes no new rooms, gives up the rooms it hosts and tells their
   * members (on every node) to rebuild, which makes another node their home.
   */
  async drain(): Promise<void> {
    this.#draining = true;
    const local = this.options.local;
    if (!local) return;
    const io = this.options.io as unknown as Server<Record<string, never>, MediaServerEvents>;
    for (const room of local.rooms()) {
      await this.#eval(DELETE_IF, homeKey(room.roomId), this.nodeId).catch(() => 0);
      io.to(room.broadcastRoom).emit('media:restart', { roomId: room.roomId, reason: 'moved' });
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#heartbeat);
    for (const [id, pending] of this.#pending) {
      clearTimeout(pending.timer);
      pending.reject(new AppError('MEDIA_UNAVAILABLE'));
      this.#pending.delete(id);
    }
    // Give up this node's rooms at once rather than after the expiry.
    for (const room of this.options.local?.rooms() ?? []) await this.#eval(DELETE_IF, homeKey(room.roomId), this.nodeId).catch(() => 0);
    // QUIT waits for Redis; a Redis that is away must not hold up the node's shutdown.
    for (const client of [this.sub, this.cmd]) {
      if (!client.isOpen) continue;
      if (!client.isReady) {
        client.destroy();
        continue;
      }
      const gaveUp = new Promise<never>((_resolve, reject) => setTimeout(() => reject(new Error('quit timed out')), QUIT_WAIT_MS).unref());
      await Promise.race([client.quit(), gaveUp]).catch(() => client.destroy());
    }
  }

  /** Finds the room's home; with `claim`, becomes it when there is none (first media:join). */
  async #resolveHome(roomId: string, claim: boolean): Promise<string | null> {
    const current = await this.homeOf(roomId);
    if (current) {
      if (current === this.nodeId || (await this.#alive(current))) return current;
      // Its node is gone (no subscriber on its channel): release the stale claim.
      await this.#eval(DELETE_IF, homeKey(roomId), current);
    }
    if (!claim || this.#draining || !this.options.local) return claim ? this.homeOf(roomId) : null;
    const won = await this.cmd.set(homeKey(roomId), this.nodeId, { NX: true, PX: HOME_TTL_MS });
    if (won === 'OK') {
      this.log.info({ roomId }, 'media home: this node hosts the room');
      return this.nodeId;
    }
    return this.homeOf(roomId);
  }

  async #alive(nodeId: string): Promise<boolean> {
    const reply = (await this.cmd.sendCommand(['PUBSUB', 'NUMSUB', nodeChannel(nodeId)])) as [string, number];
    return Number(reply[1]) > 0;
  }

  #eval(script: string, key: string, ...args: string[]): Promise<unknown> {
    return this.cmd.sendCommand(['EVAL', script, '1', key, ...args]);
  }

  #forward(home: string, message: Extract<Wire, { type: 'request' }>): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(message.id);
        reject(new AppError('MEDIA_UNAVAILABLE'));
      }, FORWARD_TIMEOUT_MS);
      this.#pending.set(message.id, { resolve, reject, timer });
      this.cmd.publish(nodeChannel(home), JSON.stringify(message)).then(
        (receivers) => {
          if (Number(receivers) > 0) return;
          // Nobody listens on the home's channel: it died since we looked it up.
          clearTimeout(timer);
          this.#pending.delete(message.id);
          void this.#eval(DELETE_IF, homeKey(message.target.roomId), home).catch(() => 0);
          reject(new AppError('MEDIA_UNAVAILABLE'));
        },
        () => {
          clearTimeout(timer);
          this.#pending.delete(message.id);
          reject(new AppError('MEDIA_UNAVAILABLE'));
        },
      );
    });
  }

  #onMessage(raw: string): void {
    let message: Wire;
    try {
      message = JSON.parse(raw) as Wire;
    } catch {
      return;
    }
    if (message.type === 'reply') {
      const pending = this.#pending.get(message.id);
      if (!pending) return;
      this.#pending.delete(message.id);
      clearTimeout(pending.timer);
      if (message.ok) pending.resolve(message.data);
      else pending.reject(new AppError(isErrorCode(message.error.code) ? message.error.code : 'INTERNAL', message.error.message));
      return;
    }
    if (message.type === 'leave') {
      this.#guests.get(message.from)?.delete(message.socketId);
      this.options.local?.leave(message.roomId, message.socketId);
      return;
    }
    void this.#serve(message);
  }

  /** Answers a request forwarded by another node (the request was authorised there). */
  async #serve(message: Extract<Wire, { type: 'request' }>): Promise<void> {
    let reply: Wire;
    try {
      const local = this.options.local;
      // Only a room this node still hosts: a claim that moved meanwhile makes the caller rebuild.
      if (!local || (message.name !== 'media:join' && !local.room(message.target.roomId))) throw new AppError('MEDIA_UNAVAILABLE');
      if (message.name === 'media:join' && (this.#draining || (await this.homeOf(message.target.roomId)) !== this.nodeId)) throw new AppError('MEDIA_UNAVAILABLE');
      const data = await local.handle(message.name, message.peer, message.target, message.input as never);
      let guests = this.#guests.get(message.from);
      if (!guests) this.#guests.set(message.from, (guests = new Map()));
      if (message.name === 'media:leave') guests.delete(message.peer.socketId);
      else guests.set(message.peer.socketId, message.target.roomId);
      reply = { type: 'reply', id: message.id, ok: true, data: data ?? null };
    } catch (err) {
      const known = err instanceof AppError ? err : null;
      if (!known) this.log.error({ request: message.name, err: { message: (err as Error).message } }, 'forwarded media request failed');
      reply = { type: 'reply', id: message.id, ok: false, error: known ? { code: known.code, message: known.message } : { code: 'INTERNAL', message: new AppError('INTERNAL').message } };
    }
    await this.cmd.publish(nodeChannel(message.from), JSON.stringify(reply)).catch(() => 0);
  }

  #rememberRemote(target: MediaTarget, home: string, socketId: string): void {
    let use = this.#remote.get(target.roomId);
    if (!use || use.home !== home) this.#remote.set(target.roomId, (use = { home, broadcastRoom: target.broadcastRoom, sockets: new Set() }));
    use.sockets.add(socketId);
  }

  #forgetRemote(roomId: string, socketId: string): void {
    const use = this.#remote.get(roomId);
    if (!use) return;
    use.sockets.delete(socketId);
    if (use.sockets.size === 0) this.#remote.delete(roomId);
  }

  async #tick(): Promise<void> {
    if (this.#closed) return;
    const io = this.options.io as unknown as Server<Record<string, never>, MediaServerEvents>;
    // 1. Keep the claims of the rooms this node hosts. A claim found missing (Redis lost it) is
    //    taken again; one that another node holds by now means two homes: this one gives way.
    if (!this.#draining) {
      for (const room of this.options.local?.rooms() ?? []) {
        if (room.closed) continue;
        if (Number(await this.#eval(REFRESH_IF_MINE, homeKey(room.roomId), this.nodeId, String(HOME_TTL_MS))) === 1) continue;
        if ((await this.cmd.set(homeKey(room.roomId), this.nodeId, { NX: true, PX: HOME_TTL_MS })) === 'OK') continue;
        this.log.warn({ roomId: room.roomId }, 'media home: another node took the room; its members rebuild there');
        io.to(room.broadcastRoom).emit('media:restart', { roomId: room.roomId, reason: 'moved' });
        room.close();
      }
    }
    // 2. Homes of rooms this node's members use: one that died loses its claim, and those members
    //    rebuild (their next media:join picks a new home).
    const homes = new Set([...this.#remote.values()].map((use) => use.home));
    for (const home of homes) {
      if (await this.#alive(home)) continue;
      this.log.warn({ home }, 'media home gone: members rebuild their media elsewhere');
      for (const [roomId, use] of [...this.#remote]) {
        if (use.home !== home) continue;
        this.#remote.delete(roomId);
        await this.#eval(DELETE_IF, homeKey(roomId), home);
        for (const socketId of use.sockets) io.local.to(socketId).emit('media:restart', { roomId, reason: 'moved' });
      }
    }
    // 3. Guests from a node that died: their peers here would never leave otherwise.
    for (const [node, guests] of [...this.#guests]) {
      if (guests.size === 0) {
        this.#guests.delete(node);
        continue;
      }
      if (await this.#alive(node)) continue;
      this.#guests.delete(node);
      for (const [socketId, roomId] of guests) this.options.local?.leave(roomId, socketId);
    }
  }
}
