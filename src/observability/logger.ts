// The structured logger (pino). Redaction is configured here once: no password, session id,
// cookie, CSRF token, TOTP code or secret, or patient field may reach a log line.
import pino, { type DestinationStream, type Logger } from 'pino';

export const REDACT_PATHS = [
  'password',
  '*.password',
  'newPassword',
  '*.newPassword',
  'currentPassword',
  '*.currentPassword',
  'temporaryPassword',
  '*.temporaryPassword',
  'totp',
  '*.totp',
  'code',
  '*.code',
  'secret',
  '*.secret',
  'totpSecret',
  '*.totpSecret',
  'token',
  '*.token',
  'csrfToken',
  '*.csrfToken',
  'sid',
  '*.sid',
  'sessionId',
  '*.sessionId',
  'cookie',
  '*.cookie',
  'patient',
  '*.patient',
  'req.headers.cookie',
  'req.headers.authorization',
  'req.headers["x-csrf-token"]',
  'res.headers["set-cookie"]',
];

export function createLogger(level: string, destination?: DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'case-collab' },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination,
  );
}

export type { Logger };
