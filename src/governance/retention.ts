// Retention (seed 003: "purge a study after 30 days ... down to 24 hours"): each site's cases
// older than its retention period are deleted with everything they hold (materials, tiles,
// originals, annotations, chat, outgoing transfers and their data key). Patient follow-ups go
// with their case, or earlier, once their window ended longer ago than the retention period; their
// consent records go with them (the audit trail keeps each consent event: docs/followups.md).
// Each run is audited per site: when, what and how many. Audit records themselves are kept.
import type { AuditService } from '../audit/service';
import type { CaseService } from '../cases/service';
import type { Logger } from '../observability/logger';
import type { Store } from '../store/types';

export interface PurgeReport {
  siteId: string;
  cutoff: string;
  cases: number;
  materials: number;
  /** Follow-ups deleted (with their consent records). */
  followUps: number;
}

const BATCH = 100;
/** Ids per audit record, so one record stays small. */
const IDS_PER_RECORD = 500;

export class RetentionService {
  #running: Promise<PurgeReport[]> | null = null;

  constructor(
    private readonly store: Store,
    private readonly audit: AuditService,
    private readonly cases: CaseService,
    private readonly logger: Logger,
    private readonly clock: () => Date = () => new Date(),
  ) {}

  /** Purges every site now. Concurrent calls share one run. */
  purgeAll(trigger: 'schedule' | 'command' = 'command'): Promise<PurgeReport[]> {
    this.#running ??= this.run(trigger).finally(() => {
      this.#running = null;
    });
    return this.#running;
  }

  private async run(trigger: string): Promise<PurgeReport[]> {
    const reports: PurgeReport[] = [];
    for (const site of await this.store.sites.list()) {
      const days = Math.max(1, site.policy.retentionDays);
      const cutoff = new Date(this.clock().getTime() - days * 24 * 3600 * 1000).toISOString();
      const deleted: string[] = [];
      let materials = 0;
      let followUps = await this.store.followUps.purge(site.id, { endedBefore: cutoff });
      // HL7 ADT's sealed patient registry (src/radiology) follows the same retention period.
      const radiologyPatients = await this.store.radiology.purgePatients(site.id, cutoff);
      for (;;) {
        const batch = await this.store.cases.listCreatedBefore(site.id, cutoff, BATCH);
        if (batch.length === 0) break;
        for (const record of batch) {
          followUps += await this.store.followUps.purge(site.id, { caseId: record.id });
          materials += await this.cases.deleteCaseData(record);
          deleted.push(record.id);
        }
      }
      for (let i = 0; i === 0 || i < deleted.length; i += IDS_PER_RECORD) {
        await this.audit.record({
          siteId: site.id,
          type: 'retention.purge',
          action: 'D',
          actor: { userId: null, role: 'system', ip: null, userAgent: `retention-${trigger}` },
          objects: deleted.slice(i, i + IDS_PER_RECORD).map((id) => ({ type: 'case', id })),
          details: { cutoff, retentionDays: days, cases: deleted.length, materials, followUps, radiologyPatients },
        });
      }
      if (deleted.length > 0 || followUps > 0) this.logger.info({ siteId: site.id, cases: deleted.length, materials, followUps, cutoff }, 'retention purge');
      reports.push({ siteId: site.id, cutoff, cases: deleted.length, materials, followUps });
    }
    return reports;
  }

  /** Runs the purge every `intervalMs` (first run soon after start); returns a stop function. */
  schedule(intervalMs: number): () => void {
    const tick = () => {
      this.purgeAll('schedule').catch((err) => this.logger.error({ err: { message: (err as Error).message } }, 'retention purge failed'));
    };
    const first = setTimeout(tick, Math.min(intervalMs, 60_000));
    const timer = setInterval(tick, intervalMs);
    first.unref();
    timer.unref();
    return () => {
      clearTimeout(first);
      clearInterval(timer);
    };
  }
}
