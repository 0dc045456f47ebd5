// CSRF protection (csrf-csrf, double-submit cookie bound to the session): every state-changing
// request carries the token from GET /api/auth/csrf in the X-CSRF-Token header. Before login the
// token is bound to "anonymous"; login issues a fresh token bound to the new session.
import type { Request, RequestHandler, Response } from 'express';
import { doubleCsrf } from 'csrf-csrf';

export const CSRF_COOKIE = '__Host-csrf';
export const CSRF_HEADER = 'x-csrf-token';

export interface Csrf {
  protect: RequestHandler;
  issue(req: Request, res: Response): string;
}

export function createCsrf(secrets: string[]): Csrf {
  const { doubleCsrfProtection, generateCsrfToken } = doubleCsrf({
    getSecret: () => secrets,
    getSessionIdentifier: (req) => (req.session?.userId || req.session?.patient ? req.sessionID : 'anonymous'),
    cookieName: CSRF_COOKIE,
    cookieOptions: { sameSite: 'strict', path: '/', secure: true, httpOnly: true },
    size: 32,
    ignoredMethods: ['GET', 'HEAD', 'OPTIONS'],
    getCsrfTokenFromRequest: (req) => req.get(CSRF_HEADER),
    errorConfig: { statusCode: 403, message: 'invalid csrf token', code: 'EBADCSRFTOKEN' },
  });
  return {
    protect: doubleCsrfProtection,
    issue: (req, res) => generateCsrfToken(req, res, { overwrite: true }),
  };
}
