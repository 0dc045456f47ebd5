// Liveness and readiness: /healthz answers while the process runs; /readyz only while the store
// answers and the server is not draining (so a load balancer stops sending new work first).
import { Router } from 'express';
import type { Store } from '../store/types';

export function healthRoutes(store: Store, isDraining: () => boolean): Router {
  const router = Router();
  router.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  router.get('/readyz', (_req, res) => {
    const fail = () => res.status(503).json({ error: { code: 'NOT_READY', message: 'The server is not ready.' } });
    if (isDraining()) return fail();
    store.ping().then((ok) => (ok ? res.json({ status: 'ready', store: store.kind }) : fail()), fail);
  });
  return router;
}
