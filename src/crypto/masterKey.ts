// The master key: 32 random bytes in MASTER_KEY_FILE, generated (mode 0600) on first start.
// Purpose keys (cookie signing, CSRF, later the data-key wrapping) are derived from it with
// HKDF, so every node sharing the file agrees on them and no secret is kept twice.
import { hkdfSync, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

export const MASTER_KEY_BYTES = 32;

export function loadOrCreateMasterKey(file: string): Buffer {
  if (!fs.existsSync(file)) {
    fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    const key = randomBytes(MASTER_KEY_BYTES);
    try {
      // 'wx': two processes starting at once cannot both write a key.
      fs.writeFileSync(file, key.toString('base64') + '\n', { mode: 0o600, flag: 'wx' });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
  }
  const key = Buffer.from(fs.readFileSync(file, 'utf8').trim(), 'base64');
  if (key.length !== MASTER_KEY_BYTES) {
    throw new Error(`${file} must hold ${MASTER_KEY_BYTES} bytes, base64-encoded`);
  }
  return key;
}

export function deriveKey(master: Buffer, purpose: string, bytes = 32): Buffer {
  return Buffer.from(hkdfSync('sha256', master, Buffer.alloc(0), `case-collab:${purpose}`, bytes));
}
