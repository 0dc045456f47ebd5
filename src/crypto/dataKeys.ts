// Envelope encryption. Every owner of sensitive data (a case: its patient fields and material
// files; a site: its users' TOTP seeds) has its own random 256-bit data key, stored only wrapped
// under a master key (KeyRing) with the master key's id beside it. Sealed values carry their data
// key id, so rotating the master key re-wraps data keys and touches no record. Deleting an
// owner's data key makes every copy of its ciphertext unreadable (crypto-shredding).
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { newId } from '../ids';
import type { KeyRing } from './keyring';

export interface DataKeyRecord {
  id: string;
  /** Who the key belongs to, for example "case:<id>" or "site:<id>". Unique. */
  owner: string;
  wrapped: string;
  kekId: string;
  createdAt: string;
}

export interface DataKeyRepository {
  /** Throws DuplicateKeyError when the owner already has a key. */
  create(record: DataKeyRecord): Promise<void>;
  findById(id: string): Promise<DataKeyRecord | null>;
  findByOwner(owner: string): Promise<DataKeyRecord | null>;
  /** Keys wrapped under any master key other than `kekId`. */
  listNotWrappedBy(kekId: string, limit: number): Promise<DataKeyRecord[]>;
  /** Replaces the wrapping only if it is still under `fromKekId` (safe against a concurrent rotation). */
  rewrap(id: string, fromKekId: string, wrapped: string, toKekId: string): Promise<boolean>;
  deleteByOwner(owner: string): Promise<boolean>;
  countByKek(): Promise<Record<string, number>>;
}

const SEALED_VERSION = 'e1';
const IV_BYTES = 12;
const TAG_BYTES = 16;

export class DataKeys {
  /** Unwrapped keys, by id. Small: one entry per case or site in use. */
  readonly #cache = new Map<string, Buffer>();
  readonly #creating = new Map<string, Promise<{ id: string; key: Buffer }>>();

  constructor(
    private readonly repo: DataKeyRepository,
    private readonly keyring: KeyRing,
  ) {}

  /** The data key of an owner, created on first use (serialised, so one owner never gets two). */
  async forOwner(owner: string): Promise<{ id: string; key: Buffer }> {
    const existing = await this.repo.findByOwner(owner);
    if (existing) return { id: existing.id, key: this.unwrapRecord(existing) };
    const inFlight = this.#creating.get(owner);
    if (inFlight) return inFlight;
    const creation = (async () => {
      const id = newId();
      const key = randomBytes(32);
      const { wrapped, kekId } = this.keyring.wrap(key, id);
      try {
        await this.repo.create({ id, owner, wrapped, kekId, createdAt: new Date().toISOString() });
      } catch (err) {
        // Another node created it first: use theirs.
        const theirs = await this.repo.findByOwner(owner);
        if (!theirs) throw err;
        return { id: theirs.id, key: this.unwrapRecord(theirs) };
      }
      this.#cache.set(id, key);
      return { id, key };
    })().finally(() => this.#creating.delete(owner));
    this.#creating.set(owner, creation);
    return creation;
  }

  async byId(id: string): Promise<Buffer> {
    const cached = this.#cache.get(id);
    if (cached) return cached;
    const record = await this.repo.findById(id);
    if (!record) throw new DataKeyMissingError(id);
    return this.unwrapRecord(record);
  }

  /** Forgets an owner's key everywhere: what it encrypted can no longer be read. */
  async destroyOwner(owner: string): Promise<void> {
    const record = await this.repo.findByOwner(owner);
    if (record) this.#cache.delete(record.id);
    await this.repo.deleteByOwner(owner);
  }

  private unwrapRecord(record: DataKeyRecord): Buffer {
    const cached = this.#cache.get(record.id);
    if (cached) return cached;
    const key = this.keyring.unwrap(record.wrapped, record.kekId, record.id);
    this.#cache.set(record.id, key);
    return key;
  }

  /** Seals a string: "e1.<dataKeyId>.<iv.tag.ciphertext in base64url>", bound to `context`. */
  async sealString(owner: string, plaintext: string, context: string): Promise<string> {
    const { id, key } = await this.forOwner(owner);
    return `${SEALED_VERSION}.${id}.${encryptBuffer(key, Buffer.from(plaintext, 'utf8'), context).toString('base64url')}`;
  }

  async openString(sealed: string, context: string): Promise<string> {
    const [version, id, body] = sealed.split('.');
    if (version !== SEALED_VERSION || !id || body === undefined) throw new Error('unrecognised sealed value');
    return decryptBuffer(await this.byId(id), Buffer.from(body, 'base64url'), context).toString('utf8');
  }
}

export class DataKeyMissingError extends Error {
  override name = 'DataKeyMissingError';
  constructor(id: string) {
    super(`data key ${id} no longer exists`);
  }
}

/** AES-256-GCM: iv (12) | tag (16) | ciphertext, with `context` as associated data. */
export function encryptBuffer(key: Buffer, plaintext: Buffer, context: string): Buffer {
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(Buffer.from(context));
  const ct = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([iv, cipher.getAuthTag(), ct]);
}

export function decryptBuffer(key: Buffer, sealed: Buffer, context: string): Buffer {
  const decipher = createDecipheriv('aes-256-gcm', key, sealed.subarray(0, IV_BYTES));
  decipher.setAAD(Buffer.from(context));
  decipher.setAuthTag(sealed.subarray(IV_BYTES, IV_BYTES + TAG_BYTES));
  return Buffer.concat([decipher.update(sealed.subarray(IV_BYTES + TAG_BYTES)), decipher.final()]);
}

export const SEALED_OVERHEAD = IV_BYTES + TAG_BYTES;

/**
 * Re-wraps every data key under the current master key. Safe while servers run: each row is
 * swapped only if still under the key it was read with, and servers re-read the key file.
 */
export async function rewrapAll(repo: DataKeyRepository, keyring: KeyRing): Promise<number> {
  keyring.refresh();
  const target = keyring.current.id;
  let count = 0;
  for (;;) {
    const batch = await repo.listNotWrappedBy(target, 500);
    if (batch.length === 0) return count;
    for (const record of batch) {
      const key = keyring.unwrap(record.wrapped, record.kekId, record.id);
      const { wrapped, kekId } = keyring.wrap(key, record.id);
      if (await repo.rewrap(record.id, record.kekId, wrapped, kekId)) count++;
    }
  }
}
