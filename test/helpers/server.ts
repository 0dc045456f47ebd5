// Test harness: a real node (startServer: HTTPS, store, app) on port 0 in a fresh data
// directory, with its logs captured in memory, a controllable clock, and cookie-keeping clients.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { setTimeout as delay } from 'node:timers/promises';
import request from 'supertest';
import { io as ioClient, type Socket as ClientSocket } from 'socket.io-client';
import { loadConfig } from '../../src/config';
import { createLogger } from '../../src/observability/logger';
import { startServer, type RunningServer, type StartOptions } from '../../src/server';

export const RUN_LOG_DIR = process.env.CC_TEST_LOG_DIR ?? path.join(os.tmpdir(), 'cc-test-logs');
fs.mkdirSync(RUN_LOG_DIR, { recursive: true });

/**
 * Remembers a value that must never appear in a server log (a password, a session cookie): the
 * global teardown (test/logScan.js) searches every log line of the run for each one.
 */
export function recordSecret(...values: (string | null | undefined)[]): void {
  const lines = values.filter((v): v is string => typeof v === 'string' && v.length >= 8 && !v.includes('\n'));
  if (lines.length) fs.appendFileSync(path.join(RUN_LOG_DIR, `${process.pid}.secrets`), lines.join('\n') + '\n');
}

/** Passwords set by demoLogin, by e-mail: a test that restarts a node logs in again with them. */
export const lastPasswords = new Map<string, string>();

export class FakeClock {
  constructor(private ms = Date.now()) {}
  now = (): Date => new Date(this.ms);
  advance(ms: number): void {
    this.ms += ms;
  }
}

export interface TestServer {
  server: RunningServer;
  url: string;
  dataDir: string;
  clock: FakeClock;
  logs: string[];
  ca: string;
  client(): TestClient;
  /** A Socket.IO client carrying `client`'s session cookie (not yet connected: call connect). */
  socket(client: TestClient, options?: { origin?: string }): ClientSocket;
  /** Logs in as a demo account, changing its one-time password; returns the client. */
  demoLogin(role: 'site_admin' | 'clinician' | 'pathologist'): Promise<{ client: TestClient; email: string; password: string }>;
  close(): Promise<void>;
}

export async function startTestServer(
  env: Record<string, string> = {},
  options: StartOptions & { dataDir?: string } = {},
): Promise<TestServer> {
  const dataDir = options.dataDir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'cc-test-'));
  const config = loadConfig({ PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir, LOG_LEVEL: 'debug', SHUTDOWN_GRACE_SECONDS: '1', DEMO_SLIDE: 'false', RETENTION_PURGE_MINUTES: '0',
    // One mediasoup worker on any free port of 127.0.0.1: test servers run side by side.
    MEDIASOUP_WORKERS: '1', RTC_MIN_PORT: '0', MEDIASOUP_LISTEN_IP: '127.0.0.1', ...env });
  const logs: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      logs.push(String(chunk));
      // Every test server's log also goes to one directory per run, which the global teardown
      // searches for anything that must never be logged (test/logScan.ts).
      fs.appendFile(path.join(RUN_LOG_DIR, `${process.pid}.log`), chunk, () => cb());
    },
  });
  const clock = new FakeClock();
  const logger = createLogger('debug', sink);
  const server = await startServer({ ...config, publicUrl: `https://127.0.0.1:${config.port}` }, logger, { clock: clock.now, ...options, rateLimits: { loginPerIpPerMinute: 1000, loginPerAccountPerMinute: 1000, ...options.rateLimits } });
  const url = `https://127.0.0.1:${server.port}`;
  const ca = fs.readFileSync(path.join(dataDir, 'tls', 'cert.pem'), 'utf8');
  const t: TestServer = {
    server,
    url,
    dataDir,
    clock,
    logs,
    ca,
    client: () => new TestClient(url, ca),
    socket: (c, opts = {}) => socketFor(url, ca, c, opts.origin),
    async demoLogin(role) {
      const account = server.demoAccounts?.find((a) => a.role === role);
      if (!account) throw new Error(`no demo ${role}`);
      const c = new TestClient(url, ca);
      const newPassword = `correct-horse-battery-${Math.random().toString(36).slice(2)}`;
      await c.login(account.email, account.oneTimePassword).expect(200);
      await c.post('/api/auth/password', { currentPassword: account.oneTimePassword, newPassword }).expect(200);
      account.oneTimePassword = newPassword;
      lastPasswords.set(account.email, newPassword);
      recordSecret(newPassword);
      return { client: c, email: account.email, password: newPassword };
    },
    close: () => server.close(),
  };
  return t;
}

/** A browser-like client: keeps cookies, fetches and sends the CSRF token on every write. */
export class TestClient {
  readonly agent: ReturnType<typeof request.agent>;
  csrfToken: string | null = null;

  constructor(
    readonly url: string,
    ca: string,
  ) {
    this.agent = request.agent(url).ca(ca);
  }

  async csrf(): Promise<string> {
    const res = await this.agent.get('/api/auth/csrf').expect(200);
    this.csrfToken = res.body.csrfToken;
    return this.csrfToken!;
  }

  login(email: string, password: string, totp?: string) {
    return this.withCsrf(async () => {
      const res = await this.agent
        .post('/api/auth/login')
        .set('X-CSRF-Token', this.csrfToken!)
        .send(totp === undefined ? { email, password } : { email, password, totp });
      if (res.status === 200) this.csrfToken = res.body.csrfToken;
      // The password and the session cookie this login produced must never reach a log.
      recordSecret(password, this.csrfToken, ...sessionCookieValues(res.headers['set-cookie']));
      return res;
    });
  }

  get(p: string) {
    return this.agent.get(p);
  }

  post(p: string, body?: unknown) {
    return this.write('post', p, body);
  }

  patch(p: string, body?: unknown) {
    return this.write('patch', p, body);
  }

  private write(method: 'post' | 'patch', p: string, body?: unknown) {
    return this.withCsrf(() => {
      const r = this.agent[method](p).set('X-CSRF-Token', this.csrfToken!);
      return body === undefined ? r : r.send(body as object);
    });
  }

  /** Returns a thenable supertest-like chain whose request first ensures a CSRF token. */
  private withCsrf<T extends PromiseLike<request.Response>>(make: () => T | Promise<request.Response>) {
    const ready = this.csrfToken ? Promise.resolve() : this.csrf().then(() => undefined);
    const response = ready.then(() => make());
    return new PendingResponse(response);
  }
}

/** A response promise with supertest's `.expect(status)` convenience, reporting the body on mismatch. */
export class PendingResponse implements PromiseLike<request.Response> {
  constructor(private readonly response: Promise<request.Response>) {}

  then<A = request.Response, B = never>(
    onfulfilled?: ((value: request.Response) => A | PromiseLike<A>) | null,
    onrejected?: ((reason: unknown) => B | PromiseLike<B>) | null,
  ): Promise<A | B> {
    return this.response.then(onfulfilled, onrejected);
  }

  expect(status: number): PendingResponse {
    return new PendingResponse(
      this.response.then((res) => {
        if (res.status !== status) {
          throw new Error(`expected HTTP ${status}, got ${res.status}: ${JSON.stringify(res.body)}`);
        }
        return res;
      }),
    );
  }
}

/** Polls until `check` returns a truthy value, failing with `reason` after `timeoutMs`. */
export async function waitFor<T>(check: () => T | Promise<T>, reason: string, timeoutMs = 10_000, intervalMs = 20): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting: ${reason}`);
    await delay(intervalMs);
  }
}

/** The session cookie's value as sent, URL-decoded, and its bare id (s:<id>.<signature>). */
function sessionCookieValues(setCookie: string | string[] | undefined): string[] {
  const out: string[] = [];
  for (const header of Array.isArray(setCookie) ? setCookie : setCookie ? [setCookie] : []) {
    const match = /^__Host-sid=([^;]+)/.exec(header);
    if (!match) continue;
    const decoded = decodeURIComponent(match[1]!);
    out.push(match[1]!, decoded, decoded.replace(/^s:/, '').split('.')[0]!);
  }
  return out;
}

export function cookieHeaderOf(client: TestClient): string {
  const jar = (client.agent as unknown as { jar: { getCookies(o: object): { name: string; value: string }[] } }).jar;
  return jar
    .getCookies({ domain: '127.0.0.1', path: '/', secure: true, script: false })
    .map((c) => `${c.name}=${c.value}`)
    .join('; ');
}

export function socketFor(url: string, ca: string, client: TestClient, origin?: string): ClientSocket {
  return ioClient(url, {
    path: '/socket.io',
    transports: ['websocket'],
    autoConnect: false,
    reconnection: false,
    ca,
    extraHeaders: { Cookie: cookieHeaderOf(client), ...(origin ? { Origin: origin } : {}) },
  });
}

/** Emits with an ack and resolves with the ack envelope. */
export function call<T = unknown>(socket: ClientSocket, event: string, payload: unknown, timeoutMs = 10_000): Promise<{ ok: true; data: T } | { ok: false; error: { code: string; message: string; current?: unknown } }> {
  return socket.timeout(timeoutMs).emitWithAck(event, payload) as never;
}

/** Connects and resolves once connected, or rejects with the server's refusal. */
export function connect(socket: ClientSocket): Promise<ClientSocket> {
  return new Promise((resolve, reject) => {
    socket.once('connect', () => resolve(socket));
    socket.once('connect_error', (err) => reject(err));
    socket.connect();
  });
}

/** Resolves with the next `event` payload matching `match`. */
export function nextEvent<T = unknown>(socket: ClientSocket, event: string, match: (payload: T) => boolean = () => true, timeoutMs = 10_000): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.off(event, handler);
      reject(new Error(`timed out waiting for ${event}`));
    }, timeoutMs);
    const handler = (payload: T) => {
      if (!match(payload)) return;
      clearTimeout(timer);
      socket.off(event, handler);
      resolve(payload);
    };
    socket.on(event, handler);
  });
}
