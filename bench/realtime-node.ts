// Child process of bench/realtime.ts: one server node under test, kept out of the load generator's
// process (each node is its own process, as in a deployment).
//
//   ours: startServer (exactly what `npm start` runs) on DATA_DIR, with REDIS_URL when given;
//   bare: a bare Socket.IO server on HTTPS (same certificate), with the same @socket.io/redis-adapter
//         over the same Redis, that relays `viewport:update` to the room as `viewport`: no session,
//         no validation, no rate limit, no room state.
//
// argv: <ours|bare> <dataDir> [redisUrl]. Sends { type: 'ready', url, accounts } once listening;
// answers { cmd: 'close' } by closing everything and exiting.
import fs from 'node:fs';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { createAdapter } from '@socket.io/redis-adapter';
import { createClient, type RedisClientType } from 'redis';
import { Server } from 'socket.io';
import { loadConfig } from '../src/config';
import { createLogger } from '../src/observability/logger';
import { startServer } from '../src/server';

/** Silent, as the brief of the benchmark says; BENCH_RT_LOG_LEVEL (e.g. warn) shows the node's logs on stderr. */
const LOG_LEVEL = process.env.BENCH_RT_LOG_LEVEL || 'silent';

export interface NodeReady {
  type: 'ready';
  url: string;
  accounts: { role: string; email: string; oneTimePassword: string }[];
}

async function startOurs(dataDir: string, redisUrl: string): Promise<{ ready: NodeReady; close(): Promise<void> }> {
  const config = loadConfig({
    PORT: '0',
    HOST: '127.0.0.1',
    DATA_DIR: dataDir,
    LOG_LEVEL: LOG_LEVEL,
    DEMO_SLIDE: 'false',
    RETENTION_PURGE_MINUTES: '0',
    SHUTDOWN_GRACE_SECONDS: '1',
    ...(redisUrl ? { REDIS_URL: redisUrl } : {}),
  });
  const server = await startServer({ ...config, publicUrl: 'https://127.0.0.1:0' }, createLogger(LOG_LEVEL, process.stderr), {
    rateLimits: { loginPerIpPerMinute: 100000, loginPerAccountPerMinute: 100000 },
  });
  return {
    ready: {
      type: 'ready',
      url: `https://127.0.0.1:${server.port}`,
      accounts: (server.demoAccounts ?? []).map((a) => ({ role: a.role, email: a.email, oneTimePassword: a.oneTimePassword })),
    },
    close: () => server.close(),
  };
}

async function startBare(dataDir: string, redisUrl: string): Promise<{ ready: NodeReady; close(): Promise<void> }> {
  const tlsDir = path.join(dataDir, 'tls');
  const httpsServer = https.createServer({ cert: fs.readFileSync(path.join(tlsDir, 'cert.pem')), key: fs.readFileSync(path.join(tlsDir, 'key.pem')), minVersion: 'TLSv1.2' });
  const io = new Server(httpsServer, { path: '/socket.io', serveClient: false });
  const redisClients: RedisClientType[] = [];
  if (redisUrl) {
    for (let i = 0; i < 2; i++) {
      const client = createClient({ url: redisUrl }) as RedisClientType;
      client.on('error', () => undefined);
      await client.connect();
      redisClients.push(client);
    }
    // Its own channel prefix: the idle cluster must not receive (and pay for) the other's broadcasts.
    io.adapter(createAdapter(redisClients[0], redisClients[1], { key: 'bench-bare' }));
  }
  io.on('connection', (socket) => {
    socket.on('join', (input: { caseId: string }, ack?: (r: unknown) => void) => {
      void socket.join(input.caseId);
      ack?.({ ok: true, data: null });
    });
    // The same relay as ours (volatile, to the room except the sender, the same payload shape).
    socket.on('viewport:update', (input: { caseId: string; [k: string]: unknown }) => {
      const { caseId, ...rest } = input;
      socket.volatile.to(caseId).emit('viewport', { caseId, viewport: { ...rest, byUserId: 'bare', at: new Date().toISOString() } });
    });
  });
  await new Promise<void>((resolve) => httpsServer.listen(0, '127.0.0.1', resolve));
  const port = (httpsServer.address() as AddressInfo).port;
  return {
    ready: { type: 'ready', url: `https://127.0.0.1:${port}`, accounts: [] },
    async close() {
      io.disconnectSockets(true);
      await new Promise<void>((resolve) => io.close(() => resolve()));
      for (const c of redisClients) await c.quit().catch(() => c.destroy());
    },
  };
}

async function main(): Promise<void> {
  const [mode, dataDir, redisUrl = ''] = process.argv.slice(2);
  if ((mode !== 'ours' && mode !== 'bare') || !dataDir) throw new Error('usage: realtime-node <ours|bare> <dataDir> [redisUrl]');
  const node = mode === 'ours' ? await startOurs(dataDir, redisUrl) : await startBare(dataDir, redisUrl);
  process.on('message', (msg: { cmd: string; id: number }) => {
    if (msg.cmd !== 'close') return;
    node.close().then(
      () => {
        process.send!({ id: msg.id, ok: true }, () => process.exit(0));
      },
      (err: Error) => {
        process.send!({ id: msg.id, ok: false, error: err.message }, () => process.exit(1));
      },
    );
  });
  // The parent going away ends this node too.
  process.on('disconnect', () => process.exit(0));
  process.send!(node.ready);
}

main().catch((err: Error) => {
  process.stderr.write(`realtime-node failed: ${err.stack ?? err}\n`);
  process.exit(1);
});
