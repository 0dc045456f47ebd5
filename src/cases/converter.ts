// Converts uploaded images into encrypted DeepZoom pyramids, one job at a time (two cores: one
// conversion keeps the other core for requests). libvips does the work in its own threads
// (sharp), so the event loop never blocks. Progress is real: tiles written plus tiles encrypted
// over tiles expected. A crash mid-conversion is resumed at the next start (`recover`).
import { execFile } from 'node:child_process';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import sharp from 'sharp';
import type { DataKeys } from '../crypto/dataKeys';
import { encryptStream } from '../crypto/fileCrypto';
import type { Logger } from '../observability/logger';
import type { MaterialRecord, MaterialRepository } from './model';
import { MaterialStorage } from './storage';

const run = promisify(execFile);
export const TILE_SIZE = 256;
const JPEG_QUALITY = 85;
/** Share of the progress bar for building the pyramid; the rest is encrypting it. */
const BUILD_SHARE = 80;

export interface ConversionEvents {
  progress: [{ material: MaterialRecord }];
}

export type ImageSource = { kind: 'file'; path: string } | { kind: 'pipeline'; make: () => sharp.Sharp; width: number; height: number };

export function deepZoomLevels(width: number, height: number): number {
  return Math.ceil(Math.log2(Math.max(width, height))) + 1;
}

export function expectedTiles(width: number, height: number, tileSize = TILE_SIZE): number {
  const levels = deepZoomLevels(width, height);
  let total = 0;
  for (let level = 0; level < levels; level++) {
    const scale = 2 ** (levels - 1 - level);
    total += Math.ceil(Math.ceil(width / scale) / tileSize) * Math.ceil(Math.ceil(height / scale) / tileSize);
  }
  return total;
}

async function countFiles(dir: string): Promise<number> {
  let n = 0;
  let entries: fs.Dirent[];
  try {
    entries = await fsp.readdir(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const e of entries) n += e.isDirectory() ? await countFiles(path.join(dir, e.name)) : 1;
  return n;
}

let vipsCli: Promise<boolean> | null = null;
/** Debian's libvips-tools (with OpenSlide) reads SVS/NDPI slides that sharp's libvips cannot. */
function hasVipsCli(): Promise<boolean> {
  vipsCli ??= run('vips', ['--version']).then(
    () => true,
    () => false,
  );
  return vipsCli;
}

async function openSlideReadable(file: string): Promise<boolean> {
  if (!(await hasVipsCli())) return false;
  try {
    const { stdout } = await run('vipsheader', ['-f', 'vips-loader', file]);
    return stdout.trim().startsWith('openslide');
  } catch {
    return false;
  }
}

export class ConversionError extends Error {
  override name = 'ConversionError';
}

class InterruptedError extends Error {
  override name = 'InterruptedError';
}

export class MaterialConverter extends EventEmitter<ConversionEvents> {
  #queue: { material: MaterialRecord; source: ImageSource }[] = [];
  #running: Promise<void> | null = null;
  #closed = false;

  constructor(
    private readonly repo: MaterialRepository,
    private readonly storage: MaterialStorage,
    private readonly dataKeys: DataKeys,
    private readonly logger: Logger,
    private readonly onFinished: (material: MaterialRecord, outcome: 'ready' | 'failed') => Promise<void>,
  ) {
    super();
  }

  enqueue(material: MaterialRecord, source: ImageSource = { kind: 'file', path: this.storage.uploadPath(material.id) }): void {
    if (this.#closed) return;
    this.#queue.push({ material, source });
    this.#running ??= this.drain().finally(() => {
      this.#running = null;
    });
  }

  /** Resolves when the queue is empty (tests, graceful shutdown). */
  async idle(): Promise<void> {
    while (this.#running) await this.#running;
  }

  /**
   * Stops taking jobs. The running job stops at its next checkpoint without touching the store
   * again; libvips cannot be interrupted mid-pyramid, so shutdown does not wait for it. Whatever
   * was interrupted is resumed at the next start (`CaseService.recover`).
   */
  close(): void {
    this.#closed = true;
    this.#queue = [];
  }

  private checkpoint(): void {
    if (this.#closed) throw new InterruptedError();
  }

  private async drain(): Promise<void> {
    for (let job = this.#queue.shift(); job && !this.#closed; job = this.#queue.shift()) {
      await this.convert(job.material, job.source);
    }
  }

  private async setProgress(material: MaterialRecord, patch: Partial<Pick<MaterialRecord, 'status' | 'progress' | 'width' | 'height' | 'error'>>): Promise<MaterialRecord> {
    this.checkpoint();
    const updated = (await this.repo.update(material.siteId, material.id, { ...patch, updatedAt: new Date().toISOString() })) ?? { ...material, ...patch };
    this.emit('progress', { material: updated });
    return updated;
  }

  private async convert(initial: MaterialRecord, source: ImageSource): Promise<void> {
    const log = this.logger.child({ materialId: initial.id, caseId: initial.caseId });
    const workDir = this.storage.conversionDir(initial.id);
    let material = initial;
    const started = Date.now();
    try {
      // A resumed job starts from a clean slate: earlier partial output is discarded.
      await fsp.rm(workDir, { recursive: true, force: true });
      await fsp.rm(path.join(this.storage.materialDir(material.id), 'tiles'), { recursive: true, force: true });
      await fsp.mkdir(workDir, { recursive: true, mode: 0o700 });
      material = await this.setProgress(material, { status: 'converting', progress: 0 });

      const { width, height, build } = await this.plan(source, path.join(workDir, 'slide'));
      material = await this.setProgress(material, { width, height });
      const expected = expectedTiles(width, height, material.tileSize);
      const tilesDir = path.join(workDir, 'slide_files');
      let lastReported = 0;
      const report = async (done: number, share: number, offset: number) => {
        const pct = Math.min(99, Math.floor(offset + (share * done) / expected));
        if (pct > lastReported) {
          lastReported = pct;
          material = await this.setProgress(material, { progress: pct });
        }
      };
      const poll = setInterval(() => {
        countFiles(tilesDir).then((n) => report(n, BUILD_SHARE, 0), () => undefined);
      }, 250);
      try {
        await build();
      } finally {
        clearInterval(poll);
      }
      this.checkpoint();

      const { key } = await this.dataKeys.forOwner(`case:${material.caseId}`);
      let encrypted = 0;
      const levels = (await fsp.readdir(tilesDir)).filter((l) => /^\d+$/.test(l));
      for (const level of levels) {
        const levelDir = path.join(tilesDir, level);
        for (const tile of await fsp.readdir(levelDir)) {
          this.checkpoint();
          await this.storage.writeTile(key, material.id, Number(level), tile, await fsp.readFile(path.join(levelDir, tile)));
          encrypted++;
          if (encrypted % 64 === 0) await report(encrypted, 100 - BUILD_SHARE, BUILD_SHARE);
        }
      }
      if (source.kind === 'file') {
        await fsp.mkdir(this.storage.materialDir(material.id), { recursive: true, mode: 0o700 });
        const tmp = `${this.storage.originalPath(material.id)}.tmp`;
        await pipeline(fs.createReadStream(source.path), encryptStream(key, MaterialStorage.originalContext(material.id)), fs.createWriteStream(tmp, { mode: 0o600 }));
        await fsp.rename(tmp, this.storage.originalPath(material.id));
        await fsp.rm(source.path, { force: true });
      }
      await fsp.rm(workDir, { recursive: true, force: true });
      material = await this.setProgress(material, { status: 'ready', progress: 100, error: null });
      log.info({ width, height, tiles: encrypted, ms: Date.now() - started }, 'material converted');
      await this.onFinished(material, 'ready');
    } catch (err) {
      if (err instanceof InterruptedError || this.#closed) {
        log.info('conversion interrupted by shutdown; it resumes at the next start');
        return;
      }
      log.warn({ err: { name: (err as Error).name, message: (err as Error).message } }, 'material conversion failed');
      await this.storage.remove(material.id).catch(() => undefined);
      const message = err instanceof ConversionError ? err.message : 'The file could not be read as an image.';
      material = await this.setProgress(material, { status: 'failed', error: message });
      await this.onFinished(material, 'failed').catch(() => undefined);
    }
  }

  /** Reads the image's size and returns the step that writes the plaintext pyramid. */
  private async plan(source: ImageSource, outBase: string): Promise<{ width: number; height: number; build: () => Promise<void> }> {
    if (source.kind === 'pipeline') {
      return {
        width: source.width,
        height: source.height,
        build: async () => {
          await source.make().jpeg({ quality: JPEG_QUALITY }).tile({ size: TILE_SIZE, overlap: 0, layout: 'dz' }).toFile(outBase);
        },
      };
    }
    if (await openSlideReadable(source.path)) {
      const { stdout } = await run('vipsheader', ['-f', 'width', source.path]);
      const { stdout: h } = await run('vipsheader', ['-f', 'height', source.path]);
      return {
        width: Number(stdout.trim()),
        height: Number(h.trim()),
        build: async () => {
          await run('vips', ['dzsave', source.path, outBase, '--tile-size', String(TILE_SIZE), '--overlap', '0', '--suffix', `.jpeg[Q=${JPEG_QUALITY}]`], { maxBuffer: 1 << 20 });
        },
      };
    }
    const input = () => sharp(source.path, { limitInputPixels: false, failOn: 'error' });
    let meta: sharp.Metadata;
    try {
      meta = await input().metadata();
    } catch {
      throw new ConversionError('The file could not be read as an image (it may be damaged, or a slide format that needs libvips-tools with OpenSlide).');
    }
    if (!meta.width || !meta.height) throw new ConversionError('The image has no dimensions.');
    const rotated = meta.orientation !== undefined && meta.orientation >= 5;
    const width = rotated ? meta.height : meta.width;
    const height = rotated ? meta.width : meta.height;
    return {
      width,
      height,
      build: async () => {
        await input().autoOrient().flatten({ background: '#ffffff' }).jpeg({ quality: JPEG_QUALITY }).tile({ size: TILE_SIZE, overlap: 0, layout: 'dz' }).toFile(outBase);
      },
    };
  }
}
