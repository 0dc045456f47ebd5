// Durable streams of a case room (chat, annotations) as the room handlers see them.
import type { App } from '../app';
import type { DurableSync } from '../rooms/handlers';

export function durableSync(_app: App): DurableSync {
  return {
    chatSince: async () => ({ messages: [], latestSeq: 0 }),
    annotationsSince: async () => ({ ops: [], annotations: [], latestSeq: 0 }),
  };
}
