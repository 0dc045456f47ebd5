// Starts a whole node: store, keys, TLS, app, listener; and drains it. Used by main.ts and by
// the integration tests, so the tests run the very code path a user starts.
import type { AddressInfo } from 'node:net';
import { createApp, type App, type AppConfig } from './app';
import { seedIfEmpty, type DemoAccount } from './bootstrap/firstStart';
import type { Config } from './config';
import { KeyRing } from './crypto/keyring';
import { createDualServer } from './http/server';
import { durableSync } from './realtime/durable';
import { createRealtime, type Realtime } from './realtime/server';
import { loadOrCreateTls } from './http/tls';
import type { LimiterFactory } from './http/rateLimit';
import type { Logger } from './observability/logger';
import { createStore } from './store';
import type { Store } from './store/types';

export interface RunningServer {
  url: string;
  port: number;
  app: App;
  realtime: Realtime;
  store: Store;
  /** The one-time demo credentials when this start created them; null otherwise. */
  demoAccounts: DemoAccount[] | null;
  /** Stops accepting, lets in-flight requests finish (up to the grace period), closes the store. */
  close(): Promise<void>;
}

export interface StartOptions {
  limiters?: LimiterFactory;
  /** How long an empty case room lingers before disposal (tests shorten it). */
  roomGraceMs?: number;
  rateLimits?: AppConfig['rateLimits'];
  clock?: () => Date;
}

export async function startServer(config: Config, logger: Logger, options: StartOptions = {}): Promise<RunningServer> {
  const store = await createStore(config);
  try {
    const keyring = KeyRing.open(config.masterKeyFile);
    const tls = await loadOrCreateTls({
      certFile: config.tls.certFile,
      keyFile: config.tls.keyFile,
      dataDir: config.dataDir,
      publicHost: new URL(config.publicUrl).hostname,
    });
    const app = createApp(
      { store, logger, keyring, limiters: options.limiters, clock: options.clock },
      {
        trustProxyHops: config.trustProxyHops,
        sessionAbsoluteMs: config.sessionAbsoluteMs,
        publicUrl: config.publicUrl,
        dataDir: config.dataDir,
        upload: config.upload,
        rateLimits: options.rateLimits,
      },
    );
    await app.cases.recover(logger.child({ module: 'recovery' }), async (m) => (m.width ? { kind: 'demo', size: m.width } : null));
    const demoAccounts = config.demoSeed ? await seedIfEmpty(store, app.identity, app.cases, { demoSlide: config.demoSlide }) : null;
    const metricsServer = config.metricsPort > 0 ? await app.metrics.listen(config.metricsPort, config.host) : null;
    const stopRetention = config.retentionPurgeMs > 0 ? app.retention.schedule(config.retentionPurgeMs) : () => undefined;
    const servers = createDualServer(tls, app.handler, config.publicUrl);
    const allowedOrigins = [new URL(config.publicUrl).origin];
    const realtime = await createRealtime(servers.https, app, durableSync, logger, {
      allowedOrigins,
      redisUrl: config.redisUrl,
      sessionAbsoluteMs: config.sessionAbsoluteMs,
      clock: options.clock ?? (() => new Date()),
      roomGraceMs: options.roomGraceMs,
    });
    await new Promise<void>((resolve, reject) => {
      servers.tcp.once('error', reject);
      servers.tcp.listen(config.port, config.host, () => resolve());
    });
    const port = (servers.tcp.address() as AddressInfo).port;
    // PORT=0 (tests, ephemeral runs): the configured origin had no real port; allow the bound one.
    if (new URL(config.publicUrl).port === '0') {
      const url = new URL(config.publicUrl);
      url.port = String(port);
      allowedOrigins.push(url.origin);
    }
    const displayHost = config.host === '0.0.0.0' || config.host === '::' ? 'localhost' : config.host;
    let closing: Promise<void> | null = null;
    return {
      url: `https://${displayHost}:${port}`,
      port,
      app,
      realtime,
      store,
      demoAccounts,
      close() {
        closing ??= (async () => {
          app.draining = true;
          stopRetention();
          await realtime.close();
          metricsServer?.close();
          await servers.drain(config.shutdownGraceMs);
          await app.close();
          await store.close();
        })();
        return closing;
      },
    };
  } catch (err) {
    await store.close();
    throw err;
  }
}
