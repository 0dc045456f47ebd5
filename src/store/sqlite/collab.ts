// SQLite repositories of case chat and annotations (same contract as src/store/mongo). Every
// append is one synchronous transaction that reads the case's last sequence number and inserts
// its successor, so two writers can never take the same number or leave a gap.
import type Database from 'better-sqlite3';
import type { AnnotationOpRecord, AnnotationRecord, AnnotationRepository } from '../../annotations/model';
import type { ChatMessageRecord, ChatRepository } from '../../chat/model';
import type { AnnotationOpKind } from '../../protocol/annotations';
import { DuplicateKeyError } from '../types';

/** The unique index a constraint error names, e.g. "client_id" in "...: chat_messages.case_id, chat_messages.client_id". */
function uniqueViolationOn(err: unknown, column: string): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const e = err as { code?: string; message?: string };
  return (e.code === 'SQLITE_CONSTRAINT_UNIQUE' || e.code === 'SQLITE_CONSTRAINT_PRIMARYKEY') && typeof e.message === 'string' && e.message.includes(`.${column}`);
}

interface ChatRow {
  id: string;
  site_id: string;
  case_id: string;
  seq: number;
  user_id: string;
  user_name: string;
  text_sealed: string;
  client_id: string;
  created_at: string;
}

const chatFromRow = (r: ChatRow): ChatMessageRecord => ({
  id: r.id,
  siteId: r.site_id,
  caseId: r.case_id,
  seq: r.seq,
  userId: r.user_id,
  userName: r.user_name,
  textSealed: r.text_sealed,
  clientId: r.client_id,
  createdAt: r.created_at,
});

export class SqliteChat implements ChatRepository {
  constructor(private readonly db: Database.Database) {}

  async append(siteId: string, caseId: string, build: (nextSeq: number) => ChatMessageRecord): Promise<ChatMessageRecord> {
    try {
      return this.db.transaction(() => {
        // The sequence is per case (its unique key), whatever the site argument says.
        const { last } = this.db.prepare('SELECT COALESCE(MAX(seq), 0) AS last FROM chat_messages WHERE case_id = ?').get(caseId) as { last: number };
        const r = build(last + 1);
        this.db
          .prepare(
            `INSERT INTO chat_messages (id, site_id, case_id, seq, user_id, user_name, text_sealed, client_id, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
          )
          .run(r.id, siteId, caseId, r.seq, r.userId, r.userName, r.textSealed, r.clientId, r.createdAt);
        return { ...r, siteId, caseId };
      }).immediate();
    } catch (err) {
      if (uniqueViolationOn(err, 'client_id')) throw new DuplicateKeyError('chat.clientId');
      throw err;
    }
  }

  async findByClientId(siteId: string, caseId: string, clientId: string): Promise<ChatMessageRecord | null> {
    const row = this.db.prepare('SELECT * FROM chat_messages WHERE site_id = ? AND case_id = ? AND client_id = ?').get(siteId, caseId, clientId) as ChatRow | undefined;
    return row ? chatFromRow(row) : null;
  }

  async listAfter(siteId: string, caseId: string, afterSeq: number, limit: number): Promise<ChatMessageRecord[]> {
    return (
      this.db.prepare('SELECT * FROM chat_messages WHERE site_id = ? AND case_id = ? AND seq > ? ORDER BY seq LIMIT ?').all(siteId, caseId, afterSeq, limit) as ChatRow[]
    ).map(chatFromRow);
  }

  async latestSeq(siteId: string, caseId: string): Promise<number> {
    return (this.db.prepare('SELECT COALESCE(MAX(seq), 0) AS last FROM chat_messages WHERE site_id = ? AND case_id = ?').get(siteId, caseId) as { last: number }).last;
  }

  async deleteByCase(siteId: string, caseId: string): Promise<number> {
    return this.db.prepare('DELETE FROM chat_messages WHERE site_id = ? AND case_id = ?').run(siteId, caseId).changes;
  }
}

interface AnnotationRow {
  id: string;
  site_id: string;
  case_id: string;
  material_id: string;
  client_id: string;
  kind: string;
  geometry: string;
  properties_sealed: string;
  version: number;
  deleted: number;
  created_by: string;
  created_at: string;
  updated_by: string;
  updated_at: string;
  slice: number | null;
}

interface OpRow extends Omit<AnnotationRow, 'id'> {
  seq: number;
  op: string;
  annotation_id: string;
}

const annotationFromRow = (r: AnnotationRow): AnnotationRecord => ({
  id: r.id,
  siteId: r.site_id,
  caseId: r.case_id,
  materialId: r.material_id,
  // Only stacks' annotations carry a slice; others round-trip without the key.
  ...(r.slice !== null && r.slice !== undefined ? { slice: r.slice } : {}),
  clientId: r.client_id,
  kind: r.kind as AnnotationRecord['kind'],
  geometry: JSON.parse(r.geometry),
  propertiesSealed: r.properties_sealed,
  version: r.version,
  deleted: r.deleted === 1,
  createdBy: r.created_by,
  createdAt: r.created_at,
  updatedBy: r.updated_by,
  updatedAt: r.updated_at,
});

const opFromRow = (r: OpRow): AnnotationOpRecord => ({
  seq: r.seq,
  op: r.op as AnnotationOpKind,
  annotation: annotationFromRow({ ...r, id: r.annotation_id }),
});

/** The state columns, in the order both tables' statements below use them. */
function stateValues(a: AnnotationRecord): unknown[] {
  return [a.materialId, a.clientId, a.kind, JSON.stringify(a.geometry), a.propertiesSealed, a.version, a.deleted ? 1 : 0, a.createdBy, a.createdAt, a.updatedBy, a.updatedAt, a.slice ?? null];
}

export class SqliteAnnotations implements AnnotationRepository {
  constructor(private readonly db: Database.Database) {}

  /** Inside a transaction: appends the op of `a` under the case's next sequence number. */
  private appendOp(a: AnnotationRecord, op: AnnotationOpKind): AnnotationOpRecord {
    const { last } = this.db.prepare('SELECT COALESCE(MAX(seq), 0) AS last FROM annotation_ops WHERE case_id = ?').get(a.caseId) as { last: number };
    this.db
      .prepare(
        `INSERT INTO annotation_ops (case_id, seq, site_id, op, annotation_id, material_id, client_id, kind, geometry, properties_sealed,
           version, deleted, created_by, created_at, updated_by, updated_at, slice)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(a.caseId, last + 1, a.siteId, op, a.id, ...stateValues(a));
    return { seq: last + 1, op, annotation: a };
  }

  private insertOne(a: AnnotationRecord): AnnotationOpRecord {
    this.db
      .prepare(
        `INSERT INTO annotations (id, site_id, case_id, material_id, client_id, kind, geometry, properties_sealed, version, deleted,
           created_by, created_at, updated_by, updated_at, slice)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(a.id, a.siteId, a.caseId, ...stateValues(a));
    return this.appendOp(a, 'create');
  }

  async create(record: AnnotationRecord): Promise<AnnotationOpRecord> {
    return (await this.createMany([record]))[0]!;
  }

  async createMany(records: AnnotationRecord[]): Promise<AnnotationOpRecord[]> {
    try {
      return this.db.transaction(() => records.map((r) => this.insertOne(r))).immediate();
    } catch (err) {
      if (uniqueViolationOn(err, 'client_id')) throw new DuplicateKeyError('annotation.clientId');
      throw err;
    }
  }

  async apply(next: AnnotationRecord, op: 'update' | 'delete'): Promise<AnnotationOpRecord | null> {
    return this.db.transaction(() => {
      // Only the mutable state moves; identity, owner and creation stay as they were stored.
      const info = this.db
        .prepare(
          `UPDATE annotations SET geometry = ?, properties_sealed = ?, version = ?, deleted = ?, updated_by = ?, updated_at = ?
           WHERE id = ? AND site_id = ? AND case_id = ? AND version = ?`,
        )
        .run(JSON.stringify(next.geometry), next.propertiesSealed, next.version, next.deleted ? 1 : 0, next.updatedBy, next.updatedAt, next.id, next.siteId, next.caseId, next.version - 1);
      if (info.changes === 0) return null;
      const stored = annotationFromRow(this.db.prepare('SELECT * FROM annotations WHERE id = ?').get(next.id) as AnnotationRow);
      return this.appendOp(stored, op);
    }).immediate();
  }

  async findById(siteId: string, caseId: string, id: string): Promise<AnnotationRecord | null> {
    const row = this.db.prepare('SELECT * FROM annotations WHERE site_id = ? AND case_id = ? AND id = ?').get(siteId, caseId, id) as AnnotationRow | undefined;
    return row ? annotationFromRow(row) : null;
  }

  async findCreateOp(siteId: string, caseId: string, clientId: string): Promise<AnnotationOpRecord | null> {
    const row = this.db
      .prepare(
        `SELECT o.* FROM annotations a JOIN annotation_ops o ON o.annotation_id = a.id AND o.version = 1
         WHERE a.site_id = ? AND a.case_id = ? AND a.client_id = ?`,
      )
      .get(siteId, caseId, clientId) as OpRow | undefined;
    return row ? opFromRow(row) : null;
  }

  async listCurrent(siteId: string, caseId: string, materialId?: string): Promise<AnnotationRecord[]> {
    const rows =
      materialId === undefined
        ? this.db.prepare('SELECT * FROM annotations WHERE site_id = ? AND case_id = ? AND deleted = 0 ORDER BY created_at, id').all(siteId, caseId)
        : this.db
            .prepare('SELECT * FROM annotations WHERE site_id = ? AND case_id = ? AND material_id = ? AND deleted = 0 ORDER BY created_at, id')
            .all(siteId, caseId, materialId);
    return (rows as AnnotationRow[]).map(annotationFromRow);
  }

  async listOpsAfter(siteId: string, caseId: string, afterSeq: number, limit: number): Promise<AnnotationOpRecord[]> {
    return (
      this.db.prepare('SELECT * FROM annotation_ops WHERE case_id = ? AND site_id = ? AND seq > ? ORDER BY seq LIMIT ?').all(caseId, siteId, afterSeq, limit) as OpRow[]
    ).map(opFromRow);
  }

  async listHistory(siteId: string, caseId: string, annotationId: string): Promise<AnnotationOpRecord[]> {
    return (
      this.db.prepare('SELECT * FROM annotation_ops WHERE site_id = ? AND case_id = ? AND annotation_id = ? ORDER BY version').all(siteId, caseId, annotationId) as OpRow[]
    ).map(opFromRow);
  }

  async latestSeq(siteId: string, caseId: string): Promise<number> {
    return (this.db.prepare('SELECT COALESCE(MAX(seq), 0) AS last FROM annotation_ops WHERE case_id = ? AND site_id = ?').get(caseId, siteId) as { last: number }).last;
  }

  async deleteByCase(siteId: string, caseId: string): Promise<number> {
    return this.db.transaction(() => {
      this.db.prepare('DELETE FROM annotation_ops WHERE site_id = ? AND case_id = ?').run(siteId, caseId);
      return this.db.prepare('DELETE FROM annotations WHERE site_id = ? AND case_id = ?').run(siteId, caseId).changes;
    }).immediate();
  }
}
