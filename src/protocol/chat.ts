// Wire contract of case chat: the strict schemas of sending and catching up, and the public
// message shape. Messages are durable, in a per-case sequence the client resumes from.
import { z } from 'zod';
import { clientIdSchema, idSchema, seqSchema } from './annotations';

export const CHAT_TEXT_MAX = 4000;
export const MAX_CHAT_SYNC = 500;

export const sendChatSchema = z.strictObject({
  caseId: idSchema,
  text: z.string().trim().min(1).max(CHAT_TEXT_MAX),
  /** Random per message: a retry after a lost ack returns the first message, not a second one. */
  clientId: clientIdSchema,
});
export type SendChatInput = z.output<typeof sendChatSchema>;

export const chatSyncSchema = z.strictObject({
  caseId: idSchema,
  afterSeq: seqSchema,
  /** Messages per answer (default and maximum 500); ask again while the last seq < latestSeq. */
  limit: z.number().int().min(1).max(MAX_CHAT_SYNC).optional(),
});

export interface PublicChatMessage {
  id: string;
  caseId: string;
  /** 1, 2, 3... per case, without gaps. */
  seq: number;
  userId: string;
  userName: string;
  text: string;
  createdAt: string;
}
