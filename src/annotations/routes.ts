// HTTP routes of annotations: GeoJSON export and import of a material's annotations. Live
// editing goes through the case room's socket events; these serve files for QuPath and the like.
import express, { Router, type Request, type RequestHandler } from 'express';
import type { RateLimiterAbstract } from 'rate-limiter-flexible';
import { z } from 'zod';
import { consume } from '../http/rateLimit';
import { route } from '../http/route';
import { requestContext, type AuthOptions } from '../http/session';
import { parseInput } from '../http/validate';
import { IMPORT_BODY_LIMIT } from '../protocol/annotations';
import { materialParams } from '../protocol/cases';
import type { AnnotationService } from './service';

export interface AnnotationRouteDeps {
  annotations: AnnotationService;
  auth: (options?: AuthOptions) => RequestHandler;
  limiters: { write: RateLimiterAbstract };
}

// Express matches routes case-insensitively and with an optional trailing slash; so does this.
const IMPORT_PATH = /^\/cases\/[^/]+\/materials\/[^/]+\/annotations\/import\/?$/i;

/**
 * Whether a request (path relative to /api) is a GeoJSON import. The API's 64 KiB JSON parser
 * skips it: the import route parses its own body, up to 10 MB, and only after authentication.
 */
export function isAnnotationImport(req: Request): boolean {
  return req.method === 'POST' && IMPORT_PATH.test(req.path);
}

export function annotationRoutes(deps: AnnotationRouteDeps): Router {
  const { annotations, auth, limiters } = deps;
  const router = Router();

  router.get('/cases/:caseId/materials/:materialId/annotations.geojson', auth(), (req, res, next) => {
    (async () => {
      const params = parseInput(materialParams, { ...req.params });
      parseInput(z.strictObject({}), { ...(req.query as object) });
      const collection = await annotations.exportGeoJson(req.actor!, requestContext(req), params.caseId, params.materialId);
      res.type('application/geo+json').send(JSON.stringify(collection));
    })().catch(next);
  });

  router.post(
    '/cases/:caseId/materials/:materialId/annotations/import',
    auth(),
    // Counted before the body is read, so a flood of large files is refused cheaply.
    (req, res, next) => {
      consume(limiters.write, req.actor!.userId, res).then(() => next(), next);
    },
    express.json({ limit: IMPORT_BODY_LIMIT, strict: true }),
    route(
      // The file's schema is applied by the service, which names the features at fault.
      { params: materialParams, body: z.unknown() },
      async ({ req, params, body }) => annotations.importGeoJson(req.actor!, requestContext(req), params.caseId, params.materialId, body),
      201,
    ),
  );
  return router;
}
