// CaseRoom: one per case per node. Owns this node's sockets in the case, keeps their presence in
// the shared RoomStateStore (so every node sees every member), clears the presenter when the
// presenter's last connection leaves, and is disposed after a grace period once empty (a rejoin
// in the grace period keeps it). RoomRegistry creates rooms, one at a time per case.
import { EventEmitter } from 'node:events';
import type { Server } from 'socket.io';
import type { Member, Presenter, ServerToClientEvents } from '../protocol/realtime';
import { HEARTBEAT_MS, type RoomStateStore, type StoredMember } from './state';

export const ROOM_GRACE_MS = 30_000;

export function roomName(caseId: string): string {
  return `case:${caseId}`;
}

interface CaseRoomEvents {
  closed: [];
}

export class CaseRoom extends EventEmitter<CaseRoomEvents> {
  readonly #local = new Map<string, StoredMember>();
  #disposeTimer: NodeJS.Timeout | null = null;
  #closed = false;

  private constructor(
    readonly caseId: string,
    readonly siteId: string,
    private readonly io: Server<Record<string, never>, ServerToClientEvents>,
    private readonly state: RoomStateStore,
    private readonly nodeId: string,
    private readonly graceMs: number,
  ) {
    super();
  }

  static create(caseId: string, siteId: string, io: Server<Record<string, never>, ServerToClientEvents>, state: RoomStateStore, nodeId: string, graceMs = ROOM_GRACE_MS): CaseRoom {
    return new CaseRoom(caseId, siteId, io, state, nodeId, graceMs);
  }

  get closed(): boolean {
    return this.#closed;
  }

  get localSocketIds(): string[] {
    return [...this.#local.keys()];
  }

  async add(member: Member): Promise<void> {
    if (this.#closed) throw new Error('CaseRoom is closed');
    if (this.#disposeTimer) {
      clearTimeout(this.#disposeTimer);
      this.#disposeTimer = null;
    }
    const stored: StoredMember = { ...member, nodeId: this.nodeId, seenAt: Date.now() };
    this.#local.set(member.socketId, stored);
    await this.state.addMember(this.caseId, stored);
    this.io.to(roomName(this.caseId)).except(member.socketId).emit('presence:joined', { caseId: this.caseId, member });
  }

  async remove(socketId: string): Promise<void> {
    const local = this.#local.get(socketId);
    if (!local) return;
    this.#local.delete(socketId);
    await this.state.removeMember(this.caseId, socketId);
    this.io.to(roomName(this.caseId)).emit('presence:left', { caseId: this.caseId, socketId, userId: local.userId });
    // The presenter role belongs to a user: it ends when their last connection leaves.
    const presenter = await this.state.presenter(this.caseId);
    if (presenter?.userId === local.userId) {
      const stillHere = (await this.state.members(this.caseId)).some((m) => m.userId === local.userId);
      if (!stillHere && (await this.state.swapPresenter(this.caseId, local.userId, null))) {
        await this.state.setViewport(this.caseId, null);
        this.io.to(roomName(this.caseId)).emit('presenter:changed', { caseId: this.caseId, presenter: null });
      }
    }
    if (this.#local.size === 0 && !this.#disposeTimer && !this.#closed) {
      // Disposed after a grace period, so a member reconnecting right away keeps the room.
      this.#disposeTimer = setTimeout(() => void this.close(), this.graceMs);
      this.#disposeTimer.unref();
    }
  }

  async setState(socketId: string, state: Member['state']): Promise<void> {
    const local = this.#local.get(socketId);
    if (!local || local.state === state) return;
    local.state = state;
    // (the heartbeat rewrites the whole member, so the local copy is the source of truth)
    await this.state.setMemberState(this.caseId, socketId, state);
    this.io.to(roomName(this.caseId)).emit('presence:changed', { caseId: this.caseId, socketId, state });
  }

  /** Presenter changes are compare-and-swap in the shared store, so two nodes cannot both win. */
  async swapPresenter(expectedUserId: string | null, next: Presenter | null): Promise<boolean> {
    const swapped = await this.state.swapPresenter(this.caseId, expectedUserId, next);
    if (swapped) {
      if (!next || next.userId !== expectedUserId) await this.state.setViewport(this.caseId, null);
      this.io.to(roomName(this.caseId)).emit('presenter:changed', { caseId: this.caseId, presenter: next });
    }
    return swapped;
  }

  async heartbeat(now: number): Promise<void> {
    if (this.#local.size > 0) await this.state.touchMembers(this.caseId, [...this.#local.values()], now);
  }

  /** Idempotent; removes this node's members from the shared state and announces `closed`. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#disposeTimer) clearTimeout(this.#disposeTimer);
    for (const socketId of [...this.#local.keys()]) await this.state.removeMember(this.caseId, socketId).catch(() => null);
    this.#local.clear();
    this.emit('closed');
    this.removeAllListeners();
  }
}

export class RoomRegistry {
  readonly #rooms = new Map<string, CaseRoom>();
  readonly #creating = new Map<string, Promise<CaseRoom>>();
  readonly #heartbeat: NodeJS.Timeout;
  #closed = false;

  constructor(
    private readonly io: Server<Record<string, never>, ServerToClientEvents>,
    readonly state: RoomStateStore,
    readonly nodeId: string,
    private readonly graceMs = ROOM_GRACE_MS,
  ) {
    this.#heartbeat = setInterval(() => {
      const now = Date.now();
      for (const room of this.#rooms.values()) void room.heartbeat(now).catch(() => undefined);
    }, HEARTBEAT_MS);
    this.#heartbeat.unref();
  }

  get(caseId: string): CaseRoom | undefined {
    const room = this.#rooms.get(caseId);
    return room && !room.closed ? room : undefined;
  }

  /** Get-or-create, serialised per case: two joins at once get the same room. */
  async getOrCreate(caseId: string, siteId: string): Promise<CaseRoom> {
    if (this.#closed) throw new Error('RoomRegistry is closed');
    const existing = this.get(caseId);
    if (existing) return existing;
    const pending = this.#creating.get(caseId);
    if (pending) return pending;
    const creation = Promise.resolve().then(() => {
      const room = CaseRoom.create(caseId, siteId, this.io, this.state, this.nodeId, this.graceMs);
      room.once('closed', () => {
        if (this.#rooms.get(caseId) === room) this.#rooms.delete(caseId);
      });
      this.#rooms.set(caseId, room);
      return room;
    });
    this.#creating.set(caseId, creation);
    try {
      return await creation;
    } finally {
      this.#creating.delete(caseId);
    }
  }

  get size(): number {
    return this.#rooms.size;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#heartbeat);
    await Promise.all([...this.#rooms.values()].map((r) => r.close()));
    this.#rooms.clear();
  }
}
