// The chunked AEAD file format: round trips of any size, and every kind of tampering refused.
import { randomBytes } from 'node:crypto';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { CHUNK_BYTES, decryptStream, encryptStream } from '../../src/crypto/fileCrypto';

const key = randomBytes(32);

async function run(input: Buffer, transform: () => NodeJS.ReadWriteStream, pieces = 7): Promise<Buffer> {
  const out: Buffer[] = [];
  const step = Math.max(1, Math.ceil(input.length / pieces));
  const parts = Array.from({ length: Math.ceil(input.length / step) || 1 }, (_, i) => input.subarray(i * step, (i + 1) * step));
  await pipeline(
    Readable.from(parts),
    transform(),
    new Writable({
      write(chunk, _e, cb) {
        out.push(chunk);
        cb();
      },
    }),
  );
  return Buffer.concat(out);
}

const encrypt = (b: Buffer, ctx = 'original:a') => run(b, () => encryptStream(key, ctx));
const decrypt = (b: Buffer, ctx = 'original:a') => run(b, () => decryptStream(key, ctx), 13);

test.each([0, 1, CHUNK_BYTES - 1, CHUNK_BYTES, CHUNK_BYTES + 1, 3 * CHUNK_BYTES + 12345])('round trip of %i bytes', async (size) => {
  const plain = randomBytes(size);
  const sealed = await encrypt(plain);
  expect(sealed.includes(plain.subarray(0, Math.min(64, size))) && size >= 64).toBe(false);
  expect(Buffer.compare(await decrypt(sealed), plain)).toBe(0);
});

describe('tampering is detected', () => {
  let plain: Buffer;
  let sealed: Buffer;
  beforeAll(async () => {
    plain = randomBytes(2 * CHUNK_BYTES + 100);
    sealed = await encrypt(plain);
  });
  const chunkLen = CHUNK_BYTES + 16 + 4;
  const headerLen = 16;

  test('a flipped byte', async () => {
    const bad = Buffer.from(sealed);
    bad[headerLen + 100]! ^= 1;
    await expect(decrypt(bad)).rejects.toThrow(/authentication/);
  });
  test('truncation at a chunk boundary (the last chunk dropped)', async () => {
    await expect(decrypt(sealed.subarray(0, headerLen + 2 * chunkLen))).rejects.toThrow(/truncated/);
  });
  test('two chunks swapped', async () => {
    const a = sealed.subarray(headerLen, headerLen + chunkLen);
    const b = sealed.subarray(headerLen + chunkLen, headerLen + 2 * chunkLen);
    const swapped = Buffer.concat([sealed.subarray(0, headerLen), b, a, sealed.subarray(headerLen + 2 * chunkLen)]);
    await expect(decrypt(swapped)).rejects.toThrow(/authentication/);
  });
  test('data appended after the last chunk', async () => {
    await expect(decrypt(Buffer.concat([sealed, sealed.subarray(headerLen, headerLen + 200)]))).rejects.toThrow();
  });
  test('a file moved to another material (other context)', async () => {
    await expect(decrypt(sealed, 'original:b')).rejects.toThrow(/authentication/);
  });
});
