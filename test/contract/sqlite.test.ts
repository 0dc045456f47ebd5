// The embedded SQLite store: the shared repository contract, plus what only SQLite promises
// (WAL + synchronous=FULL, durability across a restart, append-only audit rows, schema versions).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AuditService, ANONYMOUS_ACTOR } from '../../src/audit/service';
import { DEFAULT_POLICY, NO_PERMISSIONS } from '../../src/identity/model';
import { SqliteStore } from '../../src/store/sqlite';
import { MIGRATIONS, migrate } from '../../src/store/sqlite/migrations';
import { describeStoreContract } from './store.contract';

const dirs: string[] = [];

function tempFile(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cc-sqlite-contract-'));
  dirs.push(dir);
  return path.join(dir, 'store.sqlite');
}

afterAll(() => {
  for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
});

describeStoreContract('SQLite', async () => SqliteStore.open(tempFile()));

describe('SQLite store: durability and integrity', () => {
  let store: SqliteStore | undefined;
  afterEach(async () => {
    await store?.close();
    store = undefined;
  });

  test('the file uses WAL with synchronous=FULL, so a returned write is on disk', () => {
    store = SqliteStore.open(tempFile());
    expect(store.db.pragma('journal_mode', { simple: true })).toBe('wal');
    // 2 = FULL (0 OFF, 1 NORMAL, 3 EXTRA).
    expect(store.db.pragma('synchronous', { simple: true })).toBe(2);
    expect(store.db.pragma('foreign_keys', { simple: true })).toBe(1);
  });

  test('data survives closing and reopening the file (a restart)', async () => {
    const file = tempFile();
    store = SqliteStore.open(file);
    const now = '2030-01-01T00:00:00.000Z';
    await store.sites.create({ id: 'site-a', name: 'Site A', policy: { ...DEFAULT_POLICY }, createdAt: now, updatedAt: now });
    await store.users.create({
      id: 'user-1',
      siteId: 'site-a',
      email: 'alice@example.org',
      name: 'Alice',
      role: 'site_admin',
      permissions: { ...NO_PERMISSIONS, canUpload: true },
      passwordHash: '$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA',
      mustChangePassword: true,
      totpSecret: null,
      totpPendingSecret: null,
      totpLastStep: null,
      failedLoginCount: 0,
      failedLoginWindowStart: null,
      lockedUntil: null,
      createdAt: now,
      updatedAt: now,
      createdBy: null,
      updatedBy: null,
    });
    await store.sessions.set({ sid: 'sid-1', siteId: 'site-a', userId: 'user-1', data: '{}', expiresAt: Date.parse(now) + 60_000 });
    const audit = new AuditService(store.audit);
    const rec = await audit.record({ siteId: 'site-a', type: 'user.create', action: 'C', actor: ANONYMOUS_ACTOR });
    const user = await store.users.findById('site-a', 'user-1');
    await store.close();

    store = SqliteStore.open(file);
    expect(await store.sites.findById('site-a')).toMatchObject({ name: 'Site A' });
    expect(await store.users.findById('site-a', 'user-1')).toStrictEqual(user);
    expect(await store.sessions.get('sid-1', Date.parse(now))).toMatchObject({ userId: 'user-1' });
    expect(await store.audit.listChain('site-a', 0, 10)).toStrictEqual([rec]);
    // The chain continues where it stopped rather than restarting at 1.
    const next = await new AuditService(store.audit).record({ siteId: 'site-a', type: 'user.update', action: 'U', actor: ANONYMOUS_ACTOR });
    expect(next).toMatchObject({ seq: 2, prevHash: rec.hash });
    expect((await new AuditService(store.audit).verify()).breaks).toEqual([]);
    // Reopening applies no migration twice.
    expect(migrate(store.db)).toBe(0);
  });

  test('audit rows cannot be UPDATEd or DELETEd, even with direct SQL (triggers raise append-only)', async () => {
    store = SqliteStore.open(tempFile());
    const audit = new AuditService(store.audit);
    const rec = await audit.record({ siteId: 'site-a', type: 'user.login', action: 'E', actor: ANONYMOUS_ACTOR });
    const db = store.db;
    expect(() => db.prepare("UPDATE audit_events SET type = 'forged' WHERE id = ?").run(rec.id)).toThrow(/append-only/);
    expect(() => db.prepare('DELETE FROM audit_events WHERE id = ?').run(rec.id)).toThrow(/append-only/);
    expect(() => db.prepare('DELETE FROM audit_events').run()).toThrow(/append-only/);
    expect(await store.audit.listChain('site-a', 0, 10)).toStrictEqual([rec]);
    expect((await audit.verify()).breaks).toEqual([]);
  });

  test('createMany is one transaction: a batch with a clientId already in the case stores none of it', async () => {
    store = SqliteStore.open(tempFile());
    const now = '2030-01-01T00:00:00.000Z';
    const record = (id: string, clientId: string) => ({
      id,
      siteId: 'site-a',
      caseId: 'case-1',
      materialId: 'material-1',
      clientId,
      kind: 'point' as const,
      geometry: { type: 'Point' as const, coordinates: [1, 2] as [number, number] },
      propertiesSealed: 'e1.key.sealed',
      version: 1,
      deleted: false,
      createdBy: 'user-1',
      createdAt: now,
      updatedBy: 'user-1',
      updatedAt: now,
    });
    await store.annotations.create(record('first', 'client-taken'));
    await expect(store.annotations.createMany([record('a', 'client-a'), record('b', 'client-b'), record('c', 'client-taken')])).rejects.toMatchObject({
      name: 'DuplicateKeyError',
      key: 'annotation.clientId',
    });
    expect((await store.annotations.listCurrent('site-a', 'case-1')).map((a) => a.id)).toEqual(['first']);
    expect(await store.annotations.latestSeq('site-a', 'case-1')).toBe(1);
  });

  test('a database whose schema is newer than this code refuses to open, naming both versions', async () => {
    const file = tempFile();
    store = SqliteStore.open(file);
    const latest = MIGRATIONS[MIGRATIONS.length - 1]!.version;
    store.db
      .prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)')
      .run(latest + 1, 'from the future', new Date().toISOString());
    await store.close();
    store = undefined;
    expect(() => SqliteStore.open(file)).toThrow(
      `database schema version ${latest + 1} is newer than this server (${latest}); upgrade the server`,
    );
  });
});
