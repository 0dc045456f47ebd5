// The radiology repository contract (src/radiology/model.ts), held by every store: case keys,
// series, instances, the patient registry and HL7 documents, scoped by site and case.
import type { Store } from '../../src/store/types';
import { DuplicateKeyError } from '../../src/store/types';
import type { InstanceRecord, SeriesRecord } from '../../src/radiology/model';
import { DEFAULT_POLICY } from '../../src/identity/model';

let n = 0;
const id = () => `${Date.now().toString(36)}${(n++).toString(36)}`.padEnd(22, 'x').slice(0, 22);
const now = () => new Date().toISOString();

export function describeRadiologyContract(name: string, open: () => Promise<Store>): void {
  describe(`${name} store: radiology repository contract`, () => {
    let store: Store;
    let siteA: string;
    let siteB: string;
    let caseA: string;

    beforeEach(async () => {
      store = await open();
      siteA = id();
      siteB = id();
      for (const s of [siteA, siteB]) await store.sites.create({ id: s, name: `Site ${s}`, policy: DEFAULT_POLICY, createdAt: now(), updatedAt: now() });
      caseA = await newCase(siteA);
    });

    afterEach(async () => {
      await store.close();
    });

    async function newCase(siteId: string): Promise<string> {
      const caseId = id();
      await store.cases.create({ id: caseId, siteId, label: 'C-TEST-0000', title: 't', clinicalQuestion: '', status: 'open', patientSealed: null, createdAt: now(), updatedAt: now(), createdBy: null, updatedBy: null });
      return caseId;
    }

    async function newSeries(siteId: string, caseId: string, over: Partial<SeriesRecord> = {}): Promise<SeriesRecord> {
      const materialId = id();
      await store.materials.create({
        id: materialId,
        siteId,
        caseId,
        nameSealed: 'sealed',
        mime: 'application/dicom',
        sizeBytes: 0,
        sha256: '',
        status: 'ready',
        progress: 100,
        width: null,
        height: null,
        tileSize: 256,
        overlap: 0,
        tileFormat: 'jpeg',
        error: null,
        createdAt: now(),
        updatedAt: now(),
        createdBy: null,
      });
      const series: SeriesRecord = {
        id: materialId,
        siteId,
        caseId,
        seriesKey: `series-${materialId}`,
        patientKey: 'patient-1',
        modality: 'CT',
        sopClassUid: '1.2.840.10008.5.1.4.1.1.2',
        seriesNumber: 3,
        rows: 512,
        columns: 512,
        windowCenter: 40,
        windowWidth: 400,
        instanceCount: 0,
        totalBytes: 0,
        createdAt: now(),
        updatedAt: now(),
        ...over,
      };
      await store.radiology.createSeries(series);
      return series;
    }

    const instance = (s: SeriesRecord, sopKey: string, over: Partial<InstanceRecord> = {}): InstanceRecord => ({
      id: id(),
      siteId: s.siteId,
      caseId: s.caseId,
      seriesId: s.id,
      sopKey,
      sopClassUid: s.sopClassUid,
      transferSyntaxUid: '1.2.840.10008.1.2.1',
      instanceNumber: 1,
      slicePosition: -12.5,
      rows: 512,
      columns: 512,
      frames: 1,
      sizeBytes: 1000,
      sha256: 'ab'.repeat(32),
      createdAt: now(),
      ...over,
    });

    test('case keys: first writer wins, lookups are per site and kind, and can be dropped', async () => {
      expect(await store.radiology.putCaseKey({ siteId: siteA, kind: 'study', keyHash: 'k1', caseId: caseA, createdAt: now() })).toBe(true);
      const other = await newCase(siteA);
      expect(await store.radiology.putCaseKey({ siteId: siteA, kind: 'study', keyHash: 'k1', caseId: other, createdAt: now() })).toBe(false);
      expect(await store.radiology.findCaseKey(siteA, 'study', 'k1')).toBe(caseA);
      expect(await store.radiology.findCaseKey(siteA, 'accession', 'k1')).toBeNull();
      expect(await store.radiology.findCaseKey(siteB, 'study', 'k1')).toBeNull();
      expect((await store.radiology.listCaseKeys(siteA, caseA)).map((k) => k.keyHash)).toEqual(['k1']);
      await store.radiology.deleteCaseKey(siteA, 'study', 'k1');
      expect(await store.radiology.findCaseKey(siteA, 'study', 'k1')).toBeNull();
    });

    test('series: round-trip, unique key per case, counters, patient lookup, scoped by site and case', async () => {
      const s = await newSeries(siteA, caseA);
      expect(await store.radiology.findSeries(siteA, caseA, s.id)).toEqual(s);
      expect(await store.radiology.findSeriesByKey(siteA, caseA, s.seriesKey)).toEqual(s);
      expect(await store.radiology.findSeries(siteB, caseA, s.id)).toBeNull();
      expect(await store.radiology.findSeries(siteA, await newCase(siteA), s.id)).toBeNull();
      await expect(newSeries(siteA, caseA, { seriesKey: s.seriesKey })).rejects.toBeInstanceOf(DuplicateKeyError);
      await store.radiology.addToSeries(siteA, s.id, 1500, now());
      await store.radiology.addToSeries(siteA, s.id, 500, now());
      expect(await store.radiology.findSeries(siteA, caseA, s.id)).toMatchObject({ instanceCount: 2, totalBytes: 2000 });
      await newSeries(siteA, caseA, { patientKey: null, seriesNumber: 1 });
      expect((await store.radiology.listSeriesByCase(siteA, caseA)).map((x) => x.seriesNumber)).toEqual([1, 3]);
      expect(await store.radiology.listCaseIdsByPatient(siteA, 'patient-1')).toEqual([caseA]);
      expect(await store.radiology.listCaseIdsByPatient(siteB, 'patient-1')).toEqual([]);
    });

    test('instances: one per SOP key in a series, listed in arrival order', async () => {
      const s = await newSeries(siteA, caseA);
      const first = instance(s, 'sop-1', { createdAt: '2026-01-01T00:00:00.000Z' });
      const second = instance(s, 'sop-2', { createdAt: '2026-01-01T00:00:01.000Z', instanceNumber: null, slicePosition: null });
      await store.radiology.createInstance(second);
      await store.radiology.createInstance(first);
      await expect(store.radiology.createInstance(instance(s, 'sop-1'))).rejects.toBeInstanceOf(DuplicateKeyError);
      expect(await store.radiology.listInstances(siteA, s.id)).toEqual([first, second]);
      expect(await store.radiology.findInstanceByKey(siteA, s.id, 'sop-2')).toEqual(second);
      expect(await store.radiology.findInstanceByKey(siteB, s.id, 'sop-2')).toBeNull();
    });

    test('patient registry: upsert by key, per site', async () => {
      await store.radiology.putPatient({ siteId: siteA, patientKey: 'p', patientSealed: 'e1.a', updatedAt: '2026-01-01T00:00:00.000Z' });
      await store.radiology.putPatient({ siteId: siteA, patientKey: 'p', patientSealed: 'e1.b', updatedAt: '2026-01-02T00:00:00.000Z' });
      expect(await store.radiology.getPatient(siteA, 'p')).toEqual({ siteId: siteA, patientKey: 'p', patientSealed: 'e1.b', updatedAt: '2026-01-02T00:00:00.000Z' });
      expect(await store.radiology.getPatient(siteB, 'p')).toBeNull();
      await store.radiology.putPatient({ siteId: siteB, patientKey: 'p', patientSealed: 'e1.c', updatedAt: '2026-01-01T00:00:00.000Z' });
      expect(await store.radiology.purgePatients(siteA, '2026-01-02T00:00:00.000Z')).toBe(0);
      expect(await store.radiology.purgePatients(siteA, '2026-01-03T00:00:00.000Z')).toBe(1);
      expect(await store.radiology.getPatient(siteA, 'p')).toBeNull();
      expect(await store.radiology.getPatient(siteB, 'p')).not.toBeNull();
    });

    test('documents: one per message key and case, listed in order; deleteByCase removes everything of the case', async () => {
      const doc = (messageKey: string, createdAt: string) => ({ id: id(), siteId: siteA, caseId: caseA, kind: 'order' as const, messageKey, contentSealed: 'e1.x', createdAt });
      const order = doc('m1', '2026-01-01T00:00:00.000Z');
      const report = { ...doc('m2', '2026-01-01T00:00:05.000Z'), kind: 'report' as const };
      expect(await store.radiology.addDocument(order)).toBe(true);
      expect(await store.radiology.addDocument(report)).toBe(true);
      expect(await store.radiology.addDocument(doc('m1', now()))).toBe(false);
      expect(await store.radiology.listDocuments(siteA, caseA)).toEqual([order, report]);
      expect(await store.radiology.listDocuments(siteB, caseA)).toEqual([]);

      const s = await newSeries(siteA, caseA);
      await store.radiology.createInstance(instance(s, 'sop-9'));
      await store.radiology.putCaseKey({ siteId: siteA, kind: 'accession', keyHash: 'acc', caseId: caseA, createdAt: now() });
      await store.radiology.deleteByCase(siteA, caseA);
      expect(await store.radiology.listDocuments(siteA, caseA)).toEqual([]);
      expect(await store.radiology.listSeriesByCase(siteA, caseA)).toEqual([]);
      expect(await store.radiology.listInstances(siteA, s.id)).toEqual([]);
      expect(await store.radiology.findCaseKey(siteA, 'accession', 'acc')).toBeNull();
    });
  });
}
