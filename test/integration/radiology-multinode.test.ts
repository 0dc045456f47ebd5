// Two nodes on one store receive the same new studies at the same time (as two DICOM listeners
// behind one AE title would): every study still ends up in exactly one case, with one series
// holding every instance once.
import { ctSeries, registerPatientSecrets } from '../helpers/dicom';
import { startTestServer, type TestServer } from '../helpers/server';

registerPatientSecrets('NODES^NINA', 'NINA NODES', 'MRN-NODES-1');

let a: TestServer;
let b: TestServer;
let siteId: string;

beforeAll(async () => {
  a = await startTestServer();
  siteId = (await a.server.store.sites.list())[0]!.id;
  b = await startTestServer({}, { dataDir: a.dataDir });
}, 120_000);

afterAll(async () => {
  await b?.close();
  await a?.close();
});

test('concurrent intake of the same new studies on two nodes: one case per study, every instance once', async () => {
  const source = { kind: 'stow' as const, ip: '127.0.0.1', userId: null, role: null, userAgent: 'test' };
  const studies = Array.from({ length: 4 }, () => ctSeries({ patient: { name: 'NODES^NINA', id: 'MRN-NODES-1', birthDate: '19900909', sex: 'F' }, slices: 6 }));
  // Each slice goes to both nodes; the nodes race on every new study, series and instance.
  const results = await Promise.all(studies.flatMap((study) => study.slices.flatMap((s) => [a, b].map((node) => node.server.app.radiology.intake(siteId, source, s.file)))));
  expect(results.filter((r) => r.outcome === 'stored')).toHaveLength(4 * 6);
  expect(results.filter((r) => r.outcome === 'duplicate')).toHaveLength(4 * 6);
  for (const study of studies) {
    const mine = results.filter((r) => r.studyInstanceUid === study.studyUid);
    const caseIds = new Set(mine.map((r) => r.caseId));
    expect(caseIds.size).toBe(1);
    const [caseId] = [...caseIds];
    const series = await a.server.store.radiology.listSeriesByCase(siteId, caseId!);
    expect(series).toHaveLength(1);
    expect(series[0]!.instanceCount).toBe(6);
    expect(await a.server.store.radiology.listInstances(siteId, series[0]!.id)).toHaveLength(6);
    expect(await a.server.store.materials.listByCase(siteId, caseId!)).toHaveLength(1);
  }
  // No stray cases were left behind by a node that lost a race.
  const { cases } = await a.server.store.cases.list(siteId, { limit: 200, offset: 0 });
  expect(cases.filter((c) => c.title === 'CT study')).toHaveLength(4);
});
