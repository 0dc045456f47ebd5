// The follow-up repository contract (src/followups/model.ts), held by every store: create and
// read, compare-and-set updates (one writer wins), the staff list (host or invited colleague,
// window still open, site scoped), consent records, and the retention purge (by window end or
// case, consent records with them).
import type { FollowUpRecord } from '../../src/followups/model';
import { DEFAULT_POLICY } from '../../src/identity/model';
import type { Store } from '../../src/store/types';

let n = 0;
const id = () => `${Date.now().toString(36)}${(n++).toString(36)}`.padEnd(22, 'x').slice(0, 22);
const iso = (offsetMs = 0) => new Date(Date.now() + offsetMs).toISOString();

export function describeFollowUpContract(name: string, open: () => Promise<Store>): void {
  describe(`${name} store: follow-up repository contract`, () => {
    let store: Store;
    let siteA: string;
    let siteB: string;
    let caseA: string;

    beforeEach(async () => {
      store = await open();
      siteA = id();
      siteB = id();
      for (const s of [siteA, siteB]) await store.sites.create({ id: s, name: `Site ${s}`, policy: DEFAULT_POLICY, createdAt: iso(), updatedAt: iso() });
      caseA = await newCase(siteA);
    });
    afterEach(async () => {
      await store.close();
    });

    async function newCase(siteId: string): Promise<string> {
      const caseId = id();
      await store.cases.create({ id: caseId, siteId, label: 'C-TEST-0000', title: 't', clinicalQuestion: '', status: 'open', patientSealed: null, createdAt: iso(), updatedAt: iso(), createdBy: null, updatedBy: null });
      return caseId;
    }

    function record(over: Partial<FollowUpRecord> = {}): FollowUpRecord {
      const stamp = iso();
      return {
        id: id(),
        siteId: siteA,
        caseId: caseA,
        hostUserId: 'host-user-0000000000000',
        colleagues: ['colleague-00000000000000'],
        contactLabelSealed: 'sealed-label',
        startsAt: iso(-60_000),
        endsAt: iso(3600_000),
        verification: 'dateOfBirth',
        tokenHash: 'a'.repeat(64),
        state: 'invited',
        bindingId: null,
        bound: false,
        deviceCheck: null,
        waitingSince: null,
        verifiedAt: null,
        failedVerifications: 0,
        messages: [],
        inviteSentAt: null,
        consentedAt: null,
        admittedAt: null,
        endedAt: null,
        createdAt: stamp,
        updatedAt: stamp,
        ...over,
      };
    }

    test('create then findById returns the record as written', async () => {
      const r = record();
      await store.followUps.create(r);
      expect(await store.followUps.findById(r.id)).toEqual(r);
      expect(await store.followUps.findById(id())).toBeNull();
    });

    test('update is compare-and-set on updatedAt: of two writers with the same view, one wins', async () => {
      const r = record();
      await store.followUps.create(r);
      const first = await store.followUps.update(r.id, r.updatedAt, { state: 'waiting', deviceCheck: { camera: true, microphone: false }, waitingSince: iso(), updatedAt: iso(1) });
      expect(first).toMatchObject({ state: 'waiting', deviceCheck: { camera: true, microphone: false }, bound: false });
      const second = await store.followUps.update(r.id, r.updatedAt, { state: 'declined', updatedAt: iso(2) });
      expect(second).toBeNull();
      const third = await store.followUps.update(r.id, first!.updatedAt, { state: 'admitted', bound: true, bindingId: 'binding-1', messages: [{ text: 'hi', at: iso() }], updatedAt: iso(3) });
      expect(third).toMatchObject({ state: 'admitted', bound: true, bindingId: 'binding-1', messages: [{ text: 'hi' }], deviceCheck: { camera: true, microphone: false } });
      expect(await store.followUps.findById(r.id)).toEqual(third);
    });

    test('listForUser: host or colleague, window not over, this site only', async () => {
      const hosted = record({ hostUserId: 'u1', colleagues: [] });
      const invited = record({ hostUserId: 'u2', colleagues: ['u3', 'u1'] });
      const other = record({ hostUserId: 'u2', colleagues: ['u3'] });
      const over = record({ hostUserId: 'u1', endsAt: iso(-3600_000) });
      const caseB = await newCase(siteB);
      const elsewhere = record({ siteId: siteB, caseId: caseB, hostUserId: 'u1' });
      for (const r of [hosted, invited, other, over, elsewhere]) await store.followUps.create(r);
      const ids = (await store.followUps.listForUser(siteA, 'u1', iso())).map((r) => r.id).sort();
      expect(ids).toEqual([hosted.id, invited.id].sort());
      expect((await store.followUps.listByCase(siteA, caseA)).length).toBe(4);
      expect(await store.followUps.listByCase(siteB, caseA)).toEqual([]);
    });

    test('consent records are kept per follow-up and site, and purged with their follow-up', async () => {
      const old = record({ endsAt: iso(-10 * 24 * 3600_000), startsAt: iso(-10 * 24 * 3600_000 - 60_000) });
      const current = record();
      for (const r of [old, current]) await store.followUps.create(r);
      for (const r of [old, current]) {
        await store.followUps.addConsent({ id: id(), siteId: siteA, followUpId: r.id, textVersion: 'v1', textSha256: 'b'.repeat(64), givenAt: iso(), ip: '192.0.2.1', userAgent: 'UA' });
      }
      expect(await store.followUps.listConsents(siteA, old.id)).toEqual([expect.objectContaining({ textVersion: 'v1', ip: '192.0.2.1', userAgent: 'UA' })]);
      expect(await store.followUps.listConsents(siteB, old.id)).toEqual([]);
      expect(await store.followUps.purge(siteB, { endedBefore: iso() })).toBe(0);
      expect(await store.followUps.purge(siteA, { endedBefore: iso(-24 * 3600_000) })).toBe(1);
      expect(await store.followUps.findById(old.id)).toBeNull();
      expect(await store.followUps.listConsents(siteA, old.id)).toEqual([]);
      expect(await store.followUps.findById(current.id)).not.toBeNull();
      expect(await store.followUps.purge(siteA, { caseId: caseA })).toBe(1);
      expect(await store.followUps.listConsents(siteA, current.id)).toEqual([]);
    });
  });
}
