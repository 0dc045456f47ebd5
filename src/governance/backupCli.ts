// Backup commands against the embedded store (same environment as the server):
//   npm run backup                              take a backup now into BACKUP_DIR, verify, prune
//   npm run restore -- <backup dir> <data dir>  restore into an empty data directory
//   node dist/governance/backupCli.js verify <backup dir> | list
// Exit 0 on success, 1 when a backup is unsound or a restore fails its checks, 2 on bad usage.
// MongoDB deployments back up with mongodump (docs/operations.md), not with this command.
import fs from 'node:fs';
import path from 'node:path';
import { loadConfig } from '../config';
import { KeyRing } from '../crypto/keyring';
import { AuditService } from '../audit/service';
import { SQLITE_FILE } from '../store';
import { SqliteStore } from '../store/sqlite';
import { backupIsSound, listBackups, restoreBackup, verifyBackup, type BackupCheck } from './backup';
import { runBackup } from './backupSchedule';

const USAGE = 'usage: backup | restore <backup dir> <data dir> | verify <backup dir> | list\n';

function printCheck(check: BackupCheck): void {
  const c = check.counts;
  process.stdout.write(`database integrity: ${check.integrity}\n`);
  process.stdout.write(`records: ${c.sites} sites, ${c.users} users, ${c.cases} cases, ${c.materials} materials, ${c.annotations} annotations, ${c.chatMessages} chat messages, ${c.auditRecords} audit records\n`);
  for (const chain of check.chains) {
    process.stdout.write(chain.intact ? `ok      audit chain ${chain.siteId}: ${chain.records} records intact\n` : `BROKEN  audit chain ${chain.siteId}: first broken record seq ${chain.firstBreakSeq ?? '?'}\n`);
  }
  if (check.missingMaterialFiles > 0) process.stdout.write(`MISSING ${check.missingMaterialFiles} material file(s)\n`);
}

/** The key file for a restore: MASTER_KEY_FILE, else <data dir>/master.key; never created here. */
function restoreKeyring(dataDir: string): KeyRing {
  const file = process.env.MASTER_KEY_FILE?.trim() || path.join(dataDir, 'master.key');
  if (!fs.existsSync(file)) {
    throw new Error(`no master key file at ${file}: copy the key file that was current when the backup was taken there (or set MASTER_KEY_FILE)`);
  }
  return KeyRing.open(file);
}

async function main(argv: string[]): Promise<number> {
  const [command, ...args] = argv;
  if (command === 'restore') {
    if (args.length !== 2) {
      process.stderr.write(USAGE);
      return 2;
    }
    const [backupDir, dataDir] = args.map((a) => path.resolve(a!)) as [string, string];
    const check = await restoreBackup(backupDir, dataDir, restoreKeyring(dataDir));
    printCheck(check);
    process.stdout.write(`restored ${path.basename(backupDir)} into ${dataDir}; start the server with DATA_DIR=${dataDir}\n`);
    return 0;
  }
  const config = loadConfig();
  if (command === 'list') {
    for (const b of listBackups(config.governance.backupDir)) process.stdout.write(`${b.id}  ${b.createdAt.toISOString()}  ${b.dir}\n`);
    return 0;
  }
  if (command === 'verify') {
    if (args.length !== 1) {
      process.stderr.write(USAGE);
      return 2;
    }
    const check = await verifyBackup(path.resolve(args[0]!), KeyRing.open(config.masterKeyFile), path.join(config.dataDir, 'tmp'));
    printCheck(check);
    return backupIsSound(check) ? 0 : 1;
  }
  if (command !== 'backup' || args.length > 0) {
    process.stderr.write(USAGE);
    return 2;
  }
  if (config.mongodbUri) {
    process.stderr.write('MONGODB_URI is set: back up MongoDB with mongodump --oplog (docs/operations.md, "Backups")\n');
    return 2;
  }
  const file = path.join(config.dataDir, SQLITE_FILE);
  if (!fs.existsSync(file)) throw new Error(`no database at ${file} (check DATA_DIR)`);
  const store = SqliteStore.open(file);
  try {
    const run = await runBackup({
      db: store.db,
      dataDir: config.dataDir,
      backupDir: config.governance.backupDir,
      keyring: KeyRing.open(config.masterKeyFile),
      keep: config.governance.backupKeep,
      audit: new AuditService(store.audit),
      trigger: 'command',
    });
    printCheck(run.check);
    process.stdout.write(`${run.sound ? 'backup' : 'UNSOUND backup'} ${run.dir}: database ${run.manifest.db.bytes} bytes (encrypted), ${run.manifest.materials.files} material files; ${run.removed.length} old backup(s) pruned\n`);
    return run.sound ? 0 : 1;
  } finally {
    await store.close();
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`${process.argv[2] ?? 'backup'} failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
