// Radiology intake and viewing. Every path that brings DICOM in (DIMSE C-STORE, STOW-RS, browser
// upload) ends in `intake`: parse and check the instance, find or create its case (by Study
// Instance UID, then accession number), seal the patient fields into the case's patient record,
// store the instance encrypted under the case key and add it to its series (one series = one
// stack material). Nothing is written before the instance has passed every check, so a refused
// instance changes nothing. Viewing renders slices server-side and de-identifies headers for
// viewers without View Patient Info.
import { createHash, createHmac } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { AuditService } from '../audit/service';
import type { AuditActor } from '../audit/model';
import type { MaterialRecord } from '../cases/model';
import { caseKeyOwner, newCaseLabel } from '../cases/service';
import type { MaterialStorage } from '../cases/storage';
import type { MaterialConverter } from '../cases/converter';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import type { DataKeys } from '../crypto/dataKeys';
import { AppError, NotFoundError } from '../errors';
import { requireAuthorized, type Actor } from '../identity/authorize';
import type { RequestContext } from '../identity/service';
import { newId } from '../ids';
import type { Patient } from '../protocol/cases';
import { DICOM_STACK_MIME, type PublicRadiologyDocument, type PublicStack } from '../protocol/radiology';
import { DuplicateKeyError, type Store } from '../store/types';
import { decodedForRendering, DicomIntakeError, DECODED_TRANSFER_SYNTAXES, parseInstance, renderFrame, SUPPORTED_SOP_CLASSES, tiledLayout, viewerHeader, VL_WHOLE_SLIDE, writeTiledSlide, type ParsedInstance, type PatientFromHeader, type WindowLevel } from './dicom';
import type { CaseKeyKind, InstanceRecord, SeriesRecord } from './model';
import { InstanceStorage } from './storage';

// These contexts must match CaseService's, which seals the same fields of the same records.
const patientContext = (caseId: string) => `patient:${caseId}`;
const materialNameContext = (materialId: string) => `material-name:${materialId}`;
const registryOwner = (siteId: string) => `radiology:${siteId}`;
const registryContext = (siteId: string, patientKey: string) => `radiology-patient:${siteId}/${patientKey}`;
const documentContext = (id: string) => `radiology-document:${id}`;

export type IntakeSource =
  | { kind: 'dimse'; callingAe: string; calledAe: string; ip: string | null }
  | { kind: 'stow'; ip: string | null; userId: string | null; role: string | null; userAgent: string | null }
  | { kind: 'upload'; ip: string | null; userId: string; role: string; userAgent: string | null; caseId: string };

export interface IntakeResult {
  outcome: 'stored' | 'duplicate';
  caseId: string;
  materialId: string;
  instanceId: string;
  sopClassUid: string;
  sopInstanceUid: string;
  studyInstanceUid: string;
  seriesInstanceUid: string;
}

export interface RadiologyLimits {
  /** Largest accepted instance, in bytes. */
  maxInstanceBytes: number;
  /**
   * Single frames at least this many pixels (and every single-frame VL Whole Slide image) also
   * become a DeepZoom material through the slide converter, so they pan and zoom like slides.
   */
  deepZoomMinPixels: number;
}

/** What HL7 and DICOM know of a patient; merged into the case's patient record when complete. */
export interface PatientFacts {
  name: string | null;
  id: string | null;
  birthDate: string | null;
  sex: Patient['sex'] | null;
}

export function completePatient(p: PatientFacts): Patient | null {
  if (!p.name || !p.id || !p.birthDate) return null;
  return { name: p.name, medicalRecordNumber: p.id, dateOfBirth: p.birthDate, sex: p.sex ?? 'unknown' };
}

export function sourceActor(source: IntakeSource): AuditActor {
  switch (source.kind) {
    case 'dimse':
      return { userId: null, role: 'dicom-peer', ip: source.ip, userAgent: `AE ${source.callingAe} -> ${source.calledAe}` };
    case 'stow':
      return { userId: source.userId, role: source.role ?? 'dicomweb-token', ip: source.ip, userAgent: source.userAgent };
    case 'upload':
      return { userId: source.userId, role: source.role, ip: source.ip, userAgent: source.userAgent };
  }
}

export interface RadiologyEvents {
  /** An HL7 order or report was attached to a case (its room re-reads the documents). */
  document: [{ caseId: string; kind: 'order' | 'report' }];
}

export class RadiologyService extends EventEmitter<RadiologyEvents> {
  readonly instances: InstanceStorage;
  /** Intake is serialised per site: two instances of a new study must not create two cases. */
  readonly #siteQueues = new Map<string, Promise<unknown>>();

  constructor(
    private readonly store: Store,
    private readonly audit: AuditService,
    private readonly dataKeys: DataKeys,
    private readonly materials: MaterialStorage,
    readonly limits: RadiologyLimits,
    private readonly clock: () => Date = () => new Date(),
    /** The slide converter, for large single frames (absent: they are shown as one PNG only). */
    private readonly converter: MaterialConverter | null = null,
  ) {
    super();
    this.instances = new InstanceStorage(materials);
  }

  private serialised<T>(siteId: string, work: () => Promise<T>): Promise<T> {
    const previous = this.#siteQueues.get(siteId) ?? Promise.resolve();
    const next = previous.then(work, work);
    const tail = next.catch(() => undefined);
    this.#siteQueues.set(siteId, tail);
    void tail.then(() => {
      if (this.#siteQueues.get(siteId) === tail) this.#siteQueues.delete(siteId);
    });
    return next;
  }

  /** Keyed hash of an identifier: matches equal values within a site, reveals nothing else. */
  async keyHash(siteId: string, kind: string, value: string): Promise<string> {
    const { key } = await this.dataKeys.forOwner(registryOwner(siteId));
    return createHmac('sha256', key).update(`${kind}\u0000${value}`).digest('base64url');
  }

  private async uidKey(siteId: string): Promise<Buffer> {
    const { key } = await this.dataKeys.forOwner(registryOwner(siteId));
    return createHmac('sha256', key).update('viewer-uid-pseudonyms').digest();
  }

  // ------------------------------------------------------------------ intake

  /**
   * Takes one Part 10 instance. Throws DicomIntakeError (refused: nothing written) or returns
   * where it went. A resent instance (same SOP Instance UID in the same series) is a duplicate.
   */
  async intake(siteId: string, source: IntakeSource, file: Buffer): Promise<IntakeResult> {
    let parsed: ParsedInstance;
    try {
      if (file.length > this.limits.maxInstanceBytes) throw new DicomIntakeError('TOO_LARGE', `Instances up to ${this.limits.maxInstanceBytes} bytes are accepted.`);
      parsed = parseInstance(file);
      // Compressed pixel data is decoded once on arrival: an instance the viewer could not show is refused now.
      if (DECODED_TRANSFER_SYNTAXES.includes(parsed.transferSyntaxUid)) {
        await renderFrame(await decodedForRendering(parsed, file), 0, null).catch((err: unknown) => {
          throw err instanceof DicomIntakeError ? err : new DicomIntakeError('MALFORMED', 'The compressed pixel data could not be decoded.');
        });
      }
    } catch (err) {
      if (err instanceof DicomIntakeError) await this.auditRefusal(siteId, source, err, file.length);
      throw err;
    }
    return this.serialised(siteId, async () => {
      try {
        return await this.store_(siteId, source, file, parsed);
      } catch (err) {
        if (err instanceof DicomIntakeError) await this.auditRefusal(siteId, source, err, file.length);
        throw err;
      }
    });
  }

  private async auditRefusal(siteId: string, source: IntakeSource, err: DicomIntakeError, bytes: number): Promise<void> {
    await this.audit.record({
      siteId,
      type: 'radiology.instance.store',
      action: 'C',
      outcome: 4,
      actor: sourceActor(source),
      objects: source.kind === 'upload' ? [{ type: 'case', id: source.caseId }] : [],
      details: { via: source.kind, refusal: err.refusal, bytes },
    });
  }

  private async store_(siteId: string, source: IntakeSource, file: Buffer, p: ParsedInstance): Promise<IntakeResult> {
    const now = this.clock().toISOString();
    const [studyKey, accessionKey, seriesKeyRaw, sopKey, patientKey] = await Promise.all([
      this.keyHash(siteId, 'study', p.studyInstanceUid),
      p.accessionNumber ? this.keyHash(siteId, 'accession', p.accessionNumber) : Promise.resolve(null),
      this.keyHash(siteId, 'series', p.seriesInstanceUid),
      this.keyHash(siteId, 'sop', p.sopInstanceUid),
      p.patient.id ? this.keyHash(siteId, 'patient', p.patient.id) : Promise.resolve(null),
    ]);

    // 1. The case: bound to this study already, else to its accession number (an HL7 order
    // that came first), else the upload's case, else a new one.
    let caseId = await this.liveCaseKey(siteId, 'study', studyKey);
    if (source.kind === 'upload' && caseId && caseId !== source.caseId) {
      throw new DicomIntakeError('PATIENT_MISMATCH', 'This study already belongs to another case.');
    }
    if (!caseId && accessionKey) caseId = await this.liveCaseKey(siteId, 'accession', accessionKey);
    if (source.kind === 'upload' && caseId && caseId !== source.caseId) {
      throw new DicomIntakeError('PATIENT_MISMATCH', 'This accession number already belongs to another case.');
    }
    if (!caseId && source.kind === 'upload') caseId = source.caseId;
    const caseRecord = caseId ? await this.store.cases.findById(siteId, caseId) : null;

    // 2. The patient: a case holds one patient. An instance for another patient is refused.
    if (caseRecord && patientKey) {
      const series = await this.store.radiology.listSeriesByCase(siteId, caseRecord.id);
      if (series.some((s) => s.patientKey && s.patientKey !== patientKey)) {
        throw new DicomIntakeError('PATIENT_MISMATCH', 'The case holds images of a different patient (Patient ID differs).');
      }
      if (caseRecord.patientSealed) {
        const existing = JSON.parse(await this.dataKeys.openString(caseRecord.patientSealed, patientContext(caseRecord.id))) as Patient;
        if (existing.medicalRecordNumber !== p.patient.id) throw new DicomIntakeError('PATIENT_MISMATCH', 'The case belongs to a different patient (Patient ID differs).');
      }
    }

    // 3. The series: an existing one must agree on the frame geometry of a stack.
    let series = caseRecord ? await this.store.radiology.findSeriesByKey(siteId, caseRecord.id, seriesKeyRaw) : null;
    if (series) {
      const duplicate = await this.store.radiology.findInstanceByKey(siteId, series.id, sopKey);
      if (duplicate) {
        await this.audit.record({
          siteId,
          type: 'radiology.instance.store',
          action: 'C',
          outcome: 0,
          actor: sourceActor(source),
          objects: [
            { type: 'case', id: series.caseId },
            { type: 'material', id: series.id },
          ],
          details: { via: source.kind, duplicate: true },
        });
        return { outcome: 'duplicate', caseId: series.caseId, materialId: series.id, instanceId: duplicate.id, ...uids(p) };
      }
    }

    // Everything checked: from here on, writes.
    const facts = await this.patientFacts(siteId, patientKey, p.patient);
    let targetCaseId: string;
    if (caseRecord) {
      targetCaseId = caseRecord.id;
      if (!caseRecord.patientSealed) {
        const patient = completePatient(facts);
        if (patient) await this.setCasePatient(siteId, targetCaseId, patient, now);
      }
    } else {
      targetCaseId = await this.createCase(siteId, p, facts, source, now);
      // Intake is serialised per node only: another node may have bound this study to its own
      // new case a moment ago. The first binding wins; this case goes and the instance follows.
      if (!(await this.store.radiology.putCaseKey({ siteId, kind: 'study', keyHash: studyKey, caseId: targetCaseId, createdAt: now }))) {
        await this.store.cases.delete(siteId, targetCaseId);
        await this.dataKeys.destroyOwner(caseKeyOwner(targetCaseId));
        await this.audit.record({ siteId, type: 'case.delete', action: 'D', actor: sourceActor(source), objects: [{ type: 'case', id: targetCaseId }], details: { reason: 'study bound to another case concurrently' } });
        return this.store_(siteId, source, file, p);
      }
    }
    if (!(await this.store.radiology.findCaseKey(siteId, 'study', studyKey))) {
      await this.store.radiology.putCaseKey({ siteId, kind: 'study', keyHash: studyKey, caseId: targetCaseId, createdAt: now });
    }
    if (accessionKey && !(await this.store.radiology.findCaseKey(siteId, 'accession', accessionKey))) {
      await this.store.radiology.putCaseKey({ siteId, kind: 'accession', keyHash: accessionKey, caseId: targetCaseId, createdAt: now });
    }
    series ??= await this.createSeries(siteId, targetCaseId, seriesKeyRaw, patientKey, p, source, now).catch(async (err) => {
      // Another node created this series a moment ago: use theirs.
      const theirs = err instanceof DuplicateKeyError ? await this.store.radiology.findSeriesByKey(siteId, targetCaseId, seriesKeyRaw) : null;
      if (!theirs) throw err;
      return theirs;
    });

    const instanceId = newId();
    const { key } = await this.dataKeys.forOwner(caseKeyOwner(targetCaseId));
    await this.instances.write(key, series.id, instanceId, file);
    const instance: InstanceRecord = {
      id: instanceId,
      siteId,
      caseId: targetCaseId,
      seriesId: series.id,
      sopKey,
      sopClassUid: p.sopClassUid,
      transferSyntaxUid: p.transferSyntaxUid,
      instanceNumber: p.instanceNumber,
      slicePosition: p.slicePosition,
      rows: p.rows,
      columns: p.columns,
      frames: p.frames,
      sizeBytes: file.length,
      sha256: createHash('sha256').update(file).digest('hex'),
      createdAt: now,
    };
    try {
      await this.store.radiology.createInstance(instance);
    } catch (err) {
      await this.instances.remove(series.id, instanceId);
      if (err instanceof DuplicateKeyError) return { outcome: 'duplicate', caseId: targetCaseId, materialId: series.id, instanceId, ...uids(p) };
      throw err;
    }
    await this.store.radiology.addToSeries(siteId, series.id, file.length, now);
    const deepZoomId = await this.deepZoom(siteId, targetCaseId, p, file, source, now);
    await this.audit.record({
      siteId,
      type: 'radiology.instance.store',
      action: 'C',
      actor: sourceActor(source),
      objects: [
        { type: 'case', id: targetCaseId },
        { type: 'material', id: series.id },
        { type: 'dicom-instance', id: instanceId },
      ],
      details: { via: source.kind, bytes: file.length, sopClass: p.sopClassUid, transferSyntax: p.transferSyntaxUid, sha256: instance.sha256, deepZoomMaterial: deepZoomId },
    });
    return { outcome: 'stored', caseId: targetCaseId, materialId: series.id, instanceId, ...uids(p) };
  }

  /**
   * A large single frame (or a single-frame whole-slide image) is also rendered once at full size
   * (header window) and handed to the slide converter as a PNG material, which builds the
   * encrypted DeepZoom pyramid like for an upload. Returns the new material id, or null.
   */
  private async deepZoom(siteId: string, caseId: string, p: ParsedInstance, file: Buffer, source: IntakeSource, now: string): Promise<string | null> {
    if (!this.converter) return null;
    const tiled = tiledLayout(p);
    const large = p.frames === 1 && (p.rows * p.columns >= this.limits.deepZoomMinPixels || p.sopClassUid === VL_WHOLE_SLIDE);
    if (!large && !(tiled && tiled.width * tiled.height >= this.limits.deepZoomMinPixels)) return null;
    const id = newId();
    const upload = this.materials.uploadPath(id);
    let mime: string;
    try {
      if (tiled) {
        if (!(await writeTiledSlide(p, upload))) return null;
        mime = 'image/tiff';
      } else {
        await fsp.writeFile(upload, (await renderFrame(await decodedForRendering(p, file), 0, null)).png, { mode: 0o600, flag: 'wx' });
        mime = 'image/png';
      }
    } catch {
      // The stack still holds the instance; only the pyramid is missing.
      await fsp.rm(upload, { force: true });
      return null;
    }
    const sizeBytes = (await fsp.stat(upload)).size;
    const hash = createHash('sha256');
    for await (const chunk of fs.createReadStream(upload)) hash.update(chunk as Buffer);
    // The upload file is plaintext only while it is converted (like an upload): the converter
    // encrypts it as the material's original and removes it.
    const material: MaterialRecord = {
      id,
      siteId,
      caseId,
      nameSealed: await this.dataKeys.sealString(caseKeyOwner(caseId), `${p.modality} image ${p.instanceNumber ?? ''} (deep zoom)`.replace(/\s+/g, ' '), materialNameContext(id)),
      mime,
      sizeBytes,
      sha256: hash.digest('hex'),
      status: 'queued',
      progress: 0,
      width: null,
      height: null,
      tileSize: 256,
      overlap: 0,
      tileFormat: 'jpeg',
      error: null,
      createdAt: now,
      updatedAt: now,
      createdBy: source.kind === 'dimse' ? null : source.userId,
    };
    await this.store.materials.create(material);
    this.converter.enqueue(material);
    return id;
  }

  /** The case a key points to, dropping the key when its case is gone (retention, deletion). */
  private async liveCaseKey(siteId: string, kind: CaseKeyKind, keyHash: string): Promise<string | null> {
    const caseId = await this.store.radiology.findCaseKey(siteId, kind, keyHash);
    if (!caseId) return null;
    if (await this.store.cases.findById(siteId, caseId)) return caseId;
    await this.store.radiology.deleteByCase(siteId, caseId);
    return null;
  }

  /** The header's patient fields, completed by what HL7 ADT registered for this patient ID. */
  private async patientFacts(siteId: string, patientKey: string | null, header: PatientFromHeader): Promise<PatientFacts> {
    const facts: PatientFacts = { name: header.name, id: header.id, birthDate: header.birthDate, sex: header.sex };
    if (!patientKey) return facts;
    const registered = await this.store.radiology.getPatient(siteId, patientKey);
    if (!registered) return facts;
    const known = JSON.parse(await this.dataKeys.openString(registered.patientSealed, registryContext(siteId, patientKey))) as PatientFacts;
    // ADT is the master patient index: its values win over what a modality typed in.
    return { name: known.name ?? facts.name, id: facts.id, birthDate: known.birthDate ?? facts.birthDate, sex: known.sex ?? facts.sex };
  }

  private async setCasePatient(siteId: string, caseId: string, patient: Patient, now: string): Promise<void> {
    const sealed = await this.dataKeys.sealString(caseKeyOwner(caseId), JSON.stringify(patient), patientContext(caseId));
    await this.store.cases.update(siteId, caseId, { patientSealed: sealed, updatedAt: now, updatedBy: null });
  }

  private async createCase(siteId: string, p: ParsedInstance, facts: PatientFacts, source: IntakeSource, now: string): Promise<string> {
    const id = newId();
    const patient = completePatient(facts);
    await this.store.cases.create({
      id,
      siteId,
      label: newCaseLabel(),
      // No header text in the title: study descriptions and dates identify patients.
      title: `${p.modality} study`,
      clinicalQuestion: '',
      status: 'open',
      patientSealed: patient ? await this.dataKeys.sealString(caseKeyOwner(id), JSON.stringify(patient), patientContext(id)) : null,
      createdAt: now,
      updatedAt: now,
      createdBy: source.kind === 'dimse' ? null : source.userId,
      updatedBy: null,
    });
    await this.audit.record({
      siteId,
      type: 'case.create',
      action: 'C',
      actor: sourceActor(source),
      objects: [{ type: 'case', id }],
      details: { via: source.kind, patientDetails: Boolean(patient) },
    });
    return id;
  }

  private async createSeries(siteId: string, caseId: string, seriesKey: string, patientKey: string | null, p: ParsedInstance, source: IntakeSource, now: string): Promise<SeriesRecord> {
    const id = newId();
    const name = `${p.modality} series ${p.seriesNumber ?? ''} (${SUPPORTED_SOP_CLASSES[p.sopClassUid]})`.replace(/\s+/g, ' ');
    const material: MaterialRecord = {
      id,
      siteId,
      caseId,
      nameSealed: await this.dataKeys.sealString(caseKeyOwner(caseId), name, materialNameContext(id)),
      mime: DICOM_STACK_MIME,
      // The originals are instances, downloadable one by one (see docs/radiology.md); the
      // material itself has no single original file and no DeepZoom pyramid.
      sizeBytes: 0,
      sha256: '',
      status: 'ready',
      progress: 100,
      width: null,
      height: null,
      tileSize: 256,
      overlap: 0,
      tileFormat: 'jpeg',
      error: null,
      createdAt: now,
      updatedAt: now,
      createdBy: source.kind === 'dimse' ? null : source.userId,
    };
    await this.store.materials.create(material);
    const series: SeriesRecord = {
      id,
      siteId,
      caseId,
      seriesKey,
      patientKey,
      modality: p.modality,
      sopClassUid: p.sopClassUid,
      seriesNumber: p.seriesNumber,
      rows: p.rows,
      columns: p.columns,
      windowCenter: p.windowCenter,
      windowWidth: p.windowWidth,
      instanceCount: 0,
      totalBytes: 0,
      createdAt: now,
      updatedAt: now,
    };
    try {
      await this.store.radiology.createSeries(series);
    } catch (err) {
      await this.store.materials.delete(siteId, id);
      throw err;
    }
    return series;
  }

  // ------------------------------------------------------------------ patients and documents (HL7)

  /** ADT: registers or updates a patient and refreshes the patient record of their cases. Returns the cases touched. */
  async upsertPatient(siteId: string, facts: PatientFacts & { id: string }, actor: AuditActor, details: Record<string, string>): Promise<{ created: boolean; cases: number }> {
    return this.serialised(siteId, async () => {
      const now = this.clock().toISOString();
      const patientKey = await this.keyHash(siteId, 'patient', facts.id);
      const existing = await this.store.radiology.getPatient(siteId, patientKey);
      let merged: PatientFacts = facts;
      if (existing) {
        const old = JSON.parse(await this.dataKeys.openString(existing.patientSealed, registryContext(siteId, patientKey))) as PatientFacts;
        merged = { name: facts.name ?? old.name, id: facts.id, birthDate: facts.birthDate ?? old.birthDate, sex: facts.sex ?? old.sex };
      }
      await this.store.radiology.putPatient({
        siteId,
        patientKey,
        patientSealed: await this.dataKeys.sealString(registryOwner(siteId), JSON.stringify(merged), registryContext(siteId, patientKey)),
        updatedAt: now,
      });
      const patient = completePatient(merged);
      const caseIds = new Set(await this.store.radiology.listCaseIdsByPatient(siteId, patientKey));
      if (patient) for (const caseId of caseIds) await this.setCasePatient(siteId, caseId, patient, now);
      await this.audit.record({
        siteId,
        type: 'radiology.patient.update',
        action: existing ? 'U' : 'C',
        actor,
        objects: [...caseIds].map((id) => ({ type: 'case', id })),
        details: { ...details, cases: caseIds.size },
      });
      return { created: !existing, cases: caseIds.size };
    });
  }

  /**
   * ORM/ORU: attaches an order or report to the case of `accession` (an order creates the case
   * when none exists yet; a report needs one). Returns null when no case matches a report.
   */
  async attachDocument(
    siteId: string,
    input: { kind: 'order' | 'report'; accession: string; messageControlId: string; text: string; status: string | null; title: string; patient: PatientFacts | null },
    actor: AuditActor,
  ): Promise<{ caseId: string; created: boolean; duplicate: boolean } | null> {
    return this.serialised(siteId, async () => {
      const now = this.clock().toISOString();
      const accessionKey = await this.keyHash(siteId, 'accession', input.accession);
      let caseId = await this.liveCaseKey(siteId, 'accession', accessionKey);
      let created = false;
      const patientKey = input.patient?.id ? await this.keyHash(siteId, 'patient', input.patient.id) : null;
      if (caseId && patientKey && input.patient?.id) {
        const record = await this.store.cases.findById(siteId, caseId);
        if (record?.patientSealed) {
          const existing = JSON.parse(await this.dataKeys.openString(record.patientSealed, patientContext(caseId))) as Patient;
          if (existing.medicalRecordNumber !== input.patient.id) throw new DicomIntakeError('PATIENT_MISMATCH', 'The case of this accession number belongs to a different patient.');
        }
      }
      if (!caseId) {
        if (input.kind === 'report') return null;
        const facts = input.patient && patientKey ? await this.patientFacts(siteId, patientKey, { name: input.patient.name, id: input.patient.id, birthDate: input.patient.birthDate, sex: input.patient.sex }) : null;
        const patient = facts ? completePatient(facts) : null;
        caseId = newId();
        await this.store.cases.create({
          id: caseId,
          siteId,
          label: newCaseLabel(),
          title: input.title,
          clinicalQuestion: '',
          status: 'open',
          patientSealed: patient ? await this.dataKeys.sealString(caseKeyOwner(caseId), JSON.stringify(patient), patientContext(caseId)) : null,
          createdAt: now,
          updatedAt: now,
          createdBy: null,
          updatedBy: null,
        });
        await this.store.radiology.putCaseKey({ siteId, kind: 'accession', keyHash: accessionKey, caseId, createdAt: now });
        await this.audit.record({ siteId, type: 'case.create', action: 'C', actor, objects: [{ type: 'case', id: caseId }], details: { via: 'hl7', patientDetails: Boolean(patient) } });
        created = true;
      }
      const id = newId();
      const added = await this.store.radiology.addDocument({
        id,
        siteId,
        caseId,
        kind: input.kind,
        messageKey: await this.keyHash(siteId, 'hl7-message', input.messageControlId),
        contentSealed: await this.dataKeys.sealString(caseKeyOwner(caseId), JSON.stringify({ text: input.text, status: input.status }), documentContext(id)),
        createdAt: now,
      });
      if (input.kind === 'report' && added) await this.store.cases.update(siteId, caseId, { status: 'reported', updatedAt: now, updatedBy: null });
      await this.audit.record({
        siteId,
        type: `radiology.${input.kind}.attach`,
        action: 'C',
        actor,
        objects: [
          { type: 'case', id: caseId },
          { type: 'radiology-document', id },
        ],
        details: { duplicate: !added },
      });
      if (added) this.emit('document', { caseId, kind: input.kind });
      return { caseId, created, duplicate: !added };
    });
  }

  async listDocuments(actor: Actor, ctx: RequestContext, caseId: string): Promise<PublicRadiologyDocument[]> {
    const record = await this.store.cases.findById(actor.siteId, caseId);
    if (!record) throw new NotFoundError();
    requireAuthorized(actor, 'case.read', { siteId: record.siteId });
    const docs = await this.store.radiology.listDocuments(actor.siteId, caseId);
    await this.audit.record({ siteId: actor.siteId, type: 'radiology.documents.read', action: 'R', actor: { userId: actor.userId, role: actor.role, ip: ctx.ip, userAgent: ctx.userAgent }, objects: [{ type: 'case', id: caseId }], details: { count: docs.length } });
    return Promise.all(
      docs.map(async (d) => {
        const content = JSON.parse(await this.dataKeys.openString(d.contentSealed, documentContext(d.id))) as { text: string; status: string | null };
        return { id: d.id, kind: d.kind, text: content.text, status: content.status, createdAt: d.createdAt };
      }),
    );
  }

  // ------------------------------------------------------------------ viewing

  /** The case must exist in the actor's site (a case of another site is reported as absent). */
  async requireCase(actor: Actor, caseId: string): Promise<void> {
    const record = await this.store.cases.findById(actor.siteId, caseId);
    if (!record) throw new NotFoundError();
    requireAuthorized(actor, 'case.read', { siteId: record.siteId });
  }

  private async mustSeries(actor: Actor, caseId: string, materialId: string, action: 'material.view' | 'material.download' = 'material.view'): Promise<SeriesRecord> {
    const material = await this.store.materials.findById(actor.siteId, caseId, materialId);
    const series = material ? await this.store.radiology.findSeries(actor.siteId, caseId, materialId) : null;
    if (!material || !series) throw new NotFoundError();
    requireAuthorized(actor, action, { siteId: material.siteId });
    return series;
  }

  /** Slices in display order: along the slice normal, then instance number, then arrival. */
  private async orderedInstances(siteId: string, seriesId: string): Promise<InstanceRecord[]> {
    const list = await this.store.radiology.listInstances(siteId, seriesId);
    const cmp = (a: number | null, b: number | null) => (a === null && b === null ? 0 : a === null ? 1 : b === null ? -1 : a - b);
    return list.sort((a, b) => cmp(a.slicePosition, b.slicePosition) || cmp(a.instanceNumber, b.instanceNumber) || a.createdAt.localeCompare(b.createdAt));
  }

  async stack(actor: Actor, ctx: RequestContext, caseId: string, materialId: string): Promise<PublicStack> {
    const series = await this.mustSeries(actor, caseId, materialId);
    const instances = await this.orderedInstances(actor.siteId, series.id);
    await this.audit.record({
      siteId: actor.siteId,
      type: 'material.view',
      action: 'R',
      actor: { userId: actor.userId, role: actor.role, ip: ctx.ip, userAgent: ctx.userAgent },
      objects: [
        { type: 'case', id: caseId },
        { type: 'material', id: materialId },
      ],
      details: { stack: true, slices: instances.length },
    });
    return {
      materialId,
      caseId,
      modality: series.modality,
      sopClass: SUPPORTED_SOP_CLASSES[series.sopClassUid] ?? series.sopClassUid,
      seriesNumber: series.seriesNumber,
      rows: series.rows,
      columns: series.columns,
      window: series.windowCenter !== null && series.windowWidth !== null ? { center: series.windowCenter, width: series.windowWidth } : null,
      slices: instances.map((i, index) => ({ index, instanceNumber: i.instanceNumber, slicePosition: i.slicePosition, frames: i.frames })),
      sliceUrl: `/api/cases/${caseId}/materials/${materialId}/slices/{index}.png`,
    };
  }

  private async loadInstance(actor: Actor, caseId: string, materialId: string, index: number, action: 'material.view' | 'material.download' = 'material.view'): Promise<{ instance: InstanceRecord; file: Buffer }> {
    const series = await this.mustSeries(actor, caseId, materialId, action);
    const instance = (await this.orderedInstances(actor.siteId, series.id))[index];
    if (!instance) throw new NotFoundError();
    const { key } = await this.dataKeys.forOwner(caseKeyOwner(caseId));
    return { instance, file: await this.instances.read(key, series.id, instance.id) };
  }

  /** One slice as an 8-bit PNG (tile-like: authorised, rate-limited by the route, not audited per image). */
  async renderSlice(actor: Actor, caseId: string, materialId: string, index: number, frame: number, window: WindowLevel | null): Promise<Buffer> {
    const { instance, file } = await this.loadInstance(actor, caseId, materialId, index);
    if (frame >= instance.frames) throw new NotFoundError();
    try {
      return (await renderFrame(await decodedForRendering(parseInstance(file), file), frame, window)).png;
    } catch (err) {
      if (err instanceof DicomIntakeError) throw new AppError('UNSUPPORTED_FILE_TYPE', `This slice cannot be displayed: ${err.reason}`);
      throw err;
    }
  }

  /** The slice's header; de-identified (PS3.15 basic profile) unless the viewer has View Patient Info. */
  async header(actor: Actor, ctx: RequestContext, caseId: string, materialId: string, index: number): Promise<Record<string, unknown>> {
    const { instance, file } = await this.loadInstance(actor, caseId, materialId, index);
    const deidentify = !actor.permissions.viewPatientInfo;
    await this.audit.record({
      siteId: actor.siteId,
      type: 'radiology.header.read',
      action: 'R',
      actor: { userId: actor.userId, role: actor.role, ip: ctx.ip, userAgent: ctx.userAgent },
      objects: [
        { type: 'case', id: caseId },
        { type: 'material', id: materialId },
        { type: 'dicom-instance', id: instance.id },
      ],
      details: { deidentified: deidentify },
    });
    return viewerHeader(parseInstance(file).dataset, { deidentify, uidKey: await this.uidKey(actor.siteId) });
  }

  /** The original instance as received (Can Download; audited before any byte leaves). */
  async downloadInstance(actor: Actor, ctx: RequestContext, caseId: string, materialId: string, index: number): Promise<Buffer> {
    const { instance, file } = await this.loadInstance(actor, caseId, materialId, index, 'material.download');
    await this.audit.record({
      siteId: actor.siteId,
      type: 'material.download',
      action: 'R',
      actor: { userId: actor.userId, role: actor.role, ip: ctx.ip, userAgent: ctx.userAgent },
      objects: [
        { type: 'case', id: caseId },
        { type: 'material', id: materialId },
        { type: 'dicom-instance', id: instance.id },
      ],
      details: { bytes: file.length, sha256: instance.sha256 },
    });
    return file;
  }
}

function uids(p: ParsedInstance) {
  return { sopClassUid: p.sopClassUid, sopInstanceUid: p.sopInstanceUid, studyInstanceUid: p.studyInstanceUid, seriesInstanceUid: p.seriesInstanceUid };
}
