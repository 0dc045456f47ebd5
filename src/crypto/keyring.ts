// The master keys (key-encryption keys). MASTER_KEY_FILE holds one base64 key per line; the
// first line is the current key (new data keys are wrapped under it), later lines are older keys
// still able to unwrap until `npm run keys:rotate` has re-wrapped everything. A key's id is a
// fingerprint of it, stored beside every wrapped data key. The file is re-read when it changes,
// so a rotation run by another process takes effect without a restart.
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { deriveKey, MASTER_KEY_BYTES } from './masterKey';

export interface MasterKey {
  id: string;
  key: Buffer;
}

export function keyId(key: Buffer): string {
  return createHash('sha256').update('case-collab:kek-id').update(key).digest('hex').slice(0, 16);
}

export function parseKeyFile(text: string, file: string): MasterKey[] {
  const keys = text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'))
    .map((line) => {
      const key = Buffer.from(line, 'base64');
      if (key.length !== MASTER_KEY_BYTES) throw new Error(`${file}: each line must be ${MASTER_KEY_BYTES} bytes, base64-encoded`);
      return { id: keyId(key), key };
    });
  if (keys.length === 0) throw new Error(`${file} holds no key`);
  return keys;
}

export function writeKeyFile(file: string, keys: Buffer[]): void {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.tmp-${process.pid}`;
  const header = '# master keys: first line current, later lines retired (kept until nothing uses them)\n';
  fs.writeFileSync(tmp, header + keys.map((k) => k.toString('base64')).join('\n') + '\n', { mode: 0o600 });
  fs.renameSync(tmp, file); // atomic: readers see the old or the new file, never half of one
}

export class KeyRing {
  #keys: MasterKey[];
  #mtimeMs: number;

  private constructor(
    readonly file: string,
    keys: MasterKey[],
    mtimeMs: number,
  ) {
    this.#keys = keys;
    this.#mtimeMs = mtimeMs;
  }

  /** Loads MASTER_KEY_FILE, creating it with one fresh key (mode 0600) on first start. */
  static open(file: string): KeyRing {
    if (!fs.existsSync(file)) {
      try {
        fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
        fs.writeFileSync(file, randomBytes(MASTER_KEY_BYTES).toString('base64') + '\n', { mode: 0o600, flag: 'wx' });
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
    }
    return new KeyRing(file, parseKeyFile(fs.readFileSync(file, 'utf8'), file), fs.statSync(file).mtimeMs);
  }

  /** Re-reads the file if it changed since the last read. */
  refresh(): void {
    const mtimeMs = fs.statSync(this.file).mtimeMs;
    if (mtimeMs === this.#mtimeMs) return;
    this.#keys = parseKeyFile(fs.readFileSync(this.file, 'utf8'), this.file);
    this.#mtimeMs = mtimeMs;
  }

  get current(): MasterKey {
    return this.#keys[0]!;
  }

  get all(): readonly MasterKey[] {
    return this.#keys;
  }

  /** Purpose keys from every master key, current first (cookie and CSRF secrets accept any). */
  derivedSecrets(purpose: string): string[] {
    return this.#keys.map((k) => deriveKey(k.key, purpose).toString('base64'));
  }

  /** Wraps a data key under the current master key (AES-256-GCM, bound to the data key id). */
  wrap(dataKey: Buffer, dataKeyId: string): { wrapped: string; kekId: string } {
    this.refresh();
    const kek = this.current;
    return { wrapped: wrapWith(kek.key, dataKey, dataKeyId), kekId: kek.id };
  }

  unwrap(wrapped: string, kekId: string, dataKeyId: string): Buffer {
    let kek = this.#keys.find((k) => k.id === kekId);
    if (!kek) {
      this.refresh();
      kek = this.#keys.find((k) => k.id === kekId);
    }
    if (!kek) throw new Error(`master key ${kekId} is not in ${this.file}`);
    return unwrapWith(kek.key, wrapped, dataKeyId);
  }
}

export function wrapWith(kek: Buffer, dataKey: Buffer, dataKeyId: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', deriveKey(kek, 'kek'), iv);
  cipher.setAAD(Buffer.from(dataKeyId));
  const ct = Buffer.concat([cipher.update(dataKey), cipher.final()]);
  return Buffer.concat([iv, cipher.getAuthTag(), ct]).toString('base64');
}

export function unwrapWith(kek: Buffer, wrapped: string, dataKeyId: string): Buffer {
  const raw = Buffer.from(wrapped, 'base64');
  const decipher = createDecipheriv('aes-256-gcm', deriveKey(kek, 'kek'), raw.subarray(0, 12));
  decipher.setAAD(Buffer.from(dataKeyId));
  decipher.setAuthTag(raw.subarray(12, 28));
  return Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]);
}
