// Audit trail at scale: search pages and exports over a trail of millions of records, measured
// through the real HTTPS routes of a node and through the repository beneath them.
//
//   1. A node starts on a fresh data directory (embedded SQLite); BENCH_AUDIT_RECORDS (default
//      1,200,000) records are appended to the demo site's hash chain, a proper chain (each record
//      hashed over its predecessor), plus 200,000 in another site: a year of activity of 300 users
//      on 20,000 cases from 60 addresses, with the mix of event types the server writes.
//   2. Searches a site admin makes (GET /api/admin/audit, limit 50): the first page, a page deep
//      in the trail (keyset cursor near the oldest records), and each filter alone (actor, case,
//      type prefix + outcome, one day, IP, actor + type). Each is timed 25 times over HTTPS (which
//      includes writing the search's own audit record) and 25 times at the repository; the SQLite
//      query plan is printed to show which index serves it.
//   3. Exports of the whole site trail as CSV and as FHIR (GET /api/admin/audit/export), streamed
//      to a client that discards the bytes, while the process's heap and RSS are sampled every
//      50 ms: peak minus the baseline before the export is what the export holds in memory.
//   4. Chain verification of the whole site (POST /api/admin/audit/verify).
//
// Run: npm run bench:audit (15-25 minutes on 2 cores, most of it inserting the records).
// BENCH_AUDIT_DATA_DIR=<dir> reuses (and keeps) a data directory whose trail is already filled;
// BENCH_AUDIT_RECORDS sets the size. Results: bench/results/audit.json.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import request from 'supertest';
import { hashRecord } from '../src/audit/chain';
import type { AuditFilter } from '../src/audit/model';
import { loadConfig } from '../src/config';
import { createLogger } from '../src/observability/logger';
import { startServer } from '../src/server';
import type { SqliteStore } from '../src/store/sqlite';

const RECORDS = Number(process.env.BENCH_AUDIT_RECORDS ?? 1_200_000);
const OTHER_SITE_RECORDS = Math.round(RECORDS / 6);
const RUNS = 25;
const ROOT = path.resolve(__dirname, '..', '..', '..');
const RESULTS = path.resolve(process.env.BENCH_AUDIT_RESULTS || path.join(ROOT, 'bench', 'results', 'audit.json'));
const log = (m: string) => process.stderr.write(`[bench:audit] ${m}\n`);

const TYPES: [string, string, number][] = [
  // type, action, weight
  ['case.read', 'R', 30],
  ['material.view', 'R', 20],
  ['annotation.create', 'C', 8],
  ['annotation.update', 'U', 6],
  ['chat.message', 'C', 8],
  ['room.join', 'E', 5],
  ['room.leave', 'E', 5],
  ['auth.login', 'E', 6],
  ['auth.logout', 'E', 3],
  ['case.update', 'U', 3],
  ['case.create', 'C', 2],
  ['material.upload', 'C', 2],
  ['case.list', 'R', 2],
];
const TOTAL_WEIGHT = TYPES.reduce((s, t) => s + t[2], 0);

/** A deterministic pseudo-random stream, so two runs insert the same trail. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 4294967296;
  };
}

function id22(n: number, salt: string): string {
  return createHash('sha256').update(`${salt}:${n}`).digest('base64url').slice(0, 22);
}

function fillChain(store: SqliteStore, siteId: string, count: number, seed: number): { users: string[]; cases: string[]; ips: string[]; start: number; end: number } {
  const db = store.db;
  const random = rng(seed);
  const users = Array.from({ length: 300 }, (_, i) => id22(i, `user-${siteId}`));
  const cases = Array.from({ length: 20_000 }, (_, i) => id22(i, `case-${siteId}`));
  const ips = Array.from({ length: 60 }, (_, i) => `10.${Math.floor(i / 250)}.${i % 250}.${(i * 7) % 250}`);
  const head = db.prepare('SELECT seq, hash FROM audit_events WHERE site_id = ? ORDER BY seq DESC LIMIT 1').get(siteId) as { seq: number; hash: string } | undefined;
  let seq = head?.seq ?? 0;
  let prevHash = head?.hash ?? '0'.repeat(64);
  const end = Date.now() - 60_000;
  const start = end - 365 * 24 * 3600_000;
  const step = (end - start) / count;
  const insert = db.prepare(
    `INSERT INTO audit_events (id, site_id, seq, type, action, outcome, time, actor, objects, details, prev_hash, hash)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  const batch = db.transaction((n: number) => {
    for (let i = 0; i < n; i++) {
      let pick = random() * TOTAL_WEIGHT;
      let t = TYPES[0]!;
      for (const candidate of TYPES) {
        pick -= candidate[2];
        if (pick <= 0) {
          t = candidate;
          break;
        }
      }
      const user = users[Math.floor(random() ** 2 * users.length)]!;
      const caseId = cases[Math.floor(random() * cases.length)]!;
      const failed = t[0] === 'auth.login' ? random() < 0.08 : random() < 0.01;
      seq++;
      const body = {
        id: id22(seq, `rec-${siteId}`),
        siteId,
        seq,
        type: t[0],
        action: t[1] as 'C',
        outcome: (failed ? 4 : 0) as 0 | 4,
        time: new Date(start + seq * step).toISOString(),
        actor: { userId: user, role: 'clinician', ip: ips[Math.floor(random() * ips.length)]!, userAgent: 'Mozilla/5.0 (bench)' },
        objects: t[0].startsWith('auth.') ? [{ type: 'user', id: user }] : [{ type: 'case', id: caseId }],
        details: (t[0] === 'material.upload' ? { bytes: 1234567, mime: 'image/tiff' } : {}) as Record<string, string | number>,
        prevHash,
      };
      const hash = hashRecord(body);
      insert.run(body.id, siteId, seq, body.type, body.action, body.outcome, body.time, JSON.stringify(body.actor), JSON.stringify(body.objects), JSON.stringify(body.details), prevHash, hash);
      prevHash = hash;
    }
  });
  for (let done = 0; done < count; ) {
    const n = Math.min(50_000, count - done);
    batch.immediate(n);
    done += n;
    if (done % 200_000 === 0 || done === count) log(`site ${siteId.slice(0, 6)}: ${done} records`);
  }
  return { users, cases, ips, start, end };
}

/** The users, cases and addresses fillChain used (deterministic), for a reused directory. */
function trailShape(store: SqliteStore, siteId: string): ReturnType<typeof fillChain> {
  const range = store.db.prepare('SELECT MIN(time) AS a, MAX(time) AS b FROM audit_events WHERE site_id = ?').get(siteId) as { a: string; b: string };
  return {
    users: Array.from({ length: 300 }, (_, i) => id22(i, `user-${siteId}`)),
    cases: Array.from({ length: 20_000 }, (_, i) => id22(i, `case-${siteId}`)),
    ips: Array.from({ length: 60 }, (_, i) => `10.${Math.floor(i / 250)}.${i % 250}.${(i * 7) % 250}`),
    start: Date.parse(range.a),
    end: Date.parse(range.b),
  };
}

function stats(samples: number[]): { median: number; p95: number; max: number } {
  const s = [...samples].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
  return { median: at(0.5), p95: at(0.95), max: s[s.length - 1]! };
}

async function main(): Promise<void> {
  const reuse = process.env.BENCH_AUDIT_DATA_DIR ? path.resolve(process.env.BENCH_AUDIT_DATA_DIR) : null;
  const dataDir = reuse ?? fs.mkdtempSync(path.join(process.env.BENCH_TMPDIR ?? os.tmpdir(), 'bench-audit-'));
  const config = loadConfig({ PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir, LOG_LEVEL: 'warn', DEMO_SLIDE: 'false', RETENTION_PURGE_MINUTES: '0', BACKUP_HOUR: 'off' });
  const server = await startServer({ ...config, publicUrl: 'https://127.0.0.1:0' }, createLogger('warn'), {
    rateLimits: { adminReadsPerUserPerMinute: 1_000_000, adminHeavyPerUserPerMinute: 1000 },
  });
  const store = server.store as SqliteStore;
  try {
    const url = `https://127.0.0.1:${server.port}`;
    const ca = fs.readFileSync(path.join(dataDir, 'tls', 'cert.pem'), 'utf8');
    const demoSite = (await store.sites.list())[0]!;
    const created = await server.app.identity.createUser(null, { ip: null, userAgent: null }, { siteId: demoSite.id, email: `bench-admin-${Date.now()}@bench.local`, name: 'Bench Admin', role: 'site_admin' });
    const account = { email: created.user.email, oneTimePassword: created.oneTimePassword };
    const agent = request.agent(url).ca(ca);
    const csrf0 = (await agent.get('/api/auth/csrf')).body.csrfToken;
    const login = await agent.post('/api/auth/login').set('X-CSRF-Token', csrf0).send({ email: account.email, password: account.oneTimePassword });
    const csrf = login.body.csrfToken as string;
    const newPassword = `bench-audit-${Math.random().toString(36).slice(2)}-long-enough`;
    await agent.post('/api/auth/password').set('X-CSRF-Token', csrf).send({ currentPassword: account.oneTimePassword, newPassword }).expect(200);
    const siteId = (await agent.get('/api/me').expect(200)).body.site.id as string;

    const t0 = Date.now();
    const existing = (store.db.prepare('SELECT COUNT(*) AS n FROM audit_events WHERE site_id = ?').get(siteId) as { n: number }).n;
    let site: ReturnType<typeof fillChain>;
    if (existing >= RECORDS) {
      // A filled directory from an earlier run: the same deterministic ids, no insert.
      log(`reusing ${existing} records in ${dataDir}`);
      site = trailShape(store, siteId);
    } else {
      log(`inserting ${RECORDS} + ${OTHER_SITE_RECORDS} chained records`);
      site = fillChain(store, siteId, RECORDS, 42);
      fillChain(store, 'OtherSite0000000000000', OTHER_SITE_RECORDS, 7);
    }
    const insertSeconds = existing >= RECORDS ? null : (Date.now() - t0) / 1000;
    store.db.exec('ANALYZE');
    const dbBytes = fs.statSync(path.join(dataDir, 'case-collab.sqlite')).size;
    log(`${insertSeconds === null ? 'reused' : `inserted in ${insertSeconds.toFixed(0)} s`}; database ${(dbBytes / 1e9).toFixed(2)} GB`);

    const deep = store.db.prepare('SELECT time, seq FROM audit_events WHERE site_id = ? AND seq = ?').get(siteId, Math.floor(RECORDS * 0.05)) as { time: string; seq: number };
    const deepCursor = Buffer.from(`${deep.time}|${deep.seq}`).toString('base64url');
    const mid = new Date((site.start + site.end) / 2);
    const day = mid.toISOString().slice(0, 10);
    const nextDay = new Date(Date.parse(`${day}T00:00:00.000Z`) + 86_400_000).toISOString();
    const queries: { name: string; query: string; filter: AuditFilter; cursor?: { time: string; seq: number } }[] = [
      { name: 'first page, no filter', query: '', filter: {} },
      { name: 'deep page (95 % down), no filter', query: `cursor=${deepCursor}`, filter: {}, cursor: deep },
      { name: 'actor', query: `actor=${site.users[150]}`, filter: { actorUserId: site.users[150] } },
      { name: 'actor, deep page', query: `actor=${site.users[150]}&cursor=${deepCursor}`, filter: { actorUserId: site.users[150] }, cursor: deep },
      { name: 'case (objectType+objectId)', query: `objectType=case&objectId=${site.cases[777]}`, filter: { objectType: 'case', objectId: site.cases[777] } },
      { name: 'type prefix auth.* + outcome 4', query: 'type=auth.*&outcome=4', filter: { typePrefix: 'auth.', outcome: 4 } },
      { name: 'one day (from/to)', query: `from=${day}T00:00:00.000Z&to=${nextDay}`, filter: { from: `${day}T00:00:00.000Z`, to: nextDay } },
      { name: 'IP', query: `ip=${site.ips[3]}`, filter: { ip: site.ips[3] } },
      { name: 'actor + type', query: `actor=${site.users[10]}&type=material.view`, filter: { actorUserId: site.users[10], type: 'material.view' } },
      { name: 'action D (matches none)', query: 'action=D', filter: { action: 'D' } },
    ];
    const searches = [];
    for (const q of queries) {
      const http: number[] = [];
      const repo: number[] = [];
      let rows = 0;
      for (let i = 0; i < RUNS; i++) {
        const h0 = process.hrtime.bigint();
        const res = await agent.get(`/api/admin/audit?limit=50${q.query ? `&${q.query}` : ''}`).expect(200);
        http.push(Number(process.hrtime.bigint() - h0) / 1e6);
        rows = res.body.records.length;
        const r0 = process.hrtime.bigint();
        await store.audit.search(siteId, q.filter, q.cursor ?? null, 51);
        repo.push(Number(process.hrtime.bigint() - r0) / 1e6);
      }
      const plan = planOf(store, siteId, q.filter, q.cursor);
      searches.push({ name: q.name, rows, httpMs: stats(http), repositoryMs: stats(repo), plan });
      log(`${q.name}: http median ${stats(http).median.toFixed(1)} ms, repository ${stats(repo).median.toFixed(2)} ms (${rows} rows) [${plan}]`);
    }

    const cookie = (agent as unknown as { jar: { getCookies(o: object): { name: string; value: string }[] } }).jar
      .getCookies({ domain: '127.0.0.1', path: '/', secure: true, script: false })
      .map((c) => `${c.name}=${c.value}`)
      .join('; ');
    // Memory: every 200 ms a full GC, then the live heap (what the export holds, garbage
    // excluded) and the RSS; peak minus the baseline before the export. Exported twice: the
    // newest tenth of the trail and the whole trail; flat memory means both peaks are alike.
    const tenth = store.db.prepare('SELECT time FROM audit_events WHERE site_id = ? ORDER BY time DESC, seq DESC LIMIT 1 OFFSET ?').get(siteId, Math.floor(RECORDS / 10)) as { time: string };
    const exports = [];
    for (const format of ['csv', 'fhir'] as const) {
      for (const scope of ['tenth', 'whole'] as const) {
        const gc = global.gc ?? (() => undefined);
        gc();
        const base = process.memoryUsage();
        let peakLive = base.heapUsed;
        let peakRss = base.rss;
        const sampler = setInterval(() => {
          gc();
          const m = process.memoryUsage();
          peakLive = Math.max(peakLive, m.heapUsed);
          peakRss = Math.max(peakRss, m.rss);
        }, 200);
        const e0 = Date.now();
        const query = `format=${format}${scope === 'tenth' ? `&from=${tenth.time}` : ''}`;
        const bytes = await new Promise<number>((resolve, reject) => {
          const req = https.get(`${url}/api/admin/audit/export?${query}`, { ca, headers: { Cookie: cookie } }, (res) => {
            if (res.statusCode !== 200) return reject(new Error(`export ${format}: HTTP ${res.statusCode}`));
            let n = 0;
            res.pipe(new Writable({ write(chunk: Buffer, _e, cb) { n += chunk.length; cb(); } })).once('finish', () => resolve(n));
            res.once('error', reject);
          });
          req.once('error', reject);
        });
        clearInterval(sampler);
        const seconds = (Date.now() - e0) / 1000;
        const records = scope === 'tenth' ? Math.floor(RECORDS / 10) : RECORDS;
        const result = { format, scope, records, bytes, seconds, recordsPerSecond: Math.round(records / seconds), baselineLiveHeapMB: base.heapUsed / 2 ** 20, peakLiveHeapOverBaselineMB: (peakLive - base.heapUsed) / 2 ** 20, baselineRssMB: base.rss / 2 ** 20, peakRssOverBaselineMB: (peakRss - base.rss) / 2 ** 20 };
        exports.push(result);
        log(`export ${format} (${scope}, ${records} records): ${(bytes / 1e6).toFixed(0)} MB in ${seconds.toFixed(1)} s; live heap +${result.peakLiveHeapOverBaselineMB.toFixed(1)} MB, RSS +${result.peakRssOverBaselineMB.toFixed(1)} MB over the baseline`);
      }
    }

    const v0 = Date.now();
    const verified = await agent.post('/api/admin/audit/verify').set('X-CSRF-Token', csrf).expect(200);
    const verify = { records: verified.body.records, intact: verified.body.intact, seconds: (Date.now() - v0) / 1000 };
    log(`verify: ${verify.records} records, intact ${verify.intact}, ${verify.seconds.toFixed(1)} s`);

    const out = {
      date: new Date().toISOString(),
      machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, node: process.version },
      records: { site: RECORDS, otherSite: OTHER_SITE_RECORDS, insertSeconds, databaseBytes: dbBytes },
      searches,
      exports,
      verify,
    };
    fs.mkdirSync(path.dirname(RESULTS), { recursive: true });
    fs.writeFileSync(RESULTS, JSON.stringify(out, null, 2));
    log(`results: ${RESULTS}`);
  } finally {
    await server.close();
    if (!reuse) fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

/** The SQLite plan of the repository's query for this filter (same SQL the route runs). */
function planOf(store: SqliteStore, siteId: string, filter: AuditFilter, cursor?: { time: string; seq: number }): string {
  const db = store.db;
  const original = db.prepare.bind(db);
  let captured = '';
  // Capture the SQL text the repository prepares, then ask SQLite how it would run it.
  (db as unknown as { prepare: (sql: string) => unknown }).prepare = (sql: string) => {
    captured = sql;
    return original(sql);
  };
  try {
    void store.audit.search(siteId, filter, cursor ?? null, 51);
  } finally {
    (db as unknown as { prepare: typeof original }).prepare = original;
  }
  const binds = Array.from({ length: (captured.match(/\?/g) ?? []).length }, () => null);
  return (db.prepare(`EXPLAIN QUERY PLAN ${captured}`).all(...binds) as { detail: string }[]).map((r) => r.detail).join('; ');
}

main().catch((err) => {
  process.stderr.write(`${(err as Error).stack}\n`);
  process.exit(1);
});
