// The MongoDB store held to the same repository contract as SQLite. It needs a real server
// (a replica set exercises the w: 'majority' writes as production does): set MONGODB_URI to run it. Without one
// the contract is reported as skipped, never faked. Every test gets its own database, and
// every database created here is dropped in afterAll.
import { randomBytes } from 'node:crypto';
import mongoose from 'mongoose';
import { MongoStore } from '../../src/store/mongo';
import { describeStoreContract } from './store.contract';

const MONGODB_URI = process.env.MONGODB_URI?.trim() || undefined;
const SKIP_MESSAGE = 'MongoDB contract skipped: set MONGODB_URI to run it';

/**
 * Returns `uri` pointing at database `dbName`: replaces (or adds) the path segment, keeps the
 * hosts, credentials and options. When the URI carries credentials and no authSource, the
 * driver would authenticate against the path database, so authSource is pinned to the
 * database it used before (the old path, else "admin"). A mongodb+srv TXT record naming
 * another authSource is not visible here: put authSource in MONGODB_URI in that case.
 */
function withDatabase(uri: string, dbName: string): string {
  const match = /^(mongodb(?:\+srv)?:\/\/)([^/?#]*)(\/[^?#]*)?(\?[^#]*)?$/i.exec(uri.trim());
  if (!match) throw new Error('MONGODB_URI must be a mongodb:// or mongodb+srv:// connection string');
  const [, scheme, authority, pathPart = '', queryPart = ''] = match;
  if (!authority) throw new Error('MONGODB_URI names no host');
  const oldDb = decodeURIComponent(pathPart.replace(/^\//, ''));
  let query = queryPart.replace(/^\?/, '');
  const hasCredentials = authority!.includes('@');
  if (hasCredentials && !/(^|&)authSource=/i.test(query)) {
    query = [query, `authSource=${encodeURIComponent(oldDb || 'admin')}`].filter(Boolean).join('&');
  }
  return `${scheme}${authority}/${encodeURIComponent(dbName)}${query ? `?${query}` : ''}`;
}

describe('withDatabase (how the Mongo contract picks its throw-away database)', () => {
  test('adds the database to a URI without a path and keeps the options', () => {
    expect(withDatabase('mongodb://localhost:27017', 'db1')).toBe('mongodb://localhost:27017/db1');
    expect(withDatabase('mongodb://localhost:27017/', 'db1')).toBe('mongodb://localhost:27017/db1');
    expect(withDatabase('mongodb://h1:27017,h2:27018/?replicaSet=rs0', 'db1')).toBe('mongodb://h1:27017,h2:27018/db1?replicaSet=rs0');
  });

  test('replaces an existing database and pins authSource to it when credentials are given', () => {
    expect(withDatabase('mongodb://u:p%40ss@h1,h2/app?replicaSet=rs0', 'db1')).toBe(
      'mongodb://u:p%40ss@h1,h2/db1?replicaSet=rs0&authSource=app',
    );
    expect(withDatabase('mongodb+srv://u:p@cluster0.example.net', 'db1')).toBe('mongodb+srv://u:p@cluster0.example.net/db1?authSource=admin');
    expect(withDatabase('mongodb://u:p@h/app?authsource=other', 'db1')).toBe('mongodb://u:p@h/db1?authsource=other');
    expect(withDatabase('mongodb://h/app', 'db1')).toBe('mongodb://h/db1');
  });

  test('refuses what is not a MongoDB connection string', () => {
    expect(() => withDatabase('postgres://h/db', 'db1')).toThrow(/mongodb:\/\//);
    expect(() => withDatabase('mongodb:///db', 'db1')).toThrow(/no host/);
  });
});

if (MONGODB_URI) {
  const uri = MONGODB_URI;
  const runId = `${process.pid}_${randomBytes(3).toString('hex')}`;
  const databases: string[] = [];

  afterAll(async () => {
    if (databases.length === 0) return;
    const conn = await mongoose.createConnection(withDatabase(uri, databases[0]!)).asPromise();
    try {
      for (const name of databases) await conn.useDb(name, { useCache: false }).dropDatabase();
    } finally {
      await conn.close();
    }
  });

  describeStoreContract('MongoDB', async () => {
    // One database per test: a fresh, empty store with its indexes built by connect().
    const name = `cc_contract_${runId}_${databases.length + 1}`;
    databases.push(name);
    return MongoStore.connect(withDatabase(uri, name));
  });
} else {
  console.warn(SKIP_MESSAGE);
  describe.skip(SKIP_MESSAGE, () => {
    describeStoreContract('MongoDB', () => Promise.reject(new Error('unreachable: skipped')));
  });
}
