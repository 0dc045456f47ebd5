// HTTP routes of radiology: stack descriptor, rendered slices (no-store, rate-limited like
// tiles), de-identified headers, original instances (Can Download, audited), HL7 documents of a
// case, browser DICOM upload (single file or zip of a study) and STOW-RS.
import { createHash, timingSafeEqual } from 'node:crypto';
import { Router, type Request, type RequestHandler, type Response } from 'express';
import type { RateLimiterAbstract } from 'rate-limiter-flexible';
import yauzl from 'yauzl';
import { z } from 'zod';
import { AppError } from '../errors';
import type { Csrf } from '../http/csrf';
import { consume } from '../http/rateLimit';
import { route } from '../http/route';
import { requestContext, type AuthOptions } from '../http/session';
import { parseInput } from '../http/validate';
import { requireAuthorized } from '../identity/authorize';
import { caseIdParams } from '../protocol/cases';
import { sliceParams, sliceQuerySchema, stackParams } from '../protocol/radiology';
import type { Logger } from '../observability/logger';
import { DicomIntakeError } from './dicom';
import { MultipartError, parseMultipart, relatedBoundary } from './multipart';
import type { IntakeResult, IntakeSource, RadiologyService } from './service';

export interface RadiologyRouteDeps {
  radiology: RadiologyService;
  auth: (options?: AuthOptions) => RequestHandler;
  csrf: Csrf;
  logger: Logger;
  /** sha256 hex of a STOW-RS intake token -> site id. */
  intakeTokens: Map<string, string>;
  limiters: { upload: RateLimiterAbstract; tiles: RateLimiterAbstract; stow: RateLimiterAbstract };
  /** Largest request body of an upload or STOW-RS request (a whole study). */
  maxRequestBytes: number;
  maxZipEntries: number;
}

export function intakeErrorToApp(err: DicomIntakeError): AppError {
  switch (err.refusal) {
    case 'TOO_LARGE':
      return new AppError('PAYLOAD_TOO_LARGE', err.reason);
    case 'UNSUPPORTED_SOP_CLASS':
    case 'UNSUPPORTED_TRANSFER_SYNTAX':
      return new AppError('UNSUPPORTED_DICOM', err.reason);
    case 'PATIENT_MISMATCH':
      return new AppError('PATIENT_MISMATCH', err.reason);
    default:
      return new AppError('INVALID_DICOM', err.reason);
  }
}

/** PS3.18 Table 10.5.3-1 / PS3.4 failure reasons for a STOW-RS FailedSOPSequence item. */
function stowFailureReason(err: DicomIntakeError): number {
  switch (err.refusal) {
    case 'TOO_LARGE':
      return 0xa700;
    case 'UNSUPPORTED_SOP_CLASS':
      return 0x0122;
    case 'UNSUPPORTED_TRANSFER_SYNTAX':
      return 0xc122;
    case 'PATIENT_MISMATCH':
      return 0x0110;
    default:
      return 0xc000;
  }
}

/** Reads the whole body up to `limit` bytes; a longer one is refused before it is all read. */
function readBody(req: Request, limit: number): Promise<Buffer> {
  const declared = req.headers['content-length'] !== undefined ? Number(req.headers['content-length']) : null;
  if (declared !== null && (!Number.isSafeInteger(declared) || declared > limit)) return Promise.reject(new AppError('PAYLOAD_TOO_LARGE', `Requests up to ${limit} bytes are accepted.`));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        req.removeAllListeners('data');
        req.resume();
        reject(new AppError('PAYLOAD_TOO_LARGE', `Requests up to ${limit} bytes are accepted.`));
        return;
      }
      chunks.push(chunk);
    });
    req.once('end', () => resolve(Buffer.concat(chunks)));
    req.once('error', () => reject(new AppError('VALIDATION_FAILED', 'The upload did not complete.')));
  });
}

/** The DICOM files of a zip (directories and DICOMDIR skipped), bounded in count and size. */
function unzip(buffer: Buffer, maxEntries: number, maxEntryBytes: number, maxTotalBytes: number): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    yauzl.fromBuffer(buffer, { lazyEntries: true, validateEntrySizes: true }, (err, zip) => {
      if (err || !zip) return reject(new AppError('VALIDATION_FAILED', 'The zip file could not be read.'));
      const files: Buffer[] = [];
      let total = 0;
      const fail = (e: AppError) => {
        zip.close();
        reject(e);
      };
      zip.on('error', () => fail(new AppError('VALIDATION_FAILED', 'The zip file is damaged.')));
      zip.on('end', () => resolve(files));
      zip.on('entry', (entry: yauzl.Entry) => {
        if (entry.fileName.endsWith('/') || /(^|\/)DICOMDIR$/i.test(entry.fileName)) return zip.readEntry();
        if (files.length >= maxEntries) return fail(new AppError('PAYLOAD_TOO_LARGE', `A zip may hold up to ${maxEntries} files.`));
        // Declared sizes are checked first and actual sizes while inflating (zip bombs).
        if (entry.uncompressedSize > maxEntryBytes || total + entry.uncompressedSize > maxTotalBytes) return fail(new AppError('PAYLOAD_TOO_LARGE', 'The zip expands beyond the size limit.'));
        zip.openReadStream(entry, (e, stream) => {
          if (e || !stream) return fail(new AppError('VALIDATION_FAILED', 'The zip file is damaged.'));
          const chunks: Buffer[] = [];
          let size = 0;
          stream.on('data', (c: Buffer) => {
            size += c.length;
            total += c.length;
            if (size > maxEntryBytes || total > maxTotalBytes) {
              stream.destroy();
              fail(new AppError('PAYLOAD_TOO_LARGE', 'The zip expands beyond the size limit.'));
              return;
            }
            chunks.push(c);
          });
          stream.on('error', () => fail(new AppError('VALIDATION_FAILED', 'The zip file is damaged.')));
          stream.on('end', () => {
            files.push(Buffer.concat(chunks));
            zip.readEntry();
          });
        });
      });
      zip.readEntry();
    });
  });
}

export interface UploadSummary {
  stored: number;
  duplicates: number;
  /** Refused files by position in the upload (names are not echoed: they often carry patient names). */
  refused: { index: number; code: string; reason: string }[];
  materialIds: string[];
}

async function intakeAll(radiology: RadiologyService, siteId: string, source: IntakeSource, files: Buffer[]): Promise<{ summary: UploadSummary; results: (IntakeResult | DicomIntakeError)[] }> {
  const summary: UploadSummary = { stored: 0, duplicates: 0, refused: [], materialIds: [] };
  const results: (IntakeResult | DicomIntakeError)[] = [];
  for (const [index, file] of files.entries()) {
    try {
      const r = await radiology.intake(siteId, source, file);
      results.push(r);
      if (r.outcome === 'stored') summary.stored++;
      else summary.duplicates++;
      if (!summary.materialIds.includes(r.materialId)) summary.materialIds.push(r.materialId);
    } catch (err) {
      if (!(err instanceof DicomIntakeError)) throw err;
      results.push(err);
      summary.refused.push({ index, code: intakeErrorToApp(err).code, reason: err.reason });
    }
  }
  return { summary, results };
}

/** Mounted before the JSON body parser: the browser upload reads a raw body. */
export function radiologyUploadRoutes(deps: RadiologyRouteDeps): Router {
  const router = Router();
  router.post('/cases/:caseId/dicom', deps.auth(), (req, res, next) => {
    (async () => {
      const actor = req.actor!;
      await consume(deps.limiters.upload, actor.userId, res);
      const params = parseInput(caseIdParams, { ...req.params });
      parseInput(sliceQueryEmpty, { ...(req.query as object) });
      requireAuthorized(actor, 'material.upload', { siteId: actor.siteId });
      const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
      if (type !== 'application/dicom' && type !== 'application/zip') throw new AppError('UNSUPPORTED_DICOM', 'Send one DICOM file (application/dicom) or a zip of a study (application/zip).');
      // The case must exist and be the actor's (reported as absent otherwise) before any byte is read.
      await deps.radiology.requireCase(actor, params.caseId);
      const body = await readBody(req, deps.maxRequestBytes);
      const files = type === 'application/zip' ? await unzip(body, deps.maxZipEntries, deps.radiology.limits.maxInstanceBytes, deps.maxRequestBytes * 4) : [body];
      if (files.length === 0) throw new AppError('VALIDATION_FAILED', 'The zip holds no files.');
      const ctx = requestContext(req);
      const source: IntakeSource = { kind: 'upload', ip: ctx.ip, userId: actor.userId, role: actor.role, userAgent: ctx.userAgent, caseId: params.caseId };
      const { summary, results } = await intakeAll(deps.radiology, actor.siteId, source, files);
      if (files.length === 1 && results[0] instanceof DicomIntakeError) throw intakeErrorToApp(results[0]);
      res.status(summary.stored + summary.duplicates > 0 ? 201 : 422).json(summary);
    })().catch((err) => {
      res.setHeader('Connection', 'close');
      req.resume();
      next(err);
    });
  });
  return router;
}

const sliceQueryEmpty = z.strictObject({});

export function radiologyRoutes(deps: RadiologyRouteDeps): Router {
  const { radiology, auth, limiters } = deps;
  const router = Router();

  router.get(
    '/cases/:caseId/materials/:materialId/stack',
    auth(),
    route({ params: stackParams }, async ({ req, params }) => ({ stack: await radiology.stack(req.actor!, requestContext(req), params.caseId, params.materialId) })),
  );
  router.get('/cases/:caseId/materials/:materialId/slices/:index.png', auth(), (req, res, next) => {
    (async () => {
      await consume(limiters.tiles, req.actor!.userId, res);
      const params = parseInput(sliceParams, { ...req.params });
      const query = parseInput(sliceQuerySchema, { ...(req.query as object) });
      const window = query.wc !== undefined && query.ww !== undefined ? { center: query.wc, width: query.ww } : null;
      const png = await radiology.renderSlice(req.actor!, params.caseId, params.materialId, params.index, query.frame, window);
      res.setHeader('Content-Type', 'image/png');
      res.setHeader('Content-Length', String(png.length));
      res.end(png);
    })().catch(next);
  });
  router.get(
    '/cases/:caseId/materials/:materialId/slices/:index/header',
    auth(),
    route({ params: sliceParams }, async ({ req, params }) => ({ header: await radiology.header(req.actor!, requestContext(req), params.caseId, params.materialId, params.index) })),
  );
  router.get('/cases/:caseId/materials/:materialId/slices/:index/original', auth(), (req, res, next) => {
    (async () => {
      const params = parseInput(sliceParams, { ...req.params });
      parseInput(sliceQueryEmpty, { ...(req.query as object) });
      const file = await radiology.downloadInstance(req.actor!, requestContext(req), params.caseId, params.materialId, params.index);
      res.setHeader('Content-Type', 'application/dicom');
      res.setHeader('Content-Length', String(file.length));
      res.setHeader('Content-Disposition', `attachment; filename="slice-${params.index + 1}.dcm"`);
      res.end(file);
    })().catch(next);
  });
  router.get(
    '/cases/:caseId/radiology/documents',
    auth(),
    route({ params: caseIdParams }, async ({ req, params }) => ({ documents: await radiology.listDocuments(req.actor!, requestContext(req), params.caseId) })),
  );
  return router;
}

function tokenSite(deps: RadiologyRouteDeps, header: string): string | null {
  const match = /^Bearer\s+([A-Za-z0-9._~+/=-]{16,512})$/.exec(header);
  if (!match) return null;
  const hash = createHash('sha256').update(match[1]!).digest('hex');
  for (const [known, siteId] of deps.intakeTokens) {
    if (timingSafeEqual(Buffer.from(known), Buffer.from(hash))) return siteId;
  }
  return null;
}

/**
 * STOW-RS (PS3.18 10.5): POST /dicomweb/studies, multipart/related; type="application/dicom".
 * Authenticated by a per-site intake token (Authorization: Bearer) for PACS and gateways, or by
 * the browser session plus CSRF token and Can Upload for people.
 */
export function stowRoutes(deps: RadiologyRouteDeps): Router {
  const router = Router();
  const handle = async (req: Request, res: Response, siteId: string, source: IntakeSource) => {
    const related = relatedBoundary(req.headers['content-type']);
    if (!related || (related.type !== null && related.type.toLowerCase() !== 'application/dicom')) {
      throw new AppError('UNSUPPORTED_DICOM', 'Send multipart/related; type="application/dicom".');
    }
    const body = await readBody(req, deps.maxRequestBytes);
    let parts;
    try {
      parts = parseMultipart(body, related.boundary, deps.maxZipEntries);
    } catch (err) {
      if (err instanceof MultipartError) throw new AppError('VALIDATION_FAILED', `The multipart body is not valid: ${err.message}.`);
      throw err;
    }
    if (parts.length === 0) throw new AppError('VALIDATION_FAILED', 'The request holds no instances.');
    const files = parts.map((p) => p.body);
    const { results } = await intakeAll(deps.radiology, siteId, source, files);
    const referenced: Record<string, unknown>[] = [];
    const failed: Record<string, unknown>[] = [];
    for (const r of results) {
      if (r instanceof DicomIntakeError) {
        failed.push({ '00081197': { vr: 'US', Value: [stowFailureReason(r)] } });
      } else {
        referenced.push({ '00081150': { vr: 'UI', Value: [r.sopClassUid] }, '00081155': { vr: 'UI', Value: [r.sopInstanceUid] } });
      }
    }
    const response: Record<string, unknown> = {};
    if (referenced.length) response['00081199'] = { vr: 'SQ', Value: referenced };
    if (failed.length) response['00081198'] = { vr: 'SQ', Value: failed };
    // PS3.18 10.5.3: 200 all stored, 202 some failed, 409 none stored.
    const status = failed.length === 0 ? 200 : referenced.length > 0 ? 202 : 409;
    res.status(status).type('application/dicom+json').send(JSON.stringify(response));
  };

  router.post('/studies', (req, res, next) => {
    const authorization = req.headers.authorization;
    if (authorization !== undefined) {
      (async () => {
        const ip = req.ip ?? null;
        await consume(deps.limiters.stow, `token:${ip}`, res);
        const siteId = tokenSite(deps, authorization);
        if (!siteId) throw new AppError('UNAUTHENTICATED', 'The intake token is not valid.');
        await handle(req, res, siteId, { kind: 'stow', ip, userId: null, role: null, userAgent: (req.get('user-agent') ?? '').slice(0, 256) || null });
      })().catch((err) => {
        res.setHeader('Connection', 'close');
        req.resume();
        next(err);
      });
      return;
    }
    deps.csrf.protect(req, res, (csrfErr?: unknown) => {
      if (csrfErr) return next(csrfErr);
      deps.auth()(req, res, (authErr?: unknown) => {
        if (authErr) return next(authErr);
        (async () => {
          const actor = req.actor!;
          await consume(deps.limiters.stow, actor.userId, res);
          requireAuthorized(actor, 'material.upload', { siteId: actor.siteId });
          const ctx = requestContext(req);
          await handle(req, res, actor.siteId, { kind: 'stow', ip: ctx.ip, userId: actor.userId, role: actor.role, userAgent: ctx.userAgent });
        })().catch((err) => {
          res.setHeader('Connection', 'close');
          req.resume();
          next(err);
        });
      });
    });
  });
  return router;
}
