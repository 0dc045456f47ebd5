// createStore: the one place the single-node/production difference in persistence is decided
// (LiveKit's createStore habit): MongoDB when MONGODB_URI is set, else embedded SQLite.
import path from 'node:path';
import type { Config } from '../config';
import { MongoStore } from './mongo';
import { SqliteStore } from './sqlite';
import type { Store } from './types';

export const SQLITE_FILE = 'case-collab.sqlite';

export async function createStore(config: Pick<Config, 'mongodbUri' | 'dataDir'>): Promise<Store> {
  if (config.mongodbUri) return MongoStore.connect(config.mongodbUri);
  return SqliteStore.open(path.join(config.dataDir, SQLITE_FILE));
}
