// Radiology in the case room: follow the presenter carries the stack's slice and window (the
// viewport's optional `stack` field, relayed and kept for newcomers; old clients' viewports
// still pass), and annotations attach to a slice of a stack (refused on a slide or past the end),
// in the room and through a GeoJSON export and import.
import type { Socket as ClientSocket } from 'socket.io-client';
import { ctSeries, registerPatientSecrets } from '../helpers/dicom';
import { call, startTestServer, waitFor, type TestClient, type TestServer } from '../helpers/server';

registerPatientSecrets('ROOM^RITA', 'RITA ROOM', 'MRN-ROOM-1');

let t: TestServer;
let clinician: TestClient;
let pathologist: TestClient;
let caseId: string;
let materialId: string;
const sockets: ClientSocket[] = [];

async function connected(client: TestClient): Promise<ClientSocket> {
  const s = t.socket(client);
  sockets.push(s);
  await new Promise<void>((resolve, reject) => {
    s.once('connect', () => resolve());
    s.once('connect_error', reject);
    s.connect();
  });
  return s;
}

beforeAll(async () => {
  t = await startTestServer();
  const siteId = (await t.server.store.sites.list())[0]!.id;
  const series = ctSeries({ patient: { name: 'ROOM^RITA', id: 'MRN-ROOM-1', birthDate: '19750505', sex: 'F' }, slices: 4 });
  for (const s of series.slices) {
    const r = await t.server.app.radiology.intake(siteId, { kind: 'stow', ip: '127.0.0.1', userId: null, role: null, userAgent: 'test' }, s.file);
    caseId = r.caseId;
    materialId = r.materialId;
  }
  clinician = (await t.demoLogin('clinician')).client;
  pathologist = (await t.demoLogin('pathologist')).client;
}, 60_000);

afterAll(async () => {
  for (const s of sockets) s.disconnect();
  await t?.close();
});

test('the presenter’s slice and window reach the follower and newcomers; a slide viewport without them still passes', async () => {
  const a = await connected(clinician);
  const b = await connected(pathologist);
  expect((await call(a, 'room:join', { caseId })).ok).toBe(true);
  expect((await call(b, 'room:join', { caseId })).ok).toBe(true);
  expect((await call(a, 'presenter:take', { caseId })).ok).toBe(true);
  const seen: { stack?: { slice: number; window: unknown } }[] = [];
  b.on('viewport', ({ viewport }: { viewport: { stack?: { slice: number; window: unknown } } }) => seen.push(viewport));
  const base = { caseId, materialId, center: { x: 0.5, y: 0.5 }, zoom: 1, rotation: 0 };
  a.emit('viewport:update', { ...base, stack: { slice: 2, window: { center: -600, width: 1500 } } });
  await waitFor(() => seen.some((v) => v.stack?.slice === 2), 'the follower received slice 3 with the lung window');
  expect(seen.find((v) => v.stack?.slice === 2)!.stack!.window).toEqual({ center: -600, width: 1500 });
  // Unknown keys and out-of-range slices are dropped by the schema (volatile: no ack, nothing relayed).
  a.emit('viewport:update', { ...base, stack: { slice: -1, window: null } });
  a.emit('viewport:update', { ...base, stack: { slice: 1, window: null, extra: true } });
  a.emit('viewport:update', base);
  await waitFor(() => seen.some((v) => v.stack === undefined), 'a viewport without stack (slides) still relays');
  expect(seen.filter((v) => v.stack !== undefined).map((v) => v.stack!.slice)).toEqual([2]);
  a.emit('viewport:update', { ...base, stack: { slice: 3, window: null } });
  await waitFor(() => seen.some((v) => v.stack?.slice === 3), 'the last slice');
  // A newcomer gets the latest view in the join snapshot.
  const c = await connected(clinician);
  const join = await call<{ viewport: { stack?: { slice: number } } }>(c, 'room:join', { caseId });
  expect(join.ok && join.data.viewport.stack?.slice).toBe(3);
});

test('annotations attach to a slice of a stack; a slice on a slide or past the end is refused', async () => {
  const a = await connected(clinician);
  await call(a, 'room:join', { caseId });
  const point = { kind: 'point', geometry: { type: 'Point', coordinates: [10, 12] }, properties: { label: 'Nodule', color: '#ff0000', text: '' } };
  const made = await call<{ annotation: { slice: number | null; materialId: string } }>(a, 'annotation:create', { caseId, materialId, slice: 2, clientId: `slice-${Date.now()}`, ...point });
  expect(made.ok && made.data.annotation).toMatchObject({ slice: 2, materialId });
  const past = await call(a, 'annotation:create', { caseId, materialId, slice: 4, clientId: `slice-past-${Date.now()}`, ...point });
  expect(past.ok === false && past.error.code).toBe('VALIDATION_FAILED');
  // Without a slice (as every client before stacks): accepted, slice null.
  const plain = await call<{ annotation: { slice: number | null } }>(a, 'annotation:create', { caseId, materialId, clientId: `plain-${Date.now()}`, ...point });
  expect(plain.ok && plain.data.annotation.slice).toBeNull();
  // A slide (not a stack) has no slices.
  const created = await clinician.post('/api/cases', { title: 'Slide case' }).expect(201);
  const slideCase = created.body.case.id as string;
  const png = await (await import('sharp')).default({ create: { width: 64, height: 64, channels: 3, background: '#ffffff' } }).png().toBuffer();
  const upload = await clinician.agent.post(`/api/cases/${slideCase}/materials?name=s.png`).set('X-CSRF-Token', clinician.csrfToken!).set('Content-Type', 'application/octet-stream').send(png);
  expect(upload.status).toBe(202);
  expect((await call(a, 'room:join', { caseId: slideCase })).ok).toBe(true);
  const onSlide = await call(a, 'annotation:create', { caseId: slideCase, materialId: upload.body.material.id, slice: 0, clientId: `slide-${Date.now()}`, ...point });
  expect(onSlide.ok === false && onSlide.error.code).toBe('VALIDATION_FAILED');
  // Rejoining returns the slice with the annotation.
  const b = await connected(pathologist);
  const join = await call<{ annotations: { slice: number | null; properties: { label: string } }[] }>(b, 'room:join', { caseId });
  expect(join.ok && join.data.annotations.map((x) => x.slice).sort()).toEqual([2, null]);
});

test('GeoJSON keeps the slice: exported with each stack annotation, imported back onto it; a slice past the end refuses the whole file', async () => {
  const a = await connected(clinician);
  await call(a, 'room:join', { caseId });
  const point = { kind: 'point', geometry: { type: 'Point', coordinates: [20, 22] }, properties: { label: 'Exported', color: '#00ff00', text: '' } };
  expect((await call(a, 'annotation:create', { caseId, materialId, slice: 3, clientId: `geo-slice-${Date.now()}`, ...point })).ok).toBe(true);
  expect((await call(a, 'annotation:create', { caseId, materialId, clientId: `geo-plain-${Date.now()}`, ...point })).ok).toBe(true);

  const exported = JSON.parse((await clinician.get(`/api/cases/${caseId}/materials/${materialId}/annotations.geojson`).buffer(true).expect(200)).text) as {
    features: { properties: { slice?: number; name: string } }[];
  };
  const mine = exported.features.filter((f) => f.properties.name === 'Exported');
  // On a slice: the member; drawn without one: no member at all.
  expect(mine.map((f) => f.properties.slice ?? 'none').sort()).toEqual([3, 'none']);

  const count = async () => JSON.parse((await clinician.get(`/api/cases/${caseId}/materials/${materialId}/annotations.geojson`).buffer(true).expect(200)).text).features.length as number;
  const before = await count();
  const imported = await clinician.post(`/api/cases/${caseId}/materials/${materialId}/annotations/import`, { type: 'FeatureCollection', features: mine }).expect(201);
  expect((imported.body.annotations as { slice: number | null }[]).map((x) => x.slice ?? 'none').sort()).toEqual([3, 'none']);

  const onSlice = mine.find((f) => f.properties.slice === 3)!;
  const past = { type: 'FeatureCollection', features: [...mine, { ...onSlice, properties: { ...onSlice.properties, slice: 4 } }] };
  const refused = await clinician.post(`/api/cases/${caseId}/materials/${materialId}/annotations/import`, past).expect(400);
  expect(refused.body.error.code).toBe('VALIDATION_FAILED');
  expect(refused.body.error.details).toEqual([{ path: 'features.2.properties.slice', issue: 'the stack has 4 slices' }]);
  // Nothing of the refused file was stored.
  expect(await count()).toBe(before + 2);
});
