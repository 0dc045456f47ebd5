// SQLite repositories of data keys, cases and materials (same contract as src/store/mongo).
import type Database from 'better-sqlite3';
import type {
  CaseListFilter,
  CasePatch,
  CaseRecord,
  CaseRepository,
  MaterialPatch,
  MaterialRecord,
  MaterialRepository,
  TransferAgreement,
  TransferRecord,
  TransferRepository,
} from '../../cases/model';
import type { DataKeyRecord, DataKeyRepository } from '../../crypto/dataKeys';
import { DuplicateKeyError } from '../types';

function isConstraint(err: unknown): boolean {
  const code = typeof err === 'object' && err !== null ? (err as { code?: string }).code : undefined;
  return code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY';
}

interface KeyRow {
  id: string;
  owner: string;
  wrapped: string;
  kek_id: string;
  created_at: string;
}
const keyFromRow = (r: KeyRow): DataKeyRecord => ({ id: r.id, owner: r.owner, wrapped: r.wrapped, kekId: r.kek_id, createdAt: r.created_at });

export class SqliteDataKeys implements DataKeyRepository {
  constructor(private readonly db: Database.Database) {}

  async create(r: DataKeyRecord): Promise<void> {
    try {
      this.db.prepare('INSERT INTO data_keys (id, owner, wrapped, kek_id, created_at) VALUES (?, ?, ?, ?, ?)').run(r.id, r.owner, r.wrapped, r.kekId, r.createdAt);
    } catch (err) {
      if (isConstraint(err)) throw new DuplicateKeyError('data_key.owner');
      throw err;
    }
  }

  async findById(id: string): Promise<DataKeyRecord | null> {
    const row = this.db.prepare('SELECT * FROM data_keys WHERE id = ?').get(id) as KeyRow | undefined;
    return row ? keyFromRow(row) : null;
  }

  async findByOwner(owner: string): Promise<DataKeyRecord | null> {
    const row = this.db.prepare('SELECT * FROM data_keys WHERE owner = ?').get(owner) as KeyRow | undefined;
    return row ? keyFromRow(row) : null;
  }

  async listNotWrappedBy(kekId: string, limit: number): Promise<DataKeyRecord[]> {
    return (this.db.prepare('SELECT * FROM data_keys WHERE kek_id != ? ORDER BY id LIMIT ?').all(kekId, limit) as KeyRow[]).map(keyFromRow);
  }

  async rewrap(id: string, fromKekId: string, wrapped: string, toKekId: string): Promise<boolean> {
    return this.db.prepare('UPDATE data_keys SET wrapped = ?, kek_id = ? WHERE id = ? AND kek_id = ?').run(wrapped, toKekId, id, fromKekId).changes === 1;
  }

  async deleteByOwner(owner: string): Promise<boolean> {
    return this.db.prepare('DELETE FROM data_keys WHERE owner = ?').run(owner).changes === 1;
  }

  async countByKek(): Promise<Record<string, number>> {
    const rows = this.db.prepare('SELECT kek_id, COUNT(*) AS n FROM data_keys GROUP BY kek_id').all() as { kek_id: string; n: number }[];
    return Object.fromEntries(rows.map((r) => [r.kek_id, r.n]));
  }
}

interface CaseRow {
  id: string;
  site_id: string;
  label: string;
  title: string;
  clinical_question: string;
  status: string;
  patient_sealed: string | null;
  created_at: string;
  updated_at: string;
  created_by: string | null;
  updated_by: string | null;
}

const caseFromRow = (r: CaseRow): CaseRecord => ({
  id: r.id,
  siteId: r.site_id,
  label: r.label,
  title: r.title,
  clinicalQuestion: r.clinical_question,
  status: r.status as CaseRecord['status'],
  patientSealed: r.patient_sealed,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
  createdBy: r.created_by,
  updatedBy: r.updated_by,
});

const CASE_COLUMNS: Record<keyof CasePatch, string> = {
  title: 'title',
  clinicalQuestion: 'clinical_question',
  status: 'status',
  patientSealed: 'patient_sealed',
  updatedAt: 'updated_at',
  updatedBy: 'updated_by',
};

/** Escapes LIKE wildcards so a search for "50%" means the text "50%". */
function likePattern(q: string): string {
  return `%${q.toLowerCase().replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
}

export class SqliteCases implements CaseRepository {
  constructor(private readonly db: Database.Database) {}

  async create(r: CaseRecord): Promise<void> {
    this.db
      .prepare(
        `INSERT INTO cases (id, site_id, label, title, clinical_question, status, patient_sealed, created_at, updated_at, created_by, updated_by)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(r.id, r.siteId, r.label, r.title, r.clinicalQuestion, r.status, r.patientSealed, r.createdAt, r.updatedAt, r.createdBy, r.updatedBy);
  }

  async findById(siteId: string, id: string): Promise<CaseRecord | null> {
    const row = this.db.prepare('SELECT * FROM cases WHERE site_id = ? AND id = ?').get(siteId, id) as CaseRow | undefined;
    return row ? caseFromRow(row) : null;
  }

  async list(siteId: string, f: CaseListFilter): Promise<{ cases: CaseRecord[]; total: number }> {
    const where = ['site_id = ?'];
    const args: unknown[] = [siteId];
    if (f.status) {
      where.push('status = ?');
      args.push(f.status);
    }
    if (f.q) {
      where.push("(lower(title) LIKE ? ESCAPE '\\' OR lower(label) LIKE ? ESCAPE '\\')");
      args.push(likePattern(f.q), likePattern(f.q));
    }
    const clause = where.join(' AND ');
    const total = (this.db.prepare(`SELECT COUNT(*) AS n FROM cases WHERE ${clause}`).get(...args) as { n: number }).n;
    const rows = this.db
      .prepare(`SELECT * FROM cases WHERE ${clause} ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?`)
      .all(...args, f.limit, f.offset) as CaseRow[];
    return { cases: rows.map(caseFromRow), total };
  }

  async update(siteId: string, id: string, patch: CasePatch): Promise<CaseRecord | null> {
    const keys = (Object.keys(patch) as (keyof CasePatch)[]).filter((k) => Object.hasOwn(CASE_COLUMNS, k) && patch[k] !== undefined);
    const sets = keys.map((k) => `${CASE_COLUMNS[k]} = ?`).join(', ');
    const info = this.db.prepare(`UPDATE cases SET ${sets} WHERE site_id = ? AND id = ?`).run(...keys.map((k) => patch[k]), siteId, id);
    return info.changes === 0 ? null : this.findById(siteId, id);
  }

  async delete(siteId: string, id: string): Promise<boolean> {
    return this.db.prepare('DELETE FROM cases WHERE site_id = ? AND id = ?').run(siteId, id).changes === 1;
  }

  async listCreatedBefore(siteId: string, before: string, limit: number): Promise<CaseRecord[]> {
    return (
      this.db.prepare('SELECT * FROM cases WHERE site_id = ? AND created_at < ? ORDER BY created_at, id LIMIT ?').all(siteId, before, limit) as CaseRow[]
    ).map(caseFromRow);
  }
}

interface MaterialRow {
  id: string;
  site_id: string;
  case_id: string;
  name_sealed: string;
  mime: string;
  size_bytes: number;
  sha256: string;
  status: string;
  progress: number;
  width: number | null;
  height: number | null;
  tile_size: number;
  overlap: number;
  tile_format: string;
  error: string | null;
  created_at: string;
  updated_at: string;
  created_by: string | null;
}

const materialFromRow = (r: MaterialRow): MaterialRecord => ({
  id: r.id,
  siteId: r.site_id,
  caseId: r.case_id,
  nameSealed: r.name_sealed,
  mime: r.mime,
  sizeBytes: r.size_bytes,
  sha256: r.sha256,
  status: r.status as MaterialRecord['status'],
  progress: r.progress,
  width: r.width,
  height: r.height,
  tileSize: r.tile_size,
  overlap: r.overlap,
  tileFormat: r.tile_format as 'jpeg',
  error: r.error,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
  createdBy: r.created_by,
});

const MATERIAL_COLUMNS: Record<keyof MaterialPatch, string> = {
  status: 'status',
  progress: 'progress',
  width: 'width',
  height: 'height',
  error: 'error',
  updatedAt: 'updated_at',
};

export class SqliteMaterials implements MaterialRepository {
  constructor(private readonly db: Database.Database) {}

  async create(r: MaterialRecord): Promise<void> {
    this.db
      .prepare(
        `INSERT INTO materials (id, site_id, case_id, name_sealed, mime, size_bytes, sha256, status, progress, width, height,
           tile_size, overlap, tile_format, error, created_at, updated_at, created_by)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(r.id, r.siteId, r.caseId, r.nameSealed, r.mime, r.sizeBytes, r.sha256, r.status, r.progress, r.width, r.height, r.tileSize, r.overlap, r.tileFormat, r.error, r.createdAt, r.updatedAt, r.createdBy);
  }

  async findById(siteId: string, caseId: string, id: string): Promise<MaterialRecord | null> {
    const row = this.db.prepare('SELECT * FROM materials WHERE site_id = ? AND case_id = ? AND id = ?').get(siteId, caseId, id) as MaterialRow | undefined;
    return row ? materialFromRow(row) : null;
  }

  async listByCase(siteId: string, caseId: string): Promise<MaterialRecord[]> {
    return (this.db.prepare('SELECT * FROM materials WHERE site_id = ? AND case_id = ? ORDER BY created_at, id').all(siteId, caseId) as MaterialRow[]).map(materialFromRow);
  }

  async update(siteId: string, id: string, patch: MaterialPatch): Promise<MaterialRecord | null> {
    const keys = (Object.keys(patch) as (keyof MaterialPatch)[]).filter((k) => Object.hasOwn(MATERIAL_COLUMNS, k) && patch[k] !== undefined);
    const sets = keys.map((k) => `${MATERIAL_COLUMNS[k]} = ?`).join(', ');
    const info = this.db.prepare(`UPDATE materials SET ${sets} WHERE site_id = ? AND id = ?`).run(...keys.map((k) => patch[k]), siteId, id);
    if (info.changes === 0) return null;
    const row = this.db.prepare('SELECT * FROM materials WHERE id = ?').get(id) as MaterialRow;
    return materialFromRow(row);
  }

  async delete(siteId: string, id: string): Promise<boolean> {
    return this.db.prepare('DELETE FROM materials WHERE site_id = ? AND id = ?').run(siteId, id).changes === 1;
  }

  async deleteByCase(siteId: string, caseId: string): Promise<number> {
    return this.db.prepare('DELETE FROM materials WHERE site_id = ? AND case_id = ?').run(siteId, caseId).changes;
  }

  async exists(id: string): Promise<boolean> {
    return this.db.prepare('SELECT 1 FROM materials WHERE id = ?').get(id) !== undefined;
  }

  async listUnfinished(): Promise<MaterialRecord[]> {
    return (this.db.prepare("SELECT * FROM materials WHERE status IN ('queued', 'converting') ORDER BY created_at").all() as MaterialRow[]).map(materialFromRow);
  }
}

interface TransferRow {
  id: string;
  from_site_id: string;
  to_site_id: string;
  case_id: string;
  title: string;
  note: string;
  status: string;
  received_case_id: string | null;
  created_at: string;
  created_by: string;
  decided_at: string | null;
  decided_by: string | null;
}

const transferFromRow = (r: TransferRow): TransferRecord => ({
  id: r.id,
  fromSiteId: r.from_site_id,
  toSiteId: r.to_site_id,
  caseId: r.case_id,
  title: r.title,
  note: r.note,
  status: r.status as TransferRecord['status'],
  receivedCaseId: r.received_case_id,
  createdAt: r.created_at,
  createdBy: r.created_by,
  decidedAt: r.decided_at,
  decidedBy: r.decided_by,
});

interface AgreementRow {
  receiver_site_id: string;
  sender_site_id: string;
  created_at: string;
  created_by: string;
}

const agreementFromRow = (r: AgreementRow): TransferAgreement => ({
  receiverSiteId: r.receiver_site_id,
  senderSiteId: r.sender_site_id,
  createdAt: r.created_at,
  createdBy: r.created_by,
});

export class SqliteTransfers implements TransferRepository {
  constructor(private readonly db: Database.Database) {}

  async create(r: TransferRecord): Promise<void> {
    this.db
      .prepare(
        `INSERT INTO transfers (id, from_site_id, to_site_id, case_id, title, note, status, received_case_id, created_at, created_by, decided_at, decided_by)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(r.id, r.fromSiteId, r.toSiteId, r.caseId, r.title, r.note, r.status, r.receivedCaseId, r.createdAt, r.createdBy, r.decidedAt, r.decidedBy);
  }

  async findForSite(siteId: string, id: string): Promise<TransferRecord | null> {
    const row = this.db.prepare('SELECT * FROM transfers WHERE id = ? AND (from_site_id = ? OR to_site_id = ?)').get(id, siteId, siteId) as TransferRow | undefined;
    return row ? transferFromRow(row) : null;
  }

  async listInbox(toSiteId: string): Promise<TransferRecord[]> {
    return (this.db.prepare('SELECT * FROM transfers WHERE to_site_id = ? ORDER BY created_at DESC, id DESC').all(toSiteId) as TransferRow[]).map(transferFromRow);
  }

  async listOutbox(fromSiteId: string): Promise<TransferRecord[]> {
    return (this.db.prepare('SELECT * FROM transfers WHERE from_site_id = ? ORDER BY created_at DESC, id DESC').all(fromSiteId) as TransferRow[]).map(transferFromRow);
  }

  async decide(
    toSiteId: string,
    id: string,
    d: { status: 'accepted' | 'refused'; receivedCaseId: string | null; decidedAt: string; decidedBy: string },
  ): Promise<TransferRecord | null> {
    const info = this.db
      .prepare("UPDATE transfers SET status = ?, received_case_id = ?, decided_at = ?, decided_by = ? WHERE id = ? AND to_site_id = ? AND status = 'pending'")
      .run(d.status, d.receivedCaseId, d.decidedAt, d.decidedBy, id, toSiteId);
    if (info.changes === 0) return null;
    return transferFromRow(this.db.prepare('SELECT * FROM transfers WHERE id = ?').get(id) as TransferRow);
  }

  async deleteByCase(fromSiteId: string, caseId: string): Promise<number> {
    return this.db.prepare('DELETE FROM transfers WHERE from_site_id = ? AND case_id = ?').run(fromSiteId, caseId).changes;
  }

  async putAgreement(a: TransferAgreement): Promise<void> {
    this.db
      .prepare('INSERT INTO transfer_agreements (receiver_site_id, sender_site_id, created_at, created_by) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING')
      .run(a.receiverSiteId, a.senderSiteId, a.createdAt, a.createdBy);
  }

  async deleteAgreement(receiverSiteId: string, senderSiteId: string): Promise<boolean> {
    return this.db.prepare('DELETE FROM transfer_agreements WHERE receiver_site_id = ? AND sender_site_id = ?').run(receiverSiteId, senderSiteId).changes === 1;
  }

  async hasAgreement(receiverSiteId: string, senderSiteId: string): Promise<boolean> {
    return this.db.prepare('SELECT 1 FROM transfer_agreements WHERE receiver_site_id = ? AND sender_site_id = ?').get(receiverSiteId, senderSiteId) !== undefined;
  }

  async listSenders(receiverSiteId: string): Promise<TransferAgreement[]> {
    return (this.db.prepare('SELECT * FROM transfer_agreements WHERE receiver_site_id = ? ORDER BY created_at').all(receiverSiteId) as AgreementRow[]).map(agreementFromRow);
  }

  async listReceivers(senderSiteId: string): Promise<TransferAgreement[]> {
    return (this.db.prepare('SELECT * FROM transfer_agreements WHERE sender_site_id = ? ORDER BY created_at').all(senderSiteId) as AgreementRow[]).map(agreementFromRow);
  }
}
