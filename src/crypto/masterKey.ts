// Purpose keys (cookie signing, CSRF, data-key wrapping) are derived from a master key
// (KeyRing) with HKDF, so every node sharing MASTER_KEY_FILE agrees on them.
import { hkdfSync } from 'node:crypto';

export const MASTER_KEY_BYTES = 32;

export function deriveKey(master: Buffer, purpose: string, bytes = 32): Buffer {
  return Buffer.from(hkdfSync('sha256', master, Buffer.alloc(0), `case-collab:${purpose}`, bytes));
}
