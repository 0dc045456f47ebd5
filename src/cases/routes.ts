// HTTP routes of cases and materials. The upload route takes a raw body (streamed to disk);
// every other route is JSON. Tiles and descriptors are served only here, with no-store.
import { Router, type RequestHandler } from 'express';
import type { RateLimiterAbstract } from 'rate-limiter-flexible';
import { z } from 'zod';
import { AppError } from '../errors';
import { consume } from '../http/rateLimit';
import { route } from '../http/route';
import { requestContext, type AuthOptions } from '../http/session';
import { parseInput } from '../http/validate';
import {
  caseIdParams,
  createCaseSchema,
  listCasesQuerySchema,
  materialParams,
  tileParams,
  updateCaseSchema,
  uploadQuerySchema,
  refuseTransferSchema,
  sendTransferSchema,
  siteIdParams,
  transferIdParams,
} from '../protocol/cases';
import type { CaseService } from './service';
import type { TransferService } from './transfers';

export interface CaseRouteDeps {
  cases: CaseService;
  transfers: TransferService;
  auth: (options?: AuthOptions) => RequestHandler;
  limiters: { upload: RateLimiterAbstract; write: RateLimiterAbstract; tiles: RateLimiterAbstract };
}

/** Mounted before the JSON body parser: streams the request body to disk. */
export function uploadRoutes(deps: CaseRouteDeps): Router {
  const router = Router();
  router.post('/cases/:caseId/materials', deps.auth(), (req, res, next) => {
    (async () => {
      await consume(deps.limiters.upload, req.actor!.userId, res);
      const params = parseInput(caseIdParams, { ...req.params });
      const query = parseInput(uploadQuerySchema, { ...(req.query as object) });
      const declared = req.headers['content-length'] !== undefined ? Number(req.headers['content-length']) : null;
      if (declared !== null && !Number.isSafeInteger(declared)) throw new AppError('VALIDATION_FAILED', 'Content-Length is not valid.');
      const material = await deps.cases.upload(req.actor!, requestContext(req), params.caseId, query.name, req, declared);
      res.status(202).json({ material });
    })().catch((err) => {
      // Stop reading a refused upload; the connection closes after the error answer.
      res.setHeader('Connection', 'close');
      req.unpipe();
      req.resume();
      next(err);
    });
  });
  return router;
}

export function caseRoutes(deps: CaseRouteDeps): Router {
  const { cases, auth, limiters } = deps;
  const router = Router();
  const write = (req: Parameters<RequestHandler>[0], res: Parameters<RequestHandler>[1]) => consume(limiters.write, req.actor!.userId, res);

  router.get(
    '/cases',
    auth(),
    route({ query: listCasesQuerySchema }, async ({ req, query }) => cases.list(req.actor!, requestContext(req), query)),
  );
  router.post(
    '/cases',
    auth(),
    route(
      { body: createCaseSchema },
      async ({ req, res, body }) => {
        await write(req, res);
        return { case: await cases.create(req.actor!, requestContext(req), body) };
      },
      201,
    ),
  );
  router.get(
    '/cases/:caseId',
    auth(),
    route({ params: caseIdParams }, async ({ req, params }) => cases.get(req.actor!, requestContext(req), params.caseId)),
  );
  router.patch(
    '/cases/:caseId',
    auth(),
    route({ params: caseIdParams, body: updateCaseSchema }, async ({ req, res, params, body }) => {
      await write(req, res);
      return { case: await cases.update(req.actor!, requestContext(req), params.caseId, body) };
    }),
  );
  router.delete(
    '/cases/:caseId',
    auth(),
    route({ params: caseIdParams }, async ({ req, res, params }) => {
      await write(req, res);
      await cases.delete(req.actor!, requestContext(req), params.caseId);
      return undefined;
    }),
  );

  router.get(
    '/cases/:caseId/materials/:materialId',
    auth(),
    route({ params: materialParams }, async ({ req, params }) => ({
      material: await cases.materialToPublic(await cases.getMaterial(req.actor!, params.caseId, params.materialId)),
    })),
  );
  router.delete(
    '/cases/:caseId/materials/:materialId',
    auth(),
    route({ params: materialParams }, async ({ req, res, params }) => {
      await write(req, res);
      await cases.deleteMaterial(req.actor!, requestContext(req), params.caseId, params.materialId);
      return undefined;
    }),
  );
  router.get('/cases/:caseId/materials/:materialId/slide.dzi', auth(), (req, res, next) => {
    (async () => {
      const params = parseInput(materialParams, { ...req.params });
      parseInput(z.strictObject({}), { ...(req.query as object) });
      const xml = await cases.openViewer(req.actor!, requestContext(req), params.caseId, params.materialId);
      res.type('application/xml').send(xml);
    })().catch(next);
  });
  router.get('/cases/:caseId/materials/:materialId/slide_files/:level/:tile', auth(), (req, res, next) => {
    (async () => {
      await consume(limiters.tiles, req.actor!.userId, res);
      const params = parseInput(tileParams, { ...req.params });
      const tile = await cases.readTile(req.actor!, params.caseId, params.materialId, params.level, params.tile);
      // No ETag: a cache validator would let a revoked user learn that a tile is unchanged.
      res.setHeader('Content-Type', 'image/jpeg');
      res.setHeader('Content-Length', String(tile.length));
      res.end(tile);
    })().catch(next);
  });
  router.get('/cases/:caseId/materials/:materialId/original', auth(), (req, res, next) => {
    (async () => {
      const params = parseInput(materialParams, { ...req.params });
      await cases.download(req.actor!, requestContext(req), params.caseId, params.materialId, ({ name, mime, size }) => {
        res.setHeader('Content-Type', mime);
        res.setHeader('Content-Length', String(size));
        res.setHeader('Content-Disposition', `attachment; filename*=UTF-8''${encodeURIComponent(name)}`);
        return res;
      });
    })().catch((err) => {
      if (res.headersSent) {
        // Integrity failure mid-stream: cut the connection so the client sees an incomplete file.
        res.destroy();
        return;
      }
      next(err);
    });
  });
  return router;
}

export function transferRoutes(deps: CaseRouteDeps): Router {
  const { transfers, auth, limiters } = deps;
  const router = Router();
  const write = (req: Parameters<RequestHandler>[0], res: Parameters<RequestHandler>[1]) => consume(limiters.write, req.actor!.userId, res);

  router.get('/transfer-partners', auth(), route({}, async ({ req }) => transfers.partners(req.actor!)));
  router.put(
    '/admin/transfer-partners/:siteId',
    auth(),
    route({ params: siteIdParams }, async ({ req, res, params }) => {
      await write(req, res);
      await transfers.agree(req.actor!, requestContext(req), params.siteId);
      return undefined;
    }),
  );
  router.delete(
    '/admin/transfer-partners/:siteId',
    auth(),
    route({ params: siteIdParams }, async ({ req, res, params }) => {
      await write(req, res);
      await transfers.revoke(req.actor!, requestContext(req), params.siteId);
      return undefined;
    }),
  );
  router.post(
    '/cases/:caseId/transfers',
    auth(),
    route(
      { params: caseIdParams, body: sendTransferSchema },
      async ({ req, res, params, body }) => {
        await write(req, res);
        return { transfer: await transfers.send(req.actor!, requestContext(req), params.caseId, body) };
      },
      201,
    ),
  );
  router.get('/transfers/inbox', auth(), route({}, async ({ req }) => ({ transfers: await transfers.inbox(req.actor!) })));
  router.get('/transfers/outbox', auth(), route({}, async ({ req }) => ({ transfers: await transfers.outbox(req.actor!) })));
  router.post(
    '/transfers/:transferId/accept',
    auth(),
    route({ params: transferIdParams }, async ({ req, res, params }) => {
      await write(req, res);
      return { transfer: await transfers.accept(req.actor!, requestContext(req), params.transferId) };
    }),
  );
  router.post(
    '/transfers/:transferId/refuse',
    auth(),
    route({ params: transferIdParams, body: refuseTransferSchema }, async ({ req, res, params, body }) => {
      await write(req, res);
      return { transfer: await transfers.refuse(req.actor!, requestContext(req), params.transferId, body.reason) };
    }),
  );
  return router;
}
