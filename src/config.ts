// The one typed configuration object, read from environment variables and validated with zod.
// Every default is documented beside its field and in the README configuration table.
import path from 'node:path';
import { z } from 'zod';

/** An empty variable (`PORT=` from an unset compose substitution) means "use the default". */
const blankToUndefined = (v: unknown) => (typeof v === 'string' && v.trim() === '' ? undefined : v);
const port = z.coerce.number().int().min(0).max(65535);
const optionalString = z
  .string()
  .trim()
  .transform((v) => (v === '' ? undefined : v))
  .optional();

export const configSchema = z
  .object({
    /** HTTPS port; plain HTTP arriving on it is redirected to HTTPS. */
    PORT: z.preprocess(blankToUndefined, port.default(8443)),
    /** Interface to bind. */
    HOST: z.string().min(1).default('0.0.0.0'),
    /** Origin users type in their browser; also the Socket.IO Origin allowlist. Default https://localhost:PORT. */
    PUBLIC_URL: optionalString.pipe(z.url().optional()),
    /** Where the SQLite file, generated certificate and key files live. */
    DATA_DIR: z.string().min(1).default('./data'),
    /** PEM certificate and key; a self-signed pair is generated into DATA_DIR/tls when absent. */
    TLS_CERT_FILE: optionalString,
    TLS_KEY_FILE: optionalString,
    /** Use MongoDB (mongoose) instead of the embedded SQLite store when set. */
    MONGODB_URI: optionalString,
    /** Redis for the Socket.IO adapter and shared rate limits when set. */
    REDIS_URL: optionalString,
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    /** Prometheus metrics on a separate port (0 = off). */
    METRICS_PORT: z.preprocess(blankToUndefined, port.default(0)),
    /** Master key file for envelope encryption; generated in DATA_DIR when absent. */
    MASTER_KEY_FILE: optionalString,
    /** Trust X-Forwarded-* from this many proxies (0 = none). */
    TRUST_PROXY_HOPS: z.preprocess(blankToUndefined, z.coerce.number().int().min(0).max(10).default(0)),
    /** Seconds SIGTERM waits for in-flight requests before closing connections. */
    SHUTDOWN_GRACE_SECONDS: z.preprocess(blankToUndefined, z.coerce.number().int().min(0).max(600).default(10)),
    /** Largest accepted upload, in MiB (default 4 GiB). */
    MAX_UPLOAD_MB: z.preprocess(blankToUndefined, z.coerce.number().int().min(1).max(1024 * 1024).default(4096)),
    /** Free space (MiB) that uploads must leave on the data volume. */
    STORAGE_RESERVE_MB: z.preprocess(blankToUndefined, z.coerce.number().int().min(0).default(1024)),
    /** Minutes between retention purges (0 = only by command). */
    RETENTION_PURGE_MINUTES: z.preprocess(blankToUndefined, z.coerce.number().int().min(0).max(7 * 24 * 60).default(60)),
    /** Generate the 20480 x 20480 synthetic demo slide on first start. */
    DEMO_SLIDE: z
      .enum(['true', 'false', '1', '0'])
      .default('true')
      .transform((v) => v === 'true' || v === '1'),
    /** Create the demo site and accounts on the first start with an empty store. */
    DEMO_SEED: z
      .enum(['true', 'false', '1', '0'])
      .default('true')
      .transform((v) => v === 'true' || v === '1'),
  })
  .transform((env) => {
    const dataDir = path.resolve(env.DATA_DIR);
    return {
      port: env.PORT,
      host: env.HOST,
      publicUrl: env.PUBLIC_URL ?? `https://localhost:${env.PORT}`,
      dataDir,
      tls: { certFile: env.TLS_CERT_FILE, keyFile: env.TLS_KEY_FILE },
      mongodbUri: env.MONGODB_URI,
      redisUrl: env.REDIS_URL,
      logLevel: env.LOG_LEVEL,
      metricsPort: env.METRICS_PORT,
      masterKeyFile: env.MASTER_KEY_FILE ?? path.join(dataDir, 'master.key'),
      trustProxyHops: env.TRUST_PROXY_HOPS,
      shutdownGraceMs: env.SHUTDOWN_GRACE_SECONDS * 1000,
      demoSeed: env.DEMO_SEED,
      demoSlide: env.DEMO_SLIDE,
      upload: { maxBytes: env.MAX_UPLOAD_MB * 1024 * 1024, reserveBytes: env.STORAGE_RESERVE_MB * 1024 * 1024 },
      retentionPurgeMs: env.RETENTION_PURGE_MINUTES * 60_000,
      /** Absolute session lifetime (DESIGN 6): not a site policy, fixed at 12 h. */
      sessionAbsoluteMs: 12 * 60 * 60 * 1000,
    };
  });

export type Config = z.output<typeof configSchema>;

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Parses the environment; a bad value throws a ConfigError naming every offending variable. */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const known = Object.keys(configSchema.in.shape);
  const picked: Record<string, string | undefined> = {};
  for (const key of known) picked[key] = env[key];
  const parsed = configSchema.safeParse(picked);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.') || '(env)'}: ${i.message}`);
    throw new ConfigError(`invalid configuration:\n${lines.join('\n')}`);
  }
  return parsed.data;
}
