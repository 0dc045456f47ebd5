// The small clocks of governance: the failed-login alert window, the ISO week of the backup keep
// policy across year ends, and the time to the next daily backup.
import { Writable } from 'node:stream';
import type { AuditRecord } from '../../src/audit/model';
import { backupsToKeep, isoWeek } from '../../src/governance/backup';
import { msUntilHour } from '../../src/governance/backupSchedule';
import { FailedLoginAlerts } from '../../src/governance/loginAlerts';
import { createLogger } from '../../src/observability/logger';

function failedLogin(ip: string, outcome: 0 | 4 = 4): AuditRecord {
  return { id: 'r', siteId: 's', seq: 1, type: 'auth.login', action: 'E', outcome, time: '', actor: { userId: null, role: null, ip, userAgent: null }, objects: [], details: {}, prevHash: '', hash: '' };
}

test('failed-login alert: once at the threshold per address and window, again only after the window', () => {
  const lines: string[] = [];
  const logger = createLogger('info', new Writable({ write: (c, _e, cb) => (lines.push(String(c)), cb()) }) as never);
  let now = 0;
  const alerts = new FailedLoginAlerts(logger, { threshold: 3, windowMs: 60_000 }, () => now);
  const count = () => lines.filter((l) => l.includes('repeated_failed_logins')).length;
  alerts.observe(failedLogin('10.0.0.1'));
  alerts.observe(failedLogin('10.0.0.1', 0)); // a success is not a failure
  alerts.observe(failedLogin('10.0.0.2'));
  alerts.observe(failedLogin('10.0.0.1'));
  expect(count()).toBe(0);
  alerts.observe(failedLogin('10.0.0.1'));
  expect(count()).toBe(1);
  alerts.observe(failedLogin('10.0.0.1'));
  expect(count()).toBe(1);
  // Failures spread wider than the window never add up to the threshold.
  now = 200_000;
  alerts.observe(failedLogin('10.0.0.3'));
  now = 270_000;
  alerts.observe(failedLogin('10.0.0.3'));
  now = 340_000;
  alerts.observe(failedLogin('10.0.0.3'));
  expect(count()).toBe(1);
  // A new burst after the window alerts again.
  now = 400_000;
  for (let i = 0; i < 3; i++) alerts.observe(failedLogin('10.0.0.1'));
  expect(count()).toBe(2);
  expect(JSON.parse(lines.find((l) => l.includes('repeated_failed_logins'))!)).toMatchObject({ ip: '10.0.0.1', failures: 3, level: 40 });
});

test('ISO weeks across year ends (the weekly backups of the keep policy)', () => {
  expect(isoWeek(new Date('2026-12-31T12:00:00Z'))).toBe('2026-W53');
  expect(isoWeek(new Date('2027-01-01T12:00:00Z'))).toBe('2026-W53');
  expect(isoWeek(new Date('2027-01-04T00:00:00Z'))).toBe('2027-W01');
  expect(isoWeek(new Date('2021-01-03T23:59:59Z'))).toBe('2020-W53');
  expect(isoWeek(new Date('2026-11-18T14:00:00Z'))).toBe('2026-W47');
  // Backups on Thursday 31 Dec and Friday 1 Jan are one ISO week: one weekly backup.
  const kept = backupsToKeep(
    [
      { id: 'thu', createdAt: new Date('2026-12-31T02:00:00Z') },
      { id: 'fri', createdAt: new Date('2027-01-01T02:00:00Z') },
    ],
    { daily: 0, weekly: 5 },
  );
  expect([...kept]).toEqual(['fri']);
});

test('the next daily backup is at the configured UTC hour, today if still ahead, else tomorrow', () => {
  expect(msUntilHour(new Date('2026-11-23T01:30:00Z'), 2)).toBe(30 * 60_000);
  expect(msUntilHour(new Date('2026-11-23T02:00:00Z'), 2)).toBe(24 * 3600_000);
  expect(msUntilHour(new Date('2026-11-23T23:00:00Z'), 0)).toBe(3600_000);
  expect(msUntilHour(new Date('2026-12-31T03:00:00Z'), 2)).toBe(23 * 3600_000);
});
