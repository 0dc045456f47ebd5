// `npm run audit:verify [-- --site <id>]`: walks every audit hash chain and names the first
// broken record of each. Exit 0 when intact, 1 when a chain is broken, 2 on bad usage.
import { AuditService } from './service';
import { loadConfig } from '../config';
import { createStore } from '../store';

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command !== 'verify') {
    process.stderr.write('usage: audit verify [--site <siteId>]\n');
    return 2;
  }
  const siteIdx = rest.indexOf('--site');
  const site = siteIdx >= 0 ? rest[siteIdx + 1] : undefined;
  if (siteIdx >= 0 && !site) {
    process.stderr.write('usage: audit verify [--site <siteId>]\n');
    return 2;
  }
  const store = await createStore(loadConfig());
  try {
    const result = await new AuditService(store.audit).verify(site);
    for (const chain of result.chains) {
      const broken = result.breaks.find((b) => b.siteId === chain.siteId);
      process.stdout.write(
        broken
          ? `BROKEN  chain ${chain.siteId}: first broken record ${broken.recordId} (seq ${broken.seq}, ${broken.reason}); ${chain.records} records\n`
          : `ok      chain ${chain.siteId}: ${chain.records} records intact\n`,
      );
    }
    if (result.chains.length === 0) process.stdout.write('no audit records\n');
    return result.breaks.length > 0 ? 1 : 0;
  } finally {
    await store.close();
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`audit verify failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(2);
  },
);
