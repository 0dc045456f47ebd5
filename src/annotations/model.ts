// Annotations as stored: the current state of each annotation and the log of versioned
// operations that produced it, in one per-case sequence. Geometry is plain GeoJSON; label,
// colour and comment are one sealed JSON value (DataKeys, owner "case:<caseId>", bound to
// "annotation:<id>:<version>", so a sealed value cannot be replayed into another version).
import type { AnnotationGeometry, AnnotationKind, AnnotationOpKind } from '../protocol/annotations';

export interface AnnotationRecord {
  id: string;
  siteId: string;
  caseId: string;
  materialId: string;
  /** For a DICOM stack (radiology): the slice, in display order, the annotation is drawn on; null otherwise. */
  slice?: number | null;
  /** The creating client's id; one per case, so a retried create stores nothing new. */
  clientId: string;
  kind: AnnotationKind;
  geometry: AnnotationGeometry;
  /** Sealed JSON of { label, color, text }. */
  propertiesSealed: string;
  version: number;
  /** A deleted annotation stays as a tombstone: its history and last version remain readable. */
  deleted: boolean;
  createdBy: string;
  createdAt: string;
  updatedBy: string;
  updatedAt: string;
}

/** One operation of a case's annotation log: the state it produced, under its sequence number. */
export interface AnnotationOpRecord {
  seq: number;
  op: AnnotationOpKind;
  annotation: AnnotationRecord;
}

export interface AnnotationRepository {
  /**
   * Stores a new annotation (version 1) and its create op under the case's next sequence number,
   * as one durable write. Throws DuplicateKeyError('annotation.clientId') when the case already
   * has an annotation with that clientId.
   */
  create(record: AnnotationRecord): Promise<AnnotationOpRecord>;
  /** create() for many annotations of one case, in order (an import); on SQLite all or nothing. */
  createMany(records: AnnotationRecord[]): Promise<AnnotationOpRecord[]>;
  /**
   * Compare-and-swap: replaces the annotation with `next` only if it is still at version
   * `next.version - 1`, and appends the op, as one durable write. Returns null (and changes
   * nothing) when the annotation does not exist in that site and case or is at another version.
   */
  apply(next: AnnotationRecord, op: 'update' | 'delete'): Promise<AnnotationOpRecord | null>;
  findById(siteId: string, caseId: string, id: string): Promise<AnnotationRecord | null>;
  /** The create op of the annotation a client created with `clientId`. */
  findCreateOp(siteId: string, caseId: string, clientId: string): Promise<AnnotationOpRecord | null>;
  /** Current annotations not deleted, of the case or of one of its materials, by createdAt then id. */
  listCurrent(siteId: string, caseId: string, materialId?: string): Promise<AnnotationRecord[]>;
  /** Ops with seq > afterSeq, ascending, at most `limit`. */
  listOpsAfter(siteId: string, caseId: string, afterSeq: number, limit: number): Promise<AnnotationOpRecord[]>;
  /** Every op of one annotation, by version. */
  listHistory(siteId: string, caseId: string, annotationId: string): Promise<AnnotationOpRecord[]>;
  /** The case's last op sequence number, 0 when it has none. */
  latestSeq(siteId: string, caseId: string): Promise<number>;
  /** Retention and case deletion: every annotation and op of the case in that site; returns the annotations removed. */
  deleteByCase(siteId: string, caseId: string): Promise<number>;
}
