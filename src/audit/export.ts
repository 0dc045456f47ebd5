// Audit trail exports, one record at a time: CSV rows and FHIR R4 AuditEvent resources. The
// callers stream them page by page (keyset paging), so an export of millions of records never
// holds more than one page in memory.
import { createHash } from 'node:crypto';
import { DCM_SYSTEM, eventCode, objectTypeCode } from './codes';
import type { AuditCursor, AuditFilter, AuditRecord, AuditRepository } from './model';

export const CSV_COLUMNS = ['time', 'seq', 'id', 'type', 'action', 'outcome', 'actor_user_id', 'actor_role', 'ip', 'user_agent', 'objects', 'details', 'hash'] as const;

function csvCell(value: string | number | null): string {
  if (value === null) return '';
  let text = String(value);
  // A cell a spreadsheet would evaluate (=, +, -, @, tab, CR) is neutralised (CSV injection).
  if (/^[=+\-@\t\r]/.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

export function csvHeader(): string {
  return `${CSV_COLUMNS.join(',')}\r\n`;
}

export function csvRow(r: AuditRecord): string {
  return (
    [
      r.time,
      r.seq,
      r.id,
      r.type,
      r.action,
      r.outcome,
      r.actor.userId,
      r.actor.role,
      r.actor.ip,
      r.actor.userAgent,
      r.objects.map((o) => `${o.type}:${o.id}`).join(';'),
      JSON.stringify(r.details),
      r.hash,
    ]
      .map(csvCell)
      .join(',') + '\r\n'
  );
}

/** A stable urn:uuid for a record (FHIR ids cannot hold our base64url ids' "_"). */
function recordUuid(r: AuditRecord): string {
  const h = createHash('sha256').update(`audit:${r.siteId}:${r.id}`).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-${((parseInt(h[16]!, 16) & 3) | 8).toString(16)}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

/** One audit record as a FHIR R4 AuditEvent (DICOM/ATNA semantics, as in the IHE BALP profile). */
export function fhirAuditEvent(r: AuditRecord): Record<string, unknown> {
  const code = eventCode(r.type);
  const system = r.actor.userId === null;
  return {
    resourceType: 'AuditEvent',
    type: { system: DCM_SYSTEM, code: code.code, display: code.display },
    subtype: [{ system: 'urn:case-collab:audit-event-type', code: r.type }],
    action: r.action,
    recorded: r.time,
    outcome: String(r.outcome),
    agent: [
      {
        who: system ? { display: r.actor.userAgent ?? 'system' } : { identifier: { system: 'urn:case-collab:user', value: r.actor.userId } },
        ...(r.actor.role ? { role: [{ text: r.actor.role }] } : {}),
        requestor: !system,
        ...(r.actor.ip ? { network: { address: r.actor.ip, type: '2' } } : {}),
      },
    ],
    source: {
      site: r.siteId,
      observer: { display: 'case-collab-server' },
      type: [{ system: 'http://terminology.hl7.org/CodeSystem/security-source-type', code: '4', display: 'Application Server' }],
    },
    entity: [
      ...r.objects.map((o) => ({
        what: { identifier: { system: `urn:case-collab:${o.type}`, value: o.id } },
        type: { system: 'http://terminology.hl7.org/CodeSystem/audit-entity-type', code: objectTypeCode(o.type) },
      })),
      {
        // The record itself, with its place in the site's hash chain, so a receiver can verify it.
        what: { identifier: { system: 'urn:case-collab:audit-record', value: r.id } },
        type: { system: 'http://terminology.hl7.org/CodeSystem/audit-entity-type', code: '4', display: 'Other' },
        detail: [
          { type: 'seq', valueString: String(r.seq) },
          { type: 'prevHash', valueString: r.prevHash },
          { type: 'hash', valueString: r.hash },
          ...Object.entries(r.details).map(([k, v]) => ({ type: k, valueString: v === null ? 'null' : String(v) })),
        ],
      },
    ],
  };
}

export const EXPORT_PAGE = 1000;

/** Every record matching `filter`, newest first, fetched one keyset page at a time. */
export async function* walkRecords(repo: AuditRepository, siteId: string, filter: AuditFilter, page = EXPORT_PAGE): AsyncGenerator<AuditRecord[]> {
  let cursor: AuditCursor | null = null;
  for (;;) {
    const records = await repo.search(siteId, filter, cursor, page);
    if (records.length > 0) yield records;
    if (records.length < page) return;
    const last = records[records.length - 1]!;
    cursor = { time: last.time, seq: last.seq };
  }
}

/** The CSV export as text chunks (one per page). */
export async function* csvChunks(repo: AuditRepository, siteId: string, filter: AuditFilter): AsyncGenerator<string> {
  yield csvHeader();
  for await (const records of walkRecords(repo, siteId, filter)) yield records.map(csvRow).join('');
}

/** The FHIR Bundle (type collection) as text chunks: written incrementally, never built whole. */
export async function* fhirChunks(repo: AuditRepository, siteId: string, filter: AuditFilter, now: Date): AsyncGenerator<string> {
  yield `{"resourceType":"Bundle","type":"collection","timestamp":${JSON.stringify(now.toISOString())},"entry":[`;
  let separator = '';
  for await (const records of walkRecords(repo, siteId, filter)) {
    const entries = records.map((r) => JSON.stringify({ fullUrl: `urn:uuid:${recordUuid(r)}`, resource: fhirAuditEvent(r) }));
    yield separator + entries.join(',');
    separator = ',';
  }
  yield ']}';
}
