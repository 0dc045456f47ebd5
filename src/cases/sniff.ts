// File type by content, never by name or declared type: the first bytes of the upload.
export type SniffedType = 'image/jpeg' | 'image/png' | 'image/tiff';

/** Bytes needed to decide. */
export const SNIFF_BYTES = 8;

export function sniffImageType(head: Buffer): SniffedType | null {
  if (head.length >= 3 && head[0] === 0xff && head[1] === 0xd8 && head[2] === 0xff) return 'image/jpeg';
  if (head.length >= 8 && head.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))) return 'image/png';
  if (head.length >= 4) {
    const order = head.toString('latin1', 0, 2);
    const magic = order === 'II' ? head.readUInt16LE(2) : order === 'MM' ? head.readUInt16BE(2) : -1;
    // 42: classic TIFF (also SVS and NDPI slides); 43: BigTIFF.
    if (magic === 42 || magic === 43) return 'image/tiff';
  }
  return null;
}
