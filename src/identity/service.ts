// Identity use cases: login with lockout and TOTP, password change and reset, TOTP enrolment,
// user administration, site policy, session revocation. Each one is audited, and the audit
// record is written before the caller answers the user.
import { EventEmitter } from 'node:events';
import * as otp from 'otplib';
import QRCode from 'qrcode';
import type { AuditActor } from '../audit/model';
import type { AuditService } from '../audit/service';
import type { DataKeys } from '../crypto/dataKeys';
import { AppError, NotFoundError } from '../errors';
import { newId, newOneTimePassword } from '../ids';
import type { Permissions, Role, SitePolicy } from '../protocol/identity';
import { DuplicateKeyError, type Store } from '../store/types';
import { requireAuthorized, type Actor } from './authorize';
import { DEFAULT_POLICY, defaultPermissions, type SiteRecord, type UserRecord } from './model';
import { burnPasswordCheck, checkPasswordPolicy, hashPassword, verifyPassword } from './passwords';

export interface RequestContext {
  ip: string | null;
  userAgent: string | null;
}

export interface Alert {
  at: string;
  userId: string;
  email: string | null;
  name: string | null;
  ip: string | null;
  lockedUntil: string;
}

export interface LoginInput {
  email: string;
  password: string;
  totp?: string;
}

export interface IdentityEvents {
  /**
   * Sessions ended: logout, expiry, or revocation (Stop Access, password change or reset, admin
   * revoke). The realtime layer disconnects their sockets on every node.
   */
  sessionsEnded: [{ siteId: string; userId: string; sids: string[]; reason: 'logout' | 'expired' | 'revoked' }];
  /** An account was locked after repeated failures: site admins are alerted. */
  accountLocked: [{ siteId: string; userId: string; lockedUntil: string }];
}

const TOTP_PERIOD = 30;
const TOTP_ISSUER = 'Case Collaboration';

export class IdentityService extends EventEmitter<IdentityEvents> {
  constructor(
    private readonly store: Store,
    private readonly audit: AuditService,
    /** Seals TOTP secrets at rest under the site's data key, bound to their user id. */
    private readonly dataKeys: DataKeys,
    private readonly clock: () => Date = () => new Date(),
  ) {
    super();
  }

  // ---------------------------------------------------------------- sites

  async createSite(name: string, policy: Partial<SitePolicy> = {}): Promise<SiteRecord> {
    const now = this.clock().toISOString();
    const site: SiteRecord = { id: newId(), name, policy: { ...DEFAULT_POLICY, ...policy }, createdAt: now, updatedAt: now };
    await this.store.sites.create(site);
    await this.audit.record({
      siteId: site.id,
      type: 'site.create',
      action: 'C',
      actor: { userId: null, role: 'system', ip: null, userAgent: null },
      objects: [{ type: 'site', id: site.id }],
    });
    return site;
  }

  async getSite(siteId: string): Promise<SiteRecord> {
    const site = await this.store.sites.findById(siteId);
    if (!site) throw new NotFoundError();
    return site;
  }

  async updatePolicy(actor: Actor, ctx: RequestContext, patch: Partial<SitePolicy>): Promise<SiteRecord> {
    requireAuthorized(actor, 'site.updatePolicy', { siteId: actor.siteId });
    const site = await this.getSite(actor.siteId);
    const policy = { ...site.policy, ...patch };
    if (policy.minPasswordLength < 12 && !policy.requireTotp) {
      throw new AppError(
        'VALIDATION_FAILED',
        'A minimum password length below 12 is allowed only when the site requires two-factor authentication.',
        [{ path: 'minPasswordLength', issue: 'below 12 requires requireTotp' }],
      );
    }
    const updated = await this.store.sites.updatePolicy(site.id, policy, this.clock().toISOString());
    if (!updated) throw new NotFoundError();
    await this.audit.record({
      siteId: site.id,
      type: 'site.policy.update',
      action: 'U',
      actor: this.auditActor(actor, ctx),
      objects: [{ type: 'site', id: site.id }],
      details: Object.fromEntries(Object.entries(patch).map(([k, v]) => [k, v as number | boolean])),
    });
    return updated;
  }

  // ---------------------------------------------------------------- login

  /**
   * Checks credentials. Unknown e-mail, wrong password, wrong TOTP code and a locked account
   * all fail with the same INVALID_CREDENTIALS error after the same argon2 work.
   */
  async login(input: LoginInput, ctx: RequestContext): Promise<{ user: UserRecord; site: SiteRecord }> {
    const now = this.clock();
    const user = await this.store.users.findByEmail(input.email);
    if (!user) {
      await burnPasswordCheck(input.password);
      await this.audit.record({
        siteId: null,
        type: 'auth.login',
        action: 'E',
        outcome: 4,
        actor: { userId: null, role: null, ...ctx },
        details: { reason: 'unknown_account' },
      });
      throw new AppError('INVALID_CREDENTIALS');
    }
    const site = await this.getSite(user.siteId);
    const passwordOk = await verifyPassword(user.passwordHash, input.password);
    const actor: AuditActor = { userId: user.id, role: user.role, ...ctx };
    const userObject = [{ type: 'user', id: user.id }];

    if (user.lockedUntil && Date.parse(user.lockedUntil) > now.getTime()) {
      await this.audit.record({
        siteId: user.siteId,
        type: 'auth.login',
        action: 'E',
        outcome: 4,
        actor,
        objects: userObject,
        details: { reason: 'locked' },
      });
      throw new AppError('INVALID_CREDENTIALS');
    }
    if (!passwordOk) {
      await this.failLogin(user, site, actor, 'wrong_password');
      throw new AppError('INVALID_CREDENTIALS');
    }
    if (user.totpSecret) {
      if (!input.totp) {
        await this.audit.record({
          siteId: user.siteId,
          type: 'auth.login',
          action: 'E',
          outcome: 4,
          actor,
          objects: userObject,
          details: { reason: 'totp_missing' },
        });
        throw new AppError('TOTP_REQUIRED');
      }
      const step = await this.checkTotp(await this.dataKeys.openString(user.totpSecret, `totp:${user.id}`), input.totp);
      if (step === null || !(await this.store.users.claimTotpStep(user.siteId, user.id, step))) {
        await this.failLogin(user, site, actor, step === null ? 'wrong_totp' : 'totp_replayed');
        throw new AppError('INVALID_CREDENTIALS');
      }
    }
    if (user.permissions.stopAccess) {
      await this.audit.record({
        siteId: user.siteId,
        type: 'auth.login',
        action: 'E',
        outcome: 4,
        actor,
        objects: userObject,
        details: { reason: 'access_stopped' },
      });
      throw new AppError('ACCESS_STOPPED');
    }
    const fresh =
      user.failedLoginCount > 0 || user.lockedUntil
        ? await this.store.users.update(user.siteId, user.id, {
            failedLoginCount: 0,
            failedLoginWindowStart: null,
            lockedUntil: null,
            updatedAt: user.updatedAt,
            updatedBy: user.updatedBy,
          })
        : user;
    await this.audit.record({ siteId: user.siteId, type: 'auth.login', action: 'E', actor, objects: userObject });
    return { user: fresh ?? user, site };
  }

  private async failLogin(user: UserRecord, site: SiteRecord, actor: AuditActor, reason: string): Promise<void> {
    const now = this.clock();
    const after = await this.store.users.registerFailedLogin(user.siteId, user.id, {
      now,
      threshold: site.policy.lockoutThreshold,
      windowMs: site.policy.lockoutWindowMinutes * 60_000,
      lockMs: site.policy.lockoutDurationMinutes * 60_000,
    });
    await this.audit.record({
      siteId: user.siteId,
      type: 'auth.login',
      action: 'E',
      outcome: 4,
      actor,
      objects: [{ type: 'user', id: user.id }],
      details: { reason },
    });
    const newlyLocked = after?.lockedUntil && after.lockedUntil !== user.lockedUntil && Date.parse(after.lockedUntil) > now.getTime();
    if (after && newlyLocked) {
      await this.audit.record({
        siteId: user.siteId,
        type: 'auth.lockout',
        action: 'E',
        outcome: 8,
        actor,
        objects: [{ type: 'user', id: user.id }],
        details: { lockedUntil: after.lockedUntil, failures: site.policy.lockoutThreshold },
      });
      this.emit('accountLocked', { siteId: user.siteId, userId: user.id, lockedUntil: after.lockedUntil! });
    }
  }

  /** Returns the matching time step, or null. Accepts one step of clock drift either way. */
  private async checkTotp(secret: string, code: string): Promise<number | null> {
    const now = Math.floor(this.clock().getTime() / 1000);
    const result = await otp.verify({ secret, token: code, epoch: now, epochTolerance: TOTP_PERIOD });
    if (!result.valid) return null;
    // TOTP results carry the matched time step (HOTP results do not; we only use TOTP).
    return 'timeStep' in result ? (result.timeStep as number) : Math.floor(now / TOTP_PERIOD) + result.delta;
  }

  async recordLogout(actor: Actor, ctx: RequestContext, sid: string): Promise<void> {
    this.emit('sessionsEnded', { siteId: actor.siteId, userId: actor.userId, sids: [sid], reason: 'logout' });
    await this.audit.record({
      siteId: actor.siteId,
      type: 'auth.logout',
      action: 'E',
      actor: this.auditActor(actor, ctx),
      objects: [{ type: 'user', id: actor.userId }],
    });
  }

  async recordSessionExpired(session: { siteId: string; userId: string; role: string; sid: string }, reason: 'idle' | 'absolute', ctx: RequestContext): Promise<void> {
    this.emit('sessionsEnded', { siteId: session.siteId, userId: session.userId, sids: [session.sid], reason: 'expired' });
    await this.audit.record({
      siteId: session.siteId,
      type: 'auth.session.expire',
      action: 'E',
      actor: { userId: session.userId, role: session.role, ...ctx },
      objects: [{ type: 'user', id: session.userId }],
      details: { reason },
    });
  }

  /** Loads the current state of a session's user; null if gone. */
  async loadUser(siteId: string, userId: string): Promise<UserRecord | null> {
    return this.store.users.findById(siteId, userId);
  }

  // ---------------------------------------------------------------- self-service

  async changePassword(
    actor: Actor,
    ctx: RequestContext,
    input: { currentPassword: string; newPassword: string },
    keepSid: string,
  ): Promise<UserRecord> {
    requireAuthorized(actor, 'self.changePassword', { siteId: actor.siteId, ownerId: actor.userId });
    const user = await this.mustFindUser(actor.siteId, actor.userId);
    const site = await this.getSite(actor.siteId);
    if (!(await verifyPassword(user.passwordHash, input.currentPassword))) {
      await this.audit.record({
        siteId: actor.siteId,
        type: 'auth.password.change',
        action: 'U',
        outcome: 4,
        actor: this.auditActor(actor, ctx),
        objects: [{ type: 'user', id: user.id }],
        details: { reason: 'wrong_current_password' },
      });
      throw new AppError('INVALID_CREDENTIALS', 'The current password is not correct.');
    }
    checkPasswordPolicy(input.newPassword, site.policy, { email: user.email });
    if (await verifyPassword(user.passwordHash, input.newPassword)) {
      throw new AppError('PASSWORD_POLICY', 'The password does not meet the site policy: choose a different password from the current one.');
    }
    const updated = await this.store.users.update(actor.siteId, actor.userId, {
      passwordHash: await hashPassword(input.newPassword),
      mustChangePassword: false,
      updatedAt: this.clock().toISOString(),
      updatedBy: actor.userId,
    });
    await this.audit.record({
      siteId: actor.siteId,
      type: 'auth.password.change',
      action: 'U',
      actor: this.auditActor(actor, ctx),
      objects: [{ type: 'user', id: user.id }],
    });
    await this.revokeSessionsOf(actor.siteId, actor.userId, keepSid);
    return updated!;
  }

  async beginTotpEnrolment(actor: Actor, ctx: RequestContext): Promise<{ otpauthUri: string; qrDataUrl: string; secret: string }> {
    requireAuthorized(actor, 'self.manageTotp', { siteId: actor.siteId, ownerId: actor.userId });
    const user = await this.mustFindUser(actor.siteId, actor.userId);
    if (user.totpSecret) throw new AppError('CONFLICT', 'Two-factor authentication is already enrolled.');
    const secret = otp.generateSecret();
    const otpauthUri = otp.generateURI({ issuer: TOTP_ISSUER, label: user.email, secret });
    const qrDataUrl = await QRCode.toDataURL(otpauthUri, { errorCorrectionLevel: 'M', margin: 2 });
    await this.store.users.update(actor.siteId, actor.userId, {
      totpPendingSecret: await this.dataKeys.sealString(`site:${user.siteId}`, secret, `totp:${user.id}`),
      updatedAt: this.clock().toISOString(),
      updatedBy: actor.userId,
    });
    await this.audit.record({
      siteId: actor.siteId,
      type: 'auth.mfa.enrol.begin',
      action: 'E',
      actor: this.auditActor(actor, ctx),
      objects: [{ type: 'user', id: user.id }],
    });
    return { otpauthUri, qrDataUrl, secret };
  }

  async confirmTotpEnrolment(actor: Actor, ctx: RequestContext, code: string): Promise<UserRecord> {
    requireAuthorized(actor, 'self.manageTotp', { siteId: actor.siteId, ownerId: actor.userId });
    const user = await this.mustFindUser(actor.siteId, actor.userId);
    if (!user.totpPendingSecret) throw new AppError('CONFLICT', 'Start enrolment first.');
    const step = await this.checkTotp(await this.dataKeys.openString(user.totpPendingSecret, `totp:${user.id}`), code);
    const ok = step !== null;
    await this.audit.record({
      siteId: actor.siteId,
      type: 'auth.mfa.enrol',
      action: 'U',
      outcome: ok ? 0 : 4,
      actor: this.auditActor(actor, ctx),
      objects: [{ type: 'user', id: user.id }],
    });
    if (!ok) throw new AppError('INVALID_CREDENTIALS', 'The code is not correct. Check the time on your device and try again.');
    const updated = await this.store.users.update(actor.siteId, actor.userId, {
      totpSecret: user.totpPendingSecret,
      totpPendingSecret: null,
      totpLastStep: step,
      updatedAt: this.clock().toISOString(),
      updatedBy: actor.userId,
    });
    return updated!;
  }

  async disableTotp(actor: Actor, ctx: RequestContext, password: string): Promise<UserRecord> {
    requireAuthorized(actor, 'self.manageTotp', { siteId: actor.siteId, ownerId: actor.userId });
    const site = await this.getSite(actor.siteId);
    if (site.policy.requireTotp) throw new AppError('FORBIDDEN', 'This site requires two-factor authentication.');
    const user = await this.mustFindUser(actor.siteId, actor.userId);
    const ok = await verifyPassword(user.passwordHash, password);
    await this.audit.record({
      siteId: actor.siteId,
      type: 'auth.mfa.disable',
      action: 'U',
      outcome: ok ? 0 : 4,
      actor: this.auditActor(actor, ctx),
      objects: [{ type: 'user', id: user.id }],
    });
    if (!ok) throw new AppError('INVALID_CREDENTIALS', 'The password is not correct.');
    const updated = await this.store.users.update(actor.siteId, actor.userId, {
      totpSecret: null,
      totpPendingSecret: null,
      totpLastStep: null,
      updatedAt: this.clock().toISOString(),
      updatedBy: actor.userId,
    });
    return updated!;
  }

  // ---------------------------------------------------------------- administration

  /**
   * Security alerts for the site's admins (seeds: lockouts "alert site admins"): lockouts and
   * failed logins of the last `days`, newest first, from the audit trail. Reading them is audited.
   */
  async alerts(actor: Actor, ctx: RequestContext, days: number): Promise<{ lockouts: Alert[]; failedLogins: number; since: string }> {
    requireAuthorized(actor, 'site.readAlerts', { siteId: actor.siteId });
    const since = new Date(this.clock().getTime() - days * 24 * 3600 * 1000).toISOString();
    const lockouts = await this.store.audit.listRecent(actor.siteId, ['auth.lockout'], since, 200);
    const failures = (await this.store.audit.listRecent(actor.siteId, ['auth.login'], since, 10_000)).filter((r) => r.outcome !== 0);
    const names = new Map((await this.store.users.listBySite(actor.siteId)).map((u) => [u.id, u]));
    await this.audit.record({ siteId: actor.siteId, type: 'site.alerts.read', action: 'R', actor: this.auditActor(actor, ctx), objects: [{ type: 'site', id: actor.siteId }] });
    return {
      since,
      failedLogins: failures.length,
      lockouts: lockouts.map((r) => {
        const userId = r.objects.find((o) => o.type === 'user')?.id ?? '';
        const user = names.get(userId);
        return { at: r.time, userId, email: user?.email ?? null, name: user?.name ?? null, ip: r.actor.ip, lockedUntil: String(r.details.lockedUntil ?? '') };
      }),
    };
  }

  async listUsers(actor: Actor, ctx: RequestContext): Promise<UserRecord[]> {
    requireAuthorized(actor, 'user.list', { siteId: actor.siteId });
    const users = await this.store.users.listBySite(actor.siteId);
    await this.audit.record({
      siteId: actor.siteId,
      type: 'user.list',
      action: 'R',
      actor: this.auditActor(actor, ctx),
      objects: [{ type: 'site', id: actor.siteId }],
      details: { count: users.length },
    });
    return users;
  }

  async getUser(actor: Actor, ctx: RequestContext, userId: string): Promise<UserRecord> {
    const user = await this.mustFindUser(actor.siteId, userId);
    requireAuthorized(actor, 'user.read', { siteId: user.siteId, ownerId: user.id });
    await this.audit.record({
      siteId: actor.siteId,
      type: 'user.read',
      action: 'R',
      actor: this.auditActor(actor, ctx),
      objects: [{ type: 'user', id: user.id }],
    });
    return user;
  }

  /**
   * Creates a user with a one-time password that must be changed at first login. The password is
   * returned once, to be handed over by the admin; only its hash is kept.
   */
  async createUser(
    actor: Actor | null,
    ctx: RequestContext,
    input: { siteId?: string; email: string; name: string; role: Role; permissions?: Partial<Permissions> },
  ): Promise<{ user: UserRecord; oneTimePassword: string }> {
    const siteId = actor ? actor.siteId : input.siteId!;
    if (actor) requireAuthorized(actor, 'user.create', { siteId });
    const oneTimePassword = newOneTimePassword();
    const now = this.clock().toISOString();
    const user: UserRecord = {
      id: newId(),
      siteId,
      email: input.email,
      name: input.name,
      role: input.role,
      permissions: { ...defaultPermissions(input.role), ...input.permissions },
      passwordHash: await hashPassword(oneTimePassword),
      mustChangePassword: true,
      totpSecret: null,
      totpPendingSecret: null,
      totpLastStep: null,
      failedLoginCount: 0,
      failedLoginWindowStart: null,
      lockedUntil: null,
      createdAt: now,
      updatedAt: now,
      createdBy: actor?.userId ?? null,
      updatedBy: actor?.userId ?? null,
    };
    try {
      await this.store.users.create(user);
    } catch (err) {
      if (err instanceof DuplicateKeyError) throw new AppError('CONFLICT', 'A user with this e-mail address already exists.');
      throw err;
    }
    await this.audit.record({
      siteId,
      type: 'user.create',
      action: 'C',
      actor: actor ? this.auditActor(actor, ctx) : { userId: null, role: 'system', ...ctx },
      objects: [{ type: 'user', id: user.id }],
      details: { role: user.role, ...permissionDetails(user.permissions) },
    });
    return { user, oneTimePassword };
  }

  async updateUser(
    actor: Actor,
    ctx: RequestContext,
    userId: string,
    patch: { name?: string; role?: Role; permissions?: Partial<Permissions> },
  ): Promise<UserRecord> {
    const user = await this.mustFindUser(actor.siteId, userId);
    requireAuthorized(actor, 'user.update', { siteId: user.siteId });
    const permissions = { ...user.permissions, ...patch.permissions };
    const role = patch.role ?? user.role;
    if (user.id === actor.userId && (role !== 'site_admin' || permissions.stopAccess)) {
      // A site admin cannot lock themself out; another admin must do it.
      throw new AppError('CONFLICT', 'You cannot remove your own administrator role or stop your own access.');
    }
    const updated = await this.store.users.update(actor.siteId, userId, {
      name: patch.name,
      role,
      permissions,
      updatedAt: this.clock().toISOString(),
      updatedBy: actor.userId,
    });
    if (!updated) throw new NotFoundError();
    const base = { siteId: actor.siteId, actor: this.auditActor(actor, ctx), objects: [{ type: 'user', id: userId }] };
    if (role !== user.role) {
      await this.audit.record({ ...base, type: 'user.role.change', action: 'U', details: { from: user.role, to: role } });
    }
    for (const key of Object.keys(permissions) as (keyof Permissions)[]) {
      if (permissions[key] !== user.permissions[key]) {
        await this.audit.record({
          ...base,
          type: 'user.permission.change',
          action: 'U',
          details: { permission: key, from: user.permissions[key], to: permissions[key] },
        });
      }
    }
    if (patch.name !== undefined && patch.name !== user.name) {
      await this.audit.record({ ...base, type: 'user.update', action: 'U', details: { field: 'name' } });
    }
    if (permissions.stopAccess && !user.permissions.stopAccess) {
      await this.revokeSessionsOf(actor.siteId, userId);
    }
    return updated;
  }

  async resetPassword(actor: Actor, ctx: RequestContext, userId: string): Promise<{ user: UserRecord; oneTimePassword: string }> {
    const user = await this.mustFindUser(actor.siteId, userId);
    requireAuthorized(actor, 'user.resetPassword', { siteId: user.siteId });
    const oneTimePassword = newOneTimePassword();
    const updated = await this.store.users.update(actor.siteId, userId, {
      passwordHash: await hashPassword(oneTimePassword),
      mustChangePassword: true,
      failedLoginCount: 0,
      failedLoginWindowStart: null,
      lockedUntil: null,
      updatedAt: this.clock().toISOString(),
      updatedBy: actor.userId,
    });
    await this.audit.record({
      siteId: actor.siteId,
      type: 'auth.password.reset',
      action: 'U',
      actor: this.auditActor(actor, ctx),
      objects: [{ type: 'user', id: userId }],
    });
    await this.revokeSessionsOf(actor.siteId, userId);
    return { user: updated!, oneTimePassword };
  }

  /**
   * Clears a lockout and the failure count before the lock expires (the user called the help desk
   * and proved who they are); the password stays. Audited like every account change.
   */
  async unlockUser(actor: Actor, ctx: RequestContext, userId: string): Promise<UserRecord> {
    const user = await this.mustFindUser(actor.siteId, userId);
    requireAuthorized(actor, 'user.unlock', { siteId: user.siteId });
    const wasLocked = !!user.lockedUntil && Date.parse(user.lockedUntil) > this.clock().getTime();
    const updated = await this.store.users.update(actor.siteId, userId, {
      failedLoginCount: 0,
      failedLoginWindowStart: null,
      lockedUntil: null,
      updatedAt: this.clock().toISOString(),
      updatedBy: actor.userId,
    });
    await this.audit.record({
      siteId: actor.siteId,
      type: 'auth.unlock',
      action: 'U',
      actor: this.auditActor(actor, ctx),
      objects: [{ type: 'user', id: userId }],
      details: { wasLocked },
    });
    return updated!;
  }

  async revokeSessions(actor: Actor, ctx: RequestContext, userId: string): Promise<number> {
    const user = await this.mustFindUser(actor.siteId, userId);
    requireAuthorized(actor, 'user.revokeSessions', { siteId: user.siteId });
    const sids = await this.revokeSessionsOf(actor.siteId, userId);
    await this.audit.record({
      siteId: actor.siteId,
      type: 'auth.session.revoke',
      action: 'D',
      actor: this.auditActor(actor, ctx),
      objects: [{ type: 'user', id: userId }],
      details: { sessions: sids.length },
    });
    return sids.length;
  }

  private async revokeSessionsOf(siteId: string, userId: string, keepSid?: string): Promise<string[]> {
    const sids = await this.store.sessions.destroyByUser(siteId, userId, keepSid);
    this.emit('sessionsEnded', { siteId, userId, sids, reason: 'revoked' });
    return sids;
  }

  private async mustFindUser(siteId: string, userId: string): Promise<UserRecord> {
    const user = await this.store.users.findById(siteId, userId);
    if (!user) throw new NotFoundError();
    return user;
  }

  auditActor(actor: Actor, ctx: RequestContext): AuditActor {
    return { userId: actor.userId, role: actor.role, ip: ctx.ip, userAgent: ctx.userAgent };
  }

  /** The actor of a loaded user record (permissions as they are now, not as at login). */
  static actorOf(user: UserRecord): Actor {
    return { userId: user.id, siteId: user.siteId, role: user.role, permissions: user.permissions };
  }
}

function permissionDetails(p: Permissions): Record<string, boolean> {
  return { ...p };
}

