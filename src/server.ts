// Starts a whole node: store, keys, TLS, app, listener; and drains it. Used by main.ts and by
// the integration tests, so the tests run the very code path a user starts.
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import { createApp, type App, type AppConfig } from './app';
import { seedIfEmpty, type DemoAccount } from './bootstrap/firstStart';
import type { Config } from './config';
import { KeyRing } from './crypto/keyring';
import { createDualServer } from './http/server';
import { durableSync } from './realtime/durable';
import { createRealtime, type Realtime } from './realtime/server';
import { loadOrCreateTls } from './http/tls';
import { connectRedisLimiters, type LimiterFactory } from './http/rateLimit';
import type { Logger } from './observability/logger';
import { createStore } from './store';
import { startGovernance } from './governance/node';
import type { Store } from './store/types';
import type { MediaConfig } from './media/MediaService';
import { startRadiologyListeners, type RadiologyListeners } from './radiology/listeners';

/** Listening on every interface, clients need a real address in their ICE candidates. */
function detectAnnouncedIp(listenIp: string): string | undefined {
  if (listenIp !== '0.0.0.0' && listenIp !== '::') return undefined;
  for (const addresses of Object.values(os.networkInterfaces())) {
    for (const a of addresses ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return '127.0.0.1';
}

export function mediaConfig(config: Config): MediaConfig | null {
  const m = config.media;
  if (m.workers === 0) return null;
  return {
    pool: { workers: m.workers, listenIp: m.listenIp, announcedIp: m.announcedIp ?? detectAnnouncedIp(m.listenIp), minPort: m.minPort, maxPort: m.maxPort },
    room: {
      limits: { transportsPerPeer: 4, producersPerPeer: 3, consumersPerPeer: 150 },
      maxIncomingBitrate: m.maxSendBitrate,
      maxOutgoingBitrate: m.maxReceiveBitrate,
    },
    turn: { urls: m.turnUrls, secret: m.turnSecret, ttlSeconds: m.turnTtlSeconds },
    emptyRoomGraceMs: 10_000,
  };
}

export interface RunningServer {
  url: string;
  port: number;
  app: App;
  realtime: Realtime;
  store: Store;
  /** DICOM DIMSE and HL7 MLLP listeners (each null unless its port is configured). */
  radiology: RadiologyListeners;
  /** The one-time demo credentials when this start created them; null otherwise. */
  demoAccounts: DemoAccount[] | null;
  /** Stops accepting, lets in-flight requests finish (up to the grace period), closes the store. */
  close(): Promise<void>;
  /**
   * SIGTERM: like close(), but first asks this node's socket clients to reconnect to another
   * node (`server:draining`) and waits for them to go (up to the grace period).
   */
  drain(): Promise<void>;
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
  // Several nodes (REDIS_URL): rate-limit counters live in Redis so a budget is global.
  const shared = !options.limiters && config.redisUrl ? await connectRedisLimiters(config.redisUrl, logger.child({ module: 'rate-limits' })).catch(async (err) => {
    await store.close();
    throw err;
  }) : null;
  try {
    const keyring = KeyRing.open(config.masterKeyFile);
    const tls = await loadOrCreateTls({
      certFile: config.tls.certFile,
      keyFile: config.tls.keyFile,
      dataDir: config.dataDir,
      publicHost: new URL(config.publicUrl).hostname,
    });
    const app = createApp(
      { store, logger, keyring, limiters: options.limiters ?? shared?.limiters, clock: options.clock },
      {
        trustProxyHops: config.trustProxyHops,
        sessionAbsoluteMs: config.sessionAbsoluteMs,
        publicUrl: config.publicUrl,
        dataDir: config.dataDir,
        upload: config.upload,
        followUps: config.followUps,
        rateLimits: options.rateLimits,
        radiology: { maxInstanceBytes: config.radiology.maxInstanceBytes, intakeTokens: config.radiology.intakeTokens },
      },
    );
    await app.cases.recover(logger.child({ module: 'recovery' }), async (m) => (m.width ? { kind: 'demo', size: m.width } : null));
    const demoAccounts = config.demoSeed ? await seedIfEmpty(store, app.identity, app.cases, { demoSlide: config.demoSlide }) : null;
    const governance = startGovernance(app, store, keyring, config, logger);
    const metricsServer = config.metricsPort > 0 ? await app.metrics.listen(config.metricsPort, config.host, governance.operator) : null;
    const stopRetention = config.retentionPurgeMs > 0 ? app.retention.schedule(config.retentionPurgeMs) : () => undefined;
    const servers = createDualServer(tls, app.handler, config.publicUrl);
    const allowedOrigins = [new URL(config.publicUrl).origin];
    const realtime = await createRealtime(servers.https, app, durableSync, logger, {
      allowedOrigins,
      redisUrl: config.redisUrl,
      sessionAbsoluteMs: config.sessionAbsoluteMs,
      clock: options.clock ?? (() => new Date()),
      roomGraceMs: options.roomGraceMs,
      media: mediaConfig(config),
    });
    await new Promise<void>((resolve, reject) => {
      servers.tcp.once('error', reject);
      servers.tcp.listen(config.port, config.host, () => resolve());
    });
    const port = (servers.tcp.address() as AddressInfo).port;
    const radiology = await startRadiologyListeners(config, app, tls, logger, options.limiters ?? shared?.limiters);
    // PORT=0 (tests, ephemeral runs): the configured origin had no real port; allow the bound one.
    if (new URL(config.publicUrl).port === '0') {
      const url = new URL(config.publicUrl);
      url.port = String(port);
      allowedOrigins.push(url.origin);
    }
    const displayHost = config.host === '0.0.0.0' || config.host === '::' ? 'localhost' : config.host;
    let closing: Promise<void> | null = null;
    const shutdown = (graceful: boolean) =>
      (closing ??= (async () => {
        app.draining = true;
        stopRetention();
        if (graceful) {
          // The listener closes at once (the load balancer's next connection goes elsewhere),
          // while sockets already open are asked to move and given the grace period to do so.
          const http = servers.drain(config.shutdownGraceMs + 2000);
          await realtime.drain(config.shutdownGraceMs);
          metricsServer?.close();
          await http;
        } else {
          await realtime.close();
          metricsServer?.close();
          await servers.drain(config.shutdownGraceMs);
        }
        await governance.stop();
        await radiology.close();
        await app.close();
        await shared?.close();
        await store.close();
      })());
    return {
      url: `https://${displayHost}:${port}`,
      port,
      app,
      realtime,
      store,
      radiology,
      demoAccounts,
      close: () => shutdown(false),
      drain: () => shutdown(true),
    };
  } catch (err) {
    await shared?.close();
    await store.close();
    throw err;
  }
}
