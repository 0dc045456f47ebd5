// SQLite repository of radiology records (same contract as src/store/mongo/radiology.ts).
import type Database from 'better-sqlite3';
import type {
  CaseKeyKind,
  CaseKeyRecord,
  InstanceRecord,
  RadiologyDocumentRecord,
  RadiologyPatientRecord,
  RadiologyRepository,
  SeriesRecord,
} from '../../radiology/model';
import { DuplicateKeyError } from '../types';

function isConstraint(err: unknown): boolean {
  const code = typeof err === 'object' && err !== null ? (err as { code?: string }).code : undefined;
  return code === 'SQLITE_CONSTRAINT_UNIQUE' || code === 'SQLITE_CONSTRAINT_PRIMARYKEY';
}

interface SeriesRow {
  id: string;
  site_id: string;
  case_id: string;
  series_key: string;
  patient_key: string | null;
  modality: string;
  sop_class_uid: string;
  series_number: number | null;
  rows: number;
  columns: number;
  window_center: number | null;
  window_width: number | null;
  instance_count: number;
  total_bytes: number;
  created_at: string;
  updated_at: string;
}

const seriesFromRow = (r: SeriesRow): SeriesRecord => ({
  id: r.id,
  siteId: r.site_id,
  caseId: r.case_id,
  seriesKey: r.series_key,
  patientKey: r.patient_key,
  modality: r.modality,
  sopClassUid: r.sop_class_uid,
  seriesNumber: r.series_number,
  rows: r.rows,
  columns: r.columns,
  windowCenter: r.window_center,
  windowWidth: r.window_width,
  instanceCount: r.instance_count,
  totalBytes: r.total_bytes,
  createdAt: r.created_at,
  updatedAt: r.updated_at,
});

interface InstanceRow {
  id: string;
  site_id: string;
  case_id: string;
  series_id: string;
  sop_key: string;
  sop_class_uid: string;
  transfer_syntax_uid: string;
  instance_number: number | null;
  slice_position: number | null;
  rows: number;
  columns: number;
  frames: number;
  size_bytes: number;
  sha256: string;
  created_at: string;
}

const instanceFromRow = (r: InstanceRow): InstanceRecord => ({
  id: r.id,
  siteId: r.site_id,
  caseId: r.case_id,
  seriesId: r.series_id,
  sopKey: r.sop_key,
  sopClassUid: r.sop_class_uid,
  transferSyntaxUid: r.transfer_syntax_uid,
  instanceNumber: r.instance_number,
  slicePosition: r.slice_position,
  rows: r.rows,
  columns: r.columns,
  frames: r.frames,
  sizeBytes: r.size_bytes,
  sha256: r.sha256,
  createdAt: r.created_at,
});

export class SqliteRadiology implements RadiologyRepository {
  constructor(private readonly db: Database.Database) {}

  async findCaseKey(siteId: string, kind: CaseKeyKind, keyHash: string): Promise<string | null> {
    const row = this.db.prepare('SELECT case_id FROM radiology_case_keys WHERE site_id = ? AND kind = ? AND key_hash = ?').get(siteId, kind, keyHash) as { case_id: string } | undefined;
    return row?.case_id ?? null;
  }

  async putCaseKey(r: CaseKeyRecord): Promise<boolean> {
    try {
      this.db.prepare('INSERT INTO radiology_case_keys (site_id, kind, key_hash, case_id, created_at) VALUES (?, ?, ?, ?, ?)').run(r.siteId, r.kind, r.keyHash, r.caseId, r.createdAt);
      return true;
    } catch (err) {
      if (isConstraint(err)) return false;
      throw err;
    }
  }

  async deleteCaseKey(siteId: string, kind: CaseKeyKind, keyHash: string): Promise<void> {
    this.db.prepare('DELETE FROM radiology_case_keys WHERE site_id = ? AND kind = ? AND key_hash = ?').run(siteId, kind, keyHash);
  }

  async listCaseKeys(siteId: string, caseId: string): Promise<CaseKeyRecord[]> {
    const rows = this.db.prepare('SELECT * FROM radiology_case_keys WHERE site_id = ? AND case_id = ? ORDER BY created_at').all(siteId, caseId) as {
      site_id: string;
      kind: CaseKeyKind;
      key_hash: string;
      case_id: string;
      created_at: string;
    }[];
    return rows.map((r) => ({ siteId: r.site_id, kind: r.kind, keyHash: r.key_hash, caseId: r.case_id, createdAt: r.created_at }));
  }

  async findSeriesByKey(siteId: string, caseId: string, seriesKey: string): Promise<SeriesRecord | null> {
    const row = this.db.prepare('SELECT * FROM radiology_series WHERE site_id = ? AND case_id = ? AND series_key = ?').get(siteId, caseId, seriesKey) as SeriesRow | undefined;
    return row ? seriesFromRow(row) : null;
  }

  async findSeries(siteId: string, caseId: string, id: string): Promise<SeriesRecord | null> {
    const row = this.db.prepare('SELECT * FROM radiology_series WHERE site_id = ? AND case_id = ? AND id = ?').get(siteId, caseId, id) as SeriesRow | undefined;
    return row ? seriesFromRow(row) : null;
  }

  async listSeriesByCase(siteId: string, caseId: string): Promise<SeriesRecord[]> {
    return (this.db.prepare('SELECT * FROM radiology_series WHERE site_id = ? AND case_id = ? ORDER BY series_number, created_at').all(siteId, caseId) as SeriesRow[]).map(seriesFromRow);
  }

  async listCaseIdsByPatient(siteId: string, patientKey: string): Promise<string[]> {
    return (this.db.prepare('SELECT DISTINCT case_id FROM radiology_series WHERE site_id = ? AND patient_key = ?').all(siteId, patientKey) as { case_id: string }[]).map((r) => r.case_id);
  }

  async createSeries(r: SeriesRecord): Promise<void> {
    try {
      this.db
        .prepare(
          `INSERT INTO radiology_series (id, site_id, case_id, series_key, patient_key, modality, sop_class_uid, series_number, rows, columns,
            window_center, window_width, instance_count, total_bytes, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        )
        .run(r.id, r.siteId, r.caseId, r.seriesKey, r.patientKey, r.modality, r.sopClassUid, r.seriesNumber, r.rows, r.columns, r.windowCenter, r.windowWidth, r.instanceCount, r.totalBytes, r.createdAt, r.updatedAt);
    } catch (err) {
      if (isConstraint(err)) throw new DuplicateKeyError('radiology_series.series_key');
      throw err;
    }
  }

  async addToSeries(siteId: string, id: string, bytes: number, updatedAt: string): Promise<void> {
    this.db.prepare('UPDATE radiology_series SET instance_count = instance_count + 1, total_bytes = total_bytes + ?, updated_at = ? WHERE site_id = ? AND id = ?').run(bytes, updatedAt, siteId, id);
  }

  async findInstanceByKey(siteId: string, seriesId: string, sopKey: string): Promise<InstanceRecord | null> {
    const row = this.db.prepare('SELECT * FROM radiology_instances WHERE site_id = ? AND series_id = ? AND sop_key = ?').get(siteId, seriesId, sopKey) as InstanceRow | undefined;
    return row ? instanceFromRow(row) : null;
  }

  async createInstance(r: InstanceRecord): Promise<void> {
    try {
      this.db
        .prepare(
          `INSERT INTO radiology_instances (id, site_id, case_id, series_id, sop_key, sop_class_uid, transfer_syntax_uid, instance_number, slice_position,
            rows, columns, frames, size_bytes, sha256, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        )
        .run(r.id, r.siteId, r.caseId, r.seriesId, r.sopKey, r.sopClassUid, r.transferSyntaxUid, r.instanceNumber, r.slicePosition, r.rows, r.columns, r.frames, r.sizeBytes, r.sha256, r.createdAt);
    } catch (err) {
      if (isConstraint(err)) throw new DuplicateKeyError('radiology_instances.sop_key');
      throw err;
    }
  }

  async listInstances(siteId: string, seriesId: string): Promise<InstanceRecord[]> {
    return (this.db.prepare('SELECT * FROM radiology_instances WHERE site_id = ? AND series_id = ? ORDER BY created_at, id').all(siteId, seriesId) as InstanceRow[]).map(instanceFromRow);
  }

  async getPatient(siteId: string, patientKey: string): Promise<RadiologyPatientRecord | null> {
    const row = this.db.prepare('SELECT * FROM radiology_patients WHERE site_id = ? AND patient_key = ?').get(siteId, patientKey) as
      | { site_id: string; patient_key: string; patient_sealed: string; updated_at: string }
      | undefined;
    return row ? { siteId: row.site_id, patientKey: row.patient_key, patientSealed: row.patient_sealed, updatedAt: row.updated_at } : null;
  }

  async putPatient(r: RadiologyPatientRecord): Promise<void> {
    this.db
      .prepare(
        `INSERT INTO radiology_patients (site_id, patient_key, patient_sealed, updated_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (site_id, patient_key) DO UPDATE SET patient_sealed = excluded.patient_sealed, updated_at = excluded.updated_at`,
      )
      .run(r.siteId, r.patientKey, r.patientSealed, r.updatedAt);
  }

  async purgePatients(siteId: string, before: string): Promise<number> {
    return this.db.prepare('DELETE FROM radiology_patients WHERE site_id = ? AND updated_at < ?').run(siteId, before).changes;
  }

  async addDocument(r: RadiologyDocumentRecord): Promise<boolean> {
    try {
      this.db
        .prepare('INSERT INTO radiology_documents (id, site_id, case_id, kind, message_key, content_sealed, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)')
        .run(r.id, r.siteId, r.caseId, r.kind, r.messageKey, r.contentSealed, r.createdAt);
      return true;
    } catch (err) {
      if (isConstraint(err)) return false;
      throw err;
    }
  }

  async listDocuments(siteId: string, caseId: string): Promise<RadiologyDocumentRecord[]> {
    const rows = this.db.prepare('SELECT * FROM radiology_documents WHERE site_id = ? AND case_id = ? ORDER BY created_at, rowid').all(siteId, caseId) as {
      id: string;
      site_id: string;
      case_id: string;
      kind: 'order' | 'report';
      message_key: string;
      content_sealed: string;
      created_at: string;
    }[];
    return rows.map((r) => ({ id: r.id, siteId: r.site_id, caseId: r.case_id, kind: r.kind, messageKey: r.message_key, contentSealed: r.content_sealed, createdAt: r.created_at }));
  }

  async deleteByCase(siteId: string, caseId: string): Promise<void> {
    this.db.transaction(() => {
      this.db.prepare('DELETE FROM radiology_instances WHERE site_id = ? AND case_id = ?').run(siteId, caseId);
      this.db.prepare('DELETE FROM radiology_series WHERE site_id = ? AND case_id = ?').run(siteId, caseId);
      this.db.prepare('DELETE FROM radiology_documents WHERE site_id = ? AND case_id = ?').run(siteId, caseId);
      this.db.prepare('DELETE FROM radiology_case_keys WHERE site_id = ? AND case_id = ?').run(siteId, caseId);
    })();
  }
}
