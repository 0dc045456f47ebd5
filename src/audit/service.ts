// Writes audit events (append-only, hash-chained per site) and verifies chains. Every caller
// awaits `record`, so an action is acknowledged only once its audit record is durable.
import { newId } from '../ids';
import { checkLink, hashRecord, type ChainBreak } from './chain';
import {
  GENESIS_HASH,
  SYSTEM_CHAIN,
  type AuditAction,
  type AuditActor,
  type AuditDetails,
  type AuditObject,
  type AuditOutcome,
  type AuditRecord,
  type AuditRepository,
} from './model';

export interface AuditEventInput {
  siteId: string | null;
  type: string;
  action: AuditAction;
  outcome?: AuditOutcome;
  actor: AuditActor;
  objects?: AuditObject[];
  details?: AuditDetails;
}

export const ANONYMOUS_ACTOR: AuditActor = { userId: null, role: null, ip: null, userAgent: null };

export class AuditService {
  readonly #subscribers = new Set<(record: AuditRecord) => void>();

  constructor(
    private readonly repo: AuditRepository,
    private readonly clock: () => Date = () => new Date(),
    /** Told of every appended record (metrics). */
    private readonly onRecord: (record: AuditRecord) => void = () => undefined,
  ) {}

  async record(event: AuditEventInput): Promise<AuditRecord> {
    const siteId = event.siteId ?? SYSTEM_CHAIN;
    const time = this.clock().toISOString();
    const id = newId();
    const record = await this.repo.appendChained(siteId, (head) => {
      const body = {
        id,
        siteId,
        seq: head ? head.seq + 1 : 1,
        type: event.type,
        action: event.action,
        outcome: event.outcome ?? 0,
        time,
        actor: {
          userId: event.actor.userId,
          role: event.actor.role,
          ip: event.actor.ip,
          userAgent: event.actor.userAgent ? event.actor.userAgent.slice(0, 256) : null,
        },
        objects: event.objects ?? [],
        details: event.details ?? {},
        prevHash: head ? head.hash : GENESIS_HASH,
      };
      return { ...body, hash: hashRecord(body) };
    });
    this.onRecord(record);
    for (const notify of this.#subscribers) {
      try {
        notify(record);
      } catch {
        // A subscriber (syslog forwarding, alerting) must never fail the audited action.
      }
    }
    return record;
  }

  /** Told of every record once it is durable; returns the unsubscribe function. */
  subscribe(notify: (record: AuditRecord) => void): () => void {
    this.#subscribers.add(notify);
    return () => this.#subscribers.delete(notify);
  }

  /** Walks every chain (or one) and reports the first broken record of each, with counts. */
  async verify(onlySite?: string): Promise<{ chains: { siteId: string; records: number }[]; breaks: ChainBreak[] }> {
    const sites = onlySite ? [onlySite] : await this.repo.listChains();
    const chains: { siteId: string; records: number }[] = [];
    const breaks: ChainBreak[] = [];
    for (const siteId of sites) {
      let prev: AuditRecord | null = null;
      let count = 0;
      let broken = false;
      for (;;) {
        const page = await this.repo.listChain(siteId, prev ? prev.seq : 0, 1000);
        for (const record of page) {
          count++;
          const reason = checkLink(prev, record);
          if (reason && !broken) {
            breaks.push({ siteId, recordId: record.id, seq: record.seq, reason });
            broken = true;
          }
          prev = record;
        }
        if (page.length < 1000) break;
      }
      chains.push({ siteId, records: count });
    }
    return { chains, breaks };
  }
}
