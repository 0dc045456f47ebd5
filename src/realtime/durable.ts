// Durable streams of a case room (chat and annotations): the socket events that write and read
// them, and the catch-up a joining socket gets. Writes are durable in the store before the ack
// and before the broadcast (the services announce only what they have persisted).
import type { Socket } from 'socket.io';
import type { App } from '../app';
import type { RequestContext } from '../identity/service';
import { createAnnotationSchema, deleteAnnotationSchema, historySchema, syncSchema } from '../protocol/annotations';
import { chatSyncSchema, sendChatSchema } from '../protocol/chat';
import type { SocketState } from './dispatch';
import type { DurableSync, RoomHandlerDeps } from '../rooms/handlers';
import { updateAnnotationSchema } from '../protocol/annotations';

function contextOf(socket: Socket): RequestContext {
  const ua = socket.handshake.headers['user-agent'];
  return { ip: socket.handshake.address ?? null, userAgent: ua ? ua.slice(0, 256) : null };
}

export function durableSync(app: App): DurableSync & { register(socket: Socket, state: SocketState, deps: RoomHandlerDeps): void } {
  const ctx = { ip: null, userAgent: 'room-join' };
  return {
    async chatSince(state, caseId, afterSeq) {
      return app.chat.since(state.identity.actor, ctx, caseId, afterSeq ?? 0);
    },
    async annotationsSince(state, caseId, afterSeq) {
      if (afterSeq === undefined) {
        const current = await app.annotations.listByCase(state.identity.actor, ctx, caseId);
        return { ops: [], annotations: current.annotations, latestSeq: current.latestSeq };
      }
      const { ops, latestSeq } = await app.annotations.since(state.identity.actor, ctx, caseId, afterSeq);
      return { ops, annotations: null, latestSeq };
    },
    register(socket, state, { dispatcher }) {
      dispatcher.on(socket, state, 'chat:send', { schema: sendChatSchema, action: 'chat.send', rate: 'write' }, async ({ identity }, input) =>
        app.chat.send(identity.actor, contextOf(socket), input, identity.name),
      );
      dispatcher.on(socket, state, 'chat:sync', { schema: chatSyncSchema, action: 'chat.read', rate: 'read' }, async ({ identity }, input) =>
        app.chat.since(identity.actor, contextOf(socket), input.caseId, input.afterSeq, input.limit),
      );
      dispatcher.on(socket, state, 'annotation:create', { schema: createAnnotationSchema, action: 'annotation.write', rate: 'write' }, async ({ identity }, input) =>
        app.annotations.create(identity.actor, contextOf(socket), input),
      );
      dispatcher.on(socket, state, 'annotation:update', { schema: updateAnnotationSchema, action: 'annotation.write', rate: 'write' }, async ({ identity }, input) =>
        app.annotations.update(identity.actor, contextOf(socket), input),
      );
      dispatcher.on(socket, state, 'annotation:delete', { schema: deleteAnnotationSchema, action: 'annotation.write', rate: 'write' }, async ({ identity }, input) =>
        app.annotations.remove(identity.actor, contextOf(socket), input),
      );
      dispatcher.on(socket, state, 'annotation:sync', { schema: syncSchema, action: 'annotation.read', rate: 'read' }, async ({ identity }, input) =>
        app.annotations.since(identity.actor, contextOf(socket), input.caseId, input.afterSeq, input.limit),
      );
      dispatcher.on(socket, state, 'annotation:history', { schema: historySchema, action: 'annotation.read', rate: 'read' }, async ({ identity }, input) =>
        app.annotations.history(identity.actor, contextOf(socket), input.caseId, input.annotationId),
      );
    },
  };
}
