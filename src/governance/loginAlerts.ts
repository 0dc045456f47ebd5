// Repeated failed logins as a log event an operator's log pipeline can alert on (seeds: lockout
// after repeated failures; DESIGN 6: lockouts "alert site admins"). Lockouts themselves are
// logged by the identity domain (`alert: "account_locked"`); this adds the pattern a lockout
// does not catch: many failures from one address across accounts (password spraying), or for
// unknown e-mails, which never lock anything. Per node, over a sliding window.
import type { AuditRecord } from '../audit/model';
import type { Logger } from '../observability/logger';

export interface LoginAlertOptions {
  /** Failures from one IP within the window that raise the alert. */
  threshold: number;
  windowMs: number;
}

export const DEFAULT_LOGIN_ALERT: LoginAlertOptions = { threshold: 10, windowMs: 15 * 60_000 };

export class FailedLoginAlerts {
  /** Failure times per client IP, oldest first; and when each IP last raised the alert. */
  readonly #failures = new Map<string, number[]>();
  readonly #alerted = new Map<string, number>();

  constructor(
    private readonly logger: Logger,
    private readonly options: LoginAlertOptions = DEFAULT_LOGIN_ALERT,
    private readonly now: () => number = Date.now,
  ) {}

  observe(record: AuditRecord): void {
    if (record.type !== 'auth.login' || record.outcome === 0) return;
    const ip = record.actor.ip ?? 'unknown';
    const now = this.now();
    const since = now - this.options.windowMs;
    const times = (this.#failures.get(ip) ?? []).filter((t) => t > since);
    times.push(now);
    this.#failures.set(ip, times);
    // Bound the map: forget addresses whose failures have all left the window.
    if (this.#failures.size > 10_000) {
      for (const [key, list] of this.#failures) if (list[list.length - 1]! <= since) this.#failures.delete(key);
    }
    const last = this.#alerted.get(ip);
    if (times.length >= this.options.threshold && (last === undefined || last <= since)) {
      this.#alerted.set(ip, now);
      // IP, site and count only: never the e-mail tried (it may be a mistyped password).
      this.logger.warn(
        { alert: 'repeated_failed_logins', ip, siteId: record.siteId, failures: times.length, windowMinutes: Math.round(this.options.windowMs / 60_000) },
        'repeated failed logins from one address',
      );
    }
  }
}
