// Annotations: the wire schemas (strict GeoJSON geometry, kind/geometry agreement, bounds), the
// GeoJSON conversions (QuPath in, QuPath-compatible out), and AnnotationService over a real
// SQLite store and real envelope keys: versioned ops, optimistic concurrency with a recoverable
// conflict, idempotent creates, history, sealed properties, authorisation by material and site.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import express from 'express';
import request from 'supertest';
import { hexToRgb, parseImport, rgbToHex, toFeatureCollection } from '../../src/annotations/geojson';
import { AnnotationService } from '../../src/annotations/service';
import { AuditService } from '../../src/audit/service';
import { DataKeys } from '../../src/crypto/dataKeys';
import { KeyRing } from '../../src/crypto/keyring';
import { AppError, VersionConflictError } from '../../src/errors';
import { errorHandler } from '../../src/http/errors';
import type { Actor } from '../../src/identity/authorize';
import { DEFAULT_POLICY, defaultPermissions } from '../../src/identity/model';
import { newId } from '../../src/ids';
import { createLogger } from '../../src/observability/logger';
import {
  createAnnotationSchema,
  deleteAnnotationSchema,
  historySchema,
  MAX_POSITIONS,
  syncSchema,
  updateAnnotationSchema,
  type AnnotationOp,
  type PublicAnnotation,
} from '../../src/protocol/annotations';
import { SqliteStore } from '../../src/store/sqlite';

const ID = 'AAAAAAAAAAAAAAAAAAAAAA';
const square = (x = 0, y = 0, size = 10): [number, number][] => [
  [x, y],
  [x + size, y],
  [x + size, y + size],
  [x, y + size],
  [x, y],
];

describe('schemas', () => {
  const create = (over: Record<string, unknown> = {}) => ({
    caseId: ID,
    materialId: ID,
    clientId: 'client-000001',
    kind: 'polygon',
    geometry: { type: 'Polygon', coordinates: [square()] },
    properties: { label: 'Tumour', color: '#FF0000', text: 'comment' },
    ...over,
  });
  const issues = (result: { success: boolean; error?: { issues: { path: PropertyKey[]; message: string }[] } }) =>
    result.success ? [] : result.error!.issues.map((i) => `${i.path.join('.')}: ${i.message}`);

  test('a valid create parses; the colour is lower-cased, properties default, each kind takes its geometry', () => {
    const parsed = createAnnotationSchema.parse(create());
    expect(parsed.properties).toEqual({ label: 'Tumour', color: '#ff0000', text: 'comment' });
    expect(createAnnotationSchema.parse(create({ properties: undefined })).properties).toEqual({ label: '', color: '#ffcc00', text: '' });
    const ok: [string, unknown][] = [
      ['point', { type: 'Point', coordinates: [1.5, -2] }],
      ['line', { type: 'LineString', coordinates: [[0, 0], [5, 5]] }],
      ['rectangle', { type: 'Polygon', coordinates: [square()] }],
      ['polygon', { type: 'Polygon', coordinates: [square(0, 0, 100), square(10, 10, 5)] }],
      ['freehand', { type: 'LineString', coordinates: [[0, 0], [1, 2], [3, 1]] }],
      ['freehand', { type: 'Polygon', coordinates: [[[0, 0], [1, 2], [3, 1], [0, 0]]] }],
    ];
    for (const [kind, geometry] of ok) expect(issues(createAnnotationSchema.safeParse(create({ kind, geometry })))).toEqual([]);
  });

  test('refuses a geometry that does not suit the kind, naming the field', () => {
    const bad: [string, unknown][] = [
      ['point', { type: 'Polygon', coordinates: [square()] }],
      ['line', { type: 'Point', coordinates: [0, 0] }],
      ['polygon', { type: 'LineString', coordinates: [[0, 0], [1, 1]] }],
      ['freehand', { type: 'Point', coordinates: [0, 0] }],
      ['rectangle', { type: 'Polygon', coordinates: [[[0, 0], [1, 0], [1, 1], [0.5, 2], [0, 1], [0, 0]]] }],
      ['rectangle', { type: 'Polygon', coordinates: [square(), square(2, 2, 1)] }],
    ];
    for (const [kind, geometry] of bad) {
      const found = issues(createAnnotationSchema.safeParse(create({ kind, geometry })));
      expect(found).toHaveLength(1);
      expect(found[0]).toMatch(/^geometry: /);
    }
  });

  test('refuses malformed geometry: open rings, too few positions, out-of-range or non-finite numbers, 3-D positions, too many positions, unknown keys', () => {
    const bad: unknown[] = [
      { type: 'Polygon', coordinates: [[[0, 0], [1, 0], [1, 1], [0, 1]]] },
      { type: 'Polygon', coordinates: [[[0, 0], [1, 0], [0, 0]]] },
      { type: 'Polygon', coordinates: [] },
      { type: 'Polygon', coordinates: [square(1e7, 0, 1)] },
      { type: 'Polygon', coordinates: [[[0, 0], [Infinity, 0], [1, 1], [0, 0]]] },
      { type: 'Polygon', coordinates: [[[0, 0], [Number.NaN, 0], [1, 1], [0, 0]]] },
      { type: 'Polygon', coordinates: [[[0, 0, 1], [1, 0, 1], [1, 1, 1], [0, 0, 1]]] },
      { type: 'Polygon', coordinates: [[...Array.from({ length: MAX_POSITIONS }, (_, i) => [i, i % 7]), [0, 0]]] },
      { type: 'Polygon', coordinates: [square()], bbox: [0, 0, 10, 10] },
      { type: 'Polygon', coordinates: [['0', '0'], [1, 0], [1, 1], ['0', '0']] },
      { type: 'MultiPolygon', coordinates: [[square()]] },
      { type: 'Circle', coordinates: [0, 0], radius: 5 },
    ];
    for (const geometry of bad) expect(createAnnotationSchema.safeParse(create({ geometry })).success).toBe(false);
    // Exactly the limit is fine: 10 000 positions in the rings together.
    const ring = (n: number, dx: number) => [...Array.from({ length: n - 1 }, (_, i) => [dx + i, i % 5]), [dx, 0]];
    expect(createAnnotationSchema.safeParse(create({ geometry: { type: 'Polygon', coordinates: [ring(5000, 0), ring(5000, 1e6)] } })).success).toBe(true);
    expect(createAnnotationSchema.safeParse(create({ geometry: { type: 'Polygon', coordinates: [ring(5000, 0), ring(5001, 1e6)] } })).success).toBe(false);
  });

  test('refuses bad properties and unknown keys', () => {
    for (const properties of [
      { color: 'red' },
      { color: '#ff00' },
      { label: 'x'.repeat(201) },
      { text: 'x'.repeat(4001) },
      { label: 'ok', extra: true },
    ]) {
      expect(createAnnotationSchema.safeParse(create({ properties })).success).toBe(false);
    }
    expect(createAnnotationSchema.safeParse(create({ siteId: ID })).success).toBe(false);
    expect(createAnnotationSchema.safeParse(create({ kind: 'circle' })).success).toBe(false);
    expect(createAnnotationSchema.safeParse(create({ clientId: 'x' })).success).toBe(false);
  });

  test('update needs geometry or properties (each property optional, at least one); delete, sync and history are strict', () => {
    const base = { caseId: ID, annotationId: ID, baseVersion: 3 };
    expect(updateAnnotationSchema.safeParse(base).success).toBe(false);
    expect(updateAnnotationSchema.safeParse({ ...base, properties: {} }).success).toBe(false);
    expect(updateAnnotationSchema.parse({ ...base, properties: { color: '#ABCDEF' } }).properties).toEqual({ color: '#abcdef' });
    expect(updateAnnotationSchema.safeParse({ ...base, geometry: { type: 'Point', coordinates: [1, 1] } }).success).toBe(true);
    expect(updateAnnotationSchema.safeParse({ ...base, baseVersion: 0, properties: { text: 'x' } }).success).toBe(false);
    expect(updateAnnotationSchema.safeParse({ ...base, kind: 'point', properties: { text: 'x' } }).success).toBe(false);
    expect(deleteAnnotationSchema.safeParse(base).success).toBe(true);
    expect(deleteAnnotationSchema.safeParse({ caseId: ID, annotationId: ID }).success).toBe(false);
    expect(syncSchema.safeParse({ caseId: ID, afterSeq: 0 }).success).toBe(true);
    expect(syncSchema.safeParse({ caseId: ID, afterSeq: -1 }).success).toBe(false);
    expect(syncSchema.safeParse({ caseId: ID, afterSeq: 1.5 }).success).toBe(false);
    expect(historySchema.safeParse({ caseId: ID, annotationId: ID, extra: 1 }).success).toBe(false);
  });
});

describe('GeoJSON', () => {
  const annotation = (over: Partial<PublicAnnotation> = {}): PublicAnnotation => ({
    id: ID,
    caseId: ID,
    materialId: ID,
    kind: 'rectangle',
    geometry: { type: 'Polygon', coordinates: [square(10.5, 20.25, 30)] },
    properties: { label: 'Tumour', color: '#c80a0f', text: 'Invasive front' },
    version: 4,
    deleted: false,
    createdBy: 'u1',
    createdAt: '2030-01-01T00:00:00.000Z',
    updatedBy: 'u2',
    updatedAt: '2030-01-02T00:00:00.000Z',
    ...over,
  });

  test('colours convert between #rrggbb and [r, g, b]', () => {
    expect(hexToRgb('#c80a0f')).toEqual([200, 10, 15]);
    expect(rgbToHex([200, 10, 15])).toBe('#c80a0f');
    expect(rgbToHex([0, 0, 0])).toBe('#000000');
  });

  test('export is a QuPath-style FeatureCollection without deleted annotations', () => {
    const fc = toFeatureCollection([annotation(), annotation({ id: 'B'.repeat(22), deleted: true })]);
    expect(fc).toEqual({
      type: 'FeatureCollection',
      features: [
        {
          type: 'Feature',
          id: ID,
          geometry: { type: 'Polygon', coordinates: [square(10.5, 20.25, 30)] },
          properties: {
            objectType: 'annotation',
            name: 'Tumour',
            classification: { name: 'Tumour', color: [200, 10, 15] },
            color: '#c80a0f',
            kind: 'rectangle',
            text: 'Invasive front',
            version: 4,
          },
        },
      ],
    });
  });

  test('our own export imports back to the same kind, geometry and properties', () => {
    const originals = [
      annotation(),
      annotation({ kind: 'point', geometry: { type: 'Point', coordinates: [1, 2] }, properties: { label: '', color: '#00ff00', text: '' } }),
      annotation({ kind: 'freehand', geometry: { type: 'LineString', coordinates: [[0, 0], [1, 1], [2, 0]] } }),
      // On a DICOM stack: the slice goes out and comes back.
      annotation({ slice: 3 }),
    ];
    const drafts = parseImport(JSON.parse(JSON.stringify(toFeatureCollection(originals))));
    expect(drafts).toEqual(originals.map((a, i) => ({ kind: a.kind, geometry: a.geometry, properties: a.properties, slice: a.slice ?? null, path: `features.${i}` })));
  });

  test('a QuPath export imports: MultiPolygon split, classification colour and name, object colour first, packed colour, foreign members ignored', () => {
    const qupath = {
      type: 'FeatureCollection',
      features: [
        {
          type: 'Feature',
          id: 'e4b1a1d0-0000-4000-8000-000000000001',
          geometry: { type: 'MultiPolygon', coordinates: [[square(0, 0, 5)], [square(100, 100, 5), square(101, 101, 1)]] },
          properties: { objectType: 'annotation', classification: { name: 'Tumor', color: [200, 0, 0] }, isLocked: false, measurements: { Area: 50 } },
        },
        {
          type: 'Feature',
          geometry: { type: 'LineString', coordinates: [[0, 0], [10, 10]] },
          properties: { objectType: 'annotation', name: 'Margin', color: [0, 0, 255], classification: { name: 'Stroma', color: [150, 200, 150] } },
        },
        { type: 'Feature', geometry: { type: 'Point', coordinates: [5, 5] }, properties: { objectType: 'annotation', classification: { name: 'Old', colorRGB: -3670016 } } },
        { type: 'Feature', geometry: { type: 'Point', coordinates: [6, 6] }, properties: { objectType: 'annotation', name: 'Only a name' } },
        { type: 'Feature', geometry: { type: 'Polygon', coordinates: [square(1, 1, 1)], bbox: [1, 1, 2, 2] }, properties: null },
      ],
    };
    const drafts = parseImport(qupath);
    expect(drafts.map((d) => [d.kind, d.geometry.type, d.properties.label, d.properties.color])).toEqual([
      ['polygon', 'Polygon', 'Tumor', '#c80000'],
      ['polygon', 'Polygon', 'Tumor', '#c80000'],
      ['line', 'LineString', 'Stroma', '#0000ff'],
      ['point', 'Point', 'Old', '#c80000'],
      ['point', 'Point', 'Only a name', '#ffcc00'],
      ['polygon', 'Polygon', '', '#ffcc00'],
    ]);
    expect(drafts[1]!.geometry).toEqual({ type: 'Polygon', coordinates: [square(100, 100, 5), square(101, 101, 1)] });
    // QuPath without "Export as FeatureCollection" writes a bare array of features.
    expect(parseImport(qupath.features)).toHaveLength(6);
  });

  test('a bad file is refused as a whole with the features at fault named', () => {
    const good = { type: 'Feature', geometry: { type: 'Point', coordinates: [1, 1] }, properties: {} };
    const refuse = (body: unknown) => {
      try {
        parseImport(body);
      } catch (err) {
        expect(err).toBeInstanceOf(AppError);
        return (err as AppError).details!.map((d) => d.path);
      }
      throw new Error('expected a refusal');
    };
    expect(refuse({ type: 'FeatureCollection', features: [good, { ...good, geometry: { type: 'MultiLineString', coordinates: [[[0, 0], [1, 1]]] } }] })).toEqual(['features.1.geometry.type']);
    expect(refuse({ type: 'FeatureCollection', features: [good, { ...good, geometry: null }] })).toEqual(['features.1.geometry']);
    expect(refuse({ type: 'FeatureCollection', features: [{ ...good, geometry: { type: 'Polygon', coordinates: [[[0, 0], [1, 0], [1, 1], [0, 1]]] } }] })[0]).toMatch(/^features\.0\.geometry\.coordinates/);
    expect(refuse({ type: 'FeatureCollection', features: [{ ...good, properties: { kind: 'point', name: 'x' }, geometry: { type: 'LineString', coordinates: [[0, 0], [1, 1]] } }] })).toEqual(['features.0.properties.kind']);
    expect(refuse({ type: 'FeatureCollection', features: [{ ...good, properties: { color: 'blue' } }] })).toEqual(['features.0.properties.color']);
    expect(refuse({ type: 'Feature', geometry: { type: 'Point', coordinates: [1, 1] } })).toEqual(['type', 'features']);
    expect(refuse({ type: 'FeatureCollection', features: Array.from({ length: 5001 }, () => good) })).toEqual(['features']);
    // The cap counts annotations: 2 500 MultiPolygons of 3 polygons are 7 500.
    const multi = { ...good, geometry: { type: 'MultiPolygon', coordinates: [[square()], [square(20)], [square(40)]] } };
    expect(refuse({ type: 'FeatureCollection', features: Array.from({ length: 2500 }, () => multi) })).toEqual(['(body)']);
  });
});

describe('the HTTP error body', () => {
  test('carries the current annotation as error.current for VERSION_CONFLICT only', async () => {
    const current = { id: ID, version: 7 } as unknown as PublicAnnotation;
    const app = express();
    app.get('/conflict', () => {
      throw new VersionConflictError(current);
    });
    app.get('/other', () => {
      throw new AppError('CONFLICT', undefined, undefined, { current });
    });
    app.use(errorHandler(createLogger('silent')));
    const conflict = await request(app).get('/conflict').expect(409);
    expect(conflict.body).toEqual({ error: { code: 'VERSION_CONFLICT', message: expect.stringMatching(/current version/), current } });
    const other = await request(app).get('/other').expect(409);
    expect(other.body).toEqual({ error: { code: 'CONFLICT', message: expect.any(String) } });
  });
});

describe('AnnotationService', () => {
  const NOW = new Date('2030-05-06T07:08:09.000Z');
  const ctx = { ip: '198.51.100.4', userAgent: 'jest' };
  let dir: string;
  let store: SqliteStore;
  let service: AnnotationService;
  let events: AnnotationOp[][];
  let caseId: string;
  let materialId: string;
  const siteId = newId();
  const alice: Actor = { userId: newId(), siteId, role: 'pathologist', permissions: defaultPermissions('pathologist') };
  const bob: Actor = { userId: newId(), siteId, role: 'clinician', permissions: defaultPermissions('clinician') };
  const outsider: Actor = { userId: newId(), siteId: newId(), role: 'site_admin', permissions: defaultPermissions('site_admin') };

  async function makeCase(site: string): Promise<string> {
    const id = newId();
    const now = NOW.toISOString();
    await store.cases.create({ id, siteId: site, label: 'C-TEST-CASE', title: 'Annotated', clinicalQuestion: '', status: 'open', patientSealed: null, createdAt: now, updatedAt: now, createdBy: null, updatedBy: null });
    return id;
  }

  async function makeMaterial(site: string, caseOf: string): Promise<string> {
    const id = newId();
    const now = NOW.toISOString();
    await store.materials.create({
      id,
      siteId: site,
      caseId: caseOf,
      nameSealed: 'e1.x.y',
      mime: 'image/jpeg',
      sizeBytes: 1,
      sha256: '',
      status: 'ready',
      progress: 100,
      width: 1000,
      height: 1000,
      tileSize: 256,
      overlap: 0,
      tileFormat: 'jpeg',
      error: null,
      createdAt: now,
      updatedAt: now,
      createdBy: null,
    });
    return id;
  }

  async function rejection(promise: Promise<unknown>): Promise<AppError> {
    try {
      await promise;
    } catch (err) {
      return err as AppError;
    }
    throw new Error('expected a rejection');
  }

  const polygonInput = (over: Record<string, unknown> = {}) =>
    ({
      caseId,
      materialId,
      clientId: `client-${newId()}`,
      kind: 'polygon',
      geometry: { type: 'Polygon', coordinates: [square(10, 10, 50)] },
      properties: { label: 'Tumour', color: '#ff0000', text: 'Patient Jane Roe, MRN-448812' },
      ...over,
    }) as never;

  beforeEach(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cc-annotations-'));
    store = SqliteStore.open(path.join(dir, 'store.sqlite'));
    const dataKeys = new DataKeys(store.dataKeys, KeyRing.open(path.join(dir, 'master.key')));
    service = new AnnotationService(store, new AuditService(store.audit, () => NOW), dataKeys, () => NOW);
    events = [];
    service.on('ops', ({ ops }) => events.push(ops));
    for (const id of [siteId, outsider.siteId]) await store.sites.create({ id, name: id, policy: { ...DEFAULT_POLICY }, createdAt: NOW.toISOString(), updatedAt: NOW.toISOString() });
    caseId = await makeCase(siteId);
    materialId = await makeMaterial(siteId, caseId);
  });

  afterEach(async () => {
    service.removeAllListeners();
    await store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('create persists version 1 as op seq 1 with sealed properties, audits it without the text, and announces it', async () => {
    const op = await service.create(alice, ctx, polygonInput());
    expect(op).toMatchObject({ seq: 1, op: 'create', version: 1, materialId, userId: alice.userId, at: NOW.toISOString() });
    expect(op.annotation).toMatchObject({ caseId, materialId, kind: 'polygon', version: 1, deleted: false, createdBy: alice.userId, properties: { label: 'Tumour', color: '#ff0000', text: 'Patient Jane Roe, MRN-448812' } });
    expect(events).toEqual([[op]]);

    for (const table of ['annotations', 'annotation_ops']) {
      const rows = store.db.prepare(`SELECT * FROM ${table}`).all();
      expect(JSON.stringify(rows)).not.toMatch(/Jane|Roe|448812|Tumour/);
    }
    const audit = (await store.audit.listChain(siteId, 0, 100)).filter((r) => r.type.startsWith('annotation.'));
    expect(audit).toHaveLength(1);
    expect(audit[0]).toMatchObject({
      type: 'annotation.create',
      action: 'C',
      actor: { userId: alice.userId, ip: ctx.ip },
      objects: [
        { type: 'case', id: caseId },
        { type: 'material', id: materialId },
        { type: 'annotation', id: op.annotationId },
      ],
      details: { kind: 'polygon', version: 1, seq: 1 },
    });
    expect(JSON.stringify(audit)).not.toMatch(/Jane|Roe|448812|Tumour/);
  });

  test('create is idempotent by clientId for its author, a CONFLICT for anyone else', async () => {
    const input = polygonInput({ clientId: 'stable-client-id' });
    const first = await service.create(alice, ctx, input);
    expect(await service.create(alice, ctx, input)).toEqual(first);
    const racing = await Promise.all([1, 2, 3].map(() => service.create(alice, ctx, polygonInput({ clientId: 'racing-client-id' }))));
    expect(new Set(racing.map((o) => o.annotationId)).size).toBe(1);
    expect((await service.since(alice, ctx, caseId, 0)).latestSeq).toBe(2);
    expect(events).toHaveLength(2);
    expect(await rejection(service.create(bob, ctx, input))).toMatchObject({ code: 'CONFLICT', status: 409 });
  });

  test('update with the current version makes the next version; properties merge; a stale version is VERSION_CONFLICT carrying the current annotation', async () => {
    const created = await service.create(alice, ctx, polygonInput());
    const moved = await service.update(bob, ctx, { caseId, annotationId: created.annotationId, baseVersion: 1, geometry: { type: 'Polygon', coordinates: [square(0, 0, 80)] } });
    expect(moved).toMatchObject({ seq: 2, op: 'update', version: 2, userId: bob.userId });
    const recoloured = await service.update(alice, ctx, { caseId, annotationId: created.annotationId, baseVersion: 2, properties: { color: '#00FF00' } });
    expect(recoloured.annotation).toMatchObject({
      version: 3,
      geometry: { type: 'Polygon', coordinates: [square(0, 0, 80)] },
      properties: { label: 'Tumour', color: '#00ff00', text: 'Patient Jane Roe, MRN-448812' },
      createdBy: alice.userId,
      updatedBy: alice.userId,
    });

    // Bob still holds version 2.
    const err = await rejection(service.update(bob, ctx, { caseId, annotationId: created.annotationId, baseVersion: 2, properties: { label: 'Stroma' } }));
    expect(err).toBeInstanceOf(VersionConflictError);
    expect(err).toMatchObject({ code: 'VERSION_CONFLICT', status: 409 });
    expect((err as VersionConflictError).current).toEqual(recoloured.annotation);
    expect(err.data?.current).toEqual(recoloured.annotation);
    // Rebased on the current version, the same change goes through.
    const rebased = await service.update(bob, ctx, { caseId, annotationId: created.annotationId, baseVersion: 3, properties: { label: 'Stroma' } });
    expect(rebased.annotation.properties).toEqual({ label: 'Stroma', color: '#00ff00', text: 'Patient Jane Roe, MRN-448812' });
    expect(events.flat().map((o) => o.seq)).toEqual([1, 2, 3, 4]);
  });

  test('of concurrent updates on one version exactly one wins; the others get the winner as current', async () => {
    const created = await service.create(alice, ctx, polygonInput());
    const results = await Promise.allSettled(
      Array.from({ length: 5 }, (_, i) => service.update(i % 2 ? bob : alice, ctx, { caseId, annotationId: created.annotationId, baseVersion: 1, properties: { label: `writer ${i}` } })),
    );
    const won = results.filter((r): r is PromiseFulfilledResult<AnnotationOp> => r.status === 'fulfilled');
    const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(won).toHaveLength(1);
    expect(lost).toHaveLength(4);
    for (const l of lost) {
      expect(l.reason).toBeInstanceOf(VersionConflictError);
      expect((l.reason as VersionConflictError).current).toEqual(won[0]!.value.annotation);
    }
  });

  test('a new geometry must suit the kind; delete leaves a tombstone that cannot change again', async () => {
    const created = await service.create(alice, ctx, polygonInput({ kind: 'rectangle' }));
    const wrong = await rejection(service.update(alice, ctx, { caseId, annotationId: created.annotationId, baseVersion: 1, geometry: { type: 'Point', coordinates: [1, 1] } }));
    expect(wrong).toMatchObject({ code: 'VALIDATION_FAILED', details: [{ path: 'geometry', issue: expect.stringMatching(/rectangle/) }] });

    const removed = await service.remove(bob, ctx, { caseId, annotationId: created.annotationId, baseVersion: 1 });
    expect(removed).toMatchObject({ seq: 2, op: 'delete', version: 2, annotation: { deleted: true, properties: { label: 'Tumour' } } });
    expect(await service.listByMaterial(alice, ctx, caseId, materialId)).toEqual([]);
    expect(await rejection(service.update(alice, ctx, { caseId, annotationId: created.annotationId, baseVersion: 2, properties: { text: 'x' } }))).toMatchObject({ code: 'CONFLICT' });
    const stale = await rejection(service.remove(alice, ctx, { caseId, annotationId: created.annotationId, baseVersion: 1 }));
    expect(stale).toMatchObject({ code: 'VERSION_CONFLICT' });
    expect((stale as VersionConflictError).current.deleted).toBe(true);
    expect(await rejection(service.remove(alice, ctx, { caseId, annotationId: newId(), baseVersion: 1 }))).toMatchObject({ code: 'NOT_FOUND' });
  });

  test('history lists every op of one annotation by version, with who and when', async () => {
    const created = await service.create(alice, ctx, polygonInput());
    await service.create(bob, ctx, polygonInput());
    await service.update(bob, ctx, { caseId, annotationId: created.annotationId, baseVersion: 1, properties: { label: 'Renamed' } });
    await service.remove(alice, ctx, { caseId, annotationId: created.annotationId, baseVersion: 2 });
    const history = await service.history(bob, ctx, caseId, created.annotationId);
    expect(history.map((o) => [o.op, o.version, o.userId, o.seq, o.annotation.properties.label])).toEqual([
      ['create', 1, alice.userId, 1, 'Tumour'],
      ['update', 2, bob.userId, 3, 'Renamed'],
      ['delete', 3, alice.userId, 4, 'Renamed'],
    ]);
    expect(await rejection(service.history(bob, ctx, caseId, newId()))).toMatchObject({ code: 'NOT_FOUND' });
  });

  test('since pages through ops with the latest seq; listByCase is a snapshot with the seq to follow from', async () => {
    const ops: AnnotationOp[] = [];
    for (let i = 0; i < 5; i++) ops.push(await service.create(alice, ctx, polygonInput({ properties: { label: `n${i}` } })));
    await service.remove(alice, ctx, { caseId, annotationId: ops[0]!.annotationId, baseVersion: 1 });
    const page = await service.since(bob, ctx, caseId, 1, 2);
    expect(page.latestSeq).toBe(6);
    expect(page.ops.map((o) => o.seq)).toEqual([2, 3]);
    expect((await service.since(bob, ctx, caseId, 0)).ops.map((o) => o.op)).toEqual(['create', 'create', 'create', 'create', 'create', 'delete']);
    const snapshot = await service.listByCase(bob, ctx, caseId);
    expect(snapshot.latestSeq).toBe(6);
    // One instant for all (the clock is fixed), so the order among them is by id.
    expect(snapshot.annotations.map((a) => a.properties.label).sort()).toEqual(['n1', 'n2', 'n3', 'n4']);
  });

  test('the material must belong to the case in the actor site: otherwise NOT_FOUND, and nothing is stored', async () => {
    const otherCase = await makeCase(siteId);
    const otherCaseMaterial = await makeMaterial(siteId, otherCase);
    const foreignCase = await makeCase(outsider.siteId);
    const foreignMaterial = await makeMaterial(outsider.siteId, foreignCase);
    expect(await rejection(service.create(alice, ctx, polygonInput({ materialId: otherCaseMaterial })))).toMatchObject({ code: 'NOT_FOUND' });
    expect(await rejection(service.create(alice, ctx, polygonInput({ caseId: foreignCase, materialId: foreignMaterial })))).toMatchObject({ code: 'NOT_FOUND' });
    expect(await rejection(service.create(outsider, ctx, polygonInput()))).toMatchObject({ code: 'NOT_FOUND' });
    expect(await rejection(service.since(outsider, ctx, caseId, 0))).toMatchObject({ code: 'NOT_FOUND' });
    expect(await rejection(service.listByMaterial(outsider, ctx, caseId, materialId))).toMatchObject({ code: 'NOT_FOUND' });
    const stopped = { ...alice, permissions: { ...alice.permissions, stopAccess: true } };
    expect(await rejection(service.create(stopped, ctx, polygonInput()))).toMatchObject({ code: 'ACCESS_STOPPED' });
    expect((await service.since(alice, ctx, caseId, 0)).latestSeq).toBe(0);
    expect(events).toEqual([]);
  });

  test('import creates every feature as a create op in one announcement; deleteByCase removes them all', async () => {
    const result = await service.importGeoJson(alice, ctx, caseId, materialId, {
      type: 'FeatureCollection',
      features: [
        { type: 'Feature', geometry: { type: 'MultiPolygon', coordinates: [[square()], [square(50)]] }, properties: { classification: { name: 'Tumor', color: [255, 0, 0] } } },
        { type: 'Feature', geometry: { type: 'Point', coordinates: [3, 4] }, properties: {} },
      ],
    });
    expect(result.imported).toBe(3);
    expect(result.annotations.map((a) => [a.kind, a.properties.label, a.properties.color])).toEqual([
      ['polygon', 'Tumor', '#ff0000'],
      ['polygon', 'Tumor', '#ff0000'],
      ['point', '', '#ffcc00'],
    ]);
    expect(events).toHaveLength(1);
    expect(events[0]!.map((o) => [o.seq, o.op])).toEqual([
      [1, 'create'],
      [2, 'create'],
      [3, 'create'],
    ]);
    const audit = (await store.audit.listChain(siteId, 0, 100)).filter((r) => r.type === 'annotation.import');
    expect(audit).toHaveLength(1);
    expect(audit[0]!.objects).toHaveLength(5);

    expect(await service.deleteByCase(siteId, caseId)).toBe(3);
    expect(await service.listByCase(alice, ctx, caseId)).toEqual({ annotations: [], latestSeq: 0 });
  });
});
