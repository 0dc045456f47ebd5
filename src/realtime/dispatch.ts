// Every inbound socket event goes through `on()`, in the order DESIGN 4 fixes: strict schema,
// session still valid, permission for this case and action, per-socket rate limit; then the
// handler, and one typed ack. Exceptions never reach the client and never escape the handler.
import type { Socket } from 'socket.io';
import { RateLimiterMemory, RateLimiterRes } from 'rate-limiter-flexible';
import type { z } from 'zod';
import { AppError } from '../errors';
import { toAppError } from '../http/errors';
import type { Action } from '../identity/authorize';
import { requireAuthorized } from '../identity/authorize';
import type { Logger } from '../observability/logger';
import type { Metrics } from '../observability/metrics';
import type { Ack, AckError } from '../protocol/realtime';
import type { SocketIdentity, SocketSessions, Validation } from './socketSession';

export type RateClass = 'join' | 'write' | 'read' | 'volatile' | 'media';

/** Budgets per socket per second (volatile: viewport and pointer at up to 30 Hz each). */
export const RATE_LIMITS: Record<RateClass, { points: number; duration: number }> = {
  join: { points: 10, duration: 10 },
  write: { points: 20, duration: 1 },
  read: { points: 20, duration: 1 },
  volatile: { points: 60, duration: 1 },
  // Media signalling: joining a room of 20 cameras and microphones takes ~80 requests at once.
  media: { points: 300, duration: 10 },
};

export interface SocketState {
  identity: SocketIdentity;
  /** Cases this socket has joined (and so was authorised to read), with their site. */
  rooms: Map<string, string>;
}

export interface EventContext {
  socket: Socket;
  state: SocketState;
  identity: SocketIdentity;
  /** The case the event is about, if it names one and the socket is in its room. */
  caseId: string | null;
}

export interface EventSpec<S extends z.ZodType> {
  schema: S;
  /** Permission checked on the case's site; the socket must have joined that case's room. */
  action: Action | null;
  rate: RateClass;
  /** Volatile events (viewport, pointer) have no ack; failures are dropped silently. */
  volatile?: boolean;
  /** room:join authorises the case itself, so it needs no prior membership. */
  joinsRoom?: boolean;
}

class SessionEndedError extends AppError {
  override name = 'SessionEndedError';
  constructor(readonly reason: Exclude<Validation, { ok: true }>['reason']) {
    super(reason === 'stopped' ? 'ACCESS_STOPPED' : reason === 'expired' ? 'SESSION_EXPIRED' : 'UNAUTHENTICATED');
  }
}

export class Dispatcher {
  readonly #limiters: Record<RateClass, RateLimiterMemory>;

  constructor(
    private readonly sessions: SocketSessions,
    private readonly logger: Logger,
    private readonly onSessionEnded: (socket: Socket, reason: Exclude<Validation, { ok: true }>['reason']) => void,
    private readonly metrics?: Metrics,
  ) {
    this.#limiters = Object.fromEntries(
      Object.entries(RATE_LIMITS).map(([name, spec]) => [name, new RateLimiterMemory({ keyPrefix: `sock-${name}`, ...spec })]),
    ) as Record<RateClass, RateLimiterMemory>;
  }

  on<S extends z.ZodType>(socket: Socket, state: SocketState, event: string, spec: EventSpec<S>, handler: (ctx: EventContext, input: z.output<S>) => Promise<unknown>): void {
    socket.on(event, (...args: unknown[]) => {
      const last = args[args.length - 1];
      const ack = typeof last === 'function' ? (last as (r: Ack<unknown>) => void) : null;
      const payload = args.length > (ack ? 1 : 0) ? args[0] : undefined;
      if (!ack && !spec.volatile) return; // nobody to answer: a client bug or a probe; ignore it
      const end = this.metrics?.socketEventDuration.startTimer({ event });
      this.run(socket, state, event, spec, handler, payload).then(
        (data) => {
          end?.({ outcome: 'ok' });
          ack?.({ ok: true, data: data ?? null });
        },
        (err: unknown) => {
          const error = this.toAckError(err, event, socket);
          end?.({ outcome: error.code });
          ack?.({ ok: false, error });
          // The answer goes out first, then the socket closes: the client learns why.
          if (err instanceof SessionEndedError) this.onSessionEnded(socket, err.reason);
        },
      );
    });
  }

  private async run<S extends z.ZodType>(socket: Socket, state: SocketState, event: string, spec: EventSpec<S>, handler: (ctx: EventContext, input: z.output<S>) => Promise<unknown>, payload: unknown): Promise<unknown> {
    // 1. Schema (strict: unknown keys refused).
    const parsed = spec.schema.safeParse(payload);
    if (!parsed.success) {
      throw new AppError(
        'VALIDATION_FAILED',
        undefined,
        parsed.error.issues.slice(0, 10).map((i) => ({ path: i.path.join('.') || '(payload)', issue: i.code === 'unrecognized_keys' ? `unknown field(s): ${i.keys.slice(0, 5).join(', ')}` : i.message.slice(0, 200) })),
      );
    }
    const input = parsed.data as z.output<S>;
    // 2. Session still valid.
    const validation = await this.sessions.validate(state.identity);
    if (!validation.ok) throw new SessionEndedError(validation.reason);
    state.identity = validation.identity;
    // 3. Permission for this case and action.
    const caseId = typeof (input as { caseId?: unknown }).caseId === 'string' ? ((input as { caseId: string }).caseId) : null;
    if (caseId && !spec.joinsRoom) {
      const siteId = state.rooms.get(caseId);
      if (!siteId) throw new AppError('FORBIDDEN', 'Join the case room first.');
      if (spec.action) requireAuthorized(validation.identity.actor, spec.action, { siteId });
    }
    // 4. Per-socket rate limit.
    try {
      await this.#limiters[spec.rate].consume(socket.id);
    } catch (err) {
      if (err instanceof RateLimiterRes) throw new AppError('RATE_LIMITED');
      throw err;
    }
    return handler({ socket, state, identity: validation.identity, caseId }, input);
  }

  private toAckError(err: unknown, event: string, socket: Socket): AckError {
    const known = toAppError(err);
    if (known) {
      const out: AckError = { code: known.code, message: known.message };
      // VERSION_CONFLICT carries the current annotation so the client can rebase its edit.
      if (known.code === 'VERSION_CONFLICT' && known.data?.current !== undefined) out.current = known.data.current;
      return out;
    }
    this.logger.error({ event, socketId: socket.id, err: { name: (err as Error)?.name, message: (err as Error)?.message } }, 'socket handler failed');
    return { code: 'INTERNAL', message: new AppError('INTERNAL').message };
  }

  forget(socketId: string): void {
    for (const limiter of Object.values(this.#limiters)) void limiter.delete(socketId);
  }
}
