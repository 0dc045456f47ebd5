// Socket events of a case room: join/leave, presence state, presenter, viewport and pointer.
// Each handler is small and goes through the Dispatcher (schema, session, permission, rate).
import type { Socket } from 'socket.io';
import type { AuditService } from '../audit/service';
import { AppError, NotFoundError } from '../errors';
import { requireAuthorized } from '../identity/authorize';
import type { Store } from '../store/types';
import type { Dispatcher, SocketState } from '../realtime/dispatch';
import {
  caseOnlySchema,
  handoverSchema,
  joinSchema,
  pointerSchema,
  presenceStateSchema,
  viewportSchema,
  type JoinSnapshot,
  type Member,
  type Presenter,
  type Viewport,
} from '../protocol/realtime';
import { roomName, type RoomRegistry } from './CaseRoom';

/** Quiet time after the presenter's last viewport update before it is sent again, reliably. */
export const VIEWPORT_SETTLE_MS = 300;

export interface DurableSync {
  /** Missed chat after `afterSeq` (all when undefined), with the latest seq. */
  chatSince(state: SocketState, caseId: string, afterSeq: number | undefined): Promise<{ messages: unknown[]; latestSeq: number }>;
  /** Missed annotation ops after `afterSeq`; on a first join (undefined) the current annotations. */
  annotationsSince(state: SocketState, caseId: string, afterSeq: number | undefined): Promise<{ ops: unknown[]; annotations: unknown[] | null; latestSeq: number }>;
}

export interface RoomHandlerDeps {
  store: Store;
  audit: AuditService;
  rooms: RoomRegistry;
  dispatcher: Dispatcher;
  durable: DurableSync;
  /** Roles that may take the presenter role themselves (a clinician, per the product). */
  presenterRoles: readonly string[];
  /** Ends a connection's audio and video in a room it leaves. */
  mediaLeave?: (caseId: string, socketId: string) => unknown;
}

function auditActor(state: SocketState, socket: Socket) {
  return { userId: state.identity.actor.userId, role: state.identity.actor.role, ip: socket.handshake.address ?? null, userAgent: (socket.handshake.headers['user-agent'] ?? '').slice(0, 256) || null };
}

export async function leaveRoom(deps: RoomHandlerDeps, socket: Socket, state: SocketState, caseId: string, reason: 'leave' | 'disconnect'): Promise<void> {
  const siteId = state.rooms.get(caseId);
  if (!siteId) return;
  state.rooms.delete(caseId);
  await socket.leave(roomName(caseId));
  await deps.mediaLeave?.(caseId, socket.id);
  await deps.rooms.get(caseId)?.remove(socket.id);
  await deps.audit.record({ siteId, type: 'room.leave', action: 'E', actor: auditActor(state, socket), objects: [{ type: 'case', id: caseId }], details: { reason } });
}

export function registerRoomHandlers(socket: Socket, state: SocketState, deps: RoomHandlerDeps): void {
  const { dispatcher, rooms, store } = deps;

  dispatcher.on(socket, state, 'room:join', { schema: joinSchema, action: null, rate: 'join', joinsRoom: true }, async ({ identity }, input): Promise<JoinSnapshot> => {
    const actor = identity.actor;
    const record = await store.cases.findById(actor.siteId, input.caseId);
    if (!record) throw new NotFoundError();
    requireAuthorized(actor, 'case.read', { siteId: record.siteId });
    const room = await rooms.getOrCreate(record.id, record.siteId);
    if (!state.rooms.has(record.id)) {
      state.rooms.set(record.id, record.siteId);
      await socket.join(roomName(record.id));
      // case.read was authorised above, which no patient (follow-up guest) session passes.
      const member: Member = { socketId: socket.id, userId: actor.userId, name: identity.name, role: actor.role as Member['role'], state: 'active', joinedAt: new Date().toISOString() };
      await room.add(member);
      await deps.audit.record({ siteId: record.siteId, type: 'room.join', action: 'E', actor: auditActor(state, socket), objects: [{ type: 'case', id: record.id }] });
    }
    const [members, presenter, viewport, chat, annotations] = await Promise.all([
      rooms.state.members(record.id),
      rooms.state.presenter(record.id),
      rooms.state.viewport(record.id),
      deps.durable.chatSince(state, record.id, input.lastChatSeq),
      deps.durable.annotationsSince(state, record.id, input.lastAnnotationSeq),
    ]);
    return {
      caseId: record.id,
      members: members.map(({ nodeId: _n, seenAt: _s, ...m }) => m),
      presenter,
      viewport,
      chat: chat.messages,
      latestChatSeq: chat.latestSeq,
      annotationOps: annotations.ops,
      annotations: annotations.annotations,
      latestAnnotationSeq: annotations.latestSeq,
    };
  });

  dispatcher.on(socket, state, 'room:leave', { schema: caseOnlySchema, action: 'case.read', rate: 'join' }, async (_ctx, input) => {
    await leaveRoom(deps, socket, state, input.caseId, 'leave');
    return null;
  });

  dispatcher.on(socket, state, 'presence:state', { schema: presenceStateSchema, action: 'case.read', rate: 'read' }, async (_ctx, input) => {
    await rooms.get(input.caseId)?.setState(socket.id, input.state);
    return null;
  });

  const mustRoom = (caseId: string) => {
    const room = rooms.get(caseId);
    if (!room) throw new AppError('CONFLICT', 'The room is closing; join again.');
    return room;
  };

  dispatcher.on(socket, state, 'presenter:take', { schema: caseOnlySchema, action: 'case.read', rate: 'write' }, async ({ identity }, input): Promise<Presenter> => {
    if (!deps.presenterRoles.includes(identity.actor.role)) throw new AppError('FORBIDDEN', 'Only a clinician can take the presenter role; ask the presenter to hand it over.');
    const room = mustRoom(input.caseId);
    const current = await rooms.state.presenter(input.caseId);
    if (current?.userId === identity.actor.userId) return current;
    const next: Presenter = { userId: identity.actor.userId, name: identity.name, since: new Date().toISOString() };
    if (!(await room.swapPresenter(current?.userId ?? null, next))) throw new AppError('CONFLICT', 'The presenter changed meanwhile; try again.');
    return next;
  });

  dispatcher.on(socket, state, 'presenter:handover', { schema: handoverSchema, action: 'case.read', rate: 'write' }, async ({ identity }, input): Promise<Presenter> => {
    const room = mustRoom(input.caseId);
    const current = await rooms.state.presenter(input.caseId);
    if (current?.userId !== identity.actor.userId) throw new AppError('FORBIDDEN', 'Only the presenter can hand the role over.');
    const target = (await rooms.state.members(input.caseId)).find((m) => m.userId === input.toUserId);
    if (!target) throw new AppError('NOT_FOUND', 'That person is not in the room.');
    const next: Presenter = { userId: target.userId, name: target.name, since: new Date().toISOString() };
    if (!(await room.swapPresenter(identity.actor.userId, next))) throw new AppError('CONFLICT', 'The presenter changed meanwhile; try again.');
    return next;
  });

  dispatcher.on(socket, state, 'presenter:release', { schema: caseOnlySchema, action: 'case.read', rate: 'write' }, async ({ identity }, input) => {
    const room = mustRoom(input.caseId);
    if (!(await room.swapPresenter(identity.actor.userId, null))) throw new AppError('FORBIDDEN', 'You are not the presenter.');
    return null;
  });

  // Volatile: only the presenter's viewport is relayed; only the latest is kept (for newcomers).
  // A volatile packet is dropped when a follower's connection is still writing the previous one,
  // so the view the presenter stops at is sent once more, reliably, when the moves settle:
  // followers always end on the presenter's final view, however many moves in between were lost.
  let settle: { timer: NodeJS.Timeout; caseId: string; viewport: Viewport } | null = null;
  socket.once('disconnect', () => settle && clearTimeout(settle.timer));
  dispatcher.on(socket, state, 'viewport:update', { schema: viewportSchema, action: 'case.read', rate: 'volatile', volatile: true }, async ({ identity }, input) => {
    const presenter = await rooms.state.presenter(input.caseId);
    if (presenter?.userId !== identity.actor.userId) return null;
    const { caseId, ...rest } = input;
    const viewport = { ...rest, byUserId: identity.actor.userId, at: new Date().toISOString() };
    await rooms.state.setViewport(caseId, viewport);
    socket.volatile.to(roomName(caseId)).emit('viewport', { caseId, viewport });
    if (settle) clearTimeout(settle.timer);
    const pending = { caseId, viewport, timer: setTimeout(() => void resendSettled(pending), VIEWPORT_SETTLE_MS) };
    settle = pending;
    return null;
  });
  const resendSettled = async (pending: { caseId: string; viewport: Viewport }): Promise<void> => {
    if (settle?.viewport === pending.viewport) settle = null;
    if (!socket.connected || !state.rooms.has(pending.caseId)) return;
    // Only if it is still the room's view (the presenter may have changed meanwhile).
    const current = await rooms.state.viewport(pending.caseId).catch(() => null);
    if (!current || JSON.stringify(current) !== JSON.stringify(pending.viewport)) return;
    socket.to(roomName(pending.caseId)).emit('viewport', { caseId: pending.caseId, viewport: pending.viewport });
  };

  dispatcher.on(socket, state, 'pointer:update', { schema: pointerSchema, action: 'case.read', rate: 'volatile', volatile: true }, async ({ identity }, input) => {
    const { caseId, ...rest } = input;
    socket.volatile.to(roomName(caseId)).emit('pointer', { caseId, pointer: { ...rest, userId: identity.actor.userId, name: identity.name } });
    return null;
  });
}
