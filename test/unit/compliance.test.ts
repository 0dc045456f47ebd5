// The compliance matrix stays executable: every promise names tests that exist (by file and
// exact title), every seed has promises, and docs/compliance.md shows the matrix as it is.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const lib = require('../../scripts/compliance-lib.cjs') as {
  ROOT: string;
  DOC_FILE: string;
  loadMatrix(file?: string): Matrix;
  declaredTitles(source: string): Set<string>;
  missingTests(matrix: Matrix, root?: string): { promise: string; file: string; name: string; reason: string }[];
  renderDocSection(matrix: Matrix): string;
  docSection(text: string): string | null;
};

interface Matrix {
  seeds: Record<string, string>;
  promises: { id: string; seeds: string[]; promise: string; tests: { file: string; name: string }[] }[];
}

const matrix = lib.loadMatrix();

test('every test the matrix names exists, by file and exact title', () => {
  expect(matrix.promises.length).toBeGreaterThanOrEqual(20);
  expect(lib.missingTests(matrix)).toEqual([]);
});

test('a promise naming a test that does not exist is reported, as is a missing file', () => {
  const broken: Matrix = {
    seeds: matrix.seeds,
    promises: [
      { id: 'real', seeds: ['000'], promise: 'x', tests: [matrix.promises[0]!.tests[0]!] },
      { id: 'renamed', seeds: ['000'], promise: 'x', tests: [{ file: matrix.promises[0]!.tests[0]!.file, name: 'a test title nobody wrote' }] },
      { id: 'gone', seeds: ['000'], promise: 'x', tests: [{ file: 'test/integration/no-such-file.test.ts', name: 'anything' }] },
      { id: 'empty', seeds: ['000'], promise: 'x', tests: [] },
    ],
  };
  expect(lib.missingTests(broken).map((m) => [m.promise, m.reason])).toEqual([
    ['renamed', 'no test with this exact title in the file'],
    ['gone', 'no such file'],
    ['empty', 'no test named'],
  ]);
});

test('titles are read from test() and it() literals, escapes included', () => {
  const titles = lib.declaredTitles(`test('an idle session\\'s socket', () => {});\n  it("double \\"quoted\\"", async () => {});\ntest(\`template\`, () => {});\nconst x = 'not a test';`);
  expect([...titles]).toEqual(["an idle session's socket", 'double "quoted"', 'template']);
});

test('every seed has promises, and every promise cites known seeds', () => {
  const seedFiles = fs.existsSync('/work/shared/seeds') ? fs.readdirSync('/work/shared/seeds').map((f) => f.slice(0, 3)) : Object.keys(matrix.seeds);
  for (const seed of seedFiles) expect([seed, Object.keys(matrix.seeds)]).toEqual([seed, expect.arrayContaining([seed])]);
  for (const seed of Object.keys(matrix.seeds)) {
    // 002 (ImageExpres) promises HTTPS only: covered by encryption-in-transit.
    expect([seed, matrix.promises.some((p) => p.seeds.includes(seed))]).toEqual([seed, true]);
  }
  for (const p of matrix.promises) for (const s of p.seeds) expect(Object.keys(matrix.seeds)).toContain(s);
  expect(new Set(matrix.promises.map((p) => p.id)).size).toBe(matrix.promises.length);
});

test('docs/compliance.md shows the matrix generated from docs/compliance.json', () => {
  const section = lib.docSection(fs.readFileSync(lib.DOC_FILE, 'utf8'));
  expect(section).toBe(lib.renderDocSection(matrix));
  // And the check notices a stale table.
  const edited = { ...matrix, promises: matrix.promises.slice(1) };
  const tmp = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'compliance-')), 'm.json');
  fs.writeFileSync(tmp, JSON.stringify(edited));
  expect(lib.renderDocSection(lib.loadMatrix(tmp))).not.toBe(section);
});

test('SECURITY.md says how to report a vulnerability and when the reporter hears back', () => {
  const text = fs.readFileSync(path.join(lib.ROOT, 'SECURITY.md'), 'utf8');
  expect(text).toMatch(/^## Reporting a vulnerability$/m);
  expect(text).toMatch(/acknowledgement within \d+ (working days|hours)/);
  expect(text).toMatch(/^## Operator contacts$/m);
  expect(text).toMatch(/Security contact of this deployment/);
});
