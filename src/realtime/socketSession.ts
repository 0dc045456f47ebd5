// The session behind a socket: taken from the express-session cookie at the handshake, then
// re-validated against the session store (timeouts, revocation, Stop Access) before events and
// by a timer at its deadline, so an expired session's socket is closed within a second. Socket
// activity counts as activity for the idle timeout.
import { createHash } from 'node:crypto';
import type { SessionData } from 'express-session';
import type { Actor } from '../identity/authorize';
import { PERMISSIONS, type Permissions } from '../protocol/identity';
import type { SessionRepository } from '../identity/repository';
import { IdentityService } from '../identity/service';
import { sessionDeadline } from '../http/session';

export interface SocketIdentity {
  sid: string;
  /** Room of every socket of this session (a hash: the id itself never leaves the store). */
  sessionRoom: string;
  userRoom: string;
  actor: Actor;
  name: string;
  data: SessionData;
  /** Epoch ms after which the session must be re-read (and is ended if it really expired). */
  deadline: number;
  /** Epoch ms of the last time the store was consulted. */
  checkedAt: number;
}

export type Validation = { ok: true; identity: SocketIdentity } | { ok: false; reason: 'expired' | 'revoked' | 'stopped' };

/** Decides whether a patient's follow-up session may still be used (src/followups). */
export interface PatientSessionCheck {
  checkPatient(patient: NonNullable<SessionData['patient']>, now: number): Promise<unknown>;
}

/** Socket.IO room of every socket of one follow-up's patient device. */
export const patientRoomOf = (followUpId: string) => `fp:${followUpId}`;

const NO_PERMISSIONS = Object.fromEntries(PERMISSIONS.map((p) => [p, false])) as Permissions;

/** Activity is written back to the store at most this often per socket. */
const TOUCH_EVERY_MS = 30_000;
/** Without a reason to, the store is re-read at most this often per socket. */
const RECHECK_EVERY_MS = 5_000;
/** Grace kept on the stored record, as the HTTP store adapter does. */
const STORE_GRACE_MS = 60 * 60 * 1000;

export function sessionRoomOf(sid: string): string {
  return `s:${createHash('sha256').update(sid).digest('hex').slice(0, 32)}`;
}

export class SocketSessions {
  constructor(
    private readonly sessions: SessionRepository,
    private readonly identity: IdentityService,
    private readonly absoluteMs: number,
    private readonly clock: () => Date,
    private readonly patients?: PatientSessionCheck,
  ) {}

  /** From the handshake's session (loaded by express-session); null when not signed in. */
  async fromHandshake(sid: string | undefined, data: Partial<SessionData> | undefined): Promise<Validation | null> {
    if (sid && data?.patient && !data.userId) return this.build(sid, data as SessionData);
    if (!sid || !data?.userId || !data.siteId) return null;
    return this.build(sid, data as SessionData);
  }

  /**
   * A patient (follow-up guest): no user behind it, role 'patient' with no permission, valid only
   * while its follow-up admits this device and within the patient idle timeout and the window.
   */
  private async buildPatient(sid: string, data: SessionData, now: number, deadline: number): Promise<Validation> {
    const patient = data.patient!;
    if (now >= deadline) {
      await this.sessions.destroy(sid);
      return { ok: false, reason: 'expired' };
    }
    if (!this.patients || !(await this.patients.checkPatient(patient, now))) {
      await this.sessions.destroy(sid);
      return { ok: false, reason: 'revoked' };
    }
    return {
      ok: true,
      identity: {
        sid,
        sessionRoom: sessionRoomOf(sid),
        userRoom: patientRoomOf(patient.followUpId),
        actor: { userId: `patient:${patient.followUpId}`, siteId: patient.siteId, role: 'patient', permissions: NO_PERMISSIONS },
        name: 'Patient',
        data,
        deadline,
        checkedAt: now,
      },
    };
  }

  private async build(sid: string, data: SessionData): Promise<Validation> {
    const now = this.clock().getTime();
    const deadline = sessionDeadline(data, this.absoluteMs);
    if (data.patient && !data.userId) return this.buildPatient(sid, data, now, deadline);
    if (now >= deadline) {
      await this.identity.recordSessionExpired(
        { siteId: data.siteId, userId: data.userId, role: data.role ?? 'unknown', sid },
        now - (data.createdAt ?? 0) >= this.absoluteMs ? 'absolute' : 'idle',
        { ip: null, userAgent: 'socket' },
      );
      await this.sessions.destroy(sid);
      return { ok: false, reason: 'expired' };
    }
    const user = await this.identity.loadUser(data.siteId, data.userId);
    if (!user) return { ok: false, reason: 'revoked' };
    if (user.permissions.stopAccess) return { ok: false, reason: 'stopped' };
    const site = await this.identity.getSite(user.siteId);
    if (user.mustChangePassword || (site.policy.requireTotp && !user.totpSecret)) return { ok: false, reason: 'revoked' };
    return {
      ok: true,
      identity: {
        sid,
        sessionRoom: sessionRoomOf(sid),
        userRoom: `u:${user.id}`,
        actor: IdentityService.actorOf(user),
        name: user.name,
        data: { ...data, idleMs: site.policy.idleTimeoutMinutes * 60_000 },
        deadline,
        checkedAt: now,
      },
    };
  }

  /**
   * Re-validates when due (deadline reached, or not checked for a while) and records activity.
   * Revocations are also pushed (sessionsEnded disconnects sockets), so this is the backstop.
   */
  async validate(current: SocketIdentity, force = false): Promise<Validation> {
    const now = this.clock().getTime();
    if (!force && now < current.deadline && now - current.checkedAt < RECHECK_EVERY_MS) {
      await this.touch(current, now);
      return { ok: true, identity: current };
    }
    const record = await this.sessions.get(current.sid, now);
    if (!record) return { ok: false, reason: 'revoked' };
    const result = await this.build(current.sid, JSON.parse(record.data) as SessionData);
    if (result.ok) await this.touch(result.identity, now);
    return result;
  }

  private async touch(identity: SocketIdentity, now: number): Promise<void> {
    if (now - (identity.data.lastSeenAt ?? 0) < TOUCH_EVERY_MS) return;
    const record = await this.sessions.get(identity.sid, now);
    if (!record) return;
    const data = { ...(JSON.parse(record.data) as SessionData), lastSeenAt: now };
    await this.sessions.set({ ...record, data: JSON.stringify(data), expiresAt: sessionDeadline(data, this.absoluteMs) + STORE_GRACE_MS });
    identity.data = data;
    identity.deadline = sessionDeadline(data, this.absoluteMs);
  }
}
