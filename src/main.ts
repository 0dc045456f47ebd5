// Entry point: configuration, logger, one node; prints the one-time demo credentials on a first
// start (console only, never the log) and drains on SIGTERM/SIGINT.
import { ConfigError, loadConfig } from './config';
import { createLogger } from './observability/logger';
import { startServer } from './server';

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\nSee the configuration table in README.md.\n`);
      process.exit(2);
    }
    throw err;
  }
  const logger = createLogger(config.logLevel);
  const server = await startServer(config, logger);

  if (server.demoAccounts) {
    const lines = [
      '',
      '  First start: demo site "Demo Hospital" created. One-time passwords (shown only now;',
      '  each must be changed at first login):',
      ...server.demoAccounts.map((a) => `    ${a.role.padEnd(12)} ${a.email.padEnd(24)} ${a.oneTimePassword}`),
      '',
    ];
    process.stdout.write(lines.join('\n') + '\n');
  }
  logger.info({ url: server.url, store: server.store.kind }, 'listening');
  process.stdout.write(`listening on ${server.url}\n`);

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'draining');
    server.drain().then(
      () => {
        logger.info('stopped');
        process.exit(0);
      },
      (err) => {
        logger.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((err) => {
  process.stderr.write(`failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
