// The hash chain: a record's hash covers every field but itself, in a fixed order, plus the
// previous record's hash, so changing, removing or reordering any record breaks the chain.
import { createHash } from 'node:crypto';
import { GENESIS_HASH, type AuditRecord } from './model';

function canonical(value: unknown): string {
  if (value === null || typeof value !== 'object') return JSON.stringify(value) ?? 'null';
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  const keys = Object.keys(value as Record<string, unknown>).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical((value as Record<string, unknown>)[k])}`).join(',')}}`;
}

export function hashRecord(record: Omit<AuditRecord, 'hash'>): string {
  const { id, siteId, seq, type, action, outcome, time, actor, objects, details, prevHash } = record;
  return createHash('sha256')
    .update(canonical({ id, siteId, seq, type, action, outcome, time, actor, objects, details, prevHash }))
    .digest('hex');
}

export interface ChainBreak {
  siteId: string;
  recordId: string;
  seq: number;
  reason: 'hash mismatch' | 'previous hash mismatch' | 'sequence gap';
}

/** Checks one record against its predecessor; returns the reason it breaks the chain, if it does. */
export function checkLink(prev: AuditRecord | null, record: AuditRecord): ChainBreak['reason'] | null {
  const expectedSeq = prev ? prev.seq + 1 : 1;
  if (record.seq !== expectedSeq) return 'sequence gap';
  const expectedPrev = prev ? prev.hash : GENESIS_HASH;
  if (record.prevHash !== expectedPrev) return 'previous hash mismatch';
  if (hashRecord(record) !== record.hash) return 'hash mismatch';
  return null;
}
