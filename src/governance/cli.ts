// Operator commands against the configured store (same env as the server):
//   retention:purge      purge expired cases of every site now
//   keys:rotate          add a new master key, re-wrap every data key under it, retire the old
// Both are safe while servers run: see docs/operations.md.
import { randomBytes } from 'node:crypto';
import { AuditService } from '../audit/service';
import { MaterialConverter } from '../cases/converter';
import { CaseService } from '../cases/service';
import { MaterialStorage } from '../cases/storage';
import { loadConfig } from '../config';
import { DataKeys, rewrapAll } from '../crypto/dataKeys';
import { KeyRing, writeKeyFile } from '../crypto/keyring';
import { MASTER_KEY_BYTES } from '../crypto/masterKey';
import { createLogger } from '../observability/logger';
import { createStore } from '../store';
import { RetentionService } from './retention';

async function main(command: string | undefined): Promise<number> {
  if (command !== 'purge' && command !== 'rotate-keys') {
    process.stderr.write('usage: governance purge | rotate-keys\n');
    return 2;
  }
  const config = loadConfig();
  const logger = createLogger(config.logLevel === 'info' ? 'warn' : config.logLevel);
  const store = await createStore(config);
  try {
    const keyring = KeyRing.open(config.masterKeyFile);
    const audit = new AuditService(store.audit);
    const system = { userId: null, role: 'system', ip: null, userAgent: `cli:${command}` };
    if (command === 'rotate-keys') {
      const old = keyring.all.map((k) => k.key);
      // 1. The new key goes first; running servers pick it up when they next wrap or unwrap.
      writeKeyFile(config.masterKeyFile, [randomBytes(MASTER_KEY_BYTES), ...old]);
      keyring.refresh();
      // 2. Every data key is re-wrapped under it (row by row, compare-and-swap).
      const rewrapped = await rewrapAll(store.dataKeys, keyring);
      // 3. Old keys are retired once nothing is wrapped under them any more.
      const counts = await store.dataKeys.countByKek();
      const stillUsed = keyring.all.filter((k, i) => i === 0 || (counts[k.id] ?? 0) > 0);
      writeKeyFile(config.masterKeyFile, stillUsed.map((k) => k.key));
      await audit.record({ siteId: null, type: 'keys.rotate', action: 'E', actor: system, details: { rewrapped, newKekId: keyring.current.id, retired: keyring.all.length - stillUsed.length } });
      process.stdout.write(`master key rotated: new key ${keyring.current.id}; ${rewrapped} data keys re-wrapped; ${keyring.all.length - stillUsed.length} old key(s) retired\n`);
      return 0;
    }
    const storage = new MaterialStorage(config.dataDir);
    const dataKeys = new DataKeys(store.dataKeys, keyring);
    const converter = new MaterialConverter(store.materials, storage, dataKeys, logger, async () => undefined);
    const cases = new CaseService(store, audit, dataKeys, storage, converter, config.upload);
    const reports = await new RetentionService(store, audit, cases, logger).purgeAll('command');
    for (const r of reports) process.stdout.write(`site ${r.siteId}: ${r.cases} case(s), ${r.materials} material(s) purged (created before ${r.cutoff})\n`);
    return 0;
  } finally {
    await store.close();
  }
}

main(process.argv[2]).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`${process.argv[2] ?? 'command'} failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
