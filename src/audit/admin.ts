// The site admin's view of the audit trail: search with keyset paging, streamed exports, chain
// verification. Each use is authorised (site admin of that site) and itself audited.
import { AppError } from '../errors';
import { requireAuthorized, type Actor } from '../identity/authorize';
import type { RequestContext } from '../identity/service';
import type { AuditExportQuery, AuditSearchQuery, AuditSearchResponse, AuditVerification } from '../protocol/governance';
import { csvChunks, fhirChunks } from './export';
import type { AuditCursor, AuditDetails, AuditFilter, AuditRecord, AuditRepository } from './model';
import type { AuditService } from './service';

type FilterQuery = Omit<AuditSearchQuery, 'limit' | 'cursor'>;

export function toAuditFilter(q: FilterQuery): AuditFilter {
  const filter: AuditFilter = {};
  if (q.actor !== undefined) filter.actorUserId = q.actor;
  if (q.ip !== undefined) filter.ip = q.ip;
  if (q.objectType !== undefined) filter.objectType = q.objectType;
  if (q.objectId !== undefined) filter.objectId = q.objectId;
  if (q.type !== undefined) {
    if (q.type.endsWith('.*')) filter.typePrefix = q.type.slice(0, -1);
    else filter.type = q.type;
  }
  if (q.action !== undefined) filter.action = q.action;
  if (q.outcome !== undefined) filter.outcome = q.outcome as AuditFilter['outcome'];
  if (q.from !== undefined) filter.from = q.from;
  if (q.to !== undefined) filter.to = q.to;
  return filter;
}

/** The filters as audit details: which search or export was run (ids only, no patient data). */
function filterDetails(q: FilterQuery): AuditDetails {
  const details: AuditDetails = {};
  for (const [key, value] of Object.entries(q)) if (value !== undefined) details[key] = value as string | number;
  return details;
}

export function encodeCursor(c: AuditCursor): string {
  return Buffer.from(`${c.time}|${c.seq}`).toString('base64url');
}

export function decodeCursor(text: string): AuditCursor {
  const [time, seq] = Buffer.from(text, 'base64url').toString('utf8').split('|');
  const n = Number(seq);
  if (!time || !/^\d{4}-\d\d-\d\dT[\d:.]+Z$/.test(time) || !Number.isSafeInteger(n) || n < 1) {
    throw new AppError('VALIDATION_FAILED', 'The cursor is not valid.', [{ path: 'cursor', issue: 'not a cursor from a previous page' }]);
  }
  return { time, seq: n };
}

export interface AuditExport {
  contentType: string;
  fileName: string;
  chunks: AsyncGenerator<string>;
}

export class AuditAdmin {
  constructor(
    private readonly repo: AuditRepository,
    private readonly audit: AuditService,
    private readonly clock: () => Date = () => new Date(),
  ) {}

  private auditActor(actor: Actor, ctx: RequestContext) {
    return { userId: actor.userId, role: actor.role, ip: ctx.ip, userAgent: ctx.userAgent };
  }

  async search(actor: Actor, ctx: RequestContext, query: AuditSearchQuery): Promise<AuditSearchResponse> {
    requireAuthorized(actor, 'audit.read', { siteId: actor.siteId });
    const { limit, cursor, ...filters } = query;
    const after = cursor ? decodeCursor(cursor) : null;
    // Recorded before the read, so a search that fails half-way is still on the trail.
    await this.audit.record({
      siteId: actor.siteId,
      type: 'audit.search',
      action: 'R',
      actor: this.auditActor(actor, ctx),
      objects: [{ type: 'site', id: actor.siteId }],
      details: { ...filterDetails(filters), page: after ? 'next' : 'first' },
    });
    const records = await this.repo.search(actor.siteId, toAuditFilter(filters), after, limit + 1);
    const page = records.slice(0, limit);
    const last = page[page.length - 1];
    return { records: page, nextCursor: records.length > limit && last ? encodeCursor({ time: last.time, seq: last.seq }) : null };
  }

  async export(actor: Actor, ctx: RequestContext, query: AuditExportQuery): Promise<AuditExport> {
    requireAuthorized(actor, 'audit.export', { siteId: actor.siteId });
    const { format, ...filters } = query;
    const now = this.clock();
    await this.audit.record({
      siteId: actor.siteId,
      type: 'audit.export',
      action: 'R',
      actor: this.auditActor(actor, ctx),
      objects: [{ type: 'site', id: actor.siteId }],
      details: { ...filterDetails(filters), format },
    });
    const filter = toAuditFilter(filters);
    const stamp = now.toISOString().replace(/[:.]/g, '-');
    return format === 'csv'
      ? { contentType: 'text/csv; charset=utf-8', fileName: `audit-${stamp}.csv`, chunks: csvChunks(this.repo, actor.siteId, filter) }
      : { contentType: 'application/fhir+json; charset=utf-8', fileName: `audit-${stamp}.fhir.json`, chunks: fhirChunks(this.repo, actor.siteId, filter, now) };
  }

  /** Walks the site's chain now; the result is recorded as an `audit.verify` record. */
  async verify(actor: Actor, ctx: RequestContext): Promise<AuditVerification> {
    requireAuthorized(actor, 'audit.verify', { siteId: actor.siteId });
    return recordVerification(this.audit, actor.siteId, this.auditActor(actor, ctx), this.clock);
  }

  /** The latest verification of the site, whoever ran it (an admin, another node, the CLI). */
  async lastVerification(actor: Actor, ctx: RequestContext): Promise<{ last: AuditVerification | null }> {
    requireAuthorized(actor, 'audit.read', { siteId: actor.siteId });
    await this.audit.record({
      siteId: actor.siteId,
      type: 'audit.search',
      action: 'R',
      actor: this.auditActor(actor, ctx),
      objects: [{ type: 'site', id: actor.siteId }],
      details: { type: 'audit.verify', page: 'first' },
    });
    const [latest] = await this.repo.search(actor.siteId, { type: 'audit.verify' }, null, 1);
    return { last: latest ? verificationFromRecord(latest) : null };
  }
}

export async function recordVerification(
  audit: AuditService,
  siteId: string,
  by: { userId: string | null; role: string | null; ip: string | null; userAgent: string | null },
  clock: () => Date,
): Promise<AuditVerification> {
  const result = await audit.verify(siteId);
  const records = result.chains[0]?.records ?? 0;
  const broken = result.breaks[0] ?? null;
  const verifiedAt = clock().toISOString();
  await audit.record({
    siteId,
    type: 'audit.verify',
    action: 'E',
    outcome: broken ? 8 : 0,
    actor: by,
    objects: [{ type: 'site', id: siteId }],
    details: {
      records,
      intact: broken === null,
      breakRecordId: broken?.recordId ?? null,
      breakSeq: broken?.seq ?? null,
      breakReason: broken?.reason ?? null,
      verifiedAt,
    },
  });
  return {
    siteId,
    records,
    intact: broken === null,
    firstBreak: broken ? { recordId: broken.recordId, seq: broken.seq, reason: broken.reason } : null,
    verifiedAt,
    verifiedBy: by.userId,
  };
}

function verificationFromRecord(r: AuditRecord): AuditVerification {
  const d = r.details;
  return {
    siteId: r.siteId,
    records: Number(d.records ?? 0),
    intact: d.intact === true,
    firstBreak:
      typeof d.breakRecordId === 'string'
        ? { recordId: d.breakRecordId, seq: Number(d.breakSeq), reason: d.breakReason as NonNullable<AuditVerification['firstBreak']>['reason'] }
        : null,
    verifiedAt: typeof d.verifiedAt === 'string' ? d.verifiedAt : r.time,
    verifiedBy: r.actor.userId,
  };
}
