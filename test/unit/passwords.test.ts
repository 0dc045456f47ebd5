// The password policy and hashing (src/identity/passwords.ts): length floors, the common-password
// refusal, no truncation of long passwords, and argon2id with the OWASP parameters.
import { dictionary } from '@zxcvbn-ts/language-common';
import { PasswordPolicyError } from '../../src/errors';
import { DEFAULT_POLICY } from '../../src/identity/model';
import { checkPasswordPolicy, effectiveMinLength, hashPassword, verifyPassword } from '../../src/identity/passwords';
import { PASSWORD_MAX_LENGTH, type SitePolicy } from '../../src/protocol/identity';

const policy = (over: Partial<SitePolicy> = {}): SitePolicy => ({ ...DEFAULT_POLICY, ...over });

/** A password of exactly `length` characters, varied and in no dictionary. */
function longPassword(length: number): string {
  const alphabet = 'Slides, stains & 7 microscopes; quietly-drifting zebra pathology! ';
  let out = '';
  for (let i = 0; out.length < length; i++) out += alphabet[(i * 7) % alphabet.length];
  return out;
}

function policyError(fn: () => void): PasswordPolicyError {
  try {
    fn();
  } catch (err) {
    if (err instanceof PasswordPolicyError) return err;
    throw err;
  }
  throw new Error('expected a PasswordPolicyError, but the password was accepted');
}

describe('effectiveMinLength', () => {
  test('is 12 by default', () => {
    expect(DEFAULT_POLICY.minPasswordLength).toBe(12);
    expect(effectiveMinLength(policy())).toBe(12);
  });

  test('goes below 12 (down to 8) only when the site requires TOTP', () => {
    expect(effectiveMinLength(policy({ minPasswordLength: 8, requireTotp: false }))).toBe(12);
    expect(effectiveMinLength(policy({ minPasswordLength: 8, requireTotp: true }))).toBe(8);
    expect(effectiveMinLength(policy({ minPasswordLength: 10, requireTotp: true }))).toBe(10);
    expect(effectiveMinLength(policy({ minPasswordLength: 4, requireTotp: true }))).toBe(8);
  });

  test('a site setting above the floor wins', () => {
    expect(effectiveMinLength(policy({ minPasswordLength: 20, requireTotp: false }))).toBe(20);
    expect(effectiveMinLength(policy({ minPasswordLength: 20, requireTotp: true }))).toBe(20);
  });
});

describe('checkPasswordPolicy', () => {
  const common = dictionary['passwords-common'] as string[];

  test('refuses a password from the common-password dictionary, whatever its case', () => {
    // 'baseball1234' is not in zxcvbn-ts's list; this one is (checked first), and is long enough
    // that only the dictionary rule can refuse it.
    const candidate = 'qwerty123456';
    expect(common).toContain(candidate);
    expect(policyError(() => checkPasswordPolicy(candidate, policy())).message).toMatch(/commonly used/);
    expect(policyError(() => checkPasswordPolicy('QWERTY123456', policy())).message).toMatch(/commonly used/);
    expect(policyError(() => checkPasswordPolicy(candidate, policy())).code).toBe('PASSWORD_POLICY');
  });

  test('refuses a password shorter than the effective minimum, naming it', () => {
    const eleven = 'zebra-stain';
    expect(eleven).toHaveLength(11);
    expect(policyError(() => checkPasswordPolicy(eleven, policy())).message).toMatch(/at least 12 characters/);
    expect(policyError(() => checkPasswordPolicy('zebra-stain-slides', policy({ minPasswordLength: 20 }))).message).toMatch(
      /at least 20 characters/,
    );
    // With TOTP required the same 11 characters are enough.
    expect(() => checkPasswordPolicy(eleven, policy({ minPasswordLength: 8, requireTotp: true }))).not.toThrow();
  });

  test('counts characters, not UTF-16 units', () => {
    // 11 emoji are 22 UTF-16 units but 11 characters.
    const emoji = '🔬🧫🧪🩺💉🩻🧬🦠🫀🫁🧠';
    expect([...emoji]).toHaveLength(11);
    expect(policyError(() => checkPasswordPolicy(emoji, policy())).message).toMatch(/at least 12/);
  });

  test("refuses a password containing the e-mail's local part", () => {
    const err = policyError(() =>
      checkPasswordPolicy('Margaret.Hale-reads-slides', policy(), { email: 'margaret.hale@example.org' }),
    );
    expect(err.message).toMatch(/e-mail/);
    // The same password is fine for someone else.
    expect(() => checkPasswordPolicy('Margaret.Hale-reads-slides', policy(), { email: 'john@example.org' })).not.toThrow();
  });

  test('refuses a password of too few distinct characters', () => {
    expect(policyError(() => checkPasswordPolicy('abababababababab', policy())).message).toMatch(/too few characters/);
  });

  test('accepts a 128-character and a 1000-character password, and refuses one over the maximum', () => {
    const p128 = longPassword(128);
    const p1000 = longPassword(1000);
    expect(p128).toHaveLength(128);
    expect(p1000).toHaveLength(1000);
    expect(() => checkPasswordPolicy(p128, policy(), { email: 'alice@example.org' })).not.toThrow();
    expect(() => checkPasswordPolicy(p1000, policy(), { email: 'alice@example.org' })).not.toThrow();
    expect(policyError(() => checkPasswordPolicy(longPassword(PASSWORD_MAX_LENGTH + 1), policy())).message).toMatch(
      new RegExp(`at most ${PASSWORD_MAX_LENGTH}`),
    );
  });
});

describe('hashPassword / verifyPassword', () => {
  test('argon2id with m=19456, t=2, p=1, salted (two hashes of one password differ)', async () => {
    const a = await hashPassword('a long passphrase about slides');
    const b = await hashPassword('a long passphrase about slides');
    expect(a.startsWith('$argon2id$')).toBe(true);
    // PHC string: $argon2id$v=19$<params>$<salt>$<hash>; node-argon2 writes the params as m,p,t.
    const [, algorithm, version, params, salt, digest] = a.split('$');
    expect(algorithm).toBe('argon2id');
    expect(version).toBe('v=19');
    expect(Object.fromEntries(params!.split(',').map((kv) => kv.split('=')))).toEqual({ m: '19456', t: '2', p: '1' });
    expect(salt!.length).toBeGreaterThanOrEqual(22); // >= 16 bytes of salt
    expect(digest!.length).toBeGreaterThanOrEqual(43); // >= 32 bytes of hash
    expect(a).not.toBe(b);
    expect(await verifyPassword(b, 'a long passphrase about slides')).toBe(true);
  });

  test('does not truncate: every character of a long password counts', async () => {
    const x = longPassword(128);
    const hash = await hashPassword(x);
    expect(await verifyPassword(hash, x)).toBe(true);
    // bcrypt would accept these (it reads only 72 bytes); argon2id must not.
    expect(await verifyPassword(hash, `${x.slice(0, 72)}different`)).toBe(false);
    expect(await verifyPassword(hash, x.slice(0, 127))).toBe(false);
    expect(await verifyPassword(hash, `${x.slice(0, 127)}#`)).toBe(false);

    const long = longPassword(1000);
    const longHash = await hashPassword(long);
    expect(await verifyPassword(longHash, long)).toBe(true);
    expect(await verifyPassword(longHash, `${long.slice(0, 999)}#`)).toBe(false);
  });

  test('a wrong password or a malformed hash gives false, never an exception', async () => {
    const hash = await hashPassword('a long passphrase about slides');
    expect(await verifyPassword(hash, 'a long passphrase about slideS')).toBe(false);
    expect(await verifyPassword('not-a-hash', 'anything')).toBe(false);
  });
});
