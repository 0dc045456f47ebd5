// Repository interfaces of the identity domain. Implemented by src/store/sqlite and
// src/store/mongo and held to one contract suite (test/contract). Every query except
// `findByEmail` (login, where the site is not yet known) is scoped by site.
import type { SitePolicy } from '../protocol/identity';
import type { SiteRecord, UserRecord } from './model';

export interface SiteRepository {
  create(site: SiteRecord): Promise<void>;
  findById(id: string): Promise<SiteRecord | null>;
  list(): Promise<SiteRecord[]>;
  updatePolicy(id: string, policy: SitePolicy, updatedAt: string): Promise<SiteRecord | null>;
}

export type UserPatch = Partial<
  Pick<
    UserRecord,
    | 'name'
    | 'role'
    | 'permissions'
    | 'passwordHash'
    | 'mustChangePassword'
    | 'totpSecret'
    | 'totpPendingSecret'
    | 'totpLastStep'
    | 'failedLoginCount'
    | 'failedLoginWindowStart'
    | 'lockedUntil'
  >
> & { updatedAt: string; updatedBy: string | null };

export interface LockoutRule {
  now: Date;
  threshold: number;
  windowMs: number;
  lockMs: number;
}

export interface UserRepository {
  /** Throws DuplicateKeyError when the e-mail is taken (in any site). */
  create(user: UserRecord): Promise<void>;
  findById(siteId: string, id: string): Promise<UserRecord | null>;
  findByEmail(email: string): Promise<UserRecord | null>;
  listBySite(siteId: string): Promise<UserRecord[]>;
  update(siteId: string, id: string, patch: UserPatch): Promise<UserRecord | null>;
  /**
   * Counts one failed login atomically: restarts the window when it has passed, locks the
   * account when the count reaches the threshold. Returns the updated record.
   */
  registerFailedLogin(siteId: string, id: string, rule: LockoutRule): Promise<UserRecord | null>;
  /**
   * Accepts a TOTP time step only if it is newer than the last accepted one (atomic, so a code
   * cannot be replayed even by two nodes at once). Returns false for a replay.
   */
  claimTotpStep(siteId: string, id: string, step: number): Promise<boolean>;
}

export interface SessionRecord {
  sid: string;
  siteId: string | null;
  userId: string | null;
  /** The express-session data, serialised as JSON. */
  data: string;
  /** Epoch milliseconds after which the record is dead (the idle timeout). */
  expiresAt: number;
}

export interface SessionRepository {
  get(sid: string, now: number): Promise<SessionRecord | null>;
  set(record: SessionRecord): Promise<void>;
  touch(sid: string, expiresAt: number): Promise<void>;
  destroy(sid: string): Promise<void>;
  /** Deletes every session of a user (optionally keeping one); returns the deleted ids. */
  destroyByUser(siteId: string, userId: string, keepSid?: string): Promise<string[]>;
  purgeExpired(now: number): Promise<number>;
}
