// Operator endpoints, served beside /metrics on METRICS_PORT (the monitoring network) and
// protected separately from site sessions: a bearer token read from OPERATOR_TOKEN_FILE. They
// answer with figures across every site (no patient data, no user identities), are
// rate-limited per client address and audited on the system chain.
import { createHash, timingSafeEqual } from 'node:crypto';
import fs from 'node:fs';
import type http from 'node:http';
import type { RateLimiterAbstract } from 'rate-limiter-flexible';
import { AppError } from '../errors';
import type { UsageService } from '../governance/usage';
import { consume } from '../http/rateLimit';
import { parseInput } from '../http/validate';
import type { Logger } from '../observability/logger';
import { ERROR_CODES } from '../protocol/errors';
import { usageQuerySchema } from '../protocol/governance';

export const MIN_OPERATOR_TOKEN_LENGTH = 32;

/** Reads and checks the token file at start-up, so a bad file stops the node with a clear message. */
export function readOperatorToken(file: string): Buffer {
  const token = fs.readFileSync(file, 'utf8').trim();
  if (token.length < MIN_OPERATOR_TOKEN_LENGTH) throw new Error(`OPERATOR_TOKEN_FILE ${file}: the token must be at least ${MIN_OPERATOR_TOKEN_LENGTH} characters`);
  return createHash('sha256').update(token).digest();
}

function send(res: http.ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store', ...headers }).end(JSON.stringify(body));
}

function sendError(res: http.ServerResponse, err: AppError): void {
  const body: { error: { code: string; message: string; details?: unknown } } = { error: { code: err.code, message: err.message } };
  if (err.details?.length) body.error.details = err.details;
  send(res, ERROR_CODES[err.code].status, body, err.code === 'UNAUTHENTICATED' ? { 'WWW-Authenticate': 'Bearer' } : {});
}

export interface OperatorDeps {
  usage: UsageService;
  /** sha256 of the token; null: operator endpoints are off (404). */
  tokenDigest: Buffer | null;
  limiter: RateLimiterAbstract;
  logger: Logger;
}

/** A request handler for the metrics listener: answers /operator/* and returns true, else false. */
export function operatorHandler(deps: OperatorDeps): (req: http.IncomingMessage, res: http.ServerResponse) => boolean {
  return (req, res) => {
    const url = new URL(req.url ?? '/', 'http://operator.invalid');
    if (!url.pathname.startsWith('/operator/')) return false;
    const ip = req.socket.remoteAddress ?? null;
    (async () => {
      if (!deps.tokenDigest || url.pathname !== '/operator/usage') throw new AppError('NOT_FOUND');
      if (req.method !== 'GET') throw new AppError('NOT_FOUND');
      await consume(deps.limiter, ip ?? 'unknown', res);
      const header = req.headers.authorization ?? '';
      const presented = header.startsWith('Bearer ') ? createHash('sha256').update(header.slice(7).trim()).digest() : null;
      if (!presented || !timingSafeEqual(presented, deps.tokenDigest)) {
        deps.logger.warn({ ip, alert: 'operator_auth_failed' }, 'operator endpoint: wrong or missing token');
        throw new AppError('UNAUTHENTICATED');
      }
      const query = parseInput(usageQuerySchema, Object.fromEntries(url.searchParams));
      return deps.usage.operatorReport(query, { userId: null, role: 'operator', ip, userAgent: req.headers['user-agent']?.slice(0, 256) ?? null });
    })().then(
      (report) => send(res, 200, report),
      (err) => {
        if (err instanceof AppError) return sendError(res, err);
        deps.logger.error({ err: { message: (err as Error).message } }, 'operator endpoint failed');
        sendError(res, new AppError('INTERNAL'));
      },
    );
    return true;
  };
}
