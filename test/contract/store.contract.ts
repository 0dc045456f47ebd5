// The repository contract every Store implementation must honour (src/store/types.ts and the
// interfaces in src/identity/repository.ts, src/audit/model.ts, src/crypto/dataKeys.ts,
// src/cases/model.ts, src/chat/model.ts and src/annotations/model.ts). Each implementation's test file calls describeStoreContract with a
// factory; every test gets a fresh, empty store.
import type { AnnotationOpRecord, AnnotationRecord } from '../../src/annotations/model';
import { hashRecord } from '../../src/audit/chain';
import { GENESIS_HASH, SYSTEM_CHAIN, type AuditRecord } from '../../src/audit/model';
import { ANONYMOUS_ACTOR, AuditService } from '../../src/audit/service';
import type { CaseListFilter, CaseRecord, MaterialRecord, TransferAgreement, TransferRecord } from '../../src/cases/model';
import type { ChatMessageRecord } from '../../src/chat/model';
import type { DataKeyRecord } from '../../src/crypto/dataKeys';
import { DEFAULT_POLICY, NO_PERMISSIONS, type SiteRecord, type UserRecord } from '../../src/identity/model';
import type { LockoutRule, SessionRecord } from '../../src/identity/repository';
import { newId } from '../../src/ids';
import { DuplicateKeyError, type Store } from '../../src/store/types';

const T0 = Date.parse('2030-03-04T05:06:07.000Z');
const iso = (ms: number) => new Date(ms).toISOString();
const MINUTE = 60_000;

function site(id: string, overrides: Partial<SiteRecord> = {}): SiteRecord {
  return {
    id,
    name: `Site ${id}`,
    policy: { ...DEFAULT_POLICY },
    createdAt: iso(T0),
    updatedAt: iso(T0),
    ...overrides,
  };
}

function user(siteId: string, email: string, overrides: Partial<UserRecord> = {}): UserRecord {
  return {
    id: newId(),
    siteId,
    email,
    name: `User ${email}`,
    role: 'clinician',
    permissions: { ...NO_PERMISSIONS },
    passwordHash: '$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2g',
    mustChangePassword: false,
    totpSecret: null,
    totpPendingSecret: null,
    totpLastStep: null,
    failedLoginCount: 0,
    failedLoginWindowStart: null,
    lockedUntil: null,
    createdAt: iso(T0),
    updatedAt: iso(T0),
    createdBy: null,
    updatedBy: null,
    ...overrides,
  };
}

function session(sid: string, overrides: Partial<SessionRecord> = {}): SessionRecord {
  return {
    sid,
    siteId: 'site-a',
    userId: 'user-1',
    data: JSON.stringify({ cookie: { httpOnly: true }, userId: 'user-1' }),
    expiresAt: T0 + 30 * MINUTE,
    ...overrides,
  };
}

function caseRecord(siteId: string, id: string, overrides: Partial<CaseRecord> = {}): CaseRecord {
  return {
    id,
    siteId,
    label: `CASE-${id}`,
    title: `Case ${id}`,
    clinicalQuestion: 'What is it?',
    status: 'open',
    patientSealed: null,
    createdAt: iso(T0),
    updatedAt: iso(T0),
    createdBy: null,
    updatedBy: null,
    ...overrides,
  };
}

function material(siteId: string, caseId: string, id: string, overrides: Partial<MaterialRecord> = {}): MaterialRecord {
  return {
    id,
    siteId,
    caseId,
    nameSealed: `e1.key.name-${id}`,
    mime: 'image/tiff',
    sizeBytes: 123_456_789,
    sha256: 'a'.repeat(64),
    status: 'queued',
    progress: 0,
    width: null,
    height: null,
    tileSize: 254,
    overlap: 1,
    tileFormat: 'jpeg',
    error: null,
    createdAt: iso(T0),
    updatedAt: iso(T0),
    createdBy: 'uploader-id',
    ...overrides,
  };
}

function transfer(fromSiteId: string, toSiteId: string, id: string, overrides: Partial<TransferRecord> = {}): TransferRecord {
  return {
    id,
    fromSiteId,
    toSiteId,
    caseId: `case-of-${id}`,
    title: `Case sent as ${id}`,
    note: '',
    status: 'pending',
    receivedCaseId: null,
    createdAt: iso(T0),
    createdBy: 'sender-user',
    decidedAt: null,
    decidedBy: null,
    ...overrides,
  };
}

function agreement(receiverSiteId: string, senderSiteId: string, overrides: Partial<TransferAgreement> = {}): TransferAgreement {
  return { receiverSiteId, senderSiteId, createdAt: iso(T0), createdBy: 'admin-user', ...overrides };
}

function chatMessage(siteId: string, caseId: string, seq: number, overrides: Partial<ChatMessageRecord> = {}): ChatMessageRecord {
  return {
    id: newId(),
    siteId,
    caseId,
    seq,
    userId: 'author-id',
    userName: 'Dr Author',
    textSealed: `e1.key.text-${seq}`,
    clientId: newId(),
    createdAt: iso(T0 + seq * 1000),
    ...overrides,
  };
}

function annotation(siteId: string, caseId: string, id: string, overrides: Partial<AnnotationRecord> = {}): AnnotationRecord {
  return {
    id,
    siteId,
    caseId,
    materialId: 'material-1',
    clientId: `client-of-${id}`,
    kind: 'point',
    geometry: { type: 'Point', coordinates: [1024.5, 768.25] },
    propertiesSealed: `e1.key.props-${id}-v1`,
    version: 1,
    deleted: false,
    createdBy: 'author-id',
    createdAt: iso(T0),
    updatedBy: 'author-id',
    updatedAt: iso(T0),
    ...overrides,
  };
}

/** A valid chain record built on `head`, as AuditService would build it. */
function chained(siteId: string, head: { seq: number; hash: string } | null, type = 'test.event'): AuditRecord {
  const body = {
    id: newId(),
    siteId,
    seq: head ? head.seq + 1 : 1,
    type,
    action: 'E' as const,
    outcome: 0 as const,
    time: iso(T0),
    actor: { ...ANONYMOUS_ACTOR },
    objects: [],
    details: {},
    prevHash: head ? head.hash : GENESIS_HASH,
  };
  return { ...body, hash: hashRecord(body) };
}

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error('expected the promise to reject, but it resolved');
}

export function describeStoreContract(name: string, open: () => Promise<Store>): void {
  describe(`${name} store: repository contract`, () => {
    let store: Store;

    beforeEach(async () => {
      store = await open();
    });

    afterEach(async () => {
      await store.close();
    });

    /** Creates sites 'site-a' and 'site-b', which most user tests need. */
    async function twoSites(): Promise<void> {
      await store.sites.create(site('site-a'));
      await store.sites.create(site('site-b'));
    }

    describe('sites', () => {
      test('create then findById returns the same record; an unknown id is null', async () => {
        const a = site('site-a', { name: 'Hôpital Nord', policy: { ...DEFAULT_POLICY, requireTotp: true, retentionDays: 90 } });
        await store.sites.create(a);
        expect(await store.sites.findById('site-a')).toStrictEqual(a);
        expect(await store.sites.findById('no-such-site')).toBeNull();
      });

      test('list returns every site ordered by createdAt, then id (not insertion order)', async () => {
        await store.sites.create(site('a', { createdAt: iso(T0 + 2000) }));
        await store.sites.create(site('c', { createdAt: iso(T0 + 1000) }));
        await store.sites.create(site('b', { createdAt: iso(T0 + 1000) }));
        expect((await store.sites.list()).map((s) => s.id)).toEqual(['b', 'c', 'a']);
      });

      test('list of an empty store is empty', async () => {
        expect(await store.sites.list()).toEqual([]);
      });

      test('updatePolicy returns the updated site, persists it, changes nothing else; unknown id -> null', async () => {
        const a = site('site-a');
        await store.sites.create(a);
        const policy = { ...DEFAULT_POLICY, minPasswordLength: 16, lockoutThreshold: 3 };
        const updated = await store.sites.updatePolicy('site-a', policy, iso(T0 + MINUTE));
        const expected = { ...a, policy, updatedAt: iso(T0 + MINUTE) };
        expect(updated).toStrictEqual(expected);
        expect(await store.sites.findById('site-a')).toStrictEqual(expected);

        expect(await store.sites.updatePolicy('no-such-site', policy, iso(T0))).toBeNull();
        expect(await store.sites.findById('no-such-site')).toBeNull();
      });

      test('creating a site with an existing id throws DuplicateKeyError and keeps the original', async () => {
        const a = site('site-a');
        await store.sites.create(a);
        const err = await rejection(store.sites.create(site('site-a', { name: 'Impostor' })));
        expect(err).toBeInstanceOf(DuplicateKeyError);
        expect(await store.sites.findById('site-a')).toStrictEqual(a);
        expect(await store.sites.list()).toHaveLength(1);
      });
    });

    describe('users', () => {
      test('create + findById round-trips every field exactly (permissions, nulls, booleans, zero)', async () => {
        await twoSites();
        const full = user('site-a', 'full@example.org', {
          name: 'Dr Full Record',
          role: 'site_admin',
          permissions: { stopAccess: false, canUpload: true, canDownload: false, canDelete: true, transferStudy: false, viewPatientInfo: true },
          mustChangePassword: true,
          totpSecret: 'JBSWY3DPEHPK3PXP',
          totpPendingSecret: 'KRSXG5CTMVRXEZLU',
          totpLastStep: 0,
          failedLoginCount: 2,
          failedLoginWindowStart: iso(T0 - MINUTE),
          lockedUntil: iso(T0 + 15 * MINUTE),
          createdAt: iso(T0 - 1000),
          updatedAt: iso(T0),
          createdBy: 'creator-id',
          updatedBy: 'updater-id',
        });
        // Every optional field null, every permission false: nothing may come back undefined or missing.
        const bare = user('site-a', 'bare@example.org', { role: 'pathologist' });
        await store.users.create(full);
        await store.users.create(bare);
        expect(await store.users.findById('site-a', full.id)).toStrictEqual(full);
        expect(await store.users.findById('site-a', bare.id)).toStrictEqual(bare);
      });

      test('tenancy: findById with another siteId (or an unknown id) returns null', async () => {
        await twoSites();
        const u = user('site-a', 'alice@example.org');
        await store.users.create(u);
        expect(await store.users.findById('site-b', u.id)).toBeNull();
        expect(await store.users.findById('site-a', 'no-such-user')).toBeNull();
      });

      test('findByEmail finds the user whatever its site; an unknown e-mail is null', async () => {
        await twoSites();
        const u = user('site-b', 'bob@example.org');
        await store.users.create(u);
        expect(await store.users.findByEmail('bob@example.org')).toStrictEqual(u);
        expect(await store.users.findByEmail('nobody@example.org')).toBeNull();
      });

      test("listBySite returns only that site's users, sorted by e-mail", async () => {
        await twoSites();
        for (const email of ['mallory@example.org', 'carol@example.org', 'zed@example.org', 'alice@example.org']) {
          await store.users.create(user('site-a', email));
        }
        await store.users.create(user('site-b', 'bob@example.org'));
        const a = await store.users.listBySite('site-a');
        expect(a.map((u) => u.email)).toEqual(['alice@example.org', 'carol@example.org', 'mallory@example.org', 'zed@example.org']);
        expect(a.every((u) => u.siteId === 'site-a')).toBe(true);
        expect((await store.users.listBySite('site-b')).map((u) => u.email)).toEqual(['bob@example.org']);
        expect(await store.users.listBySite('no-such-site')).toEqual([]);
      });

      test('a duplicate e-mail throws DuplicateKeyError, in the same site or another, and stores nothing', async () => {
        await twoSites();
        const first = user('site-a', 'dup@example.org');
        await store.users.create(first);

        const sameSite = user('site-a', 'dup@example.org');
        const sameErr = await rejection(store.users.create(sameSite));
        expect(sameErr).toBeInstanceOf(DuplicateKeyError);
        expect((sameErr as DuplicateKeyError).key).toBe('user.email');

        const otherSite = user('site-b', 'dup@example.org');
        const otherErr = await rejection(store.users.create(otherSite));
        expect(otherErr).toBeInstanceOf(DuplicateKeyError);
        expect((otherErr as DuplicateKeyError).key).toBe('user.email');

        expect(await store.users.findById('site-a', sameSite.id)).toBeNull();
        expect(await store.users.findById('site-b', otherSite.id)).toBeNull();
        expect(await store.users.findByEmail('dup@example.org')).toStrictEqual(first);
      });

      test('update changes only the given fields and returns the stored record', async () => {
        await twoSites();
        const u = user('site-a', 'carol@example.org', { totpSecret: 'JBSWY3DPEHPK3PXP', totpPendingSecret: 'KRSXG5CTMVRXEZLU', mustChangePassword: true });
        const other = user('site-a', 'dave@example.org');
        await store.users.create(u);
        await store.users.create(other);

        const permissions = { ...NO_PERMISSIONS, canDownload: true, stopAccess: true };
        const updated = await store.users.update('site-a', u.id, {
          name: 'Carol Renamed',
          permissions,
          updatedAt: iso(T0 + MINUTE),
          updatedBy: 'admin-id',
        });
        const expected: UserRecord = { ...u, name: 'Carol Renamed', permissions, updatedAt: iso(T0 + MINUTE), updatedBy: 'admin-id' };
        expect(updated).toStrictEqual(expected);
        expect(await store.users.findById('site-a', u.id)).toStrictEqual(expected);
        // The neighbour is untouched.
        expect(await store.users.findById('site-a', other.id)).toStrictEqual(other);
      });

      test('update: null clears a field, false is stored as false, an undefined key leaves the field alone', async () => {
        await twoSites();
        const u = user('site-a', 'erin@example.org', { totpSecret: 'JBSWY3DPEHPK3PXP', totpPendingSecret: 'KRSXG5CTMVRXEZLU', mustChangePassword: true, updatedBy: 'someone' });
        await store.users.create(u);
        const updated = await store.users.update('site-a', u.id, {
          totpSecret: null,
          totpPendingSecret: undefined,
          mustChangePassword: false,
          updatedAt: iso(T0 + MINUTE),
          updatedBy: null,
        });
        const expected: UserRecord = { ...u, totpSecret: null, mustChangePassword: false, updatedAt: iso(T0 + MINUTE), updatedBy: null };
        expect(updated).toStrictEqual(expected);
        expect(await store.users.findById('site-a', u.id)).toStrictEqual(expected);
      });

      test('update is scoped by site: another siteId (or an unknown id) returns null and changes nothing', async () => {
        await twoSites();
        const u = user('site-a', 'frank@example.org');
        await store.users.create(u);
        const patch = { name: 'Hijacked', role: 'site_admin' as const, updatedAt: iso(T0 + MINUTE), updatedBy: 'attacker' };
        expect(await store.users.update('site-b', u.id, patch)).toBeNull();
        expect(await store.users.update('site-a', 'no-such-user', patch)).toBeNull();
        expect(await store.users.findById('site-a', u.id)).toStrictEqual(u);
      });
    });

    describe('registerFailedLogin (lockout)', () => {
      const rule = (now: number, over: Partial<LockoutRule> = {}): LockoutRule => ({
        now: new Date(now),
        threshold: 3,
        windowMs: 15 * MINUTE,
        lockMs: 10 * MINUTE,
        ...over,
      });

      test('counts failures within the window, keeping the window start', async () => {
        await twoSites();
        const u = user('site-a', 'grace@example.org');
        await store.users.create(u);
        const first = await store.users.registerFailedLogin('site-a', u.id, rule(T0));
        expect(first).toMatchObject({ failedLoginCount: 1, failedLoginWindowStart: iso(T0), lockedUntil: null });
        const second = await store.users.registerFailedLogin('site-a', u.id, rule(T0 + 15 * MINUTE - 1));
        expect(second).toMatchObject({ failedLoginCount: 2, failedLoginWindowStart: iso(T0), lockedUntil: null });
        // Only the lockout fields changed, and the change is stored.
        expect(await store.users.findById('site-a', u.id)).toStrictEqual({ ...u, failedLoginCount: 2, failedLoginWindowStart: iso(T0) });
      });

      test('once the window has passed (now - start >= windowMs) the count restarts at 1 with a new window', async () => {
        await twoSites();
        const u = user('site-a', 'heidi@example.org');
        await store.users.create(u);
        await store.users.registerFailedLogin('site-a', u.id, rule(T0));
        await store.users.registerFailedLogin('site-a', u.id, rule(T0 + MINUTE));
        const restarted = await store.users.registerFailedLogin('site-a', u.id, rule(T0 + 15 * MINUTE));
        expect(restarted).toMatchObject({ failedLoginCount: 1, failedLoginWindowStart: iso(T0 + 15 * MINUTE), lockedUntil: null });
      });

      test('reaching the threshold locks until now + lockMs and resets the counter and window', async () => {
        await twoSites();
        const u = user('site-a', 'ivan@example.org');
        await store.users.create(u);
        await store.users.registerFailedLogin('site-a', u.id, rule(T0));
        const below = await store.users.registerFailedLogin('site-a', u.id, rule(T0 + 1000));
        expect(below!.lockedUntil).toBeNull();
        const locked = await store.users.registerFailedLogin('site-a', u.id, rule(T0 + 2000));
        const expected = { ...u, failedLoginCount: 0, failedLoginWindowStart: null, lockedUntil: iso(T0 + 2000 + 10 * MINUTE) };
        expect(locked).toStrictEqual(expected);
        expect(await store.users.findById('site-a', u.id)).toStrictEqual(expected);

        // The next failure starts a fresh window and leaves the lock as it is.
        const after = await store.users.registerFailedLogin('site-a', u.id, rule(T0 + 3000));
        expect(after).toMatchObject({ failedLoginCount: 1, failedLoginWindowStart: iso(T0 + 3000), lockedUntil: iso(T0 + 2000 + 10 * MINUTE) });
      });

      test('an unknown user, or the right user under another site, returns null and counts nothing', async () => {
        await twoSites();
        const u = user('site-a', 'judy@example.org');
        await store.users.create(u);
        expect(await store.users.registerFailedLogin('site-a', 'no-such-user', rule(T0))).toBeNull();
        expect(await store.users.registerFailedLogin('site-b', u.id, rule(T0))).toBeNull();
        expect(await store.users.findById('site-a', u.id)).toStrictEqual(u);
      });
    });

    describe('claimTotpStep (no code replay)', () => {
      test('first claim true, same step false, older step false, newer step true', async () => {
        await twoSites();
        const u = user('site-a', 'kim@example.org', { totpSecret: 'JBSWY3DPEHPK3PXP' });
        await store.users.create(u);
        expect(await store.users.claimTotpStep('site-a', u.id, 1000)).toBe(true);
        expect(await store.users.claimTotpStep('site-a', u.id, 1000)).toBe(false);
        expect(await store.users.claimTotpStep('site-a', u.id, 999)).toBe(false);
        expect((await store.users.findById('site-a', u.id))!.totpLastStep).toBe(1000);
        expect(await store.users.claimTotpStep('site-a', u.id, 1001)).toBe(true);
        expect((await store.users.findById('site-a', u.id))!.totpLastStep).toBe(1001);
      });

      test('another site or an unknown user cannot claim a step', async () => {
        await twoSites();
        const u = user('site-a', 'leo@example.org', { totpSecret: 'JBSWY3DPEHPK3PXP', totpLastStep: 50 });
        await store.users.create(u);
        expect(await store.users.claimTotpStep('site-b', u.id, 60)).toBe(false);
        expect(await store.users.claimTotpStep('site-a', 'no-such-user', 60)).toBe(false);
        expect((await store.users.findById('site-a', u.id))!.totpLastStep).toBe(50);
      });
    });

    describe('sessions', () => {
      test('set then get round-trips the record, including an anonymous one with null site and user', async () => {
        const s = session('sid-1');
        const anon = session('sid-anon', { siteId: null, userId: null, data: '{"cookie":{}}' });
        await store.sessions.set(s);
        await store.sessions.set(anon);
        expect(await store.sessions.get('sid-1', T0)).toStrictEqual(s);
        expect(await store.sessions.get('sid-anon', T0)).toStrictEqual(anon);
        expect(await store.sessions.get('no-such-sid', T0)).toBeNull();
      });

      test('get returns null once now >= expiresAt, and the record until then', async () => {
        const s = session('sid-1', { expiresAt: T0 + 1000 });
        await store.sessions.set(s);
        expect(await store.sessions.get('sid-1', T0 + 999)).toStrictEqual(s);
        expect(await store.sessions.get('sid-1', T0 + 1000)).toBeNull();
        expect(await store.sessions.get('sid-1', T0 + 5000)).toBeNull();
      });

      test('set on an existing sid replaces the record (upsert), it does not add a second one', async () => {
        await store.sessions.set(session('sid-1', { userId: null, siteId: null, data: '{"v":1}' }));
        const second = session('sid-1', { userId: 'user-9', siteId: 'site-a', data: '{"v":2}', expiresAt: T0 + 99 * MINUTE });
        await store.sessions.set(second);
        expect(await store.sessions.get('sid-1', T0)).toStrictEqual(second);
        expect(await store.sessions.destroyByUser('site-a', 'user-9')).toEqual(['sid-1']);
        expect(await store.sessions.get('sid-1', T0)).toBeNull();
      });

      test('touch moves the expiry, forward and back; touching an unknown sid creates nothing', async () => {
        const s = session('sid-1', { expiresAt: T0 + 1000 });
        await store.sessions.set(s);
        await store.sessions.touch('sid-1', T0 + 5000);
        expect(await store.sessions.get('sid-1', T0 + 2000)).toStrictEqual({ ...s, expiresAt: T0 + 5000 });
        await store.sessions.touch('sid-1', T0 + 100);
        expect(await store.sessions.get('sid-1', T0 + 100)).toBeNull();
        await store.sessions.touch('no-such-sid', T0 + 5000);
        expect(await store.sessions.get('no-such-sid', T0)).toBeNull();
      });

      test('destroy removes that session only; destroying an unknown sid is harmless', async () => {
        await store.sessions.set(session('sid-1'));
        await store.sessions.set(session('sid-2'));
        await store.sessions.destroy('sid-1');
        expect(await store.sessions.get('sid-1', T0)).toBeNull();
        expect(await store.sessions.get('sid-2', T0)).not.toBeNull();
        await expect(store.sessions.destroy('no-such-sid')).resolves.toBeUndefined();
      });

      test("destroyByUser deletes only that user's sessions in that site, honours keepSid, returns the deleted sids", async () => {
        await store.sessions.set(session('a-u1-1', { siteId: 'site-a', userId: 'u1' }));
        await store.sessions.set(session('a-u1-2', { siteId: 'site-a', userId: 'u1' }));
        await store.sessions.set(session('a-u1-3', { siteId: 'site-a', userId: 'u1' }));
        await store.sessions.set(session('a-u2-1', { siteId: 'site-a', userId: 'u2' }));
        await store.sessions.set(session('b-u1-1', { siteId: 'site-b', userId: 'u1' }));
        await store.sessions.set(session('anon', { siteId: null, userId: null }));

        const deleted = await store.sessions.destroyByUser('site-a', 'u1', 'a-u1-2');
        expect([...deleted].sort()).toEqual(['a-u1-1', 'a-u1-3']);
        const alive = async (sid: string) => (await store.sessions.get(sid, T0)) !== null;
        expect(await alive('a-u1-1')).toBe(false);
        expect(await alive('a-u1-3')).toBe(false);
        expect(await alive('a-u1-2')).toBe(true);
        expect(await alive('a-u2-1')).toBe(true);
        expect(await alive('b-u1-1')).toBe(true);
        expect(await alive('anon')).toBe(true);

        expect(await store.sessions.destroyByUser('site-a', 'u1')).toEqual(['a-u1-2']);
        expect(await store.sessions.destroyByUser('site-a', 'u1')).toEqual([]);
        expect(await alive('b-u1-1')).toBe(true);
      });

      test('purgeExpired deletes sessions with expiresAt <= now, returns the count, and leaves live ones', async () => {
        await store.sessions.set(session('old', { expiresAt: T0 - 1 }));
        await store.sessions.set(session('edge', { expiresAt: T0 }));
        await store.sessions.set(session('live', { expiresAt: T0 + 1 }));
        expect(await store.sessions.purgeExpired(T0)).toBe(2);
        expect(await store.sessions.purgeExpired(T0)).toBe(0);
        expect(await store.sessions.get('live', T0)).toStrictEqual(session('live', { expiresAt: T0 + 1 }));
        // Purged, not merely hidden: a later touch cannot revive them.
        await store.sessions.touch('old', T0 + MINUTE);
        expect(await store.sessions.get('old', T0)).toBeNull();
      });
    });

    describe('audit chain', () => {
      test('appendChained passes the head (null first, then the last {seq, hash}) and stores what build returns', async () => {
        const heads: ({ seq: number; hash: string } | null)[] = [];
        const built: AuditRecord[] = [];
        for (let i = 0; i < 3; i++) {
          const returned = await store.audit.appendChained('site-a', (head) => {
            heads.push(head);
            const r = chained('site-a', head, `event.${i}`);
            built.push(r);
            return r;
          });
          expect(returned).toStrictEqual(built[built.length - 1]);
        }
        expect(heads).toEqual([null, { seq: 1, hash: built[0]!.hash }, { seq: 2, hash: built[1]!.hash }]);
        expect(built.map((r) => r.seq)).toEqual([1, 2, 3]);
        expect(await store.audit.listChain('site-a', 0, 100)).toStrictEqual(built);
      });

      test('records from AuditService round-trip exactly and verify without breaks', async () => {
        const audit = new AuditService(store.audit, () => new Date(T0));
        const a = await audit.record({
          siteId: 'site-a',
          type: 'user.login',
          action: 'E',
          outcome: 4,
          actor: { userId: 'u1', role: 'clinician', ip: '203.0.113.7', userAgent: 'x'.repeat(300) },
          objects: [{ type: 'user', id: 'u1' }, { type: 'site', id: 'site-a' }],
          details: { reason: 'bad password', attempts: 2, locked: false, note: null },
        });
        const b = await audit.record({ siteId: 'site-a', type: 'user.logout', action: 'E', actor: ANONYMOUS_ACTOR });
        expect(a.actor.userAgent).toHaveLength(256);
        expect(await store.audit.listChain('site-a', 0, 100)).toStrictEqual([a, b]);
        expect(await audit.verify()).toEqual({ chains: [{ siteId: 'site-a', records: 2 }], breaks: [] });
      });

      test('chains are independent per site: each starts at seq 1 on the genesis hash', async () => {
        const audit = new AuditService(store.audit, () => new Date(T0));
        const actor = ANONYMOUS_ACTOR;
        const a1 = await audit.record({ siteId: 'site-a', type: 't', action: 'C', actor });
        const a2 = await audit.record({ siteId: 'site-a', type: 't', action: 'C', actor });
        const b1 = await audit.record({ siteId: 'site-b', type: 't', action: 'C', actor });
        const a3 = await audit.record({ siteId: 'site-a', type: 't', action: 'C', actor });
        const sys = await audit.record({ siteId: null, type: 'auth.unknown_email', action: 'E', outcome: 4, actor });
        expect([a1.seq, a2.seq, a3.seq]).toEqual([1, 2, 3]);
        expect(b1).toMatchObject({ siteId: 'site-b', seq: 1, prevHash: GENESIS_HASH });
        expect(a3.prevHash).toBe(a2.hash);
        expect(sys).toMatchObject({ siteId: SYSTEM_CHAIN, seq: 1, prevHash: GENESIS_HASH });
        expect((await store.audit.listChain('site-b', 0, 100)).map((r) => r.id)).toEqual([b1.id]);
        expect((await store.audit.listChain('site-a', 0, 100)).map((r) => r.id)).toEqual([a1.id, a2.id, a3.id]);
        const verified = await audit.verify();
        expect(verified.breaks).toEqual([]);
        expect(verified.chains).toHaveLength(3);
      });

      test('listChain pages in seq order with afterSeq and limit', async () => {
        for (let i = 0; i < 5; i++) await store.audit.appendChained('site-a', (head) => chained('site-a', head));
        await store.audit.appendChained('site-b', (head) => chained('site-b', head));
        const seqs = async (after: number, limit: number) => (await store.audit.listChain('site-a', after, limit)).map((r) => r.seq);
        expect(await seqs(0, 2)).toEqual([1, 2]);
        expect(await seqs(2, 2)).toEqual([3, 4]);
        expect(await seqs(4, 2)).toEqual([5]);
        expect(await seqs(5, 2)).toEqual([]);
        expect(await seqs(1, 100)).toEqual([2, 3, 4, 5]);
        expect(await store.audit.listChain('no-such-site', 0, 10)).toEqual([]);
      });

      test('listChains lists each site id with records once (and nothing for an empty store); totalChainLength counts every record', async () => {
        expect(await store.audit.listChains()).toEqual([]);
        expect(await store.audit.totalChainLength()).toBe(0);
        for (const siteId of ['site-b', 'site-a', 'site-b', SYSTEM_CHAIN, 'site-a']) {
          await store.audit.appendChained(siteId, (head) => chained(siteId, head));
        }
        const chains = await store.audit.listChains();
        expect(await store.audit.totalChainLength()).toBe(5);
        expect(chains).toHaveLength(3);
        expect([...chains].sort()).toEqual([SYSTEM_CHAIN, 'site-a', 'site-b'].sort());
      });

      test('listRecent returns one site\'s records of the given types since a time, newest first', async () => {
        let now = T0;
        const audit = new AuditService(store.audit, () => new Date(now));
        const add = (siteId: string, type: string) => audit.record({ siteId, type, action: 'E', actor: ANONYMOUS_ACTOR });
        await add('site-a', 'auth.lockout'); // too old
        now = T0 + 60_000;
        const since = new Date(now).toISOString();
        await add('site-a', 'auth.lockout');
        await add('site-a', 'auth.login');
        await add('site-a', 'case.read');
        await add('site-b', 'auth.lockout'); // another site
        now = T0 + 120_000;
        await add('site-a', 'auth.lockout');
        const recent = await store.audit.listRecent('site-a', ['auth.lockout', 'auth.login'], since, 10);
        expect(recent.map((r) => [r.type, r.seq])).toEqual([
          ['auth.lockout', 5],
          ['auth.login', 3],
          ['auth.lockout', 2],
        ]);
        expect(await store.audit.listRecent('site-a', ['auth.lockout'], since, 1)).toHaveLength(1);
        expect(await store.audit.listRecent('site-a', [], since, 10)).toEqual([]);
      });

      test('20 concurrent appends to one site produce seq 1..20 with no gap, duplicate or fork', async () => {
        const audit = new AuditService(store.audit, () => new Date(T0));
        const results = await Promise.all(
          Array.from({ length: 20 }, (_, i) =>
            audit.record({ siteId: 'site-a', type: 'concurrent', action: 'E', actor: ANONYMOUS_ACTOR, details: { i } }),
          ),
        );
        const expectedSeqs = Array.from({ length: 20 }, (_, i) => i + 1);
        expect(results.map((r) => r.seq).sort((x, y) => x - y)).toEqual(expectedSeqs);
        const stored = await store.audit.listChain('site-a', 0, 100);
        expect(stored.map((r) => r.seq)).toEqual(expectedSeqs);
        // Every call's record is stored exactly once.
        expect(stored.map((r) => r.details.i).sort((x, y) => Number(x) - Number(y))).toEqual(expectedSeqs.map((s) => s - 1));
        expect(await audit.verify('site-a')).toEqual({ chains: [{ siteId: 'site-a', records: 20 }], breaks: [] });
      });

      test('search: each filter, newest first by (time, seq), keyset cursor, one site only', async () => {
        let now = T0;
        const audit = new AuditService(store.audit, () => new Date(now));
        const actor = (userId: string, ip: string) => ({ userId, role: 'clinician', ip, userAgent: null });
        // Two records share a time: (time, seq) orders them, and the cursor must not skip one.
        await audit.record({ siteId: 'site-a', type: 'auth.login', action: 'E', outcome: 4, actor: actor('u1', '10.0.0.1'), objects: [{ type: 'user', id: 'u1' }] });
        await audit.record({ siteId: 'site-a', type: 'case.read', action: 'R', actor: actor('u1', '10.0.0.1'), objects: [{ type: 'case', id: 'c1' }] });
        now = T0 + 60_000;
        await audit.record({ siteId: 'site-a', type: 'case.update', action: 'U', actor: actor('u2', '10.0.0.2'), objects: [{ type: 'case', id: 'c1' }, { type: 'material', id: 'm1' }] });
        await audit.record({ siteId: 'site-a', type: 'auth.logout', action: 'E', actor: actor('u2', '10.0.0.2'), objects: [{ type: 'user', id: 'u2' }] });
        await audit.record({ siteId: 'site-b', type: 'case.read', action: 'R', actor: actor('u1', '10.0.0.1'), objects: [{ type: 'case', id: 'c1' }] });
        const seqs = async (filter: Parameters<typeof store.audit.search>[1], cursor: { time: string; seq: number } | null = null, limit = 10) =>
          (await store.audit.search('site-a', filter, cursor, limit)).map((r) => r.seq);
        expect(await seqs({})).toEqual([4, 3, 2, 1]);
        expect(await seqs({ actorUserId: 'u1' })).toEqual([2, 1]);
        expect(await seqs({ ip: '10.0.0.2' })).toEqual([4, 3]);
        expect(await seqs({ objectType: 'case', objectId: 'c1' })).toEqual([3, 2]);
        expect(await seqs({ objectType: 'material' })).toEqual([3]);
        expect(await seqs({ type: 'case.read' })).toEqual([2]);
        expect(await seqs({ typePrefix: 'auth.' })).toEqual([4, 1]);
        expect(await seqs({ action: 'U' })).toEqual([3]);
        expect(await seqs({ outcome: 4 })).toEqual([1]);
        const minute = new Date(T0 + 60_000).toISOString();
        expect(await seqs({ from: minute })).toEqual([4, 3]);
        expect(await seqs({ to: minute })).toEqual([2, 1]);
        expect(await seqs({ actorUserId: 'u2', typePrefix: 'case.' })).toEqual([3]);
        // Keyset paging: strictly after the cursor in (time desc, seq desc) order.
        const [first] = await store.audit.search('site-a', {}, null, 1);
        expect(await seqs({}, { time: first!.time, seq: first!.seq }, 2)).toEqual([3, 2]);
        const page2 = await store.audit.search('site-a', {}, { time: first!.time, seq: first!.seq }, 2);
        expect(await seqs({}, { time: page2[1]!.time, seq: page2[1]!.seq }, 2)).toEqual([1]);
        expect(await seqs({}, null, 0)).toEqual([]);
        expect((await store.audit.search('site-b', {}, null, 10)).map((r) => r.siteId)).toEqual(['site-b']);
      });

      test('usageAggregates: per month and type, distinct actors, uploads by type, consultations of two users, media seconds', async () => {
        let now = Date.parse('2026-03-31T23:00:00.000Z');
        const audit = new AuditService(store.audit, () => new Date(now));
        const as = (userId: string) => ({ userId, role: 'clinician', ip: null, userAgent: null });
        await audit.record({ siteId: 'site-a', type: 'auth.login', action: 'E', actor: as('u1') });
        await audit.record({ siteId: 'site-a', type: 'auth.login', action: 'E', actor: as('u1') });
        await audit.record({ siteId: 'site-a', type: 'auth.login', action: 'E', outcome: 4, actor: as('u3') });
        await audit.record({ siteId: 'site-a', type: 'room.join', action: 'E', actor: as('u1'), objects: [{ type: 'case', id: 'c1' }] });
        await audit.record({ siteId: 'site-a', type: 'room.join', action: 'E', actor: as('u2'), objects: [{ type: 'case', id: 'c1' }] });
        await audit.record({ siteId: 'site-a', type: 'room.join', action: 'E', actor: as('u1'), objects: [{ type: 'case', id: 'c2' }] });
        await audit.record({ siteId: 'site-a', type: 'material.upload', action: 'C', actor: as('u1'), details: { mime: 'image/png' } });
        await audit.record({ siteId: 'site-a', type: 'media.stop', action: 'E', actor: as('u1'), details: { durationSeconds: 30 } });
        now = Date.parse('2026-04-02T10:00:00.000Z');
        await audit.record({ siteId: 'site-a', type: 'auth.login', action: 'E', actor: as('u2') });
        await audit.record({ siteId: 'site-a', type: 'case.create', action: 'C', actor: as('u2') });
        await audit.record({ siteId: 'site-a', type: 'material.upload', action: 'C', actor: as('u2'), details: { mime: 'image/tiff' } });
        await audit.record({ siteId: 'site-a', type: 'material.upload', action: 'C', outcome: 4, actor: as('u2'), details: { reason: 'ABORTED' } });
        await audit.record({ siteId: 'site-b', type: 'auth.login', action: 'E', actor: as('u9') });
        const agg = await store.audit.usageAggregates('site-a', '2026-03-01T00:00:00.000Z', '2026-05-01T00:00:00.000Z');
        const sort = <T,>(rows: T[]) => [...rows].sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));
        expect(sort(agg.counts)).toEqual(
          sort([
            { month: '2026-03', type: 'auth.login', outcome: 0, records: 2, actors: 1 },
            { month: '2026-03', type: 'auth.login', outcome: 4, records: 1, actors: 1 },
            { month: '2026-03', type: 'room.join', outcome: 0, records: 3, actors: 2 },
            { month: '2026-04', type: 'auth.login', outcome: 0, records: 1, actors: 1 },
            { month: '2026-04', type: 'case.create', outcome: 0, records: 1, actors: 1 },
          ]),
        );
        expect(agg.activeUsers).toBe(2);
        expect(sort(agg.materials)).toEqual(sort([{ month: '2026-03', mime: 'image/png', count: 1 }, { month: '2026-04', mime: 'image/tiff', count: 1 }]));
        expect(agg.consultations).toEqual([{ month: '2026-03', count: 1 }]);
        expect(agg.mediaSeconds).toEqual([{ month: '2026-03', seconds: 30 }]);
        const april = await store.audit.usageAggregates('site-a', '2026-04-01T00:00:00.000Z', '2026-05-01T00:00:00.000Z');
        expect(april.activeUsers).toBe(1);
        expect(april.consultations).toEqual([]);
      });
    });

    describe('data keys', () => {
      const dataKey = (id: string, owner: string, kekId: string, overrides: Partial<DataKeyRecord> = {}): DataKeyRecord => ({
        id,
        owner,
        wrapped: `wrapped-${id}-under-${kekId}`,
        kekId,
        createdAt: iso(T0),
        ...overrides,
      });

      test('create then findById and findByOwner return the same record; unknown id or owner is null', async () => {
        const k = dataKey('key-1', 'case:abc', 'kek-1');
        await store.dataKeys.create(k);
        await store.dataKeys.create(dataKey('key-2', 'site:site-a', 'kek-1'));
        expect(await store.dataKeys.findById('key-1')).toStrictEqual(k);
        expect(await store.dataKeys.findByOwner('case:abc')).toStrictEqual(k);
        expect(await store.dataKeys.findById('no-such-key')).toBeNull();
        expect(await store.dataKeys.findByOwner('case:none')).toBeNull();
      });

      test('a second key for the same owner throws DuplicateKeyError(data_key.owner) and keeps the first', async () => {
        const first = dataKey('key-1', 'case:abc', 'kek-1');
        await store.dataKeys.create(first);
        const err = await rejection(store.dataKeys.create(dataKey('key-2', 'case:abc', 'kek-2')));
        expect(err).toBeInstanceOf(DuplicateKeyError);
        expect((err as DuplicateKeyError).key).toBe('data_key.owner');
        expect(await store.dataKeys.findById('key-2')).toBeNull();
        expect(await store.dataKeys.findByOwner('case:abc')).toStrictEqual(first);
      });

      test('listNotWrappedBy lists keys under any other master key, ordered by id, up to limit', async () => {
        for (const [id, kek] of [['k3', 'kek-1'], ['k1', 'kek-1'], ['k4', 'kek-2'], ['k2', 'kek-2'], ['k5', 'kek-0']] as const) {
          await store.dataKeys.create(dataKey(id, `owner:${id}`, kek));
        }
        const ids = async (kek: string, limit: number) => (await store.dataKeys.listNotWrappedBy(kek, limit)).map((k) => k.id);
        expect(await ids('kek-2', 10)).toEqual(['k1', 'k3', 'k5']);
        expect(await ids('kek-2', 2)).toEqual(['k1', 'k3']);
        expect(await ids('kek-9', 10)).toEqual(['k1', 'k2', 'k3', 'k4', 'k5']);
        expect(await store.dataKeys.listNotWrappedBy('kek-2', 10)).toContainEqual(dataKey('k5', 'owner:k5', 'kek-0'));
      });

      test('rewrap swaps the wrapping only while it is still under fromKekId and says whether it did', async () => {
        const k1 = dataKey('k1', 'owner:1', 'kek-1');
        const k2 = dataKey('k2', 'owner:2', 'kek-1');
        await store.dataKeys.create(k1);
        await store.dataKeys.create(k2);

        expect(await store.dataKeys.rewrap('k1', 'kek-1', 'rewrapped-k1', 'kek-2')).toBe(true);
        expect(await store.dataKeys.findById('k1')).toStrictEqual({ ...k1, wrapped: 'rewrapped-k1', kekId: 'kek-2' });

        // A stale fromKekId (another node rotated first) changes nothing.
        expect(await store.dataKeys.rewrap('k1', 'kek-1', 'stale', 'kek-3')).toBe(false);
        expect(await store.dataKeys.rewrap('k2', 'kek-0', 'stale', 'kek-2')).toBe(false);
        expect(await store.dataKeys.findById('k1')).toStrictEqual({ ...k1, wrapped: 'rewrapped-k1', kekId: 'kek-2' });
        expect(await store.dataKeys.findById('k2')).toStrictEqual(k2);
        expect(await store.dataKeys.rewrap('no-such-key', 'kek-1', 'x', 'kek-2')).toBe(false);

        expect((await store.dataKeys.listNotWrappedBy('kek-2', 10)).map((k) => k.id)).toEqual(['k2']);
        expect(await store.dataKeys.rewrap('k2', 'kek-1', 'rewrapped-k2', 'kek-2')).toBe(true);
        expect(await store.dataKeys.listNotWrappedBy('kek-2', 10)).toEqual([]);
      });

      test('deleteByOwner removes that key only, true then false; countByKek counts keys per master key', async () => {
        expect(await store.dataKeys.countByKek()).toEqual({});
        await store.dataKeys.create(dataKey('k1', 'case:1', 'kek-1'));
        await store.dataKeys.create(dataKey('k2', 'case:2', 'kek-1'));
        await store.dataKeys.create(dataKey('k3', 'site:a', 'kek-2'));
        expect(await store.dataKeys.countByKek()).toEqual({ 'kek-1': 2, 'kek-2': 1 });

        expect(await store.dataKeys.deleteByOwner('case:1')).toBe(true);
        expect(await store.dataKeys.deleteByOwner('case:1')).toBe(false);
        expect(await store.dataKeys.deleteByOwner('case:none')).toBe(false);
        expect(await store.dataKeys.findByOwner('case:1')).toBeNull();
        expect(await store.dataKeys.findById('k1')).toBeNull();
        expect(await store.dataKeys.findByOwner('case:2')).not.toBeNull();
        expect(await store.dataKeys.countByKek()).toEqual({ 'kek-1': 1, 'kek-2': 1 });

        // The owner is free again once its key is gone.
        await store.dataKeys.create(dataKey('k4', 'case:1', 'kek-2'));
        expect(await store.dataKeys.countByKek()).toEqual({ 'kek-1': 1, 'kek-2': 2 });
      });
    });

    describe('cases', () => {
      const ids = (r: { cases: CaseRecord[] }) => r.cases.map((c) => c.id);
      const page = (over: Partial<CaseListFilter> = {}): CaseListFilter => ({ limit: 50, offset: 0, ...over });

      test('create + findById round-trips every field (nulls included); another site or an unknown id is null', async () => {
        await twoSites();
        const full = caseRecord('site-a', 'case-full', {
          title: 'Biopsie du sein gauche',
          clinicalQuestion: 'Carcinome ?\nGrade ?',
          status: 'in_review',
          patientSealed: 'e1.key.c2VhbGVk',
          createdBy: 'creator-id',
          updatedBy: 'updater-id',
          updatedAt: iso(T0 + MINUTE),
        });
        const bare = caseRecord('site-a', 'case-bare', { clinicalQuestion: '' });
        await store.cases.create(full);
        await store.cases.create(bare);
        expect(await store.cases.findById('site-a', 'case-full')).toStrictEqual(full);
        expect(await store.cases.findById('site-a', 'case-bare')).toStrictEqual(bare);
        expect(await store.cases.findById('site-b', 'case-full')).toBeNull();
        expect(await store.cases.findById('site-a', 'no-such-case')).toBeNull();
      });

      test('list: newest first by createdAt then id descending, only that site, total independent of the page', async () => {
        await twoSites();
        await store.cases.create(caseRecord('site-a', 'c1', { createdAt: iso(T0) }));
        await store.cases.create(caseRecord('site-a', 'c3', { createdAt: iso(T0 + 2000) }));
        await store.cases.create(caseRecord('site-a', 'c2', { createdAt: iso(T0 + 1000) }));
        await store.cases.create(caseRecord('site-a', 'c4', { createdAt: iso(T0 + 1000) }));
        await store.cases.create(caseRecord('site-b', 'b1', { createdAt: iso(T0 + 5000) }));

        const all = await store.cases.list('site-a', page());
        expect(ids(all)).toEqual(['c3', 'c4', 'c2', 'c1']);
        expect(all.total).toBe(4);
        expect(all.cases[0]).toStrictEqual(caseRecord('site-a', 'c3', { createdAt: iso(T0 + 2000) }));

        const second = await store.cases.list('site-a', page({ limit: 2, offset: 1 }));
        expect(ids(second)).toEqual(['c4', 'c2']);
        expect(second.total).toBe(4);
        const past = await store.cases.list('site-a', page({ limit: 2, offset: 10 }));
        expect(past).toEqual({ cases: [], total: 4 });

        expect(ids(await store.cases.list('site-b', page()))).toEqual(['b1']);
        expect(await store.cases.list('no-such-site', page())).toEqual({ cases: [], total: 0 });
      });

      test('list: the status filter narrows both the page and the total', async () => {
        await twoSites();
        await store.cases.create(caseRecord('site-a', 'c1', { status: 'open', createdAt: iso(T0) }));
        await store.cases.create(caseRecord('site-a', 'c2', { status: 'closed', createdAt: iso(T0 + 1000) }));
        await store.cases.create(caseRecord('site-a', 'c3', { status: 'open', createdAt: iso(T0 + 2000) }));
        await store.cases.create(caseRecord('site-b', 'b1', { status: 'open' }));

        const open = await store.cases.list('site-a', page({ status: 'open' }));
        expect(ids(open)).toEqual(['c3', 'c1']);
        expect(open.total).toBe(2);
        expect(await store.cases.list('site-a', page({ status: 'closed', limit: 1 }))).toMatchObject({ total: 1 });
        expect(await store.cases.list('site-a', page({ status: 'reported' }))).toEqual({ cases: [], total: 0 });
      });

      test('list: q is a case-insensitive substring of the title or the label', async () => {
        await twoSites();
        await store.cases.create(caseRecord('site-a', 'c1', { title: 'Liver BIOPSY', label: 'CASE-0001', createdAt: iso(T0) }));
        await store.cases.create(caseRecord('site-a', 'c2', { title: 'Skin excision', label: 'CASE-0002', createdAt: iso(T0 + 1000) }));
        await store.cases.create(caseRecord('site-a', 'c3', { title: 'Colon polyp', label: 'biopsy-lab-7', status: 'closed', createdAt: iso(T0 + 2000) }));
        await store.cases.create(caseRecord('site-b', 'b1', { title: 'Liver biopsy', label: 'CASE-0001' }));

        const biopsy = await store.cases.list('site-a', page({ q: 'Biopsy' }));
        expect(ids(biopsy)).toEqual(['c3', 'c1']);
        expect(biopsy.total).toBe(2);
        expect(ids(await store.cases.list('site-a', page({ q: 'case-0002' })))).toEqual(['c2']);
        expect(ids(await store.cases.list('site-a', page({ q: 'SKIN EXC' })))).toEqual(['c2']);
        expect(ids(await store.cases.list('site-a', page({ q: 'case-000' })))).toEqual(['c2', 'c1']);
        expect(await store.cases.list('site-a', page({ q: 'biopsy', status: 'open' }))).toEqual({
          cases: [caseRecord('site-a', 'c1', { title: 'Liver BIOPSY', label: 'CASE-0001', createdAt: iso(T0) })],
          total: 1,
        });
        expect(await store.cases.list('site-a', page({ q: 'nothing like it' }))).toEqual({ cases: [], total: 0 });
        // An empty q is no filter.
        expect((await store.cases.list('site-a', page({ q: '' }))).total).toBe(3);
      });

      test('list: q is matched literally, wildcards and regex metacharacters included', async () => {
        await twoSites();
        const titles: [string, string][] = [
          ['c1', 'Growth 50% reduced'],
          ['c2', 'Growth 50 reduced'],
          ['c3', 'Stain a.b'],
          ['c4', 'Stain axb'],
          ['c5', 'Marker x_y'],
          ['c6', 'Marker xzy'],
          ['c7', 'Pattern .* here'],
          ['c8', 'Lesion (left) [a] ^$ \\d+'],
        ];
        for (const [i, [id, title]] of titles.entries()) {
          await store.cases.create(caseRecord('site-a', id, { title, label: `L-${id}`, createdAt: iso(T0 + i * 1000) }));
        }
        const q = async (text: string) => ids(await store.cases.list('site-a', page({ q: text })));
        expect(await q('50%')).toEqual(['c1']);
        expect(await q('%')).toEqual(['c1']);
        expect(await q('a.b')).toEqual(['c3']);
        expect(await q('.')).toEqual(['c7', 'c3']);
        expect(await q('x_y')).toEqual(['c5']);
        expect(await q('_')).toEqual(['c5']);
        expect(await q('.*')).toEqual(['c7']);
        expect(await q('(left)')).toEqual(['c8']);
        expect(await q('[a]')).toEqual(['c8']);
        expect(await q('^$')).toEqual(['c8']);
        expect(await q('\\d+')).toEqual(['c8']);
        // Unbalanced or pattern-only text neither throws nor matches everything.
        expect(await q('(')).toEqual(['c8']);
        expect(await q('[')).toEqual(['c8']);
        expect(await q('a|b')).toEqual([]);
        expect(await q('.+')).toEqual([]);
        expect(await q('\\')).toEqual(['c8']);
      });

      test('update changes the given fields, null clears, undefined leaves alone; scoped by site', async () => {
        await twoSites();
        const c = caseRecord('site-a', 'c1', { patientSealed: 'e1.key.sealed', updatedBy: 'someone' });
        const other = caseRecord('site-a', 'c2');
        await store.cases.create(c);
        await store.cases.create(other);

        const updated = await store.cases.update('site-a', 'c1', {
          title: 'Renamed',
          status: 'reported',
          patientSealed: null,
          clinicalQuestion: undefined,
          updatedAt: iso(T0 + MINUTE),
          updatedBy: 'editor',
        });
        const expected: CaseRecord = { ...c, title: 'Renamed', status: 'reported', patientSealed: null, updatedAt: iso(T0 + MINUTE), updatedBy: 'editor' };
        expect(updated).toStrictEqual(expected);
        expect(await store.cases.findById('site-a', 'c1')).toStrictEqual(expected);
        expect(await store.cases.findById('site-a', 'c2')).toStrictEqual(other);

        const hijack = { title: 'Hijacked', updatedAt: iso(T0 + 2 * MINUTE), updatedBy: 'attacker' };
        expect(await store.cases.update('site-b', 'c1', hijack)).toBeNull();
        expect(await store.cases.update('site-a', 'no-such-case', hijack)).toBeNull();
        expect(await store.cases.findById('site-a', 'c1')).toStrictEqual(expected);
      });

      test("delete returns true then false, is scoped by site, and removes that case's materials only", async () => {
        await twoSites();
        await store.cases.create(caseRecord('site-a', 'c1'));
        await store.cases.create(caseRecord('site-a', 'c2'));
        await store.materials.create(material('site-a', 'c1', 'm1'));
        await store.materials.create(material('site-a', 'c1', 'm2'));
        await store.materials.create(material('site-a', 'c2', 'm3'));

        expect(await store.cases.delete('site-b', 'c1')).toBe(false);
        expect(await store.cases.findById('site-a', 'c1')).not.toBeNull();
        expect(await store.materials.listByCase('site-a', 'c1')).toHaveLength(2);

        expect(await store.cases.delete('site-a', 'c1')).toBe(true);
        expect(await store.cases.delete('site-a', 'c1')).toBe(false);
        expect(await store.cases.delete('site-a', 'no-such-case')).toBe(false);
        expect(await store.cases.findById('site-a', 'c1')).toBeNull();
        expect(await store.materials.listByCase('site-a', 'c1')).toEqual([]);
        expect(await store.materials.findById('site-a', 'c1', 'm1')).toBeNull();
        expect((await store.materials.listByCase('site-a', 'c2')).map((m) => m.id)).toEqual(['m3']);
        expect(await store.cases.findById('site-a', 'c2')).not.toBeNull();
        expect(await store.materials.listUnfinished()).toHaveLength(1);
      });

      test('listCreatedBefore returns cases created strictly before the instant, oldest first, up to limit, per site', async () => {
        await twoSites();
        await store.cases.create(caseRecord('site-a', 'c3', { createdAt: iso(T0 + 2000) }));
        await store.cases.create(caseRecord('site-a', 'c1', { createdAt: iso(T0) }));
        await store.cases.create(caseRecord('site-a', 'c2b', { createdAt: iso(T0 + 1000) }));
        await store.cases.create(caseRecord('site-a', 'c2a', { createdAt: iso(T0 + 1000) }));
        await store.cases.create(caseRecord('site-b', 'b1', { createdAt: iso(T0) }));

        const before = async (at: number, limit: number) => (await store.cases.listCreatedBefore('site-a', iso(at), limit)).map((c) => c.id);
        expect(await before(T0 + 2000, 10)).toEqual(['c1', 'c2a', 'c2b']);
        expect(await before(T0 + 2001, 10)).toEqual(['c1', 'c2a', 'c2b', 'c3']);
        expect(await before(T0 + 2000, 2)).toEqual(['c1', 'c2a']);
        expect(await before(T0, 10)).toEqual([]);
        expect(await store.cases.listCreatedBefore('site-a', iso(T0 + 1), 10)).toStrictEqual([caseRecord('site-a', 'c1', { createdAt: iso(T0) })]);
        expect((await store.cases.listCreatedBefore('site-b', iso(T0 + 9000), 10)).map((c) => c.id)).toEqual(['b1']);
      });
    });

    describe('materials', () => {
      /** Sites 'site-a' and 'site-b' with cases a1, a2 (site-a) and b1 (site-b). */
      async function threeCases(): Promise<void> {
        await twoSites();
        await store.cases.create(caseRecord('site-a', 'a1'));
        await store.cases.create(caseRecord('site-a', 'a2'));
        await store.cases.create(caseRecord('site-b', 'b1'));
      }

      test('create + findById round-trips every field; another case, another site or an unknown id is null', async () => {
        await threeCases();
        const ready = material('site-a', 'a1', 'm1', { status: 'ready', progress: 100, width: 98304, height: 65536, error: null, createdBy: 'uploader' });
        const failed = material('site-a', 'a1', 'm2', { status: 'failed', progress: 0, width: null, height: null, error: 'unsupported file', createdBy: null });
        await store.materials.create(ready);
        await store.materials.create(failed);
        expect(await store.materials.findById('site-a', 'a1', 'm1')).toStrictEqual(ready);
        expect(await store.materials.findById('site-a', 'a1', 'm2')).toStrictEqual(failed);
        expect(await store.materials.findById('site-a', 'a2', 'm1')).toBeNull();
        expect(await store.materials.findById('site-b', 'a1', 'm1')).toBeNull();
        expect(await store.materials.findById('site-a', 'a1', 'no-such-material')).toBeNull();
      });

      test('listByCase lists that case of that site only, by createdAt then id', async () => {
        await threeCases();
        await store.materials.create(material('site-a', 'a1', 'm3', { createdAt: iso(T0 + 2000) }));
        await store.materials.create(material('site-a', 'a1', 'm2', { createdAt: iso(T0 + 1000) }));
        await store.materials.create(material('site-a', 'a1', 'm1', { createdAt: iso(T0 + 1000) }));
        await store.materials.create(material('site-a', 'a1', 'm0', { createdAt: iso(T0 + 3000) }));
        await store.materials.create(material('site-a', 'a2', 'x1'));
        await store.materials.create(material('site-b', 'b1', 'y1'));

        const list = await store.materials.listByCase('site-a', 'a1');
        expect(list.map((m) => m.id)).toEqual(['m1', 'm2', 'm3', 'm0']);
        expect(list[0]).toStrictEqual(material('site-a', 'a1', 'm1', { createdAt: iso(T0 + 1000) }));
        expect((await store.materials.listByCase('site-a', 'a2')).map((m) => m.id)).toEqual(['x1']);
        expect(await store.materials.listByCase('site-b', 'a1')).toEqual([]);
        expect(await store.materials.listByCase('site-a', 'no-such-case')).toEqual([]);
      });

      test('update returns the updated record, null clears, undefined leaves alone; scoped by site', async () => {
        await threeCases();
        const m = material('site-a', 'a1', 'm1', { error: 'transient', width: 10, height: 20 });
        const other = material('site-a', 'a1', 'm2');
        await store.materials.create(m);
        await store.materials.create(other);

        const updated = await store.materials.update('site-a', 'm1', {
          status: 'converting',
          progress: 42,
          error: null,
          width: undefined,
          height: 4096,
          updatedAt: iso(T0 + MINUTE),
        });
        const expected: MaterialRecord = { ...m, status: 'converting', progress: 42, error: null, height: 4096, updatedAt: iso(T0 + MINUTE) };
        expect(updated).toStrictEqual(expected);
        expect(await store.materials.findById('site-a', 'a1', 'm1')).toStrictEqual(expected);
        expect(await store.materials.findById('site-a', 'a1', 'm2')).toStrictEqual(other);

        const patch = { status: 'failed' as const, updatedAt: iso(T0 + 2 * MINUTE) };
        expect(await store.materials.update('site-b', 'm1', patch)).toBeNull();
        expect(await store.materials.update('site-a', 'no-such-material', patch)).toBeNull();
        expect(await store.materials.findById('site-a', 'a1', 'm1')).toStrictEqual(expected);
      });

      test('delete returns true then false and is scoped by site', async () => {
        await threeCases();
        await store.materials.create(material('site-a', 'a1', 'm1'));
        await store.materials.create(material('site-a', 'a1', 'm2'));
        expect(await store.materials.delete('site-b', 'm1')).toBe(false);
        expect(await store.materials.findById('site-a', 'a1', 'm1')).not.toBeNull();
        expect(await store.materials.delete('site-a', 'm1')).toBe(true);
        expect(await store.materials.delete('site-a', 'm1')).toBe(false);
        expect(await store.materials.delete('site-a', 'no-such-material')).toBe(false);
        expect((await store.materials.listByCase('site-a', 'a1')).map((m) => m.id)).toEqual(['m2']);
      });

      test("deleteByCase deletes that case's materials in that site and returns how many", async () => {
        await threeCases();
        await store.materials.create(material('site-a', 'a1', 'm1'));
        await store.materials.create(material('site-a', 'a1', 'm2'));
        await store.materials.create(material('site-a', 'a1', 'm3'));
        await store.materials.create(material('site-a', 'a2', 'x1'));
        await store.materials.create(material('site-b', 'b1', 'y1'));

        expect(await store.materials.deleteByCase('site-b', 'a1')).toBe(0);
        expect(await store.materials.deleteByCase('site-a', 'a1')).toBe(3);
        expect(await store.materials.deleteByCase('site-a', 'a1')).toBe(0);
        expect(await store.materials.listByCase('site-a', 'a1')).toEqual([]);
        expect((await store.materials.listByCase('site-a', 'a2')).map((m) => m.id)).toEqual(['x1']);
        expect((await store.materials.listByCase('site-b', 'b1')).map((m) => m.id)).toEqual(['y1']);
        // The case itself stays.
        expect(await store.cases.findById('site-a', 'a1')).not.toBeNull();
      });

      test('exists is true for a material id in any site, false for an unknown or deleted one', async () => {
        await threeCases();
        await store.materials.create(material('site-a', 'a1', 'm1'));
        await store.materials.create(material('site-b', 'b1', 'm2'));
        expect(await store.materials.exists('m1')).toBe(true);
        expect(await store.materials.exists('m2')).toBe(true);
        expect(await store.materials.exists('no-such-material')).toBe(false);
        expect(await store.materials.delete('site-a', 'm1')).toBe(true);
        expect(await store.materials.exists('m1')).toBe(false);
        expect(await store.cases.delete('site-b', 'b1')).toBe(true);
        expect(await store.materials.exists('m2')).toBe(false);
      });

      test('listUnfinished returns queued and converting materials of every site, by createdAt', async () => {
        await threeCases();
        await store.materials.create(material('site-a', 'a1', 'q1', { status: 'queued', createdAt: iso(T0 + 3000) }));
        await store.materials.create(material('site-b', 'b1', 'c1', { status: 'converting', progress: 30, createdAt: iso(T0 + 1000) }));
        await store.materials.create(material('site-a', 'a2', 'r1', { status: 'ready', progress: 100, createdAt: iso(T0) }));
        await store.materials.create(material('site-a', 'a1', 'f1', { status: 'failed', error: 'bad file', createdAt: iso(T0 + 500) }));
        await store.materials.create(material('site-a', 'a2', 'q2', { status: 'queued', createdAt: iso(T0 + 2000) }));

        const unfinished = await store.materials.listUnfinished();
        expect(unfinished.map((m) => m.id)).toEqual(['c1', 'q2', 'q1']);
        expect(unfinished[0]).toStrictEqual(material('site-b', 'b1', 'c1', { status: 'converting', progress: 30, createdAt: iso(T0 + 1000) }));

        await store.materials.update('site-b', 'c1', { status: 'ready', progress: 100, updatedAt: iso(T0 + MINUTE) });
        expect((await store.materials.listUnfinished()).map((m) => m.id)).toEqual(['q2', 'q1']);
      });

      test('listUnfinished of an empty store is empty', async () => {
        expect(await store.materials.listUnfinished()).toEqual([]);
      });
    });

    describe('transfers', () => {
      const ids = (list: TransferRecord[]) => list.map((t) => t.id);

      /** Sites 'site-a', 'site-b' and 'site-c' (transfer agreements reference sites). */
      async function threeSites(): Promise<void> {
        await twoSites();
        await store.sites.create(site('site-c'));
      }

      test('create + findForSite round-trips every field for the sender and the receiver; a third site or an unknown id is null', async () => {
        const pending = transfer('site-a', 'site-b', 't1', { title: 'Biopsie du sein gauche', note: 'Avis SVP\nMerci' });
        const decided = transfer('site-a', 'site-b', 't2', {
          status: 'accepted',
          receivedCaseId: 'received-case',
          decidedAt: iso(T0 + MINUTE),
          decidedBy: 'receiver-user',
        });
        await store.transfers.create(pending);
        await store.transfers.create(decided);
        expect(await store.transfers.findForSite('site-a', 't1')).toStrictEqual(pending);
        expect(await store.transfers.findForSite('site-b', 't1')).toStrictEqual(pending);
        expect(await store.transfers.findForSite('site-b', 't2')).toStrictEqual(decided);
        expect(await store.transfers.findForSite('site-c', 't1')).toBeNull();
        expect(await store.transfers.findForSite('site-a', 'no-such-transfer')).toBeNull();
      });

      test('listInbox and listOutbox: only that site as receiver or sender, newest first by createdAt then id descending', async () => {
        await store.transfers.create(transfer('site-a', 'site-b', 't1', { createdAt: iso(T0) }));
        await store.transfers.create(transfer('site-a', 'site-b', 't3', { createdAt: iso(T0 + 2000) }));
        await store.transfers.create(transfer('site-a', 'site-b', 't2', { createdAt: iso(T0 + 1000) }));
        await store.transfers.create(transfer('site-a', 'site-b', 't4', { createdAt: iso(T0 + 1000) }));
        await store.transfers.create(transfer('site-c', 'site-b', 'c1', { createdAt: iso(T0 + 500) }));
        await store.transfers.create(transfer('site-b', 'site-a', 'b1', { createdAt: iso(T0 + 5000) }));

        const inbox = await store.transfers.listInbox('site-b');
        expect(ids(inbox)).toEqual(['t3', 't4', 't2', 'c1', 't1']);
        expect(inbox[0]).toStrictEqual(transfer('site-a', 'site-b', 't3', { createdAt: iso(T0 + 2000) }));
        expect(ids(await store.transfers.listOutbox('site-a'))).toEqual(['t3', 't4', 't2', 't1']);
        expect(ids(await store.transfers.listInbox('site-a'))).toEqual(['b1']);
        expect(ids(await store.transfers.listOutbox('site-b'))).toEqual(['b1']);
        expect(ids(await store.transfers.listOutbox('site-c'))).toEqual(['c1']);
        expect(await store.transfers.listInbox('site-c')).toEqual([]);
        expect(await store.transfers.listOutbox('no-such-site')).toEqual([]);
      });

      test('decide accepts a pending transfer once (compare-and-swap); a second decide or the wrong receiver is null and changes nothing', async () => {
        const t = transfer('site-a', 'site-b', 't1');
        const other = transfer('site-a', 'site-b', 't2');
        await store.transfers.create(t);
        await store.transfers.create(other);

        // Only the receiver decides: neither the sender nor a third site can.
        const accept = { status: 'accepted' as const, receivedCaseId: 'received-case', decidedAt: iso(T0 + MINUTE), decidedBy: 'receiver-user' };
        expect(await store.transfers.decide('site-a', 't1', accept)).toBeNull();
        expect(await store.transfers.decide('site-c', 't1', accept)).toBeNull();
        expect(await store.transfers.findForSite('site-b', 't1')).toStrictEqual(t);

        const accepted: TransferRecord = { ...t, ...accept };
        expect(await store.transfers.decide('site-b', 't1', accept)).toStrictEqual(accepted);
        expect(await store.transfers.findForSite('site-a', 't1')).toStrictEqual(accepted);

        const again = { status: 'refused' as const, receivedCaseId: null, decidedAt: iso(T0 + 2 * MINUTE), decidedBy: 'someone-else' };
        expect(await store.transfers.decide('site-b', 't1', again)).toBeNull();
        expect(await store.transfers.decide('site-b', 't1', accept)).toBeNull();
        expect(await store.transfers.findForSite('site-b', 't1')).toStrictEqual(accepted);
        expect(await store.transfers.decide('site-b', 'no-such-transfer', accept)).toBeNull();
        // The other transfer is untouched.
        expect(await store.transfers.findForSite('site-b', 't2')).toStrictEqual(other);
      });

      test('decide can refuse: no received case, and the refusal is final', async () => {
        const t = transfer('site-a', 'site-b', 't1');
        await store.transfers.create(t);
        const refuse = { status: 'refused' as const, receivedCaseId: null, decidedAt: iso(T0 + MINUTE), decidedBy: 'receiver-user' };
        const refused: TransferRecord = { ...t, ...refuse };
        expect(await store.transfers.decide('site-b', 't1', refuse)).toStrictEqual(refused);
        expect(await store.transfers.findForSite('site-b', 't1')).toStrictEqual(refused);
        const accept = { status: 'accepted' as const, receivedCaseId: 'received-case', decidedAt: iso(T0 + 2 * MINUTE), decidedBy: 'receiver-user' };
        expect(await store.transfers.decide('site-b', 't1', accept)).toBeNull();
        expect(await store.transfers.findForSite('site-a', 't1')).toStrictEqual(refused);
      });

      test("deleteByCase deletes the sender's transfers of that case, returns how many, and is scoped by the sending site", async () => {
        await store.transfers.create(transfer('site-a', 'site-b', 't1', { caseId: 'a1' }));
        await store.transfers.create(transfer('site-a', 'site-c', 't2', { caseId: 'a1', status: 'accepted', receivedCaseId: 'c-new', decidedAt: iso(T0), decidedBy: 'u' }));
        await store.transfers.create(transfer('site-a', 'site-b', 't3', { caseId: 'a2' }));
        // The same case id at another sender, and a transfer received by site-a, are not site-a's to delete.
        await store.transfers.create(transfer('site-c', 'site-b', 't4', { caseId: 'a1' }));
        await store.transfers.create(transfer('site-b', 'site-a', 't5', { caseId: 'a1' }));

        expect(await store.transfers.deleteByCase('site-b', 'no-such-case')).toBe(0);
        expect(await store.transfers.deleteByCase('site-a', 'a1')).toBe(2);
        expect(await store.transfers.deleteByCase('site-a', 'a1')).toBe(0);
        expect(ids(await store.transfers.listOutbox('site-a'))).toEqual(['t3']);
        expect(await store.transfers.findForSite('site-b', 't1')).toBeNull();
        expect(await store.transfers.findForSite('site-c', 't2')).toBeNull();
        expect(await store.transfers.findForSite('site-c', 't4')).not.toBeNull();
        expect(await store.transfers.findForSite('site-a', 't5')).not.toBeNull();
      });

      test('putAgreement is idempotent: a second put keeps the first createdAt and createdBy', async () => {
        await threeSites();
        const first = agreement('site-a', 'site-b', { createdAt: iso(T0), createdBy: 'first-admin' });
        await store.transfers.putAgreement(first);
        await expect(store.transfers.putAgreement(agreement('site-a', 'site-b', { createdAt: iso(T0 + MINUTE), createdBy: 'second-admin' }))).resolves.toBeUndefined();
        expect(await store.transfers.listSenders('site-a')).toStrictEqual([first]);
        expect(await store.transfers.listReceivers('site-b')).toStrictEqual([first]);
      });

      test('hasAgreement is directional: A accepting from B does not mean B accepts from A', async () => {
        await threeSites();
        await store.transfers.putAgreement(agreement('site-a', 'site-b'));
        expect(await store.transfers.hasAgreement('site-a', 'site-b')).toBe(true);
        expect(await store.transfers.hasAgreement('site-b', 'site-a')).toBe(false);
        expect(await store.transfers.hasAgreement('site-a', 'site-c')).toBe(false);
        expect(await store.transfers.hasAgreement('site-a', 'site-a')).toBe(false);
        expect(await store.transfers.hasAgreement('no-such-site', 'site-b')).toBe(false);
      });

      test('listSenders and listReceivers list the agreements of that side only, by createdAt', async () => {
        await threeSites();
        const aFromB = agreement('site-a', 'site-b', { createdAt: iso(T0 + 2000) });
        const aFromC = agreement('site-a', 'site-c', { createdAt: iso(T0 + 1000) });
        const cFromB = agreement('site-c', 'site-b', { createdAt: iso(T0 + 3000) });
        const bFromA = agreement('site-b', 'site-a', { createdAt: iso(T0) });
        for (const a of [aFromB, aFromC, cFromB, bFromA]) await store.transfers.putAgreement(a);

        expect(await store.transfers.listSenders('site-a')).toStrictEqual([aFromC, aFromB]);
        expect(await store.transfers.listSenders('site-b')).toStrictEqual([bFromA]);
        expect(await store.transfers.listSenders('site-c')).toStrictEqual([cFromB]);
        expect(await store.transfers.listReceivers('site-b')).toStrictEqual([aFromB, cFromB]);
        expect(await store.transfers.listReceivers('site-a')).toStrictEqual([bFromA]);
        expect(await store.transfers.listReceivers('site-c')).toStrictEqual([aFromC]);
        expect(await store.transfers.listSenders('no-such-site')).toEqual([]);
      });

      test('deleteAgreement returns true then false, removes only that direction, and the pair can be agreed again', async () => {
        await threeSites();
        await store.transfers.putAgreement(agreement('site-a', 'site-b'));
        await store.transfers.putAgreement(agreement('site-b', 'site-a'));
        expect(await store.transfers.deleteAgreement('site-a', 'site-b')).toBe(true);
        expect(await store.transfers.deleteAgreement('site-a', 'site-b')).toBe(false);
        expect(await store.transfers.deleteAgreement('site-a', 'site-c')).toBe(false);
        expect(await store.transfers.hasAgreement('site-a', 'site-b')).toBe(false);
        expect(await store.transfers.hasAgreement('site-b', 'site-a')).toBe(true);
        expect(await store.transfers.listSenders('site-a')).toEqual([]);

        const again = agreement('site-a', 'site-b', { createdAt: iso(T0 + MINUTE), createdBy: 'second-admin' });
        await store.transfers.putAgreement(again);
        expect(await store.transfers.listSenders('site-a')).toStrictEqual([again]);
      });
    });

    describe('chat', () => {
      const seqs = (list: ChatMessageRecord[]) => list.map((m) => m.seq);

      test('append hands build the next seq of the case (1, 2, 3...), stores what it returns, and reads back exactly', async () => {
        const offered: number[] = [];
        const stored: ChatMessageRecord[] = [];
        for (const i of [0, 1, 2]) {
          const returned = await store.chat.append('site-a', 'case-1', (seq) => {
            offered.push(seq);
            return chatMessage('site-a', 'case-1', seq, { clientId: `client-${i}`, userName: 'Dr Ève Müller' });
          });
          stored.push(returned);
        }
        expect(offered).toEqual([1, 2, 3]);
        expect(stored[1]).toStrictEqual(chatMessage('site-a', 'case-1', 2, { id: stored[1]!.id, clientId: 'client-1', userName: 'Dr Ève Müller' }));
        expect(await store.chat.listAfter('site-a', 'case-1', 0, 100)).toStrictEqual(stored);
        expect(await store.chat.findByClientId('site-a', 'case-1', 'client-2')).toStrictEqual(stored[2]);
        expect(await store.chat.findByClientId('site-a', 'case-1', 'no-such-client')).toBeNull();
        expect(await store.chat.latestSeq('site-a', 'case-1')).toBe(3);
      });

      test('each case has its own sequence starting at 1; latestSeq of an empty case is 0', async () => {
        await store.chat.append('site-a', 'case-1', (seq) => chatMessage('site-a', 'case-1', seq));
        await store.chat.append('site-a', 'case-1', (seq) => chatMessage('site-a', 'case-1', seq));
        const other = await store.chat.append('site-a', 'case-2', (seq) => chatMessage('site-a', 'case-2', seq));
        expect(other.seq).toBe(1);
        expect(await store.chat.latestSeq('site-a', 'case-1')).toBe(2);
        expect(await store.chat.latestSeq('site-a', 'case-3')).toBe(0);
      });

      test('listAfter pages in seq order with afterSeq and limit', async () => {
        for (let i = 0; i < 5; i++) await store.chat.append('site-a', 'case-1', (seq) => chatMessage('site-a', 'case-1', seq));
        const page = async (after: number, limit: number) => seqs(await store.chat.listAfter('site-a', 'case-1', after, limit));
        expect(await page(0, 2)).toEqual([1, 2]);
        expect(await page(2, 2)).toEqual([3, 4]);
        expect(await page(4, 2)).toEqual([5]);
        expect(await page(5, 2)).toEqual([]);
        expect(await page(1, 100)).toEqual([2, 3, 4, 5]);
      });

      test('20 concurrent appends to one case produce seq 1..20 with no gap or duplicate, each message once', async () => {
        const results = await Promise.all(
          Array.from({ length: 20 }, (_, i) => store.chat.append('site-a', 'case-1', (seq) => chatMessage('site-a', 'case-1', seq, { clientId: `concurrent-${i}` }))),
        );
        const expected = Array.from({ length: 20 }, (_, i) => i + 1);
        expect(results.map((r) => r.seq).sort((x, y) => x - y)).toEqual(expected);
        const stored = await store.chat.listAfter('site-a', 'case-1', 0, 100);
        expect(seqs(stored)).toEqual(expected);
        expect(stored.map((m) => m.clientId).sort()).toEqual(results.map((r) => r.clientId).sort());
        expect(new Set(stored.map((m) => m.clientId)).size).toBe(20);
      });

      test('a clientId already used in the case throws DuplicateKeyError(chat.clientId), stores nothing and takes no seq; another case may reuse it', async () => {
        const first = await store.chat.append('site-a', 'case-1', (seq) => chatMessage('site-a', 'case-1', seq, { clientId: 'same-client-id' }));
        const err = await rejection(store.chat.append('site-a', 'case-1', (seq) => chatMessage('site-a', 'case-1', seq, { clientId: 'same-client-id' })));
        expect(err).toBeInstanceOf(DuplicateKeyError);
        expect((err as DuplicateKeyError).key).toBe('chat.clientId');
        expect(await store.chat.listAfter('site-a', 'case-1', 0, 100)).toStrictEqual([first]);
        const next = await store.chat.append('site-a', 'case-1', (seq) => chatMessage('site-a', 'case-1', seq));
        expect(next.seq).toBe(2);
        expect((await store.chat.append('site-a', 'case-2', (seq) => chatMessage('site-a', 'case-2', seq, { clientId: 'same-client-id' }))).seq).toBe(1);
      });

      test('reads are scoped by site: another site sees no message, no clientId and seq 0', async () => {
        await store.chat.append('site-a', 'case-1', (seq) => chatMessage('site-a', 'case-1', seq, { clientId: 'client-a' }));
        expect(await store.chat.listAfter('site-b', 'case-1', 0, 100)).toEqual([]);
        expect(await store.chat.findByClientId('site-b', 'case-1', 'client-a')).toBeNull();
        expect(await store.chat.latestSeq('site-b', 'case-1')).toBe(0);
      });

      test("deleteByCase deletes that case's messages in that site only and returns how many", async () => {
        for (let i = 0; i < 3; i++) await store.chat.append('site-a', 'case-1', (seq) => chatMessage('site-a', 'case-1', seq));
        await store.chat.append('site-a', 'case-2', (seq) => chatMessage('site-a', 'case-2', seq));
        await store.chat.append('site-b', 'case-3', (seq) => chatMessage('site-b', 'case-3', seq));
        expect(await store.chat.deleteByCase('site-b', 'case-1')).toBe(0);
        expect(await store.chat.latestSeq('site-a', 'case-1')).toBe(3);
        expect(await store.chat.deleteByCase('site-a', 'case-1')).toBe(3);
        expect(await store.chat.deleteByCase('site-a', 'case-1')).toBe(0);
        expect(await store.chat.listAfter('site-a', 'case-1', 0, 100)).toEqual([]);
        expect(seqs(await store.chat.listAfter('site-a', 'case-2', 0, 100))).toEqual([1]);
        expect(seqs(await store.chat.listAfter('site-b', 'case-3', 0, 100))).toEqual([1]);
      });
    });

    describe('annotations', () => {
      const seqs = (list: AnnotationOpRecord[]) => list.map((o) => o.seq);
      const ids = (list: AnnotationRecord[]) => list.map((a) => a.id);

      /** The next version of `a` as a service would build it. */
      function changed(a: AnnotationRecord, over: Partial<AnnotationRecord> = {}): AnnotationRecord {
        return { ...a, version: a.version + 1, propertiesSealed: `e1.key.props-${a.id}-v${a.version + 1}`, updatedBy: 'editor', updatedAt: iso(T0 + a.version * MINUTE), ...over };
      }

      test('create stores version 1 with its create op under seq 1, 2...; every field round-trips (float and negative coordinates, holes)', async () => {
        const polygon = annotation('site-a', 'case-1', 'ann-1', {
          kind: 'polygon',
          geometry: {
            type: 'Polygon',
            coordinates: [
              [[0.5, -1.25], [100, 0], [100, 100], [0, 100], [0.5, -1.25]],
              [[10, 10], [20, 10], [20, 20], [10, 10]],
            ],
          },
        });
        const point = annotation('site-a', 'case-1', 'ann-2', { clientId: 'client-2', createdAt: iso(T0 + 1000), updatedAt: iso(T0 + 1000) });
        expect(await store.annotations.create(polygon)).toStrictEqual({ seq: 1, op: 'create', annotation: polygon });
        expect(await store.annotations.create(point)).toStrictEqual({ seq: 2, op: 'create', annotation: point });
        expect(await store.annotations.findById('site-a', 'case-1', 'ann-1')).toStrictEqual(polygon);
        expect(await store.annotations.findCreateOp('site-a', 'case-1', 'client-2')).toStrictEqual({ seq: 2, op: 'create', annotation: point });
        expect(await store.annotations.findCreateOp('site-a', 'case-1', 'no-such-client')).toBeNull();
        expect(await store.annotations.listOpsAfter('site-a', 'case-1', 0, 100)).toStrictEqual([
          { seq: 1, op: 'create', annotation: polygon },
          { seq: 2, op: 'create', annotation: point },
        ]);
        expect(await store.annotations.latestSeq('site-a', 'case-1')).toBe(2);
        // Another case has its own sequence.
        expect((await store.annotations.create(annotation('site-a', 'case-2', 'ann-3'))).seq).toBe(1);
      });

      test('20 concurrent creates in one case produce seq 1..20 with no gap or duplicate', async () => {
        const results = await Promise.all(
          Array.from({ length: 20 }, (_, i) => store.annotations.create(annotation('site-a', 'case-1', `ann-${i}`, { clientId: `client-${i}` }))),
        );
        const expected = Array.from({ length: 20 }, (_, i) => i + 1);
        expect(seqs(results).sort((x, y) => x - y)).toEqual(expected);
        const log = await store.annotations.listOpsAfter('site-a', 'case-1', 0, 100);
        expect(seqs(log)).toEqual(expected);
        expect(new Set(log.map((o) => o.annotation.id)).size).toBe(20);
      });

      test('a clientId already used in the case throws DuplicateKeyError(annotation.clientId) and stores nothing', async () => {
        await store.annotations.create(annotation('site-a', 'case-1', 'ann-1', { clientId: 'same-client-id' }));
        const err = await rejection(store.annotations.create(annotation('site-a', 'case-1', 'ann-2', { clientId: 'same-client-id' })));
        expect(err).toBeInstanceOf(DuplicateKeyError);
        expect((err as DuplicateKeyError).key).toBe('annotation.clientId');
        expect(await store.annotations.findById('site-a', 'case-1', 'ann-2')).toBeNull();
        expect(await store.annotations.latestSeq('site-a', 'case-1')).toBe(1);
        expect((await store.annotations.create(annotation('site-a', 'case-2', 'ann-3', { clientId: 'same-client-id' }))).seq).toBe(1);
      });

      test('apply is a compare-and-swap on the version: the next version lands with its op; a stale one returns null and changes nothing', async () => {
        const v1 = annotation('site-a', 'case-1', 'ann-1');
        await store.annotations.create(v1);
        const v2 = changed(v1, { geometry: { type: 'Point', coordinates: [7, 8] } });
        expect(await store.annotations.apply(v2, 'update')).toStrictEqual({ seq: 2, op: 'update', annotation: v2 });
        expect(await store.annotations.findById('site-a', 'case-1', 'ann-1')).toStrictEqual(v2);

        // Someone else's change built on version 1 (stale) is refused.
        const stale = changed(v1, { propertiesSealed: 'e1.key.stale' });
        expect(await store.annotations.apply(stale, 'update')).toBeNull();
        // A version that skips one is refused too.
        expect(await store.annotations.apply(changed(v2, { version: 4 }), 'update')).toBeNull();
        expect(await store.annotations.findById('site-a', 'case-1', 'ann-1')).toStrictEqual(v2);

        const v3 = changed(v2, { deleted: true });
        expect(await store.annotations.apply(v3, 'delete')).toStrictEqual({ seq: 3, op: 'delete', annotation: v3 });
        expect(await store.annotations.latestSeq('site-a', 'case-1')).toBe(3);
        expect(await store.annotations.listHistory('site-a', 'case-1', 'ann-1')).toStrictEqual([
          { seq: 1, op: 'create', annotation: v1 },
          { seq: 2, op: 'update', annotation: v2 },
          { seq: 3, op: 'delete', annotation: v3 },
        ]);
      });

      test('apply changes only the mutable state: identity, material, client id and creation stay as stored', async () => {
        const v1 = annotation('site-a', 'case-1', 'ann-1');
        await store.annotations.create(v1);
        const smuggled = changed(v1, { materialId: 'other-material', clientId: 'other-client', kind: 'line', createdBy: 'impostor', createdAt: iso(T0 - MINUTE) });
        const op = await store.annotations.apply(smuggled, 'update');
        const expected = { ...smuggled, materialId: v1.materialId, clientId: v1.clientId, kind: v1.kind, createdBy: v1.createdBy, createdAt: v1.createdAt };
        expect(op).toStrictEqual({ seq: 2, op: 'update', annotation: expected });
        expect(await store.annotations.findById('site-a', 'case-1', 'ann-1')).toStrictEqual(expected);
      });

      test('apply is scoped by site and case: elsewhere, or for an unknown id, it returns null', async () => {
        const v1 = annotation('site-a', 'case-1', 'ann-1');
        await store.annotations.create(v1);
        expect(await store.annotations.apply(changed(v1, { siteId: 'site-b' }), 'update')).toBeNull();
        expect(await store.annotations.apply(changed(v1, { caseId: 'case-2' }), 'update')).toBeNull();
        expect(await store.annotations.apply(changed(v1, { id: 'no-such-annotation' }), 'update')).toBeNull();
        expect(await store.annotations.findById('site-a', 'case-1', 'ann-1')).toStrictEqual(v1);
        expect(await store.annotations.latestSeq('site-a', 'case-1')).toBe(1);
      });

      test('of 10 concurrent applies on the same version exactly one wins', async () => {
        const v1 = annotation('site-a', 'case-1', 'ann-1');
        await store.annotations.create(v1);
        const results = await Promise.all(
          Array.from({ length: 10 }, (_, i) => store.annotations.apply(changed(v1, { propertiesSealed: `e1.key.writer-${i}` }), 'update')),
        );
        const winners = results.filter((r) => r !== null);
        expect(winners).toHaveLength(1);
        expect(winners[0]!.seq).toBe(2);
        expect(await store.annotations.findById('site-a', 'case-1', 'ann-1')).toStrictEqual(winners[0]!.annotation);
        expect(seqs(await store.annotations.listOpsAfter('site-a', 'case-1', 0, 100))).toEqual([1, 2]);
      });

      test('listCurrent: not deleted, of the case or one material, by createdAt then id, scoped by site', async () => {
        await store.annotations.create(annotation('site-a', 'case-1', 'c', { clientId: 'client-c', createdAt: iso(T0 + 1000) }));
        await store.annotations.create(annotation('site-a', 'case-1', 'a', { clientId: 'client-a', createdAt: iso(T0 + 2000) }));
        await store.annotations.create(annotation('site-a', 'case-1', 'b', { clientId: 'client-b', createdAt: iso(T0 + 1000), materialId: 'material-2' }));
        const gone = annotation('site-a', 'case-1', 'd', { clientId: 'client-d' });
        await store.annotations.create(gone);
        await store.annotations.apply(changed(gone, { deleted: true }), 'delete');
        await store.annotations.create(annotation('site-a', 'case-2', 'e', { clientId: 'client-e' }));

        expect(ids(await store.annotations.listCurrent('site-a', 'case-1'))).toEqual(['b', 'c', 'a']);
        expect(ids(await store.annotations.listCurrent('site-a', 'case-1', 'material-1'))).toEqual(['c', 'a']);
        expect(ids(await store.annotations.listCurrent('site-a', 'case-1', 'material-2'))).toEqual(['b']);
        expect(await store.annotations.listCurrent('site-b', 'case-1')).toEqual([]);
        expect(await store.annotations.findById('site-b', 'case-1', 'a')).toBeNull();
        expect(await store.annotations.findById('site-a', 'case-2', 'a')).toBeNull();
      });

      test('listOpsAfter pages in seq order; another site sees no op and seq 0', async () => {
        for (let i = 0; i < 5; i++) await store.annotations.create(annotation('site-a', 'case-1', `ann-${i}`, { clientId: `client-${i}` }));
        const page = async (after: number, limit: number) => seqs(await store.annotations.listOpsAfter('site-a', 'case-1', after, limit));
        expect(await page(0, 2)).toEqual([1, 2]);
        expect(await page(2, 2)).toEqual([3, 4]);
        expect(await page(4, 2)).toEqual([5]);
        expect(await page(5, 2)).toEqual([]);
        expect(await store.annotations.listOpsAfter('site-b', 'case-1', 0, 100)).toEqual([]);
        expect(await store.annotations.latestSeq('site-b', 'case-1')).toBe(0);
        expect(await store.annotations.listHistory('site-b', 'case-1', 'ann-0')).toEqual([]);
        expect(await store.annotations.findCreateOp('site-b', 'case-1', 'client-0')).toBeNull();
      });

      test('createMany stores each in order under consecutive seqs', async () => {
        await store.annotations.create(annotation('site-a', 'case-1', 'first', { clientId: 'client-first' }));
        const batch = Array.from({ length: 5 }, (_, i) => annotation('site-a', 'case-1', `batch-${i}`, { clientId: `client-batch-${i}` }));
        const ops = await store.annotations.createMany(batch);
        expect(ops).toStrictEqual(batch.map((annotation, i) => ({ seq: i + 2, op: 'create', annotation })));
        expect(await store.annotations.createMany([])).toEqual([]);
        expect(await store.annotations.latestSeq('site-a', 'case-1')).toBe(6);
      });

      test("deleteByCase deletes that case's annotations and ops in that site only and returns how many annotations", async () => {
        const a = annotation('site-a', 'case-1', 'ann-1', { clientId: 'client-1' });
        await store.annotations.create(a);
        await store.annotations.apply(changed(a), 'update');
        await store.annotations.create(annotation('site-a', 'case-1', 'ann-2', { clientId: 'client-2' }));
        await store.annotations.create(annotation('site-a', 'case-2', 'ann-3', { clientId: 'client-3' }));
        await store.annotations.create(annotation('site-b', 'case-3', 'ann-4', { clientId: 'client-4' }));

        expect(await store.annotations.deleteByCase('site-b', 'case-1')).toBe(0);
        expect(await store.annotations.latestSeq('site-a', 'case-1')).toBe(3);
        expect(await store.annotations.deleteByCase('site-a', 'case-1')).toBe(2);
        expect(await store.annotations.deleteByCase('site-a', 'case-1')).toBe(0);
        expect(await store.annotations.findById('site-a', 'case-1', 'ann-1')).toBeNull();
        expect(await store.annotations.listOpsAfter('site-a', 'case-1', 0, 100)).toEqual([]);
        expect(await store.annotations.listHistory('site-a', 'case-1', 'ann-1')).toEqual([]);
        expect(await store.annotations.latestSeq('site-a', 'case-1')).toBe(0);
        expect(ids(await store.annotations.listCurrent('site-a', 'case-2'))).toEqual(['ann-3']);
        expect(ids(await store.annotations.listCurrent('site-b', 'case-3'))).toEqual(['ann-4']);
        // The client ids are free again in that case.
        expect((await store.annotations.create(annotation('site-a', 'case-1', 'ann-5', { clientId: 'client-1' }))).seq).toBe(1);
      });
    });

    describe('lifecycle', () => {
      test('ping() is true while open; close() is idempotent; ping() is false after close', async () => {
        expect(await store.ping()).toBe(true);
        await store.close();
        await expect(store.close()).resolves.toBeUndefined();
        expect(await store.ping()).toBe(false);
      });
    });
  });
}
