// Store and Redis faults become the typed STORE_UNAVAILABLE (503), never INTERNAL; other errors
// are not mistaken for them. The errors are the real ones the drivers throw where they can be made
// here (better-sqlite3 busy on a locked file); the others have the names and messages the
// drivers use.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { isStoreUnavailable, toAppError } from '../../src/http/errors';

test('a write to a SQLite file another connection holds exclusively is STORE_UNAVAILABLE', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'store-errors-'));
  const file = path.join(dir, 'x.sqlite');
  const holder = new Database(file);
  const writer = new Database(file);
  try {
    holder.pragma('journal_mode = WAL');
    holder.exec('CREATE TABLE t (v TEXT)');
    writer.pragma('busy_timeout = 0');
    holder.exec('BEGIN EXCLUSIVE');
    let thrown: unknown = null;
    try {
      writer.prepare('INSERT INTO t (v) VALUES (?)').run('x');
    } catch (err) {
      thrown = err;
    }
    expect((thrown as { code?: string }).code).toMatch(/^SQLITE_BUSY/);
    expect(isStoreUnavailable(thrown)).toBe(true);
    const mapped = toAppError(thrown);
    expect(mapped?.code).toBe('STORE_UNAVAILABLE');
    expect(mapped?.status).toBe(503);
    holder.exec('COMMIT');
  } finally {
    writer.close();
    holder.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test.each([
  ['node-redis offline queue disabled', Object.assign(new Error('The client is offline'), { name: 'Error' })],
  ['node-redis closed client', Object.assign(new Error('The client is closed'), { name: 'ClientClosedError' })],
  ['refused connection', Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:6379'), { code: 'ECONNREFUSED' })],
  ['reset connection', Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' })],
  ['MongoDB server selection', Object.assign(new Error('Server selection timed out'), { name: 'MongoServerSelectionError' })],
  ['MongoDB network', Object.assign(new Error('connection closed'), { name: 'MongoNetworkError' })],
])('%s is STORE_UNAVAILABLE', (_what, err) => {
  expect(toAppError(err)?.code).toBe('STORE_UNAVAILABLE');
});

test.each([
  ['a programming error', new TypeError("Cannot read properties of undefined (reading 'id')")],
  ['a constraint violation', Object.assign(new Error('UNIQUE constraint failed: users.email'), { code: 'SQLITE_CONSTRAINT_UNIQUE' })],
  ['a corrupt database', Object.assign(new Error('database disk image is malformed'), { code: 'SQLITE_CORRUPT' })],
  ['not an error at all', 'a string'],
  ['null', null],
])('%s is not STORE_UNAVAILABLE', (_what, err) => {
  expect(isStoreUnavailable(err)).toBe(false);
  expect(toAppError(err)?.code).not.toBe('STORE_UNAVAILABLE');
});
