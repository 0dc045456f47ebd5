// Inactivity watch of a signed-in page: the server ends a session after the site's idle timeout
// (session.idleTimeoutSeconds), so the page warns a minute before, keeps the server's clock in
// step with the person's activity, and signs out when the time is up. Tabs of the same origin
// share their activity, so working in one tab does not sign out the others.
/** The warning comes a minute before the end (or halfway, for a policy of a minute or two). */
const WARN_BEFORE_MS = 60_000;
/** Activity restarts the server's idle clock at most this often (a GET /api/me). */
const KEEP_ALIVE_EVERY_MS = 60_000;
const SHARE_EVERY_MS = 5_000;
const ACTIVITY_EVENTS = ['pointerdown', 'keydown', 'wheel', 'touchstart'] as const;

export interface IdleHooks {
  /** Shows the warning; `deadline` is when the session ends (epoch ms). */
  warn(deadline: number): void;
  /** Hides the warning (activity came back). */
  clearWarning(): void;
  /** Time is up. */
  expire(): void;
  /** Restarts the server's idle clock. */
  keepAlive(): Promise<void>;
}

export class IdleWatch {
  #idleMs: number;
  #lastActivity = Date.now();
  #lastServerContact = Date.now();
  #lastShared = 0;
  #warnTimer: number | null = null;
  #expireTimer: number | null = null;
  #warning = false;
  #closed = false;
  #channel: BroadcastChannel | null;
  readonly #onActivity = () => this.activity();
  readonly #onPointerMove = () => {
    // Moving the mouse counts, but not while the warning is up: that takes a deliberate click or key.
    if (!this.#warning) this.activity();
  };

  constructor(
    idleTimeoutSeconds: number,
    private readonly hooks: IdleHooks,
  ) {
    this.#idleMs = idleTimeoutSeconds * 1000;
    for (const name of ACTIVITY_EVENTS) document.addEventListener(name, this.#onActivity, { passive: true, capture: true });
    document.addEventListener('pointermove', this.#onPointerMove, { passive: true, capture: true });
    this.#channel = typeof BroadcastChannel === 'function' ? new BroadcastChannel('cc-activity') : null;
    this.#channel?.addEventListener('message', (e: MessageEvent<{ at: number }>) => {
      if (typeof e.data?.at === 'number' && e.data.at > this.#lastActivity) {
        this.#lastActivity = e.data.at;
        this.#lastServerContact = Math.max(this.#lastServerContact, e.data.at);
        this.#schedule();
      }
    });
    this.#schedule();
  }

  /** The site's idle timeout may change (GET /api/me answers the current one). */
  setTimeout(idleTimeoutSeconds: number): void {
    this.#idleMs = idleTimeoutSeconds * 1000;
    this.#schedule();
  }

  /** Any answer from the server to this user restarted its idle clock there. */
  serverContact(): void {
    this.#lastServerContact = Date.now();
  }

  activity(): void {
    if (this.#closed) return;
    const now = Date.now();
    this.#lastActivity = now;
    if (now - this.#lastShared > SHARE_EVERY_MS) {
      this.#lastShared = now;
      this.#channel?.postMessage({ at: now });
    }
    if (now - this.#lastServerContact > Math.min(KEEP_ALIVE_EVERY_MS, this.#idleMs / 4)) {
      this.#lastServerContact = now;
      this.hooks.keepAlive().catch(() => undefined);
    }
    this.#schedule();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#clearTimers();
    for (const name of ACTIVITY_EVENTS) document.removeEventListener(name, this.#onActivity, { capture: true });
    document.removeEventListener('pointermove', this.#onPointerMove, { capture: true });
    this.#channel?.close();
  }

  #clearTimers(): void {
    if (this.#warnTimer !== null) window.clearTimeout(this.#warnTimer);
    if (this.#expireTimer !== null) window.clearTimeout(this.#expireTimer);
    this.#warnTimer = this.#expireTimer = null;
  }

  #schedule(): void {
    if (this.#closed) return;
    this.#clearTimers();
    if (this.#warning) {
      this.#warning = false;
      this.hooks.clearWarning();
    }
    const deadline = this.#lastActivity + this.#idleMs;
    const now = Date.now();
    this.#warnTimer = window.setTimeout(() => {
      this.#warning = true;
      this.hooks.warn(deadline);
    }, Math.max(0, deadline - Math.min(WARN_BEFORE_MS, this.#idleMs / 2) - now));
    this.#expireTimer = window.setTimeout(() => {
      this.close();
      this.hooks.expire();
    }, Math.max(0, deadline - now));
  }
}
