// Audit records after DICOM PS3.15 A.5 / IHE ATNA: who did what to which object, when, from
// where, with what outcome. Hash-chained per site: each record carries its predecessor's hash.

/** C create, R read, U update, D delete, E execute (login, logout, verify...). */
export type AuditAction = 'C' | 'R' | 'U' | 'D' | 'E';
/** ATNA EventOutcomeIndicator: 0 success, 4 minor failure, 8 serious failure, 12 major failure. */
export type AuditOutcome = 0 | 4 | 8 | 12;

export interface AuditActor {
  userId: string | null;
  role: string | null;
  ip: string | null;
  userAgent: string | null;
}

export interface AuditObject {
  type: string;
  id: string;
}

export type AuditDetails = Record<string, string | number | boolean | null>;

export interface AuditRecord {
  id: string;
  /** The site chain this record belongs to; SYSTEM_CHAIN when no site is known (unknown e-mail). */
  siteId: string;
  seq: number;
  type: string;
  action: AuditAction;
  outcome: AuditOutcome;
  time: string;
  actor: AuditActor;
  objects: AuditObject[];
  details: AuditDetails;
  prevHash: string;
  hash: string;
}

export const SYSTEM_CHAIN = '_system';
export const GENESIS_HASH = '0'.repeat(64);

/** Search filters; every one optional, combined with AND. */
export interface AuditFilter {
  actorUserId?: string;
  ip?: string;
  objectType?: string;
  objectId?: string;
  /** Exact event type. */
  type?: string;
  /** Event types starting with this prefix (which ends with "."). */
  typePrefix?: string;
  action?: AuditAction;
  outcome?: AuditOutcome;
  /** Inclusive lower and exclusive upper bound on `time` (ISO). */
  from?: string;
  to?: string;
}

/** Keyset position: the (time, seq) of the last record of the previous page. */
export interface AuditCursor {
  time: string;
  seq: number;
}

/** Raw aggregates of one site's trail over [from, to), from which usage reports are built. */
export interface AuditUsageAggregates {
  /** Records per UTC month ("YYYY-MM"), type and outcome, for USAGE_TYPES; with distinct actors. */
  counts: { month: string; type: string; outcome: number; records: number; actors: number }[];
  /** Distinct users with a successful login over the whole range. */
  activeUsers: number;
  /** Successful uploads per month by `details.mime`. */
  materials: { month: string; mime: string; count: number }[];
  /** Distinct (case, UTC day) pairs per month with room joins by at least two different users. */
  consultations: { month: string; count: number }[];
  /** Sum of numeric `details.durationSeconds` of `media.*` records per month. */
  mediaSeconds: { month: string; seconds: number }[];
}

/** The event types whose per-month counts usage reports need. */
export const USAGE_TYPES = ['auth.login', 'case.create', 'room.join', 'followup.admit'] as const;

export interface AuditRepository {
  /**
   * Appends the next record of a site chain. `build` receives the current head (null for an
   * empty chain) and returns the full record; implementations retry `build` if another writer
   * took that sequence number first, so the chain never forks.
   */
  appendChained(siteId: string, build: (head: { seq: number; hash: string } | null) => AuditRecord): Promise<AuditRecord>;
  /** The records of one chain in sequence order, in pages. */
  listChain(siteId: string, afterSeq: number, limit: number): Promise<AuditRecord[]>;
  listChains(): Promise<string[]>;
  /** Records in every chain together (the sum of each chain's head seq): the audit_chain_records metric. */
  totalChainLength(): Promise<number>;
  /** A site's records of the given types at or after `since` (ISO), newest first. */
  listRecent(siteId: string, types: string[], since: string, limit: number): Promise<AuditRecord[]>;
  /**
   * One site's records matching `filter`, newest first (time, then seq, descending), strictly
   * after `cursor` in that order. Indexed for every filter, so deep pages stay fast.
   */
  search(siteId: string, filter: AuditFilter, cursor: AuditCursor | null, limit: number): Promise<AuditRecord[]>;
  usageAggregates(siteId: string, from: string, to: string): Promise<AuditUsageAggregates>;
}
