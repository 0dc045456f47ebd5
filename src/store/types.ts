// What the composition root receives: one object holding every repository, chosen by
// createStore (src/store/index.ts): MongoDB when MONGODB_URI is set, else embedded SQLite.
import type { AnnotationRepository } from '../annotations/model';
import type { AuditRepository } from '../audit/model';
import type { CaseRepository, MaterialRepository, TransferRepository } from '../cases/model';
import type { ChatRepository } from '../chat/model';
import type { DataKeyRepository } from '../crypto/dataKeys';
import type { FollowUpRepository } from '../followups/model';
import type { RadiologyRepository } from '../radiology/model';
import type { SessionRepository, SiteRepository, UserRepository } from '../identity/repository';

export interface Store {
  readonly kind: 'sqlite' | 'mongo';
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
  readonly radiology: RadiologyRepository;
  readonly followUps: FollowUpRepository;
  /** True while the store can serve requests (used by /readyz). */
  ping(): Promise<boolean>;
  close(): Promise<void>;
}

/** A unique constraint refused the write (for example an e-mail already in use). */
export class DuplicateKeyError extends Error {
  override name = 'DuplicateKeyError';
  constructor(readonly key: string) {
    super(`duplicate key: ${key}`);
  }
}
