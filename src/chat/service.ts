// Case chat: durable messages in a per-case sequence, sealed at rest under the case's data key,
// idempotent by the client's message id, authorised and audited (never the text). The realtime
// layer calls send and since; every new message is also announced as a 'message' event.
import { EventEmitter } from 'node:events';
import type { AuditService } from '../audit/service';
import { caseKeyOwner } from '../cases/service';
import type { DataKeys } from '../crypto/dataKeys';
import { AppError, NotFoundError } from '../errors';
import { parseInput } from '../http/validate';
import { requireAuthorized, type Action, type Actor } from '../identity/authorize';
import type { RequestContext } from '../identity/service';
import { newId } from '../ids';
import { MAX_CHAT_SYNC, sendChatSchema, type PublicChatMessage, type SendChatInput } from '../protocol/chat';
import { seqSchema } from '../protocol/annotations';
import { DuplicateKeyError, type Store } from '../store/types';
import type { ChatMessageRecord } from './model';

export const chatTextContext = (messageId: string) => `chat:${messageId}`;

export interface ChatEvents {
  /** A new message is durable (never for an idempotent retry): broadcast it to the case's room. */
  message: [{ siteId: string; caseId: string; message: PublicChatMessage }];
}

export class ChatService extends EventEmitter<ChatEvents> {
  constructor(
    private readonly store: Store,
    private readonly audit: AuditService,
    private readonly dataKeys: DataKeys,
    private readonly clock: () => Date = () => new Date(),
  ) {
    super();
  }

  private async authorizeOnCase(actor: Actor, caseId: string, action: Action): Promise<void> {
    const record = await this.store.cases.findById(actor.siteId, caseId);
    if (!record) throw new NotFoundError();
    requireAuthorized(actor, action, { siteId: record.siteId });
  }

  private async toPublic(m: ChatMessageRecord): Promise<PublicChatMessage> {
    return {
      id: m.id,
      caseId: m.caseId,
      seq: m.seq,
      userId: m.userId,
      userName: m.userName,
      text: await this.dataKeys.openString(m.textSealed, chatTextContext(m.id)),
      createdAt: m.createdAt,
    };
  }

  /** A retry of the actor's own send returns the first message; another user's id is a conflict. */
  private async existing(actor: Actor, record: ChatMessageRecord): Promise<PublicChatMessage> {
    if (record.userId !== actor.userId) throw new AppError('CONFLICT', 'This message id is already in use; send the message with a new one.');
    return this.toPublic(record);
  }

  /**
   * Sends a message to a case's chat, durable before it returns. `userName` is the author's
   * display name (the socket layer holds the user record). Input is validated here as well as at
   * the edge: the text is trimmed and must be 1..4000 characters.
   */
  async send(actor: Actor, ctx: RequestContext, input: SendChatInput, userName: string): Promise<PublicChatMessage> {
    const { caseId, text, clientId } = parseInput(sendChatSchema, input);
    await this.authorizeOnCase(actor, caseId, 'chat.send');
    const previous = await this.store.chat.findByClientId(actor.siteId, caseId, clientId);
    if (previous) return this.existing(actor, previous);

    const id = newId();
    const textSealed = await this.dataKeys.sealString(caseKeyOwner(caseId), text, chatTextContext(id));
    const createdAt = this.clock().toISOString();
    let record: ChatMessageRecord;
    try {
      record = await this.store.chat.append(actor.siteId, caseId, (seq) => ({
        id,
        siteId: actor.siteId,
        caseId,
        seq,
        userId: actor.userId,
        userName: userName.slice(0, 200),
        textSealed,
        clientId,
        createdAt,
      }));
    } catch (err) {
      // The same retry raced itself (two sockets, or a resend before the first ack).
      if (!(err instanceof DuplicateKeyError)) throw err;
      const winner = await this.store.chat.findByClientId(actor.siteId, caseId, clientId);
      if (!winner) throw err;
      return this.existing(actor, winner);
    }
    await this.audit.record({
      siteId: actor.siteId,
      type: 'chat.message',
      action: 'C',
      actor: { userId: actor.userId, role: actor.role, ip: ctx.ip, userAgent: ctx.userAgent },
      objects: [
        { type: 'case', id: caseId },
        { type: 'chat_message', id },
      ],
      details: { seq: record.seq },
    });
    const message: PublicChatMessage = {
      id,
      caseId,
      seq: record.seq,
      userId: record.userId,
      userName: record.userName,
      text,
      createdAt,
    };
    this.emit('message', { siteId: actor.siteId, caseId, message });
    return message;
  }

  /**
   * Messages after `afterSeq` (ascending, at most `limit`, 1..500) and the case's latest seq:
   * a client with fewer than latestSeq asks again from its last message.
   */
  async since(actor: Actor, _ctx: RequestContext, caseId: string, afterSeq: number, limit = MAX_CHAT_SYNC): Promise<{ messages: PublicChatMessage[]; latestSeq: number }> {
    const after = parseInput(seqSchema, afterSeq);
    const count = Number.isFinite(limit) ? Math.min(Math.max(1, Math.trunc(limit)), MAX_CHAT_SYNC) : MAX_CHAT_SYNC;
    await this.authorizeOnCase(actor, caseId, 'chat.read');
    // The latest seq is read first: a message arriving in between is then either in the page or
    // above latestSeq, never skipped by a client that trusts latestSeq.
    const latestSeq = await this.store.chat.latestSeq(actor.siteId, caseId);
    const records = await this.store.chat.listAfter(actor.siteId, caseId, after, count);
    return { messages: await Promise.all(records.map((m) => this.toPublic(m))), latestSeq: Math.max(latestSeq, records.at(-1)?.seq ?? 0) };
  }

  /** Retention and case deletion (CaseService.deleteCaseData): returns how many messages went. */
  deleteByCase(siteId: string, caseId: string): Promise<number> {
    return this.store.chat.deleteByCase(siteId, caseId);
  }
}
