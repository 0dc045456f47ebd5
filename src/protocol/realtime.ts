// The Socket.IO wire contract: event maps (server and client import these), the strict zod
// schema of every inbound event, and the ack envelope. Durable chat and annotation payloads come
// from protocol/chat.ts and protocol/annotations.ts.
import { z } from 'zod';
import type { ErrorCode } from './errors';
import type { Role } from './identity';

const id22 = z.string().regex(/^[A-Za-z0-9_-]{22}$/);
const finite = z.number().finite().min(-1e7).max(1e7);

export const joinSchema = z.strictObject({
  caseId: id22,
  /** Last chat seq the client holds (0 or absent: it has none). */
  lastChatSeq: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
  /** Last annotation op seq the client holds. */
  lastAnnotationSeq: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER).optional(),
});
export const caseOnlySchema = z.strictObject({ caseId: id22 });
export const presenceStateSchema = z.strictObject({ caseId: id22, state: z.enum(['active', 'idle']) });
export const handoverSchema = z.strictObject({ caseId: id22, toUserId: id22 });

/** Viewport in OpenSeadragon viewport coordinates (image width = 1), rotation in degrees. */
export const viewportSchema = z.strictObject({
  caseId: id22,
  materialId: id22,
  center: z.strictObject({ x: finite, y: finite }),
  zoom: z.number().finite().positive().max(1e6),
  rotation: z.number().finite().min(-360).max(360),
  /** A DICOM stack (radiology): the slice shown and the window in output units; absent for slides. */
  stack: z
    .strictObject({
      slice: z.number().int().min(0).max(100_000),
      window: z.strictObject({ center: finite, width: z.number().finite().min(1).max(1e6) }).nullable(),
    })
    .optional(),
});
export const pointerSchema = z.strictObject({
  caseId: id22,
  materialId: id22,
  /** Image-normalised position; null hides the pointer. */
  position: z.strictObject({ x: finite, y: finite }).nullable(),
});

export type JoinRequest = z.output<typeof joinSchema>;
export type Viewport = Omit<z.output<typeof viewportSchema>, 'caseId'> & { byUserId: string; at: string };
export type PointerUpdate = Omit<z.output<typeof pointerSchema>, 'caseId'> & { userId: string; name: string };

export interface Member {
  /** One entry per connection: a user with two tabs is present twice. */
  socketId: string;
  userId: string;
  name: string;
  role: Role;
  state: 'active' | 'idle';
  joinedAt: string;
}

export interface Presenter {
  userId: string;
  name: string;
  since: string;
}

export type AckError = { code: ErrorCode; message: string; current?: unknown };
export type Ack<T> = { ok: true; data: T } | { ok: false; error: AckError };
export type AckFn<T = unknown> = (response: Ack<T>) => void;

export interface JoinSnapshot {
  caseId: string;
  members: Member[];
  presenter: Presenter | null;
  viewport: Viewport | null;
  /** Chat messages after `lastChatSeq` (all of them when it was absent), ascending. */
  chat: unknown[];
  latestChatSeq: number;
  /** Annotation operations after `lastAnnotationSeq`, or the current annotations on a first join. */
  annotationOps: unknown[];
  annotations: unknown[] | null;
  latestAnnotationSeq: number;
}

/** Events the client sends. Every one but viewport/pointer takes an ack callback. */
export interface ClientToServerEvents {
  'room:join': (payload: JoinRequest, ack: AckFn<JoinSnapshot>) => void;
  'room:leave': (payload: { caseId: string }, ack: AckFn<null>) => void;
  'presence:state': (payload: { caseId: string; state: 'active' | 'idle' }, ack: AckFn<null>) => void;
  'presenter:take': (payload: { caseId: string }, ack: AckFn<Presenter>) => void;
  'presenter:handover': (payload: { caseId: string; toUserId: string }, ack: AckFn<Presenter>) => void;
  'presenter:release': (payload: { caseId: string }, ack: AckFn<null>) => void;
  'viewport:update': (payload: z.input<typeof viewportSchema>) => void;
  'pointer:update': (payload: z.input<typeof pointerSchema>) => void;
  'chat:send': (payload: unknown, ack: AckFn) => void;
  'chat:sync': (payload: unknown, ack: AckFn) => void;
  'annotation:create': (payload: unknown, ack: AckFn) => void;
  'annotation:update': (payload: unknown, ack: AckFn) => void;
  'annotation:delete': (payload: unknown, ack: AckFn) => void;
  'annotation:sync': (payload: unknown, ack: AckFn) => void;
  'annotation:history': (payload: unknown, ack: AckFn) => void;
}

export type SessionEndReason = 'logout' | 'expired' | 'revoked';

/** Events the server sends. */
export interface ServerToClientEvents {
  'presence:joined': (payload: { caseId: string; member: Member }) => void;
  'presence:left': (payload: { caseId: string; socketId: string; userId: string }) => void;
  'presence:changed': (payload: { caseId: string; socketId: string; state: 'active' | 'idle' }) => void;
  'presenter:changed': (payload: { caseId: string; presenter: Presenter | null }) => void;
  viewport: (payload: { caseId: string; viewport: Viewport }) => void;
  pointer: (payload: { caseId: string; pointer: PointerUpdate }) => void;
  'chat:message': (payload: { caseId: string; message: unknown }) => void;
  'annotation:op': (payload: { caseId: string; op: unknown }) => void;
  'material:progress': (payload: { caseId: string; material: unknown }) => void;
  /** An order or report from the RIS (HL7) was attached to the case: read GET …/radiology/documents again. */
  'documents:changed': (payload: { caseId: string; kind: 'order' | 'report' }) => void;
  'session:ended': (payload: { reason: SessionEndReason }) => void;
  /** This node is shutting down: reconnect (the load balancer picks another node) and rejoin. */
  'server:draining': (payload: { reconnect: true }) => void;
}
