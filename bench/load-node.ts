// Child process of bench/load.ts: one node under test (startServer, exactly what `npm start`
// runs, embedded SQLite, no Redis, media off), in its own process so that its event loop, heap
// and CPU are its own. It measures itself: event-loop delay (perf_hooks histogram, 10 ms
// resolution is too coarse: 1 ms) and memory after a full GC (run with --expose-gc).
//
// IPC: sends { type: 'ready', url, accounts } once listening; answers
//   { cmd: 'lag:reset' } -> starts a new event-loop delay window
//   { cmd: 'lag:get' }   -> { type: 'lag', p50Ms, p99Ms, maxMs, meanMs }
//   { cmd: 'memory' }    -> { type: 'memory', heapUsed, rss, external, sockets } after gc()
//   { cmd: 'close' }     -> closes and exits
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { loadConfig } from '../src/config';
import { createLogger } from '../src/observability/logger';
import { startServer } from '../src/server';

async function main(): Promise<void> {
  const dataDir = process.argv[2]!;
  const level = process.env.BENCH_LOAD_LOG_LEVEL || 'silent';
  const config = loadConfig({
    PORT: '0',
    HOST: '127.0.0.1',
    DATA_DIR: dataDir,
    LOG_LEVEL: level,
    DEMO_SLIDE: 'false',
    RETENTION_PURGE_MINUTES: '0',
    SHUTDOWN_GRACE_SECONDS: '1',
    MEDIASOUP_WORKERS: '0',
  });
  // The login storm is the load: per-IP and per-account login limits (30 and 10 a minute, which
  // the storm would hit in a second from one address) are lifted; everything else is as shipped.
  const server = await startServer({ ...config, publicUrl: 'https://127.0.0.1:0' }, createLogger(level, process.stderr), {
    rateLimits: { loginPerIpPerMinute: 1_000_000, loginPerAccountPerMinute: 1_000_000, apiPerIpPerMinute: 1_000_000 },
  });
  let histogram = monitorEventLoopDelay({ resolution: 1 });
  histogram.enable();
  process.on('message', (msg: { cmd: string }) => {
    if (msg.cmd === 'lag:reset') {
      histogram.disable();
      histogram = monitorEventLoopDelay({ resolution: 1 });
      histogram.enable();
    } else if (msg.cmd === 'lag:get') {
      const ms = (ns: number) => ns / 1e6;
      process.send!({ type: 'lag', p50Ms: ms(histogram.percentile(50)), p99Ms: ms(histogram.percentile(99)), maxMs: ms(histogram.max), meanMs: ms(histogram.mean) });
    } else if (msg.cmd === 'memory') {
      const gc = (globalThis as { gc?: () => void }).gc;
      gc?.();
      gc?.();
      const m = process.memoryUsage();
      process.send!({ type: 'memory', heapUsed: m.heapUsed, rss: m.rss, external: m.external, sockets: server.realtime.io.of('/').sockets.size, gc: Boolean(gc) });
    } else if (msg.cmd === 'close') {
      histogram.disable();
      server.close().then(
        () => process.exit(0),
        () => process.exit(1),
      );
    }
  });
  process.send!({
    type: 'ready',
    url: `https://127.0.0.1:${server.port}`,
    accounts: (server.demoAccounts ?? []).map((a) => ({ role: a.role, email: a.email, oneTimePassword: a.oneTimePassword })),
  });
}

main().catch((err) => {
  process.stderr.write(`load-node failed: ${(err as Error).stack}\n`);
  process.exit(1);
});
