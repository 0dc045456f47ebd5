// Large files at rest (uploaded originals, up to many GB): a chunked AEAD stream, so neither
// side ever holds the whole file and every chunk is authenticated before it is released.
// Format: "CCE1" | 12-byte nonce prefix | chunks of [u32 length][ciphertext + 16-byte tag].
// Chunk i uses nonce = prefix XOR i and associated data "<context>|<i>|<last>", so chunks cannot
// be reordered, dropped, truncated at a chunk boundary or moved to another file.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';

const MAGIC = Buffer.from('CCE1');
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
export const CHUNK_BYTES = 1024 * 1024;

function nonceFor(prefix: Buffer, index: number): Buffer {
  const nonce = Buffer.from(prefix);
  nonce.writeUInt32BE((nonce.readUInt32BE(8) ^ index) >>> 0, 8);
  return nonce;
}

function sealChunk(key: Buffer, prefix: Buffer, index: number, last: boolean, context: string, plain: Buffer): Buffer {
  const cipher = createCipheriv('aes-256-gcm', key, nonceFor(prefix, index));
  cipher.setAAD(Buffer.from(`${context}|${index}|${last ? 1 : 0}`));
  const ct = Buffer.concat([cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(ct.length);
  return Buffer.concat([len, ct]);
}

/** Encrypts a byte stream. Holds at most one chunk plus one pending chunk in memory. */
export function encryptStream(key: Buffer, context: string): Transform {
  const prefix = randomBytes(NONCE_BYTES);
  let index = 0;
  let pending: Buffer = Buffer.alloc(0);
  let headerSent = false;
  const header = () => {
    if (headerSent) return Buffer.alloc(0);
    headerSent = true;
    return Buffer.concat([MAGIC, prefix]);
  };
  return new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
      const out: Buffer[] = [header()];
      // Keep the last (possibly full) chunk back: only at the end do we know it is the last.
      while (pending.length > CHUNK_BYTES) {
        out.push(sealChunk(key, prefix, index++, false, context, pending.subarray(0, CHUNK_BYTES)));
        pending = pending.subarray(CHUNK_BYTES);
      }
      cb(null, Buffer.concat(out));
    },
    flush(cb: TransformCallback) {
      cb(null, Buffer.concat([header(), sealChunk(key, prefix, index++, true, context, pending)]));
    },
  });
}

export class FileIntegrityError extends Error {
  override name = 'FileIntegrityError';
}

/** Decrypts a stream made by encryptStream; errors if anything was changed, cut or reordered. */
export function decryptStream(key: Buffer, context: string): Transform {
  let buffer: Buffer = Buffer.alloc(0);
  let prefix: Buffer | null = null;
  let index = 0;
  let sawLast = false;
  return new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      buffer = buffer.length ? Buffer.concat([buffer, chunk]) : chunk;
      const out: Buffer[] = [];
      try {
        if (!prefix) {
          if (buffer.length < MAGIC.length + NONCE_BYTES) return cb();
          if (!buffer.subarray(0, 4).equals(MAGIC)) throw new FileIntegrityError('not an encrypted material file');
          prefix = Buffer.from(buffer.subarray(4, 4 + NONCE_BYTES));
          buffer = buffer.subarray(4 + NONCE_BYTES);
        }
        for (;;) {
          if (buffer.length < 4) break;
          const len = buffer.readUInt32BE(0);
          if (len < TAG_BYTES || len > CHUNK_BYTES + TAG_BYTES) throw new FileIntegrityError('bad chunk length');
          if (buffer.length < 4 + len) break;
          if (sawLast) throw new FileIntegrityError('data after the last chunk');
          const body = buffer.subarray(4, 4 + len);
          buffer = buffer.subarray(4 + len);
          out.push(openChunk(key, prefix, index, context, body, (last) => (sawLast = last)));
          index++;
        }
      } catch (err) {
        return cb(err instanceof FileIntegrityError ? err : new FileIntegrityError('material file failed authentication'));
      }
      cb(null, Buffer.concat(out));
    },
    flush(cb: TransformCallback) {
      if (!sawLast || buffer.length > 0) return cb(new FileIntegrityError('material file is truncated'));
      cb();
    },
  });
}

function openChunk(key: Buffer, prefix: Buffer, index: number, context: string, body: Buffer, markLast: (last: boolean) => void): Buffer {
  // The writer marks the final chunk; try "not last" first (the common case), then "last".
  for (const last of [false, true]) {
    try {
      const decipher = createDecipheriv('aes-256-gcm', key, nonceFor(prefix, index));
      decipher.setAAD(Buffer.from(`${context}|${index}|${last ? 1 : 0}`));
      decipher.setAuthTag(body.subarray(body.length - TAG_BYTES));
      const plain = Buffer.concat([decipher.update(body.subarray(0, body.length - TAG_BYTES)), decipher.final()]);
      markLast(last);
      return plain;
    } catch {
      // try the other flag
    }
  }
  throw new FileIntegrityError('material file failed authentication');
}
