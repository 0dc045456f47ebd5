// Annotations and chat on a real node: GeoJSON export and import over HTTPS (QuPath files, round
// trips, refusals that store nothing, the larger body limit of that one route), versioned ops
// with recoverable conflicts and history through the services the case room calls, comments and
// chat sealed in the database file, other sites kept out, and the retention purge removing both.
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import type { AnnotationOp, PublicAnnotation } from '../../src/protocol/annotations';
import type { Actor } from '../../src/identity/authorize';
import { IdentityService } from '../../src/identity/service';
import { SQLITE_FILE } from '../../src/store';
import { startTestServer, waitFor, type TestClient, type TestServer } from '../helpers/server';

let t: TestServer;
let clinician: TestClient;
let pathologist: TestClient;
let siteId: string;
let caseId: string;
let materialId: string;
let clinicianActor: Actor;
let pathologistActor: Actor;
const ctx = { ip: '127.0.0.1', userAgent: 'annotations-http.test' };

const patient = { name: 'Jane Roe', dateOfBirth: '1961-04-12', medicalRecordNumber: 'MRN-448812', sex: 'female' };
const square = (x: number, y: number, size: number): [number, number][] => [
  [x, y],
  [x + size, y],
  [x + size, y + size],
  [x, y + size],
  [x, y],
];

async function uploadAndWait(client: TestClient, forCase: string): Promise<string> {
  const jpeg = await sharp({ create: { width: 600, height: 400, channels: 3, background: '#d9a' } }).jpeg().toBuffer();
  const res = await client.agent
    .post(`/api/cases/${forCase}/materials?name=slide.jpg`)
    .set('X-CSRF-Token', client.csrfToken!)
    .set('Content-Type', 'application/octet-stream')
    .send(jpeg)
    .expect(202);
  const id = res.body.material.id as string;
  await waitFor(async () => (await client.get(`/api/cases/${forCase}/materials/${id}`)).body.material.status === 'ready', `material ${id} ready`);
  return id;
}

async function actorOf(email: string): Promise<Actor> {
  return IdentityService.actorOf((await t.server.store.users.findByEmail(email))!);
}

const exportPath = (c = caseId, m = materialId) => `/api/cases/${c}/materials/${m}/annotations.geojson`;
const importPath = (c = caseId, m = materialId) => `/api/cases/${c}/materials/${m}/annotations/import`;
const latestSeq = () => t.server.store.annotations.latestSeq(siteId, caseId);

function createInput(over: Record<string, unknown> = {}) {
  return {
    caseId,
    materialId,
    clientId: `client-${Math.random().toString(36).slice(2, 12)}`,
    kind: 'polygon' as const,
    geometry: { type: 'Polygon' as const, coordinates: [square(10.5, 20.25, 100)] },
    properties: { label: 'Tumour', color: '#c80a0f', text: 'Invasive front' },
    ...over,
  };
}

beforeAll(async () => {
  t = await startTestServer();
  clinician = (await t.demoLogin('clinician')).client;
  pathologist = (await t.demoLogin('pathologist')).client;
  siteId = (await clinician.get('/api/me').expect(200)).body.site.id;
  caseId = (await clinician.post('/api/cases', { title: 'Annotated biopsy', patient }).expect(201)).body.case.id;
  materialId = await uploadAndWait(clinician, caseId);
  clinicianActor = await actorOf('clinician@demo.local');
  pathologistActor = await actorOf('pathologist@demo.local');
});
afterAll(() => t.close());

describe('versioned annotation ops (the services the case room calls)', () => {
  test('a stale baseVersion is 409 VERSION_CONFLICT carrying the current annotation; rebased, the change goes through', async () => {
    const { annotations } = t.server.app;
    const created = await annotations.create(pathologistActor, ctx, createInput());
    const first = await annotations.update(clinicianActor, ctx, { caseId, annotationId: created.annotationId, baseVersion: 1, properties: { label: 'Carcinoma' } });
    const err = await annotations.update(pathologistActor, ctx, { caseId, annotationId: created.annotationId, baseVersion: 1, properties: { color: '#00ff00' } }).then(
      () => null,
      (e: unknown) => e as { code: string; status: number; current: PublicAnnotation },
    );
    expect(err).toMatchObject({ code: 'VERSION_CONFLICT', status: 409 });
    expect(err!.current).toEqual(first.annotation);
    expect(err!.current).toMatchObject({ version: 2, properties: { label: 'Carcinoma', color: '#c80a0f' } });
    const rebased = await annotations.update(pathologistActor, ctx, { caseId, annotationId: created.annotationId, baseVersion: err!.current.version, properties: { color: '#00ff00' } });
    expect(rebased.annotation).toMatchObject({ version: 3, properties: { label: 'Carcinoma', color: '#00ff00' } });
    await annotations.remove(pathologistActor, ctx, { caseId, annotationId: created.annotationId, baseVersion: 3 });
  });

  test('history lists create, update and delete in order with their users, and each is audited', async () => {
    const { annotations } = t.server.app;
    const created = await annotations.create(clinicianActor, ctx, createInput({ kind: 'point', geometry: { type: 'Point', coordinates: [5, 6] } }));
    await annotations.update(pathologistActor, ctx, { caseId, annotationId: created.annotationId, baseVersion: 1, geometry: { type: 'Point', coordinates: [7, 8] } });
    await annotations.remove(clinicianActor, ctx, { caseId, annotationId: created.annotationId, baseVersion: 2 });
    const history = await annotations.history(pathologistActor, ctx, caseId, created.annotationId);
    expect(history.map((o) => [o.op, o.version, o.userId, o.annotation.geometry])).toEqual([
      ['create', 1, clinicianActor.userId, { type: 'Point', coordinates: [5, 6] }],
      ['update', 2, pathologistActor.userId, { type: 'Point', coordinates: [7, 8] }],
      ['delete', 3, clinicianActor.userId, { type: 'Point', coordinates: [7, 8] }],
    ]);
    expect(history.map((o) => o.seq)).toEqual([...history.map((o) => o.seq)].sort((a, b) => a - b));
    const audit = (await t.server.store.audit.listChain(siteId, 0, 1_000_000)).filter((r) => r.objects.some((o) => o.id === created.annotationId));
    expect(audit.map((r) => [r.type, r.action, r.actor.userId])).toEqual([
      ['annotation.create', 'C', clinicianActor.userId],
      ['annotation.update', 'U', pathologistActor.userId],
      ['annotation.delete', 'D', clinicianActor.userId],
    ]);
  });
});

describe('GeoJSON over HTTP', () => {
  test('export: the material current annotations as a QuPath-style FeatureCollection, no-store, audited', async () => {
    const { annotations } = t.server.app;
    const kept = await annotations.create(clinicianActor, ctx, createInput({ kind: 'rectangle' }));
    const res = await pathologist.get(exportPath()).expect(200);
    expect(res.headers['content-type']).toMatch(/^application\/geo\+json/);
    expect(res.headers['cache-control']).toBe('no-store');
    const body = JSON.parse(res.text);
    expect(body.type).toBe('FeatureCollection');
    const current = await annotations.listByMaterial(pathologistActor, ctx, caseId, materialId);
    expect(body.features.map((f: { id: string }) => f.id)).toEqual(current.map((a) => a.id));
    expect(body.features.find((f: { id: string }) => f.id === kept.annotationId)).toEqual({
      type: 'Feature',
      id: kept.annotationId,
      geometry: { type: 'Polygon', coordinates: [square(10.5, 20.25, 100)] },
      properties: {
        objectType: 'annotation',
        name: 'Tumour',
        classification: { name: 'Tumour', color: [200, 10, 15] },
        color: '#c80a0f',
        kind: 'rectangle',
        text: 'Invasive front',
        version: 1,
      },
    });
    const audit = (await t.server.store.audit.listChain(siteId, 0, 1_000_000)).filter((r) => r.type === 'annotation.export');
    expect(audit.at(-1)).toMatchObject({ action: 'R', actor: { userId: pathologistActor.userId }, objects: [{ type: 'case', id: caseId }, { type: 'material', id: materialId }] });
  });

  test('export then import round-trips kind, geometry, label, colour and text as new create ops', async () => {
    const secondMaterial = await uploadAndWait(clinician, caseId);
    const { annotations } = t.server.app;
    await annotations.create(clinicianActor, ctx, createInput({ materialId: secondMaterial, kind: 'freehand', geometry: { type: 'LineString', coordinates: [[0.125, 0], [3, 4], [5, -6]] }, properties: { label: 'Nerve', color: '#0a0b0c', text: 'Perineural invasion?' } }));
    await annotations.create(clinicianActor, ctx, createInput({ materialId: secondMaterial, kind: 'point', geometry: { type: 'Point', coordinates: [250, 125] }, properties: { label: '', color: '#ffffff', text: '' } }));
    const exported = JSON.parse((await clinician.get(exportPath(caseId, secondMaterial)).expect(200)).text);

    const seen: AnnotationOp[][] = [];
    const listener = ({ ops }: { ops: AnnotationOp[] }) => seen.push(ops);
    annotations.on('ops', listener);
    const imported = await pathologist.post(importPath(caseId, secondMaterial), exported).expect(201);
    annotations.off('ops', listener);
    expect(imported.body.imported).toBe(2);
    // The test clock stands still, so creation times tie and list order is by random id:
    // compare as sets.
    const strip = (list: PublicAnnotation[]) => list.map((a) => JSON.stringify({ kind: a.kind, geometry: a.geometry, properties: a.properties })).sort();
    const originals = exported.features.map((f: { id: string }) => f.id);
    const current = await annotations.listByMaterial(pathologistActor, ctx, caseId, secondMaterial);
    expect(current).toHaveLength(4);
    const fresh = current.filter((a) => !originals.includes(a.id));
    expect(strip(fresh)).toEqual(strip(current.filter((a) => originals.includes(a.id))));
    expect(strip(imported.body.annotations)).toEqual(strip(fresh));
    expect(JSON.parse(strip(fresh)[0]!)).toEqual({ kind: 'freehand', geometry: { type: 'LineString', coordinates: [[0.125, 0], [3, 4], [5, -6]] }, properties: { label: 'Nerve', color: '#0a0b0c', text: 'Perineural invasion?' } });
    expect(fresh.every((a) => a.createdBy === pathologistActor.userId && a.version === 1)).toBe(true);
    // The case room hears them as ordinary create ops.
    expect(seen).toHaveLength(1);
    expect(seen[0]!.map((o) => o.op)).toEqual(['create', 'create']);
  });

  test('a QuPath FeatureCollection imports (MultiPolygon split, classification name and colour), larger than the 64 KiB API limit', async () => {
    const outline = Array.from({ length: 3000 }, (_, i) => [1000 + 500 * Math.cos((i / 3000) * 2 * Math.PI), 1000 + 500 * Math.sin((i / 3000) * 2 * Math.PI)]);
    outline.push(outline[0]!);
    const qupath = {
      type: 'FeatureCollection',
      features: [
        {
          type: 'Feature',
          id: '0b6f5b86-1c2a-4c5e-9d1e-3f1a2b3c4d5e',
          geometry: { type: 'MultiPolygon', coordinates: [[square(0, 0, 40)], [square(100, 100, 40), square(110, 110, 10)]] },
          properties: { objectType: 'annotation', classification: { name: 'Tumor', color: [200, 0, 0] }, isLocked: false },
        },
        {
          type: 'Feature',
          id: '6a1d2c3b-0000-4000-8000-00000000000a',
          geometry: { type: 'Polygon', coordinates: [outline] },
          properties: { objectType: 'annotation', name: 'Region 1', classification: { name: 'Stroma', color: [150, 200, 150] }, measurements: { 'Area µm^2': 785000.5 } },
        },
        { type: 'Feature', geometry: { type: 'LineString', coordinates: [[0, 0], [600, 400]] }, properties: { objectType: 'annotation', name: 'Ruler' } },
        { type: 'Feature', geometry: { type: 'Point', coordinates: [300, 200] }, properties: { objectType: 'annotation' } },
      ],
    };
    expect(JSON.stringify(qupath).length).toBeGreaterThan(64 * 1024);
    const before = await latestSeq();
    const res = await clinician.post(importPath(), qupath).expect(201);
    expect(res.body.imported).toBe(5);
    expect(res.body.annotations.map((a: PublicAnnotation) => [a.kind, a.geometry.type, a.properties.label, a.properties.color])).toEqual([
      ['polygon', 'Polygon', 'Tumor', '#c80000'],
      ['polygon', 'Polygon', 'Tumor', '#c80000'],
      ['polygon', 'Polygon', 'Stroma', '#96c896'],
      ['line', 'LineString', 'Ruler', '#ffcc00'],
      ['point', 'Point', '', '#ffcc00'],
    ]);
    expect(res.body.annotations[1].geometry.coordinates).toEqual([square(100, 100, 40), square(110, 110, 10)]);
    expect(await latestSeq()).toBe(before + 5);
    // Other JSON routes keep their 64 KiB limit.
    expect((await clinician.post('/api/cases', { title: 'x', clinicalQuestion: 'y'.repeat(70 * 1024) }).expect(413)).body.error.code).toBe('PAYLOAD_TOO_LARGE');
  });

  test('an invalid file is refused with VALIDATION_FAILED naming the feature, and nothing is imported', async () => {
    const good = (i: number) => ({ type: 'Feature', geometry: { type: 'Point', coordinates: [i, i] }, properties: { classification: { name: 'Good' } } });
    const before = await latestSeq();
    const count = (await t.server.app.annotations.listByMaterial(clinicianActor, ctx, caseId, materialId)).length;
    const bad = [
      { type: 'FeatureCollection', features: [...Array.from({ length: 10 }, (_, i) => good(i)), { type: 'Feature', geometry: { type: 'Polygon', coordinates: [[[0, 0], [1, 0], [1, 1]]] } }] },
      { type: 'FeatureCollection', features: [good(1), { type: 'Feature', geometry: { type: 'GeometryCollection', geometries: [] } }] },
      { type: 'FeatureCollection', features: [good(1), { type: 'Feature', geometry: { type: 'Point', coordinates: [1e8, 0] } }] },
      { type: 'FeatureCollection', features: [good(1), { type: 'Feature', geometry: null }] },
      { type: 'FeatureCollection' },
      { type: 'Topology', objects: {} },
    ];
    for (const body of bad) {
      const res = await clinician.post(importPath(), body).expect(400);
      expect(res.body.error.code).toBe('VALIDATION_FAILED');
      expect(res.body.error.details.length).toBeGreaterThan(0);
    }
    const first = await clinician.post(importPath(), bad[0]).expect(400);
    expect(first.body.error.details[0].path).toMatch(/^features\.10\.geometry\.coordinates/);
    // Malformed JSON, a body that is not JSON, and a file over 10 MB.
    const raw = (body: string, type = 'application/json') => clinician.agent.post(importPath()).set('X-CSRF-Token', clinician.csrfToken!).set('Content-Type', type).send(body);
    expect((await raw('{"type": "FeatureCollection", "features": [').expect(400)).body.error.code).toBe('VALIDATION_FAILED');
    expect((await raw('<kml/>', 'application/xml').expect(415)).body.error.code).toBe('UNSUPPORTED_MEDIA_TYPE');
    const huge = JSON.stringify({ type: 'FeatureCollection', features: [{ type: 'Feature', geometry: { type: 'Point', coordinates: [0, 0] }, properties: { text: 'x'.repeat(10.5 * 1024 * 1024) } }] });
    expect((await raw(huge).expect(413)).body.error.code).toBe('PAYLOAD_TOO_LARGE');

    expect(await latestSeq()).toBe(before);
    expect(await t.server.app.annotations.listByMaterial(clinicianActor, ctx, caseId, materialId)).toHaveLength(count);
  });

  test('import needs a session and the CSRF token, checked before the body is read', async () => {
    const body = { type: 'FeatureCollection', features: [] };
    const anonymous = t.client();
    expect((await anonymous.post(importPath(), body).expect(401)).body.error.code).toBe('UNAUTHENTICATED');
    await anonymous.get(exportPath()).expect(401);
    const noCsrf = await clinician.agent.post(importPath()).send(body).expect(403);
    expect(noCsrf.body.error.code).toBe('CSRF_INVALID');
    expect((await clinician.post(importPath(), body).expect(201)).body).toEqual({ imported: 0, annotations: [] });
  });

  test('another site, or a material of another case, is 404 for export and import, and imports nothing', async () => {
    const other = await t.server.app.identity.createSite('Elsewhere Clinic');
    const { oneTimePassword } = await t.server.app.identity.createUser(null, ctx, { siteId: other.id, email: 'pathologist@elsewhere.example', name: 'Other Pathologist', role: 'pathologist' });
    const outsider = t.client();
    await outsider.login('pathologist@elsewhere.example', oneTimePassword).expect(200);
    await outsider.post('/api/auth/password', { currentPassword: oneTimePassword, newPassword: 'another long and unusual passphrase' }).expect(200);
    const body = { type: 'FeatureCollection', features: [{ type: 'Feature', geometry: { type: 'Point', coordinates: [1, 1] }, properties: {} }] };
    const before = await latestSeq();
    expect((await outsider.get(exportPath()).expect(404)).body.error.code).toBe('NOT_FOUND');
    expect((await outsider.post(importPath(), body).expect(404)).body.error.code).toBe('NOT_FOUND');

    const otherCase = (await clinician.post('/api/cases', { title: 'Unrelated case' }).expect(201)).body.case.id;
    await clinician.get(exportPath(otherCase, materialId)).expect(404);
    await clinician.post(importPath(otherCase, materialId), body).expect(404);
    await clinician.get(exportPath(caseId, 'AAAAAAAAAAAAAAAAAAAAAA')).expect(404);
    await clinician.get(exportPath('not-an-id', materialId)).expect(400);
    expect(await latestSeq()).toBe(before);
    expect(await t.server.store.annotations.latestSeq(siteId, otherCase)).toBe(0);
  });

  test('annotation comments and chat text are sealed in the database file: nothing readable on disk', async () => {
    const { annotations, chat } = t.server.app;
    await annotations.create(clinicianActor, ctx, createInput({ properties: { label: 'Jane Roe left breast', color: '#123456', text: 'Comment: patient Jane Roe, MRN-448812, born 1961-04-12' } }));
    await chat.send(clinicianActor, ctx, { caseId, text: 'Chat: Jane Roe (MRN-448812) is anxious, please hurry', clientId: 'chat-client-0001' }, 'Demo Clinician');
    const files = [SQLITE_FILE, `${SQLITE_FILE}-wal`].map((f) => path.join(t.dataDir, f)).filter((f) => fs.existsSync(f));
    expect(files.length).toBeGreaterThan(0);
    for (const file of files) {
      const bytes = fs.readFileSync(file);
      for (const secret of ['Jane Roe', 'MRN-448812', 'is anxious', 'left breast']) expect({ file, secret, found: bytes.includes(secret) }).toEqual({ file, secret, found: false });
    }
    // The catch-up read decrypts them for the room.
    expect((await chat.since(pathologistActor, ctx, caseId, 0)).messages.at(-1)!.text).toBe('Chat: Jane Roe (MRN-448812) is anxious, please hurry');
  });
});

describe('retention', () => {
  test('the purge deletes a case chat and annotations with it', async () => {
    const admin = (await t.demoLogin('site_admin')).client;
    await admin.patch('/api/admin/site/policy', { retentionDays: 1 }).expect(200);
    const old = (await clinician.post('/api/cases', { title: 'Old annotated case' }).expect(201)).body.case.id;
    const oldMaterial = await uploadAndWait(clinician, old);
    const { annotations, chat } = t.server.app;
    await annotations.create(clinicianActor, ctx, createInput({ caseId: old, materialId: oldMaterial }));
    await annotations.importGeoJson(clinicianActor, ctx, old, oldMaterial, { type: 'FeatureCollection', features: [{ type: 'Feature', geometry: { type: 'Point', coordinates: [1, 2] }, properties: {} }] });
    await chat.send(clinicianActor, ctx, { caseId: old, text: 'Old message', clientId: 'old-chat-00001' }, 'Demo Clinician');
    expect(await t.server.store.annotations.latestSeq(siteId, old)).toBe(2);
    expect(await t.server.store.chat.latestSeq(siteId, old)).toBe(1);

    t.clock.advance(2 * 24 * 3600 * 1000);
    const reports = await t.server.app.retention.purgeAll('command');
    expect(reports.find((r) => r.siteId === siteId)!.cases).toBeGreaterThanOrEqual(1);
    expect(await t.server.store.cases.findById(siteId, old)).toBeNull();
    expect(await t.server.store.annotations.latestSeq(siteId, old)).toBe(0);
    expect(await t.server.store.annotations.listCurrent(siteId, old)).toEqual([]);
    expect(await t.server.store.chat.latestSeq(siteId, old)).toBe(0);
    const db = (t.server.store as unknown as { db: import('better-sqlite3').Database }).db;
    for (const table of ['annotations', 'annotation_ops', 'chat_messages']) {
      expect({ table, rows: (db.prepare(`SELECT COUNT(*) AS n FROM ${table} WHERE case_id = ?`).get(old) as { n: number }).n }).toEqual({ table, rows: 0 });
    }
  });
});
