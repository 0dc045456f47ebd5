// The governance parts a running node starts beside the app: the operator endpoints on the
// metrics listener, audit forwarding to syslog (ATNA), the repeated-failed-login alert, and the
// daily backup of the embedded store. One place to start them and to stop them.
import type http from 'node:http';
import type { App } from '../app';
import { operatorHandler, readOperatorToken } from '../admin/operator';
import { SyslogForwarder } from '../audit/syslog';
import type { Config } from '../config';
import type { KeyRing } from '../crypto/keyring';
import { memoryLimiters } from '../http/rateLimit';
import type { Logger } from '../observability/logger';
import { SqliteStore } from '../store/sqlite';
import type { Store } from '../store/types';
import { Gauge } from 'prom-client';
import { listBackups } from './backup';
import { BackupScheduler } from './backupSchedule';
import { FailedLoginAlerts } from './loginAlerts';

export interface GovernanceNode {
  /** Handler for the metrics listener (answers /operator/*). */
  operator: (req: http.IncomingMessage, res: http.ServerResponse) => boolean;
  syslog: SyslogForwarder | null;
  backups: BackupScheduler | null;
  stop(): Promise<void>;
}

/** Operator requests per client address per minute. */
const OPERATOR_PER_IP_PER_MINUTE = 30;

export function startGovernance(app: App, store: Store, keyring: KeyRing, config: Pick<Config, 'governance' | 'dataDir' | 'metricsPort'>, logger: Logger): GovernanceNode {
  const g = config.governance;
  const unsubscribe: (() => void)[] = [];
  // Read before anything starts: a missing or short token file stops the node at start-up.
  const tokenDigest = g.operatorTokenFile ? readOperatorToken(g.operatorTokenFile) : null;
  if (tokenDigest && config.metricsPort === 0) logger.warn({ module: 'operator' }, 'OPERATOR_TOKEN_FILE is set but METRICS_PORT is 0: the operator endpoints are not served');
  const operator = operatorHandler({
    usage: app.usage,
    tokenDigest,
    limiter: memoryLimiters('operator-ip', { points: OPERATOR_PER_IP_PER_MINUTE, duration: 60 }),
    logger: logger.child({ module: 'operator' }),
  });

  const loginAlerts = new FailedLoginAlerts(logger.child({ module: 'alerts' }));
  unsubscribe.push(app.audit.subscribe((record) => loginAlerts.observe(record)));

  let syslog: SyslogForwarder | null = null;
  if (g.syslog) {
    syslog = new SyslogForwarder({ ...g.syslog, logger: logger.child({ module: 'audit-syslog' }) });
    const forwarder = syslog;
    unsubscribe.push(app.audit.subscribe((record) => forwarder.send(record)));
  }

  let backups: BackupScheduler | null = null;
  if (g.backupHour !== null && store instanceof SqliteStore) {
    backups = new BackupScheduler({
      db: store.db,
      dataDir: config.dataDir,
      backupDir: g.backupDir,
      keyring,
      keep: g.backupKeep,
      audit: app.audit,
      hour: g.backupHour,
      logger: logger.child({ module: 'backup' }),
    });
    backups.start();
  }

  registerGauges(app, g.backupDir, syslog);

  return {
    operator,
    syslog,
    backups,
    async stop() {
      for (const u of unsubscribe) u();
      await backups?.stop();
      await syslog?.close();
    },
  };
}

/**
 * Gauges an operator alerts on: the newest backup's age (from BACKUP_DIR itself, so backups taken
 * by `npm run backup` count too) and the state of audit forwarding. No labels, no ids.
 */
function registerGauges(app: App, backupDir: string, syslog: SyslogForwarder | null): void {
  const registers = [app.metrics.registry];
  if (app.metrics.registry.getSingleMetric('backup_newest_timestamp_seconds')) return;
  const newest: Gauge = new Gauge({
    name: 'backup_newest_timestamp_seconds',
    help: 'Creation time of the newest complete backup in BACKUP_DIR (0 when there is none); alert when older than 26 h',
    registers,
    collect: () => {
      const times = listBackups(backupDir).map((b) => b.createdAt.getTime());
      newest.set(times.length > 0 ? Math.max(...times) / 1000 : 0);
    },
  });
  if (!syslog) return;
  const forwarder = syslog;
  const queued: Gauge = new Gauge({ name: 'audit_syslog_queue_length', help: 'Audit records waiting for the syslog collector', registers, collect: () => queued.set(forwarder.stats.queued) });
  const connected: Gauge = new Gauge({ name: 'audit_syslog_connected', help: '1 while connected to the audit syslog collector', registers, collect: () => connected.set(forwarder.stats.connected ? 1 : 0) });
  const dropped: Gauge = new Gauge({ name: 'audit_syslog_dropped_total', help: 'Audit records not forwarded because the queue was full (they stay in the store)', registers, collect: () => dropped.set(forwarder.stats.dropped) });
  const sent: Gauge = new Gauge({ name: 'audit_syslog_sent_total', help: 'Audit records written to the syslog collector', registers, collect: () => sent.set(forwarder.stats.sent) });
}
