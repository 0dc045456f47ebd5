// The one place errors become HTTP responses: AppError codes map to their status; body-parser
// failures to typed codes; anything else is logged and answered INTERNAL without detail.
import type { ErrorRequestHandler, RequestHandler } from 'express';
import { AppError, NotFoundError } from '../errors';
import type { ErrorBody } from '../protocol/errors';
import type { Logger } from '../observability/logger';

export function toAppError(err: unknown): AppError | null {
  if (err instanceof AppError) return err;
  const e = err as { type?: string; status?: number; code?: string };
  if (e?.type === 'entity.too.large') return new AppError('PAYLOAD_TOO_LARGE');
  if (e?.type === 'entity.parse.failed' || e?.type === 'encoding.unsupported' || e?.type === 'charset.unsupported') {
    return new AppError('VALIDATION_FAILED', 'The request body is not valid JSON.');
  }
  if (e?.code === 'EBADCSRFTOKEN') return new AppError('CSRF_INVALID');
  if (isStoreUnavailable(err)) return new AppError('STORE_UNAVAILABLE');
  return null;
}

/** Client errors that mean "not connected now" (node-redis and the MongoDB driver name them). */
const UNAVAILABLE_NAMES = new Set([
  'ClientOfflineError',
  'ClientClosedError',
  'SocketClosedUnexpectedlyError',
  'ConnectionTimeoutError',
  'ReconnectStrategyError',
  'MongoNetworkError',
  'MongoNetworkTimeoutError',
  'MongoServerSelectionError',
  'MongoNotConnectedError',
]);

/**
 * The store or Redis cannot be reached or is locked by another process (SQLITE_BUSY after the
 * busy timeout): a passing condition, answered 503 STORE_UNAVAILABLE rather than INTERNAL.
 */
export function isStoreUnavailable(err: unknown): boolean {
  const e = err as { name?: string; code?: unknown } | null;
  if (!e || typeof e !== 'object') return false;
  if (typeof e.code === 'string' && /^SQLITE_(BUSY|LOCKED)/.test(e.code)) return true;
  // A store or Redis connection refused or cut (handlers make no other network calls).
  if (typeof e.code === 'string' && ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH'].includes(e.code)) return true;
  if (typeof e.name === 'string' && UNAVAILABLE_NAMES.has(e.name)) return true;
  // node-redis throws some of these as plain Errors: only the message names them.
  return typeof (e as { message?: unknown }).message === 'string' && /^(The client is (offline|closed)|Socket closed unexpectedly|Connection timeout|connect ECONNREFUSED)/.test((e as { message: string }).message);
}

export function sendError(res: Parameters<RequestHandler>[1], err: AppError): void {
  const body: ErrorBody = { error: { code: err.code, message: err.message } };
  if (err.details?.length) body.error.details = err.details;
  // Only this code defines a payload: the state the client must rebase its change on.
  if (err.code === 'VERSION_CONFLICT' && err.data?.current !== undefined) body.error.current = err.data.current;
  res.status(err.status).json(body);
}

export function errorHandler(logger: Logger): ErrorRequestHandler {
  return (err, req, res, _next) => {
    const known = toAppError(err);
    if (res.headersSent) {
      res.end();
      return;
    }
    if (known) {
      if (known.status >= 500) logger.error({ err, path: req.path }, 'request failed');
      sendError(res, known);
      return;
    }
    logger.error({ err: { name: (err as Error)?.name, message: (err as Error)?.message, stack: (err as Error)?.stack }, method: req.method, path: req.path }, 'unhandled error');
    sendError(res, new AppError('INTERNAL'));
  };
}

export const notFound: RequestHandler = (_req, _res, next) => next(new NotFoundError());
