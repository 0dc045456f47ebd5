// Transfer Study (seed 003): a user with Transfer Study sends a case with its materials to
// another site that has agreed to receive from this site; the receiving site sees it in its
// inbox and accepts (it gets its own copy, re-encrypted under its own case key) or refuses.
// Both sides' audit chains record every step.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { AuditService } from '../audit/service';
import type { DataKeys } from '../crypto/dataKeys';
import { decryptStream, encryptStream } from '../crypto/fileCrypto';
import { AppError, NotFoundError } from '../errors';
import { requireAuthorized, type Actor } from '../identity/authorize';
import type { RequestContext } from '../identity/service';
import { newId } from '../ids';
import type { Logger } from '../observability/logger';
import type { PublicTransfer } from '../protocol/cases';
import type { Store } from '../store/types';
import type { CaseRecord, MaterialRecord, TransferRecord } from './model';
import { caseKeyOwner, newCaseLabel } from './service';
import { MaterialStorage } from './storage';

const patientContext = (caseId: string) => `patient:${caseId}`;
const materialNameContext = (materialId: string) => `material-name:${materialId}`;

export class TransferService {
  readonly #copies = new Set<Promise<void>>();

  constructor(
    private readonly store: Store,
    private readonly audit: AuditService,
    private readonly dataKeys: DataKeys,
    private readonly storage: MaterialStorage,
    private readonly logger: Logger,
    private readonly clock: () => Date = () => new Date(),
  ) {}

  private auditActor(actor: Actor, ctx: RequestContext) {
    return { userId: actor.userId, role: actor.role, ip: ctx.ip, userAgent: ctx.userAgent };
  }

  private async siteName(id: string): Promise<string> {
    return (await this.store.sites.findById(id))?.name ?? 'unknown site';
  }

  private async toPublic(t: TransferRecord): Promise<PublicTransfer> {
    return {
      id: t.id,
      fromSite: { id: t.fromSiteId, name: await this.siteName(t.fromSiteId) },
      toSite: { id: t.toSiteId, name: await this.siteName(t.toSiteId) },
      caseId: t.caseId,
      title: t.title,
      note: t.note,
      status: t.status,
      receivedCaseId: t.receivedCaseId,
      createdAt: t.createdAt,
      decidedAt: t.decidedAt,
    };
  }

  /** Partners of the actor's site: where it may send, and (for admins) whom it accepts from. */
  async partners(actor: Actor) {
    const receivers = await this.store.transfers.listReceivers(actor.siteId);
    const sendTo = await Promise.all(receivers.map(async (a) => ({ siteId: a.receiverSiteId, name: await this.siteName(a.receiverSiteId) })));
    if (actor.role !== 'site_admin') return { sendTo };
    const senders = await this.store.transfers.listSenders(actor.siteId);
    const acceptFrom = await Promise.all(senders.map(async (a) => ({ siteId: a.senderSiteId, name: await this.siteName(a.senderSiteId) })));
    // The directory of sites, so an admin can pick a partner (names and ids only).
    const directory = (await this.store.sites.list()).filter((s) => s.id !== actor.siteId).map((s) => ({ siteId: s.id, name: s.name }));
    return { sendTo, acceptFrom, directory };
  }

  async agree(actor: Actor, ctx: RequestContext, senderSiteId: string): Promise<void> {
    requireAuthorized(actor, 'site.manageTransfers', { siteId: actor.siteId });
    if (senderSiteId === actor.siteId || !(await this.store.sites.findById(senderSiteId))) throw new NotFoundError();
    await this.store.transfers.putAgreement({ receiverSiteId: actor.siteId, senderSiteId, createdAt: this.clock().toISOString(), createdBy: actor.userId });
    await this.audit.record({ siteId: actor.siteId, type: 'transfer.agreement.create', action: 'C', actor: this.auditActor(actor, ctx), objects: [{ type: 'site', id: senderSiteId }] });
  }

  async revoke(actor: Actor, ctx: RequestContext, senderSiteId: string): Promise<void> {
    requireAuthorized(actor, 'site.manageTransfers', { siteId: actor.siteId });
    if (!(await this.store.transfers.deleteAgreement(actor.siteId, senderSiteId))) throw new NotFoundError();
    await this.audit.record({ siteId: actor.siteId, type: 'transfer.agreement.delete', action: 'D', actor: this.auditActor(actor, ctx), objects: [{ type: 'site', id: senderSiteId }] });
  }

  async send(actor: Actor, ctx: RequestContext, caseId: string, input: { toSiteId: string; note: string }): Promise<PublicTransfer> {
    const record = await this.store.cases.findById(actor.siteId, caseId);
    if (!record) throw new NotFoundError();
    requireAuthorized(actor, 'case.transfer', { siteId: record.siteId });
    if (!(await this.store.transfers.hasAgreement(input.toSiteId, actor.siteId))) {
      throw new AppError('FORBIDDEN', 'That site has not agreed to receive studies from this site.');
    }
    const transfer: TransferRecord = {
      id: newId(),
      fromSiteId: actor.siteId,
      toSiteId: input.toSiteId,
      caseId,
      title: record.title,
      note: input.note,
      status: 'pending',
      receivedCaseId: null,
      createdAt: this.clock().toISOString(),
      createdBy: actor.userId,
      decidedAt: null,
      decidedBy: null,
    };
    await this.store.transfers.create(transfer);
    const objects = [
      { type: 'transfer', id: transfer.id },
      { type: 'case', id: caseId },
    ];
    await this.audit.record({ siteId: actor.siteId, type: 'case.transfer.send', action: 'E', actor: this.auditActor(actor, ctx), objects, details: { toSiteId: input.toSiteId } });
    await this.audit.record({ siteId: input.toSiteId, type: 'case.transfer.receive', action: 'C', actor: this.auditActor(actor, ctx), objects: [{ type: 'transfer', id: transfer.id }], details: { fromSiteId: actor.siteId } });
    return this.toPublic(transfer);
  }

  async inbox(actor: Actor): Promise<PublicTransfer[]> {
    requireAuthorized(actor, 'transfer.list', { siteId: actor.siteId });
    return Promise.all((await this.store.transfers.listInbox(actor.siteId)).map((t) => this.toPublic(t)));
  }

  async outbox(actor: Actor): Promise<PublicTransfer[]> {
    requireAuthorized(actor, 'transfer.list', { siteId: actor.siteId });
    return Promise.all((await this.store.transfers.listOutbox(actor.siteId)).map((t) => this.toPublic(t)));
  }

  async refuse(actor: Actor, ctx: RequestContext, transferId: string, reason: string): Promise<PublicTransfer> {
    const pending = await this.pendingForReceiver(actor, transferId);
    const decided = await this.store.transfers.decide(actor.siteId, transferId, { status: 'refused', receivedCaseId: null, decidedAt: this.clock().toISOString(), decidedBy: actor.userId });
    if (!decided) throw new AppError('CONFLICT', 'This transfer has already been decided.');
    const objects = [{ type: 'transfer', id: transferId }];
    await this.audit.record({ siteId: actor.siteId, type: 'case.transfer.refuse', action: 'E', actor: this.auditActor(actor, ctx), objects, details: { reasonGiven: reason.length > 0 } });
    await this.audit.record({ siteId: pending.fromSiteId, type: 'case.transfer.refused', action: 'E', actor: this.auditActor(actor, ctx), objects: [...objects, { type: 'case', id: pending.caseId }] });
    return this.toPublic(decided);
  }

  /**
   * Accepts: the receiving site gets a new case (new id and label, patient details re-sealed
   * under its own case key) and a copy of every ready material, re-encrypted in the background
   * (the copies show as "converting" with progress until done).
   */
  async accept(actor: Actor, ctx: RequestContext, transferId: string): Promise<PublicTransfer> {
    const pending = await this.pendingForReceiver(actor, transferId);
    const source = await this.store.cases.findById(pending.fromSiteId, pending.caseId);
    if (!source) throw new AppError('CONFLICT', 'The case no longer exists at the sending site.');
    const newCaseId = newId();
    // Decide first (compare-and-swap): two people accepting at once cannot make two copies.
    const decided = await this.store.transfers.decide(actor.siteId, transferId, { status: 'accepted', receivedCaseId: newCaseId, decidedAt: this.clock().toISOString(), decidedBy: actor.userId });
    if (!decided) throw new AppError('CONFLICT', 'This transfer has already been decided.');
    const copy = await this.copyCase(source, actor, newCaseId);
    await this.audit.record({
      siteId: actor.siteId,
      type: 'case.transfer.accept',
      action: 'C',
      actor: this.auditActor(actor, ctx),
      objects: [
        { type: 'transfer', id: transferId },
        { type: 'case', id: newCaseId },
      ],
      details: { fromSiteId: pending.fromSiteId, materials: copy.materials },
    });
    await this.audit.record({
      siteId: pending.fromSiteId,
      type: 'case.transfer.accepted',
      action: 'E',
      actor: this.auditActor(actor, ctx),
      objects: [
        { type: 'transfer', id: transferId },
        { type: 'case', id: pending.caseId },
      ],
      details: { toSiteId: actor.siteId },
    });
    return this.toPublic(decided);
  }

  private async pendingForReceiver(actor: Actor, transferId: string): Promise<TransferRecord> {
    const t = await this.store.transfers.findForSite(actor.siteId, transferId);
    if (!t || t.toSiteId !== actor.siteId) throw new NotFoundError();
    requireAuthorized(actor, 'transfer.decide', { siteId: t.toSiteId });
    if (t.status !== 'pending') throw new AppError('CONFLICT', 'This transfer has already been decided.');
    return t;
  }

  private async copyCase(source: CaseRecord, actor: Actor, newCaseId: string): Promise<{ materials: number }> {
    const now = this.clock().toISOString();
    const patient = source.patientSealed ? await this.dataKeys.openString(source.patientSealed, patientContext(source.id)) : null;
    await this.store.cases.create({
      id: newCaseId,
      siteId: actor.siteId,
      label: newCaseLabel(),
      title: source.title,
      clinicalQuestion: source.clinicalQuestion,
      status: 'open',
      patientSealed: patient ? await this.dataKeys.sealString(caseKeyOwner(newCaseId), patient, patientContext(newCaseId)) : null,
      createdAt: now,
      updatedAt: now,
      createdBy: actor.userId,
      updatedBy: actor.userId,
    });
    const materials = (await this.store.materials.listByCase(source.siteId, source.id)).filter((m) => m.status === 'ready');
    for (const m of materials) {
      const copyId = newId();
      const name = await this.dataKeys.openString(m.nameSealed, materialNameContext(m.id));
      const copy: MaterialRecord = {
        ...m,
        id: copyId,
        siteId: actor.siteId,
        caseId: newCaseId,
        nameSealed: await this.dataKeys.sealString(caseKeyOwner(newCaseId), name, materialNameContext(copyId)),
        status: 'converting',
        progress: 0,
        createdAt: now,
        updatedAt: now,
        createdBy: actor.userId,
      };
      await this.store.materials.create(copy);
      const job = this.copyFiles(m, copy).finally(() => this.#copies.delete(job));
      this.#copies.add(job);
    }
    return { materials: materials.length };
  }

  /** Re-encrypts a material's tiles and original from the sender's case key to the receiver's. */
  private async copyFiles(from: MaterialRecord, to: MaterialRecord): Promise<void> {
    try {
      const fromKey = await this.dataKeys.forOwner(caseKeyOwner(from.caseId));
      const toKey = await this.dataKeys.forOwner(caseKeyOwner(to.caseId));
      const tilesDir = path.join(this.storage.materialDir(from.id), 'tiles');
      const levels = (await fsp.readdir(tilesDir)).filter((l) => /^\d+$/.test(l));
      const all: [number, string][] = [];
      for (const level of levels) for (const tile of await fsp.readdir(path.join(tilesDir, level))) all.push([Number(level), tile]);
      let done = 0;
      let reported = 0;
      for (const [level, tile] of all) {
        const plain = await this.storage.readTile(fromKey.key, from.id, level, tile);
        if (plain) await this.storage.writeTile(toKey.key, to.id, level, tile, plain);
        done++;
        const pct = Math.floor((95 * done) / all.length);
        if (pct >= reported + 5) {
          reported = pct;
          await this.store.materials.update(to.siteId, to.id, { progress: pct, updatedAt: new Date().toISOString() });
        }
      }
      if (from.sizeBytes > 0) {
        const tmp = `${this.storage.originalPath(to.id)}.tmp`;
        await pipeline(
          fs.createReadStream(this.storage.originalPath(from.id)),
          decryptStream(fromKey.key, MaterialStorage.originalContext(from.id)),
          encryptStream(toKey.key, MaterialStorage.originalContext(to.id)),
          fs.createWriteStream(tmp, { mode: 0o600 }),
        );
        await fsp.rename(tmp, this.storage.originalPath(to.id));
      }
      await this.store.materials.update(to.siteId, to.id, { status: 'ready', progress: 100, updatedAt: new Date().toISOString() });
    } catch (err) {
      this.logger.warn({ materialId: to.id, err: { message: (err as Error).message } }, 'transfer copy failed');
      await this.storage.remove(to.id).catch(() => undefined);
      await this.store.materials.update(to.siteId, to.id, { status: 'failed', error: 'The transferred file could not be copied.', updatedAt: new Date().toISOString() }).catch(() => undefined);
    }
  }

  /** Resolves when background copies are done (tests). */
  async idle(): Promise<void> {
    while (this.#copies.size) await Promise.all([...this.#copies]);
  }
}
