// HTTP routes of the site admin's governance pages: audit search, export and verification,
// usage statistics. Strict schemas (src/protocol/governance.ts), site admin of the session's
// site only (the services call requireAuthorized), rate-limited per user, audited.
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Router, type Request, type RequestHandler, type Response } from 'express';
import type { RateLimiterAbstract } from 'rate-limiter-flexible';
import type { AuditAdmin } from '../audit/admin';
import type { UsageService } from '../governance/usage';
import { consume } from '../http/rateLimit';
import { route } from '../http/route';
import { requestContext, type AuthOptions } from '../http/session';
import type { Logger } from '../observability/logger';
import { auditExportQuerySchema, auditSearchQuerySchema, usageQuerySchema } from '../protocol/governance';

export interface AdminRouteDeps {
  auditAdmin: AuditAdmin;
  usage: UsageService;
  auth: (options?: AuthOptions) => RequestHandler;
  logger: Logger;
  limiters: {
    /** Searches, usage, verification status: per user. */
    read: RateLimiterAbstract;
    /** Exports and chain walks, which read a whole trail: per user, few. */
    heavy: RateLimiterAbstract;
  };
}

export function adminRoutes(deps: AdminRouteDeps): Router {
  const { auditAdmin, usage, auth, limiters, logger } = deps;
  const router = Router();
  const limit = (limiter: RateLimiterAbstract) => (req: Request, res: Response) => consume(limiter, req.actor!.userId, res);
  const read = limit(limiters.read);
  const heavy = limit(limiters.heavy);

  router.get(
    '/admin/audit',
    auth(),
    route({ query: auditSearchQuerySchema }, async ({ req, res, query }) => {
      await read(req, res);
      return auditAdmin.search(req.actor!, requestContext(req), query);
    }),
  );

  router.get(
    '/admin/audit/export',
    auth(),
    route({ query: auditExportQuerySchema }, async ({ req, res, query }) => {
      await heavy(req, res);
      const exported = await auditAdmin.export(req.actor!, requestContext(req), query);
      res.status(200);
      res.setHeader('Content-Type', exported.contentType);
      res.setHeader('Content-Disposition', `attachment; filename="${exported.fileName}"`);
      res.setHeader('X-Content-Type-Options', 'nosniff');
      try {
        // pipeline honours back-pressure: the next page is read only once the client took this one.
        await pipeline(Readable.from(exported.chunks), res);
      } catch (err) {
        // Headers are gone: cut the connection so the client sees a failed download, not a
        // complete-looking truncated file.
        logger.error({ err: { message: (err as Error).message }, siteId: req.actor!.siteId }, 'audit export failed');
        res.destroy();
      }
      return undefined;
    }),
  );

  router.post(
    '/admin/audit/verify',
    auth(),
    route({}, async ({ req, res }) => {
      await heavy(req, res);
      return auditAdmin.verify(req.actor!, requestContext(req));
    }),
  );

  router.get(
    '/admin/audit/verify',
    auth(),
    route({}, async ({ req, res }) => {
      await read(req, res);
      return auditAdmin.lastVerification(req.actor!, requestContext(req));
    }),
  );

  router.get(
    '/admin/usage',
    auth(),
    route({ query: usageQuerySchema }, async ({ req, res, query }) => {
      await read(req, res);
      return usage.forAdmin(req.actor!, requestContext(req), query);
    }),
  );

  return router;
}
