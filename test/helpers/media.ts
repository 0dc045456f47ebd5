// Drives real WebRTC peers (test/helpers/mediaPeer.cjs, a child process each) from a test.
import { fork, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { cookieHeaderOf, waitFor, type TestClient, type TestServer } from './server';

export interface PeerEvent {
  event: string;
  payload: Record<string, unknown>;
}

export interface ConsumerStats {
  consumerId: string;
  producerId: string;
  kind: 'audio' | 'video';
  source: string;
  bytes: number;
  packets: number;
  frames: number;
  closed: boolean;
}

export class MediaPeerProcess {
  readonly events: PeerEvent[] = [];
  readonly #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  #next = 1;
  socketId = '';

  private constructor(readonly child: ChildProcess) {
    child.on('message', (msg: { id?: number; ok?: boolean; result?: unknown; error?: { message: string; code?: string }; event?: string; payload?: Record<string, unknown> }) => {
      if (msg.event) this.events.push({ event: msg.event, payload: msg.payload ?? {} });
      if (msg.id === undefined) return;
      const pending = this.#pending.get(msg.id);
      this.#pending.delete(msg.id);
      if (!pending) return;
      if (msg.ok) pending.resolve(msg.result);
      else pending.reject(Object.assign(new Error(msg.error?.message ?? 'peer command failed'), { code: msg.error?.code }));
    });
    child.on('exit', () => {
      for (const p of this.#pending.values()) p.reject(new Error('media peer exited'));
      this.#pending.clear();
    });
  }

  /** Starts a peer process and connects its socket with `session` (a signed-in client, or a cookie header such as a patient's). */
  static async start(server: TestServer, session: TestClient | string, options: { recordAll?: boolean } = {}): Promise<MediaPeerProcess> {
    const child = fork(path.join(__dirname, 'mediaPeer.cjs'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    await new Promise<void>((resolve, reject) => {
      child.once('message', () => resolve());
      child.once('error', reject);
      child.once('exit', (code) => reject(new Error(`media peer exited with ${code}`)));
    });
    const peer = new MediaPeerProcess(child);
    const cookie = typeof session === 'string' ? session : cookieHeaderOf(session);
    const { socketId } = await peer.cmd<{ socketId: string }>('connect', { url: server.url, cookie, ca: server.ca, recordAll: options.recordAll ?? false });
    peer.socketId = socketId;
    return peer;
  }

  cmd<T = unknown>(cmd: string, args: Record<string, unknown> = {}): Promise<T> {
    const id = this.#next++;
    return new Promise<T>((resolve, reject) => {
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.child.send({ id, cmd, args });
    });
  }

  /** Emits `event` and returns the ack envelope as is. */
  raw<T = unknown>(event: string, payload: unknown): Promise<{ ok: true; data: T } | { ok: false; error: { code: string; message: string } }> {
    return this.cmd('raw', { event, payload });
  }

  /** Every event the socket received (started with recordAll). */
  received(): { event: string; payload: unknown }[] {
    return this.events.filter((e) => e.event === 'any').map((e) => e.payload as { event: string; payload: unknown });
  }

  waitForReceived(event: string, match: (payload: Record<string, unknown>) => boolean = () => true, reason = `event ${event}`, timeoutMs = 15_000) {
    return waitFor(() => this.received().find((e) => e.event === event && match((e.payload ?? {}) as Record<string, unknown>)), reason, timeoutMs);
  }

  stats(): Promise<ConsumerStats[]> {
    return this.cmd<ConsumerStats[]>('stats');
  }

  /** Waits until every consumer of `kind` (at least `count` of them) has received more bytes than before. */
  async waitForFlow(reason: string, count = 1, kind?: 'audio' | 'video', timeoutMs = 30_000): Promise<ConsumerStats[]> {
    const first = new Map((await this.stats()).map((s) => [s.consumerId, s.bytes]));
    return waitFor(
      async () => {
        const now = (await this.stats()).filter((s) => !s.closed && (!kind || s.kind === kind));
        const growing = now.filter((s) => s.bytes > (first.get(s.consumerId) ?? 0) && s.packets > 0);
        return growing.length >= count ? now : null;
      },
      reason,
      timeoutMs,
      200,
    );
  }

  waitForEvent(event: string, match: (payload: Record<string, unknown>) => boolean = () => true, reason = `event ${event}`, timeoutMs = 20_000): Promise<PeerEvent> {
    return waitFor(() => this.events.find((e) => e.event === event && match(e.payload)), reason, timeoutMs);
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.send({ cmd: 'exit' });
    await exited;
  }
}
