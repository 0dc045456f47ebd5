// The follow-up repository contract against SQLite always, and against MongoDB when MONGODB_URI
// is set (reported as skipped otherwise, never faked).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MongoStore } from '../../src/store/mongo';
import { SqliteStore } from '../../src/store/sqlite';
import { describeFollowUpContract } from './followups.contract';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cc-followup-contract-'));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

let files = 0;
describeFollowUpContract('SQLite', async () => SqliteStore.open(path.join(dir, `store-${files++}.sqlite`)));

const MONGODB_URI = process.env.MONGODB_URI?.trim() || undefined;
if (MONGODB_URI) describeFollowUpContract('MongoDB', async () => MongoStore.connect(MONGODB_URI));
else test.skip('MongoDB follow-up contract skipped: set MONGODB_URI to run it', () => undefined);
