// Jest global teardown: searches the logs of every test server of the whole run for things that
// must never be logged (DESIGN 6, STYLE 11). Fails the run, naming the pattern and the line.
const fs = require('node:fs');
const path = require('node:path');

const FORBIDDEN = [
  [/"(password|newPassword|currentPassword|oneTimePassword|temporaryPassword|totp|secret|csrfToken|token|sid|cookie)":"(?!\[redacted\])/i, 'a secret field in clear'],
  [/__Host-(sid|csrf)=/, 'a session or CSRF cookie'],
  [/\$argon2id\$/, 'a password hash'],
  [/otpauth:\/\//, 'a TOTP enrolment URI'],
  [/"set-cookie"|"x-csrf-token"/i, 'a cookie or CSRF header'],
  [/"(name|dateOfBirth|medicalRecordNumber)":"(?!\[redacted\])[^"]*","(dateOfBirth|medicalRecordNumber|sex)"/, 'patient fields'],
];

module.exports = async () => {
  const dir = process.env.CC_TEST_LOG_DIR;
  if (!dir || !fs.existsSync(dir)) return;
  let lines = 0;
  for (const file of fs.readdirSync(dir)) {
    const text = fs.readFileSync(path.join(dir, file), 'utf8');
    for (const line of text.split('\n')) {
      if (!line) continue;
      lines++;
      for (const [pattern, what] of FORBIDDEN) {
        if (pattern.test(line)) throw new Error(`log scan: ${what} in a server log line (${file}): ${line.slice(0, 300)}`);
      }
    }
  }
  if (lines === 0) throw new Error("log scan: no server log line was captured; the scan would prove nothing");
  process.stdout.write(`\nlog scan: ${lines} server log lines of this run searched; no secret, cookie, hash or patient field found\n`);
};
