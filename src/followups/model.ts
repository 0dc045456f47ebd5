// Follow-up and consent records as stored, and the repository both stores implement. The invite
// token itself is never stored: only its SHA-256. The patient's contact label is sealed under the
// case's data key (it often names the patient).
import type { PatientState, Verification } from '../protocol/followups';

export interface FollowUpRecord {
  id: string;
  siteId: string;
  caseId: string;
  hostUserId: string;
  colleagues: string[];
  contactLabelSealed: string;
  startsAt: string;
  endsAt: string;
  verification: Verification | null;
  /** SHA-256 (hex) of the token's secret part. */
  tokenHash: string;
  state: PatientState;
  /** Random id of the patient device currently holding the invite (kept in its session). */
  bindingId: string | null;
  /** Set at the first admission: from then on only that device may use the invite. */
  bound: boolean;
  deviceCheck: { camera: boolean; microphone: boolean } | null;
  waitingSince: string | null;
  verifiedAt: string | null;
  failedVerifications: number;
  /** Short messages from the clinic to the waiting patient (text, at), newest last. */
  messages: { text: string; at: string }[];
  inviteSentAt: string | null;
  consentedAt: string | null;
  admittedAt: string | null;
  endedAt: string | null;
  createdAt: string;
  updatedAt: string;
}

export type FollowUpPatch = Partial<
  Pick<
    FollowUpRecord,
    | 'colleagues'
    | 'state'
    | 'bindingId'
    | 'bound'
    | 'deviceCheck'
    | 'waitingSince'
    | 'verifiedAt'
    | 'failedVerifications'
    | 'messages'
    | 'inviteSentAt'
    | 'consentedAt'
    | 'admittedAt'
    | 'endedAt'
  >
>;

export interface ConsentRecord {
  id: string;
  siteId: string;
  followUpId: string;
  textVersion: string;
  textSha256: string;
  givenAt: string;
  ip: string | null;
  userAgent: string | null;
}

export interface FollowUpRepository {
  create(record: FollowUpRecord): Promise<void>;
  /** By id alone: an invite token names its follow-up, not its site. */
  findById(id: string): Promise<FollowUpRecord | null>;
  /**
   * Compare-and-set: applies `patch` only while the record's `updatedAt` is still `expectUpdatedAt`
   * (no other writer came between read and write). Returns the new record, or null if it moved.
   */
  update(id: string, expectUpdatedAt: string, patch: FollowUpPatch & { updatedAt: string }): Promise<FollowUpRecord | null>;
  /** Follow-ups of a site that `userId` hosts or was invited to, ending after `after`. */
  listForUser(siteId: string, userId: string, after: string): Promise<FollowUpRecord[]>;
  listByCase(siteId: string, caseId: string): Promise<FollowUpRecord[]>;
  addConsent(record: ConsentRecord): Promise<void>;
  listConsents(siteId: string, followUpId: string): Promise<ConsentRecord[]>;
  /** Deletes follow-ups (and their consent records) whose window ended before `before`, or of the case. */
  purge(siteId: string, filter: { endedBefore: string } | { caseId: string }): Promise<number>;
}
