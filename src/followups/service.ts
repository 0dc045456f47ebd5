// Patient video follow-ups: scheduling, the single-use invite (a random token of which only the
// hash is kept), the patient's consent, verification, waiting, admission and end. State lives in
// the store (every change compare-and-set, so nodes cannot race); this service announces each
// change ('changed', 'alert', 'message', 'closed') and the realtime layer delivers it.
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { RateLimiterAbstract } from 'rate-limiter-flexible';
import { RateLimiterRes } from 'rate-limiter-flexible';
import type { AuditDetails } from '../audit/model';
import type { AuditService } from '../audit/service';
import { caseKeyOwner, patientContext } from '../cases/service';
import type { DataKeys } from '../crypto/dataKeys';
import { AppError, NotFoundError } from '../errors';
import { consume } from '../http/rateLimit';
import { requireAuthorized, type Actor } from '../identity/authorize';
import type { RequestContext } from '../identity/service';
import { newId } from '../ids';
import type { Patient } from '../protocol/cases';
import {
  CONSENT,
  type CreatedFollowUp,
  type FollowUpAlertKind,
  type PatientMessage,
  type PatientState,
  type PatientView,
  type PublicFollowUp,
  type Verification,
} from '../protocol/followups';
import type { Store } from '../store/types';
import type { FollowUpPatch, FollowUpRecord } from './model';

/** SHA-256 of the exact consent text shown, stored with each consent. */
export const CONSENT_TEXT_SHA256 = createHash('sha256')
  .update([CONSENT.version, CONSENT.title, ...CONSENT.paragraphs].join('\n'))
  .digest('hex');

/** What a patient session holds (src/http/session.ts SessionData.patient). */
export interface PatientSession {
  followUpId: string;
  siteId: string;
  bindingId: string;
  until: number;
}

export type ClosedReason = 'ended' | 'declined' | 'expired' | 'replaced';

interface FollowUpEvents {
  changed: [FollowUpRecord];
  alert: [FollowUpRecord, FollowUpAlertKind];
  message: [FollowUpRecord, PatientMessage];
  /** The patient device's access ended: tell it, then close its sockets. */
  closed: [FollowUpRecord, ClosedReason];
}

export interface FollowUpSettings {
  publicUrl: string;
  /** A patient session ends after this long without activity. */
  patientIdleMs: number;
  /** Wrong verification answers before the invite stops working. */
  maxVerificationFailures: number;
}

export interface FollowUpLimiters {
  /** Invite-open attempts per client IP. */
  openPerIp: RateLimiterAbstract;
  /** Failed invite-open attempts per follow-up id named in the token (existing or not). */
  failuresPerInvite: RateLimiterAbstract;
}

const FINAL: readonly PatientState[] = ['declined', 'ended'];
const MAX_MESSAGES = 20;
const TOKEN_BYTES = 32;
const ID_RE = /^[A-Za-z0-9_-]{22}$/;
const contactLabelContext = (id: string) => `followup-label:${id}`;
const hashSecret = (secret: string) => createHash('sha256').update(secret, 'utf8').digest();

export class FollowUpService extends EventEmitter<FollowUpEvents> {
  constructor(
    private readonly store: Store,
    private readonly audit: AuditService,
    private readonly dataKeys: DataKeys,
    private readonly settings: FollowUpSettings,
    private readonly limiters: FollowUpLimiters,
    private readonly clock: () => Date = () => new Date(),
  ) {
    super();
  }

  get patientIdleMs(): number {
    return this.settings.patientIdleMs;
  }

  // --- clinicians -----------------------------------------------------------------------------

  async create(
    actor: Actor,
    ctx: RequestContext,
    caseId: string,
    input: { startsAt: string; endsAt: string; contactLabel: string; verification: Verification | null; colleagues: string[] },
  ): Promise<CreatedFollowUp> {
    const record = await this.store.cases.findById(actor.siteId, caseId);
    if (!record) throw new NotFoundError();
    requireAuthorized(actor, 'case.read', { siteId: record.siteId });
    requireAuthorized(actor, 'followup.create', { siteId: record.siteId });
    const now = this.clock();
    const startsAt = new Date(input.startsAt).toISOString();
    const endsAt = new Date(input.endsAt).toISOString();
    if (Date.parse(endsAt) <= now.getTime()) throw new AppError('VALIDATION_FAILED', undefined, [{ path: 'endsAt', issue: 'the window must end in the future' }]);
    if (input.verification === 'dateOfBirth' && !record.patientSealed) {
      throw new AppError('VALIDATION_FAILED', undefined, [{ path: 'verification', issue: 'the case has no patient details to compare with' }]);
    }
    const colleagues = [...new Set(input.colleagues.filter((id) => id !== actor.userId))];
    for (const userId of colleagues) {
      const user = await this.store.users.findById(actor.siteId, userId);
      if (!user) throw new AppError('VALIDATION_FAILED', undefined, [{ path: 'colleagues', issue: 'not a user of this site' }]);
    }
    const id = newId();
    const secret = randomBytes(TOKEN_BYTES).toString('base64url');
    const stamp = now.toISOString();
    const followUp: FollowUpRecord = {
      id,
      siteId: record.siteId,
      caseId: record.id,
      hostUserId: actor.userId,
      colleagues,
      contactLabelSealed: await this.dataKeys.sealString(caseKeyOwner(record.id), input.contactLabel, contactLabelContext(id)),
      startsAt,
      endsAt,
      verification: input.verification,
      tokenHash: hashSecret(secret).toString('hex'),
      state: 'invited',
      bindingId: null,
      bound: false,
      deviceCheck: null,
      waitingSince: null,
      verifiedAt: null,
      failedVerifications: 0,
      messages: [],
      inviteSentAt: null,
      consentedAt: null,
      admittedAt: null,
      endedAt: null,
      createdAt: stamp,
      updatedAt: stamp,
    };
    await this.store.followUps.create(followUp);
    await this.record(followUp, actor, ctx, 'followup.invite.create', 'C', { startsAt, endsAt, verification: input.verification, colleagues: colleagues.length });
    // The token goes in the fragment: browsers never send it to the server in a request line,
    // a Referer or a proxy log; the page posts it once to /api/followup/open.
    return { followUp: await this.toPublic(followUp), inviteUrl: `${this.settings.publicUrl.replace(/\/$/, '')}/followup.html#t=${id}.${secret}` };
  }

  /** The follow-up, if `actor` hosts it or was invited to it; NOT_FOUND otherwise. */
  async mustFindForStaff(actor: Actor, followUpId: string): Promise<FollowUpRecord> {
    const record = await this.store.followUps.findById(followUpId);
    if (!record || record.siteId !== actor.siteId) throw new NotFoundError();
    requireAuthorized(actor, 'followup.manage', { siteId: record.siteId });
    if (record.hostUserId !== actor.userId && !record.colleagues.includes(actor.userId)) throw new NotFoundError();
    return record;
  }

  async listMine(actor: Actor): Promise<PublicFollowUp[]> {
    requireAuthorized(actor, 'followup.manage', { siteId: actor.siteId });
    const day = 24 * 3600 * 1000;
    // Those still open, and the ones that ended today (so the list does not jump when one ends).
    const records = await this.store.followUps.listForUser(actor.siteId, actor.userId, new Date(this.clock().getTime() - day).toISOString());
    return Promise.all(records.map((r) => this.toPublic(r)));
  }

  async listByCase(actor: Actor, caseId: string): Promise<PublicFollowUp[]> {
    const record = await this.store.cases.findById(actor.siteId, caseId);
    if (!record) throw new NotFoundError();
    requireAuthorized(actor, 'case.read', { siteId: record.siteId });
    requireAuthorized(actor, 'followup.manage', { siteId: record.siteId });
    return Promise.all((await this.store.followUps.listByCase(actor.siteId, caseId)).map((r) => this.toPublic(r)));
  }

  async get(actor: Actor, ctx: RequestContext, followUpId: string) {
    const record = await this.mustFindForStaff(actor, followUpId);
    const consents = await this.store.followUps.listConsents(record.siteId, record.id);
    await this.record(record, actor, ctx, 'followup.read', 'R', {});
    return {
      followUp: await this.toPublic(record),
      consents: consents.map((c) => ({ textVersion: c.textVersion, textSha256: c.textSha256, givenAt: c.givenAt, ip: c.ip, userAgent: c.userAgent })),
    };
  }

  async markSent(actor: Actor, ctx: RequestContext, followUpId: string, channel: string): Promise<PublicFollowUp> {
    const updated = await this.transition(await this.mustFindForStaff(actor, followUpId), (r) => {
      if (FINAL.includes(r.state)) throw new AppError('CONFLICT', 'This follow-up has ended.');
      return { inviteSentAt: this.now() };
    });
    await this.record(updated, actor, ctx, 'followup.invite.sent', 'U', { channel });
    return this.toPublic(updated);
  }

  async addColleague(actor: Actor, ctx: RequestContext, followUpId: string, userId: string): Promise<PublicFollowUp> {
    // The host or an invited colleague may bring in another colleague of the site.
    const record = await this.mustFindForStaff(actor, followUpId);
    const user = await this.store.users.findById(actor.siteId, userId);
    if (!user) throw new NotFoundError();
    const updated = await this.transition(record, (r) => {
      if (FINAL.includes(r.state)) throw new AppError('CONFLICT', 'This follow-up has ended.');
      if (r.colleagues.includes(userId) || r.hostUserId === userId) return {};
      if (r.colleagues.length >= 10) throw new AppError('LIMIT_REACHED');
      return { colleagues: [...r.colleagues, userId] };
    });
    await this.record(updated, actor, ctx, 'followup.colleague.add', 'U', {}, [{ type: 'user', id: userId }]);
    this.emit('changed', updated);
    return this.toPublic(updated);
  }

  async admit(actor: Actor, ctx: RequestContext, followUpId: string): Promise<PublicFollowUp> {
    const record = await this.mustFindForStaff(actor, followUpId);
    const readmission = record.bound;
    const updated = await this.transition(record, (r) => {
      this.requireOpen(r);
      if (r.state !== 'waiting') throw new AppError('CONFLICT', 'The patient is not in the waiting room.');
      // From the first admission on, the invite belongs to this device only.
      return { state: 'admitted', bound: true, admittedAt: this.now(), waitingSince: null };
    });
    await this.record(updated, actor, ctx, 'followup.admit', 'U', { readmission });
    this.emit('changed', updated);
    return this.toPublic(updated);
  }

  async decline(actor: Actor, ctx: RequestContext, followUpId: string): Promise<PublicFollowUp> {
    const updated = await this.transition(await this.mustFindForStaff(actor, followUpId), (r) => {
      this.requireOpen(r);
      if (r.state === 'admitted') throw new AppError('CONFLICT', 'The patient is in the call: end the follow-up instead.');
      return { state: 'declined', endedAt: this.now(), waitingSince: null };
    });
    await this.record(updated, actor, ctx, 'followup.decline', 'U', {});
    this.emit('changed', updated);
    this.emit('closed', updated, 'declined');
    return this.toPublic(updated);
  }

  async end(actor: Actor, ctx: RequestContext, followUpId: string): Promise<PublicFollowUp> {
    const updated = await this.transition(await this.mustFindForStaff(actor, followUpId), (r) => {
      if (FINAL.includes(r.state)) throw new AppError('CONFLICT', 'This follow-up has already ended.');
      return { state: 'ended', endedAt: this.now(), waitingSince: null };
    });
    await this.record(updated, actor, ctx, 'followup.end', 'U', {});
    this.emit('changed', updated);
    this.emit('closed', updated, 'ended');
    return this.toPublic(updated);
  }

  async message(actor: Actor, ctx: RequestContext, followUpId: string, text: string): Promise<PublicFollowUp> {
    const message = { text, at: this.now() };
    const updated = await this.transition(await this.mustFindForStaff(actor, followUpId), (r) => {
      this.requireOpen(r);
      return { messages: [...r.messages, message].slice(-MAX_MESSAGES) };
    });
    // The text itself is not audited: it may name the patient.
    await this.record(updated, actor, ctx, 'followup.message', 'U', { length: text.length });
    this.emit('message', updated, message);
    return this.toPublic(updated);
  }

  // --- the patient ----------------------------------------------------------------------------

  /**
   * Opens an invite from its token. Every failure (malformed, unknown, wrong secret, expired,
   * ended, declined, held by another device) is the same INVITE_INVALID, and counts against the
   * IP and against the follow-up the token names.
   */
  async open(token: string, ctx: RequestContext, current: PatientSession | undefined): Promise<{ record: FollowUpRecord; session: PatientSession }> {
    await consume(this.limiters.openPerIp, ctx.ip ?? 'unknown');
    const dot = token.indexOf('.');
    const claimedId = dot > 0 ? token.slice(0, dot) : '';
    const secret = dot > 0 ? token.slice(dot + 1) : token;
    const inviteKey = ID_RE.test(claimedId) ? claimedId : 'malformed';
    const budget = await this.limiters.failuresPerInvite.get(inviteKey);
    if (budget && budget.remainingPoints <= 0) throw new AppError('RATE_LIMITED');
    const record = ID_RE.test(claimedId) ? await this.store.followUps.findById(claimedId) : null;
    // Hash and compare whatever happened above: the answer takes as long for an unknown id.
    const expected = record ? Buffer.from(record.tokenHash, 'hex') : hashSecret('absent');
    const secretMatches = timingSafeEqual(hashSecret(secret), expected) && record !== null;
    const now = this.clock().getTime();
    let reason: string | null = null;
    if (!record || !secretMatches) reason = record ? 'wrong_secret' : 'unknown';
    else if (now >= Date.parse(record.endsAt)) reason = 'expired';
    else if (FINAL.includes(record.state)) reason = record.state;
    else if (record.bound && !(current?.followUpId === record.id && current.bindingId === record.bindingId)) reason = 'second_device';
    if (reason) {
      await this.fail(inviteKey, record, ctx, reason);
      if (reason === 'second_device' && record) this.emit('alert', record, 'second_device');
      throw new AppError('INVITE_INVALID');
    }
    const found = record!;
    const sameDevice = current?.followUpId === found.id && current.bindingId === found.bindingId && found.bindingId !== null;
    let updated = found;
    let device: 'same' | 'new' | 'replaced' = 'same';
    if (!sameDevice) {
      device = found.bindingId ? 'replaced' : 'new';
      const replacedState = found.state;
      // Before the first admission a new device takes the invite over (one device at a time):
      // the previous one loses access and this one starts again from consent.
      updated = await this.transition(found, () => ({ bindingId: newId(), state: 'opened', deviceCheck: null, waitingSince: null, verifiedAt: null }));
      if (device === 'replaced') this.emit('closed', { ...found, state: replacedState }, 'replaced');
      this.emit('changed', updated);
    }
    await this.record(updated, { userId: null, role: 'patient' }, ctx, 'followup.invite.open', 'R', { device });
    return {
      record: updated,
      session: { followUpId: updated.id, siteId: updated.siteId, bindingId: updated.bindingId!, until: Date.parse(updated.endsAt) },
    };
  }

  private async fail(inviteKey: string, record: FollowUpRecord | null, ctx: RequestContext, reason: string): Promise<void> {
    try {
      await this.limiters.failuresPerInvite.consume(inviteKey);
    } catch (err) {
      if (!(err instanceof RateLimiterRes)) throw err;
    }
    await this.audit.record({
      siteId: record?.siteId ?? null,
      type: 'followup.invite.open',
      action: 'R',
      outcome: 4,
      actor: { userId: null, role: 'patient', ip: ctx.ip, userAgent: ctx.userAgent },
      objects: record ? [{ type: 'followup', id: record.id }] : [],
      details: { reason },
    });
  }

  /** The follow-up behind a patient session while that session may still use it, else null. */
  async checkPatient(patient: PatientSession, now = this.clock().getTime()): Promise<FollowUpRecord | null> {
    if (now >= patient.until) return null;
    const record = await this.store.followUps.findById(patient.followUpId);
    if (!record || record.siteId !== patient.siteId || record.bindingId !== patient.bindingId) return null;
    if (FINAL.includes(record.state) || now >= Date.parse(record.endsAt)) return null;
    return record;
  }

  /** The stored record (for auditing after the fact), whatever its state. */
  findRecord(followUpId: string): Promise<FollowUpRecord | null> {
    return this.store.followUps.findById(followUpId);
  }

  async mustCheckPatient(patient: PatientSession): Promise<FollowUpRecord> {
    const record = await this.checkPatient(patient);
    if (!record) throw new AppError('INVITE_INVALID');
    return record;
  }

  patientView(record: FollowUpRecord): PatientView {
    return {
      followUpId: record.id,
      state: record.state,
      startsAt: record.startsAt,
      endsAt: record.endsAt,
      consent: CONSENT,
      consented: record.consentedAt !== null && record.state !== 'opened',
      verificationRequired: record.verification !== null,
      verified: record.verifiedAt !== null,
      messages: record.messages,
      idleMinutes: Math.round(this.settings.patientIdleMs / 60_000),
    };
  }

  /** Consent comes before anything else the patient can do; it is recorded, then audited. */
  async consent(patient: PatientSession, ctx: RequestContext): Promise<FollowUpRecord> {
    const record = await this.mustCheckPatient(patient);
    if (record.state !== 'opened') return record;
    const givenAt = this.now();
    await this.store.followUps.addConsent({
      id: newId(),
      siteId: record.siteId,
      followUpId: record.id,
      textVersion: CONSENT.version,
      textSha256: CONSENT_TEXT_SHA256,
      givenAt,
      ip: ctx.ip,
      userAgent: ctx.userAgent,
    });
    const updated = await this.transition(record, (r) => (r.state === 'opened' ? { state: 'consented', consentedAt: givenAt } : {}));
    await this.record(updated, { userId: null, role: 'patient' }, ctx, 'followup.consent', 'C', { textVersion: CONSENT.version, textSha256: CONSENT_TEXT_SHA256 });
    this.emit('changed', updated);
    return updated;
  }

  /** Checks the answer against the sealed patient record; the record's value never leaves. */
  async verify(patient: PatientSession, ctx: RequestContext, dateOfBirth: string): Promise<FollowUpRecord> {
    const record = await this.mustCheckPatient(patient);
    if (record.state === 'opened') throw new AppError('CONFLICT', 'Consent first.');
    if (!record.verification || record.verifiedAt) return record;
    const kase = await this.store.cases.findById(record.siteId, record.caseId);
    let matches = false;
    if (kase?.patientSealed) {
      const stored = (JSON.parse(await this.dataKeys.openString(kase.patientSealed, patientContext(kase.id))) as Patient).dateOfBirth;
      matches = timingSafeEqual(hashSecret(stored), hashSecret(dateOfBirth));
    }
    if (matches) {
      const updated = await this.transition(record, () => ({ verifiedAt: this.now() }));
      await this.record(updated, { userId: null, role: 'patient' }, ctx, 'followup.verify', 'E', {});
      return updated;
    }
    const failures = record.failedVerifications + 1;
    const tooMany = failures >= this.settings.maxVerificationFailures;
    const updated = await this.transition(record, (r) => (tooMany ? { failedVerifications: failures, state: 'ended', endedAt: this.now() } : { failedVerifications: r.failedVerifications + 1 }));
    await this.record(updated, { userId: null, role: 'patient' }, ctx, 'followup.verify', 'E', { failures, invitation: tooMany ? 'ended' : 'open' }, [], 4);
    this.emit('alert', updated, 'verification_failed');
    this.emit('changed', updated);
    if (tooMany) this.emit('closed', updated, 'ended');
    throw new AppError('VERIFICATION_FAILED');
  }

  /** The patient's page passed (or not) the device check and waits to be admitted. */
  async wait(patient: PatientSession, ctx: RequestContext, deviceCheck: { camera: boolean; microphone: boolean }): Promise<FollowUpRecord> {
    const record = await this.mustCheckPatient(patient);
    if (record.state === 'opened') throw new AppError('CONFLICT', 'Consent first.');
    if (record.verification && !record.verifiedAt) throw new AppError('CONFLICT', 'Answer the question first.');
    if (record.state === 'admitted') return record;
    const arriving = record.state !== 'waiting';
    const updated = await this.transition(record, (r) => ({ state: 'waiting', deviceCheck, waitingSince: r.state === 'waiting' ? r.waitingSince : this.now() }));
    if (arriving) {
      await this.record(updated, { userId: null, role: 'patient' }, ctx, 'followup.wait', 'E', { camera: deviceCheck.camera, microphone: deviceCheck.microphone });
      this.emit('alert', updated, 'arrived');
    }
    this.emit('changed', updated);
    return updated;
  }

  /** The patient's last socket went away: out of the waiting room, or dropped from the call. */
  async patientGone(patient: PatientSession, ctx: RequestContext): Promise<void> {
    const record = await this.checkPatient(patient);
    if (!record || (record.state !== 'waiting' && record.state !== 'admitted')) return;
    const next: PatientState = record.state === 'admitted' ? 'dropped' : 'left';
    const updated = await this.transition(record, (r) => (r.state === record.state ? { state: next, waitingSince: null } : {}));
    if (updated.state !== next) return;
    await this.record(updated, { userId: null, role: 'patient' }, ctx, next === 'dropped' ? 'followup.drop' : 'followup.wait.leave', 'E', {});
    this.emit('alert', updated, next);
    this.emit('changed', updated);
  }

  /** Audits a call join or leave (patient or staff). */
  async recordCall(record: FollowUpRecord, actor: { userId: string | null; role: string }, ctx: RequestContext, joined: boolean): Promise<void> {
    await this.record(record, actor, ctx, joined ? 'followup.call.join' : 'followup.call.leave', 'E', {});
  }

  // --- shared ---------------------------------------------------------------------------------

  async toPublic(r: FollowUpRecord): Promise<PublicFollowUp> {
    return {
      id: r.id,
      caseId: r.caseId,
      hostUserId: r.hostUserId,
      colleagues: r.colleagues,
      contactLabel: await this.dataKeys.openString(r.contactLabelSealed, contactLabelContext(r.id)),
      startsAt: r.startsAt,
      endsAt: r.endsAt,
      verification: r.verification,
      state: r.state,
      deviceCheck: r.deviceCheck,
      waitingSince: r.waitingSince,
      inviteSentAt: r.inviteSentAt,
      consentedAt: r.consentedAt,
      admittedAt: r.admittedAt,
      endedAt: r.endedAt,
      createdAt: r.createdAt,
    };
  }

  /** Who hears about a follow-up: its host and invited colleagues. */
  static staffOf(r: FollowUpRecord): string[] {
    return [r.hostUserId, ...r.colleagues];
  }

  private requireOpen(r: FollowUpRecord): void {
    if (FINAL.includes(r.state)) throw new AppError('CONFLICT', 'This follow-up has ended.');
    if (this.clock().getTime() >= Date.parse(r.endsAt)) throw new AppError('CONFLICT', 'The follow-up window is over.');
  }

  private now(): string {
    return this.clock().toISOString();
  }

  /**
   * Read-decide-write with compare-and-set: `decide` sees the latest record; if another writer
   * got in between, it runs again on the newer one. The stamp always moves forward, even when the
   * clock does not, so the compare-and-set can tell two writes in the same millisecond apart.
   */
  private async transition(record: FollowUpRecord, decide: (r: FollowUpRecord) => FollowUpPatch): Promise<FollowUpRecord> {
    let current = record;
    for (let attempt = 0; attempt < 5; attempt++) {
      const patch = decide(current);
      const stamp = new Date(Math.max(this.clock().getTime(), Date.parse(current.updatedAt) + 1)).toISOString();
      const updated = await this.store.followUps.update(current.id, current.updatedAt, { ...patch, updatedAt: stamp });
      if (updated) return updated;
      const fresh = await this.store.followUps.findById(current.id);
      if (!fresh) throw new NotFoundError();
      current = fresh;
    }
    throw new AppError('CONFLICT');
  }

  private async record(
    r: FollowUpRecord,
    actor: { userId: string | null; role: string },
    ctx: RequestContext,
    type: string,
    action: 'C' | 'R' | 'U' | 'D' | 'E',
    details: AuditDetails,
    extra: { type: string; id: string }[] = [],
    outcome: 0 | 4 = 0,
  ): Promise<void> {
    await this.audit.record({
      siteId: r.siteId,
      type,
      action,
      outcome,
      actor: { userId: actor.userId, role: actor.role, ip: ctx.ip, userAgent: ctx.userAgent },
      objects: [{ type: 'followup', id: r.id }, { type: 'case', id: r.caseId }, ...extra],
      details,
    });
  }
}
