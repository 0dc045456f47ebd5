// Jest global setup: a fresh directory for this run's server logs (scanned by logScan.js).
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

module.exports = async () => {
  const dir = path.join(os.tmpdir(), `cc-test-logs-${process.pid}`);
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  process.env.CC_TEST_LOG_DIR = dir;
};
