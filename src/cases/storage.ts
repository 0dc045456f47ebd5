// Material files on disk. Every path is built from validated random ids and integers, never
// from user input:
//   DATA_DIR/materials/<materialId>/original.enc             chunked AEAD (fileCrypto)
//   DATA_DIR/materials/<materialId>/tiles/<level>/<x>_<y>.jpeg   AES-256-GCM per tile
//   DATA_DIR/tmp/uploads/<materialId>.part                   plaintext upload, until converted
//   DATA_DIR/tmp/work/<materialId>/                          plaintext pyramid, until encrypted
// The plaintext areas exist only while a file is being converted and are swept at start-up.
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { decryptBuffer, encryptBuffer } from '../crypto/dataKeys';

const ID = /^[A-Za-z0-9_-]{22}$/;
const TILE = /^(\d{1,6})_(\d{1,6})\.jpeg$/;

function checkId(id: string): string {
  if (!ID.test(id)) throw new Error('invalid material id');
  return id;
}

export class MaterialStorage {
  readonly materialsDir: string;
  readonly uploadsDir: string;
  readonly workDir: string;

  constructor(dataDir: string) {
    this.materialsDir = path.join(dataDir, 'materials');
    this.uploadsDir = path.join(dataDir, 'tmp', 'uploads');
    this.workDir = path.join(dataDir, 'tmp', 'work');
    for (const dir of [this.materialsDir, this.uploadsDir, this.workDir]) fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  }

  materialDir(id: string): string {
    return path.join(this.materialsDir, checkId(id));
  }

  originalPath(id: string): string {
    return path.join(this.materialDir(id), 'original.enc');
  }

  uploadPath(id: string): string {
    return path.join(this.uploadsDir, `${checkId(id)}.part`);
  }

  conversionDir(id: string): string {
    return path.join(this.workDir, checkId(id));
  }

  tilePath(id: string, level: number, tile: string): string {
    if (!Number.isInteger(level) || level < 0 || level > 40 || !TILE.test(tile)) throw new Error('invalid tile');
    return path.join(this.materialDir(id), 'tiles', String(level), tile);
  }

  static tileContext(id: string, level: number, tile: string): string {
    return `tile:${id}/${level}/${tile}`;
  }

  static originalContext(id: string): string {
    return `original:${id}`;
  }

  async writeTile(key: Buffer, id: string, level: number, tile: string, plain: Buffer): Promise<void> {
    const file = this.tilePath(id, level, tile);
    await fsp.mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
    await fsp.writeFile(file, encryptBuffer(key, plain, MaterialStorage.tileContext(id, level, tile)), { mode: 0o600 });
  }

  /** The decrypted tile, or null if it does not exist. Throws if it was tampered with. */
  async readTile(key: Buffer, id: string, level: number, tile: string): Promise<Buffer | null> {
    let sealed: Buffer;
    try {
      sealed = await fsp.readFile(this.tilePath(id, level, tile));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
    return decryptBuffer(key, sealed, MaterialStorage.tileContext(id, level, tile));
  }

  /** Removes everything of a material: final files, plaintext upload and work area. */
  async remove(id: string): Promise<void> {
    await Promise.all([
      fsp.rm(this.materialDir(id), { recursive: true, force: true }),
      fsp.rm(this.uploadPath(id), { force: true }),
      fsp.rm(this.conversionDir(id), { recursive: true, force: true }),
    ]);
  }

  /** Ids that have files on disk (final or temporary), for the start-up sweep. */
  async idsOnDisk(): Promise<Set<string>> {
    const ids = new Set<string>();
    for (const name of await fsp.readdir(this.materialsDir)) if (ID.test(name)) ids.add(name);
    for (const name of await fsp.readdir(this.workDir)) if (ID.test(name)) ids.add(name);
    for (const name of await fsp.readdir(this.uploadsDir)) {
      const id = name.replace(/\.part$/, '');
      if (ID.test(id)) ids.add(id);
    }
    return ids;
  }

  /** Free bytes on the data volume. */
  async freeBytes(): Promise<number> {
    const stats = await fsp.statfs(this.materialsDir);
    return stats.bavail * stats.bsize;
  }
}
