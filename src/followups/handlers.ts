// Socket side of follow-ups. A patient socket may send only its four `followup:patient:*` events
// and the `media:*` signalling of its own call; anything else is refused FORBIDDEN before any
// handler runs (and no case-room handler is even registered for it). Staff sockets join and leave
// calls they host or were invited to. The call itself is a media-only room: a socket is in it
// while it is in the Socket.IO room `fc:<followUpId>`, which is what the media resolver checks,
// so ending a follow-up (socketsLeave on every node) takes media access away at once.
import type { Server, Socket } from 'socket.io';
import { AppError } from '../errors';
import type { MediaSignalling, MediaTargetResolver } from '../media/handlers';
import type { Logger } from '../observability/logger';
import { ERROR_CODES } from '../protocol/errors';
import {
  followUpRoomSchema,
  PATIENT_SOCKET_EVENTS,
  patientEmptySchema,
  patientWaitSchema,
  type ClinicianFollowUpEvents,
  type FollowUpJoinResult,
  type PatientServerEvents,
  type PatientState,
} from '../protocol/followups';
import type { Dispatcher, SocketState } from '../realtime/dispatch';
import { patientRoomOf } from '../realtime/socketSession';
import type { FollowUpRecord } from './model';
import { FollowUpService, type ClosedReason, type PatientSession } from './service';

/** Socket.IO room of a follow-up call's members (patient and staff): the media broadcast room. */
export const callRoomOf = (followUpId: string) => `fc:${followUpId}`;

/** Delay between telling a patient device its access ended and closing its sockets. */
const DISCONNECT_AFTER_MS = 250;

export interface FollowUpSocketDeps {
  io: Server;
  followUps: FollowUpService;
  dispatcher: Dispatcher;
  media: () => MediaSignalling | null;
  logger: Logger;
}

type Emitter = { emit(event: string, payload: unknown): boolean };

export interface FollowUpSockets {
  resolver: MediaTargetResolver;
  register(socket: Socket, state: SocketState): void;
  close(): void;
}

function contextOf(socket: Socket) {
  return { ip: socket.handshake.address ?? null, userAgent: (socket.handshake.headers['user-agent'] ?? '').slice(0, 256) || null };
}

export function attachFollowUps(deps: FollowUpSocketDeps): FollowUpSockets {
  const { io, followUps, dispatcher, logger } = deps;
  const log = logger.child({ module: 'followups' });
  /** The socket behind each socket state, so the (synchronous) media resolver can see its rooms. */
  const sockets = new WeakMap<SocketState, Socket>();
  const to = (room: string) => io.to(room) as unknown as Emitter;

  const resolver: MediaTargetResolver = (state, roomId) => {
    const socket = sockets.get(state);
    if (!socket?.rooms.has(callRoomOf(roomId))) return null;
    return { roomId, broadcastRoom: callRoomOf(roomId), siteId: state.identity.actor.siteId };
  };

  // --- service events, delivered to staff (their user rooms) and to the patient device ---
  const onChanged = (record: FollowUpRecord) => {
    followUps.toPublic(record).then(
      (followUp) => {
        const payload: Parameters<ClinicianFollowUpEvents['followup:changed']>[0] = { followUp };
        for (const userId of FollowUpService.staffOf(record)) to(`u:${userId}`).emit('followup:changed', payload);
      },
      (err: Error) => log.warn({ followUpId: record.id, err: { message: err.message } }, 'follow-up change not delivered'),
    );
    const state: Parameters<PatientServerEvents['followup:state']>[0] = { state: record.state as PatientState };
    to(patientRoomOf(record.id)).emit('followup:state', state);
  };
  const onAlert = (record: FollowUpRecord, kind: Parameters<ClinicianFollowUpEvents['followup:alert']>[0]['kind']) => {
    followUps.toPublic(record).then(
      ({ contactLabel }) => {
        const payload: Parameters<ClinicianFollowUpEvents['followup:alert']>[0] = { followUpId: record.id, kind, contactLabel, at: new Date().toISOString() };
        for (const userId of FollowUpService.staffOf(record)) to(`u:${userId}`).emit('followup:alert', payload);
      },
      (err: Error) => log.warn({ followUpId: record.id, err: { message: err.message } }, 'follow-up alert not delivered'),
    );
  };
  const onMessage = (record: FollowUpRecord, message: { text: string; at: string }) => {
    to(patientRoomOf(record.id)).emit('followup:message', message);
  };
  const onClosed = (record: FollowUpRecord, reason: ClosedReason) => {
    const patientRoom = patientRoomOf(record.id);
    if (reason === 'replaced') {
      // Only the replaced device (`record` still holds its binding) is told and closed: the device
      // that took the invite over shares the follow-up's room and may already be connected.
      const replaced = (s: { data: unknown }) => (s.data as { state?: SocketState }).state?.identity.data.patient?.bindingId === record.bindingId;
      void io.in(patientRoom).fetchSockets().then(
        (sockets) => {
          const old = sockets.filter(replaced);
          for (const s of old) s.emit('followup:ended', { reason });
          setTimeout(() => old.forEach((s) => s.disconnect(true)), DISCONNECT_AFTER_MS).unref();
        },
        (err: Error) => log.warn({ followUpId: record.id, err: { message: err.message } }, 'replaced device not reached'),
      );
      return;
    }
    to(patientRoom).emit('followup:ended', { reason });
    // A moment later, so the device reads why before its sockets close (on every node).
    setTimeout(() => io.in(patientRoom).disconnectSockets(true), DISCONNECT_AFTER_MS).unref();
    // The call is over for everyone: media peers go, and nobody stays in the call room.
    const callRoom = callRoomOf(record.id);
    io.in(callRoom)
      .fetchSockets()
      .then(
        async (members) => {
          const media = deps.media();
          for (const member of members) await media?.leave(record.id, member.id);
          io.in(callRoom).socketsLeave(callRoom);
        },
        (err: Error) => log.warn({ followUpId: record.id, err: { message: err.message } }, 'call members not removed'),
      );
  };
  followUps.on('changed', onChanged);
  followUps.on('alert', onAlert);
  followUps.on('message', onMessage);
  followUps.on('closed', onClosed);

  /** Takes a socket out of a call it joined: its media ends, and the leave is audited. */
  async function leaveCall(socket: Socket, state: SocketState, record: FollowUpRecord | null, followUpId: string): Promise<void> {
    await socket.leave(callRoomOf(followUpId));
    await deps.media()?.leave(followUpId, socket.id);
    if (record) await followUps.recordCall(record, { userId: state.identity.actor.role === 'patient' ? null : state.identity.actor.userId, role: state.identity.actor.role }, contextOf(socket), false);
  }

  function registerPatient(socket: Socket, state: SocketState): void {
    const patient = (): PatientSession => state.identity.data.patient as PatientSession;
    let inCall = false;
    const allowed = new Set<string>(PATIENT_SOCKET_EVENTS);
    // Refuse every other event before anything else sees it: a patient session has no case.
    socket.use((packet, next) => {
      const event = String(packet[0]);
      if (allowed.has(event) || event.startsWith('media:')) return next();
      const last = packet[packet.length - 1];
      if (typeof last === 'function') (last as (a: unknown) => void)({ ok: false, error: { code: 'FORBIDDEN', message: ERROR_CODES.FORBIDDEN.message } });
    });
    dispatcher.on(socket, state, 'followup:patient:wait', { schema: patientWaitSchema, action: null, rate: 'join' }, async (_ctx, input) => {
      const record = await followUps.wait(patient(), contextOf(socket), input.deviceCheck);
      return { state: record.state, messages: record.messages };
    });
    dispatcher.on(socket, state, 'followup:patient:ping', { schema: patientEmptySchema, action: null, rate: 'read' }, async () => {
      const record = await followUps.mustCheckPatient(patient());
      return { state: record.state };
    });
    dispatcher.on(socket, state, 'followup:patient:join', { schema: patientEmptySchema, action: null, rate: 'join' }, async (): Promise<FollowUpJoinResult> => {
      const record = await followUps.mustCheckPatient(patient());
      if (record.state !== 'admitted') throw new AppError('CONFLICT', 'Wait until the clinician lets you in.');
      if (!inCall) {
        await socket.join(callRoomOf(record.id));
        inCall = true;
        await followUps.recordCall(record, { userId: null, role: 'patient' }, contextOf(socket), true);
      }
      return { roomId: record.id };
    });
    dispatcher.on(socket, state, 'followup:patient:leave', { schema: patientEmptySchema, action: null, rate: 'join' }, async () => {
      if (!inCall) return null;
      inCall = false;
      await leaveCall(socket, state, await followUps.checkPatient(patient()), patient().followUpId);
      return null;
    });
    socket.on('disconnect', () => {
      const session = patient();
      (async () => {
        if (inCall) {
          inCall = false;
          // The record as stored even if the follow-up just ended: the leave is still audited.
          const record = await followUps.checkPatient(session);
          await leaveCall(socket, state, record ?? (await followUps.findRecord(session.followUpId)), session.followUpId);
        }
        // Another tab or a reconnect of the same device may still be here (on any node).
        const others = await io.in(patientRoomOf(session.followUpId)).fetchSockets();
        if (others.some((s) => s.id !== socket.id)) return;
        await followUps.patientGone(session, contextOf(socket));
      })().catch((err: Error) => log.warn({ err: { message: err.message } }, 'patient disconnect not processed'));
    });
  }

  function registerStaff(socket: Socket, state: SocketState): void {
    const joined = new Map<string, FollowUpRecord>();
    dispatcher.on(socket, state, 'followup:join', { schema: followUpRoomSchema, action: null, rate: 'join' }, async ({ identity }, input) => {
      const record = await followUps.mustFindForStaff(identity.actor, input.followUpId);
      if (record.state === 'ended' || record.state === 'declined') throw new AppError('CONFLICT', 'This follow-up has ended.');
      if (!socket.rooms.has(callRoomOf(record.id))) {
        await socket.join(callRoomOf(record.id));
        joined.set(record.id, record);
        await followUps.recordCall(record, { userId: identity.actor.userId, role: identity.actor.role }, contextOf(socket), true);
      }
      return { roomId: record.id, followUp: await followUps.toPublic(record) };
    });
    dispatcher.on(socket, state, 'followup:leave', { schema: followUpRoomSchema, action: null, rate: 'join' }, async ({ identity }, input) => {
      // Authorised like a join: a follow-up the actor may not see does not exist for them.
      await followUps.mustFindForStaff(identity.actor, input.followUpId);
      const record = joined.get(input.followUpId);
      if (!record) return null;
      joined.delete(input.followUpId);
      await leaveCall(socket, state, record, input.followUpId);
      return null;
    });
    socket.on('disconnect', () => {
      for (const [id, record] of joined) {
        leaveCall(socket, state, record, id).catch((err: Error) => log.warn({ err: { message: err.message } }, 'call leave on disconnect failed'));
      }
      joined.clear();
    });
  }

  return {
    resolver,
    register(socket, state) {
      sockets.set(state, socket);
      if (state.identity.actor.role === 'patient') registerPatient(socket, state);
      else registerStaff(socket, state);
    },
    close() {
      followUps.off('changed', onChanged);
      followUps.off('alert', onAlert);
      followUps.off('message', onMessage);
      followUps.off('closed', onClosed);
    },
  };
}
