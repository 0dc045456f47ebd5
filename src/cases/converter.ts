// Converts uploaded images into encrypted DeepZoom pyramids, one job at a time (two cores: one
// conversion keeps the other core for requests). libvips builds the plaintext pyramid in a child
// process (convertWorker.ts), so the event loop never blocks, shutdown never waits for it and a
// decoder crash cannot take the server down; this process then encrypts the tiles. Progress is
// real: tiles written plus tiles encrypted over tiles expected. A crash mid-conversion is resumed
// at the next start (`CaseService.recover`).
import { fork, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { DataKeys } from '../crypto/dataKeys';
import { encryptStream } from '../crypto/fileCrypto';
import type { Logger } from '../observability/logger';
import type { MaterialRecord, MaterialRepository } from './model';
import type { ConvertReply, ConvertRequest, ConvertSource } from './convertWorker';
import { MaterialStorage } from './storage';

export const TILE_SIZE = 256;
const JPEG_QUALITY = 85;
/** Share of the progress bar for building the pyramid; the rest is encrypting it. */
const BUILD_SHARE = 80;

export interface ConversionEvents {
  progress: [{ material: MaterialRecord }];
}

export type ImageSource = ConvertSource;

/**
 * The compiled worker. Under the test runner this module is TypeScript in src/, so the worker
 * is taken from dist/ (the set-up step compiles it before any test runs).
 */
function workerScript(): string {
  if (__filename.endsWith('.js')) return path.join(__dirname, 'convertWorker.js');
  return path.resolve(__dirname, '../../dist/cases/convertWorker.js');
}

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
  #child: ChildProcess | null = null;

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
    this.#child?.kill('SIGKILL');
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

      let expected = 1;
      let width = 0;
      let height = 0;
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
        await this.build({ source, outBase: path.join(workDir, 'slide'), tileSize: material.tileSize, quality: JPEG_QUALITY }, async (w, h) => {
          width = w;
          height = h;
          expected = expectedTiles(w, h, material.tileSize);
          material = await this.setProgress(material, { width, height });
        });
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

  /** Runs the child process for one pyramid; `onSize` gets the image size as soon as it is known. */
  private build(request: ConvertRequest, onSize: (width: number, height: number) => Promise<void>): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const child = fork(workerScript(), [], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'], serialization: 'json' });
      this.#child = child;
      let stderr = '';
      let outcome: ConvertReply | null = null;
      let sizing: Promise<void> = Promise.resolve();
      child.stderr?.on('data', (d) => (stderr = (stderr + d).slice(-2000)));
      child.on('message', (reply: ConvertReply) => {
        if (reply.type === 'size') sizing = onSize(reply.width, reply.height);
        else outcome = reply;
      });
      child.once('error', reject);
      child.once('close', (code, signal) => {
        this.#child = null;
        const result = outcome as ConvertReply | null;
        sizing.then(() => {
          if (this.#closed) reject(new InterruptedError());
          else if (result?.type === 'done') resolve();
          else if (result?.type === 'error') reject(new ConversionError('The file could not be read as an image (it may be damaged, or a slide format that needs libvips-tools with OpenSlide).'));
          else reject(new Error(`conversion process ended (${signal ?? code}): ${stderr.trim().slice(-300)}`));
        }, reject);
      });
      child.send(request);
    });
  }
}
