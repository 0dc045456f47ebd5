// Shared room state: presence, presenter and latest viewport per case. Kept where every node can
// read it (Redis when REDIS_URL is set, this process otherwise), chosen in one factory. Volatile
// by design: nothing here is persisted to the store, and a node that dies stops refreshing its
// members, which then age out.
import type { RedisClientType } from 'redis';
import type { Member, Presenter, Viewport } from '../protocol/realtime';

export interface StoredMember extends Member {
  nodeId: string;
  /** Epoch ms of the owning node's last refresh; stale entries belong to a dead node. */
  seenAt: number;
}

export interface RoomStateStore {
  addMember(caseId: string, member: StoredMember): Promise<void>;
  removeMember(caseId: string, socketId: string): Promise<StoredMember | null>;
  setMemberState(caseId: string, socketId: string, state: Member['state']): Promise<boolean>;
  members(caseId: string): Promise<StoredMember[]>;
  /**
   * Heartbeat: writes this node's members of a case again with a fresh `seenAt`, so they survive
   * a restart of the shared store and stay visible while their node lives.
   */
  touchMembers(caseId: string, members: StoredMember[], now: number): Promise<void>;
  presenter(caseId: string): Promise<Presenter | null>;
  /** Sets the presenter only if the current one is `expectedUserId` (null: nobody). */
  swapPresenter(caseId: string, expectedUserId: string | null, next: Presenter | null): Promise<boolean>;
  viewport(caseId: string): Promise<Viewport | null>;
  setViewport(caseId: string, viewport: Viewport | null): Promise<void>;
  close(): Promise<void>;
}

/** Members older than this were not refreshed by a live node. */
export const MEMBER_TTL_MS = 30_000;
export const HEARTBEAT_MS = 10_000;

const fresh = (m: StoredMember, now: number) => now - m.seenAt < MEMBER_TTL_MS;

export class MemoryRoomState implements RoomStateStore {
  readonly #members = new Map<string, Map<string, StoredMember>>();
  readonly #presenters = new Map<string, Presenter>();
  readonly #viewports = new Map<string, Viewport>();

  async addMember(caseId: string, member: StoredMember): Promise<void> {
    let room = this.#members.get(caseId);
    if (!room) this.#members.set(caseId, (room = new Map()));
    room.set(member.socketId, member);
  }

  async removeMember(caseId: string, socketId: string): Promise<StoredMember | null> {
    const room = this.#members.get(caseId);
    const member = room?.get(socketId) ?? null;
    room?.delete(socketId);
    if (room && room.size === 0) {
      this.#members.delete(caseId);
      this.#presenters.delete(caseId);
      this.#viewports.delete(caseId);
    }
    return member;
  }

  async setMemberState(caseId: string, socketId: string, state: Member['state']): Promise<boolean> {
    const m = this.#members.get(caseId)?.get(socketId);
    if (!m) return false;
    m.state = state;
    return true;
  }

  async members(caseId: string): Promise<StoredMember[]> {
    return [...(this.#members.get(caseId)?.values() ?? [])].map((m) => ({ ...m }));
  }

  async touchMembers(caseId: string, members: StoredMember[], now: number): Promise<void> {
    for (const m of members) await this.addMember(caseId, { ...m, seenAt: now });
  }

  async presenter(caseId: string): Promise<Presenter | null> {
    return this.#presenters.get(caseId) ?? null;
  }

  async swapPresenter(caseId: string, expectedUserId: string | null, next: Presenter | null): Promise<boolean> {
    const current = this.#presenters.get(caseId) ?? null;
    if ((current?.userId ?? null) !== expectedUserId) return false;
    if (next) this.#presenters.set(caseId, next);
    else this.#presenters.delete(caseId);
    return true;
  }

  async viewport(caseId: string): Promise<Viewport | null> {
    return this.#viewports.get(caseId) ?? null;
  }

  async setViewport(caseId: string, viewport: Viewport | null): Promise<void> {
    if (viewport) this.#viewports.set(caseId, viewport);
    else this.#viewports.delete(caseId);
  }

  async close(): Promise<void> {
    this.#members.clear();
  }
}

const PREFIX = 'cc:room:';
/** Room keys expire if no node touches them for a day (a crashed cluster leaves no litter). */
const KEY_TTL_S = 24 * 3600;

/** Compare-and-swap of the presenter key, atomic in Redis. */
const SWAP_PRESENTER = `
local current = redis.call('GET', KEYS[1])
local currentUser = ''
if current then currentUser = cjson.decode(current)['userId'] end
if currentUser ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) end
return 1
`;

export class RedisRoomState implements RoomStateStore {
  constructor(private readonly redis: RedisClientType) {}

  private key(caseId: string, part: 'members' | 'presenter' | 'viewport'): string {
    return `${PREFIX}${caseId}:${part}`;
  }

  async addMember(caseId: string, member: StoredMember): Promise<void> {
    const key = this.key(caseId, 'members');
    await this.redis.multi().hSet(key, member.socketId, JSON.stringify(member)).expire(key, KEY_TTL_S).exec();
  }

  async removeMember(caseId: string, socketId: string): Promise<StoredMember | null> {
    const key = this.key(caseId, 'members');
    const raw = await this.redis.hGet(key, socketId);
    await this.redis.hDel(key, socketId);
    if ((await this.redis.hLen(key)) === 0) {
      await this.redis.del([this.key(caseId, 'presenter'), this.key(caseId, 'viewport')]);
    }
    return raw ? (JSON.parse(raw) as StoredMember) : null;
  }

  async setMemberState(caseId: string, socketId: string, state: Member['state']): Promise<boolean> {
    const key = this.key(caseId, 'members');
    const raw = await this.redis.hGet(key, socketId);
    if (!raw) return false;
    await this.redis.hSet(key, socketId, JSON.stringify({ ...(JSON.parse(raw) as StoredMember), state }));
    return true;
  }

  async members(caseId: string): Promise<StoredMember[]> {
    const now = Date.now();
    const all = Object.values(await this.redis.hGetAll(this.key(caseId, 'members'))).map((raw) => JSON.parse(raw) as StoredMember);
    return all.filter((m) => fresh(m, now));
  }

  async touchMembers(caseId: string, members: StoredMember[], now: number): Promise<void> {
    if (members.length === 0) return;
    const key = this.key(caseId, 'members');
    const multi = this.redis.multi();
    for (const m of members) multi.hSet(key, m.socketId, JSON.stringify({ ...m, seenAt: now }));
    multi.expire(key, KEY_TTL_S);
    await multi.exec();
  }

  async presenter(caseId: string): Promise<Presenter | null> {
    const raw = await this.redis.get(this.key(caseId, 'presenter'));
    return raw ? (JSON.parse(raw) as Presenter) : null;
  }

  async swapPresenter(caseId: string, expectedUserId: string | null, next: Presenter | null): Promise<boolean> {
    const result = await this.redis.eval(SWAP_PRESENTER, {
      keys: [this.key(caseId, 'presenter')],
      arguments: [expectedUserId ?? '', next ? JSON.stringify(next) : '', String(KEY_TTL_S)],
    });
    return Number(result) === 1;
  }

  async viewport(caseId: string): Promise<Viewport | null> {
    const raw = await this.redis.get(this.key(caseId, 'viewport'));
    return raw ? (JSON.parse(raw) as Viewport) : null;
  }

  async setViewport(caseId: string, viewport: Viewport | null): Promise<void> {
    if (viewport) await this.redis.set(this.key(caseId, 'viewport'), JSON.stringify(viewport), { EX: KEY_TTL_S });
    else await this.redis.del(this.key(caseId, 'viewport'));
  }

  async close(): Promise<void> {
    // The client is owned by the realtime server, which closes it.
  }
}
