// Embedded store: one better-sqlite3 file in DATA_DIR, WAL with synchronous=FULL, so a write
// is on disk before the call returns and therefore before any user action is acknowledged.
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import { USAGE_TYPES, type AuditCursor, type AuditFilter, type AuditRecord, type AuditRepository, type AuditUsageAggregates } from '../../audit/model';
import type { SiteRecord, UserRecord } from '../../identity/model';
import type {
  LockoutRule,
  SessionRecord,
  SessionRepository,
  SiteRepository,
  UserPatch,
  UserRepository,
} from '../../identity/repository';
import type { SitePolicy } from '../../protocol/identity';
import { DuplicateKeyError, type Store } from '../types';
import { SqliteCases, SqliteDataKeys, SqliteMaterials, SqliteTransfers } from './cases';
import { SqliteAnnotations, SqliteChat } from './collab';
import { SqliteRadiology } from './radiology';
import { SqliteFollowUps } from './followups';
import { migrate } from './migrations';
import type { CaseRepository, MaterialRepository, TransferRepository } from '../../cases/model';
import type { DataKeyRepository } from '../../crypto/dataKeys';
import type { AnnotationRepository } from '../../annotations/model';
import type { ChatRepository } from '../../chat/model';

export function openSqlite(file: string): Database.Database {
  if (file !== ':memory:') fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  db.pragma('foreign_keys = ON');
  db.pragma('busy_timeout = 5000');
  try {
    migrate(db);
  } catch (err) {
    db.close();
    throw err;
  }
  cachePreparedStatements(db);
  return db;
}

/**
 * Compiles each SQL text once: the repositories call `db.prepare(sql)` per operation, and
 * compiling was ~9 % of the event loop under tile load (docs/benchmarks.md). Statements are
 * reusable; none of ours is iterated while another use could start, so sharing them is safe.
 */
function cachePreparedStatements(db: Database.Database): void {
  const compile = db.prepare.bind(db);
  const cache = new Map<string, Database.Statement>();
  db.prepare = ((sql: string) => {
    let statement = cache.get(sql);
    if (!statement) {
      statement = compile(sql);
      cache.set(sql, statement);
    }
    return statement;
  }) as typeof db.prepare;
}

// Transactions that read and then write run as BEGIN IMMEDIATE (`.immediate()`): a deferred
// transaction upgrading to a writer cannot wait on busy_timeout and fails with "database is
// locked" when another process (a second node on the same file) writes at the same moment.

function isUniqueViolation(err: unknown): boolean {
  // Not `instanceof Error`: the native addon's errors may come from another realm (Jest's vm).
  return typeof err === 'object' && err !== null && (err as { code?: string }).code === 'SQLITE_CONSTRAINT_UNIQUE';
}

const bool = (v: boolean) => (v ? 1 : 0);

interface UserRow {
  id: string;
  site_id: string;
  email: string;
  name: string;
  role: string;
  permissions: string;
  password_hash: string;
  must_change_password: number;
  totp_secret: string | null;
  totp_pending_secret: string | null;
  totp_last_step: number | null;
  failed_login_count: number;
  failed_login_window_start: string | null;
  locked_until: string | null;
  created_at: string;
  updated_at: string;
  created_by: string | null;
  updated_by: string | null;
}

function userFromRow(r: UserRow): UserRecord {
  return {
    id: r.id,
    siteId: r.site_id,
    email: r.email,
    name: r.name,
    role: r.role as UserRecord['role'],
    permissions: JSON.parse(r.permissions),
    passwordHash: r.password_hash,
    mustChangePassword: r.must_change_password === 1,
    totpSecret: r.totp_secret,
    totpPendingSecret: r.totp_pending_secret,
    totpLastStep: r.totp_last_step,
    failedLoginCount: r.failed_login_count,
    failedLoginWindowStart: r.failed_login_window_start,
    lockedUntil: r.locked_until,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
    createdBy: r.created_by,
    updatedBy: r.updated_by,
  };
}

const USER_COLUMNS: Record<keyof Omit<UserPatch, never>, string> = {
  name: 'name',
  role: 'role',
  permissions: 'permissions',
  passwordHash: 'password_hash',
  mustChangePassword: 'must_change_password',
  totpSecret: 'totp_secret',
  totpPendingSecret: 'totp_pending_secret',
  totpLastStep: 'totp_last_step',
  failedLoginCount: 'failed_login_count',
  failedLoginWindowStart: 'failed_login_window_start',
  lockedUntil: 'locked_until',
  updatedAt: 'updated_at',
  updatedBy: 'updated_by',
};

function toColumnValue(key: keyof UserPatch, value: unknown): unknown {
  if (key === 'permissions') return JSON.stringify(value);
  if (typeof value === 'boolean') return bool(value);
  return value;
}

class SqliteSites implements SiteRepository {
  constructor(private readonly db: Database.Database) {}

  async create(site: SiteRecord): Promise<void> {
    try {
      this.db
        .prepare('INSERT INTO sites (id, name, policy, created_at, updated_at) VALUES (?, ?, ?, ?, ?)')
        .run(site.id, site.name, JSON.stringify(site.policy), site.createdAt, site.updatedAt);
    } catch (err) {
      if (isUniqueViolation(err) || (err as { code?: string }).code === 'SQLITE_CONSTRAINT_PRIMARYKEY') {
        throw new DuplicateKeyError('site.id');
      }
      throw err;
    }
  }

  async findById(id: string): Promise<SiteRecord | null> {
    const row = this.db.prepare('SELECT * FROM sites WHERE id = ?').get(id) as SiteRow | undefined;
    return row ? siteFromRow(row) : null;
  }

  async list(): Promise<SiteRecord[]> {
    return (this.db.prepare('SELECT * FROM sites ORDER BY created_at, id').all() as SiteRow[]).map(siteFromRow);
  }

  async updatePolicy(id: string, policy: SitePolicy, updatedAt: string): Promise<SiteRecord | null> {
    const info = this.db
      .prepare('UPDATE sites SET policy = ?, updated_at = ? WHERE id = ?')
      .run(JSON.stringify(policy), updatedAt, id);
    return info.changes === 0 ? null : this.findById(id);
  }
}

interface SiteRow {
  id: string;
  name: string;
  policy: string;
  created_at: string;
  updated_at: string;
}

function siteFromRow(r: SiteRow): SiteRecord {
  return { id: r.id, name: r.name, policy: JSON.parse(r.policy), createdAt: r.created_at, updatedAt: r.updated_at };
}

class SqliteUsers implements UserRepository {
  constructor(private readonly db: Database.Database) {}

  async create(u: UserRecord): Promise<void> {
    try {
      this.db
        .prepare(
          `INSERT INTO users (id, site_id, email, name, role, permissions, password_hash, must_change_password,
             totp_secret, totp_pending_secret, totp_last_step, failed_login_count, failed_login_window_start,
             locked_until, created_at, updated_at, created_by, updated_by)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        )
        .run(
          u.id,
          u.siteId,
          u.email,
          u.name,
          u.role,
          JSON.stringify(u.permissions),
          u.passwordHash,
          bool(u.mustChangePassword),
          u.totpSecret,
          u.totpPendingSecret,
          u.totpLastStep,
          u.failedLoginCount,
          u.failedLoginWindowStart,
          u.lockedUntil,
          u.createdAt,
          u.updatedAt,
          u.createdBy,
          u.updatedBy,
        );
    } catch (err) {
      if (isUniqueViolation(err)) throw new DuplicateKeyError('user.email');
      throw err;
    }
  }

  async findById(siteId: string, id: string): Promise<UserRecord | null> {
    const row = this.db.prepare('SELECT * FROM users WHERE site_id = ? AND id = ?').get(siteId, id) as
      | UserRow
      | undefined;
    return row ? userFromRow(row) : null;
  }

  async findByEmail(email: string): Promise<UserRecord | null> {
    const row = this.db.prepare('SELECT * FROM users WHERE email = ?').get(email) as UserRow | undefined;
    return row ? userFromRow(row) : null;
  }

  async listBySite(siteId: string): Promise<UserRecord[]> {
    return (this.db.prepare('SELECT * FROM users WHERE site_id = ? ORDER BY email').all(siteId) as UserRow[]).map(
      userFromRow,
    );
  }

  async update(siteId: string, id: string, patch: UserPatch): Promise<UserRecord | null> {
    const keys = (Object.keys(patch) as (keyof UserPatch)[]).filter((k) => Object.hasOwn(USER_COLUMNS, k) && patch[k] !== undefined);
    const sets = keys.map((k) => `${USER_COLUMNS[k]} = ?`).join(', ');
    const values = keys.map((k) => toColumnValue(k, patch[k]));
    const info = this.db.prepare(`UPDATE users SET ${sets} WHERE site_id = ? AND id = ?`).run(...values, siteId, id);
    return info.changes === 0 ? null : this.findById(siteId, id);
  }

  async registerFailedLogin(siteId: string, id: string, rule: LockoutRule): Promise<UserRecord | null> {
    // better-sqlite3 is synchronous: the read-modify-write below cannot interleave with another.
    const run = this.db.transaction(() => {
      const row = this.db.prepare('SELECT * FROM users WHERE site_id = ? AND id = ?').get(siteId, id) as
        | UserRow
        | undefined;
      if (!row) return null;
      const now = rule.now.getTime();
      const windowStart = row.failed_login_window_start ? Date.parse(row.failed_login_window_start) : null;
      const inWindow = windowStart !== null && now - windowStart < rule.windowMs;
      const count = inWindow ? row.failed_login_count + 1 : 1;
      const start = inWindow ? row.failed_login_window_start : rule.now.toISOString();
      let lockedUntil = row.locked_until;
      let resetCount = count;
      if (count >= rule.threshold) {
        lockedUntil = new Date(now + rule.lockMs).toISOString();
        resetCount = 0;
      }
      this.db
        .prepare(
          `UPDATE users SET failed_login_count = ?, failed_login_window_start = ?, locked_until = ?
           WHERE site_id = ? AND id = ?`,
        )
        .run(resetCount, resetCount === 0 ? null : start, lockedUntil, siteId, id);
      return userFromRow(this.db.prepare('SELECT * FROM users WHERE id = ?').get(id) as UserRow);
    });
    return run.immediate();
  }

  async claimTotpStep(siteId: string, id: string, step: number): Promise<boolean> {
    const info = this.db
      .prepare(
        `UPDATE users SET totp_last_step = ?
         WHERE site_id = ? AND id = ? AND (totp_last_step IS NULL OR totp_last_step < ?)`,
      )
      .run(step, siteId, id, step);
    return info.changes === 1;
  }
}

class SqliteSessions implements SessionRepository {
  constructor(private readonly db: Database.Database) {}

  async get(sid: string, now: number): Promise<SessionRecord | null> {
    const row = this.db.prepare('SELECT * FROM sessions WHERE sid = ? AND expires_at > ?').get(sid, now) as
      | { sid: string; site_id: string | null; user_id: string | null; data: string; expires_at: number }
      | undefined;
    if (!row) return null;
    return { sid: row.sid, siteId: row.site_id, userId: row.user_id, data: row.data, expiresAt: row.expires_at };
  }

  async set(r: SessionRecord): Promise<void> {
    this.db
      .prepare(
        `INSERT INTO sessions (sid, site_id, user_id, data, expires_at) VALUES (?, ?, ?, ?, ?)
         ON CONFLICT(sid) DO UPDATE SET site_id = excluded.site_id, user_id = excluded.user_id,
           data = excluded.data, expires_at = excluded.expires_at`,
      )
      .run(r.sid, r.siteId, r.userId, r.data, r.expiresAt);
  }

  async touch(sid: string, expiresAt: number): Promise<void> {
    this.db.prepare('UPDATE sessions SET expires_at = ? WHERE sid = ?').run(expiresAt, sid);
  }

  async destroy(sid: string): Promise<void> {
    this.db.prepare('DELETE FROM sessions WHERE sid = ?').run(sid);
  }

  async destroyByUser(siteId: string, userId: string, keepSid?: string): Promise<string[]> {
    return this.db.transaction(() => {
      const rows = this.db
        .prepare('SELECT sid FROM sessions WHERE site_id = ? AND user_id = ? AND sid != ?')
        .all(siteId, userId, keepSid ?? '') as { sid: string }[];
      const del = this.db.prepare('DELETE FROM sessions WHERE sid = ?');
      for (const r of rows) del.run(r.sid);
      return rows.map((r) => r.sid);
    }).immediate();
  }

  async purgeExpired(now: number): Promise<number> {
    return this.db.prepare('DELETE FROM sessions WHERE expires_at <= ?').run(now).changes;
  }
}

interface AuditRow {
  id: string;
  site_id: string;
  seq: number;
  type: string;
  action: string;
  outcome: number;
  time: string;
  actor: string;
  objects: string;
  details: string;
  prev_hash: string;
  hash: string;
}

function auditFromRow(r: AuditRow): AuditRecord {
  return {
    id: r.id,
    siteId: r.site_id,
    seq: r.seq,
    type: r.type,
    action: r.action as AuditRecord['action'],
    outcome: r.outcome as AuditRecord['outcome'],
    time: r.time,
    actor: JSON.parse(r.actor),
    objects: JSON.parse(r.objects),
    details: JSON.parse(r.details),
    prevHash: r.prev_hash,
    hash: r.hash,
  };
}

/** The smallest string greater than every string starting with `prefix`. */
function prefixUpperBound(prefix: string): string {
  return prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);
}

class SqliteAudit implements AuditRepository {
  constructor(private readonly db: Database.Database) {}

  async appendChained(
    siteId: string,
    build: (head: { seq: number; hash: string } | null) => AuditRecord,
  ): Promise<AuditRecord> {
    // One synchronous transaction: reading the head and inserting its successor cannot interleave.
    return this.db.transaction(() => {
      const head = this.db
        .prepare('SELECT seq, hash FROM audit_events WHERE site_id = ? ORDER BY seq DESC LIMIT 1')
        .get(siteId) as { seq: number; hash: string } | undefined;
      const r = build(head ?? null);
      this.db
        .prepare(
          `INSERT INTO audit_events (id, site_id, seq, type, action, outcome, time, actor, objects, details, prev_hash, hash)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        )
        .run(
          r.id,
          r.siteId,
          r.seq,
          r.type,
          r.action,
          r.outcome,
          r.time,
          JSON.stringify(r.actor),
          JSON.stringify(r.objects),
          JSON.stringify(r.details),
          r.prevHash,
          r.hash,
        );
      return r;
    }).immediate();
  }

  async listChain(siteId: string, afterSeq: number, limit: number): Promise<AuditRecord[]> {
    return (
      this.db
        .prepare('SELECT * FROM audit_events WHERE site_id = ? AND seq > ? ORDER BY seq LIMIT ?')
        .all(siteId, afterSeq, limit) as AuditRow[]
    ).map(auditFromRow);
  }

  async listRecent(siteId: string, types: string[], since: string, limit: number): Promise<AuditRecord[]> {
    if (types.length === 0 || limit <= 0) return [];
    const marks = types.map(() => '?').join(', ');
    return (
      this.db
        .prepare(`SELECT * FROM audit_events WHERE site_id = ? AND time >= ? AND type IN (${marks}) ORDER BY seq DESC LIMIT ?`)
        .all(siteId, since, ...types, limit) as AuditRow[]
    ).map(auditFromRow);
  }

  async search(siteId: string, filter: AuditFilter, cursor: AuditCursor | null, limit: number): Promise<AuditRecord[]> {
    if (limit <= 0) return [];
    // With an object filter the side table drives the scan (its (type, id, time, seq) key is the
    // order wanted); otherwise audit_events does, through whichever filter index is narrowest.
    const byObject = filter.objectType !== undefined;
    const t = byObject ? 'o' : 'e';
    const where: string[] = [`${t}.site_id = ?`];
    const args: (string | number)[] = [siteId];
    if (byObject) {
      where.push('o.object_type = ?');
      args.push(filter.objectType!);
      if (filter.objectId !== undefined) {
        where.push('o.object_id = ?');
        args.push(filter.objectId);
      }
    }
    if (filter.actorUserId !== undefined) {
      where.push("json_extract(e.actor, '$.userId') = ?");
      args.push(filter.actorUserId);
    }
    if (filter.ip !== undefined) {
      where.push("json_extract(e.actor, '$.ip') = ?");
      args.push(filter.ip);
    }
    if (filter.type !== undefined) {
      where.push('e.type = ?');
      args.push(filter.type);
    }
    if (filter.typePrefix !== undefined) {
      // A range rather than LIKE, so the (site_id, type, ...) index serves it.
      where.push('e.type >= ? AND e.type < ?');
      args.push(filter.typePrefix, prefixUpperBound(filter.typePrefix));
    }
    if (filter.action !== undefined) {
      where.push('e.action = ?');
      args.push(filter.action);
    }
    if (filter.outcome !== undefined) {
      where.push('e.outcome = ?');
      args.push(filter.outcome);
    }
    if (filter.from !== undefined) {
      where.push(`${t}.time >= ?`);
      args.push(filter.from);
    }
    if (filter.to !== undefined) {
      where.push(`${t}.time < ?`);
      args.push(filter.to);
    }
    if (cursor) {
      where.push(`(${t}.time, ${t}.seq) < (?, ?)`);
      args.push(cursor.time, cursor.seq);
    }
    const from = byObject
      ? 'audit_object_refs o JOIN audit_events e ON e.site_id = o.site_id AND e.seq = o.seq'
      : 'audit_events e';
    const distinct = byObject && filter.objectId === undefined ? 'DISTINCT ' : '';
    const sql = `SELECT ${distinct}e.* FROM ${from} WHERE ${where.join(' AND ')} ORDER BY ${t}.time DESC, ${t}.seq DESC LIMIT ?`;
    return (this.db.prepare(sql).all(...args, limit) as AuditRow[]).map(auditFromRow);
  }

  async usageAggregates(siteId: string, from: string, to: string): Promise<AuditUsageAggregates> {
    const month = 'substr(time, 1, 7)';
    const marks = USAGE_TYPES.map(() => '?').join(', ');
    const counts = this.db
      .prepare(
        `SELECT ${month} AS month, type, outcome, COUNT(*) AS records, COUNT(DISTINCT json_extract(actor, '$.userId')) AS actors
         FROM audit_events WHERE site_id = ? AND type IN (${marks}) AND time >= ? AND time < ?
         GROUP BY month, type, outcome`,
      )
      .all(siteId, ...USAGE_TYPES, from, to) as AuditUsageAggregates['counts'];
    const active = this.db
      .prepare(
        `SELECT COUNT(DISTINCT json_extract(actor, '$.userId')) AS n FROM audit_events
         WHERE site_id = ? AND type = 'auth.login' AND outcome = 0 AND time >= ? AND time < ?`,
      )
      .get(siteId, from, to) as { n: number };
    const materials = this.db
      .prepare(
        `SELECT ${month} AS month, COALESCE(json_extract(details, '$.mime'), 'unknown') AS mime, COUNT(*) AS count
         FROM audit_events WHERE site_id = ? AND type = 'material.upload' AND outcome = 0 AND time >= ? AND time < ?
         GROUP BY month, mime`,
      )
      .all(siteId, from, to) as AuditUsageAggregates['materials'];
    const consultations = this.db
      .prepare(
        `SELECT month, COUNT(*) AS count FROM (
           SELECT ${month} AS month FROM audit_events
           WHERE site_id = ? AND type = 'room.join' AND outcome = 0 AND time >= ? AND time < ?
           GROUP BY json_extract(objects, '$[0].id'), substr(time, 1, 10)
           HAVING COUNT(DISTINCT json_extract(actor, '$.userId')) >= 2)
         GROUP BY month`,
      )
      .all(siteId, from, to) as AuditUsageAggregates['consultations'];
    const mediaSeconds = this.db
      .prepare(
        `SELECT ${month} AS month, SUM(json_extract(details, '$.durationSeconds')) AS seconds
         FROM audit_events WHERE site_id = ? AND type >= 'media.' AND type < 'media/' AND time >= ? AND time < ?
           AND json_type(details, '$.durationSeconds') IN ('integer', 'real')
         GROUP BY month`,
      )
      .all(siteId, from, to) as AuditUsageAggregates['mediaSeconds'];
    return { counts, activeUsers: active.n, materials, consultations, mediaSeconds };
  }

  async totalChainLength(): Promise<number> {
    // One index probe per chain (UNIQUE (site_id, seq)), not a count of the whole table.
    const row = this.db.prepare('SELECT COALESCE(SUM(head), 0) AS n FROM (SELECT MAX(seq) AS head FROM audit_events GROUP BY site_id)').get() as { n: number };
    return row.n;
  }

  async listChains(): Promise<string[]> {
    return (this.db.prepare('SELECT DISTINCT site_id FROM audit_events ORDER BY site_id').all() as {
      site_id: string;
    }[]).map((r) => r.site_id);
  }
}

export class SqliteStore implements Store {
  readonly kind = 'sqlite' as const;
  readonly sites: SiteRepository;
  readonly users: UserRepository;
  readonly sessions: SessionRepository;
  readonly audit: AuditRepository;
  readonly dataKeys: DataKeyRepository;
  readonly cases: CaseRepository;
  readonly materials: MaterialRepository;
  readonly transfers: TransferRepository;
  readonly chat: ChatRepository;
  readonly annotations: AnnotationRepository;
  readonly radiology: SqliteRadiology;
  readonly followUps: SqliteFollowUps;
  #closed = false;

  constructor(readonly db: Database.Database) {
    this.sites = new SqliteSites(db);
    this.users = new SqliteUsers(db);
    this.sessions = new SqliteSessions(db);
    this.audit = new SqliteAudit(db);
    this.dataKeys = new SqliteDataKeys(db);
    this.cases = new SqliteCases(db);
    this.materials = new SqliteMaterials(db);
    this.transfers = new SqliteTransfers(db);
    this.chat = new SqliteChat(db);
    this.annotations = new SqliteAnnotations(db);
    this.radiology = new SqliteRadiology(db);
    this.followUps = new SqliteFollowUps(db);
  }

  static open(file: string): SqliteStore {
    return new SqliteStore(openSqlite(file));
  }

  async ping(): Promise<boolean> {
    if (this.#closed) return false;
    this.db.prepare('SELECT 1').get();
    return true;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.db.close();
  }
}
