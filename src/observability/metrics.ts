// Prometheus metrics (prom-client) in a registry owned by one node, served on METRICS_PORT
// (a separate port, meant for the monitoring network only). Labels never carry ids or names.
import http from 'node:http';
import type { RequestHandler } from 'express';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

export class Metrics {
  readonly registry = new Registry();
  readonly httpDuration = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'HTTP request duration by method, route pattern and status class',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
    registers: [this.registry],
  });
  readonly socketEventDuration = new Histogram({
    name: 'socket_event_duration_seconds',
    help: 'Socket event handling time by event and outcome (ok or error code)',
    labelNames: ['event', 'outcome'] as const,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [this.registry],
  });
  readonly auditRecords = new Counter({
    name: 'audit_records_total',
    help: 'Audit records appended by this node, by event type and outcome',
    labelNames: ['type', 'outcome'] as const,
    registers: [this.registry],
  });
  /** Set by the composition root: records in every audit chain of the store (all nodes' writes). */
  auditChainLength: () => Promise<number> = async () => 0;
  readonly auditChainRecords: Gauge = new Gauge({
    name: 'audit_chain_records',
    help: 'Records in the audit hash chains of the store, all sites and nodes together (it only grows: audit is never purged)',
    registers: [this.registry],
    collect: async (): Promise<void> => {
      this.auditChainRecords.set(await this.auditChainLength().catch(() => NaN));
    },
  });
  readonly loginFailures = new Counter({ name: 'login_failures_total', help: 'Failed logins', registers: [this.registry] });
  readonly lockouts = new Counter({ name: 'account_lockouts_total', help: 'Accounts locked after repeated failures', registers: [this.registry] });
  /** Set by the realtime layer: how many rooms this node holds right now. */
  roomCount: () => number = () => 0;
  readonly rooms: Gauge = new Gauge({
    name: 'case_rooms_open',
    help: 'Case rooms open on this node',
    registers: [this.registry],
    collect: (): void => this.rooms.set(this.roomCount()),
  });
  /** Set by the media layer: live mediasoup objects on this node. */
  mediaCounts: () => Record<'workers' | 'routers' | 'peers' | 'transports' | 'producers' | 'consumers', number> = () => ({ workers: 0, routers: 0, peers: 0, transports: 0, producers: 0, consumers: 0 });
  mediaWorkerDeaths: () => number = () => 0;
  readonly mediaObjects: Gauge<'kind'> = new Gauge({
    name: 'media_objects',
    help: 'Live mediasoup objects on this node by kind (workers, routers, peers, transports, producers, consumers)',
    labelNames: ['kind'] as const,
    registers: [this.registry],
    collect: (): void => {
      for (const [kind, count] of Object.entries(this.mediaCounts())) this.mediaObjects.set({ kind }, count);
    },
  });
  readonly mediaWorkerDeathsTotal: Gauge = new Gauge({
    name: 'media_worker_deaths_total',
    help: 'mediasoup workers that died on this node since it started (each is replaced)',
    registers: [this.registry],
    collect: (): void => this.mediaWorkerDeathsTotal.set(this.mediaWorkerDeaths()),
  });
  readonly sockets = new Gauge({ name: 'sockets_connected', help: 'Authenticated sockets connected to this node', registers: [this.registry] });

  constructor() {
    // Includes nodejs_eventloop_lag_seconds and the heap and GC figures.
    collectDefaultMetrics({ register: this.registry });
  }

  /** Times every HTTP request; the route label is the matched pattern, never the raw path. */
  httpMiddleware(): RequestHandler {
    return (req, res, next) => {
      const end = this.httpDuration.startTimer();
      res.once('finish', () => {
        const pattern = (req.route as { path?: string } | undefined)?.path;
        const route = pattern ? `${req.baseUrl}${pattern}` : req.baseUrl || (res.statusCode === 404 ? 'unmatched' : 'other');
        end({ method: req.method, route, status: `${Math.floor(res.statusCode / 100)}xx` });
      });
      next();
    };
  }

  /**
   * The metrics endpoint on its own port: GET /metrics, plus whatever `extra` answers (the
   * token-protected operator endpoints, src/admin/operator.ts); it returns true when it did.
   */
  listen(port: number, host: string, extra?: (req: http.IncomingMessage, res: http.ServerResponse) => boolean): Promise<http.Server> {
    const server = http.createServer((req, res) => {
      if (extra?.(req, res)) return;
      if (req.method !== 'GET' || req.url !== '/metrics') {
        res.writeHead(404).end();
        return;
      }
      this.registry.metrics().then(
        (text) => res.writeHead(200, { 'Content-Type': this.registry.contentType }).end(text),
        () => res.writeHead(500).end(),
      );
    });
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => resolve(server));
    });
  }
}
