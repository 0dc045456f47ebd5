// Socket events of media signalling (`media:*`). Each goes through the Dispatcher (strict schema,
// session still valid, rate limit, typed ack); the resolver then decides which room the socket may
// use media in: a case room it has joined (with the media.join permission on that case's site), or
// a follow-up call it was admitted to. A peer can only touch its own transports, producers and
// consumers: MediaRoom looks them up in that peer's own maps.
import type { Socket } from 'socket.io';
import type { AuditService } from '../audit/service';
import { AppError } from '../errors';
import { requireAuthorized } from '../identity/authorize';
import { MEDIA_REQUESTS, type MediaRequest, type MediaRequestName, type MediaResponses } from '../protocol/media';
import type { Dispatcher, SocketState } from '../realtime/dispatch';
import { roomName } from '../rooms/CaseRoom';
import type { PeerIdentity } from './MediaPeer';
import type { MediaAuditEvent } from './MediaRoom';
import type { MediaTarget } from './MediaService';

/** What the socket layer needs of media: this node's MediaService, or a forwarder to the room's media node. */
export interface MediaSignalling {
  handle<N extends MediaRequestName>(name: N, peer: PeerIdentity, target: MediaTarget, input: MediaRequest<N>): Promise<MediaResponses[N]>;
  leave(roomId: string, socketId: string): void | Promise<void>;
}

/**
 * Finds the room a media request is about, or null when the socket is not in such a room. The
 * case-room resolver is built in; follow-up calls add theirs.
 */
export type MediaTargetResolver = (state: SocketState, roomId: string) => MediaTarget | null;

export const caseRoomResolver: MediaTargetResolver = (state, roomId) => {
  const siteId = state.rooms.get(roomId);
  if (!siteId) return null;
  requireAuthorized(state.identity.actor, 'media.join', { siteId });
  return { roomId, broadcastRoom: roomName(roomId), siteId };
};

export interface MediaHandlerDeps {
  dispatcher: Dispatcher;
  media: MediaSignalling | null;
  resolvers: MediaTargetResolver[];
}

export function peerIdentity(socket: Socket, state: SocketState): PeerIdentity {
  return {
    socketId: socket.id,
    userId: state.identity.actor.userId,
    name: state.identity.name,
    role: state.identity.actor.role,
    siteId: state.identity.actor.siteId,
    ip: socket.handshake.address ?? null,
    userAgent: (socket.handshake.headers['user-agent'] ?? '').slice(0, 256) || null,
  };
}

export function resolveTarget(resolvers: MediaTargetResolver[], state: SocketState, roomId: string): MediaTarget {
  for (const resolve of resolvers) {
    const target = resolve(state, roomId);
    if (target) return target;
  }
  throw new AppError('FORBIDDEN', 'Join the room first.');
}

export function registerMediaHandlers(socket: Socket, state: SocketState, deps: MediaHandlerDeps): void {
  for (const name of Object.keys(MEDIA_REQUESTS) as MediaRequestName[]) {
    const schema = MEDIA_REQUESTS[name];
    deps.dispatcher.on(socket, state, name, { schema, action: null, rate: name === 'media:join' || name === 'media:leave' ? 'join' : 'media' }, async ({ state: current }, input) => {
      const target = resolveTarget(deps.resolvers, current, (input as { roomId: string }).roomId);
      if (!deps.media) throw new AppError('MEDIA_UNAVAILABLE');
      return deps.media.handle(name, peerIdentity(socket, current), target, input as MediaRequest<typeof name>);
    });
  }
}

/** The audit record of a media start or stop. */
export function recordMediaAudit(audit: AuditService, event: MediaAuditEvent): Promise<unknown> {
  return audit.record({
    siteId: event.peer.siteId,
    type: event.type,
    action: 'E',
    actor: { userId: event.peer.userId, role: event.peer.role, ip: event.peer.ip, userAgent: event.peer.userAgent },
    objects: [{ type: 'room', id: event.roomId }],
    details: { kind: event.kind, source: event.source, producerId: event.producerId, ...(event.durationSeconds === undefined ? {} : { durationSeconds: event.durationSeconds }) },
  });
}
