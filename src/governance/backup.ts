// Online, encrypted backups of the embedded store (seed 000: "the last 7 day back-ups and 5
// week back-ups"; seed 004: daily backups, stored encrypted, verified regularly).
//
// A backup is a directory BACKUP_DIR/<UTC stamp>-<random>/ holding:
//   db.sqlite.enc  the SQLite online backup (better-sqlite3 .backup(): consistent while the node
//                  writes), encrypted with a fresh key (chunked AES-256-GCM, src/crypto/fileCrypto)
//   materials/     the materials directory as it is on disk (already encrypted per file)
//   manifest.json  format, times, the backup key wrapped under the current master key, sizes,
//                  the ciphertext's SHA-256, and every audit chain's head (seq and hash)
// The master key is never in a backup: keep MASTER_KEY_FILE apart (a stolen backup is useless
// without it, and a lost key makes every backup useless).
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import Database from 'better-sqlite3';
import { checkLink } from '../audit/chain';
import type { AuditRecord } from '../audit/model';
import { decryptStream, encryptStream } from '../crypto/fileCrypto';
import type { KeyRing } from '../crypto/keyring';
import { SQLITE_FILE } from '../store';

export const BACKUP_FORMAT = 'case-collab-backup/1';
const DB_FILE = 'db.sqlite.enc';
const MANIFEST = 'manifest.json';
const NAME = /^\d{8}T\d{6}Z-[a-z0-9]{6}$/;

export interface ChainHead {
  siteId: string;
  seq: number;
  hash: string;
}

export interface BackupManifest {
  format: typeof BACKUP_FORMAT;
  id: string;
  createdAt: string;
  store: 'sqlite';
  schemaVersion: number;
  db: { file: string; bytes: number; sha256: string };
  key: { wrapped: string; kekId: string };
  /** `linked`: files shared (hard links) with the previous backup, unchanged since. */
  materials: { files: number; bytes: number; linked?: number };
  auditChains: ChainHead[];
}

export interface BackupCheck {
  id: string;
  integrity: 'ok' | string;
  chains: { siteId: string; records: number; intact: boolean; firstBreakSeq: number | null }[];
  counts: { sites: number; users: number; cases: number; materials: number; annotations: number; chatMessages: number; auditRecords: number };
  missingMaterialFiles: number;
}

function stampOf(date: Date): string {
  return date.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}Z$/, 'Z');
}

function keyContext(id: string): string {
  return `backup:${id}`;
}

function sha256Tap(onDone: (hex: string, bytes: number) => void): Transform {
  const hash = createHash('sha256');
  let bytes = 0;
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      bytes += chunk.length;
      cb(null, chunk);
    },
    flush(cb) {
      onDone(hash.digest('hex'), bytes);
      cb();
    },
  });
}

/**
 * Copies a directory tree. With `previous` (the same tree in the last backup), a file whose size
 * and modification time are unchanged is hard-linked to the previous backup's copy instead of
 * copied: material files never change once written, so a daily backup costs only the new ones
 * (as rsync --link-dest). Deleting an old backup removes only its names.
 */
async function copyTree(from: string, to: string, previous: string | null = null): Promise<{ files: number; bytes: number; linked: number }> {
  const total = { files: 0, bytes: 0, linked: 0 };
  if (!fs.existsSync(from)) return total;
  await fs.promises.mkdir(to, { recursive: true, mode: 0o700 });
  for (const entry of await fs.promises.readdir(from, { withFileTypes: true })) {
    const src = path.join(from, entry.name);
    const dst = path.join(to, entry.name);
    const prev = previous ? path.join(previous, entry.name) : null;
    if (entry.isDirectory()) {
      const sub = await copyTree(src, dst, prev && fs.existsSync(prev) ? prev : null);
      total.files += sub.files;
      total.bytes += sub.bytes;
      total.linked += sub.linked;
    } else if (entry.isFile()) {
      try {
        const stat = await fs.promises.stat(src);
        const old = prev ? await fs.promises.stat(prev).catch(() => null) : null;
        let linked = false;
        // Millisecond precision: utimes cannot carry the nanoseconds every file system keeps.
        if (old && old.size === stat.size && Math.floor(old.mtimeMs) === Math.floor(stat.mtimeMs)) {
          linked = await fs.promises.link(prev!, dst).then(
            () => true,
            () => false,
          );
        }
        if (!linked) {
          await fs.promises.copyFile(src, dst);
          // Keep the source's time, so tomorrow's backup can recognise the file as unchanged.
          await fs.promises.utimes(dst, stat.atimeMs / 1000, stat.mtimeMs / 1000);
        }
        total.files++;
        total.bytes += stat.size;
        if (linked) total.linked++;
      } catch (err) {
        // Deleted meanwhile (retention purge, material delete): the record is gone too, or will be.
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
        throw err;
      }
    }
  }
  return total;
}

function chainHeads(db: Database.Database): ChainHead[] {
  return db
    .prepare('SELECT site_id AS siteId, seq, hash FROM audit_events e WHERE seq = (SELECT MAX(seq) FROM audit_events WHERE site_id = e.site_id) ORDER BY site_id')
    .all() as ChainHead[];
}

function schemaVersion(db: Database.Database): number {
  return (db.prepare('SELECT MAX(version) AS v FROM schema_migrations').get() as { v: number }).v;
}

export interface CreateBackupOptions {
  /** The live store's connection (the node's own, or one the CLI opened). */
  db: Database.Database;
  dataDir: string;
  backupDir: string;
  keyring: KeyRing;
  now?: Date;
}

/** Takes one backup; returns its directory and manifest. Safe while the node serves requests. */
export async function createBackup(options: CreateBackupOptions): Promise<{ dir: string; manifest: BackupManifest }> {
  const now = options.now ?? new Date();
  const id = `${stampOf(now)}-${randomBytes(4).readUInt32BE(0).toString(36).padStart(6, '0').slice(-6)}`;
  await fs.promises.mkdir(options.backupDir, { recursive: true, mode: 0o700 });
  const partial = path.join(options.backupDir, `.partial-${id}`);
  await fs.promises.mkdir(partial, { mode: 0o700 });
  // The plaintext snapshot lives beside the live database (same volume, same protection) only
  // for the time it takes to encrypt it.
  const tmpDir = path.join(options.dataDir, 'tmp');
  await fs.promises.mkdir(tmpDir, { recursive: true, mode: 0o700 });
  const plain = path.join(tmpDir, `backup-${id}.sqlite`);
  try {
    await options.db.backup(plain);
    const snapshot = new Database(plain, { readonly: true });
    let heads: ChainHead[];
    let version: number;
    try {
      heads = chainHeads(snapshot);
      version = schemaVersion(snapshot);
    } finally {
      snapshot.close();
    }
    const key = randomBytes(32);
    const wrapped = options.keyring.wrap(key, keyContext(id));
    let digest = '';
    let bytes = 0;
    await pipeline(
      fs.createReadStream(plain),
      encryptStream(key, `${keyContext(id)}:db`),
      sha256Tap((hex, n) => {
        digest = hex;
        bytes = n;
      }),
      fs.createWriteStream(path.join(partial, DB_FILE), { mode: 0o600 }),
    );
    // Materials after the database: a file the snapshot refers to was written before it (files
    // are complete before their record says so), so it is there to copy.
    const previous = listBackups(options.backupDir).sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime())[0];
    const materials = await copyTree(path.join(options.dataDir, 'materials'), path.join(partial, 'materials'), previous ? path.join(previous.dir, 'materials') : null);
    const manifest: BackupManifest = {
      format: BACKUP_FORMAT,
      id,
      createdAt: now.toISOString(),
      store: 'sqlite',
      schemaVersion: version,
      db: { file: DB_FILE, bytes, sha256: digest },
      key: { wrapped: wrapped.wrapped, kekId: wrapped.kekId },
      materials,
      auditChains: heads,
    };
    await fs.promises.writeFile(path.join(partial, MANIFEST), JSON.stringify(manifest, null, 2), { mode: 0o600 });
    // The rename marks the backup complete: a crash before it leaves only a .partial- directory.
    const dir = path.join(options.backupDir, id);
    await fs.promises.rename(partial, dir);
    return { dir, manifest };
  } catch (err) {
    await fs.promises.rm(partial, { recursive: true, force: true });
    throw err;
  } finally {
    await fs.promises.rm(plain, { force: true });
  }
}

export function readManifest(dir: string): BackupManifest {
  const file = path.join(dir, MANIFEST);
  if (!fs.existsSync(file)) throw new Error(`${dir} is not a backup (no ${MANIFEST})`);
  const manifest = JSON.parse(fs.readFileSync(file, 'utf8')) as BackupManifest;
  if (manifest.format !== BACKUP_FORMAT) throw new Error(`${dir}: unknown backup format ${String(manifest.format)}`);
  return manifest;
}

/** Decrypts the backup's database into `target`, checking the ciphertext digest on the way. */
async function decryptDatabase(dir: string, manifest: BackupManifest, keyring: KeyRing, target: string): Promise<void> {
  let key: Buffer;
  try {
    key = keyring.unwrap(manifest.key.wrapped, manifest.key.kekId, keyContext(manifest.id));
  } catch (err) {
    throw new Error(`cannot open backup ${manifest.id}: master key ${manifest.key.kekId} is needed (${(err as Error).message}); use the key file that was current when the backup was taken`);
  }
  let digest = '';
  await pipeline(
    fs.createReadStream(path.join(dir, manifest.db.file)),
    sha256Tap((hex) => {
      digest = hex;
    }),
    decryptStream(key, `${keyContext(manifest.id)}:db`),
    fs.createWriteStream(target, { mode: 0o600 }),
  );
  if (digest !== manifest.db.sha256) throw new Error(`backup ${manifest.id}: database file does not match its manifest digest`);
}

function walkChain(db: Database.Database, siteId: string): { records: number; firstBreakSeq: number | null } {
  let prev: AuditRecord | null = null;
  let records = 0;
  let firstBreakSeq: number | null = null;
  const rows = db.prepare('SELECT * FROM audit_events WHERE site_id = ? ORDER BY seq').iterate(siteId) as IterableIterator<Record<string, string | number>>;
  for (const r of rows) {
    const record: AuditRecord = {
      id: r.id as string,
      siteId: r.site_id as string,
      seq: r.seq as number,
      type: r.type as string,
      action: r.action as AuditRecord['action'],
      outcome: r.outcome as AuditRecord['outcome'],
      time: r.time as string,
      actor: JSON.parse(r.actor as string),
      objects: JSON.parse(r.objects as string),
      details: JSON.parse(r.details as string),
      prevHash: r.prev_hash as string,
      hash: r.hash as string,
    };
    records++;
    if (firstBreakSeq === null && checkLink(prev, record)) firstBreakSeq = record.seq;
    prev = record;
  }
  return { records, firstBreakSeq };
}

/** Checks an opened database: SQLite integrity, every audit chain, record counts, material files. */
function checkDatabase(db: Database.Database, id: string, materialsDir: string, expectedHeads: ChainHead[]): BackupCheck {
  const integrity = (db.pragma('integrity_check', { simple: true }) as string) ?? 'unknown';
  const sites = (db.prepare('SELECT DISTINCT site_id AS s FROM audit_events ORDER BY site_id').all() as { s: string }[]).map((r) => r.s);
  const chains = sites.map((siteId) => {
    const walked = walkChain(db, siteId);
    return { siteId, records: walked.records, intact: walked.firstBreakSeq === null, firstBreakSeq: walked.firstBreakSeq };
  });
  for (const head of expectedHeads) {
    const row = db.prepare('SELECT hash FROM audit_events WHERE site_id = ? AND seq = ?').get(head.siteId, head.seq) as { hash: string } | undefined;
    if (!row || row.hash !== head.hash) {
      const chain = chains.find((c) => c.siteId === head.siteId);
      if (chain) chain.intact = false;
      else chains.push({ siteId: head.siteId, records: 0, intact: false, firstBreakSeq: head.seq });
    }
  }
  const count = (table: string) => (db.prepare(`SELECT COUNT(*) AS n FROM ${table}`).get() as { n: number }).n;
  const readyMaterials = db.prepare("SELECT id FROM materials WHERE status = 'ready'").all() as { id: string }[];
  const missingMaterialFiles = readyMaterials.filter((m) => !fs.existsSync(path.join(materialsDir, m.id, 'original.enc'))).length;
  return {
    id,
    integrity,
    chains,
    counts: {
      sites: count('sites'),
      users: count('users'),
      cases: count('cases'),
      materials: count('materials'),
      annotations: count('annotations'),
      chatMessages: count('chat_messages'),
      auditRecords: count('audit_events'),
    },
    missingMaterialFiles,
  };
}

export function backupIsSound(check: BackupCheck): boolean {
  return check.integrity === 'ok' && check.chains.every((c) => c.intact) && check.missingMaterialFiles === 0;
}

/** Verifies a backup without restoring it: decrypts to a temporary file, checks, deletes it. */
export async function verifyBackup(dir: string, keyring: KeyRing, tmpDir: string): Promise<BackupCheck> {
  const manifest = readManifest(dir);
  await fs.promises.mkdir(tmpDir, { recursive: true, mode: 0o700 });
  const plain = path.join(tmpDir, `verify-${manifest.id}-${randomBytes(4).toString('hex')}.sqlite`);
  try {
    await decryptDatabase(dir, manifest, keyring, plain);
    const db = new Database(plain, { readonly: true });
    try {
      return checkDatabase(db, manifest.id, path.join(dir, 'materials'), manifest.auditChains);
    } finally {
      db.close();
    }
  } finally {
    await fs.promises.rm(plain, { force: true });
  }
}

/**
 * Restores a backup into `dataDir`, which must not hold a database yet. The master key file
 * (the caller's keyring) must contain the key the backup was wrapped under.
 */
export async function restoreBackup(dir: string, dataDir: string, keyring: KeyRing): Promise<BackupCheck> {
  const manifest = readManifest(dir);
  const target = path.join(dataDir, SQLITE_FILE);
  if (fs.existsSync(target)) throw new Error(`${target} exists: restore into an empty data directory (move the old one aside first)`);
  await fs.promises.mkdir(dataDir, { recursive: true, mode: 0o700 });
  const partial = `${target}.restoring`;
  await fs.promises.rm(partial, { force: true });
  await decryptDatabase(dir, manifest, keyring, partial);
  await copyTree(path.join(dir, 'materials'), path.join(dataDir, 'materials'));
  const db = new Database(partial);
  let check: BackupCheck;
  try {
    check = checkDatabase(db, manifest.id, path.join(dataDir, 'materials'), manifest.auditChains);
  } finally {
    db.close();
  }
  if (!backupIsSound(check)) {
    await fs.promises.rm(partial, { force: true });
    throw Object.assign(new Error(`backup ${manifest.id} failed its checks; nothing was restored`), { check });
  }
  await fs.promises.rename(partial, target);
  return check;
}

export interface KeepPolicy {
  daily: number;
  weekly: number;
}

/** ISO 8601 week ("2026-W48") of a UTC date. */
export function isoWeek(date: Date): string {
  const d = new Date(Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), date.getUTCDate()));
  const day = d.getUTCDay() || 7;
  d.setUTCDate(d.getUTCDate() + 4 - day);
  const yearStart = Date.UTC(d.getUTCFullYear(), 0, 1);
  const week = Math.ceil(((d.getTime() - yearStart) / 86_400_000 + 1) / 7);
  return `${d.getUTCFullYear()}-W${String(week).padStart(2, '0')}`;
}

/** Which backups a keep policy retains: the newest of each of the last N days and M ISO weeks. */
export function backupsToKeep(createdAt: { id: string; createdAt: Date }[], keep: KeepPolicy): Set<string> {
  const newestFirst = [...createdAt].sort((a, b) => b.createdAt.getTime() - a.createdAt.getTime());
  const kept = new Set<string>();
  const days = new Set<string>();
  const weeks = new Set<string>();
  for (const b of newestFirst) {
    const day = b.createdAt.toISOString().slice(0, 10);
    if (!days.has(day) && days.size < keep.daily) {
      days.add(day);
      kept.add(b.id);
    }
    const week = isoWeek(b.createdAt);
    if (!weeks.has(week) && weeks.size < keep.weekly) {
      weeks.add(week);
      kept.add(b.id);
    }
  }
  return kept;
}

export function listBackups(backupDir: string): { id: string; dir: string; createdAt: Date }[] {
  if (!fs.existsSync(backupDir)) return [];
  const found: { id: string; dir: string; createdAt: Date }[] = [];
  for (const name of fs.readdirSync(backupDir)) {
    if (!NAME.test(name)) continue;
    try {
      found.push({ id: name, dir: path.join(backupDir, name), createdAt: new Date(readManifest(path.join(backupDir, name)).createdAt) });
    } catch {
      // Being pruned by another node sharing the directory, or not a backup: not ours to list.
    }
  }
  return found;
}

/** Deletes the backups the policy does not keep, and partial leftovers of crashed runs. */
export async function pruneBackups(backupDir: string, keep: KeepPolicy): Promise<string[]> {
  const all = listBackups(backupDir);
  const kept = backupsToKeep(all, keep);
  const removed: string[] = [];
  for (const b of all) {
    if (kept.has(b.id)) continue;
    await fs.promises.rm(b.dir, { recursive: true, force: true });
    removed.push(b.id);
  }
  if (fs.existsSync(backupDir)) {
    for (const name of fs.readdirSync(backupDir)) {
      if (name.startsWith('.partial-')) {
        const stat = fs.statSync(path.join(backupDir, name));
        if (Date.now() - stat.mtimeMs > 24 * 3600_000) await fs.promises.rm(path.join(backupDir, name), { recursive: true, force: true });
      }
    }
  }
  return removed;
}
