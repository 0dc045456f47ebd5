// Annotation use cases: create, update and delete as versioned operations in a per-case
// sequence (optimistic concurrency on `baseVersion`), catch-up from a sequence number, history
// of one annotation, current annotations of a case or material, GeoJSON import and export.
// Label, colour and comment are sealed at rest; every change is durable before it returns,
// audited (never the text) and announced as an 'ops' event for the case's room.
import { EventEmitter } from 'node:events';
import type { AuditActor } from '../audit/model';
import type { AuditService } from '../audit/service';
import type { MaterialRecord } from '../cases/model';
import { caseKeyOwner } from '../cases/service';
import type { DataKeys } from '../crypto/dataKeys';
import { AppError, NotFoundError, ValidationError, VersionConflictError } from '../errors';
import { parseInput } from '../http/validate';
import { requireAuthorized, type Action, type Actor } from '../identity/authorize';
import type { RequestContext } from '../identity/service';
import { newId } from '../ids';
import {
  createAnnotationSchema,
  deleteAnnotationSchema,
  geometryMismatch,
  MAX_SYNC_OPS,
  seqSchema,
  updateAnnotationSchema,
  type AnnotationGeometry,
  type AnnotationKind,
  type AnnotationOp,
  type AnnotationProperties,
  type CreateAnnotationInput,
  type DeleteAnnotationInput,
  type GeoJsonFeatureCollection,
  type PublicAnnotation,
  type UpdateAnnotationInput,
} from '../protocol/annotations';
import { DuplicateKeyError, type Store } from '../store/types';
import { parseImport, toFeatureCollection } from './geojson';
import type { AnnotationOpRecord, AnnotationRecord } from './model';

export const annotationPropertiesContext = (annotationId: string, version: number) => `annotation:${annotationId}:${version}`;

/** Annotation ids per audit record of an import, so one record stays small. */
const IDS_PER_AUDIT_RECORD = 500;

export interface AnnotationEvents {
  /** New ops are durable (never for an idempotent retry), in seq order: broadcast them to the case's room. */
  ops: [{ siteId: string; caseId: string; ops: AnnotationOp[] }];
}

export class AnnotationService extends EventEmitter<AnnotationEvents> {
  constructor(
    private readonly store: Store,
    private readonly audit: AuditService,
    private readonly dataKeys: DataKeys,
    private readonly clock: () => Date = () => new Date(),
  ) {
    super();
  }

  // ---------------------------------------------------------------- helpers

  private auditActor(actor: Actor, ctx: RequestContext): AuditActor {
    return { userId: actor.userId, role: actor.role, ip: ctx.ip, userAgent: ctx.userAgent };
  }

  private async authorizeOnCase(actor: Actor, caseId: string, action: Action): Promise<void> {
    const record = await this.store.cases.findById(actor.siteId, caseId);
    if (!record) throw new NotFoundError();
    requireAuthorized(actor, action, { siteId: record.siteId });
  }

  /** The material, which must belong to the case in the actor's site (404 otherwise, as for another site's). */
  private async authorizeOnMaterial(actor: Actor, caseId: string, materialId: string, action: Action): Promise<MaterialRecord> {
    const material = await this.store.materials.findById(actor.siteId, caseId, materialId);
    if (!material) throw new NotFoundError();
    requireAuthorized(actor, action, { siteId: material.siteId });
    return material;
  }

  private sealProperties(caseId: string, annotationId: string, version: number, properties: AnnotationProperties): Promise<string> {
    return this.dataKeys.sealString(caseKeyOwner(caseId), JSON.stringify(properties), annotationPropertiesContext(annotationId, version));
  }

  private async openProperties(a: AnnotationRecord): Promise<AnnotationProperties> {
    return JSON.parse(await this.dataKeys.openString(a.propertiesSealed, annotationPropertiesContext(a.id, a.version))) as AnnotationProperties;
  }

  async toPublic(a: AnnotationRecord): Promise<PublicAnnotation> {
    return {
      id: a.id,
      caseId: a.caseId,
      materialId: a.materialId,
      slice: a.slice ?? null,
      kind: a.kind,
      geometry: a.geometry,
      properties: await this.openProperties(a),
      version: a.version,
      deleted: a.deleted,
      createdBy: a.createdBy,
      createdAt: a.createdAt,
      updatedBy: a.updatedBy,
      updatedAt: a.updatedAt,
    };
  }

  private async opToPublic(o: AnnotationOpRecord): Promise<AnnotationOp> {
    const annotation = await this.toPublic(o.annotation);
    return {
      seq: o.seq,
      annotationId: annotation.id,
      materialId: annotation.materialId,
      op: o.op,
      version: annotation.version,
      userId: annotation.updatedBy,
      at: annotation.updatedAt,
      annotation,
    };
  }

  private async auditOp(actor: Actor, ctx: RequestContext, op: AnnotationOp): Promise<void> {
    await this.audit.record({
      siteId: actor.siteId,
      type: `annotation.${op.op}`,
      action: op.op === 'create' ? 'C' : op.op === 'update' ? 'U' : 'D',
      actor: this.auditActor(actor, ctx),
      objects: [
        { type: 'case', id: op.annotation.caseId },
        { type: 'material', id: op.materialId },
        { type: 'annotation', id: op.annotationId },
      ],
      details: { kind: op.annotation.kind, version: op.version, seq: op.seq },
    });
  }

  private announce(siteId: string, caseId: string, ops: AnnotationOp[]): void {
    if (ops.length > 0) this.emit('ops', { siteId, caseId, ops });
  }

  /** The current annotation for a change at `baseVersion`, or the typed error the client recovers from. */
  private async currentForChange(actor: Actor, caseId: string, annotationId: string, baseVersion: number): Promise<AnnotationRecord> {
    const current = await this.store.annotations.findById(actor.siteId, caseId, annotationId);
    if (!current) throw new NotFoundError();
    // Once its material is gone an annotation is gone too, whatever the client holds.
    await this.authorizeOnMaterial(actor, caseId, current.materialId, 'annotation.write');
    if (current.version !== baseVersion) throw new VersionConflictError(await this.toPublic(current));
    if (current.deleted) throw new AppError('CONFLICT', 'This annotation has been deleted.');
    return current;
  }

  /** After a failed compare-and-swap: the annotation moved on (conflict) or was removed (404). */
  private async lostRace(actor: Actor, caseId: string, annotationId: string): Promise<never> {
    const now = await this.store.annotations.findById(actor.siteId, caseId, annotationId);
    if (!now) throw new NotFoundError();
    throw new VersionConflictError(await this.toPublic(now));
  }

  // ---------------------------------------------------------------- changes

  /**
   * Creates an annotation on a material of the case: version 1, op 'create'. Idempotent by
   * `clientId`: a retry returns the first create op and stores nothing.
   */
  async create(actor: Actor, ctx: RequestContext, input: CreateAnnotationInput): Promise<AnnotationOp> {
    const valid = parseInput(createAnnotationSchema, input);
    await this.authorizeOnMaterial(actor, valid.caseId, valid.materialId, 'annotation.write');
    const previous = await this.store.annotations.findCreateOp(actor.siteId, valid.caseId, valid.clientId);
    if (previous) return this.replayedCreate(actor, previous);
    if (valid.slice !== undefined) {
      // A slice exists only on a DICOM stack (src/radiology), and only up to its slice count.
      const series = await this.store.radiology.findSeries(actor.siteId, valid.caseId, valid.materialId);
      if (!series) throw new ValidationError([{ path: 'slice', issue: 'only an annotation on a DICOM stack has a slice' }]);
      if (valid.slice >= series.instanceCount) throw new ValidationError([{ path: 'slice', issue: `the stack has ${series.instanceCount} slices` }]);
    }

    const record = { ...(await this.newRecord(actor, valid.caseId, valid.materialId, valid.clientId, valid.kind, valid.geometry, valid.properties)), slice: valid.slice ?? null };
    let stored: AnnotationOpRecord;
    try {
      stored = await this.store.annotations.create(record);
    } catch (err) {
      if (!(err instanceof DuplicateKeyError)) throw err;
      // The same retry raced itself: the first one won.
      const winner = await this.store.annotations.findCreateOp(actor.siteId, valid.caseId, valid.clientId);
      if (!winner) throw err;
      return this.replayedCreate(actor, winner);
    }
    const op = await this.opToPublic(stored);
    await this.auditOp(actor, ctx, op);
    this.announce(actor.siteId, valid.caseId, [op]);
    return op;
  }

  private async replayedCreate(actor: Actor, previous: AnnotationOpRecord): Promise<AnnotationOp> {
    if (previous.annotation.createdBy !== actor.userId) throw new AppError('CONFLICT', 'This annotation id is already in use; create it with a new one.');
    return this.opToPublic(previous);
  }

  private async newRecord(
    actor: Actor,
    caseId: string,
    materialId: string,
    clientId: string,
    kind: AnnotationKind,
    geometry: AnnotationGeometry,
    properties: AnnotationProperties,
  ): Promise<AnnotationRecord> {
    const id = newId();
    const now = this.clock().toISOString();
    return {
      id,
      siteId: actor.siteId,
      caseId,
      materialId,
      clientId,
      kind,
      geometry,
      propertiesSealed: await this.sealProperties(caseId, id, 1, properties),
      version: 1,
      deleted: false,
      createdBy: actor.userId,
      createdAt: now,
      updatedBy: actor.userId,
      updatedAt: now,
    };
  }

  /**
   * Changes geometry and/or properties (only the named properties change) of the version the
   * client holds. A stale `baseVersion` throws VersionConflictError carrying the current
   * annotation; the kind never changes and a new geometry must suit it.
   */
  async update(actor: Actor, ctx: RequestContext, input: UpdateAnnotationInput): Promise<AnnotationOp> {
    const valid = parseInput(updateAnnotationSchema, input);
    await this.authorizeOnCase(actor, valid.caseId, 'annotation.write');
    const current = await this.currentForChange(actor, valid.caseId, valid.annotationId, valid.baseVersion);
    const geometry = valid.geometry ?? current.geometry;
    const mismatch = geometryMismatch(current.kind, geometry);
    if (mismatch) throw new ValidationError([{ path: 'geometry', issue: mismatch }]);
    const properties = { ...(await this.openProperties(current)), ...definedOnly(valid.properties ?? {}) };
    const version = current.version + 1;
    const next: AnnotationRecord = {
      ...current,
      geometry,
      propertiesSealed: await this.sealProperties(valid.caseId, current.id, version, properties),
      version,
      updatedBy: actor.userId,
      updatedAt: this.clock().toISOString(),
    };
    const stored = await this.store.annotations.apply(next, 'update');
    if (!stored) return this.lostRace(actor, valid.caseId, valid.annotationId);
    const op = await this.opToPublic(stored);
    await this.auditOp(actor, ctx, op);
    this.announce(actor.siteId, valid.caseId, [op]);
    return op;
  }

  /** Deletes the version the client holds: a tombstone (deleted: true) one version later. */
  async remove(actor: Actor, ctx: RequestContext, input: DeleteAnnotationInput): Promise<AnnotationOp> {
    const valid = parseInput(deleteAnnotationSchema, input);
    await this.authorizeOnCase(actor, valid.caseId, 'annotation.write');
    const current = await this.currentForChange(actor, valid.caseId, valid.annotationId, valid.baseVersion);
    const version = current.version + 1;
    const next: AnnotationRecord = {
      ...current,
      // The properties stay readable in the history, sealed for the new version.
      propertiesSealed: await this.sealProperties(valid.caseId, current.id, version, await this.openProperties(current)),
      version,
      deleted: true,
      updatedBy: actor.userId,
      updatedAt: this.clock().toISOString(),
    };
    const stored = await this.store.annotations.apply(next, 'delete');
    if (!stored) return this.lostRace(actor, valid.caseId, valid.annotationId);
    const op = await this.opToPublic(stored);
    await this.auditOp(actor, ctx, op);
    this.announce(actor.siteId, valid.caseId, [op]);
    return op;
  }

  // ---------------------------------------------------------------- reads

  /**
   * Ops after `afterSeq` (ascending, at most `limit`, 1..1000) and the case's latest seq. A
   * client applies an op only when its version is above the one it holds, so a page that
   * overlaps a snapshot is harmless; with fewer than latestSeq it asks again from its last op.
   */
  async since(actor: Actor, _ctx: RequestContext, caseId: string, afterSeq: number, limit = MAX_SYNC_OPS): Promise<{ ops: AnnotationOp[]; latestSeq: number }> {
    const after = parseInput(seqSchema, afterSeq);
    const count = Number.isFinite(limit) ? Math.min(Math.max(1, Math.trunc(limit)), MAX_SYNC_OPS) : MAX_SYNC_OPS;
    await this.authorizeOnCase(actor, caseId, 'annotation.read');
    const latestSeq = await this.store.annotations.latestSeq(actor.siteId, caseId);
    const records = await this.store.annotations.listOpsAfter(actor.siteId, caseId, after, count);
    const ops = await Promise.all(records.map((o) => this.opToPublic(o)));
    return { ops, latestSeq: Math.max(latestSeq, ops.at(-1)?.seq ?? 0) };
  }

  /**
   * The current annotations of a case (not deleted) and the seq they are at least as new as: a
   * joining client takes this snapshot, then follows ops from `latestSeq`.
   */
  async listByCase(actor: Actor, _ctx: RequestContext, caseId: string): Promise<{ annotations: PublicAnnotation[]; latestSeq: number }> {
    await this.authorizeOnCase(actor, caseId, 'annotation.read');
    // latestSeq before the states: an op landing in between is then replayed, never missed.
    const latestSeq = await this.store.annotations.latestSeq(actor.siteId, caseId);
    const records = await this.store.annotations.listCurrent(actor.siteId, caseId);
    const materials = new Set((await this.store.materials.listByCase(actor.siteId, caseId)).map((m) => m.id));
    const live = records.filter((a) => materials.has(a.materialId));
    return { annotations: await Promise.all(live.map((a) => this.toPublic(a))), latestSeq };
  }

  /** The current annotations of one material (not deleted), oldest first. */
  async listByMaterial(actor: Actor, _ctx: RequestContext, caseId: string, materialId: string): Promise<PublicAnnotation[]> {
    await this.authorizeOnMaterial(actor, caseId, materialId, 'annotation.read');
    const records = await this.store.annotations.listCurrent(actor.siteId, caseId, materialId);
    return Promise.all(records.map((a) => this.toPublic(a)));
  }

  /** Every op of one annotation, by version: who changed it, when, and to what. */
  async history(actor: Actor, _ctx: RequestContext, caseId: string, annotationId: string): Promise<AnnotationOp[]> {
    await this.authorizeOnCase(actor, caseId, 'annotation.read');
    const records = await this.store.annotations.listHistory(actor.siteId, caseId, annotationId);
    if (records.length === 0) throw new NotFoundError();
    return Promise.all(records.map((o) => this.opToPublic(o)));
  }

  // ---------------------------------------------------------------- GeoJSON

  /** The material's current annotations as a QuPath-compatible FeatureCollection (audited). */
  async exportGeoJson(actor: Actor, ctx: RequestContext, caseId: string, materialId: string): Promise<GeoJsonFeatureCollection> {
    const annotations = await this.listByMaterial(actor, ctx, caseId, materialId);
    await this.audit.record({
      siteId: actor.siteId,
      type: 'annotation.export',
      action: 'R',
      actor: this.auditActor(actor, ctx),
      objects: [
        { type: 'case', id: caseId },
        { type: 'material', id: materialId },
      ],
      details: { format: 'geojson', annotations: annotations.length },
    });
    return toFeatureCollection(annotations);
  }

  /**
   * Imports a GeoJSON FeatureCollection (QuPath export or ours) onto a material: every feature
   * is validated before anything is stored, then each becomes a normal create op, so rooms see
   * them like any other. On SQLite the whole import is one transaction.
   */
  async importGeoJson(actor: Actor, ctx: RequestContext, caseId: string, materialId: string, body: unknown): Promise<{ imported: number; annotations: PublicAnnotation[] }> {
    await this.authorizeOnMaterial(actor, caseId, materialId, 'annotation.write');
    const drafts = parseImport(body);
    // Slices (our exports of a DICOM stack) are checked as on create: a stack, within its length.
    const sliced = drafts.filter((d) => d.slice !== null);
    if (sliced.length > 0) {
      const series = await this.store.radiology.findSeries(actor.siteId, caseId, materialId);
      const issues = sliced
        .filter((d) => !series || d.slice! >= series.instanceCount)
        .map((d) => ({ path: `${d.path}.properties.slice`, issue: series ? `the stack has ${series.instanceCount} slices` : 'only an annotation on a DICOM stack has a slice' }));
      if (issues.length > 0) throw new ValidationError(issues.slice(0, 20));
    }
    const records: AnnotationRecord[] = [];
    for (const d of drafts) {
      // Imports have no client retry id of their own; a fresh random one keeps the key unique.
      records.push({ ...(await this.newRecord(actor, caseId, materialId, `import-${newId()}`, d.kind, d.geometry, d.properties)), slice: d.slice });
    }
    const stored = await this.store.annotations.createMany(records);
    const ops = await Promise.all(stored.map((o) => this.opToPublic(o)));
    for (let i = 0; i === 0 || i < ops.length; i += IDS_PER_AUDIT_RECORD) {
      await this.audit.record({
        siteId: actor.siteId,
        type: 'annotation.import',
        action: 'C',
        actor: this.auditActor(actor, ctx),
        objects: [
          { type: 'case', id: caseId },
          { type: 'material', id: materialId },
          ...ops.slice(i, i + IDS_PER_AUDIT_RECORD).map((o) => ({ type: 'annotation', id: o.annotationId })),
        ],
        details: { format: 'geojson', imported: ops.length, firstSeq: ops[0]?.seq ?? null, lastSeq: ops.at(-1)?.seq ?? null },
      });
    }
    this.announce(actor.siteId, caseId, ops);
    return { imported: ops.length, annotations: ops.map((o) => o.annotation) };
  }

  /** Retention and case deletion (CaseService.deleteCaseData): returns how many annotations went. */
  deleteByCase(siteId: string, caseId: string): Promise<number> {
    return this.store.annotations.deleteByCase(siteId, caseId);
  }
}

function definedOnly<T extends object>(patch: T): Partial<T> {
  return Object.fromEntries(Object.entries(patch).filter(([, v]) => v !== undefined)) as Partial<T>;
}
