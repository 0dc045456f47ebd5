// Sessions: express-session over our SessionRepository (SQLite or MongoDB), an opaque random
// id in a __Host- cookie, and the server-side idle and absolute timeouts checked on every
// authenticated request (and, from the realtime layer, on every socket event).
import type { Request, RequestHandler } from 'express';
import session, { Store, type SessionData } from 'express-session';
import { AppError } from '../errors';
import type { Actor } from '../identity/authorize';
import type { SiteRecord, UserRecord } from '../identity/model';
import type { SessionRepository } from '../identity/repository';
import { IdentityService, type RequestContext } from '../identity/service';
import type { Logger } from '../observability/logger';

declare module 'express-session' {
  interface SessionData {
    userId: string;
    siteId: string;
    role: string;
    /** Epoch ms of login: the absolute timeout counts from here. */
    createdAt: number;
    /** Epoch ms of the last authenticated request: the idle timeout counts from here. */
    lastSeenAt: number;
    /** The site's idle timeout at the last request, in ms. */
    idleMs: number;
    /**
     * A patient's follow-up session (src/followups): no userId, role 'patient', one follow-up,
     * ending at the end of its window (`until`, epoch ms) at the latest.
     */
    patient?: { followUpId: string; siteId: string; bindingId: string; until: number };
  }
}

declare module 'express-serve-static-core' {
  interface Request {
    actor?: Actor;
    currentUser?: UserRecord;
    currentSite?: SiteRecord;
  }
}

export const SESSION_COOKIE = '__Host-sid';
/** Activity is written to the session at most this often per session. */
export const ACTIVITY_RESOLUTION_MS = 30_000;
/** Expired records stay this long so the next request can tell (and audit) an expiry. */
const EXPIRED_GRACE_MS = 60 * 60 * 1000;

export function sessionDeadline(data: Partial<SessionData>, absoluteMs: number): number {
  const created = data.createdAt ?? 0;
  const seen = data.lastSeenAt ?? created;
  const idle = data.idleMs ?? 30 * 60_000;
  return Math.min(seen + idle, created + absoluteMs, data.patient?.until ?? Infinity);
}

/** express-session Store backed by the SessionRepository (one adapter for both stores). */
export class RepositorySessionStore extends Store {
  constructor(
    private readonly repo: SessionRepository,
    private readonly absoluteMs: number,
    private readonly clock: () => Date = () => new Date(),
  ) {
    super();
  }

  override get(sid: string, cb: (err: unknown, session?: SessionData | null) => void): void {
    this.repo.get(sid, this.clock().getTime()).then(
      (rec) => cb(null, rec ? (JSON.parse(rec.data) as SessionData) : null),
      (err) => cb(err),
    );
  }

  override set(sid: string, data: SessionData, cb?: (err?: unknown) => void): void {
    this.repo
      .set({
        sid,
        siteId: data.siteId ?? null,
        userId: data.userId ?? null,
        data: JSON.stringify(data),
        expiresAt: sessionDeadline(data, this.absoluteMs) + EXPIRED_GRACE_MS,
      })
      .then(() => cb?.(), (err) => cb?.(err));
  }

  /**
   * Nothing to do: the record's expiry follows the session data, which `set` stores whenever the
   * authenticator moves `lastSeenAt` (so an unchanged request costs no write).
   */
  override touch(_sid: string, _data: SessionData, cb?: (err?: unknown) => void): void {
    cb?.();
  }

  override destroy(sid: string, cb?: (err?: unknown) => void): void {
    this.repo.destroy(sid).then(() => cb?.(), (err) => cb?.(err));
  }
}

export function createSessionMiddleware(store: Store, cookieSecrets: string[]): RequestHandler {
  return session({
    name: SESSION_COOKIE,
    // The first secret signs; all verify, so cookies survive a master-key rotation.
    secret: cookieSecrets,
    store,
    resave: false,
    // Nothing is stored for anonymous visitors: a session exists only after login.
    saveUninitialized: false,
    rolling: false,
    unset: 'destroy',
    cookie: { secure: true, httpOnly: true, sameSite: 'lax', path: '/' },
  });
}

export function requestContext(req: Request): RequestContext {
  const ua = req.get('user-agent');
  return { ip: req.ip ?? null, userAgent: ua ? ua.slice(0, 256) : null };
}

export function regenerate(req: Request): Promise<void> {
  return new Promise((resolve, reject) => req.session.regenerate((err) => (err ? reject(err) : resolve())));
}

export function saveSession(req: Request): Promise<void> {
  return new Promise((resolve, reject) => req.session.save((err) => (err ? reject(err) : resolve())));
}

export function destroySession(req: Request): Promise<void> {
  return new Promise((resolve, reject) => req.session.destroy((err) => (err ? reject(err) : resolve())));
}

export type Pending = 'password_change' | 'totp_enrolment' | null;

export function pendingStep(user: UserRecord, site: SiteRecord): Pending {
  if (user.mustChangePassword) return 'password_change';
  if (site.policy.requireTotp && !user.totpSecret) return 'totp_enrolment';
  return null;
}

export interface AuthOptions {
  /** Routes a user may call before changing a one-time password or enrolling TOTP. */
  allowPending?: boolean;
}

/**
 * Authenticates a request from its session: enforces the absolute and idle timeouts, reloads the
 * user so that Stop Access and permission changes apply on the very next request, and sets
 * req.actor. A user with a pending step may only call routes marked allowPending.
 */
export function createAuthenticator(identity: IdentityService, absoluteMs: number, logger: Logger, clock: () => Date = () => new Date()) {
  return (options: AuthOptions = {}): RequestHandler =>
    (req, res, next) => {
      authenticate(req, options).then(() => next(), next);
    };

  async function authenticate(req: Request, options: AuthOptions): Promise<void> {
    const s = req.session;
    if (!s?.userId || !s.siteId) throw new AppError('UNAUTHENTICATED');
    const now = clock().getTime();
    const createdAt = s.createdAt ?? 0;
    const lastSeenAt = s.lastSeenAt ?? 0;
    const idleMs = s.idleMs ?? 0;
    const expired = now - createdAt >= absoluteMs ? 'absolute' : now - lastSeenAt >= idleMs ? 'idle' : null;
    if (expired) {
      const info = { siteId: s.siteId, userId: s.userId, role: s.role ?? 'unknown', sid: req.sessionID };
      await destroySession(req);
      await identity.recordSessionExpired(info, expired, requestContext(req));
      throw new AppError('SESSION_EXPIRED');
    }
    const user = await identity.loadUser(s.siteId, s.userId);
    if (!user) {
      await destroySession(req);
      throw new AppError('UNAUTHENTICATED');
    }
    if (user.permissions.stopAccess) {
      await destroySession(req);
      logger.info({ userId: user.id, siteId: user.siteId }, 'request refused: access stopped');
      throw new AppError('ACCESS_STOPPED');
    }
    const site = await identity.getSite(user.siteId);
    const pending = pendingStep(user, site);
    if (pending && !options.allowPending) {
      throw new AppError(pending === 'password_change' ? 'PASSWORD_CHANGE_REQUIRED' : 'TOTP_ENROLMENT_REQUIRED');
    }
    // Written back only when it matters: every request would otherwise cost a durable session
    // write (an fsync). Activity is therefore recorded to within ACTIVITY_RESOLUTION_MS.
    const siteIdleMs = site.policy.idleTimeoutMinutes * 60_000;
    if (now - lastSeenAt >= ACTIVITY_RESOLUTION_MS || s.idleMs !== siteIdleMs || s.role !== user.role) {
      s.lastSeenAt = now;
      s.idleMs = siteIdleMs;
      s.role = user.role;
    }
    req.actor = IdentityService.actorOf(user);
    req.currentUser = user;
    req.currentSite = site;
  }
}
