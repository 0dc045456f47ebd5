// Tools of the hostile-input suites: a raw HTTPS client for thousands of requests (supertest is
// too slow for that), and a snapshot of every table of a node's SQLite file, so "nothing
// changed" is checked across the whole store rather than the few counts a test thought of.
import https from 'node:https';
import path from 'node:path';
import Database from 'better-sqlite3';
import { SQLITE_FILE } from '../../src/store';

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

export class RawClient {
  readonly agent: https.Agent;
  constructor(
    readonly url: string,
    readonly ca: string,
    readonly headers: Record<string, string> = {},
    sockets = 8,
  ) {
    this.agent = new https.Agent({ keepAlive: true, maxSockets: sockets, ca });
  }

  request(method: string, path: string, body?: Buffer | string, headers: Record<string, string> = {}, timeoutMs = 15_000): Promise<RawResponse> {
    return new Promise((resolve, reject) => {
      const u = new URL(path, this.url);
      const req = https.request(
        { method, host: u.hostname, port: u.port, path: u.pathname + u.search, agent: this.agent, headers: { ...this.headers, ...headers, ...(body !== undefined ? { 'content-length': String(Buffer.byteLength(body)) } : {}) } },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
          res.on('error', reject);
        },
      );
      req.setTimeout(timeoutMs, () => req.destroy(new Error(`no answer to ${method} ${path.slice(0, 80)} within ${timeoutMs} ms`)));
      req.on('error', reject);
      req.end(body);
    });
  }

  close(): void {
    this.agent.destroy();
  }
}

/** Runs `work` over `items` with at most `concurrency` in flight. */
export async function pool<T>(items: T[], concurrency: number, work: (item: T, index: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < items.length) {
        const i = next++;
        await work(items[i]!, i);
      }
    }),
  );
}

/** Row counts of every table of a node's store (sessions left out: logging in is a change). */
export function storeSnapshot(dataDir: string, ignore: string[] = ['sessions']): Record<string, number> {
  const db = new Database(path.join(dataDir, SQLITE_FILE), { readonly: true, fileMustExist: true });
  try {
    const tables = db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'").all() as { name: string }[];
    const out: Record<string, number> = {};
    for (const { name } of tables) {
      if (ignore.includes(name)) continue;
      out[name] = (db.prepare(`SELECT COUNT(*) AS n FROM "${name}"`).get() as { n: number }).n;
    }
    return out;
  } finally {
    db.close();
  }
}
