// The README's configuration table is the operators' reference: every variable the server reads
// (src/config.ts) has a row there, and the table names no variable the server ignores.
import fs from 'node:fs';
import path from 'node:path';
import { configSchema } from '../../src/config';

test('every environment variable of src/config.ts has a row in the README configuration table, and no row is stale', () => {
  const readme = fs.readFileSync(path.join(__dirname, '..', '..', 'README.md'), 'utf8');
  const known = Object.keys(configSchema.in.shape).sort();
  // Rows start with the variable(s) in backticks: "| `A`, `B` | default | meaning |".
  const documented = new Set(
    readme
      .split('\n')
      .filter((line) => /^\| `[A-Z][A-Z0-9_]+`/.test(line))
      .flatMap((line) => [...line.split('|')[1]!.matchAll(/`([A-Z][A-Z0-9_]+)`/g)].map((m) => m[1]!)),
  );
  expect(known.filter((k) => !documented.has(k))).toEqual([]);
  // Variables read outside src/config.ts (the set-up script, the test command) may be documented too.
  const elsewhere = new Set(['MEDIASOUP_WORKER_BIN', 'MONGODB_URI', 'NODE_ENV', 'CI', 'CC_TEST_LOG_DIR']);
  expect([...documented].filter((k) => !known.includes(k) && !elsewhere.has(k))).toEqual([]);
});
