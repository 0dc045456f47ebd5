// SQLite repository of patient follow-ups and their consent records (same contract as
// src/store/mongo/followups.ts). State changes are compare-and-set on updated_at, so two nodes
// admitting and ending the same follow-up at once cannot both win.
import type Database from 'better-sqlite3';
import type { ConsentRecord, FollowUpPatch, FollowUpRecord, FollowUpRepository } from '../../followups/model';
import type { PatientState, Verification } from '../../protocol/followups';

interface FollowUpRow {
  id: string;
  site_id: string;
  case_id: string;
  host_user_id: string;
  colleagues: string;
  contact_label_sealed: string;
  starts_at: string;
  ends_at: string;
  verification: string | null;
  token_hash: string;
  state: string;
  binding_id: string | null;
  bound: number;
  device_check: string | null;
  waiting_since: string | null;
  verified_at: string | null;
  failed_verifications: number;
  messages: string;
  invite_sent_at: string | null;
  consented_at: string | null;
  admitted_at: string | null;
  ended_at: string | null;
  created_at: string;
  updated_at: string;
}

const fromRow = (r: FollowUpRow): FollowUpRecord => ({
  id: r.id,
  siteId: r.site_id,
  caseId: r.case_id,
  hostUserId: r.host_user_id,
  colleagues: JSON.parse(r.colleagues) as string[],
  contactLabelSealed: r.contact_label_sealed,
  startsAt: r.starts_at,
  endsAt: r.ends_at,
  verification: r.verification as Verification | null,
  tokenHash: r.token_hash,
  state: r.state as PatientState,
  bindingId: r.binding_id,
  bound: r.bound === 1,
  deviceCheck: r.device_check ? (JSON.parse(r.device_check) as FollowUpRecord['deviceCheck']) : null,
  waitingSince: r.waiting_since,
  verifiedAt: r.verified_at,
  failedVerifications: r.failed_verifications,
  messages: JSON.parse(r.messages) as FollowUpRecord['messages'],
  inviteSentAt: r.invite_sent_at,
  consentedAt: r.consented_at,
  admittedAt: r.admitted_at,
  endedAt: r.ended_at,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

/** Column and value of each patchable field. */
const COLUMNS: Record<keyof FollowUpPatch | 'updatedAt', [string, (v: unknown) => unknown]> = {
  colleagues: ['colleagues', (v) => JSON.stringify(v)],
  state: ['state', (v) => v],
  bindingId: ['binding_id', (v) => v],
  bound: ['bound', (v) => (v ? 1 : 0)],
  deviceCheck: ['device_check', (v) => (v === null ? null : JSON.stringify(v))],
  waitingSince: ['waiting_since', (v) => v],
  verifiedAt: ['verified_at', (v) => v],
  failedVerifications: ['failed_verifications', (v) => v],
  messages: ['messages', (v) => JSON.stringify(v)],
  inviteSentAt: ['invite_sent_at', (v) => v],
  consentedAt: ['consented_at', (v) => v],
  admittedAt: ['admitted_at', (v) => v],
  endedAt: ['ended_at', (v) => v],
  updatedAt: ['updated_at', (v) => v],
};

interface ConsentRow {
  id: string;
  site_id: string;
  follow_up_id: string;
  text_version: string;
  text_sha256: string;
  given_at: string;
  ip: string | null;
  user_agent: string | null;
}

export class SqliteFollowUps implements FollowUpRepository {
  constructor(private readonly db: Database.Database) {}

  async create(r: FollowUpRecord): Promise<void> {
    this.db
      .prepare(
        `INSERT INTO follow_ups (id, site_id, case_id, host_user_id, colleagues, contact_label_sealed, starts_at, ends_at, verification,
           token_hash, state, binding_id, bound, device_check, waiting_since, verified_at, failed_verifications, messages,
           invite_sent_at, consented_at, admitted_at, ended_at, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        r.id,
        r.siteId,
        r.caseId,
        r.hostUserId,
        JSON.stringify(r.colleagues),
        r.contactLabelSealed,
        r.startsAt,
        r.endsAt,
        r.verification,
        r.tokenHash,
        r.state,
        r.bindingId,
        r.bound ? 1 : 0,
        r.deviceCheck ? JSON.stringify(r.deviceCheck) : null,
        r.waitingSince,
        r.verifiedAt,
        r.failedVerifications,
        JSON.stringify(r.messages),
        r.inviteSentAt,
        r.consentedAt,
        r.admittedAt,
        r.endedAt,
        r.createdAt,
        r.updatedAt,
      );
  }

  async findById(id: string): Promise<FollowUpRecord | null> {
    const row = this.db.prepare('SELECT * FROM follow_ups WHERE id = ?').get(id) as FollowUpRow | undefined;
    return row ? fromRow(row) : null;
  }

  async update(id: string, expectUpdatedAt: string, patch: FollowUpPatch & { updatedAt: string }): Promise<FollowUpRecord | null> {
    const entries = Object.entries(patch).filter(([, v]) => v !== undefined) as [keyof typeof COLUMNS, unknown][];
    const sets = entries.map(([k]) => `${COLUMNS[k][0]} = ?`).join(', ');
    const values = entries.map(([k, v]) => COLUMNS[k][1](v));
    return this.db
      .transaction(() => {
        const changed = this.db.prepare(`UPDATE follow_ups SET ${sets} WHERE id = ? AND updated_at = ?`).run(...values, id, expectUpdatedAt).changes;
        if (changed !== 1) return null;
        return fromRow(this.db.prepare('SELECT * FROM follow_ups WHERE id = ?').get(id) as FollowUpRow);
      })
      .immediate();
  }

  async listForUser(siteId: string, userId: string, after: string): Promise<FollowUpRecord[]> {
    const rows = this.db
      .prepare(
        `SELECT * FROM follow_ups WHERE site_id = ? AND ends_at > ?
           AND (host_user_id = ? OR EXISTS (SELECT 1 FROM json_each(colleagues) WHERE value = ?))
         ORDER BY starts_at, id`,
      )
      .all(siteId, after, userId, userId) as FollowUpRow[];
    return rows.map(fromRow);
  }

  async listByCase(siteId: string, caseId: string): Promise<FollowUpRecord[]> {
    const rows = this.db.prepare('SELECT * FROM follow_ups WHERE site_id = ? AND case_id = ? ORDER BY starts_at, id').all(siteId, caseId) as FollowUpRow[];
    return rows.map(fromRow);
  }

  async addConsent(c: ConsentRecord): Promise<void> {
    this.db
      .prepare('INSERT INTO follow_up_consents (id, site_id, follow_up_id, text_version, text_sha256, given_at, ip, user_agent) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
      .run(c.id, c.siteId, c.followUpId, c.textVersion, c.textSha256, c.givenAt, c.ip, c.userAgent);
  }

  async listConsents(siteId: string, followUpId: string): Promise<ConsentRecord[]> {
    const rows = this.db.prepare('SELECT * FROM follow_up_consents WHERE site_id = ? AND follow_up_id = ? ORDER BY given_at, id').all(siteId, followUpId) as ConsentRow[];
    return rows.map((r) => ({
      id: r.id,
      siteId: r.site_id,
      followUpId: r.follow_up_id,
      textVersion: r.text_version,
      textSha256: r.text_sha256,
      givenAt: r.given_at,
      ip: r.ip,
      userAgent: r.user_agent,
    }));
  }

  async purge(siteId: string, filter: { endedBefore: string } | { caseId: string }): Promise<number> {
    // Consent records go by ON DELETE CASCADE in the same statement.
    if ('caseId' in filter) return this.db.prepare('DELETE FROM follow_ups WHERE site_id = ? AND case_id = ?').run(siteId, filter.caseId).changes;
    return this.db.prepare('DELETE FROM follow_ups WHERE site_id = ? AND ends_at < ?').run(siteId, filter.endedBefore).changes;
  }
}
