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
  /** A site's records of the given types at or after `since` (ISO), newest first. */
  listRecent(siteId: string, types: string[], since: string, limit: number): Promise<AuditRecord[]>;
}
