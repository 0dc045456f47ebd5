// Identifiers: random, URL-safe, carrying no personal data.
import { randomBytes } from 'node:crypto';

/** 128 random bits, base64url (22 characters). */
export function newId(): string {
  return randomBytes(16).toString('base64url');
}

/** A one-time password for a new or reset account: 20 base64url characters (120 bits). */
export function newOneTimePassword(): string {
  return randomBytes(15).toString('base64url');
}
