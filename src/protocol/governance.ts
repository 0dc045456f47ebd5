// Wire contract of the governance routes (audit search, export and verification, usage
// statistics), shared by the server and the browser admin pages. Every schema is strict.
import { z } from 'zod';

const id = z.string().regex(/^[A-Za-z0-9_-]{8,64}$/);
/** An audit event type ("case.read") or a prefix ending in ".*" ("auth.*"). */
const auditType = z.string().regex(/^[a-z][a-z0-9_]*(\.[a-z0-9_]+)*(\.\*)?$/).max(64);
const isoTime = z.iso.datetime({ offset: false });
const month = z.string().regex(/^\d{4}-(0[1-9]|1[0-2])$/);

/** Filters shared by search and export; all optional, combined with AND. */
const auditFilterShape = {
  /** User id of the actor. */
  actor: id.optional(),
  /** Object the record names: `objectType` alone, or with `objectId` (e.g. case + its id). */
  objectType: z.string().regex(/^[a-z][a-z_]{0,31}$/).optional(),
  objectId: id.optional(),
  type: auditType.optional(),
  action: z.enum(['C', 'R', 'U', 'D', 'E']).optional(),
  outcome: z.enum(['0', '4', '8', '12']).transform(Number).optional(),
  /** Inclusive lower and exclusive upper bound of the record time (UTC, ISO 8601, "Z"). */
  from: isoTime.optional(),
  to: isoTime.optional(),
  /** Client IP exactly as recorded. */
  ip: z.string().min(2).max(64).regex(/^[0-9A-Fa-f:.]+$/).optional(),
};

const refineFilter = <T extends { objectId?: string; objectType?: string; from?: string; to?: string }>(v: T, ctx: z.RefinementCtx) => {
  if (v.objectId && !v.objectType) ctx.addIssue({ code: 'custom', path: ['objectType'], message: 'objectId needs objectType' });
  if (v.from && v.to && v.from >= v.to) ctx.addIssue({ code: 'custom', path: ['to'], message: 'to must be after from' });
};

export const auditSearchQuerySchema = z
  .strictObject({
    ...auditFilterShape,
    limit: z.coerce.number().int().min(1).max(200).default(50),
    /** Opaque: the `nextCursor` of the previous page. */
    cursor: z.string().regex(/^[A-Za-z0-9_-]{1,128}$/).optional(),
  })
  .superRefine(refineFilter);

export const auditExportQuerySchema = z
  .strictObject({ ...auditFilterShape, format: z.enum(['csv', 'fhir']) })
  .superRefine(refineFilter);

export const usageQuerySchema = z
  .strictObject({
    /** First and last month included, "YYYY-MM" (UTC). Default: the last 12 months. */
    from: month.optional(),
    to: month.optional(),
  })
  .superRefine((v, ctx) => {
    if (v.from && v.to && v.from > v.to) ctx.addIssue({ code: 'custom', path: ['to'], message: 'to must not be before from' });
  });

export type AuditSearchQuery = z.output<typeof auditSearchQuerySchema>;
export type AuditExportQuery = z.output<typeof auditExportQuerySchema>;
export type UsageQuery = z.output<typeof usageQuerySchema>;

export interface PublicAuditRecord {
  id: string;
  siteId: string;
  seq: number;
  type: string;
  action: 'C' | 'R' | 'U' | 'D' | 'E';
  outcome: 0 | 4 | 8 | 12;
  time: string;
  actor: { userId: string | null; role: string | null; ip: string | null; userAgent: string | null };
  objects: { type: string; id: string }[];
  details: Record<string, string | number | boolean | null>;
  prevHash: string;
  hash: string;
}

export interface AuditSearchResponse {
  records: PublicAuditRecord[];
  /** Pass as `cursor` for the next (older) page; null on the last page. */
  nextCursor: string | null;
}

export interface AuditVerification {
  siteId: string;
  records: number;
  intact: boolean;
  firstBreak: null | { recordId: string; seq: number; reason: 'hash mismatch' | 'previous hash mismatch' | 'sequence gap' };
  verifiedAt: string;
  /** User id of the admin who ran it; null for the CLI or the scheduler. */
  verifiedBy: string | null;
}

export interface UsageMonth {
  month: string;
  /** Distinct users with at least one successful login in the month (a count, never who). */
  activeUsers: number;
  logins: number;
  failedLogins: number;
  casesCreated: number;
  materialsUploaded: number;
  /** Uploaded materials by sniffed MIME type. */
  materialsByType: Record<string, number>;
  roomJoins: number;
  /** Distinct (case, UTC day) pairs in which at least two different users joined the case room. */
  consultations: number;
  /** Video follow-ups in which a patient was admitted (distinct follow-ups of `followup.admit` records). */
  followUps: number;
  /** Audio, video and screen streams: media.start to media.stop, per stream, in minutes (one decimal), counted in the month the stream stops. */
  mediaMinutes: number;
}

export interface UsageReport {
  siteId: string;
  from: string;
  to: string;
  generatedAt: string;
  users: { total: number; byRole: Record<string, number>; stopped: number; locked: number };
  /** Cases held now (after retention purges). */
  casesHeld: number;
  months: UsageMonth[];
  totals: Omit<UsageMonth, 'month'>;
}

export interface OperatorUsageReport {
  from: string;
  to: string;
  generatedAt: string;
  sites: (Omit<UsageReport, 'months' | 'from' | 'to' | 'generatedAt'> & { name: string })[];
  totals: Omit<UsageMonth, 'month'> & { sites: number; users: number; casesHeld: number };
}
