// Usage statistics (seed 003: "usage and user statistics ... do not in any way identify
// individuals or patient identifiable information"): counts per site and month, computed from
// the audit trail (so they survive retention purges) and the user table. No names, no e-mails,
// no user or patient ids leave this module, only numbers.
import { walkRecords } from '../audit/export';
import type { AuditActor, AuditRecord, AuditUsageAggregates } from '../audit/model';
import type { AuditService } from '../audit/service';
import { AppError } from '../errors';
import { requireAuthorized, type Actor } from '../identity/authorize';
import type { RequestContext } from '../identity/service';
import type { OperatorUsageReport, UsageMonth, UsageQuery, UsageReport } from '../protocol/governance';
import type { Store } from '../store/types';

export const MAX_USAGE_MONTHS = 36;

type Figures = Omit<UsageMonth, 'month'>;

function emptyFigures(): Figures {
  return { activeUsers: 0, logins: 0, failedLogins: 0, casesCreated: 0, materialsUploaded: 0, materialsByType: {}, roomJoins: 0, consultations: 0, followUps: 0, mediaMinutes: 0 };
}

function monthIndex(month: string): number {
  return Number(month.slice(0, 4)) * 12 + Number(month.slice(5, 7)) - 1;
}

function monthOf(index: number): string {
  return `${Math.floor(index / 12)}-${String((index % 12) + 1).padStart(2, '0')}`;
}

/** Resolves the query's months (default: the 12 months ending with the current one). */
export function monthRange(query: UsageQuery, now: Date): { from: string; to: string; months: string[] } {
  const current = now.toISOString().slice(0, 7);
  const to = query.to ?? (query.from ? monthOf(Math.min(monthIndex(query.from) + 11, monthIndex(current))) : current);
  const from = query.from ?? monthOf(monthIndex(to) - 11);
  const count = monthIndex(to) - monthIndex(from) + 1;
  if (count < 1 || count > MAX_USAGE_MONTHS) {
    throw new AppError('VALIDATION_FAILED', `A usage report covers 1 to ${MAX_USAGE_MONTHS} months.`, [{ path: 'from', issue: `range must be 1 to ${MAX_USAGE_MONTHS} months` }]);
  }
  return { from, to, months: Array.from({ length: count }, (_, i) => monthOf(monthIndex(from) + i)) };
}

function addFigures(into: Figures, f: Figures): void {
  for (const key of ['logins', 'failedLogins', 'casesCreated', 'materialsUploaded', 'roomJoins', 'consultations', 'followUps'] as const) into[key] += f[key];
  into.mediaMinutes = Math.round((into.mediaMinutes + f.mediaMinutes) * 10) / 10;
  for (const [mime, n] of Object.entries(f.materialsByType)) into.materialsByType[mime] = (into.materialsByType[mime] ?? 0) + n;
}

/** Figures the trail holds as pairs or repeats, computed from the records themselves. */
interface Derived {
  /** Media seconds per month: streams paired start -> stop, counted in the month they stop. */
  mediaSeconds: Map<string, number>;
  /** Distinct follow-ups with a patient admitted, per month (a re-admission after a drop is the same follow-up). */
  followUps: Map<string, number>;
}

function mediaKey(r: AuditRecord): string {
  return [r.objects[0]?.id ?? '', r.actor.userId ?? r.actor.ip ?? '', String(r.details.kind ?? ''), String(r.details.source ?? '')].join('|');
}

/**
 * Pairs media.start and media.stop records of one stream (room, user, kind, source) in time
 * order; a stop that carries details.durationSeconds is counted by the store's aggregate instead.
 * A stream still running at the end of the range, or started before it, is not counted.
 */
export function mediaSecondsByMonth(chronological: AuditRecord[]): Map<string, number> {
  const open = new Map<string, number[]>();
  const seconds = new Map<string, number>();
  for (const r of chronological) {
    const key = mediaKey(r);
    if (r.type === 'media.start') {
      const starts = open.get(key) ?? [];
      starts.push(Date.parse(r.time));
      open.set(key, starts);
    } else if (r.type === 'media.stop') {
      const started = open.get(key)?.pop();
      if (started === undefined || typeof r.details.durationSeconds === 'number') continue;
      const month = r.time.slice(0, 7);
      seconds.set(month, (seconds.get(month) ?? 0) + Math.max(0, Date.parse(r.time) - started) / 1000);
    }
  }
  return seconds;
}

function buildMonths(months: string[], agg: AuditUsageAggregates, derived: Derived): { months: UsageMonth[]; totals: Figures } {
  const byMonth = new Map(months.map((m) => [m, { month: m, ...emptyFigures() }]));
  for (const c of agg.counts) {
    const m = byMonth.get(c.month);
    if (!m) continue;
    const ok = c.outcome === 0;
    if (c.type === 'auth.login') {
      if (ok) {
        m.logins += c.records;
        m.activeUsers += c.actors;
      } else m.failedLogins += c.records;
    } else if (ok && c.type === 'case.create') m.casesCreated += c.records;
    else if (ok && c.type === 'room.join') m.roomJoins += c.records;
  }
  for (const r of agg.materials) {
    const m = byMonth.get(r.month);
    if (!m) continue;
    m.materialsUploaded += r.count;
    m.materialsByType[r.mime] = (m.materialsByType[r.mime] ?? 0) + r.count;
  }
  for (const r of agg.consultations) {
    const m = byMonth.get(r.month);
    if (m) m.consultations += r.count;
  }
  const mediaSeconds = new Map(derived.mediaSeconds);
  for (const r of agg.mediaSeconds) mediaSeconds.set(r.month, (mediaSeconds.get(r.month) ?? 0) + r.seconds);
  for (const [month, seconds] of mediaSeconds) {
    const m = byMonth.get(month);
    if (m) m.mediaMinutes = Math.round((seconds / 60) * 10) / 10;
  }
  for (const [month, count] of derived.followUps) {
    const m = byMonth.get(month);
    if (m) m.followUps = count;
  }
  const totals = emptyFigures();
  for (const m of byMonth.values()) addFigures(totals, m);
  totals.activeUsers = agg.activeUsers;
  return { months: [...byMonth.values()], totals };
}

export class UsageService {
  constructor(
    private readonly store: Store,
    private readonly audit: AuditService,
    private readonly clock: () => Date = () => new Date(),
  ) {}

  /** A site's report; no authorisation here (callers: the admin route, the operator endpoint). */
  async siteReport(siteId: string, query: UsageQuery): Promise<UsageReport> {
    const now = this.clock();
    const { from, to, months } = monthRange(query, now);
    const start = `${from}-01T00:00:00.000Z`;
    const end = `${monthOf(monthIndex(to) + 1)}-01T00:00:00.000Z`;
    const agg = await this.store.audit.usageAggregates(siteId, start, end);
    const derived = await this.derive(siteId, start, end);
    const users = await this.store.users.listBySite(siteId);
    const byRole: Record<string, number> = {};
    for (const u of users) byRole[u.role] = (byRole[u.role] ?? 0) + 1;
    const { total: casesHeld } = await this.store.cases.list(siteId, { limit: 1, offset: 0 });
    return {
      siteId,
      from,
      to,
      generatedAt: now.toISOString(),
      users: {
        total: users.length,
        byRole,
        stopped: users.filter((u) => u.permissions.stopAccess).length,
        locked: users.filter((u) => u.lockedUntil !== null && Date.parse(u.lockedUntil) > now.getTime()).length,
      },
      casesHeld,
      ...buildMonths(months, agg, derived),
    };
  }

  private async derive(siteId: string, from: string, to: string): Promise<Derived> {
    const media: AuditRecord[] = [];
    for await (const page of walkRecords(this.store.audit, siteId, { typePrefix: 'media.', from, to })) media.push(...page);
    media.reverse();
    const admitted = new Map<string, Set<string>>();
    for await (const page of walkRecords(this.store.audit, siteId, { type: 'followup.admit', outcome: 0, from, to })) {
      for (const r of page) {
        const followUp = r.objects.find((o) => o.type === 'followup')?.id ?? r.id;
        const month = r.time.slice(0, 7);
        const set = admitted.get(month) ?? new Set<string>();
        set.add(followUp);
        admitted.set(month, set);
      }
    }
    return { mediaSeconds: mediaSecondsByMonth(media), followUps: new Map([...admitted].map(([m, set]) => [m, set.size])) };
  }

  async forAdmin(actor: Actor, ctx: RequestContext, query: UsageQuery): Promise<UsageReport> {
    requireAuthorized(actor, 'usage.read', { siteId: actor.siteId });
    const report = await this.siteReport(actor.siteId, query);
    await this.audit.record({
      siteId: actor.siteId,
      type: 'usage.read',
      action: 'R',
      actor: { userId: actor.userId, role: actor.role, ip: ctx.ip, userAgent: ctx.userAgent },
      objects: [{ type: 'site', id: actor.siteId }],
      details: { from: report.from, to: report.to },
    });
    return report;
  }

  /** Every site's totals and the sum (operator endpoint, audited on the system chain). */
  async operatorReport(query: UsageQuery, by: AuditActor): Promise<OperatorUsageReport> {
    const now = this.clock();
    const { from, to } = monthRange(query, now);
    const sites: OperatorUsageReport['sites'] = [];
    const totals: OperatorUsageReport['totals'] = { ...emptyFigures(), sites: 0, users: 0, casesHeld: 0 };
    for (const site of await this.store.sites.list()) {
      const r = await this.siteReport(site.id, { from, to });
      sites.push({ siteId: site.id, name: site.name, users: r.users, casesHeld: r.casesHeld, totals: r.totals });
      addFigures(totals, r.totals);
      totals.activeUsers += r.totals.activeUsers;
      totals.sites += 1;
      totals.users += r.users.total;
      totals.casesHeld += r.casesHeld;
    }
    await this.audit.record({ siteId: null, type: 'usage.operator.read', action: 'R', actor: by, details: { from, to, sites: sites.length } });
    return { from, to, generatedAt: now.toISOString(), sites, totals };
  }
}
