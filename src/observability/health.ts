// Liveness and readiness: /healthz answers while the process runs; /readyz only while the store
// answers and the server is not draining (so a load balancer stops sending new work first).
import { Router } from 'express';
import type { Store } from '../store/types';

/** A named readiness check (Redis, media workers...) registered by the part that owns it. */
export type ReadinessCheck = { name: string; check: () => Promise<boolean> };

export function healthRoutes(store: Store, isDraining: () => boolean, checks: ReadinessCheck[] = []): Router {
  const router = Router();
  router.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  router.get('/readyz', (_req, res) => {
    const fail = () => res.status(503).json({ error: { code: 'NOT_READY', message: 'The server is not ready.' } });
    if (isDraining()) return fail();
    Promise.all([store.ping(), ...checks.map((c) => c.check().catch(() => false))]).then(([storeOk, ...others]) => {
      const failed = checks.filter((_c, i) => !others[i]).map((c) => c.name);
      if (!storeOk || failed.length > 0) return fail();
      res.json({ status: 'ready', store: store.kind, checks: checks.map((c) => c.name) });
    }, fail);
  });
  return router;
}
