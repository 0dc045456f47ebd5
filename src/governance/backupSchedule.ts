// Runs the daily backup at BACKUP_HOUR (UTC): take it, verify it (decrypt, SQLite integrity,
// every audit chain), prune to the keep policy, and record the run in the audit trail (system
// chain) and the log. A failed or unsound backup logs `alert: "backup_failed"`.
import type Database from 'better-sqlite3';
import type { AuditService } from '../audit/service';
import type { KeyRing } from '../crypto/keyring';
import type { Logger } from '../observability/logger';
import path from 'node:path';
import { backupIsSound, createBackup, pruneBackups, verifyBackup, type BackupCheck, type BackupManifest, type KeepPolicy } from './backup';

export interface BackupRunOptions {
  db: Database.Database;
  dataDir: string;
  backupDir: string;
  keyring: KeyRing;
  keep: KeepPolicy;
  audit: AuditService;
  trigger: 'schedule' | 'command';
  now?: Date;
}

export interface BackupRun {
  dir: string;
  manifest: BackupManifest;
  check: BackupCheck;
  sound: boolean;
  removed: string[];
}

export async function runBackup(o: BackupRunOptions): Promise<BackupRun> {
  const actor = { userId: null, role: 'system', ip: null, userAgent: `backup-${o.trigger}` };
  try {
    const { dir, manifest } = await createBackup({ db: o.db, dataDir: o.dataDir, backupDir: o.backupDir, keyring: o.keyring, now: o.now });
    const check = await verifyBackup(dir, o.keyring, path.join(o.dataDir, 'tmp'));
    const sound = backupIsSound(check);
    // Prune only after a sound backup: a run of failures must not delete the last good ones.
    const removed = sound ? await pruneBackups(o.backupDir, o.keep) : [];
    await o.audit.record({
      siteId: null,
      type: 'backup.create',
      action: 'E',
      outcome: sound ? 0 : 8,
      actor,
      details: { id: manifest.id, dbBytes: manifest.db.bytes, materialFiles: manifest.materials.files, materialBytes: manifest.materials.bytes, verified: sound, pruned: removed.length },
    });
    return { dir, manifest, check, sound, removed };
  } catch (err) {
    await o.audit.record({ siteId: null, type: 'backup.create', action: 'E', outcome: 12, actor, details: { error: (err as Error).message.slice(0, 200) } });
    throw err;
  }
}

/** Milliseconds from `now` to the next `hour`:00 UTC (strictly in the future). */
export function msUntilHour(now: Date, hour: number): number {
  const next = new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate(), hour, 0, 0, 0));
  if (next.getTime() <= now.getTime()) next.setUTCDate(next.getUTCDate() + 1);
  return next.getTime() - now.getTime();
}

export class BackupScheduler {
  #timer: NodeJS.Timeout | null = null;
  #running: Promise<BackupRun | null> | null = null;
  #stopped = false;

  constructor(
    private readonly options: Omit<BackupRunOptions, 'trigger' | 'now'> & { hour: number; logger: Logger },
  ) {}

  start(): void {
    if (this.#stopped || this.#timer) return;
    this.#timer = setTimeout(() => {
      this.#timer = null;
      void this.runNow().finally(() => this.start());
    }, msUntilHour(new Date(), this.options.hour));
    this.#timer.unref();
  }

  /** Runs one scheduled backup now (concurrent calls share it); never throws. */
  runNow(): Promise<BackupRun | null> {
    this.#running ??= (async () => {
      const started = Date.now();
      try {
        const run = await runBackup({ ...this.options, trigger: 'schedule' });
        const fields = { id: run.manifest.id, dbBytes: run.manifest.db.bytes, materialFiles: run.manifest.materials.files, pruned: run.removed.length, ms: Date.now() - started };
        if (run.sound) this.options.logger.info(fields, 'backup completed and verified');
        else this.options.logger.error({ ...fields, alert: 'backup_failed', check: run.check }, 'backup failed verification');
        return run;
      } catch (err) {
        this.options.logger.error({ alert: 'backup_failed', err: { message: (err as Error).message } }, 'backup failed');
        return null;
      } finally {
        this.#running = null;
      }
    })();
    return this.#running;
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    await this.#running;
  }
}
