// Child process of bench/tiles.ts: the servers under test, kept out of the load generator's
// process so that autocannon and the server do not share one event loop.
//   - our node (startServer, exactly what `npm start` runs) in a fresh DATA_DIR;
//   - express.static over the plaintext pyramid, HTTPS with the same key and certificate.
// It answers the parent over IPC: CPU usage snapshots, a probe that counts store calls per
// request, and micro-benchmarks of decryption and of the store calls an authorised tile costs.
//
// argv: <dataDir> <plainTilesDir>
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { Session } from 'node:inspector/promises';
import { performance } from 'node:perf_hooks';
import express from 'express';
import { MaterialStorage } from '../src/cases/storage';
import { loadConfig } from '../src/config';
import { decryptBuffer, encryptBuffer } from '../src/crypto/dataKeys';
import { createLogger } from '../src/observability/logger';
import { startServer, type RunningServer } from '../src/server';

export type ChildCommand =
  | { cmd: 'elu' }
  | { cmd: 'profile-start' }
  | { cmd: 'profile-stop'; file: string }
  | { cmd: 'probe-start' }
  | { cmd: 'probe-stop' }
  | { cmd: 'micro'; sid: string; caseId: string; materialId: string; tiles: { level: number; name: string }[] }
  | { cmd: 'close' };

export interface ReadyMessage {
  type: 'ready';
  url: string;
  staticUrl: string;
  accounts: { role: string; email: string; oneTimePassword: string }[];
}

/** Mean µs per call of `fn`, run for at least `minMs` (and at least `minRuns` times) after a short warm-up. */
async function time(fn: (i: number) => unknown, minMs = 300, minRuns = 200): Promise<{ us: number; runs: number }> {
  for (let i = 0; i < 50; i++) await fn(i);
  let runs = 0;
  const start = process.hrtime.bigint();
  let elapsedNs = 0n;
  while (runs < minRuns || elapsedNs < BigInt(minMs) * 1_000_000n) {
    for (let k = 0; k < 50; k++) await fn(runs++);
    elapsedNs = process.hrtime.bigint() - start;
  }
  return { us: Number(elapsedNs) / 1000 / runs, runs };
}

/** Wraps every method of the store's repositories with a call counter (restored by the returned function). */
function countStoreCalls(server: RunningServer): { counts: Record<string, number>; restore(): void } {
  const counts: Record<string, number> = {};
  const restorers: (() => void)[] = [];
  const store = server.store as unknown as Record<string, object>;
  for (const repoName of ['sites', 'users', 'sessions', 'audit', 'dataKeys', 'cases', 'materials']) {
    const repo = store[repoName] as Record<string, unknown>;
    const proto = Object.getPrototypeOf(repo) as object;
    for (const method of Object.getOwnPropertyNames(proto)) {
      const original = repo[method];
      if (method === 'constructor' || typeof original !== 'function') continue;
      repo[method] = function (this: unknown, ...args: unknown[]) {
        const key = `${repoName}.${method}`;
        counts[key] = (counts[key] ?? 0) + 1;
        return (original as (...a: unknown[]) => unknown).apply(this, args);
      };
      restorers.push(() => delete repo[method]);
    }
  }
  return { counts, restore: () => restorers.forEach((r) => r()) };
}

async function main(): Promise<void> {
  const [dataDir, plainTilesDir] = process.argv.slice(2);
  if (!dataDir || !plainTilesDir) throw new Error('usage: tiles-server <dataDir> <plainTilesDir>');
  const config = loadConfig({
    PORT: '0',
    HOST: '127.0.0.1',
    DATA_DIR: dataDir,
    LOG_LEVEL: 'silent',
    DEMO_SEED: 'true',
    DEMO_SLIDE: 'false',
    RETENTION_PURGE_MINUTES: '0',
    SHUTDOWN_GRACE_SECONDS: '1',
  });
  const server = await startServer({ ...config, publicUrl: 'https://127.0.0.1:0' }, createLogger('silent'), {
    // The default budget (1200 API requests per IP per minute) would answer 429 within the first
    // second of a load test from one address; a deployment behind a reverse proxy counts per client.
    // Likewise the per-user tile budget (6000 a minute): the bench is one user at hundreds of tiles a second.
    rateLimits: { apiPerIpPerMinute: 1_000_000_000, tilesPerUserPerMinute: 1_000_000_000, loginPerIpPerMinute: 1000, loginPerAccountPerMinute: 1000 },
  });

  const tlsDir = path.join(dataDir, 'tls');
  const app = express();
  app.disable('x-powered-by');
  app.use(express.static(plainTilesDir));
  const staticServer = https.createServer(
    { cert: fs.readFileSync(path.join(tlsDir, 'cert.pem')), key: fs.readFileSync(path.join(tlsDir, 'key.pem')), minVersion: 'TLSv1.2' },
    app,
  );
  await new Promise<void>((resolve) => staticServer.listen(0, '127.0.0.1', resolve));
  const staticPort = (staticServer.address() as AddressInfo).port;

  let probe: ReturnType<typeof countStoreCalls> | null = null;
  let inspector: Session | null = null;

  const handlers: Record<ChildCommand['cmd'], (msg: never) => Promise<unknown>> = {
    elu: async () => performance.eventLoopUtilization(),
    // Diagnostics only (BENCH_PROFILE): a V8 CPU profile of the server process during one load run.
    'profile-start': async () => {
      inspector = new Session();
      inspector.connect();
      await inspector.post('Profiler.enable');
      await inspector.post('Profiler.start');
      return null;
    },
    'profile-stop': async (msg: Extract<ChildCommand, { cmd: 'profile-stop' }>) => {
      if (!inspector) return null;
      const { profile } = await inspector.post('Profiler.stop');
      inspector.disconnect();
      inspector = null;
      fs.writeFileSync(msg.file, JSON.stringify(profile));
      return msg.file;
    },
    'probe-start': async () => {
      probe = countStoreCalls(server);
      return null;
    },
    'probe-stop': async () => {
      const counts = probe?.counts ?? {};
      probe?.restore();
      probe = null;
      return counts;
    },
    micro: async (msg: Extract<ChildCommand, { cmd: 'micro' }>) => {
      const storage = new MaterialStorage(dataDir);
      const { key } = await server.app.dataKeys.forOwner(`case:${msg.caseId}`);
      const sealed = msg.tiles.map((t) => ({
        context: MaterialStorage.tileContext(msg.materialId, t.level, t.name),
        data: fs.readFileSync(storage.tilePath(msg.materialId, t.level, t.name)),
      }));
      const plain = sealed.map((s) => decryptBuffer(key, s.data, s.context));
      const meanBytes = plain.reduce((n, b) => n + b.length, 0) / plain.length;
      const n = sealed.length;
      const decrypt = await time((i) => decryptBuffer(key, sealed[i % n].data, sealed[i % n].context), 1000);
      const encrypt = await time((i) => encryptBuffer(key, plain[i % n], sealed[i % n].context), 1000);
      const readSealed = await time((i) => fs.promises.readFile(storage.tilePath(msg.materialId, msg.tiles[i % n].level, msg.tiles[i % n].name)), 300);

      const s = server.store;
      const sessionRecord = await s.sessions.get(msg.sid, Date.now());
      if (!sessionRecord) throw new Error('bench session not found');
      const session = JSON.parse(sessionRecord.data) as { siteId: string; userId: string };
      const store = {
        'sessions.get': await time(() => s.sessions.get(msg.sid, Date.now())),
        'users.findById': await time(() => s.users.findById(session.siteId, session.userId)),
        'sites.findById': await time(() => s.sites.findById(session.siteId)),
        'materials.findById': await time(() => s.materials.findById(session.siteId, msg.caseId, msg.materialId)),
        'dataKeys.findByOwner': await time(() => s.dataKeys.findByOwner(`case:${msg.caseId}`)),
        // The session write express-session makes when a request changed the session (SQLite: WAL, synchronous=FULL).
        'sessions.set': await time(() => s.sessions.set(sessionRecord), 500, 100),
        'sessions.touch': await time(() => s.sessions.touch(msg.sid, sessionRecord.expiresAt), 500, 100),
      };
      return {
        tiles: n,
        meanTileBytes: meanBytes,
        decryptUsPerTile: decrypt.us,
        encryptUsPerTile: encrypt.us,
        readSealedFileUsPerTile: readSealed.us,
        decryptRuns: decrypt.runs,
        storeUsPerCall: Object.fromEntries(Object.entries(store).map(([k, v]) => [k, v.us])),
      };
    },
    close: async () => {
      await new Promise<void>((resolve) => {
        staticServer.close(() => resolve());
        staticServer.closeAllConnections();
      });
      await server.close();
      return null;
    },
  };

  process.on('message', (msg: ChildCommand & { id: number }) => {
    handlers[msg.cmd](msg as never).then(
      (result) => {
        process.send!({ id: msg.id, ok: true, result });
        if (msg.cmd === 'close') process.disconnect();
      },
      (err: Error) => process.send!({ id: msg.id, ok: false, error: err.stack ?? String(err) }),
    );
  });

  const ready: ReadyMessage = {
    type: 'ready',
    url: server.url,
    staticUrl: `https://127.0.0.1:${staticPort}`,
    accounts: (server.demoAccounts ?? []).map((a) => ({ role: a.role, email: a.email, oneTimePassword: a.oneTimePassword })),
  };
  process.send!(ready);
}

main().catch((err) => {
  process.stderr.write(`tiles-server: ${(err as Error).stack ?? err}\n`);
  process.exit(1);
});
