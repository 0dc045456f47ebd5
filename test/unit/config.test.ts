// The configuration contract (src/config.ts): documented defaults, and bad values refused with
// a ConfigError that names the variable. Every call passes an explicit env, never process.env.
import path from 'node:path';
import { ConfigError, loadConfig } from '../../src/config';

function configError(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error(`expected a ConfigError for ${JSON.stringify(env)}`);
}

describe('loadConfig', () => {
  test('defaults: port 8443, an absolute data directory, public URL https://localhost:8443', () => {
    const config = loadConfig({});
    expect(config.port).toBe(8443);
    expect(path.isAbsolute(config.dataDir)).toBe(true);
    expect(config.dataDir).toBe(path.resolve('data'));
    expect(config.publicUrl).toBe('https://localhost:8443');
    expect(config.mongodbUri).toBeUndefined();
    expect(config.logLevel).toBe('info');
    expect(config.masterKeyFile).toBe(path.join(config.dataDir, 'master.key'));
  });

  test('a relative DATA_DIR is made absolute; the default public URL follows PORT', () => {
    const config = loadConfig({ DATA_DIR: 'some/where', PORT: '9443' });
    expect(config.dataDir).toBe(path.resolve('some/where'));
    expect(config.port).toBe(9443);
    expect(config.publicUrl).toBe('https://localhost:9443');
  });

  test.each(['abc', '70000', '-1', '80.5'])('PORT=%s throws a ConfigError naming PORT', (value) => {
    const err = configError({ PORT: value });
    expect(err.name).toBe('ConfigError');
    expect(err.message).toMatch(/^ {2}PORT: /m);
    expect(err.message).not.toMatch(/LOG_LEVEL/);
  });

  test("LOG_LEVEL='loud' is rejected, naming LOG_LEVEL; a known level is accepted", () => {
    expect(configError({ LOG_LEVEL: 'loud' }).message).toMatch(/^ {2}LOG_LEVEL: /m);
    expect(loadConfig({ LOG_LEVEL: 'debug' }).logLevel).toBe('debug');
  });

  test('every offending variable is named at once', () => {
    const err = configError({ PORT: 'abc', LOG_LEVEL: 'loud' });
    expect(err.message).toMatch(/PORT/);
    expect(err.message).toMatch(/LOG_LEVEL/);
  });

  test('an empty or blank MONGODB_URI is treated as unset (embedded SQLite), a real one is kept', () => {
    expect(loadConfig({ MONGODB_URI: '' }).mongodbUri).toBeUndefined();
    expect(loadConfig({ MONGODB_URI: '   ' }).mongodbUri).toBeUndefined();
    expect(loadConfig({ MONGODB_URI: 'mongodb://db:27017/app' }).mongodbUri).toBe('mongodb://db:27017/app');
  });

  test('follow-up limits: 10 idle minutes and 5 wrong answers by default, settable within bounds', () => {
    expect(loadConfig({}).followUps).toEqual({ patientIdleMs: 10 * 60_000, maxVerificationFailures: 5 });
    expect(loadConfig({ FOLLOWUP_PATIENT_IDLE_MINUTES: '3', FOLLOWUP_MAX_VERIFICATION_FAILURES: '2' }).followUps).toEqual({ patientIdleMs: 3 * 60_000, maxVerificationFailures: 2 });
    expect(configError({ FOLLOWUP_PATIENT_IDLE_MINUTES: '0' }).message).toMatch(/^ {2}FOLLOWUP_PATIENT_IDLE_MINUTES: /m);
    expect(configError({ FOLLOWUP_MAX_VERIFICATION_FAILURES: '1000' }).message).toMatch(/^ {2}FOLLOWUP_MAX_VERIFICATION_FAILURES: /m);
  });
});
