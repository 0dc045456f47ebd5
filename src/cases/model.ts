// Case and material records as stored. Patient details are kept only sealed (DataKeys, owner
// "case:<id>"); material names are sealed too, since file names often carry patient names.
import type { CaseStatus, MaterialStatus } from '../protocol/cases';

export interface CaseRecord {
  id: string;
  siteId: string;
  label: string;
  title: string;
  clinicalQuestion: string;
  status: CaseStatus;
  /** Sealed JSON of the patient details, or null when none were given. */
  patientSealed: string | null;
  createdAt: string;
  updatedAt: string;
  createdBy: string | null;
  updatedBy: string | null;
}

export interface MaterialRecord {
  id: string;
  siteId: string;
  caseId: string;
  nameSealed: string;
  /** Sniffed from the content, never taken from the client. */
  mime: string;
  sizeBytes: number;
  sha256: string;
  status: MaterialStatus;
  progress: number;
  width: number | null;
  height: number | null;
  tileSize: number;
  overlap: number;
  tileFormat: 'jpeg';
  error: string | null;
  createdAt: string;
  updatedAt: string;
  createdBy: string | null;
}

export interface CaseListFilter {
  status?: CaseStatus;
  /** Case-insensitive substring of the title or label. */
  q?: string;
  limit: number;
  offset: number;
}

export type CasePatch = Partial<Pick<CaseRecord, 'title' | 'clinicalQuestion' | 'status' | 'patientSealed'>> & {
  updatedAt: string;
  updatedBy: string | null;
};

export type MaterialPatch = Partial<
  Pick<MaterialRecord, 'status' | 'progress' | 'width' | 'height' | 'error'>
> & { updatedAt: string };

export interface CaseRepository {
  create(record: CaseRecord): Promise<void>;
  findById(siteId: string, id: string): Promise<CaseRecord | null>;
  /** Newest first. */
  list(siteId: string, filter: CaseListFilter): Promise<{ cases: CaseRecord[]; total: number }>;
  update(siteId: string, id: string, patch: CasePatch): Promise<CaseRecord | null>;
  delete(siteId: string, id: string): Promise<boolean>;
  /** Cases of a site created before `before` (ISO), oldest first: the retention purge's input. */
  listCreatedBefore(siteId: string, before: string, limit: number): Promise<CaseRecord[]>;
}

export interface MaterialRepository {
  create(record: MaterialRecord): Promise<void>;
  findById(siteId: string, caseId: string, id: string): Promise<MaterialRecord | null>;
  listByCase(siteId: string, caseId: string): Promise<MaterialRecord[]>;
  update(siteId: string, id: string, patch: MaterialPatch): Promise<MaterialRecord | null>;
  delete(siteId: string, id: string): Promise<boolean>;
  deleteByCase(siteId: string, caseId: string): Promise<number>;
  /** Whether a material with this id exists in any site (start-up sweep of files on disk). */
  exists(id: string): Promise<boolean>;
  /** Every material, any site, still queued or converting: resumed or cleaned at start-up. */
  listUnfinished(): Promise<MaterialRecord[]>;
}

export type TransferStatus = 'pending' | 'accepted' | 'refused';

export interface TransferRecord {
  id: string;
  fromSiteId: string;
  toSiteId: string;
  caseId: string;
  /** The sender's case title at the time of sending (what the inbox shows). */
  title: string;
  note: string;
  status: TransferStatus;
  /** The receiving site's new case, once accepted. */
  receivedCaseId: string | null;
  createdAt: string;
  createdBy: string;
  decidedAt: string | null;
  decidedBy: string | null;
}

/** "Site `receiverSiteId` agrees to receive studies from site `senderSiteId`." */
export interface TransferAgreement {
  receiverSiteId: string;
  senderSiteId: string;
  createdAt: string;
  createdBy: string;
}

export interface TransferRepository {
  create(record: TransferRecord): Promise<void>;
  /** A transfer visible to a site: as sender or as receiver. */
  findForSite(siteId: string, id: string): Promise<TransferRecord | null>;
  listInbox(toSiteId: string): Promise<TransferRecord[]>;
  listOutbox(fromSiteId: string): Promise<TransferRecord[]>;
  /** Decides a pending transfer (compare-and-swap on status); returns the record or null if not pending. */
  decide(toSiteId: string, id: string, decision: { status: 'accepted' | 'refused'; receivedCaseId: string | null; decidedAt: string; decidedBy: string }): Promise<TransferRecord | null>;
  /** Retention: transfers that reference a case of this site as sender. */
  deleteByCase(fromSiteId: string, caseId: string): Promise<number>;

  putAgreement(agreement: TransferAgreement): Promise<void>;
  deleteAgreement(receiverSiteId: string, senderSiteId: string): Promise<boolean>;
  hasAgreement(receiverSiteId: string, senderSiteId: string): Promise<boolean>;
  /** Sites that `receiverSiteId` accepts from. */
  listSenders(receiverSiteId: string): Promise<TransferAgreement[]>;
  /** Sites that accept from `senderSiteId`. */
  listReceivers(senderSiteId: string): Promise<TransferAgreement[]>;
}
