// Socket.IO plumbing: attaches to the HTTPS server (same origin, path /socket.io), authenticates
// the handshake from the session cookie, enforces the Origin allowlist, picks the adapter (Redis
// when REDIS_URL is set), disconnects the sockets of ended sessions on every node, and hands each
// connection to the room handlers. No domain logic lives here.
import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type https from 'node:https';
import { createAdapter } from '@socket.io/redis-adapter';
import type { RequestHandler } from 'express';
import { createClient, type RedisClientType } from 'redis';
import { Server, type Socket } from 'socket.io';
import type { App } from '../app';
import type { Logger } from '../observability/logger';
import { caseRoomResolver, recordMediaAudit, registerMediaHandlers, type MediaSignalling, type MediaTargetResolver } from '../media/handlers';
import { MediaService, type MediaConfig } from '../media/MediaService';
import { MediaHome } from '../media/remote';
import type { MediaServerEvents } from '../protocol/media';
import { ERROR_CODES } from '../protocol/errors';
import type { ServerToClientEvents, SessionEndReason } from '../protocol/realtime';
import { RoomRegistry, roomName } from '../rooms/CaseRoom';
import { leaveRoom, registerRoomHandlers, type DurableSync, type RoomHandlerDeps } from '../rooms/handlers';
import { MemoryRoomState, RedisRoomState, type RoomStateStore } from '../rooms/state';
import { Dispatcher, type SocketState } from './dispatch';
import { attachFollowUps } from '../followups/handlers';
import { sessionRoomOf, SocketSessions, type Validation } from './socketSession';

export interface RealtimeOptions {
  /** Origins allowed to open a socket (browsers always send Origin). */
  allowedOrigins: string[];
  redisUrl?: string;
  sessionAbsoluteMs: number;
  clock: () => Date;
  roomGraceMs?: number;
  /** Audio/video (mediasoup) on this node; null or absent: media requests answer MEDIA_UNAVAILABLE. */
  media?: MediaConfig | null;
}

export interface Realtime {
  io: Server;
  nodeId: string;
  rooms: RoomRegistry;
  /** This node's media (worker pool and media rooms), when enabled. */
  media: MediaService | null;
  /** With REDIS_URL: which node hosts each room's media, and the forwarding to it. */
  mediaHome: MediaHome | null;
  /** Decide which rooms a socket may use media in; follow-up calls add theirs. */
  mediaResolvers: MediaTargetResolver[];
  /**
   * Graceful stop (SIGTERM): refuses new sockets and room joins, tells this node's clients to
   * reconnect elsewhere (`server:draining`), waits until they have gone or `graceMs` passed,
   * then closes. Events already received are answered before the store may close.
   */
  drain(graceMs: number): Promise<void>;
  close(): Promise<void>;
}

/** Delay between telling a client its session ended and closing its sockets. */
const DISCONNECT_AFTER_MS = 250;
/** Longest wait, at close, for events already being handled to be answered. */
const IN_FLIGHT_WAIT_MS = 10_000;
/** Longest wait, at close, for Redis to take this node's last writes before its connections are dropped. */
const REDIS_SHUTDOWN_WAIT_MS = 5_000;

/** A broadcast operator seen without its typed event map. */
type Emitter = { emit(event: string, payload: unknown): boolean };

type SocketWithSession = Socket & { request: IncomingMessage & { session?: Record<string, unknown>; sessionID?: string } };

const REASON_BY_VALIDATION: Record<Exclude<Validation, { ok: true }>['reason'], SessionEndReason> = {
  expired: 'expired',
  revoked: 'revoked',
  stopped: 'revoked',
};

async function connectRedis(url: string, logger: Logger, role: string): Promise<RedisClientType> {
  // Room-state commands are awaited by the event handlers: while Redis is down they must fail at
  // once (a typed STORE_UNAVAILABLE answer) instead of queueing until it returns, which would
  // leave clients without an answer and a closing node waiting for ever. The adapter's pub/sub
  // clients keep their queue: the adapter does not await its publishes.
  const client = createClient({ url, disableOfflineQueue: role === 'state', socket: { reconnectStrategy: (retries) => Math.min(50 + retries * 100, 2000) } }) as RedisClientType;
  // Without an error listener a dropped connection would crash the process.
  client.on('error', (err: Error) => logger.warn({ role, err: { message: err.message } }, 'redis connection error'));
  await client.connect();
  return client;
}

export type DurableFactory = (app: App) => DurableSync & { register(socket: Socket, state: SocketState, deps: RoomHandlerDeps): void };

export async function createRealtime(httpsServer: https.Server, app: App, durable: DurableFactory, logger: Logger, options: RealtimeOptions): Promise<Realtime> {
  const nodeId = randomBytes(6).toString('hex');
  const log = logger.child({ module: 'realtime', nodeId });
  let draining = false;
  const io = new Server(httpsServer, {
    path: '/socket.io',
    serveClient: false,
    // 1 MiB bounds one event (an annotation of 10,000 points is about 300 KB).
    maxHttpBufferSize: 1024 * 1024,
    allowRequest: (req, callback) => {
      // A draining node takes no new sockets: the client retries and the load balancer, which
      // already sees /readyz failing, sends it to another node.
      if (draining) return callback('SERVER_DRAINING', false);
      const origin = req.headers.origin;
      // Browsers always send Origin: a cross-site page cannot ride the session cookie. Clients
      // without one (native apps, tests) are not browsers and cannot be driven by another site.
      callback(null, origin === undefined || options.allowedOrigins.includes(origin));
    },
  });

  let redisClients: RedisClientType[] = [];
  let state: RoomStateStore;
  if (options.redisUrl) {
    const pub = await connectRedis(options.redisUrl, log, 'pub');
    const sub = await connectRedis(options.redisUrl, log, 'sub');
    const cmd = await connectRedis(options.redisUrl, log, 'state');
    redisClients = [pub, sub, cmd];
    io.adapter(createAdapter(pub, sub));
    state = new RedisRoomState(cmd);
    app.readinessChecks.push({ name: 'redis', check: async () => cmd.isReady && (await cmd.ping()) === 'PONG' });
  } else {
    state = new MemoryRoomState();
  }

  const sessions = new SocketSessions(app.store.sessions, app.identity, options.sessionAbsoluteMs, options.clock, app.followUps);
  const rooms = new RoomRegistry(io as never, state, nodeId, options.roomGraceMs);
  const endSession = (socket: Socket, reason: SessionEndReason) => {
    socket.emit('session:ended', { reason });
    socket.disconnect(true);
  };
  const dispatcher = new Dispatcher(sessions, log, (socket, reason) => endSession(socket, REASON_BY_VALIDATION[reason]), app.metrics);
  app.metrics.roomCount = () => rooms.size;
  const durableStreams = durable(app);
  const deps: RoomHandlerDeps = {
    store: app.store,
    audit: app.audit,
    rooms,
    dispatcher,
    durable: durableStreams,
    presenterRoles: ['clinician', 'site_admin'],
  };

  // Media: the notifier goes through io, so with the Redis adapter it reaches members on any node.
  const mediaIo = io as unknown as Server<Record<string, never>, MediaServerEvents>;
  const media = options.media
    ? await MediaService.create(
        options.media,
        {
          toRoom: (room, event, payload) => void (mediaIo.to(room) as unknown as Emitter).emit(event, payload),
          toSocket: (socketId, event, payload) => void (mediaIo.to(socketId) as unknown as Emitter).emit(event, payload),
        },
        log,
        options.clock,
      )
    : null;
  const mediaResolvers: MediaTargetResolver[] = [caseRoomResolver];
  if (media) {
    media.on('audit', (event) => void recordMediaAudit(app.audit, event).catch((err: Error) => log.warn({ err: { message: err.message } }, 'media audit failed')));
    app.readinessChecks.push({ name: 'mediasoup', check: async () => media.pool.healthy() });
    app.metrics.mediaCounts = () => media.counts();
    app.metrics.mediaWorkerDeaths = () => media.pool.deaths;
  }
  // Several nodes: each room's media lives on one node, its media home; members connected to
  // other nodes have their signalling forwarded there (src/media/remote.ts).
  const mediaHome = options.redisUrl ? await MediaHome.create({ redisUrl: options.redisUrl, nodeId, local: media, io, logger: log }) : null;
  const signalling: MediaSignalling | null = mediaHome ?? media;
  deps.mediaLeave = (caseId, socketId) => signalling?.leave(caseId, socketId);
  // Patient follow-ups: patient sockets, staff joining calls, and the media rooms of calls.
  const followUpSockets = attachFollowUps({ io, followUps: app.followUps, dispatcher, media: () => signalling, logger: log });
  mediaResolvers.push(followUpSockets.resolver);

  io.engine.use(app.sessionMiddleware as unknown as RequestHandler);
  io.use((socket, next) => {
    const req = (socket as SocketWithSession).request;
    sessions.fromHandshake(req.sessionID, req.session as never).then(
      (result) => {
        if (!result) return next(Object.assign(new Error('UNAUTHENTICATED'), { data: { code: 'UNAUTHENTICATED' } }));
        if (!result.ok) return next(Object.assign(new Error(result.reason === 'stopped' ? 'ACCESS_STOPPED' : 'SESSION_EXPIRED'), { data: { code: result.reason === 'stopped' ? 'ACCESS_STOPPED' : 'SESSION_EXPIRED' } }));
        (socket.data as { state?: SocketState }).state = { identity: result.identity, rooms: new Map() };
        next();
      },
      (err: Error) => {
        log.error({ err: { message: err.message } }, 'socket handshake failed');
        next(Object.assign(new Error('INTERNAL'), { data: { code: 'INTERNAL' } }));
      },
    );
  });

  // Leaves still writing to Redis and the store; close() waits for them before quitting Redis.
  const pendingLeaves = new Set<Promise<unknown>>();
  // Acknowledged events still being handled: close() waits for their answers, so a write that
  // was received before the shutdown is persisted and acknowledged, never cut off half-way.
  let inFlight = 0;
  const inFlightSettled: (() => void)[] = [];
  const settleOne = () => {
    inFlight -= 1;
    if (inFlight === 0) for (const resolve of inFlightSettled.splice(0)) resolve();
  };

  io.on('connection', (socket) => {
    const state = (socket.data as { state: SocketState }).state;
    app.metrics.sockets.inc();
    socket.use((packet, next) => {
      const last = packet[packet.length - 1];
      // Only events someone answers are counted (an unknown event name is never acknowledged).
      if (typeof last !== 'function' || socket.listeners(packet[0]).length === 0) return next();
      const ack = last as (answer: unknown) => void;
      if (draining && packet[0] === 'room:join') {
        ack({ ok: false, error: { code: 'SERVER_DRAINING', message: ERROR_CODES.SERVER_DRAINING.message } });
        return;
      }
      inFlight += 1;
      let answered = false;
      packet[packet.length - 1] = (answer: unknown) => {
        if (!answered) {
          answered = true;
          settleOne();
        }
        ack(answer);
      };
      next();
      // Socket.IO drops an event that arrives as its socket disconnects (before the handler runs);
      // such an event will never be answered and must not hold up the shutdown.
      process.nextTick(() => {
        if (!socket.connected && !answered) {
          answered = true;
          settleOne();
        }
      });
    });
    void socket.join([state.identity.sessionRoom, state.identity.userRoom]);
    // A patient (follow-up guest) socket gets no case-room handler at all, only its call's.
    const patient = state.identity.actor.role === 'patient';
    if (!patient) registerRoomHandlers(socket, state, deps);
    registerMediaHandlers(socket, state, { dispatcher, media: signalling, resolvers: mediaResolvers });
    if (!patient) durableStreams.register(socket, state, deps);
    followUpSockets.register(socket, state);

    // At the session's deadline, re-read it: expired means the socket closes now, not later.
    let timer: NodeJS.Timeout | null = null;
    const schedule = () => {
      const wait = Math.max(0, state.identity.deadline - options.clock().getTime()) + 50;
      timer = setTimeout(() => {
        sessions.validate(state.identity, true).then(
          (v) => {
            if (!v.ok) return endSession(socket, REASON_BY_VALIDATION[v.reason]);
            state.identity = v.identity;
            schedule();
          },
          () => schedule(),
        );
      }, Math.min(wait, 2 ** 31 - 1));
      timer.unref();
    };
    schedule();

    socket.on('disconnect', () => {
      app.metrics.sockets.dec();
      if (timer) clearTimeout(timer);
      dispatcher.forget(socket.id);
      for (const caseId of [...state.rooms.keys()]) {
        const leaving = leaveRoom(deps, socket, state, caseId, 'disconnect')
          .catch((err: Error) => log.warn({ err: { message: err.message } }, 'leave on disconnect failed'))
          .finally(() => pendingLeaves.delete(leaving));
        pendingLeaves.add(leaving);
      }
    });
  });

  // Ended sessions lose their sockets on every node (the adapter carries the disconnect).
  const onEnded = ({ sids, reason }: { sids: string[]; reason: SessionEndReason }) => {
    for (const sid of sids) {
      const room = sessionRoomOf(sid);
      (io as unknown as Server<Record<string, never>, ServerToClientEvents>).in(room).emit('session:ended', { reason });
      // A moment later, so that answers to events already in flight still reach the client.
      setTimeout(() => io.in(room).disconnectSockets(true), DISCONNECT_AFTER_MS).unref();
    }
  };
  app.identity.on('sessionsEnded', onEnded);

  // Conversion progress reaches everyone in the case room.
  const onProgress = ({ material }: { material: { caseId: string; id: string } }) => {
    app.cases.materialToPublic(material as never).then(
      (pub) => (io as unknown as Server<Record<string, never>, ServerToClientEvents>).to(roomName(material.caseId)).emit('material:progress', { caseId: material.caseId, material: pub }),
      () => undefined,
    );
  };
  app.converter.on('progress', onProgress);
  // Durable writes are broadcast once persisted, from the node that wrote them, to every node.
  const toRoom = (caseId: string) => (io as unknown as Server<Record<string, never>, ServerToClientEvents>).to(roomName(caseId));
  const onChat = ({ caseId, message }: { caseId: string; message: unknown }) => toRoom(caseId).emit('chat:message', { caseId, message });
  const onOps = ({ caseId, ops }: { caseId: string; ops: unknown[] }) => {
    for (const op of ops) toRoom(caseId).emit('annotation:op', { caseId, op });
  };
  app.chat.on('message', onChat);
  app.annotations.on('ops', onOps);
  // Only the fact is sent: the documents' text is read through the authorised, audited route.
  const onDocument = ({ caseId, kind }: { caseId: string; kind: 'order' | 'report' }) => toRoom(caseId).emit('documents:changed', { caseId, kind });
  app.radiology.on('document', onDocument);

  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    draining = true;
    app.identity.off('sessionsEnded', onEnded);
    followUpSockets.close();
    app.converter.off('progress', onProgress);
    app.chat.off('message', onChat);
    app.annotations.off('ops', onOps);
    app.radiology.off('document', onDocument);
    // Redis away: nothing can be written there now (this node's members age out by themselves),
    // and commands queued for a reconnect (leaves, the adapter's unsubscribe) would hold the
    // shutdown forever. Dropping the connections makes them fail at once: now if Redis is
    // already gone, or when it has not answered in time.
    const dropRedis = (why: string) => {
      if (!redisClients.some((client) => client.isOpen)) return;
      log.warn({ why }, 'redis connections dropped at shutdown: room state there is left to expire');
      for (const client of redisClients) if (client.isOpen) client.destroy();
    };
    if (redisClients.some((client) => !client.isReady)) dropRedis('unreachable');
    const redisWatchdog = setTimeout(() => dropRedis('no answer'), REDIS_SHUTDOWN_WAIT_MS);
    // This node's sockets only: through the Redis adapter, io.disconnectSockets() would
    // disconnect every client of every node.
    io.local.disconnectSockets(true);
    if (inFlight > 0) {
      log.info({ inFlight }, 'waiting for events in flight');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, IN_FLIGHT_WAIT_MS);
        inFlightSettled.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    // Disconnect handlers run now and leave their rooms; let them finish while Redis is up.
    while (pendingLeaves.size > 0) await Promise.allSettled([...pendingLeaves]);
    await rooms.close();
    await mediaHome?.close();
    await media?.close();
    await new Promise<void>((resolve) => {
      io.close(() => resolve());
    }).catch(() => undefined);
    for (const client of redisClients) {
      if (!client.isOpen) continue;
      if (!client.isReady) {
        client.destroy();
        continue;
      }
      // QUIT waits for Redis's answer; one that never comes must not keep the node alive.
      const gaveUp = new Promise<never>((_resolve, reject) => setTimeout(() => reject(new Error('quit timed out')), 2000).unref());
      await Promise.race([client.quit(), gaveUp]).catch(() => client.destroy());
    }
    clearTimeout(redisWatchdog);
  };
  return {
    io,
    nodeId,
    rooms,
    media,
    mediaHome,
    mediaResolvers,
    async drain(graceMs: number) {
      if (closed) return;
      draining = true;
      const local = io.local as unknown as Server<Record<string, never>, ServerToClientEvents>;
      const connected = io.of('/').sockets.size;
      log.info({ sockets: connected, graceMs }, 'draining: asking clients to reconnect to another node');
      // Rooms whose media this node hosts move first, so members on other nodes rebuild there.
      await mediaHome?.drain().catch((err: Error) => log.warn({ err: { message: err.message } }, 'media home drain failed'));
      local.emit('server:draining', { reconnect: true });
      const deadline = Date.now() + graceMs;
      // Clients leave by themselves (they reconnect through the load balancer); the ones that do
      // not are disconnected at the deadline, which a client also answers by reconnecting.
      while (io.of('/').sockets.size > 0 && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      log.info({ left: connected - io.of('/').sockets.size, remaining: io.of('/').sockets.size }, 'draining: closing');
      await close();
    },
    close,
  };
}
