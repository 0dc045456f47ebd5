// HTTP client of the JSON API: same-origin fetch with the session cookie, the CSRF token on every
// state-changing request, typed errors from the server's error table, and the one upload that
// streams raw bytes (XMLHttpRequest, for its upload progress events).
import { ERROR_CODES, isErrorCode, type ErrorBody, type ErrorCode, type ErrorDetail } from '../../src/protocol/errors';
import type { LoginResponse, MeResponse } from '../../src/protocol/identity';
import type { PublicMaterial } from '../../src/protocol/cases';

export type ClientErrorCode = ErrorCode | 'NETWORK';

export class ApiError extends Error {
  constructor(
    readonly code: ClientErrorCode,
    message: string,
    readonly status: number,
    readonly details: ErrorDetail[] = [],
    /** VERSION_CONFLICT only: the annotation as it now is. */
    readonly current?: unknown,
    /** RATE_LIMITED only: seconds to wait, from Retry-After. */
    readonly retryAfterSeconds: number | null = null,
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

const NETWORK_MESSAGE = 'The server cannot be reached. Check the connection and try again.';
export type SessionLossCode = 'SESSION_EXPIRED' | 'UNAUTHENTICATED' | 'ACCESS_STOPPED';
const SESSION_LOSS: readonly ClientErrorCode[] = ['SESSION_EXPIRED', 'UNAUTHENTICATED', 'ACCESS_STOPPED'];

export interface ApiHooks {
  /** The session is gone (expired, revoked, stopped, signed out elsewhere). */
  sessionLost(code: SessionLossCode): void;
  /** The server asks for the password change or TOTP enrolment first. */
  pending(): void;
  /** The server answered a signed-in request: its idle clock restarted. */
  contact(): void;
}

interface RequestOptions {
  /** Signed-out calls (boot, sign-in): a 401 is an answer, not a lost session. */
  anonymous?: boolean;
}

export class Api {
  #csrfToken: string | null = null;

  constructor(private readonly hooks: ApiHooks) {}

  get<T>(path: string, options?: RequestOptions): Promise<T> {
    return this.request<T>('GET', path, undefined, options);
  }

  post<T>(path: string, body?: unknown, options?: RequestOptions): Promise<T> {
    return this.request<T>('POST', path, body, options);
  }

  patch<T>(path: string, body: unknown): Promise<T> {
    return this.request<T>('PATCH', path, body);
  }

  delete(path: string): Promise<void> {
    return this.request<void>('DELETE', path);
  }

  async login(email: string, password: string, totp?: string): Promise<LoginResponse> {
    const body = totp === undefined ? { email, password } : { email, password, totp };
    const me = await this.post<LoginResponse>('/api/auth/login', body, { anonymous: true });
    // Login starts a new session; the token bound to the old one would now be refused.
    this.#csrfToken = me.csrfToken;
    return me;
  }

  async logout(): Promise<void> {
    try {
      await this.post<void>('/api/auth/logout', undefined, { anonymous: true });
    } finally {
      this.#csrfToken = null;
    }
  }

  me(options?: RequestOptions): Promise<MeResponse> {
    return this.get<MeResponse>('/api/me', options);
  }

  /** Forgets the CSRF token (after the session ended: the next write fetches one for the new state). */
  forgetToken(): void {
    this.#csrfToken = null;
  }

  private async token(): Promise<string> {
    if (!this.#csrfToken) {
      const { csrfToken } = await this.request<{ csrfToken: string }>('GET', '/api/auth/csrf', undefined, { anonymous: true });
      this.#csrfToken = csrfToken;
    }
    return this.#csrfToken;
  }

  private async request<T>(method: string, path: string, body?: unknown, options: RequestOptions = {}, retried = false): Promise<T> {
    const writes = method !== 'GET';
    const headers: Record<string, string> = { Accept: 'application/json' };
    if (writes) headers['X-CSRF-Token'] = await this.token();
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let res: Response;
    try {
      res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: 'same-origin', cache: 'no-store' });
    } catch {
      throw new ApiError('NETWORK', NETWORK_MESSAGE, 0);
    }
    if (res.ok) {
      if (!options.anonymous) this.hooks.contact();
      return (res.status === 204 ? undefined : await res.json()) as T;
    }
    const error = await errorOf(res.status, res.headers.get('Retry-After'), () => res.json());
    if (error.code === 'CSRF_INVALID' && writes && !retried) {
      // The token belonged to an older session (another tab signed in or out): fetch one and retry once.
      this.#csrfToken = null;
      return this.request<T>(method, path, body, options, true);
    }
    this.report(error, options);
    throw error;
  }

  private report(error: ApiError, options: RequestOptions): void {
    if (!options.anonymous && SESSION_LOSS.includes(error.code)) this.hooks.sessionLost(error.code as SessionLossCode);
    if (error.code === 'PASSWORD_CHANGE_REQUIRED' || error.code === 'TOTP_ENROLMENT_REQUIRED') this.hooks.pending();
  }

  /**
   * Uploads one file as the raw request body. `onProgress` gets the bytes the browser has sent;
   * the answer is the material, queued for conversion. `signal` aborts the transfer.
   */
  async upload(caseId: string, file: File, onProgress: (sent: number, total: number) => void, signal?: AbortSignal, retried = false): Promise<PublicMaterial> {
    const token = await this.token();
    const url = `/api/cases/${encodeURIComponent(caseId)}/materials?name=${encodeURIComponent(file.name)}`;
    const result = await new Promise<{ status: number; retryAfter: string | null; text: string }>((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open('POST', url);
      xhr.setRequestHeader('X-CSRF-Token', token);
      xhr.setRequestHeader('Content-Type', 'application/octet-stream');
      xhr.setRequestHeader('Accept', 'application/json');
      xhr.upload.onprogress = (e) => onProgress(e.loaded, e.lengthComputable ? e.total : file.size);
      xhr.onload = () => resolve({ status: xhr.status, retryAfter: xhr.getResponseHeader('Retry-After'), text: xhr.responseText });
      xhr.onerror = () => reject(new ApiError('NETWORK', NETWORK_MESSAGE, 0));
      xhr.onabort = () => reject(new DOMException('The upload was cancelled.', 'AbortError'));
      signal?.addEventListener('abort', () => xhr.abort(), { once: true });
      xhr.send(file);
    });
    if (result.status >= 200 && result.status < 300) {
      this.hooks.contact();
      return (JSON.parse(result.text) as { material: PublicMaterial }).material;
    }
    const error = await errorOf(result.status, result.retryAfter, async () => JSON.parse(result.text));
    if (error.code === 'CSRF_INVALID' && !retried) {
      this.#csrfToken = null;
      return this.upload(caseId, file, onProgress, signal, true);
    }
    this.report(error, {});
    throw error;
  }
}

async function errorOf(status: number, retryAfter: string | null, readBody: () => Promise<unknown>): Promise<ApiError> {
  let body: Partial<ErrorBody> | null = null;
  try {
    body = (await readBody()) as Partial<ErrorBody>;
  } catch {
    // A proxy's HTML error page, or an empty body: fall back to the status.
  }
  const e = body?.error;
  const code: ErrorCode = isErrorCode(e?.code) ? e.code : status >= 500 ? 'INTERNAL' : 'VALIDATION_FAILED';
  const seconds = retryAfter !== null && /^\d+$/.test(retryAfter) ? Number(retryAfter) : null;
  return new ApiError(code, typeof e?.message === 'string' ? e.message : ERROR_CODES[code].message, status, e?.details ?? [], e?.current, seconds);
}

/** A message for a person, from any error a call may throw. */
export function describeError(err: unknown): string {
  if (err instanceof ApiError) {
    if (err.code === 'RATE_LIMITED' && err.retryAfterSeconds) return `Too many attempts. Try again in ${err.retryAfterSeconds} seconds.`;
    if (err.code === 'VALIDATION_FAILED' && err.details.length > 0) {
      return `${err.message} ${err.details.map((d) => `${d.path || 'value'}: ${d.issue}`).join('; ')}`;
    }
    return err.message;
  }
  if (err instanceof DOMException && err.name === 'AbortError') return err.message;
  return ERROR_CODES.INTERNAL.message;
}
