// The case room connection: one Socket.IO socket (same origin, /socket.io, session cookie),
// joined to one case. It keeps the last chat and annotation sequence numbers in memory, so a
// reconnect rejoins with them and the server sends exactly what was missed; a gap seen in a live
// stream is filled with chat:sync / annotation:sync. Typed by the protocol's event maps.
import { io, type Socket } from 'socket.io-client';
import type { AnnotationOp } from '../../../src/protocol/annotations';
import type { PublicMaterial } from '../../../src/protocol/cases';
import type { PublicChatMessage } from '../../../src/protocol/chat';
import type { ErrorCode } from '../../../src/protocol/errors';
import type { Ack, AckError, ClientToServerEvents, JoinSnapshot, Member, PointerUpdate, Presenter, ServerToClientEvents, SessionEndReason, Viewport } from '../../../src/protocol/realtime';

export type ConnectionState = 'connecting' | 'online' | 'reconnecting' | 'back-online';

export class AckFailure extends Error {
  constructor(readonly error: AckError) {
    super(error.message);
    this.name = 'AckFailure';
  }
  get code(): ErrorCode {
    return this.error.code;
  }
}

export interface RoomHandlers {
  /** Every (re)join; `first` is false on a rejoin, where `annotations` is null and ops hold what was missed. */
  snapshot(snapshot: JoinSnapshot, first: boolean): void;
  connection(state: ConnectionState): void;
  memberJoined(member: Member): void;
  memberLeft(socketId: string, userId: string): void;
  memberState(socketId: string, state: 'active' | 'idle'): void;
  presenter(presenter: Presenter | null): void;
  viewport(viewport: Viewport): void;
  pointer(pointer: PointerUpdate): void;
  chat(message: PublicChatMessage): void;
  annotationOp(op: AnnotationOp): void;
  material(material: PublicMaterial): void;
  /** An order or report arrived from the RIS for this case. */
  documents(): void;
  /** The session ended (server event) or the handshake was refused for the session. */
  sessionEnded(reason: SessionEndReason | 'refused', code?: string): void;
  /** A join failed for another reason (no such case, forbidden...). */
  joinFailed(error: AckError | Error): void;
}

const ACK_TIMEOUT_MS = 10_000;
const SESSION_REFUSALS = ['UNAUTHENTICATED', 'SESSION_EXPIRED', 'ACCESS_STOPPED'];
const BACK_ONLINE_MS = 3000;
/** Quiet time after the last viewport move before it is sent again reliably (the server does the same for followers). */
const VIEWPORT_SETTLE_MS = 300;

type TypedSocket = Socket<ServerToClientEvents, ClientToServerEvents>;

export class RoomClient {
  readonly socket: TypedSocket;
  /** Last sequence numbers applied; undefined before the first join (then the server sends all). */
  lastChatSeq: number | undefined;
  lastAnnotationSeq: number | undefined;
  #joined = false;
  #everConnected = false;
  #closed = false;
  #backOnlineTimer: number | null = null;
  #settleTimer: number | null = null;
  #syncing = { chat: false, annotations: false };
  /** Acknowledged events sent and not yet answered; a move to another node waits for them. */
  #inFlight = 0;
  #moving = false;

  constructor(
    readonly caseId: string,
    private readonly handlers: RoomHandlers,
  ) {
    // WebSocket only: behind a load balancer without sticky sessions, long-polling would break.
    this.socket = io({ path: '/socket.io', transports: ['websocket'], withCredentials: true, autoConnect: false });
    this.#listen();
    handlers.connection('connecting');
    this.socket.connect();
  }

  get joined(): boolean {
    return this.#joined && this.socket.connected;
  }

  get socketId(): string | undefined {
    return this.socket.id;
  }

  /** Emits an acknowledged event; resolves with `data` or rejects with AckFailure. */
  async call<T>(event: keyof ClientToServerEvents, payload: unknown): Promise<T> {
    if (!this.socket.connected) throw new AckFailure({ code: 'INTERNAL', message: 'Not connected. Wait until the room is back online.' });
    if (this.#moving) throw new AckFailure({ code: 'SERVER_DRAINING', message: 'Moving to another server. Try again in a moment.' });
    // The event maps type most payloads as unknown (validated by the server); one cast here.
    const timed = this.socket.timeout(ACK_TIMEOUT_MS) as unknown as { emitWithAck(event: string, payload: unknown): Promise<Ack<T>> };
    let answer: Ack<T>;
    this.#inFlight++;
    try {
      answer = await timed.emitWithAck(event, payload);
    } catch {
      throw new AckFailure({ code: 'INTERNAL', message: 'The server did not answer in time. Try again.' });
    } finally {
      this.#inFlight--;
    }
    if (!answer.ok) throw new AckFailure(answer.error);
    return answer.data;
  }

  /** Volatile events: no ack, dropped when not connected (only the latest position matters). */
  /**
   * Volatile (a move that cannot be sent now is skipped, the next one supersedes it); the last
   * view is sent once more, reliably, when the moves settle, so the room always ends on it.
   */
  sendViewport(payload: Parameters<ClientToServerEvents['viewport:update']>[0]): void {
    if (!this.joined) return;
    this.socket.volatile.emit('viewport:update', payload);
    if (this.#settleTimer !== null) window.clearTimeout(this.#settleTimer);
    this.#settleTimer = window.setTimeout(() => {
      this.#settleTimer = null;
      if (this.joined) this.socket.emit('viewport:update', payload);
    }, VIEWPORT_SETTLE_MS);
  }

  sendPointer(payload: Parameters<ClientToServerEvents['pointer:update']>[0]): void {
    if (this.joined) this.socket.volatile.emit('pointer:update', payload);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#settleTimer !== null) window.clearTimeout(this.#settleTimer);
    if (this.#backOnlineTimer !== null) window.clearTimeout(this.#backOnlineTimer);
    this.socket.removeAllListeners();
    this.socket.io.removeAllListeners();
    this.socket.disconnect();
  }

  #listen(): void {
    const s = this.socket;
    s.on('connect', () => {
      const rejoin = this.#everConnected;
      this.#everConnected = true;
      void this.#join(rejoin);
    });
    s.on('disconnect', (reason) => {
      this.#joined = false;
      if (this.#closed || reason === 'io client disconnect') return;
      // The server closing us is final only with a session:ended before it; otherwise retry.
      if (reason === 'io server disconnect') s.connect();
      this.handlers.connection('reconnecting');
    });
    s.on('connect_error', (err: Error & { data?: { code?: string } }) => {
      const code = err.data?.code ?? err.message;
      if (SESSION_REFUSALS.includes(code)) {
        this.close();
        this.handlers.sessionEnded('refused', code);
        return;
      }
      if (this.#everConnected) this.handlers.connection('reconnecting');
    });
    // The node is shutting down (docs/protocol.md): once the answers to what was already sent
    // have arrived, reconnect; the load balancer picks another node and the rejoin catches up.
    s.on('server:draining', () => void this.#move());
    s.on('session:ended', ({ reason }) => {
      this.close();
      this.handlers.sessionEnded(reason);
    });
    s.on('presence:joined', ({ caseId, member }) => caseId === this.caseId && this.handlers.memberJoined(member));
    s.on('presence:left', ({ caseId, socketId, userId }) => caseId === this.caseId && this.handlers.memberLeft(socketId, userId));
    s.on('presence:changed', ({ caseId, socketId, state }) => caseId === this.caseId && this.handlers.memberState(socketId, state));
    s.on('presenter:changed', ({ caseId, presenter }) => caseId === this.caseId && this.handlers.presenter(presenter));
    s.on('viewport', ({ caseId, viewport }) => caseId === this.caseId && this.handlers.viewport(viewport));
    s.on('pointer', ({ caseId, pointer }) => caseId === this.caseId && this.handlers.pointer(pointer));
    s.on('material:progress', ({ caseId, material }) => caseId === this.caseId && this.handlers.material(material as PublicMaterial));
    s.on('documents:changed', ({ caseId }) => caseId === this.caseId && this.handlers.documents());
    s.on('chat:message', ({ caseId, message }) => {
      if (caseId === this.caseId) this.#onChat(message as PublicChatMessage);
    });
    s.on('annotation:op', ({ caseId, op }) => {
      if (caseId === this.caseId) this.#onOp(op as AnnotationOp);
    });
  }

  async #move(): Promise<void> {
    if (this.#moving || this.#closed) return;
    this.#moving = true;
    this.handlers.connection('reconnecting');
    const deadline = Date.now() + ACK_TIMEOUT_MS;
    while (this.#inFlight > 0 && Date.now() < deadline) await new Promise((resolve) => window.setTimeout(resolve, 50));
    this.#moving = false;
    if (this.#closed) return;
    this.#joined = false;
    this.socket.disconnect();
    this.socket.connect();
  }

  async #join(rejoin: boolean): Promise<void> {
    try {
      const snapshot = await this.call<JoinSnapshot>('room:join', {
        caseId: this.caseId,
        ...(this.lastChatSeq !== undefined ? { lastChatSeq: this.lastChatSeq } : {}),
        ...(this.lastAnnotationSeq !== undefined ? { lastAnnotationSeq: this.lastAnnotationSeq } : {}),
      });
      if (this.#closed) return;
      this.#joined = true;
      const first = this.lastAnnotationSeq === undefined;
      this.lastChatSeq = Math.max(this.lastChatSeq ?? 0, snapshot.latestChatSeq);
      this.lastAnnotationSeq = Math.max(this.lastAnnotationSeq ?? 0, snapshot.latestAnnotationSeq);
      this.handlers.snapshot(snapshot, first);
      if (rejoin) {
        this.handlers.connection('back-online');
        if (this.#backOnlineTimer !== null) window.clearTimeout(this.#backOnlineTimer);
        this.#backOnlineTimer = window.setTimeout(() => this.socket.connected && this.handlers.connection('online'), BACK_ONLINE_MS);
      } else {
        this.handlers.connection('online');
      }
    } catch (err) {
      if (this.#closed) return;
      if (err instanceof AckFailure && SESSION_REFUSALS.includes(err.code)) return; // session:ended follows
      this.handlers.joinFailed(err instanceof AckFailure ? err.error : (err as Error));
    }
  }

  #onChat(message: PublicChatMessage): void {
    const last = this.lastChatSeq ?? 0;
    if (message.seq > last + 1 && !this.#syncing.chat) {
      // A broadcast was lost (for example while Redis restarted): read the gap from the store.
      void this.#syncChat(last);
      return;
    }
    this.lastChatSeq = Math.max(last, message.seq);
    this.handlers.chat(message);
  }

  #onOp(op: AnnotationOp): void {
    const last = this.lastAnnotationSeq ?? 0;
    if (op.seq > last + 1 && !this.#syncing.annotations) {
      void this.#syncAnnotations(last);
      return;
    }
    if (op.seq <= last) return; // already applied (the join snapshot or a sync held it)
    this.lastAnnotationSeq = op.seq;
    this.handlers.annotationOp(op);
  }

  async #syncChat(afterSeq: number): Promise<void> {
    this.#syncing.chat = true;
    try {
      for (let from = afterSeq; ; ) {
        const page = await this.call<{ messages: PublicChatMessage[]; latestSeq: number }>('chat:sync', { caseId: this.caseId, afterSeq: from });
        for (const m of page.messages) {
          this.lastChatSeq = Math.max(this.lastChatSeq ?? 0, m.seq);
          this.handlers.chat(m);
        }
        from = page.messages.at(-1)?.seq ?? page.latestSeq;
        if (page.messages.length === 0 || from >= page.latestSeq) break;
      }
    } catch {
      // The next rejoin catches up from lastChatSeq.
    } finally {
      this.#syncing.chat = false;
    }
  }

  async #syncAnnotations(afterSeq: number): Promise<void> {
    this.#syncing.annotations = true;
    try {
      for (let from = afterSeq; ; ) {
        const page = await this.call<{ ops: AnnotationOp[]; latestSeq: number }>('annotation:sync', { caseId: this.caseId, afterSeq: from });
        for (const op of page.ops) {
          if (op.seq <= (this.lastAnnotationSeq ?? 0)) continue;
          this.lastAnnotationSeq = op.seq;
          this.handlers.annotationOp(op);
        }
        from = page.ops.at(-1)?.seq ?? page.latestSeq;
        if (page.ops.length === 0 || from >= page.latestSeq) break;
      }
    } catch {
      // The next rejoin catches up from lastAnnotationSeq.
    } finally {
      this.#syncing.annotations = false;
    }
  }
}
