// Production store: MongoDB through mongoose on a private connection, same contract as src/store/sqlite.
import mongoose, { Schema, type Connection, type Model, type UpdateQuery } from 'mongoose';
import type { AnnotationOpRecord, AnnotationRecord, AnnotationRepository } from '../../annotations/model';
import { USAGE_TYPES, type AuditAction, type AuditActor, type AuditCursor, type AuditDetails, type AuditFilter, type AuditObject, type AuditOutcome, type AuditRecord, type AuditRepository, type AuditUsageAggregates } from '../../audit/model';
import type {
  CaseListFilter,
  CasePatch,
  CaseRecord,
  CaseRepository,
  MaterialPatch,
  MaterialRecord,
  MaterialRepository,
  TransferAgreement,
  TransferRecord,
  TransferRepository,
  TransferStatus,
} from '../../cases/model';
import type { ChatMessageRecord, ChatRepository } from '../../chat/model';
import type { DataKeyRecord, DataKeyRepository } from '../../crypto/dataKeys';
import type { SiteRecord, UserRecord } from '../../identity/model';
import type {
  LockoutRule,
  SessionRecord,
  SessionRepository,
  SiteRepository,
  UserPatch,
  UserRepository,
} from '../../identity/repository';
import type { AnnotationGeometry, AnnotationKind, AnnotationOpKind } from '../../protocol/annotations';
import type { CaseStatus, MaterialStatus } from '../../protocol/cases';
import type { Permissions, Role, SitePolicy } from '../../protocol/identity';
import { DuplicateKeyError, type Store } from '../types';
import { MongoRadiology, radiologyModels, type RadiologyModels } from './radiology';
import { followUpModels, MongoFollowUps, type FollowUpModels } from './followups';

// A write acknowledges a user action only once a majority has it in the journal, so a failover
// cannot roll back a password change, a lockout or an audit record the user was told about.
const MAJORITY = { w: 'majority', j: true } as const;

const APPEND_ATTEMPTS = 20;
const PING_TIMEOUT_MS = 3000;

const { trusted } = mongoose;

const SCHEMA_OPTIONS = {
  writeConcern: MAJORITY,
  versionKey: false,
  // Empty objects (audit details, permissions) must round-trip as {} like the SQLite JSON does.
  minimize: false,
  // connection.set('strictQuery') is not consulted by mongoose 9 when casting filters; the
  // schema option is, so unknown filter keys are dropped here rather than reaching the server.
  strictQuery: true,
  autoIndex: false,
  id: false,
} as const;

function isDuplicateKey(err: unknown, field?: string): boolean {
  if (typeof err !== 'object' || err === null) return false;
  const e = err as { code?: unknown; keyPattern?: Record<string, unknown>; message?: unknown };
  if (e.code !== 11000) return false;
  if (field === undefined) return true;
  if (e.keyPattern) return Object.hasOwn(e.keyPattern, field);
  return typeof e.message === 'string' && e.message.includes(field);
}

interface SiteDoc {
  _id: string;
  name: string;
  policy: SitePolicy;
  createdAt: string;
  updatedAt: string;
}

const siteSchema = new Schema<SiteDoc>(
  {
    _id: { type: String },
    name: { type: String },
    policy: { type: Schema.Types.Mixed },
    createdAt: { type: String },
    updatedAt: { type: String },
  },
  { ...SCHEMA_OPTIONS, collection: 'sites' },
);

function siteFromDoc(d: SiteDoc): SiteRecord {
  return { id: d._id, name: d.name, policy: d.policy, createdAt: d.createdAt, updatedAt: d.updatedAt };
}

interface UserDoc {
  _id: string;
  siteId: string;
  email: string;
  name: string;
  role: Role;
  permissions: Permissions;
  passwordHash: string;
  mustChangePassword: boolean;
  totpSecret: string | null;
  totpPendingSecret: string | null;
  totpLastStep: number | null;
  failedLoginCount: number;
  failedLoginWindowStart: string | null;
  lockedUntil: string | null;
  createdAt: string;
  updatedAt: string;
  createdBy: string | null;
  updatedBy: string | null;
}

const userSchema = new Schema<UserDoc>(
  {
    _id: { type: String },
    siteId: { type: String },
    email: { type: String },
    name: { type: String },
    role: { type: String },
    permissions: { type: Schema.Types.Mixed },
    passwordHash: { type: String },
    mustChangePassword: { type: Boolean },
    totpSecret: { type: String },
    totpPendingSecret: { type: String },
    totpLastStep: { type: Number },
    failedLoginCount: { type: Number },
    failedLoginWindowStart: { type: String },
    lockedUntil: { type: String },
    createdAt: { type: String },
    updatedAt: { type: String },
    createdBy: { type: String },
    updatedBy: { type: String },
  },
  { ...SCHEMA_OPTIONS, collection: 'users' },
);
// Login knows only the e-mail, so it is unique across every site.
userSchema.index({ email: 1 }, { unique: true });
// Leads with siteId for site-scoped lookups and also serves listBySite's order by e-mail.
userSchema.index({ siteId: 1, email: 1 });

// Only these fields are patchable, as SQLite's column map enforces; identity fields such as
// siteId or email can never be moved by a patch object carrying extra keys.
const PATCH_KEYS = Object.keys({
  name: true,
  role: true,
  permissions: true,
  passwordHash: true,
  mustChangePassword: true,
  totpSecret: true,
  totpPendingSecret: true,
  totpLastStep: true,
  failedLoginCount: true,
  failedLoginWindowStart: true,
  lockedUntil: true,
  updatedAt: true,
  updatedBy: true,
} satisfies Record<keyof UserPatch, true>) as (keyof UserPatch)[];

function userFromDoc(d: UserDoc): UserRecord {
  return {
    id: d._id,
    siteId: d.siteId,
    email: d.email,
    name: d.name,
    role: d.role,
    permissions: d.permissions,
    passwordHash: d.passwordHash,
    mustChangePassword: d.mustChangePassword === true,
    totpSecret: d.totpSecret ?? null,
    totpPendingSecret: d.totpPendingSecret ?? null,
    totpLastStep: d.totpLastStep ?? null,
    failedLoginCount: d.failedLoginCount ?? 0,
    failedLoginWindowStart: d.failedLoginWindowStart ?? null,
    lockedUntil: d.lockedUntil ?? null,
    createdAt: d.createdAt,
    updatedAt: d.updatedAt,
    createdBy: d.createdBy ?? null,
    updatedBy: d.updatedBy ?? null,
  };
}

interface SessionDoc {
  _id: string;
  siteId: string | null;
  userId: string | null;
  data: string;
  expiresAt: number;
  expiresAtDate: Date;
}

const sessionSchema = new Schema<SessionDoc>(
  {
    _id: { type: String },
    siteId: { type: String },
    userId: { type: String },
    data: { type: String },
    expiresAt: { type: Number },
    expiresAtDate: { type: Date },
  },
  { ...SCHEMA_OPTIONS, collection: 'sessions' },
);
sessionSchema.index({ siteId: 1, userId: 1 });
sessionSchema.index({ expiresAt: 1 });
// A safety net only: get() and purgeExpired() decide by the numeric expiresAt, so the TTL
// monitor's lag never lets a dead session through.
sessionSchema.index({ expiresAtDate: 1 }, { expireAfterSeconds: 0 });

function sessionFromDoc(d: SessionDoc): SessionRecord {
  return { sid: d._id, siteId: d.siteId ?? null, userId: d.userId ?? null, data: d.data, expiresAt: d.expiresAt };
}

interface AuditDoc {
  _id: string;
  siteId: string;
  seq: number;
  type: string;
  action: AuditAction;
  outcome: AuditOutcome;
  time: string;
  actor: AuditActor;
  objects: AuditObject[];
  details: AuditDetails;
  prevHash: string;
  hash: string;
}

const auditSchema = new Schema<AuditDoc>(
  {
    _id: { type: String },
    siteId: { type: String },
    seq: { type: Number },
    type: { type: String },
    action: { type: String },
    outcome: { type: Number },
    time: { type: String },
    actor: { type: Schema.Types.Mixed },
    objects: { type: Schema.Types.Mixed },
    details: { type: Schema.Types.Mixed },
    prevHash: { type: String },
    hash: { type: String },
  },
  { ...SCHEMA_OPTIONS, collection: 'audit_events' },
);
// The unique (siteId, seq) is what keeps a chain from forking when two nodes append at once.
auditSchema.index({ siteId: 1, seq: 1 }, { unique: true });
auditSchema.index({ siteId: 1, time: 1 });
// Audit search pages newest first by (time, seq); one index per filter ends in that order.
auditSchema.index({ siteId: 1, time: -1, seq: -1 });
auditSchema.index({ siteId: 1, type: 1, time: -1, seq: -1 });
auditSchema.index({ siteId: 1, 'actor.userId': 1, time: -1, seq: -1 });
auditSchema.index({ siteId: 1, 'actor.ip': 1, time: -1, seq: -1 });
auditSchema.index({ siteId: 1, 'objects.type': 1, 'objects.id': 1, time: -1, seq: -1 });
auditSchema.index({ siteId: 1, outcome: 1, time: -1, seq: -1 });
auditSchema.index({ siteId: 1, action: 1, time: -1, seq: -1 });

function auditFromDoc(d: AuditDoc): AuditRecord {
  return {
    id: d._id,
    siteId: d.siteId,
    seq: d.seq,
    type: d.type,
    action: d.action,
    outcome: d.outcome,
    time: d.time,
    actor: d.actor,
    objects: d.objects,
    details: d.details,
    prevHash: d.prevHash,
    hash: d.hash,
  };
}

interface DataKeyDoc {
  _id: string;
  owner: string;
  wrapped: string;
  kekId: string;
  createdAt: string;
}

const dataKeySchema = new Schema<DataKeyDoc>(
  {
    _id: { type: String },
    owner: { type: String },
    wrapped: { type: String },
    kekId: { type: String },
    createdAt: { type: String },
  },
  { ...SCHEMA_OPTIONS, collection: 'data_keys' },
);
// One key per owner: two nodes creating an owner's first key at once cannot both succeed.
dataKeySchema.index({ owner: 1 }, { unique: true });
// Serves listNotWrappedBy and countByKek during a master-key rotation.
dataKeySchema.index({ kekId: 1 });

function dataKeyFromDoc(d: DataKeyDoc): DataKeyRecord {
  return { id: d._id, owner: d.owner, wrapped: d.wrapped, kekId: d.kekId, createdAt: d.createdAt };
}

interface CaseDoc {
  _id: string;
  siteId: string;
  label: string;
  title: string;
  clinicalQuestion: string;
  status: CaseStatus;
  patientSealed: string | null;
  createdAt: string;
  updatedAt: string;
  createdBy: string | null;
  updatedBy: string | null;
}

const caseSchema = new Schema<CaseDoc>(
  {
    _id: { type: String },
    siteId: { type: String },
    label: { type: String },
    title: { type: String },
    clinicalQuestion: { type: String },
    status: { type: String },
    patientSealed: { type: String },
    createdAt: { type: String },
    updatedAt: { type: String },
    createdBy: { type: String },
    updatedBy: { type: String },
  },
  { ...SCHEMA_OPTIONS, collection: 'cases' },
);
// Every case query is site-scoped; the index also serves list's newest-first order and
// listCreatedBefore's range (walked backwards).
caseSchema.index({ siteId: 1, createdAt: -1 });

// As SQLite's column map: only these fields are patchable, never siteId, label or createdAt.
const CASE_PATCH_KEYS = Object.keys({
  title: true,
  clinicalQuestion: true,
  status: true,
  patientSealed: true,
  updatedAt: true,
  updatedBy: true,
} satisfies Record<keyof CasePatch, true>) as (keyof CasePatch)[];

function caseFromDoc(d: CaseDoc): CaseRecord {
  return {
    id: d._id,
    siteId: d.siteId,
    label: d.label,
    title: d.title,
    clinicalQuestion: d.clinicalQuestion,
    status: d.status,
    patientSealed: d.patientSealed ?? null,
    createdAt: d.createdAt,
    updatedAt: d.updatedAt,
    createdBy: d.createdBy ?? null,
    updatedBy: d.updatedBy ?? null,
  };
}

interface MaterialDoc {
  _id: string;
  siteId: string;
  caseId: string;
  nameSealed: string;
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

const materialSchema = new Schema<MaterialDoc>(
  {
    _id: { type: String },
    siteId: { type: String },
    caseId: { type: String },
    nameSealed: { type: String },
    mime: { type: String },
    sizeBytes: { type: Number },
    sha256: { type: String },
    status: { type: String },
    progress: { type: Number },
    width: { type: Number },
    height: { type: Number },
    tileSize: { type: Number },
    overlap: { type: Number },
    tileFormat: { type: String },
    error: { type: String },
    createdAt: { type: String },
    updatedAt: { type: String },
    createdBy: { type: String },
  },
  { ...SCHEMA_OPTIONS, collection: 'materials' },
);
materialSchema.index({ siteId: 1, caseId: 1 });
// listUnfinished at start-up looks across every site by status.
materialSchema.index({ status: 1 });

const MATERIAL_PATCH_KEYS = Object.keys({
  status: true,
  progress: true,
  width: true,
  height: true,
  error: true,
  updatedAt: true,
} satisfies Record<keyof MaterialPatch, true>) as (keyof MaterialPatch)[];

const UNFINISHED_STATUSES: MaterialStatus[] = ['queued', 'converting'];

function materialFromDoc(d: MaterialDoc): MaterialRecord {
  return {
    id: d._id,
    siteId: d.siteId,
    caseId: d.caseId,
    nameSealed: d.nameSealed,
    mime: d.mime,
    sizeBytes: d.sizeBytes,
    sha256: d.sha256,
    status: d.status,
    progress: d.progress,
    width: d.width ?? null,
    height: d.height ?? null,
    tileSize: d.tileSize,
    overlap: d.overlap,
    tileFormat: d.tileFormat,
    error: d.error ?? null,
    createdAt: d.createdAt,
    updatedAt: d.updatedAt,
    createdBy: d.createdBy ?? null,
  };
}

interface TransferDoc {
  _id: string;
  fromSiteId: string;
  toSiteId: string;
  caseId: string;
  title: string;
  note: string;
  status: TransferStatus;
  receivedCaseId: string | null;
  createdAt: string;
  createdBy: string;
  decidedAt: string | null;
  decidedBy: string | null;
}

const transferSchema = new Schema<TransferDoc>(
  {
    _id: { type: String },
    fromSiteId: { type: String },
    toSiteId: { type: String },
    caseId: { type: String },
    title: { type: String },
    note: { type: String },
    status: { type: String },
    receivedCaseId: { type: String },
    createdAt: { type: String },
    createdBy: { type: String },
    decidedAt: { type: String },
    decidedBy: { type: String },
  },
  { ...SCHEMA_OPTIONS, collection: 'transfers' },
);
// The inbox and the outbox, newest first; the outbox index also serves deleteByCase's fromSiteId.
transferSchema.index({ toSiteId: 1, createdAt: -1 });
transferSchema.index({ fromSiteId: 1, createdAt: -1 });

function transferFromDoc(d: TransferDoc): TransferRecord {
  return {
    id: d._id,
    fromSiteId: d.fromSiteId,
    toSiteId: d.toSiteId,
    caseId: d.caseId,
    title: d.title,
    note: d.note,
    status: d.status,
    receivedCaseId: d.receivedCaseId ?? null,
    createdAt: d.createdAt,
    createdBy: d.createdBy,
    decidedAt: d.decidedAt ?? null,
    decidedBy: d.decidedBy ?? null,
  };
}

// An agreement has no id of its own; the pair is its key, as SQLite's composite primary key.
// _id is left to the server (an ObjectId that never leaves this file).
interface AgreementDoc {
  receiverSiteId: string;
  senderSiteId: string;
  createdAt: string;
  createdBy: string;
}

const agreementSchema = new Schema<AgreementDoc>(
  {
    receiverSiteId: { type: String },
    senderSiteId: { type: String },
    createdAt: { type: String },
    createdBy: { type: String },
  },
  { ...SCHEMA_OPTIONS, collection: 'transfer_agreements' },
);
// One agreement per (receiver, sender) pair: the unique index is what makes putAgreement
// idempotent across nodes. It also serves hasAgreement and listSenders.
agreementSchema.index({ receiverSiteId: 1, senderSiteId: 1 }, { unique: true });
// Serves listReceivers.
agreementSchema.index({ senderSiteId: 1, receiverSiteId: 1 });

function agreementFromDoc(d: AgreementDoc): TransferAgreement {
  return { receiverSiteId: d.receiverSiteId, senderSiteId: d.senderSiteId, createdAt: d.createdAt, createdBy: d.createdBy };
}

interface ChatDoc {
  _id: string;
  siteId: string;
  caseId: string;
  seq: number;
  userId: string;
  userName: string;
  textSealed: string;
  clientId: string;
  createdAt: string;
}

const chatSchema = new Schema<ChatDoc>(
  {
    _id: { type: String },
    siteId: { type: String },
    caseId: { type: String },
    seq: { type: Number },
    userId: { type: String },
    userName: { type: String },
    textSealed: { type: String },
    clientId: { type: String },
    createdAt: { type: String },
  },
  { ...SCHEMA_OPTIONS, collection: 'chat_messages' },
);
// The unique (caseId, seq) keeps two nodes from giving one number to two messages; it also
// serves the catch-up reads in order. The unique (caseId, clientId) makes a retried send a no-op.
chatSchema.index({ caseId: 1, seq: 1 }, { unique: true });
chatSchema.index({ caseId: 1, clientId: 1 }, { unique: true });

function chatFromDoc(d: ChatDoc): ChatMessageRecord {
  return {
    id: d._id,
    siteId: d.siteId,
    caseId: d.caseId,
    seq: d.seq,
    userId: d.userId,
    userName: d.userName,
    textSealed: d.textSealed,
    clientId: d.clientId,
    createdAt: d.createdAt,
  };
}

/** The op a state document still has to append to the log (see MongoAnnotations). */
interface PendingOp {
  op: AnnotationOpKind;
  version: number;
}

interface AnnotationDoc {
  _id: string;
  siteId: string;
  caseId: string;
  materialId: string;
  /** Absent on documents written before stacks existed: read as null. */
  slice?: number | null;
  clientId: string;
  kind: AnnotationKind;
  geometry: AnnotationGeometry;
  propertiesSealed: string;
  version: number;
  deleted: boolean;
  createdBy: string;
  createdAt: string;
  updatedBy: string;
  updatedAt: string;
  pending: PendingOp | null;
}

const annotationSchema = new Schema<AnnotationDoc>(
  {
    _id: { type: String },
    siteId: { type: String },
    caseId: { type: String },
    materialId: { type: String },
    slice: { type: Number },
    clientId: { type: String },
    kind: { type: String },
    geometry: { type: Schema.Types.Mixed },
    propertiesSealed: { type: String },
    version: { type: Number },
    deleted: { type: Boolean },
    createdBy: { type: String },
    createdAt: { type: String },
    updatedBy: { type: String },
    updatedAt: { type: String },
    pending: { type: Schema.Types.Mixed },
  },
  { ...SCHEMA_OPTIONS, collection: 'annotations' },
);
annotationSchema.index({ caseId: 1, clientId: 1 }, { unique: true });
annotationSchema.index({ siteId: 1, caseId: 1, materialId: 1, createdAt: 1 });
// Only the few documents whose op is not yet in the log, found when a reader finishes them.
annotationSchema.index({ caseId: 1 }, { name: 'annotations_pending', partialFilterExpression: { 'pending.version': { $exists: true } } });

interface AnnotationOpDoc extends Omit<AnnotationDoc, '_id' | 'pending'> {
  seq: number;
  op: AnnotationOpKind;
  annotationId: string;
}

// _id is left to the server: an op is addressed by (caseId, seq) or (annotationId, version).
const annotationOpSchema = new Schema<AnnotationOpDoc>(
  {
    siteId: { type: String },
    caseId: { type: String },
    seq: { type: Number },
    op: { type: String },
    annotationId: { type: String },
    materialId: { type: String },
    slice: { type: Number },
    clientId: { type: String },
    kind: { type: String },
    geometry: { type: Schema.Types.Mixed },
    propertiesSealed: { type: String },
    version: { type: Number },
    deleted: { type: Boolean },
    createdBy: { type: String },
    createdAt: { type: String },
    updatedBy: { type: String },
    updatedAt: { type: String },
  },
  { ...SCHEMA_OPTIONS, collection: 'annotation_ops' },
);
// One number per op in a case (the sequence clients resume from), and one op per version of an
// annotation: the second is what makes finishing a pending op idempotent across nodes.
annotationOpSchema.index({ caseId: 1, seq: 1 }, { unique: true });
annotationOpSchema.index({ annotationId: 1, version: 1 }, { unique: true });

function annotationFromDoc(d: Omit<AnnotationDoc, 'pending'>): AnnotationRecord {
  return {
    id: d._id,
    siteId: d.siteId,
    caseId: d.caseId,
    materialId: d.materialId,
    ...(d.slice !== null && d.slice !== undefined ? { slice: d.slice } : {}),
    clientId: d.clientId,
    kind: d.kind,
    geometry: d.geometry,
    propertiesSealed: d.propertiesSealed,
    version: d.version,
    deleted: d.deleted === true,
    createdBy: d.createdBy,
    createdAt: d.createdAt,
    updatedBy: d.updatedBy,
    updatedAt: d.updatedAt,
  };
}

function annotationState(a: AnnotationRecord): Omit<AnnotationDoc, '_id' | 'pending'> {
  return {
    siteId: a.siteId,
    caseId: a.caseId,
    materialId: a.materialId,
    slice: a.slice ?? null,
    clientId: a.clientId,
    kind: a.kind,
    geometry: a.geometry,
    propertiesSealed: a.propertiesSealed,
    version: a.version,
    deleted: a.deleted,
    createdBy: a.createdBy,
    createdAt: a.createdAt,
    updatedBy: a.updatedBy,
    updatedAt: a.updatedAt,
  };
}

function opFromDoc(d: AnnotationOpDoc): AnnotationOpRecord {
  return { seq: d.seq, op: d.op, annotation: annotationFromDoc({ ...d, _id: d.annotationId }) };
}

/** The defined fields of `patch` among `keys`, for a $set (undefined leaves a field alone, null clears it). */
function patchSet<P extends object>(patch: P, keys: readonly (keyof P)[]): Record<string, unknown> {
  const $set: Record<string, unknown> = {};
  for (const key of keys) {
    if (patch[key] !== undefined) $set[key as string] = patch[key];
  }
  return $set;
}

/**
 * A regex source matching `text` literally, as SQLite's escaped LIKE does: every metacharacter
 * is escaped, and a NUL (which the server refuses inside a pattern) is written as \x00.
 */
function literalPattern(text: string): string {
  return text.replace(/[\\^$.*+?()[\]{}|\-/#]/g, '\\$&').replace(/\0/g, '\\x00');
}

/**
 * Applies SQLite's LIMIT/OFFSET meaning to a query: LIMIT 0 is none (Mongo's limit(0) would
 * be unbounded), a negative LIMIT is unbounded, a negative OFFSET is 0. Returns false for LIMIT 0.
 */
function sqlPage(query: { skip(n: number): unknown; limit(n: number): unknown }, limit: number, offset = 0): boolean {
  if (limit === 0) return false;
  if (offset > 0) query.skip(offset);
  if (limit > 0) query.limit(limit);
  return true;
}

class MongoSites implements SiteRepository {
  constructor(private readonly model: Model<SiteDoc>) {}

  async create(site: SiteRecord): Promise<void> {
    try {
      await this.model.insertOne({
        _id: site.id,
        name: site.name,
        policy: site.policy,
        createdAt: site.createdAt,
        updatedAt: site.updatedAt,
      });
    } catch (err) {
      if (isDuplicateKey(err)) throw new DuplicateKeyError('site.id');
      throw err;
    }
  }

  async findById(id: string): Promise<SiteRecord | null> {
    const doc = await this.model.findOne({ _id: id }).lean<SiteDoc>();
    return doc ? siteFromDoc(doc) : null;
  }

  async list(): Promise<SiteRecord[]> {
    const docs = await this.model.find({}).sort({ createdAt: 1, _id: 1 }).lean<SiteDoc[]>();
    return docs.map(siteFromDoc);
  }

  async updatePolicy(id: string, policy: SitePolicy, updatedAt: string): Promise<SiteRecord | null> {
    const doc = await this.model
      .findOneAndUpdate({ _id: id }, { $set: { policy, updatedAt } }, { returnDocument: 'after' })
      .lean<SiteDoc>();
    return doc ? siteFromDoc(doc) : null;
  }
}

class MongoUsers implements UserRepository {
  constructor(private readonly model: Model<UserDoc>) {}

  async create(u: UserRecord): Promise<void> {
    try {
      await this.model.insertOne({
        _id: u.id,
        siteId: u.siteId,
        email: u.email,
        name: u.name,
        role: u.role,
        permissions: u.permissions,
        passwordHash: u.passwordHash,
        mustChangePassword: u.mustChangePassword,
        totpSecret: u.totpSecret,
        totpPendingSecret: u.totpPendingSecret,
        totpLastStep: u.totpLastStep,
        failedLoginCount: u.failedLoginCount,
        failedLoginWindowStart: u.failedLoginWindowStart,
        lockedUntil: u.lockedUntil,
        createdAt: u.createdAt,
        updatedAt: u.updatedAt,
        createdBy: u.createdBy,
        updatedBy: u.updatedBy,
      });
    } catch (err) {
      // Only the e-mail is a user-facing conflict; an id collision is a bug and surfaces as is,
      // as it does in SQLite.
      if (isDuplicateKey(err, 'email')) throw new DuplicateKeyError('user.email');
      throw err;
    }
  }

  async findById(siteId: string, id: string): Promise<UserRecord | null> {
    const doc = await this.model.findOne({ _id: id, siteId }).lean<UserDoc>();
    return doc ? userFromDoc(doc) : null;
  }

  async findByEmail(email: string): Promise<UserRecord | null> {
    const doc = await this.model.findOne({ email }).lean<UserDoc>();
    return doc ? userFromDoc(doc) : null;
  }

  async listBySite(siteId: string): Promise<UserRecord[]> {
    const docs = await this.model.find({ siteId }).sort({ email: 1 }).lean<UserDoc[]>();
    return docs.map(userFromDoc);
  }

  async update(siteId: string, id: string, patch: UserPatch): Promise<UserRecord | null> {
    const $set: Record<string, unknown> = {};
    for (const key of PATCH_KEYS) {
      if (patch[key] !== undefined) $set[key] = patch[key];
    }
    const doc = await this.model
      .findOneAndUpdate({ _id: id, siteId }, { $set }, { returnDocument: 'after' })
      .lean<UserDoc>();
    return doc ? userFromDoc(doc) : null;
  }

  async registerFailedLogin(siteId: string, id: string, rule: LockoutRule): Promise<UserRecord | null> {
    // One server-side pipeline update evaluates the window against the stored state, so two
    // nodes counting failures for the same account at once cannot lose an increment.
    const now = rule.now.getTime();
    const nowIso = rule.now.toISOString();
    // ISO-8601 UTC strings order like the instants they name; a start after the cutoff is
    // exactly SQLite's `now - start < windowMs`.
    const cutoffIso = new Date(now - rule.windowMs).toISOString();
    const lockIso = new Date(now + rule.lockMs).toISOString();

    const inWindow = {
      $and: [{ $eq: [{ $type: '$failedLoginWindowStart' }, 'string'] }, { $gt: ['$failedLoginWindowStart', { $literal: cutoffIso }] }],
    };
    const count = { $cond: [inWindow, { $add: [{ $ifNull: ['$failedLoginCount', 0] }, 1] }, 1] };
    const locks = { $gte: [count, rule.threshold] };
    // Every expression in one $set stage reads the document as it was before the stage, so
    // the three fields are computed from the same prior state.
    const pipeline = [
      {
        $set: {
          failedLoginCount: { $cond: [locks, 0, count] },
          failedLoginWindowStart: {
            $cond: [locks, null, { $cond: [inWindow, '$failedLoginWindowStart', { $literal: nowIso }] }],
          },
          lockedUntil: { $cond: [locks, { $literal: lockIso }, { $ifNull: ['$lockedUntil', null] }] },
        },
      },
    ];

    // mongoose 9 types findOneAndUpdate's update as a document only, although it accepts a
    // pipeline at runtime once updatePipeline is set.
    const doc = await this.model
      .findOneAndUpdate({ _id: id, siteId }, pipeline as unknown as UpdateQuery<UserDoc>, {
        returnDocument: 'after',
        updatePipeline: true,
      })
      .lean<UserDoc>();
    return doc ? userFromDoc(doc) : null;
  }

  async claimTotpStep(siteId: string, id: string, step: number): Promise<boolean> {
    const res = await this.model.updateOne(
      { _id: id, siteId, $or: [{ totpLastStep: null }, { totpLastStep: trusted({ $lt: step }) }] },
      { $set: { totpLastStep: step } },
    );
    return res.modifiedCount === 1;
  }
}

class MongoSessions implements SessionRepository {
  constructor(private readonly model: Model<SessionDoc>) {}

  async get(sid: string, now: number): Promise<SessionRecord | null> {
    const doc = await this.model.findOne({ _id: sid, expiresAt: trusted({ $gt: now }) }).lean<SessionDoc>();
    return doc ? sessionFromDoc(doc) : null;
  }

  async set(r: SessionRecord): Promise<void> {
    await this.model.updateOne(
      { _id: r.sid },
      {
        $set: {
          siteId: r.siteId,
          userId: r.userId,
          data: r.data,
          expiresAt: r.expiresAt,
          expiresAtDate: new Date(r.expiresAt),
        },
      },
      { upsert: true },
    );
  }

  async touch(sid: string, expiresAt: number): Promise<void> {
    await this.model.updateOne({ _id: sid }, { $set: { expiresAt, expiresAtDate: new Date(expiresAt) } });
  }

  async destroy(sid: string): Promise<void> {
    await this.model.deleteOne({ _id: sid });
  }

  async destroyByUser(siteId: string, userId: string, keepSid?: string): Promise<string[]> {
    const docs = await this.model
      .find({ siteId, userId, _id: trusted({ $ne: keepSid ?? '' }) })
      .select({ _id: 1 })
      .lean<{ _id: string }[]>();
    const sids = docs.map((d) => d._id);
    if (sids.length === 0) return [];
    // Deleting exactly the ids read keeps the returned list true to what was removed.
    await this.model.deleteMany({ _id: trusted({ $in: sids }), siteId, userId });
    return sids;
  }

  async purgeExpired(now: number): Promise<number> {
    const res = await this.model.deleteMany({ expiresAt: trusted({ $lte: now }) });
    return res.deletedCount;
  }
}

class MongoAudit implements AuditRepository {
  constructor(private readonly model: Model<AuditDoc>) {}

  async appendChained(
    siteId: string,
    build: (head: { seq: number; hash: string } | null) => AuditRecord,
  ): Promise<AuditRecord> {
    // Without a transaction the head may move between read and insert; the unique
    // (siteId, seq) index refuses the loser, which rebuilds on the new head.
    for (let attempt = 0; attempt < APPEND_ATTEMPTS; attempt++) {
      const head = await this.model
        .findOne({ siteId })
        .sort({ seq: -1 })
        .select({ _id: 0, seq: 1, hash: 1 })
        .lean<{ seq: number; hash: string }>();
      const r = build(head ? { seq: head.seq, hash: head.hash } : null);
      try {
        await this.model.insertOne({
          _id: r.id,
          siteId: r.siteId,
          seq: r.seq,
          type: r.type,
          action: r.action,
          outcome: r.outcome,
          time: r.time,
          actor: r.actor,
          objects: r.objects,
          details: r.details,
          prevHash: r.prevHash,
          hash: r.hash,
        });
        return r;
      } catch (err) {
        if (isDuplicateKey(err, 'seq')) continue;
        throw err;
      }
    }
    throw new Error(`audit chain ${siteId}: no free sequence number after ${APPEND_ATTEMPTS} attempts`);
  }

  async listChain(siteId: string, afterSeq: number, limit: number): Promise<AuditRecord[]> {
    // SQLite reads LIMIT 0 as none and a negative LIMIT as unbounded; Mongo's limit(0) is
    // unbounded and a negative one means a single batch, so both cases are mapped explicitly.
    if (limit === 0) return [];
    const query = this.model.find({ siteId, seq: trusted({ $gt: afterSeq }) }).sort({ seq: 1 });
    if (limit > 0) query.limit(limit);
    const docs = await query.lean<AuditDoc[]>();
    return docs.map(auditFromDoc);
  }

  async listRecent(siteId: string, types: string[], since: string, limit: number): Promise<AuditRecord[]> {
    if (types.length === 0 || limit <= 0) return [];
    const docs = await this.model
      .find({ siteId, time: trusted({ $gte: since }), type: trusted({ $in: types }) })
      .sort({ seq: -1 })
      .limit(limit)
      .lean<AuditDoc[]>();
    return docs.map(auditFromDoc);
  }

  async search(siteId: string, filter: AuditFilter, cursor: AuditCursor | null, limit: number): Promise<AuditRecord[]> {
    if (limit <= 0) return [];
    const query: Record<string, unknown> = { siteId };
    if (filter.objectType !== undefined) {
      query.objects = trusted({ $elemMatch: filter.objectId !== undefined ? { type: filter.objectType, id: filter.objectId } : { type: filter.objectType } });
    }
    if (filter.actorUserId !== undefined) query['actor.userId'] = filter.actorUserId;
    if (filter.ip !== undefined) query['actor.ip'] = filter.ip;
    if (filter.type !== undefined) query.type = filter.type;
    if (filter.typePrefix !== undefined) {
      const p = filter.typePrefix;
      query.type = trusted({ $gte: p, $lt: p.slice(0, -1) + String.fromCharCode(p.charCodeAt(p.length - 1) + 1) });
    }
    if (filter.action !== undefined) query.action = filter.action;
    if (filter.outcome !== undefined) query.outcome = filter.outcome;
    const time: Record<string, string> = {};
    if (filter.from !== undefined) time.$gte = filter.from;
    if (filter.to !== undefined) time.$lt = filter.to;
    if (Object.keys(time).length > 0) query.time = trusted(time);
    if (cursor) query.$or = trusted([{ time: { $lt: cursor.time } }, { time: cursor.time, seq: { $lt: cursor.seq } }]);
    const docs = await this.model.find(query).sort({ time: -1, seq: -1 }).limit(limit).lean<AuditDoc[]>();
    return docs.map(auditFromDoc);
  }

  async usageAggregates(siteId: string, from: string, to: string): Promise<AuditUsageAggregates> {
    const inRange = { siteId, time: trusted({ $gte: from, $lt: to }) };
    const month = { $substrBytes: ['$time', 0, 7] };
    const countsRaw = await this.model.aggregate<{ _id: { month: string; type: string; outcome: number }; records: number; actors: (string | null)[] }>([
      { $match: { ...inRange, type: trusted({ $in: [...USAGE_TYPES] }) } },
      { $group: { _id: { month, type: '$type', outcome: '$outcome' }, records: { $sum: 1 }, actors: { $addToSet: '$actor.userId' } } },
    ]);
    const active = await this.model.aggregate<{ n: number }>([
      { $match: { ...inRange, type: 'auth.login', outcome: 0 } },
      { $group: { _id: '$actor.userId' } },
      { $match: { _id: trusted({ $ne: null }) } },
      { $count: 'n' },
    ]);
    const materials = await this.model.aggregate<{ _id: { month: string; mime: string | null }; count: number }>([
      { $match: { ...inRange, type: 'material.upload', outcome: 0 } },
      { $group: { _id: { month, mime: '$details.mime' }, count: { $sum: 1 } } },
    ]);
    const consultations = await this.model.aggregate<{ _id: string; count: number }>([
      { $match: { ...inRange, type: 'room.join', outcome: 0 } },
      { $group: { _id: { caseId: { $arrayElemAt: ['$objects.id', 0] }, day: { $substrBytes: ['$time', 0, 10] } }, users: { $addToSet: '$actor.userId' } } },
      { $match: { 'users.1': trusted({ $exists: true }) } },
      { $group: { _id: { $substrBytes: ['$_id.day', 0, 7] }, count: { $sum: 1 } } },
    ]);
    const media = await this.model.aggregate<{ _id: string; seconds: number }>([
      { $match: { ...inRange, type: trusted({ $gte: 'media.', $lt: 'media/' }), 'details.durationSeconds': trusted({ $type: 'number' }) } },
      { $group: { _id: month, seconds: { $sum: '$details.durationSeconds' } } },
    ]);
    return {
      // SQLite's COUNT(DISTINCT) skips nulls; so does this.
      counts: countsRaw.map((r) => ({ ...r._id, records: r.records, actors: r.actors.filter((a) => a !== null).length })),
      activeUsers: active[0]?.n ?? 0,
      materials: materials.map((r) => ({ month: r._id.month, mime: r._id.mime ?? 'unknown', count: r.count })),
      consultations: consultations.map((r) => ({ month: r._id, count: r.count })),
      mediaSeconds: media.map((r) => ({ month: r._id, seconds: r.seconds })),
    };
  }

  async totalChainLength(): Promise<number> {
    const [row] = await this.model.aggregate<{ n: number }>([{ $group: { _id: '$siteId', head: { $max: '$seq' } } }, { $group: { _id: null, n: { $sum: '$head' } } }]);
    return row?.n ?? 0;
  }

  async listChains(): Promise<string[]> {
    const ids = (await this.model.distinct('siteId')) as string[];
    return ids.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  }
}

class MongoDataKeys implements DataKeyRepository {
  constructor(private readonly model: Model<DataKeyDoc>) {}

  async create(r: DataKeyRecord): Promise<void> {
    try {
      await this.model.insertOne({ _id: r.id, owner: r.owner, wrapped: r.wrapped, kekId: r.kekId, createdAt: r.createdAt });
    } catch (err) {
      // As SQLite, which maps any unique or primary-key conflict here to the owner.
      if (isDuplicateKey(err)) throw new DuplicateKeyError('data_key.owner');
      throw err;
    }
  }

  async findById(id: string): Promise<DataKeyRecord | null> {
    const doc = await this.model.findOne({ _id: id }).lean<DataKeyDoc>();
    return doc ? dataKeyFromDoc(doc) : null;
  }

  async findByOwner(owner: string): Promise<DataKeyRecord | null> {
    const doc = await this.model.findOne({ owner }).lean<DataKeyDoc>();
    return doc ? dataKeyFromDoc(doc) : null;
  }

  async listNotWrappedBy(kekId: string, limit: number): Promise<DataKeyRecord[]> {
    const query = this.model.find({ kekId: trusted({ $ne: kekId }) }).sort({ _id: 1 });
    if (!sqlPage(query, limit)) return [];
    const docs = await query.lean<DataKeyDoc[]>();
    return docs.map(dataKeyFromDoc);
  }

  async rewrap(id: string, fromKekId: string, wrapped: string, toKekId: string): Promise<boolean> {
    const res = await this.model.updateOne({ _id: id, kekId: fromKekId }, { $set: { wrapped, kekId: toKekId } });
    // SQLite's changes counts a matched row even when the values are the same, so matched, not modified.
    return res.matchedCount === 1;
  }

  async deleteByOwner(owner: string): Promise<boolean> {
    const res = await this.model.deleteOne({ owner });
    return res.deletedCount === 1;
  }

  async countByKek(): Promise<Record<string, number>> {
    const rows = await this.model.aggregate<{ _id: string; n: number }>([{ $group: { _id: '$kekId', n: { $sum: 1 } } }]);
    return Object.fromEntries(rows.map((r) => [r._id, r.n]));
  }
}

class MongoCases implements CaseRepository {
  constructor(
    private readonly model: Model<CaseDoc>,
    private readonly materials: Model<MaterialDoc>,
  ) {}

  async create(r: CaseRecord): Promise<void> {
    // An id collision is a bug and surfaces as is, as it does in SQLite.
    await this.model.insertOne({
      _id: r.id,
      siteId: r.siteId,
      label: r.label,
      title: r.title,
      clinicalQuestion: r.clinicalQuestion,
      status: r.status,
      patientSealed: r.patientSealed,
      createdAt: r.createdAt,
      updatedAt: r.updatedAt,
      createdBy: r.createdBy,
      updatedBy: r.updatedBy,
    });
  }

  async findById(siteId: string, id: string): Promise<CaseRecord | null> {
    const doc = await this.model.findOne({ _id: id, siteId }).lean<CaseDoc>();
    return doc ? caseFromDoc(doc) : null;
  }

  async list(siteId: string, f: CaseListFilter): Promise<{ cases: CaseRecord[]; total: number }> {
    const filter: Record<string, unknown> = { siteId };
    if (f.status) filter.status = f.status;
    if (f.q) {
      // The search text is matched literally (escaped), never read as a pattern.
      const pattern = literalPattern(f.q);
      filter.$or = [{ title: trusted({ $regex: pattern, $options: 'i' }) }, { label: trusted({ $regex: pattern, $options: 'i' }) }];
    }
    const total = await this.model.countDocuments(filter);
    const query = this.model.find(filter).sort({ createdAt: -1, _id: -1 });
    if (!sqlPage(query, f.limit, f.offset)) return { cases: [], total };
    const docs = await query.lean<CaseDoc[]>();
    return { cases: docs.map(caseFromDoc), total };
  }

  async update(siteId: string, id: string, patch: CasePatch): Promise<CaseRecord | null> {
    const doc = await this.model
      .findOneAndUpdate({ _id: id, siteId }, { $set: patchSet(patch, CASE_PATCH_KEYS) }, { returnDocument: 'after' })
      .lean<CaseDoc>();
    return doc ? caseFromDoc(doc) : null;
  }

  async delete(siteId: string, id: string): Promise<boolean> {
    // SQLite cascades the case's materials (ON DELETE CASCADE). Without a transaction the
    // materials go first, once the case is known to exist in this site: an interrupted delete
    // leaves the case in place to be deleted again, never materials whose case is gone.
    const exists = await this.model.exists({ _id: id, siteId });
    if (!exists) return false;
    await this.materials.deleteMany({ siteId, caseId: id });
    const res = await this.model.deleteOne({ _id: id, siteId });
    if (res.deletedCount !== 1) return false;
    // A material added while the case was being deleted would have been refused by SQLite's
    // foreign key; sweep it up now that the case is gone.
    await this.materials.deleteMany({ siteId, caseId: id });
    return true;
  }

  async listCreatedBefore(siteId: string, before: string, limit: number): Promise<CaseRecord[]> {
    const query = this.model.find({ siteId, createdAt: trusted({ $lt: before }) }).sort({ createdAt: 1, _id: 1 });
    if (!sqlPage(query, limit)) return [];
    const docs = await query.lean<CaseDoc[]>();
    return docs.map(caseFromDoc);
  }
}

class MongoMaterials implements MaterialRepository {
  constructor(private readonly model: Model<MaterialDoc>) {}

  async create(r: MaterialRecord): Promise<void> {
    await this.model.insertOne({
      _id: r.id,
      siteId: r.siteId,
      caseId: r.caseId,
      nameSealed: r.nameSealed,
      mime: r.mime,
      sizeBytes: r.sizeBytes,
      sha256: r.sha256,
      status: r.status,
      progress: r.progress,
      width: r.width,
      height: r.height,
      tileSize: r.tileSize,
      overlap: r.overlap,
      tileFormat: r.tileFormat,
      error: r.error,
      createdAt: r.createdAt,
      updatedAt: r.updatedAt,
      createdBy: r.createdBy,
    });
  }

  async findById(siteId: string, caseId: string, id: string): Promise<MaterialRecord | null> {
    const doc = await this.model.findOne({ _id: id, siteId, caseId }).lean<MaterialDoc>();
    return doc ? materialFromDoc(doc) : null;
  }

  async listByCase(siteId: string, caseId: string): Promise<MaterialRecord[]> {
    const docs = await this.model.find({ siteId, caseId }).sort({ createdAt: 1, _id: 1 }).lean<MaterialDoc[]>();
    return docs.map(materialFromDoc);
  }

  async update(siteId: string, id: string, patch: MaterialPatch): Promise<MaterialRecord | null> {
    const doc = await this.model
      .findOneAndUpdate({ _id: id, siteId }, { $set: patchSet(patch, MATERIAL_PATCH_KEYS) }, { returnDocument: 'after' })
      .lean<MaterialDoc>();
    return doc ? materialFromDoc(doc) : null;
  }

  async delete(siteId: string, id: string): Promise<boolean> {
    const res = await this.model.deleteOne({ _id: id, siteId });
    return res.deletedCount === 1;
  }

  async deleteByCase(siteId: string, caseId: string): Promise<number> {
    const res = await this.model.deleteMany({ siteId, caseId });
    return res.deletedCount;
  }

  async exists(id: string): Promise<boolean> {
    // Any site: the start-up sweep matches files on disk to their records by id alone.
    return (await this.model.exists({ _id: id })) !== null;
  }

  async listUnfinished(): Promise<MaterialRecord[]> {
    // SQLite orders by created_at alone; the id only makes ties deterministic.
    const docs = await this.model
      .find({ status: trusted({ $in: UNFINISHED_STATUSES }) })
      .sort({ createdAt: 1, _id: 1 })
      .lean<MaterialDoc[]>();
    return docs.map(materialFromDoc);
  }
}

class MongoTransfers implements TransferRepository {
  constructor(
    private readonly model: Model<TransferDoc>,
    private readonly agreements: Model<AgreementDoc>,
  ) {}

  async create(r: TransferRecord): Promise<void> {
    // An id collision is a bug and surfaces as is, as it does in SQLite.
    await this.model.insertOne({
      _id: r.id,
      fromSiteId: r.fromSiteId,
      toSiteId: r.toSiteId,
      caseId: r.caseId,
      title: r.title,
      note: r.note,
      status: r.status,
      receivedCaseId: r.receivedCaseId,
      createdAt: r.createdAt,
      createdBy: r.createdBy,
      decidedAt: r.decidedAt,
      decidedBy: r.decidedBy,
    });
  }

  async findForSite(siteId: string, id: string): Promise<TransferRecord | null> {
    const doc = await this.model.findOne({ _id: id, $or: [{ fromSiteId: siteId }, { toSiteId: siteId }] }).lean<TransferDoc>();
    return doc ? transferFromDoc(doc) : null;
  }

  async listInbox(toSiteId: string): Promise<TransferRecord[]> {
    const docs = await this.model.find({ toSiteId }).sort({ createdAt: -1, _id: -1 }).lean<TransferDoc[]>();
    return docs.map(transferFromDoc);
  }

  async listOutbox(fromSiteId: string): Promise<TransferRecord[]> {
    const docs = await this.model.find({ fromSiteId }).sort({ createdAt: -1, _id: -1 }).lean<TransferDoc[]>();
    return docs.map(transferFromDoc);
  }

  async decide(
    toSiteId: string,
    id: string,
    d: { status: 'accepted' | 'refused'; receivedCaseId: string | null; decidedAt: string; decidedBy: string },
  ): Promise<TransferRecord | null> {
    // Compare-and-swap on status: of two nodes deciding the same transfer, only one matches 'pending'.
    const doc = await this.model
      .findOneAndUpdate(
        { _id: id, toSiteId, status: 'pending' },
        { $set: { status: d.status, receivedCaseId: d.receivedCaseId, decidedAt: d.decidedAt, decidedBy: d.decidedBy } },
        { returnDocument: 'after' },
      )
      .lean<TransferDoc>();
    return doc ? transferFromDoc(doc) : null;
  }

  async deleteByCase(fromSiteId: string, caseId: string): Promise<number> {
    const res = await this.model.deleteMany({ fromSiteId, caseId });
    return res.deletedCount;
  }

  async putAgreement(a: TransferAgreement): Promise<void> {
    // As SQLite's ON CONFLICT DO NOTHING: an existing agreement keeps its createdAt and createdBy.
    try {
      await this.agreements.updateOne(
        { receiverSiteId: a.receiverSiteId, senderSiteId: a.senderSiteId },
        { $setOnInsert: { createdAt: a.createdAt, createdBy: a.createdBy } },
        { upsert: true },
      );
    } catch (err) {
      // Two nodes inserting the same pair at once: the loser's agreement already exists.
      if (isDuplicateKey(err, 'senderSiteId')) return;
      throw err;
    }
  }

  async deleteAgreement(receiverSiteId: string, senderSiteId: string): Promise<boolean> {
    const res = await this.agreements.deleteOne({ receiverSiteId, senderSiteId });
    return res.deletedCount === 1;
  }

  async hasAgreement(receiverSiteId: string, senderSiteId: string): Promise<boolean> {
    return (await this.agreements.exists({ receiverSiteId, senderSiteId })) !== null;
  }

  async listSenders(receiverSiteId: string): Promise<TransferAgreement[]> {
    // SQLite orders by created_at alone; the other site's id only makes ties deterministic.
    const docs = await this.agreements.find({ receiverSiteId }).sort({ createdAt: 1, senderSiteId: 1 }).lean<AgreementDoc[]>();
    return docs.map(agreementFromDoc);
  }

  async listReceivers(senderSiteId: string): Promise<TransferAgreement[]> {
    const docs = await this.agreements.find({ senderSiteId }).sort({ createdAt: 1, receiverSiteId: 1 }).lean<AgreementDoc[]>();
    return docs.map(agreementFromDoc);
  }
}

class MongoChat implements ChatRepository {
  constructor(private readonly model: Model<ChatDoc>) {}

  async append(siteId: string, caseId: string, build: (nextSeq: number) => ChatMessageRecord): Promise<ChatMessageRecord> {
    // As the audit chain: without a transaction the last seq may move between read and insert;
    // the unique (caseId, seq) index refuses the loser, which builds again on the new last one.
    for (let attempt = 0; attempt < APPEND_ATTEMPTS; attempt++) {
      const head = await this.model.findOne({ caseId }).sort({ seq: -1 }).select({ _id: 0, seq: 1 }).lean<{ seq: number }>();
      const r = build((head?.seq ?? 0) + 1);
      try {
        await this.model.insertOne({
          _id: r.id,
          siteId,
          caseId,
          seq: r.seq,
          userId: r.userId,
          userName: r.userName,
          textSealed: r.textSealed,
          clientId: r.clientId,
          createdAt: r.createdAt,
        });
        return { ...r, siteId, caseId };
      } catch (err) {
        if (isDuplicateKey(err, 'clientId')) throw new DuplicateKeyError('chat.clientId');
        if (isDuplicateKey(err, 'seq')) continue;
        throw err;
      }
    }
    throw new Error(`chat of case ${caseId}: no free sequence number after ${APPEND_ATTEMPTS} attempts`);
  }

  async findByClientId(siteId: string, caseId: string, clientId: string): Promise<ChatMessageRecord | null> {
    const doc = await this.model.findOne({ siteId, caseId, clientId }).lean<ChatDoc>();
    return doc ? chatFromDoc(doc) : null;
  }

  async listAfter(siteId: string, caseId: string, afterSeq: number, limit: number): Promise<ChatMessageRecord[]> {
    const query = this.model.find({ siteId, caseId, seq: trusted({ $gt: afterSeq }) }).sort({ seq: 1 });
    if (!sqlPage(query, limit)) return [];
    const docs = await query.lean<ChatDoc[]>();
    return docs.map(chatFromDoc);
  }

  async latestSeq(siteId: string, caseId: string): Promise<number> {
    const head = await this.model.findOne({ siteId, caseId }).sort({ seq: -1 }).select({ _id: 0, seq: 1 }).lean<{ seq: number }>();
    return head?.seq ?? 0;
  }

  async deleteByCase(siteId: string, caseId: string): Promise<number> {
    const res = await this.model.deleteMany({ siteId, caseId });
    return res.deletedCount;
  }
}

/**
 * Without a transaction the state change and its op cannot be one write, so the state document
 * is the commit point and carries the op it still owes the log (`pending`). A write is: (1) a
 * compare-and-swap on `version` that also sets `pending`, (2) the op appended under the next
 * seq (unique (caseId, seq), retried like the audit chain), (3) `pending` cleared. Anyone who
 * meets a pending op (the next writer of that annotation, a catch-up read) finishes it first,
 * and the unique (annotationId, version) makes finishing it twice harmless, so a writer that
 * dies between (1) and (3) leaves nothing lost. A new write needs `pending: null`, so the ops of
 * one annotation enter the log in version order.
 */
class MongoAnnotations implements AnnotationRepository {
  constructor(
    private readonly states: Model<AnnotationDoc>,
    private readonly ops: Model<AnnotationOpDoc>,
  ) {}

  /** Appends the pending op of `doc` to the log (or finds it there) and clears it. */
  private async finish(doc: AnnotationDoc): Promise<AnnotationOpRecord> {
    const pending = doc.pending;
    if (!pending) throw new Error(`annotation ${doc._id} has no pending op`);
    const annotation = annotationFromDoc(doc);
    for (let attempt = 0; attempt < APPEND_ATTEMPTS; attempt++) {
      const head = await this.ops.findOne({ caseId: annotation.caseId }).sort({ seq: -1 }).select({ _id: 0, seq: 1 }).lean<{ seq: number }>();
      const seq = (head?.seq ?? 0) + 1;
      try {
        await this.ops.insertOne({ ...annotationState(annotation), seq, op: pending.op, annotationId: annotation.id });
        await this.clearPending(annotation);
        return { seq, op: pending.op, annotation };
      } catch (err) {
        if (isDuplicateKey(err, 'seq')) continue;
        if (isDuplicateKey(err, 'version')) {
          // Another node finished this op first.
          const logged = await this.ops.findOne({ annotationId: annotation.id, version: annotation.version }).lean<AnnotationOpDoc>();
          if (!logged) throw err;
          await this.clearPending(annotation);
          return opFromDoc(logged);
        }
        throw err;
      }
    }
    throw new Error(`annotations of case ${annotation.caseId}: no free sequence number after ${APPEND_ATTEMPTS} attempts`);
  }

  private async clearPending(a: AnnotationRecord): Promise<void> {
    await this.states.updateOne({ _id: a.id, 'pending.version': a.version }, { $set: { pending: null } });
  }

  /** Finishes every op of the case still pending (left by a writer that stopped, or in flight). */
  private async finishPendingOfCase(siteId: string, caseId: string): Promise<void> {
    const docs = await this.states.find({ caseId, siteId, 'pending.version': trusted({ $exists: true }) }).lean<AnnotationDoc[]>();
    for (const doc of docs) await this.finish(doc);
  }

  async create(record: AnnotationRecord): Promise<AnnotationOpRecord> {
    const doc: AnnotationDoc = { _id: record.id, ...annotationState(record), pending: { op: 'create', version: record.version } };
    try {
      await this.states.insertOne(doc);
    } catch (err) {
      if (isDuplicateKey(err, 'clientId')) throw new DuplicateKeyError('annotation.clientId');
      throw err;
    }
    return this.finish(doc);
  }

  async createMany(records: AnnotationRecord[]): Promise<AnnotationOpRecord[]> {
    // One by one, in order: each is complete on its own (see the class comment).
    const ops: AnnotationOpRecord[] = [];
    for (const record of records) ops.push(await this.create(record));
    return ops;
  }

  async apply(next: AnnotationRecord, op: 'update' | 'delete'): Promise<AnnotationOpRecord | null> {
    const expected = next.version - 1;
    const key = { _id: next.id, siteId: next.siteId, caseId: next.caseId };
    for (let attempt = 0; attempt < APPEND_ATTEMPTS; attempt++) {
      const swapped = await this.states
        .findOneAndUpdate(
          { ...key, version: expected, pending: null },
          {
            $set: {
              geometry: next.geometry,
              propertiesSealed: next.propertiesSealed,
              version: next.version,
              deleted: next.deleted,
              updatedBy: next.updatedBy,
              updatedAt: next.updatedAt,
              pending: { op, version: next.version },
            },
          },
          { returnDocument: 'after' },
        )
        .lean<AnnotationDoc>();
      if (swapped) return this.finish(swapped);
      const current = await this.states.findOne(key).lean<AnnotationDoc>();
      if (!current) return null;
      if (current.pending) {
        // The previous op is not in the log yet: put it there first so versions stay in order.
        await this.finish(current);
        continue;
      }
      if (current.version !== expected) return null;
      // It changed and settled between the two reads: try again.
    }
    throw new Error(`annotation ${next.id}: could not apply after ${APPEND_ATTEMPTS} attempts`);
  }

  async findById(siteId: string, caseId: string, id: string): Promise<AnnotationRecord | null> {
    const doc = await this.states.findOne({ _id: id, siteId, caseId }).lean<AnnotationDoc>();
    return doc ? annotationFromDoc(doc) : null;
  }

  async findCreateOp(siteId: string, caseId: string, clientId: string): Promise<AnnotationOpRecord | null> {
    const doc = await this.states.findOne({ siteId, caseId, clientId }).lean<AnnotationDoc>();
    if (!doc) return null;
    const logged = await this.ops.findOne({ annotationId: doc._id, version: 1 }).lean<AnnotationOpDoc>();
    if (logged) return opFromDoc(logged);
    // The create is still on its way to the log (or its writer stopped): finish it here.
    return doc.pending?.version === 1 ? this.finish(doc) : null;
  }

  async listCurrent(siteId: string, caseId: string, materialId?: string): Promise<AnnotationRecord[]> {
    const filter = materialId === undefined ? { siteId, caseId, deleted: false } : { siteId, caseId, materialId, deleted: false };
    const docs = await this.states.find(filter).sort({ createdAt: 1, _id: 1 }).lean<AnnotationDoc[]>();
    return docs.map(annotationFromDoc);
  }

  async listOpsAfter(siteId: string, caseId: string, afterSeq: number, limit: number): Promise<AnnotationOpRecord[]> {
    await this.finishPendingOfCase(siteId, caseId);
    const query = this.ops.find({ siteId, caseId, seq: trusted({ $gt: afterSeq }) }).sort({ seq: 1 });
    if (!sqlPage(query, limit)) return [];
    const docs = await query.lean<AnnotationOpDoc[]>();
    return docs.map(opFromDoc);
  }

  async listHistory(siteId: string, caseId: string, annotationId: string): Promise<AnnotationOpRecord[]> {
    const state = await this.states.findOne({ _id: annotationId, siteId, caseId }).lean<AnnotationDoc>();
    if (state?.pending) await this.finish(state);
    const docs = await this.ops.find({ annotationId, siteId, caseId }).sort({ version: 1 }).lean<AnnotationOpDoc[]>();
    return docs.map(opFromDoc);
  }

  async latestSeq(siteId: string, caseId: string): Promise<number> {
    const head = await this.ops.findOne({ caseId, siteId }).sort({ seq: -1 }).select({ _id: 0, seq: 1 }).lean<{ seq: number }>();
    return head?.seq ?? 0;
  }

  async deleteByCase(siteId: string, caseId: string): Promise<number> {
    const res = await this.states.deleteMany({ siteId, caseId });
    await this.ops.deleteMany({ siteId, caseId });
    return res.deletedCount;
  }
}

export class MongoStore implements Store {
  readonly kind = 'mongo' as const;
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
  readonly radiology: MongoRadiology;
  readonly followUps: MongoFollowUps;
  #closed = false;

  private constructor(
    private readonly conn: Connection,
    models: {
      sites: Model<SiteDoc>;
      users: Model<UserDoc>;
      sessions: Model<SessionDoc>;
      audit: Model<AuditDoc>;
      dataKeys: Model<DataKeyDoc>;
      cases: Model<CaseDoc>;
      materials: Model<MaterialDoc>;
      transfers: Model<TransferDoc>;
      agreements: Model<AgreementDoc>;
      chat: Model<ChatDoc>;
      annotations: Model<AnnotationDoc>;
      annotationOps: Model<AnnotationOpDoc>;
    } & RadiologyModels &
      FollowUpModels,
  ) {
    this.sites = new MongoSites(models.sites);
    this.users = new MongoUsers(models.users);
    this.sessions = new MongoSessions(models.sessions);
    this.audit = new MongoAudit(models.audit);
    this.dataKeys = new MongoDataKeys(models.dataKeys);
    this.cases = new MongoCases(models.cases, models.materials);
    this.materials = new MongoMaterials(models.materials);
    this.transfers = new MongoTransfers(models.transfers, models.agreements);
    this.chat = new MongoChat(models.chat);
    this.annotations = new MongoAnnotations(models.annotations, models.annotationOps);
    this.radiology = new MongoRadiology(models);
    this.followUps = new MongoFollowUps(models);
  }

  static async connect(uri: string): Promise<MongoStore> {
    // A private connection: nothing else in the process can change its options or models.
    // Indexes are built below and awaited, not in the background where a failure goes unseen.
    const conn = mongoose.createConnection(uri, { autoIndex: false });
    try {
      await conn.asPromise();
      // Filters are built from request data (e-mails, ids); a smuggled `{ $ne: ... }` must
      // match literally, so every intended operator in this file is wrapped in trusted().
      conn.set('sanitizeFilter', true);
      conn.set('strictQuery', true);

      const models = {
        sites: conn.model<SiteDoc>('Site', siteSchema, 'sites'),
        users: conn.model<UserDoc>('User', userSchema, 'users'),
        sessions: conn.model<SessionDoc>('Session', sessionSchema, 'sessions'),
        audit: conn.model<AuditDoc>('AuditEvent', auditSchema, 'audit_events'),
        dataKeys: conn.model<DataKeyDoc>('DataKey', dataKeySchema, 'data_keys'),
        cases: conn.model<CaseDoc>('Case', caseSchema, 'cases'),
        materials: conn.model<MaterialDoc>('Material', materialSchema, 'materials'),
        transfers: conn.model<TransferDoc>('Transfer', transferSchema, 'transfers'),
        agreements: conn.model<AgreementDoc>('TransferAgreement', agreementSchema, 'transfer_agreements'),
        chat: conn.model<ChatDoc>('ChatMessage', chatSchema, 'chat_messages'),
        annotations: conn.model<AnnotationDoc>('Annotation', annotationSchema, 'annotations'),
        annotationOps: conn.model<AnnotationOpDoc>('AnnotationOp', annotationOpSchema, 'annotation_ops'),
        ...radiologyModels(conn),
        ...followUpModels(conn),
      };
      const all: { init(): Promise<unknown>; syncIndexes(): Promise<unknown> }[] = Object.values(models);
      for (const model of all) {
        await model.init();
        await model.syncIndexes();
      }
      return new MongoStore(conn, models);
    } catch (err) {
      await conn.close().catch(() => undefined);
      throw err;
    }
  }

  async ping(): Promise<boolean> {
    if (this.#closed) return false;
    const db = this.conn.db;
    if (!db) return false;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), PING_TIMEOUT_MS);
      timer.unref();
    });
    try {
      const ok = db
        .admin()
        .ping()
        .then((res) => res.ok === 1)
        .catch(() => false);
      return await Promise.race([ok, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.conn.close();
  }
}
