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
import type { ServerToClientEvents, SessionEndReason } from '../protocol/realtime';
import { RoomRegistry, roomName } from '../rooms/CaseRoom';
import { leaveRoom, registerRoomHandlers, type DurableSync, type RoomHandlerDeps } from '../rooms/handlers';
import { MemoryRoomState, RedisRoomState, type RoomStateStore } from '../rooms/state';
import { Dispatcher, type SocketState } from './dispatch';
import { sessionRoomOf, SocketSessions, type Validation } from './socketSession';

export interface RealtimeOptions {
  /** Origins allowed to open a socket (browsers always send Origin). */
  allowedOrigins: string[];
  redisUrl?: string;
  sessionAbsoluteMs: number;
  clock: () => Date;
  roomGraceMs?: number;
}

export interface Realtime {
  io: Server;
  nodeId: string;
  rooms: RoomRegistry;
  close(): Promise<void>;
}

/** Delay between telling a client its session ended and closing its sockets. */
const DISCONNECT_AFTER_MS = 250;

type SocketWithSession = Socket & { request: IncomingMessage & { session?: Record<string, unknown>; sessionID?: string } };

const REASON_BY_VALIDATION: Record<Exclude<Validation, { ok: true }>['reason'], SessionEndReason> = {
  expired: 'expired',
  revoked: 'revoked',
  stopped: 'revoked',
};

async function connectRedis(url: string, logger: Logger, role: string): Promise<RedisClientType> {
  const client = createClient({ url, socket: { reconnectStrategy: (retries) => Math.min(50 + retries * 100, 2000) } }) as RedisClientType;
  // Without an error listener a dropped connection would crash the process.
  client.on('error', (err: Error) => logger.warn({ role, err: { message: err.message } }, 'redis connection error'));
  await client.connect();
  return client;
}

export type DurableFactory = (app: App) => DurableSync & { register(socket: Socket, state: SocketState, deps: RoomHandlerDeps): void };

export async function createRealtime(httpsServer: https.Server, app: App, durable: DurableFactory, logger: Logger, options: RealtimeOptions): Promise<Realtime> {
  const nodeId = randomBytes(6).toString('hex');
  const log = logger.child({ module: 'realtime', nodeId });
  const io = new Server(httpsServer, {
    path: '/socket.io',
    serveClient: false,
    // 1 MiB bounds one event (an annotation of 10,000 points is about 300 KB).
    maxHttpBufferSize: 1024 * 1024,
    allowRequest: (req, callback) => {
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

  const sessions = new SocketSessions(app.store.sessions, app.identity, options.sessionAbsoluteMs, options.clock);
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

  io.on('connection', (socket) => {
    const state = (socket.data as { state: SocketState }).state;
    app.metrics.sockets.inc();
    void socket.join([state.identity.sessionRoom, state.identity.userRoom]);
    registerRoomHandlers(socket, state, deps);
    durableStreams.register(socket, state, deps);

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

  let closed = false;
  return {
    io,
    nodeId,
    rooms,
    async close() {
      if (closed) return;
      closed = true;
      app.identity.off('sessionsEnded', onEnded);
      app.converter.off('progress', onProgress);
      app.chat.off('message', onChat);
      app.annotations.off('ops', onOps);
      io.disconnectSockets(true);
      // Disconnect handlers run now and leave their rooms; let them finish while Redis is up.
      while (pendingLeaves.size > 0) await Promise.allSettled([...pendingLeaves]);
      await rooms.close();
      await new Promise<void>((resolve) => {
        io.close(() => resolve());
      }).catch(() => undefined);
      for (const client of redisClients) await client.quit().catch(() => client.destroy());
    },
  };
}
