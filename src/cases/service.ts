// Case use cases: create, list, open, edit, delete; patient details sealed under the case's data
// key and shown only to viewers with View Patient Info; materials (upload, view, download,
// delete). Every read and write of case data is authorised and audited.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { Transform, type Readable, type Writable } from 'node:stream';
import { createHash } from 'node:crypto';
import type { AuditService } from '../audit/service';
import type { DataKeys } from '../crypto/dataKeys';
import { decryptStream } from '../crypto/fileCrypto';
import { AppError, NotFoundError } from '../errors';
import { requireAuthorized, type Actor } from '../identity/authorize';
import type { RequestContext } from '../identity/service';
import { newId } from '../ids';
import type { CaseStatus, Patient, PublicCase, PublicMaterial } from '../protocol/cases';
import type { Store } from '../store/types';
import { TILE_SIZE, type ImageSource, type MaterialConverter } from './converter';
import type { CaseRecord, MaterialRecord } from './model';
import { SNIFF_BYTES, sniffImageType } from './sniff';
import { MaterialStorage } from './storage';

const LABEL_ALPHABET = 'ABCDEFGHJKLMNPQRSTUVWXYZ23456789';

/** A stable pseudonym for a case such as "C-7F3K-92QD": random, carrying nothing about the patient. */
export function newCaseLabel(): string {
  const bytes = randomBytes(8);
  const chars = [...bytes].map((b) => LABEL_ALPHABET[b % LABEL_ALPHABET.length]).join('');
  return `C-${chars.slice(0, 4)}-${chars.slice(4)}`;
}

export const patientContext = (caseId: string) => `patient:${caseId}`;
const materialNameContext = (materialId: string) => `material-name:${materialId}`;
export const caseKeyOwner = (caseId: string) => `case:${caseId}`;

export interface UploadLimits {
  maxBytes: number;
  /** Free space that must remain after an upload and its pyramid (about 2.5 x the file). */
  reserveBytes: number;
}

export class CaseService {
  constructor(
    private readonly store: Store,
    private readonly audit: AuditService,
    private readonly dataKeys: DataKeys,
    private readonly storage: MaterialStorage,
    private readonly converter: MaterialConverter,
    private readonly limits: UploadLimits,
    private readonly clock: () => Date = () => new Date(),
  ) {}

  private auditActor(actor: Actor, ctx: RequestContext) {
    return { userId: actor.userId, role: actor.role, ip: ctx.ip, userAgent: ctx.userAgent };
  }

  private async mustFindCase(actor: Actor, caseId: string): Promise<CaseRecord> {
    const record = await this.store.cases.findById(actor.siteId, caseId);
    if (!record) throw new NotFoundError();
    return record;
  }

  async toPublic(actor: Actor, record: CaseRecord): Promise<PublicCase> {
    const base: PublicCase = {
      id: record.id,
      siteId: record.siteId,
      label: record.label,
      title: record.title,
      clinicalQuestion: record.clinicalQuestion,
      status: record.status,
      createdAt: record.createdAt,
      updatedAt: record.updatedAt,
      createdBy: record.createdBy,
    };
    if (actor.permissions.viewPatientInfo) {
      base.patient = record.patientSealed ? (JSON.parse(await this.dataKeys.openString(record.patientSealed, patientContext(record.id))) as Patient) : null;
    }
    return base;
  }

  async create(actor: Actor, ctx: RequestContext, input: { title: string; clinicalQuestion: string; status: CaseStatus; patient?: Patient }): Promise<PublicCase> {
    requireAuthorized(actor, 'case.create', { siteId: actor.siteId });
    const id = newId();
    const now = this.clock().toISOString();
    const record: CaseRecord = {
      id,
      siteId: actor.siteId,
      label: newCaseLabel(),
      title: input.title,
      clinicalQuestion: input.clinicalQuestion,
      status: input.status,
      patientSealed: input.patient ? await this.dataKeys.sealString(caseKeyOwner(id), JSON.stringify(input.patient), patientContext(id)) : null,
      createdAt: now,
      updatedAt: now,
      createdBy: actor.userId,
      updatedBy: actor.userId,
    };
    await this.store.cases.create(record);
    await this.audit.record({
      siteId: actor.siteId,
      type: 'case.create',
      action: 'C',
      actor: this.auditActor(actor, ctx),
      objects: [{ type: 'case', id }],
      details: { patientDetails: Boolean(input.patient) },
    });
    return this.toPublic(actor, record);
  }

  async list(actor: Actor, ctx: RequestContext, filter: { q?: string; status?: CaseStatus; limit: number; offset: number }) {
    requireAuthorized(actor, 'case.list', { siteId: actor.siteId });
    const { cases, total } = await this.store.cases.list(actor.siteId, filter);
    await this.audit.record({
      siteId: actor.siteId,
      type: 'case.list',
      action: 'R',
      actor: this.auditActor(actor, ctx),
      objects: cases.map((c) => ({ type: 'case', id: c.id })),
      details: { count: cases.length, patientDetails: actor.permissions.viewPatientInfo },
    });
    return { cases: await Promise.all(cases.map((c) => this.toPublic(actor, c))), total };
  }

  async get(actor: Actor, ctx: RequestContext, caseId: string): Promise<{ case: PublicCase; materials: PublicMaterial[] }> {
    const record = await this.mustFindCase(actor, caseId);
    requireAuthorized(actor, 'case.read', { siteId: record.siteId });
    const materials = await this.store.materials.listByCase(actor.siteId, caseId);
    await this.audit.record({
      siteId: actor.siteId,
      type: 'case.read',
      action: 'R',
      actor: this.auditActor(actor, ctx),
      objects: [{ type: 'case', id: caseId }],
      details: { patientDetails: actor.permissions.viewPatientInfo },
    });
    return { case: await this.toPublic(actor, record), materials: await Promise.all(materials.map((m) => this.materialToPublic(m))) };
  }

  async update(
    actor: Actor,
    ctx: RequestContext,
    caseId: string,
    patch: { title?: string; clinicalQuestion?: string; status?: CaseStatus; patient?: Patient | null },
  ): Promise<PublicCase> {
    const record = await this.mustFindCase(actor, caseId);
    requireAuthorized(actor, 'case.update', { siteId: record.siteId });
    if (patch.patient !== undefined) requireAuthorized(actor, 'case.updatePatient', { siteId: record.siteId });
    const patientSealed =
      patch.patient === undefined ? undefined : patch.patient === null ? null : await this.dataKeys.sealString(caseKeyOwner(caseId), JSON.stringify(patch.patient), patientContext(caseId));
    const updated = await this.store.cases.update(actor.siteId, caseId, {
      title: patch.title,
      clinicalQuestion: patch.clinicalQuestion,
      status: patch.status,
      patientSealed,
      updatedAt: this.clock().toISOString(),
      updatedBy: actor.userId,
    });
    if (!updated) throw new NotFoundError();
    await this.audit.record({
      siteId: actor.siteId,
      type: 'case.update',
      action: 'U',
      actor: this.auditActor(actor, ctx),
      objects: [{ type: 'case', id: caseId }],
      details: { fields: Object.keys(patch).sort().join(',') },
    });
    return this.toPublic(actor, updated);
  }

  async delete(actor: Actor, ctx: RequestContext, caseId: string): Promise<void> {
    const record = await this.mustFindCase(actor, caseId);
    requireAuthorized(actor, 'case.delete', { siteId: record.siteId });
    const materials = await this.deleteCaseData(record);
    await this.audit.record({
      siteId: actor.siteId,
      type: 'case.delete',
      action: 'D',
      actor: this.auditActor(actor, ctx),
      objects: [{ type: 'case', id: caseId }],
      details: { materials },
    });
  }

  /** Deletes a case, its materials' records and files, its chat and annotations, and its data key. Returns the material count. */
  async deleteCaseData(record: CaseRecord): Promise<number> {
    const materials = await this.store.materials.listByCase(record.siteId, record.id);
    await this.store.materials.deleteByCase(record.siteId, record.id);
    await this.store.transfers.deleteByCase(record.siteId, record.id);
    await this.store.chat.deleteByCase(record.siteId, record.id);
    await this.store.annotations.deleteByCase(record.siteId, record.id);
    await this.store.cases.delete(record.siteId, record.id);
    for (const m of materials) await this.storage.remove(m.id);
    // Crypto-shredding: copies of the ciphertext anywhere (backups) become unreadable.
    await this.dataKeys.destroyOwner(caseKeyOwner(record.id));
    return materials.length;
  }

  /** First start: a demo case with a synthetic slide, converted in the background like an upload. */
  async createDemoCase(siteId: string, slide: ImageSource | null, slideName: string): Promise<CaseRecord> {
    const id = newId();
    const now = this.clock().toISOString();
    const record: CaseRecord = {
      id,
      siteId,
      label: newCaseLabel(),
      title: 'Demo: breast core biopsy, second opinion',
      clinicalQuestion: 'Synthetic demonstration case. Invasive carcinoma or benign sclerosing lesion?',
      status: 'open',
      patientSealed: await this.dataKeys.sealString(
        caseKeyOwner(id),
        JSON.stringify({ name: 'Demo Patient', dateOfBirth: '1970-01-01', medicalRecordNumber: 'DEMO-0001', sex: 'female' } satisfies Patient),
        patientContext(id),
      ),
      createdAt: now,
      updatedAt: now,
      createdBy: null,
      updatedBy: null,
    };
    await this.store.cases.create(record);
    const system = { userId: null, role: 'system', ip: null, userAgent: 'first-start' };
    await this.audit.record({ siteId, type: 'case.create', action: 'C', actor: system, objects: [{ type: 'case', id }], details: { demo: true } });
    if (slide && slide.kind === 'demo') {
      const materialId = newId();
      const material: MaterialRecord = {
        id: materialId,
        siteId,
        caseId: id,
        nameSealed: await this.dataKeys.sealString(caseKeyOwner(id), slideName, materialNameContext(materialId)),
        mime: 'image/jpeg',
        // Synthetic: there is no original file, only the pyramid.
        sizeBytes: 0,
        sha256: '',
        status: 'queued',
        progress: 0,
        width: slide.size,
        height: slide.size,
        tileSize: TILE_SIZE,
        overlap: 0,
        tileFormat: 'jpeg',
        error: null,
        createdAt: now,
        updatedAt: now,
        createdBy: null,
      };
      await this.store.materials.create(material);
      this.converter.enqueue(material, slide);
    }
    return record;
  }

  // ---------------------------------------------------------------- materials

  async materialToPublic(m: MaterialRecord): Promise<PublicMaterial> {
    return {
      id: m.id,
      caseId: m.caseId,
      name: await this.dataKeys.openString(m.nameSealed, materialNameContext(m.id)),
      mime: m.mime,
      sizeBytes: m.sizeBytes,
      status: m.status,
      progress: m.progress,
      width: m.width,
      height: m.height,
      tileSize: m.tileSize,
      error: m.error,
      createdAt: m.createdAt,
      dziUrl: m.status === 'ready' ? `/api/cases/${m.caseId}/materials/${m.id}/slide.dzi` : null,
    };
  }

  /**
   * Streams an upload to a plaintext temporary file (never whole in memory), checking size, free
   * space and the content type by its first bytes. Only a complete, accepted upload gets a
   * record; anything else leaves nothing behind.
   */
  async upload(actor: Actor, ctx: RequestContext, caseId: string, name: string, body: Readable, declaredLength: number | null): Promise<PublicMaterial> {
    const record = await this.mustFindCase(actor, caseId);
    requireAuthorized(actor, 'material.upload', { siteId: record.siteId });
    if (declaredLength !== null && declaredLength > this.limits.maxBytes) throw new AppError('PAYLOAD_TOO_LARGE', `Files up to ${this.limits.maxBytes} bytes are accepted.`);
    const free = await this.storage.freeBytes();
    if (free - (declaredLength ?? 0) * 2.5 < this.limits.reserveBytes) throw new AppError('STORAGE_FULL');

    const id = newId();
    const tmp = this.storage.uploadPath(id);
    const hash = createHash('sha256');
    let size = 0;
    let head = Buffer.alloc(0);
    let mime: string | null = null;
    const limits = this.limits;
    const inspect = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        size += chunk.length;
        if (size > limits.maxBytes) return cb(new AppError('PAYLOAD_TOO_LARGE', `Files up to ${limits.maxBytes} bytes are accepted.`));
        if (mime === null) {
          head = Buffer.concat([head, chunk.subarray(0, SNIFF_BYTES)]);
          if (head.length >= SNIFF_BYTES) {
            mime = sniffImageType(head);
            if (!mime) return cb(new AppError('UNSUPPORTED_FILE_TYPE'));
          }
        }
        hash.update(chunk);
        cb(null, chunk);
      },
    });
    try {
      await pipeline(body, inspect, fs.createWriteStream(tmp, { mode: 0o600, flags: 'wx' }) as Writable);
      if (mime === null) mime = sniffImageType(head);
      if (!mime || size === 0) throw new AppError('UNSUPPORTED_FILE_TYPE');
      if (declaredLength !== null && size !== declaredLength) throw new AppError('VALIDATION_FAILED', 'The upload was cut short.');
    } catch (err) {
      await fsp.rm(tmp, { force: true });
      await this.audit.record({
        siteId: actor.siteId,
        type: 'material.upload',
        action: 'C',
        outcome: 4,
        actor: this.auditActor(actor, ctx),
        objects: [{ type: 'case', id: caseId }],
        details: { reason: err instanceof AppError ? err.code : (err as NodeJS.ErrnoException).code === 'ENOSPC' ? 'STORAGE_FULL' : 'ABORTED', bytes: size },
      });
      if ((err as NodeJS.ErrnoException).code === 'ENOSPC') throw new AppError('STORAGE_FULL');
      if (err instanceof AppError) throw err;
      throw new AppError('VALIDATION_FAILED', 'The upload did not complete.');
    }
    const now = this.clock().toISOString();
    const material: MaterialRecord = {
      id,
      siteId: actor.siteId,
      caseId,
      nameSealed: await this.dataKeys.sealString(caseKeyOwner(caseId), name, materialNameContext(id)),
      mime,
      sizeBytes: size,
      sha256: hash.digest('hex'),
      status: 'queued',
      progress: 0,
      width: null,
      height: null,
      tileSize: TILE_SIZE,
      overlap: 0,
      tileFormat: 'jpeg',
      error: null,
      createdAt: now,
      updatedAt: now,
      createdBy: actor.userId,
    };
    try {
      await this.store.materials.create(material);
    } catch (err) {
      await fsp.rm(tmp, { force: true });
      throw err;
    }
    await this.audit.record({
      siteId: actor.siteId,
      type: 'material.upload',
      action: 'C',
      actor: this.auditActor(actor, ctx),
      objects: [
        { type: 'case', id: caseId },
        { type: 'material', id },
      ],
      details: { bytes: size, mime, sha256: material.sha256 },
    });
    this.converter.enqueue(material);
    return this.materialToPublic(material);
  }

  async getMaterial(actor: Actor, caseId: string, materialId: string): Promise<MaterialRecord> {
    const material = await this.store.materials.findById(actor.siteId, caseId, materialId);
    if (!material) throw new NotFoundError();
    requireAuthorized(actor, 'material.view', { siteId: material.siteId });
    return material;
  }

  /** The DeepZoom descriptor; opening it is the audited "view" of a material. */
  async openViewer(actor: Actor, ctx: RequestContext, caseId: string, materialId: string): Promise<string> {
    const m = await this.getMaterial(actor, caseId, materialId);
    if (m.status !== 'ready' || !m.width || !m.height) throw new AppError('CONFLICT', 'The material is not ready yet.');
    await this.audit.record({
      siteId: actor.siteId,
      type: 'material.view',
      action: 'R',
      actor: this.auditActor(actor, ctx),
      objects: [
        { type: 'case', id: caseId },
        { type: 'material', id: materialId },
      ],
    });
    return (
      '<?xml version="1.0" encoding="UTF-8"?>\n' +
      `<Image xmlns="http://schemas.microsoft.com/deepzoom/2008" Format="jpeg" Overlap="${m.overlap}" TileSize="${m.tileSize}">` +
      `<Size Width="${m.width}" Height="${m.height}"/></Image>\n`
    );
  }

  async readTile(actor: Actor, caseId: string, materialId: string, level: number, tile: string): Promise<Buffer> {
    const m = await this.getMaterial(actor, caseId, materialId);
    if (m.status !== 'ready') throw new NotFoundError();
    const key = await this.dataKeys.forOwner(caseKeyOwner(caseId));
    const data = await this.storage.readTile(key.key, m.id, level, tile);
    if (!data) throw new NotFoundError();
    return data;
  }

  /** Streams the decrypted original to `out` (Can Download; audited before the first byte). */
  async download(actor: Actor, ctx: RequestContext, caseId: string, materialId: string, begin: (info: { name: string; mime: string; size: number }) => Writable): Promise<void> {
    const m = await this.store.materials.findById(actor.siteId, caseId, materialId);
    if (!m) throw new NotFoundError();
    requireAuthorized(actor, 'material.download', { siteId: m.siteId });
    if (m.status !== 'ready' || m.sizeBytes === 0) throw new AppError('NOT_FOUND', 'This material has no original file to download.');
    await this.audit.record({
      siteId: actor.siteId,
      type: 'material.download',
      action: 'R',
      actor: this.auditActor(actor, ctx),
      objects: [
        { type: 'case', id: caseId },
        { type: 'material', id: materialId },
      ],
      details: { bytes: m.sizeBytes },
    });
    const { key } = await this.dataKeys.forOwner(caseKeyOwner(caseId));
    const name = await this.dataKeys.openString(m.nameSealed, materialNameContext(m.id));
    await pipeline(fs.createReadStream(this.storage.originalPath(m.id)), decryptStream(key, MaterialStorage.originalContext(m.id)), begin({ name, mime: m.mime, size: m.sizeBytes }));
  }

  async deleteMaterial(actor: Actor, ctx: RequestContext, caseId: string, materialId: string): Promise<void> {
    const m = await this.store.materials.findById(actor.siteId, caseId, materialId);
    if (!m) throw new NotFoundError();
    requireAuthorized(actor, 'material.delete', { siteId: m.siteId });
    if (m.status === 'queued' || m.status === 'converting') throw new AppError('CONFLICT', 'The material is still being converted.');
    await this.store.materials.delete(actor.siteId, materialId);
    await this.storage.remove(materialId);
    await this.audit.record({
      siteId: actor.siteId,
      type: 'material.delete',
      action: 'D',
      actor: this.auditActor(actor, ctx),
      objects: [
        { type: 'case', id: caseId },
        { type: 'material', id: materialId },
      ],
    });
  }

  /**
   * Start-up recovery: resumes conversions a crash interrupted (their plaintext upload is still
   * there), fails those whose upload is gone, and deletes files that belong to no record.
   */
  async recover(logger: { info(o: object, m: string): void }, resynthesize: (m: MaterialRecord) => Promise<ImageSource | null> = async () => null): Promise<void> {
    const unfinished = await this.store.materials.listUnfinished();
    const known = new Set(unfinished.map((m) => m.id));
    for (const m of unfinished) {
      const synthetic = m.sizeBytes === 0 ? await resynthesize(m) : null;
      if (synthetic) {
        this.converter.enqueue(m, synthetic);
      } else if (fs.existsSync(this.storage.uploadPath(m.id))) {
        this.converter.enqueue(m);
      } else {
        await this.storage.remove(m.id);
        await this.store.materials.update(m.siteId, m.id, { status: 'failed', error: 'The conversion was interrupted; upload the file again.', updatedAt: this.clock().toISOString() });
      }
    }
    let orphans = 0;
    for (const id of await this.storage.idsOnDisk()) {
      if (known.has(id)) continue;
      if (await this.materialExists(id)) {
        // A finished material keeps its final files; only stray temporary files go.
        await fsp.rm(this.storage.uploadPath(id), { force: true });
        await fsp.rm(this.storage.conversionDir(id), { recursive: true, force: true });
        continue;
      }
      await this.storage.remove(id);
      orphans++;
    }
    if (unfinished.length || orphans) logger.info({ resumed: unfinished.length, orphans }, 'material recovery');
  }

  private async materialExists(id: string): Promise<boolean> {
    return this.store.materials.exists(id);
  }
}
