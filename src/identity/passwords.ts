// Password hashing (argon2id, run in libuv's thread pool so the event loop never blocks) and
// the site password policy: a minimum length, no composition rules, no truncation, and a
// refusal of passwords found in zxcvbn-ts's common-password list (shipped in the package).
import os from 'node:os';
import argon2 from 'argon2';
import { dictionary } from '@zxcvbn-ts/language-common';
import { AppError, PasswordPolicyError } from '../errors';
import { PASSWORD_MAX_LENGTH, type SitePolicy } from '../protocol/identity';

/** OWASP ASVS / DESIGN 6: argon2id, m >= 19 MiB, t >= 2, p = 1. */
export const ARGON2_OPTIONS = { type: argon2.argon2id, memoryCost: 19456, timeCost: 2, parallelism: 1 } as const;

const COMMON = new Set<string>((dictionary['passwords-common'] as string[]).map((p) => p.toLowerCase()));

/**
 * Hashes computed at once. Each takes ~20-70 ms of a core; libuv's four threads would run four
 * on a two-core node and starve the event loop (rooms, tiles) during a login storm. One core is
 * left to the rest of the node (docs/benchmarks.md, "Login storm"); the others wait their turn.
 */
const MAX_CONCURRENT_HASHES = Math.max(1, os.availableParallelism() - 1);
/** Beyond this many waiting, sign-ins are refused at once rather than queued without end. */
const MAX_WAITING_HASHES = 500;
let hashesRunning = 0;
const hashesWaiting: (() => void)[] = [];

async function withHashSlot<T>(work: () => Promise<T>): Promise<T> {
  if (hashesRunning < MAX_CONCURRENT_HASHES) hashesRunning++;
  else {
    if (hashesWaiting.length >= MAX_WAITING_HASHES) throw new AppError('RATE_LIMITED', 'Too many sign-ins at once. Wait a moment and try again.');
    // The slot is handed over by the finishing hash (hashesRunning stays as it is).
    await new Promise<void>((resolve) => hashesWaiting.push(resolve));
  }
  try {
    return await work();
  } finally {
    const next = hashesWaiting.shift();
    if (next) next();
    else hashesRunning--;
  }
}

export function hashPassword(password: string): Promise<string> {
  return withHashSlot(() => argon2.hash(password, ARGON2_OPTIONS));
}

export async function verifyPassword(hash: string, password: string): Promise<boolean> {
  return withHashSlot(async () => {
    try {
      return await argon2.verify(hash, password);
    } catch {
      return false;
    }
  });
}

let dummyHash: Promise<string> | null = null;
/**
 * Verifies against a throw-away hash so that a login for an unknown e-mail costs the same time
 * as one for a known e-mail with a wrong password.
 */
export async function burnPasswordCheck(password: string): Promise<void> {
  dummyHash ??= hashPassword('not-a-real-password-used-for-timing-only');
  await verifyPassword(await dummyHash, password);
}

/** The effective minimum: the site's setting, never below 8, and below 12 only with TOTP required. */
export function effectiveMinLength(policy: SitePolicy): number {
  const floor = policy.requireTotp ? 8 : 12;
  return Math.max(floor, policy.minPasswordLength);
}

/** Throws PasswordPolicyError naming the first rule the password breaks. */
export function checkPasswordPolicy(password: string, policy: SitePolicy, context: { email?: string; name?: string } = {}): void {
  const length = [...password].length;
  const min = effectiveMinLength(policy);
  if (length < min) throw new PasswordPolicyError(`use at least ${min} characters`);
  if (password.length > PASSWORD_MAX_LENGTH) throw new PasswordPolicyError(`use at most ${PASSWORD_MAX_LENGTH} characters`);
  const lower = password.toLowerCase();
  if (COMMON.has(lower)) throw new PasswordPolicyError('this password is in a list of commonly used passwords');
  if (new Set(lower).size <= 2) throw new PasswordPolicyError('this password repeats too few characters');
  const local = context.email?.split('@')[0]?.toLowerCase();
  if (local && local.length >= 4 && lower.includes(local)) {
    throw new PasswordPolicyError('do not use your e-mail address in your password');
  }
}
