// The one typed configuration object, read from environment variables and validated with zod.
// Every default is documented beside its field and in the README configuration table.
import os from 'node:os';
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
    /** mediasoup worker binary; the set-up step builds one and records its path when unset. */
    MEDIASOUP_WORKER_BIN: optionalString,
    /** mediasoup workers (one per core by default); 0 turns audio and video off on this node. */
    MEDIASOUP_WORKERS: z.preprocess(blankToUndefined, z.coerce.number().int().min(0).max(64).default(os.availableParallelism())),
    /** Interface the media ports listen on. */
    MEDIASOUP_LISTEN_IP: z.string().min(1).default('0.0.0.0'),
    /** Address given to clients for media (public/LAN IP or name); auto-detected when listening on 0.0.0.0. */
    MEDIASOUP_ANNOUNCED_IP: optionalString,
    /** Media ports: worker i uses UDP and TCP port RTC_MIN_PORT + i (0: any free port). */
    RTC_MIN_PORT: z.preprocess(blankToUndefined, port.default(40000)),
    RTC_MAX_PORT: z.preprocess(blankToUndefined, port.default(40099)),
    /** TURN servers advertised to clients, comma-separated (turn:host:3478?transport=udp,turns:host:443?transport=tcp). */
    TURN_URLS: optionalString,
    /** coturn static-auth-secret for time-limited credentials (REST API scheme). */
    TURN_SECRET: optionalString,
    /** Lifetime of a TURN credential, seconds. */
    TURN_TTL_SECONDS: z.preprocess(blankToUndefined, z.coerce.number().int().min(60).max(24 * 3600).default(3600)),
    /** Most a peer may send (all its producers), bits/s. */
    MEDIA_MAX_SEND_BITRATE: z.preprocess(blankToUndefined, z.coerce.number().int().min(100_000).max(100_000_000).default(3_000_000)),
    /** Most the server sends a peer (all its consumers), bits/s. */
    MEDIA_MAX_RECEIVE_BITRATE: z.preprocess(blankToUndefined, z.coerce.number().int().min(100_000).max(1_000_000_000).default(15_000_000)),
    /** DICOM DIMSE listener (C-ECHO, C-STORE) port; unset = off (0 = any free port, for tests). */
    DICOM_PORT: z.preprocess(blankToUndefined, port.optional()),
    /** Our called AE titles and the site each serves: "AE_TITLE=<site id>,..." (docs/radiology.md). */
    DICOM_AE_TITLES: optionalString,
    /** Allowed calling AE titles and addresses: "CALLING_AE@ip-or-cidr-or-*=CALLED_AE,...". */
    DICOM_PEERS: optionalString,
    /** DICOM over TLS on DICOM_PORT with the server certificate (PS3.15 B.1 style). */
    DICOM_TLS: z
      .enum(['true', 'false', '1', '0'])
      .default('false')
      .transform((v) => v === 'true' || v === '1'),
    /** PEM CA bundle: with DICOM_TLS, peers must present a certificate it signed. */
    DICOM_TLS_CA_FILE: optionalString,
    /** Largest accepted DICOM instance, in MiB (DIMSE, STOW-RS and browser upload). */
    DICOM_MAX_INSTANCE_MB: z.preprocess(blankToUndefined, z.coerce.number().int().min(1).max(4096).default(512)),
    /** STOW-RS intake tokens: "<site id>=<sha256 hex of the token>,...". */
    DICOMWEB_TOKENS: optionalString,
    /** HL7 v2 MLLP listener port; unset = off (0 = any free port, for tests). */
    HL7_PORT: z.preprocess(blankToUndefined, port.optional()),
    /** Allowed HL7 senders: "SENDING_FACILITY@ip-or-cidr-or-*=<site id>,...". */
    HL7_PEERS: optionalString,
    /** Largest accepted HL7 message, in KiB. */
    HL7_MAX_MESSAGE_KB: z.preprocess(blankToUndefined, z.coerce.number().int().min(1).max(64 * 1024).default(1024)),
    /** File holding the bearer token of the operator endpoints on METRICS_PORT (unset = those endpoints are off). */
    OPERATOR_TOKEN_FILE: optionalString,
    /** Where scheduled and `npm run backup` backups go (embedded SQLite store). */
    BACKUP_DIR: optionalString,
    /** UTC hour of the daily backup, 0-23, or "off". */
    BACKUP_HOUR: z
      .preprocess(blankToUndefined, z.union([z.literal('off'), z.coerce.number().int().min(0).max(23)]).default(2))
      .transform((v) => (v === 'off' ? null : v)),
    /** Daily and weekly backups kept (seed 000: the last 7 days and 5 weeks). */
    BACKUP_KEEP_DAILY: z.preprocess(blankToUndefined, z.coerce.number().int().min(1).max(366).default(7)),
    BACKUP_KEEP_WEEKLY: z.preprocess(blankToUndefined, z.coerce.number().int().min(0).max(520).default(5)),
    /** Forward every audit record to a syslog collector: tls://host:port (RFC 5425, IHE ATNA). */
    AUDIT_SYSLOG_URL: optionalString.pipe(z.string().regex(/^tls:\/\/[^:/\s]+:\d{1,5}$/, 'expected tls://host:port').optional()),
    /** PEM CA bundle that signed the collector's certificate (default: the system CAs). */
    AUDIT_SYSLOG_CA_FILE: optionalString,
    /** PEM client certificate and key for mutual TLS with the collector (ATNA requires both sides authenticated). */
    AUDIT_SYSLOG_CERT_FILE: optionalString,
    AUDIT_SYSLOG_KEY_FILE: optionalString,
    /** A patient's follow-up session ends after this much inactivity (staff sessions follow the site policy). */
    FOLLOWUP_PATIENT_IDLE_MINUTES: z.preprocess(blankToUndefined, z.coerce.number().int().min(1).max(240).default(10)),
    /** Wrong answers to a follow-up's verification question before its invite stops working. */
    FOLLOWUP_MAX_VERIFICATION_FAILURES: z.preprocess(blankToUndefined, z.coerce.number().int().min(1).max(20).default(5)),
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
      radiology: {
        dicomPort: env.DICOM_PORT ?? null,
        aeTitles: env.DICOM_AE_TITLES,
        dicomPeers: env.DICOM_PEERS,
        dicomTls: env.DICOM_TLS,
        dicomTlsCaFile: env.DICOM_TLS_CA_FILE,
        maxInstanceBytes: env.DICOM_MAX_INSTANCE_MB * 1024 * 1024,
        intakeTokens: env.DICOMWEB_TOKENS,
        hl7Port: env.HL7_PORT ?? null,
        hl7Peers: env.HL7_PEERS,
        hl7MaxMessageBytes: env.HL7_MAX_MESSAGE_KB * 1024,
      },
      media: {
        workerBin: env.MEDIASOUP_WORKER_BIN,
        workers: env.MEDIASOUP_WORKERS,
        listenIp: env.MEDIASOUP_LISTEN_IP,
        announcedIp: env.MEDIASOUP_ANNOUNCED_IP,
        minPort: env.RTC_MIN_PORT,
        maxPort: env.RTC_MAX_PORT,
        turnUrls: (env.TURN_URLS ?? '').split(',').map((u) => u.trim()).filter(Boolean),
        turnSecret: env.TURN_SECRET,
        turnTtlSeconds: env.TURN_TTL_SECONDS,
        maxSendBitrate: env.MEDIA_MAX_SEND_BITRATE,
        maxReceiveBitrate: env.MEDIA_MAX_RECEIVE_BITRATE,
      },
      governance: {
        operatorTokenFile: env.OPERATOR_TOKEN_FILE,
        backupDir: path.resolve(env.BACKUP_DIR ?? path.join(dataDir, 'backups')),
        backupHour: env.BACKUP_HOUR,
        backupKeep: { daily: env.BACKUP_KEEP_DAILY, weekly: env.BACKUP_KEEP_WEEKLY },
        syslog: env.AUDIT_SYSLOG_URL
          ? { url: env.AUDIT_SYSLOG_URL, caFile: env.AUDIT_SYSLOG_CA_FILE, certFile: env.AUDIT_SYSLOG_CERT_FILE, keyFile: env.AUDIT_SYSLOG_KEY_FILE }
          : null,
      },
      followUps: { patientIdleMs: env.FOLLOWUP_PATIENT_IDLE_MINUTES * 60_000, maxVerificationFailures: env.FOLLOWUP_MAX_VERIFICATION_FAILURES },
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
