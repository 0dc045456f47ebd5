// The DICOM DIMSE listener (dcmjs-dimse Scp on our own net/tls server, so we choose the
// interface, refuse unlisted addresses before any PDU is read, and bound the size of what a peer
// may send). An association is accepted only when the called AE title is one of ours and the
// calling AE title and address are on that AE's allowlist. C-ECHO answers; C-STORE goes through
// the same intake as every other path. Every association and instance is audited.
import net from 'node:net';
import tls from 'node:tls';
import type { Writable as WritableType } from 'node:stream';
import { Writable } from 'node:stream';
import dimse from 'dcmjs-dimse';
import type { RateLimiterAbstract } from 'rate-limiter-flexible';
import { RateLimiterRes } from 'rate-limiter-flexible';
import type { AuditService } from '../audit/service';
import type { Logger } from '../observability/logger';
import { DicomIntakeError, SUPPORTED_SOP_CLASSES, SUPPORTED_TRANSFER_SYNTAXES, TS } from './dicom';
import type { DicomPeer } from './peers';
import type { RadiologyService } from './service';
import dcmjs from 'dcmjs';

const { Scp, Dataset, constants, responses, log: dimseLog } = dimse;
const { PresentationContextResult, RejectResult, RejectSource, RejectReason, SopClass, Status } = constants;

// The library logs to the console (and, at debug level, whole datasets): silence it; we log ourselves.
dimseLog.setLevel('silent');

const VERIFICATION_SYNTAXES = [TS.explicitLittle, TS.implicitLittle];
/** PS3.7 C.4.2.1.4 / Annex C status codes we answer with. */
const STATUS = {
  success: Status.Success,
  outOfResources: 0xa700,
  cannotUnderstand: 0xc000,
  sopClassNotSupported: Status.SopClassNotSupported,
  processingFailure: Status.ProcessingFailure,
} as const;

export interface DimseOptions {
  port: number;
  host: string;
  aeTitles: Map<string, string>;
  peers: DicomPeer[];
  tls: { key: string; cert: string; ca?: string } | null;
  maxInstanceBytes: number;
  /** Instances per calling peer (AE@address) per minute. */
  limiter: RateLimiterAbstract;
  /** Associations per address per minute (also refused ones). */
  connectionLimiter: RateLimiterAbstract;
}

interface RawStore {
  chunks: Buffer[];
  bytes: number;
  tooLarge: boolean;
}

export class DicomListener {
  #server: net.Server;
  #sockets = new Set<net.Socket>();
  #closed = false;
  port = 0;

  private constructor(server: net.Server) {
    this.#server = server;
  }

  static async start(options: DimseOptions, radiology: RadiologyService, audit: AuditService, logger: Logger): Promise<DicomListener> {
    const log = logger.child({ module: 'dicom' });
    const systemActor = (ip: string | null, callingAe: string, calledAe: string) => ({ userId: null, role: 'dicom-peer', ip, userAgent: `AE ${callingAe} -> ${calledAe}` });

    class CaseCollabScp extends Scp {
      siteId: string | null = null;
      callingAe = '';
      calledAe = '';
      readonly ip: string | null;
      readonly raw = new WeakMap<object, RawStore>();

      constructor(socket: net.Socket | tls.TLSSocket, opts: Record<string, unknown>) {
        super(socket, opts);
        this.ip = socket.remoteAddress ?? null;
      }

      override associationRequested(association: dimse.association.Association): void {
        this.callingAe = association.getCallingAeTitle().trim();
        this.calledAe = association.getCalledAeTitle().trim();
        const siteId = options.aeTitles.get(this.calledAe) ?? null;
        const refuse = (reason: number, why: string) => {
          log.warn({ callingAe: this.callingAe, calledAe: this.calledAe, ip: this.ip, why }, 'DICOM association refused');
          void audit
            .record({ siteId, type: 'radiology.dicom.association', action: 'E', outcome: 4, actor: systemActor(this.ip, this.callingAe, this.calledAe), details: { refused: why } })
            .catch((err) => log.error({ err }, 'audit failed'));
          this.sendAssociationReject(RejectResult.Permanent, RejectSource.ServiceUser, reason);
        };
        if (!siteId) return refuse(RejectReason.CalledAeNotRecognized, 'called AE title not ours');
        const allowed = options.peers.some((p) => p.calledAe === this.calledAe && p.callingAe === this.callingAe && p.address.matches(this.ip));
        if (!allowed) return refuse(RejectReason.CallingAeNotRecognized, 'calling AE title or address not on the allowlist');
        this.siteId = siteId;
        association.setMaxPduLength(65536);
        for (const c of association.getPresentationContexts()) {
          const context = association.getPresentationContext(c.id);
          const abstract = context.getAbstractSyntaxUid();
          const offered = context.getTransferSyntaxUids();
          const acceptable = abstract === SopClass.Verification ? VERIFICATION_SYNTAXES : SUPPORTED_SOP_CLASSES[abstract] ? SUPPORTED_TRANSFER_SYNTAXES : null;
          if (!acceptable) {
            context.setResult(PresentationContextResult.RejectAbstractSyntaxNotSupported);
            continue;
          }
          // The peer lists its syntaxes in preference order (it may hold the data compressed only).
          const chosen = offered.find((ts) => acceptable.includes(ts));
          if (chosen) context.setResult(PresentationContextResult.Accept, chosen);
          else context.setResult(PresentationContextResult.RejectTransferSyntaxesNotSupported);
        }
        void audit
          .record({ siteId, type: 'radiology.dicom.association', action: 'E', outcome: 0, actor: systemActor(this.ip, this.callingAe, this.calledAe), details: { tls: options.tls !== null } })
          .catch((err) => log.error({ err }, 'audit failed'));
        this.sendAssociationAccept();
      }

      /** A-ABORT from the peer: the association is over; the library requires an override. */
      override abort(): void {
        log.info({ callingAe: this.callingAe, ip: this.ip }, 'DICOM association aborted by the peer');
        (this as unknown as { socket: net.Socket }).socket.destroy();
      }

      override associationReleaseRequested(): void {
        this.sendAssociationReleaseResponse();
      }

      override cEchoRequest(request: dimse.requests.CEchoRequest, callback: (response: dimse.responses.CEchoResponse) => void): void {
        const response = responses.CEchoResponse.fromRequest(request);
        response.setStatus(Status.Success);
        callback(response);
      }

      /** Accumulates the dataset bytes with a ceiling; past it the rest is discarded and the store refused. */
      override createStoreWritableStream(_context: unknown, request: dimse.requests.CStoreRequest): WritableType {
        const store: RawStore = { chunks: [], bytes: 0, tooLarge: false };
        this.raw.set(request, store);
        return new Writable({
          write(chunk: Buffer, _enc, cb) {
            store.bytes += chunk.length;
            if (store.bytes > options.maxInstanceBytes) {
              store.tooLarge = true;
              store.chunks = [];
            } else store.chunks.push(chunk);
            cb();
          },
        });
      }

      override createDatasetFromStoreWritableStream(_writable: unknown, context: dimse.association.PresentationContext, callback: (dataset: dimse.Dataset) => void): void {
        // The dataset is kept as received (cStoreRequest wraps it in a Part 10 file); the
        // library's own parse is not needed.
        const ds = new Dataset({}, context.getAcceptedTransferSyntaxUid());
        callback(ds);
      }

      override cStoreRequest(request: dimse.requests.CStoreRequest, callback: (response: dimse.responses.CStoreResponse) => void): void {
        const response = responses.CStoreResponse.fromRequest(request);
        const answer = (status: number, comment?: string) => {
          response.setStatus(status);
          if (comment) response.setErrorComment(comment.slice(0, 64));
          callback(response);
        };
        const store = this.raw.get(request);
        this.raw.delete(request);
        const siteId = this.siteId;
        if (!siteId || !store) return answer(STATUS.processingFailure, 'association not accepted');
        const source = { kind: 'dimse' as const, callingAe: this.callingAe, calledAe: this.calledAe, ip: this.ip };
        (async () => {
          try {
            await options.limiter.consume(`${this.callingAe}@${this.ip ?? ''}`);
          } catch (err) {
            if (err instanceof RateLimiterRes) return answer(STATUS.outOfResources, 'rate limit: retry later');
            throw err;
          }
          if (store.tooLarge) {
            await audit.record({ siteId, type: 'radiology.instance.store', action: 'C', outcome: 4, actor: systemActor(this.ip, this.callingAe, this.calledAe), details: { via: 'dimse', refusal: 'TOO_LARGE', bytes: store.bytes } });
            return answer(STATUS.outOfResources, 'instance too large');
          }
          const transferSyntax = request.getDataset()?.getTransferSyntaxUid() ?? TS.implicitLittle;
          const file = part10(request.getAffectedSopClassUid(), request.getAffectedSopInstanceUid(), transferSyntax, Buffer.concat(store.chunks));
          try {
            const result = await radiology.intake(siteId, source, file);
            log.info({ caseId: result.caseId, materialId: result.materialId, outcome: result.outcome, callingAe: this.callingAe }, 'DICOM instance received');
            answer(STATUS.success);
          } catch (err) {
            if (!(err instanceof DicomIntakeError)) throw err;
            log.warn({ refusal: err.refusal, callingAe: this.callingAe }, 'DICOM instance refused');
            const status =
              err.refusal === 'UNSUPPORTED_SOP_CLASS' ? STATUS.sopClassNotSupported : err.refusal === 'TOO_LARGE' ? STATUS.outOfResources : err.refusal === 'PATIENT_MISMATCH' ? STATUS.processingFailure : STATUS.cannotUnderstand;
            answer(status, err.reason);
          }
        })().catch((err) => {
          log.error({ err: { name: (err as Error).name, message: (err as Error).message } }, 'DICOM store failed');
          answer(STATUS.processingFailure, 'processing failure');
        });
      }
    }

    const onConnection = (socket: net.Socket) => {
      if (listener.#closed) return socket.destroy();
      const ip = socket.remoteAddress ?? null;
      // Addresses that appear on no allowlist entry never get to speak DICOM.
      if (!options.peers.some((p) => p.address.matches(ip))) {
        log.warn({ ip }, 'DICOM connection from an address on no allowlist');
        void audit.record({ siteId: null, type: 'radiology.dicom.association', action: 'E', outcome: 4, actor: { userId: null, role: 'dicom-peer', ip, userAgent: null }, details: { refused: 'address not on any allowlist' } }).catch(() => undefined);
        return socket.destroy();
      }
      options.connectionLimiter.consume(ip ?? 'unknown').then(
        () => {
          listener.#sockets.add(socket);
          socket.once('close', () => listener.#sockets.delete(socket));
          socket.on('error', () => undefined);
          const scp = new CaseCollabScp(socket, { associationTimeout: 30_000, pduTimeout: 60_000 }) as unknown as { connected: boolean; on(e: string, f: (err: Error) => void): void };
          scp.connected = true;
          scp.on('networkError', (err) => {
            log.warn({ ip, err: { message: err.message } }, 'DICOM network error');
            socket.destroy();
          });
        },
        () => {
          log.warn({ ip }, 'DICOM connection rate limit');
          socket.destroy();
        },
      );
    };
    const server = options.tls
      ? tls.createServer({ key: options.tls.key, cert: options.tls.cert, ca: options.tls.ca, requestCert: Boolean(options.tls.ca), rejectUnauthorized: Boolean(options.tls.ca), minVersion: 'TLSv1.2' }, onConnection)
      : net.createServer(onConnection);
    const listener = new DicomListener(server);
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port, options.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    listener.port = (server.address() as net.AddressInfo).port;
    log.info({ port: listener.port, aeTitles: [...options.aeTitles.keys()], tls: options.tls !== null }, 'DICOM listener ready');
    return listener;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const socket of this.#sockets) socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}

/** Wraps a dataset as received over the network in a Part 10 file (meta header + the same bytes). */
function part10(sopClassUid: string, sopInstanceUid: string, transferSyntaxUid: string, dataset: Buffer): Buffer {
  const { DicomDict, DicomMetaDictionary } = dcmjs.data;
  const meta = {
    FileMetaInformationVersion: new Uint8Array([0, 1]).buffer,
    MediaStorageSOPClassUID: sopClassUid,
    MediaStorageSOPInstanceUID: sopInstanceUid,
    TransferSyntaxUID: transferSyntaxUid,
    ImplementationClassUID: '1.2.826.0.1.3680043.10.1541.1',
    ImplementationVersionName: 'CASECOLLAB1',
  };
  const dict = new DicomDict(DicomMetaDictionary.denaturalizeDataset(meta));
  dict.dict = {};
  return Buffer.concat([Buffer.from(dict.write()), dataset]);
}
