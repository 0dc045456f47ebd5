// Composition root: createApp(deps, config) wires the domains to their repositories and the
// HTTP plumbing. Nothing here reaches for a global; tests build as many apps as they like.
import cookieParser from 'cookie-parser';
import express, { type RequestHandler } from 'express';
import helmet from 'helmet';
import { pinoHttp } from 'pino-http';
import type { Config } from './config';
import { annotationRoutes, isAnnotationImport } from './annotations/routes';
import { AnnotationService } from './annotations/service';
import { AuditAdmin } from './audit/admin';
import { AuditService } from './audit/service';
import { adminRoutes } from './admin/routes';
import { MaterialConverter } from './cases/converter';
import { caseRoutes, transferRoutes, uploadRoutes } from './cases/routes';
import { TransferService } from './cases/transfers';
import { CaseService } from './cases/service';
import { ChatService } from './chat/service';
import { MaterialStorage } from './cases/storage';
import { DataKeys } from './crypto/dataKeys';
import { RetentionService } from './governance/retention';
import { UsageService } from './governance/usage';
import type { KeyRing } from './crypto/keyring';
import { AppError } from './errors';
import { createCsrf } from './http/csrf';
import { clientRoutes } from './http/static';
import { errorHandler, notFound } from './http/errors';
import { followUpRoutes } from './followups/routes';
import { FollowUpService } from './followups/service';
import { memoryLimiters, rateLimitByIp, type LimiterFactory } from './http/rateLimit';
import { createAuthenticator, createSessionMiddleware, RepositorySessionStore, SESSION_COOKIE } from './http/session';
import { identityRoutes } from './identity/routes';
import { IdentityService } from './identity/service';
import { healthRoutes, type ReadinessCheck } from './observability/health';
import type { Logger } from './observability/logger';
import { Metrics } from './observability/metrics';
import { parseIntakeTokens } from './radiology/peers';
import { radiologyRoutes, radiologyUploadRoutes, stowRoutes } from './radiology/routes';
import { RadiologyService } from './radiology/service';
import type { Store } from './store/types';

export interface AppDeps {
  store: Store;
  logger: Logger;
  keyring: KeyRing;
  /** Rate limiter backend; in-memory unless the caller passes a shared (Redis) one. */
  limiters?: LimiterFactory;
  clock?: () => Date;
  metrics?: Metrics;
}

export type AppConfig = Pick<Config, 'trustProxyHops' | 'sessionAbsoluteMs' | 'publicUrl' | 'dataDir' | 'upload' | 'followUps'> & {
  /** Per-IP budgets; the defaults suit a hospital behind one NAT address. */
  rateLimits?: Partial<typeof DEFAULT_RATE_LIMITS>;
  /** DICOM intake limits and STOW-RS tokens (config.radiology); defaults when absent. */
  radiology?: { maxInstanceBytes: number; intakeTokens?: string };
};

/** Largest STOW-RS request or browser DICOM upload (read into memory to be parsed). */
export const DICOM_REQUEST_MAX_BYTES = 512 * 1024 * 1024;

export const DEFAULT_RATE_LIMITS = {
  /** Any /api request, per client IP, per minute (a flood guard: a hospital NAT carries many users). */
  apiPerIpPerMinute: 30000,
  /** Tile requests per user per minute (a slide viewer panning fast needs ~100/s). */
  tilesPerUserPerMinute: 6000,
  /** Login attempts per client IP per minute. */
  loginPerIpPerMinute: 30,
  /** Login attempts per e-mail per minute (the lockout counts failures; this bounds work). */
  loginPerAccountPerMinute: 10,
  /** Sensitive self-service and admin writes per user per minute. */
  sensitivePerUserPerMinute: 60,
  /** Case and material writes per user per minute. */
  caseWritesPerUserPerMinute: 120,
  /** Uploads per user per minute. */
  uploadsPerUserPerMinute: 20,
  /** Audit searches, usage reads per site admin per minute. */
  adminReadsPerUserPerMinute: 120,
  /** Audit exports and chain verifications (each reads a whole trail) per site admin per minute. */
  adminHeavyPerUserPerMinute: 6,
  /** STOW-RS requests per user or per token-holding address per minute (each may carry a study). */
  stowPerMinute: 120,
  /** Follow-up invite links opened per client IP per minute (guessing guard). */
  followUpOpenPerIpPerMinute: 20,
  /** Failed opens of one follow-up's invite per hour, whatever the reason; then it refuses for the hour. */
  followUpFailuresPerInvitePerHour: 10,
  /** Requests of one patient session per minute (consent, verification, state). */
  followUpPatientPerMinute: 120,
};

export interface App {
  handler: express.Express;
  store: Store;
  metrics: Metrics;
  /** Parts with external dependencies (Redis, media) add their checks for /readyz. */
  readinessChecks: ReadinessCheck[];
  identity: IdentityService;
  audit: AuditService;
  cases: CaseService;
  converter: MaterialConverter;
  dataKeys: DataKeys;
  retention: RetentionService;
  usage: UsageService;
  auditAdmin: AuditAdmin;
  transfers: TransferService;
  annotations: AnnotationService;
  chat: ChatService;
  radiology: RadiologyService;
  followUps: FollowUpService;
  /** Session middleware, shared with the Socket.IO engine later. */
  sessionMiddleware: RequestHandler;
  draining: boolean;
  close(): Promise<void>;
}

const SESSION_SWEEP_MS = 10 * 60_000;

export function createApp(deps: AppDeps, config: AppConfig): App {
  const { store, logger } = deps;
  const clock = deps.clock ?? (() => new Date());
  const limits = { ...DEFAULT_RATE_LIMITS, ...config.rateLimits };
  const makeLimiter = deps.limiters ?? memoryLimiters;

  const metrics = deps.metrics ?? new Metrics();
  metrics.auditChainLength = () => deps.store.audit.totalChainLength();
  const audit = new AuditService(store.audit, clock, (record) => {
    metrics.auditRecords.inc({ type: record.type, outcome: String(record.outcome) });
    if (record.type === 'auth.login' && record.outcome !== 0) metrics.loginFailures.inc();
    if (record.type === 'auth.lockout') metrics.lockouts.inc();
  });
  const dataKeys = new DataKeys(store.dataKeys, deps.keyring);
  const identity = new IdentityService(store, audit, dataKeys, clock);
  const storage = new MaterialStorage(config.dataDir);
  const converter = new MaterialConverter(store.materials, storage, dataKeys, logger.child({ module: 'converter' }), async (material, outcome) => {
    await audit.record({
      siteId: material.siteId,
      type: 'material.convert',
      action: 'E',
      outcome: outcome === 'ready' ? 0 : 8,
      actor: { userId: null, role: 'system', ip: null, userAgent: null },
      objects: [
        { type: 'case', id: material.caseId },
        { type: 'material', id: material.id },
      ],
    });
  });
  const cases = new CaseService(store, audit, dataKeys, storage, converter, config.upload, clock);
  const transfers = new TransferService(store, audit, dataKeys, storage, logger.child({ module: 'transfers' }), clock);
  const annotations = new AnnotationService(store, audit, dataKeys, clock);
  const chat = new ChatService(store, audit, dataKeys, clock);
  const radiology = new RadiologyService(
    store,
    audit,
    dataKeys,
    storage,
    { maxInstanceBytes: config.radiology?.maxInstanceBytes ?? 512 * 1024 * 1024, deepZoomMinPixels: 4096 * 4096 },
    clock,
    converter,
  );
  const retention = new RetentionService(store, audit, cases, logger.child({ module: 'retention' }), clock);
  const usage = new UsageService(store, audit, clock);
  const followUps = new FollowUpService(
    store,
    audit,
    dataKeys,
    { publicUrl: config.publicUrl, ...config.followUps },
    {
      openPerIp: makeLimiter('followup-open-ip', { points: limits.followUpOpenPerIpPerMinute, duration: 60 }),
      failuresPerInvite: makeLimiter('followup-fail-invite', { points: limits.followUpFailuresPerInvitePerHour, duration: 3600 }),
    },
    clock,
  );
  const auditAdmin = new AuditAdmin(store.audit, audit, clock);
  identity.on('accountLocked', ({ siteId, userId, lockedUntil }) => {
    // Site admins see the lock in the user list and the audit trail; operators see this line.
    logger.warn({ siteId, userId, lockedUntil, alert: 'account_locked' }, 'account locked after repeated failed logins');
  });

  const sessionStore = new RepositorySessionStore(store.sessions, config.sessionAbsoluteMs, clock);
  const sessionMiddleware = createSessionMiddleware(sessionStore, deps.keyring.derivedSecrets('session-cookie'));
  const csrf = createCsrf(deps.keyring.derivedSecrets('csrf'));
  const auth = createAuthenticator(identity, config.sessionAbsoluteMs, logger.child({ module: 'auth' }), clock);

  const app = express();
  const state = { draining: false };
  app.disable('x-powered-by');
  app.use(metrics.httpMiddleware());
  // No ETags anywhere: tiles and case data are per-user and must not be revalidated from caches.
  app.set('etag', false);
  app.set('trust proxy', config.trustProxyHops);
  app.set('query parser', 'simple');

  app.use(
    pinoHttp({
      logger: logger.child({ module: 'http' }),
      // Only method, path and status: no headers, no query strings, no bodies.
      serializers: {
        req: (req: { method: string; url: string; id: unknown }) => ({ id: req.id, method: req.method, path: req.url.split('?')[0] }),
        res: (res: { statusCode: number }) => ({ statusCode: res.statusCode }),
      },
      customLogLevel: (_req, res, err) => (err || res.statusCode >= 500 ? 'error' : 'info'),
      autoLogging: { ignore: (req) => req.url === '/healthz' || req.url === '/readyz' },
    }),
  );
  app.use(
    helmet({
      contentSecurityPolicy: {
        useDefaults: false,
        directives: {
          defaultSrc: ["'self'"],
          scriptSrc: ["'self'"],
          styleSrc: ["'self'"],
          imgSrc: ["'self'", 'data:', 'blob:'],
          mediaSrc: ["'self'", 'blob:'],
          connectSrc: ["'self'", 'wss:'],
          fontSrc: ["'self'"],
          workerSrc: ["'self'", 'blob:'],
          objectSrc: ["'none'"],
          baseUri: ["'none'"],
          formAction: ["'self'"],
          frameAncestors: ["'none'"],
        },
      },
      strictTransportSecurity: { maxAge: 31_536_000, includeSubDomains: true },
      crossOriginEmbedderPolicy: false,
      referrerPolicy: { policy: 'no-referrer' },
    }),
  );

  const readinessChecks: ReadinessCheck[] = [];
  app.use(healthRoutes(store, () => state.draining, readinessChecks));

  const api = express.Router();
  api.use((_req, res, next) => {
    res.setHeader('Cache-Control', 'no-store');
    next();
  });
  api.use(rateLimitByIp(makeLimiter('api-ip', { points: limits.apiPerIpPerMinute, duration: 60 })));
  api.use(cookieParser());
  api.use(sessionMiddleware);
  api.use((req, _res, next) => {
    // A session cookie whose session is gone (expired, revoked, logged out elsewhere): say so
    // before the CSRF check, whose token was bound to that session and would fail confusingly.
    const stale = req.cookies?.[SESSION_COOKIE] !== undefined && !req.session?.userId && !req.session?.patient;
    if (stale && req.method !== 'GET' && req.path !== '/auth/login' && req.path !== '/followup/open') {
      next(new AppError('SESSION_EXPIRED'));
      return;
    }
    next();
  });
  api.use(csrf.protect);
  const caseDeps = {
    cases,
    transfers,
    auth,
    limiters: {
      upload: makeLimiter('upload-user', { points: limits.uploadsPerUserPerMinute, duration: 60 }),
      write: makeLimiter('case-write-user', { points: limits.caseWritesPerUserPerMinute, duration: 60 }),
      tiles: makeLimiter('tiles-user', { points: limits.tilesPerUserPerMinute, duration: 60 }),
    },
  };
  const radiologyDeps = {
    radiology,
    auth,
    csrf,
    logger: logger.child({ module: 'radiology' }),
    intakeTokens: parseIntakeTokens(config.radiology?.intakeTokens),
    limiters: {
      upload: makeLimiter('dicom-upload-user', { points: limits.uploadsPerUserPerMinute, duration: 60 }),
      tiles: makeLimiter('slices-user', { points: limits.tilesPerUserPerMinute, duration: 60 }),
      stow: makeLimiter('stow', { points: limits.stowPerMinute, duration: 60 }),
    },
    // A whole study in one request, parsed in memory (multipart parts, zip entries): bounded well
    // below the slide upload limit (which streams to disk), so a few requests cannot exhaust
    // memory. 512 MiB holds a 1,000-slice CT study.
    maxRequestBytes: Math.min(config.upload.maxBytes, DICOM_REQUEST_MAX_BYTES),
    maxZipEntries: 10_000,
  };
  // Uploads stream their raw body to disk, so they come before the JSON-only rule and parser.
  api.use(uploadRoutes(caseDeps));
  api.use(radiologyUploadRoutes(radiologyDeps));
  api.use((req, _res, next) => {
    // JSON only: a state-changing request with a body must say it is JSON.
    const hasBody = Number(req.headers['content-length'] ?? 0) > 0 || req.headers['transfer-encoding'] !== undefined;
    if (hasBody && !['GET', 'HEAD'].includes(req.method) && !req.is('application/json')) {
      next(new AppError('UNSUPPORTED_MEDIA_TYPE'));
      return;
    }
    next();
  });
  const jsonBody = express.json({ limit: '64kb', strict: true });
  // The GeoJSON import reads its own, larger body (src/annotations/routes.ts) after authentication.
  api.use((req, res, next) => (isAnnotationImport(req) ? next() : jsonBody(req, res, next)));
  api.use(
    identityRoutes({
      identity,
      csrf,
      auth,
      clock,
      absoluteSessionMs: config.sessionAbsoluteMs,
      limiters: {
        login: makeLimiter('login-ip', { points: limits.loginPerIpPerMinute, duration: 60 }),
        loginAccount: makeLimiter('login-account', { points: limits.loginPerAccountPerMinute, duration: 60 }),
        sensitive: makeLimiter('sensitive-user', { points: limits.sensitivePerUserPerMinute, duration: 60 }),
      },
    }),
  );
  api.use(caseRoutes(caseDeps));
  api.use(radiologyRoutes(radiologyDeps));
  api.use(transferRoutes(caseDeps));
  api.use(annotationRoutes({ annotations, auth, limiters: caseDeps.limiters }));
  api.use(
    followUpRoutes({
      followUps,
      auth,
      csrf,
      clock,
      absoluteSessionMs: config.sessionAbsoluteMs,
      limiters: { write: caseDeps.limiters.write, patient: makeLimiter('followup-patient', { points: limits.followUpPatientPerMinute, duration: 60 }) },
    }),
  );
  api.use(
    adminRoutes({
      auditAdmin,
      usage,
      auth,
      logger: logger.child({ module: 'admin' }),
      limiters: {
        read: makeLimiter('admin-read-user', { points: limits.adminReadsPerUserPerMinute, duration: 60 }),
        heavy: makeLimiter('admin-heavy-user', { points: limits.adminHeavyPerUserPerMinute, duration: 60 }),
      },
    }),
  );
  api.use(notFound);
  app.use('/api', api);
  // DICOMweb STOW-RS (src/radiology/routes.ts): its own media types, session or intake token.
  const dicomweb = express.Router();
  dicomweb.use((_req, res, next) => {
    res.setHeader('Cache-Control', 'no-store');
    next();
  });
  dicomweb.use(rateLimitByIp(makeLimiter('dicomweb-ip', { points: limits.apiPerIpPerMinute, duration: 60 })));
  dicomweb.use(cookieParser());
  dicomweb.use(sessionMiddleware);
  dicomweb.use(stowRoutes(radiologyDeps));
  dicomweb.use(notFound);
  app.use('/dicomweb', dicomweb);
  app.use(clientRoutes());
  app.use(notFound);
  app.use(errorHandler(logger.child({ module: 'http' })));

  const sweep = setInterval(() => {
    store.sessions.purgeExpired(clock().getTime()).then(
      (n) => n > 0 && logger.info({ purged: n }, 'expired sessions purged'),
      (err) => logger.error({ err }, 'session purge failed'),
    );
  }, SESSION_SWEEP_MS);
  sweep.unref();

  return {
    handler: app,
    store,
    metrics,
    readinessChecks,
    identity,
    audit,
    cases,
    converter,
    dataKeys,
    retention,
    usage,
    auditAdmin,
    transfers,
    annotations,
    chat,
    radiology,
    followUps,
    sessionMiddleware,
    get draining() {
      return state.draining;
    },
    set draining(value: boolean) {
      state.draining = value;
    },
    async close() {
      clearInterval(sweep);
      converter.close();
      identity.removeAllListeners();
      annotations.removeAllListeners();
      chat.removeAllListeners();
      followUps.removeAllListeners();
    },
  };
}
