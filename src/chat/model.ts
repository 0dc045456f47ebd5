// Chat messages as stored, and their repository contract. The text is kept only sealed
// (DataKeys, owner "case:<caseId>", bound to "chat:<id>"): clinicians name patients in chat.

export interface ChatMessageRecord {
  id: string;
  siteId: string;
  caseId: string;
  /** 1..n per case, without gaps: a client resumes after the last one it holds. */
  seq: number;
  userId: string;
  /** The author's display name when the message was sent (staff, not patient data). */
  userName: string;
  textSealed: string;
  /** The client's id for the message; one per case, so a retried send stores nothing new. */
  clientId: string;
  createdAt: string;
}

export interface ChatRepository {
  /**
   * Appends the next message of a case: `build` receives its sequence number (the case's last +
   * 1) and returns the record. Implementations retry `build` if another writer took that number
   * first, so the sequence never has a gap or a duplicate. Throws DuplicateKeyError
   * ('chat.clientId') when the case already has a message with the record's clientId.
   */
  append(siteId: string, caseId: string, build: (nextSeq: number) => ChatMessageRecord): Promise<ChatMessageRecord>;
  findByClientId(siteId: string, caseId: string, clientId: string): Promise<ChatMessageRecord | null>;
  /** Messages with seq > afterSeq, ascending, at most `limit`. */
  listAfter(siteId: string, caseId: string, afterSeq: number, limit: number): Promise<ChatMessageRecord[]>;
  /** The case's last sequence number, 0 when it has no message. */
  latestSeq(siteId: string, caseId: string): Promise<number>;
  /** Retention and case deletion: every message of the case in that site; returns how many. */
  deleteByCase(siteId: string, caseId: string): Promise<number>;
}
