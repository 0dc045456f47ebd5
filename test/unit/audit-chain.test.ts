// The audit hash chain (src/audit/chain.ts): a canonical, key-order-independent hash, and
// checkLink telling a changed record, a changed link and a missing record apart.
import { checkLink, hashRecord } from '../../src/audit/chain';
import { GENESIS_HASH, type AuditRecord } from '../../src/audit/model';

type Body = Omit<AuditRecord, 'hash'>;

function body(seq: number, prevHash: string, over: Partial<Body> = {}): Body {
  return {
    id: `rec-${seq}`,
    siteId: 'site-a',
    seq,
    type: 'user.login',
    action: 'E',
    outcome: 0,
    time: `2030-01-01T00:00:0${seq}.000Z`,
    actor: { userId: 'u1', role: 'clinician', ip: '203.0.113.7', userAgent: 'jest' },
    objects: [{ type: 'user', id: 'u1' }],
    details: { attempt: seq, locked: false, note: null, reason: 'ok' },
    prevHash,
    ...over,
  };
}

const seal = (b: Body): AuditRecord => ({ ...b, hash: hashRecord(b) });

function chain(n: number): AuditRecord[] {
  const out: AuditRecord[] = [];
  for (let seq = 1; seq <= n; seq++) out.push(seal(body(seq, out.length ? out[out.length - 1]!.hash : GENESIS_HASH)));
  return out;
}

describe('hashRecord', () => {
  test('is a SHA-256 hex digest, the same regardless of key order in details, actor or the record', () => {
    const a = body(1, GENESIS_HASH, { details: { a: 1, b: 'two', c: true, d: null } });
    const reordered: Body = {
      prevHash: a.prevHash,
      details: { d: null, c: true, b: 'two', a: 1 },
      objects: a.objects,
      actor: { userAgent: 'jest', ip: '203.0.113.7', role: 'clinician', userId: 'u1' },
      time: a.time,
      outcome: a.outcome,
      action: a.action,
      type: a.type,
      seq: a.seq,
      siteId: a.siteId,
      id: a.id,
    };
    expect(hashRecord(a)).toMatch(/^[0-9a-f]{64}$/);
    expect(hashRecord(reordered)).toBe(hashRecord(a));
  });

  test('changes when any covered value changes (details value, object order, prevHash)', () => {
    const a = body(1, GENESIS_HASH);
    const h = hashRecord(a);
    expect(hashRecord({ ...a, details: { ...a.details, locked: true } })).not.toBe(h);
    expect(hashRecord({ ...a, details: { ...a.details, note: 'null' } })).not.toBe(h);
    expect(hashRecord({ ...a, objects: [{ type: 'user', id: 'u1' }, { type: 'site', id: 's' }] })).not.toBe(
      hashRecord({ ...a, objects: [{ type: 'site', id: 's' }, { type: 'user', id: 'u1' }] }),
    );
    expect(hashRecord({ ...a, prevHash: 'f'.repeat(64) })).not.toBe(h);
  });

  test('ignores a hash field passed along with the record (it covers every field but itself)', () => {
    const sealed = seal(body(1, GENESIS_HASH));
    expect(hashRecord(sealed)).toBe(sealed.hash);
  });
});

describe('checkLink', () => {
  test('accepts a valid chain, starting from the genesis hash', () => {
    const [r1, r2, r3] = chain(3);
    expect(checkLink(null, r1!)).toBeNull();
    expect(checkLink(r1!, r2!)).toBeNull();
    expect(checkLink(r2!, r3!)).toBeNull();
  });

  test('a changed field (hash not recomputed) is a hash mismatch', () => {
    const [r1, r2] = chain(2);
    expect(checkLink(r1!, { ...r2!, type: 'user.logout' })).toBe('hash mismatch');
    expect(checkLink(r1!, { ...r2!, details: { ...r2!.details, reason: 'forged' } })).toBe('hash mismatch');
    expect(checkLink(null, { ...r1!, outcome: 8 })).toBe('hash mismatch');
  });

  test('a changed prevHash is a previous hash mismatch, even when the record is re-hashed to match', () => {
    const [r1, r2] = chain(2);
    const relinked = seal({ ...r2!, prevHash: 'a'.repeat(64) });
    expect(checkLink(r1!, relinked)).toBe('previous hash mismatch');
    // The first record must link to the genesis hash.
    expect(checkLink(null, seal({ ...r1!, prevHash: 'b'.repeat(64) }))).toBe('previous hash mismatch');
    // Rewriting a predecessor breaks its successor's link.
    const rewrittenR1 = seal({ ...r1!, type: 'forged' });
    expect(checkLink(rewrittenR1, r2!)).toBe('previous hash mismatch');
  });

  test('a removed or duplicated record is a sequence gap', () => {
    const [r1, r2, r3] = chain(3);
    expect(checkLink(r1!, r3!)).toBe('sequence gap');
    expect(checkLink(r1!, r1!)).toBe('sequence gap');
    expect(checkLink(null, r2!)).toBe('sequence gap');
  });
});
