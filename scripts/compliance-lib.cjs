// The executable compliance matrix (docs/compliance.json): each promise of the seed policies
// with the tests that prove it. Shared by `npm run compliance` (scripts/compliance.mjs), the
// generated table in docs/compliance.md, and the unit test that keeps both honest.
'use strict';
const fs = require('node:fs');
const path = require('node:path');

const ROOT = path.resolve(__dirname, '..');
const MATRIX_FILE = path.join(ROOT, 'docs', 'compliance.json');
const DOC_FILE = path.join(ROOT, 'docs', 'compliance.md');
const BEGIN = '<!-- compliance-matrix:begin (generated from docs/compliance.json by `node scripts/compliance.mjs --write-doc`) -->';
const END = '<!-- compliance-matrix:end -->';

function loadMatrix(file = MATRIX_FILE) {
  return JSON.parse(fs.readFileSync(file, 'utf8'));
}

/** The titles of every test()/it() declared with a string literal in a test file. */
function declaredTitles(source) {
  const titles = new Set();
  const re = /\b(?:test|it)(?:\.only|\.concurrent)?\(\s*(['"`])((?:\\.|(?!\1)[^\\])*)\1/g;
  for (let m = re.exec(source); m; m = re.exec(source)) {
    titles.add(m[2].replace(/\\(.)/g, '$1'));
  }
  return titles;
}

/** Every test id the matrix names that does not exist, with the reason. */
function missingTests(matrix, root = ROOT) {
  const missing = [];
  const cache = new Map();
  for (const promise of matrix.promises) {
    if (!promise.tests || promise.tests.length === 0) missing.push({ promise: promise.id, file: '-', name: '-', reason: 'no test named' });
    for (const t of promise.tests ?? []) {
      const file = path.join(root, t.file);
      if (!cache.has(file)) cache.set(file, fs.existsSync(file) ? declaredTitles(fs.readFileSync(file, 'utf8')) : null);
      const titles = cache.get(file);
      if (t.suite && !fs.existsSync(path.join(root, t.suite))) missing.push({ promise: promise.id, file: t.suite, name: t.name, reason: 'no such suite' });
      if (titles === null) missing.push({ promise: promise.id, file: t.file, name: t.name, reason: 'no such file' });
      else if (!titles.has(t.name)) missing.push({ promise: promise.id, file: t.file, name: t.name, reason: 'no test with this exact title in the file' });
    }
  }
  return missing;
}

function escapeCell(text) {
  return String(text).replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

/** The markdown table of docs/compliance.md: promise, seeds, the tests that prove it. */
function renderTable(matrix) {
  const lines = ['| Promise | Seeds | Proved by (file: test title) |', '|---|---|---|'];
  for (const p of matrix.promises) {
    const tests = p.tests.map((t) => `\`${t.file.replace(/^test\//, '')}\`: ${escapeCell(t.name)}`).join('<br>');
    lines.push(`| **${p.id}**: ${escapeCell(p.promise)} | ${p.seeds.join(', ')} | ${tests} |`);
  }
  return lines.join('\n');
}

function renderDocSection(matrix) {
  return `${BEGIN}\n${renderTable(matrix)}\n${END}`;
}

function docSection(text) {
  const start = text.indexOf(BEGIN);
  const end = text.indexOf(END);
  if (start < 0 || end < start) return null;
  return text.slice(start, end + END.length);
}

module.exports = { ROOT, MATRIX_FILE, DOC_FILE, BEGIN, END, loadMatrix, declaredTitles, missingTests, renderTable, renderDocSection, docSection };
