// Jest global teardown: searches the logs of every test server of the whole run for things that
// must never be logged (DESIGN 6, STYLE 11). Fails the run, naming the pattern and the line.
// Two nets: patterns (secret-bearing keys with a clear value, cookies, hashes, TOTP URIs, patient
// fields), and the literal values the test helpers handed out during the run (every password
// they set and every session cookie they received, in `*.secrets` files beside the logs), so a
// session id or password logged under an innocent key is caught too. test/unit/logScan.test.ts
// proves each net fails on a leak.
const fs = require('node:fs');
const path = require('node:path');

// A key that names a secret, whatever its prefix (csrfToken, totpSecret, newPassword...), with a
// string value that pino's redaction did not replace.
const SECRET_KEY = /"(\w*password|\w*secret|\w*token|sid|sessionid|session_id|cookie|authorization|totp|totpcode)":"(?!\[redacted\])/i;

const FORBIDDEN = [
  [SECRET_KEY, 'a secret field in clear'],
  [/__Host-(sid|csrf)=/, 'a session or CSRF cookie'],
  // express-session's signed cookie value (s:<id>.<hmac>), raw or URL-encoded, under any key.
  [/s(:|%3A)[A-Za-z0-9_-]{20,}\.[A-Za-z0-9+/%]{20,}/, 'a signed session cookie value'],
  [/\$argon2id\$/, 'a password hash'],
  [/otpauth:\/\//, 'a TOTP enrolment URI'],
  [/"(set-cookie|x-csrf-token)":(?!"\[redacted\]")/i, 'a cookie or CSRF header'],
  [/"patient":\{/, 'a patient record'],
  [/"(dateOfBirth|medicalRecordNumber|patientName|mrn)":"(?!\[redacted\])/i, 'a patient field'],
  [/"(name|dateOfBirth|medicalRecordNumber)":"(?!\[redacted\])[^"]*","(dateOfBirth|medicalRecordNumber|sex)"/, 'patient fields'],
];

function escape(s) {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Literal secrets as a few alternation regexes (one per 400, to keep each regex small). */
function literalMatchers(secrets) {
  const unique = [...new Set(secrets.filter((s) => typeof s === 'string' && s.length >= 8))];
  const out = [];
  for (let i = 0; i < unique.length; i += 400) out.push(new RegExp(unique.slice(i, i + 400).map(escape).join('|')));
  return out;
}

/** The first problem in `line`, or null: what leaked, by pattern or by known value. */
function findLeak(line, matchers = []) {
  for (const [pattern, what] of FORBIDDEN) if (pattern.test(line)) return what;
  for (const m of matchers) {
    const hit = m.exec(line);
    if (hit) return `a value handed out during the run (${hit[0].slice(0, 3)}…)`;
  }
  return null;
}

/** Scans every `*.log` of `dir` against the patterns and the `*.secrets` files of `dir`. */
function scanDir(dir) {
  const files = fs.readdirSync(dir);
  const secrets = files.filter((f) => f.endsWith('.secrets')).flatMap((f) => fs.readFileSync(path.join(dir, f), 'utf8').split('\n'));
  const matchers = literalMatchers(secrets);
  let lines = 0;
  for (const file of files.filter((f) => f.endsWith('.log'))) {
    const text = fs.readFileSync(path.join(dir, file), 'utf8');
    for (const line of text.split('\n')) {
      if (!line) continue;
      lines++;
      const what = findLeak(line, matchers);
      if (what) throw new Error(`log scan: ${what} in a server log line (${file}): ${line.slice(0, 300)}`);
    }
  }
  return { lines, secrets: new Set(secrets.filter((s) => s.length >= 8)).size };
}

module.exports = async () => {
  const dir = process.env.CC_TEST_LOG_DIR;
  if (!dir || !fs.existsSync(dir)) return;
  const { lines, secrets } = scanDir(dir);
  // A run of unit tests only starts no server; a run whose helpers logged in (secrets recorded)
  // but captured no line means the capture broke, and the scan would prove nothing.
  if (lines === 0 && secrets === 0) {
    process.stdout.write('\nlog scan: no test server ran; nothing to scan\n');
    return;
  }
  if (lines === 0) throw new Error('log scan: no server log line was captured; the scan would prove nothing');
  process.stdout.write(`\nlog scan: ${lines} server log lines of this run searched for patterns and ${secrets} handed-out secrets; none found\n`);
};
module.exports.findLeak = findLeak;
module.exports.literalMatchers = literalMatchers;
module.exports.scanDir = scanDir;
