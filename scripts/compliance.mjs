// `npm run compliance`: runs the tests that prove each promise of the security policy
// (docs/compliance.json) and prints the matrix with PASS / FAIL per promise.
//   --check      only check that every test the matrix names exists (no test run)
//   --write-doc  regenerate the table in docs/compliance.md from docs/compliance.json
//   --only <id>[,<id>...]  run and print only these promises
// Exit 0 when every promise passes, 1 otherwise (or when a named test does not exist).
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const lib = require('./compliance-lib.cjs');
const argv = process.argv.slice(2);
const args = new Set(argv);
const matrix = lib.loadMatrix();
const onlyAt = argv.indexOf('--only');
if (onlyAt >= 0) {
  const wanted = new Set((argv[onlyAt + 1] ?? '').split(',').filter(Boolean));
  const unknown = [...wanted].filter((id) => !matrix.promises.some((p) => p.id === id));
  if (wanted.size === 0 || unknown.length > 0) {
    process.stderr.write(`--only needs promise ids of docs/compliance.json${unknown.length ? `; unknown: ${unknown.join(', ')}` : ''}\n`);
    process.exit(2);
  }
  matrix.promises = matrix.promises.filter((p) => wanted.has(p.id));
}

if (args.has('--write-doc') && onlyAt < 0) {
  const text = fs.readFileSync(lib.DOC_FILE, 'utf8');
  const current = lib.docSection(text);
  if (!current) {
    process.stderr.write(`docs/compliance.md has no ${lib.BEGIN} ... ${lib.END} section\n`);
    process.exit(1);
  }
  fs.writeFileSync(lib.DOC_FILE, text.replace(current, lib.renderDocSection(matrix)));
  process.stdout.write('docs/compliance.md: matrix regenerated\n');
  process.exit(0);
}

const missing = lib.missingTests(matrix);
for (const m of missing) process.stderr.write(`MISSING  ${m.promise}: ${m.file}: "${m.name}" (${m.reason})\n`);
if (missing.length > 0) process.exit(1);
if (args.has('--check')) {
  process.stdout.write(`${matrix.promises.length} promises, every named test exists\n`);
  process.exit(0);
}

// A test declared in a shared module (the store contract) runs in the suites that import it:
// `suite` names the one whose result counts.
const suiteOf = (t) => t.suite ?? t.file;
const files = [...new Set(matrix.promises.flatMap((p) => p.tests.map(suiteOf)))];
const names = matrix.promises.flatMap((p) => p.tests.map((t) => t.name));
const out = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'compliance-')), 'results.json');
// Whole files, not a -t pattern: several suites build on what their earlier tests created (a
// study sent over DIMSE, a browser page navigated to), so a test run alone would fail.
process.stdout.write(`running the ${files.length} files that hold the ${names.length} tests...\n`);
const run = spawnSync(
  process.execPath,
  [path.join(lib.ROOT, 'node_modules', 'jest', 'bin', 'jest.js'), '--ci', '--json', `--outputFile=${out}`, ...files],
  { cwd: lib.ROOT, stdio: ['ignore', 'ignore', 'inherit'] },
);
if (!fs.existsSync(out)) {
  process.stderr.write(`jest produced no results (exit ${run.status})\n`);
  process.exit(1);
}
const results = JSON.parse(fs.readFileSync(out, 'utf8'));
/** status by "file::title" (a title may repeat in one file only inside describe blocks). */
const status = new Map();
for (const suite of results.testResults) {
  const file = path.relative(lib.ROOT, suite.name);
  for (const a of suite.assertionResults) {
    const key = `${file}::${a.title}`;
    if (status.get(key) !== 'failed') status.set(key, a.status);
  }
  if (suite.status === 'failed' && suite.assertionResults.length === 0) status.set(`${file}::*`, 'failed');
}

const rows = matrix.promises.map((p) => {
  const states = p.tests.map((t) => status.get(`${suiteOf(t)}::${t.name}`) ?? (status.get(`${suiteOf(t)}::*`) === 'failed' ? 'failed' : 'not run'));
  const passed = states.filter((s) => s === 'passed').length;
  const verdict = passed === states.length ? 'PASS' : states.includes('failed') ? 'FAIL' : 'NOT RUN';
  const failed = p.tests.map((t, i) => [t, states[i]]).filter(([, s]) => s !== 'passed').map(([t, s]) => `${t.file}: ${t.name} (${s})`);
  return { id: p.id, seeds: p.seeds.join(','), passed, total: states.length, verdict, failed };
});
const w = Math.max(...rows.map((r) => r.id.length));
process.stdout.write(`\n${'promise'.padEnd(w)}  ${'seeds'.padEnd(20)}  tests   result\n`);
for (const r of rows) {
  process.stdout.write(`${r.id.padEnd(w)}  ${r.seeds.padEnd(20)}  ${`${r.passed}/${r.total}`.padEnd(6)}  ${r.verdict}\n`);
  for (const f of r.failed) process.stdout.write(`${' '.repeat(w)}    - ${f}\n`);
}
const ok = rows.every((r) => r.verdict === 'PASS');
process.stdout.write(`\n${rows.filter((r) => r.verdict === 'PASS').length}/${rows.length} promises proved by passing tests\n`);
process.exit(ok ? 0 : 1);
