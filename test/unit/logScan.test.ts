// The log scanner of the global teardown (test/logScan.js) must fail on every kind of leak the
// security policy names: password, session id, cookie, token, TOTP secret, patient field. Each
// leak is written as the logger would write it (one JSON line) and must be found; lines the
// server really logs (redacted values, error codes, hashed room names) must pass.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createLogger } from '../../src/observability/logger';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const scanner = require('../logScan.js') as {
  findLeak(line: string, matchers?: RegExp[]): string | null;
  literalMatchers(secrets: string[]): RegExp[];
  scanDir(dir: string): { lines: number; secrets: number };
};

const line = (fields: object) => JSON.stringify({ level: 30, time: '2026-11-23T20:00:00.000Z', service: 'case-collab', ...fields, msg: 'x' });

test.each<[string, string]>([
  ['a password', line({ password: 'hunter2hunter2' })],
  ['a new password nested', line({ body: { newPassword: 'correct horse battery' } })],
  ['a one-time password', line({ oneTimePassword: 'Zx81aaaaaaaaaaaaaaaa' })],
  ['a session id', line({ sid: 'AbCdEfGhIjKlMnOpQrStUvWxYz012345' })],
  ['a session id under another spelling', line({ sessionID: 'AbCdEfGhIjKlMnOpQrStUvWxYz012345' })],
  ['a cookie header', line({ req: { headers: { cookie: '__Host-sid=s%3Aabc.def' } } })],
  ['a session cookie value under an innocent key', line({ note: 's%3AAbCdEfGhIjKlMnOpQrStUvWxYz012345.Q2hlY2tzdW1TaWduYXR1cmVYWVo' })],
  ['a set-cookie header', line({ res: { headers: { 'set-cookie': ['a=b'] } } })],
  ['a CSRF token', line({ csrfToken: 'a'.repeat(40) })],
  ['a bearer/authorization header', line({ headers: { authorization: 'Bearer abc' } })],
  ['a TOTP secret', line({ totpSecret: 'JBSWY3DPEHPK3PXP' })],
  ['a TOTP code', line({ totp: '123456' })],
  ['a TOTP enrolment URI', line({ uri: 'otpauth://totp/x?secret=JBSWY3DPEHPK3PXP' })],
  ['a password hash', line({ hash: '$argon2id$v=19$m=19456,t=2,p=1$abc$def' })],
  ['a patient record', line({ patient: { name: 'Jane Roe', dateOfBirth: '1970-01-01', medicalRecordNumber: 'MRN1', sex: 'female' } })],
  ['a date of birth alone', line({ case: { dateOfBirth: '1970-01-01' } })],
  ['a medical record number alone', line({ medicalRecordNumber: 'MRN-000123' })],
])('the scanner finds %s', (_what, leaked) => {
  expect(scanner.findLeak(leaked)).not.toBeNull();
});

test('a value handed out during the run is found under any key, even inside other text', () => {
  const matchers = scanner.literalMatchers(['correct-horse-battery-staple', 'AbCdEfGhIjKlMnOpQrStUv', 'short']);
  expect(scanner.findLeak(line({ msg2: 'user typed correct-horse-battery-staple here' }), matchers)).toMatch(/handed out/);
  expect(scanner.findLeak(line({ id: 'AbCdEfGhIjKlMnOpQrStUv' }), matchers)).toMatch(/handed out/);
  // Values under 8 characters are not tracked: they would match innocent text.
  expect(scanner.findLeak(line({ word: 'short' }), matchers)).toBeNull();
});

test.each<[string, string]>([
  ['redacted secrets', line({ password: '[redacted]', sid: '[redacted]', csrfToken: '[redacted]', patient: '[redacted]' })],
  ['an error code and a request path', line({ err: { code: 'VALIDATION_FAILED' }, path: '/api/auth/login', status: 400 })],
  ['a hashed session room', line({ sessionRoom: 's:0123456789abcdef0123456789abcdef' })],
  ['a user name without patient fields', line({ actor: { name: 'Demo Clinician', role: 'clinician' } })],
])('the scanner passes %s', (_what, clean) => {
  expect(scanner.findLeak(clean)).toBeNull();
});

test('what the real logger writes for a request carrying every secret is clean once redacted', () => {
  const lines: string[] = [];
  const logger = createLogger('info', { write: (s: string) => void lines.push(s) } as never);
  logger.info({ password: 'p4ssw0rd-long', newPassword: 'n3w-long-password', sid: 'x'.repeat(32), cookie: '__Host-sid=s%3Aa.b', totpSecret: 'JBSWY3DPEHPK3PXP', csrfToken: 'c'.repeat(40), patient: { name: 'Jane Roe', dateOfBirth: '1970-01-01' } }, 'everything');
  logger.info({ req: { headers: { cookie: '__Host-sid=abc', authorization: 'Bearer t', 'x-csrf-token': 'tok' } } }, 'request');
  expect(lines).toHaveLength(2);
  for (const l of lines) expect(scanner.findLeak(l)).toBeNull();
});

test('the teardown scan fails the run on a leaked handed-out secret and names the file', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'logscan-'));
  try {
    fs.writeFileSync(path.join(dir, '1.secrets'), 'a-password-given-to-a-user\n');
    fs.writeFileSync(path.join(dir, '1.log'), line({ path: '/api/me' }) + '\n');
    expect(scanner.scanDir(dir)).toEqual({ lines: 1, secrets: 1 });
    fs.appendFileSync(path.join(dir, '1.log'), line({ detail: 'oops a-password-given-to-a-user' }) + '\n');
    expect(() => scanner.scanDir(dir)).toThrow(/handed out.*1\.log/);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
