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

export function startGovernance(app: App, store: Store, keyring: KeyRing, config: Pick<Config, 'governance' | 'dataDir'>, logger: Logger): GovernanceNode {
  const g = config.governance;
  const unsubscribe: (() => void)[] = [];
  // Read before anything starts: a missing or short token file stops the node at start-up.
  const tokenDigest = g.operatorTokenFile ? readOperatorToken(g.operatorTokenFile) : null;
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
