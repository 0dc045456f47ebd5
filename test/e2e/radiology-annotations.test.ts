// End-to-end: annotations on a DICOM stack (a CT series received by the radiology intake), in
// Debian's Chromium against a real node. One person draws a rectangle on one slice; another
// person in another browser sees it on that slice and on no other; the server stores the slice;
// after a reload it is still on its slice; the list names the slice and takes you to it; the
// other person edits, moves and deletes it. While a drawing tool is active, the right-button
// window drag is off. Pages are watched for CSP violations and script errors. No sleeps.
import path from 'node:path';
import type { Socket as ClientSocket } from 'socket.io-client';
import type { Page } from 'playwright-core';
import { ctSeries, registerPatientSecrets } from '../helpers/dicom';
import { call, connect, waitFor } from '../helpers/server';
import { slidePng, startHarness, type Harness } from './clientHarness';
import type { PublicAnnotation } from '../../src/protocol/annotations';

jest.setTimeout(180_000);

/** The docs' picture: the selected annotation with its editor, on its slice. */
const SCREENSHOT = path.resolve(__dirname, '..', '..', 'docs', 'screenshots', 'radiology-annotation.png');
const RELOAD_SCREENSHOT = '/tmp/radiology-annotation-reload.png';
/** The slice drawn on (display order, from 0): the list calls it "Slice 7". */
const SLICE = 6;
const SLICES = 9;
const SIZE = 128;
registerPatientSecrets('E2E^ANNOT', 'ANNOT E2E', 'MRN-E2E-ANNOT');

let t: Harness;
let caseId: string;
let materialId: string;
let drawer: Page;
let viewer: Page;
let socket: ClientSocket | null = null;

async function openStack(page: Page): Promise<void> {
  await page.goto(`/cases/${caseId}`);
  await page.locator('.stack-viewer:not([hidden])').waitFor();
  await waitFor(async () => (await page.locator('.stack-viewer').getAttribute('data-loaded')) === 'true', 'the first slice image loaded');
  // The room is joined: the person sees themselves in it.
  await page.locator('.presence-item').first().waitFor();
}

async function sliceOf(page: Page): Promise<number> {
  return Number(await page.locator('.stack-viewer').getAttribute('data-slice'));
}

/** Moves with the arrow keys to `slice` (press focuses the stack viewer first). */
async function goToSlice(page: Page, slice: number): Promise<void> {
  while ((await sliceOf(page)) !== slice) {
    const before = await sliceOf(page);
    await page.locator('.stack-viewer').press(before < slice ? 'ArrowDown' : 'ArrowUp');
    await waitFor(async () => (await sliceOf(page)) !== before, `the arrow key moved the stack from slice ${before}`);
  }
  // The layer has been rebuilt for the slice.
  await page.locator(`.stack-viewer .annotation-layer[data-slice="${slice}"]`).waitFor({ state: 'attached' });
}

/**
 * Where the slice's pixels are on the page: the <img> box less the letterbox bands of
 * object-fit: contain, measured here independently of the client's own mapping.
 */
async function picture(page: Page): Promise<{ x: number; y: number; width: number; height: number }> {
  return page.locator('.stack-image').evaluate((img: HTMLImageElement) => {
    const box = img.getBoundingClientRect();
    const scale = Math.min(box.width / img.naturalWidth, box.height / img.naturalHeight);
    const width = img.naturalWidth * scale;
    const height = img.naturalHeight * scale;
    return { x: box.left + (box.width - width) / 2, y: box.top + (box.height - height) / 2, width, height };
  });
}

/** A page point at image pixel (ix, iy) of the slice. */
async function imagePoint(page: Page, ix: number, iy: number): Promise<{ x: number; y: number }> {
  const p = await picture(page);
  return { x: p.x + (ix / SIZE) * p.width, y: p.y + (iy / SIZE) * p.height };
}

/** Lets the page draw two frames: the overlay rebuilds at the next animation frame after a change. */
async function frames(page: Page): Promise<void> {
  await page.evaluate(() => new Promise<void>((resolve) => requestAnimationFrame(() => requestAnimationFrame(() => resolve()))));
}

function shapesOn(page: Page) {
  return page.locator('.stack-viewer .annotation-layer g.annotation.kind-rectangle');
}

/**
 * The drawn rectangle's outline on the page, from its geometry and the transform it is drawn
 * under (a bounding box would include the stroke, which does not scale with the picture).
 */
async function shapeBox(page: Page): Promise<{ left: number; top: number; right: number; bottom: number } | null> {
  const path = shapesOn(page).locator('path');
  if ((await path.count()) !== 1) return null;
  return path.evaluate((p: SVGPathElement) => {
    const b = p.getBBox();
    const m = p.getScreenCTM()!;
    const a = new DOMPoint(b.x, b.y).matrixTransform(m);
    const c = new DOMPoint(b.x + b.width, b.y + b.height).matrixTransform(m);
    return { left: a.x, top: a.y, right: c.x, bottom: c.y };
  });
}

function expectAt(box: { left: number; top: number; right: number; bottom: number } | null, from: { x: number; y: number }, to: { x: number; y: number }): void {
  expect(box).not.toBeNull();
  for (const [actual, expected] of [[box!.left, from.x], [box!.top, from.y], [box!.right, to.x], [box!.bottom, to.y]] as const) expect(Math.abs(actual - expected)).toBeLessThanOrEqual(2);
}

/** The annotations of the case as the server holds them (a room join over a socket of its own). */
async function stored(): Promise<PublicAnnotation[]> {
  if (!socket) {
    const { client } = await t.account('clinician');
    socket = await connect(t.server.socket(client));
  }
  const join = await call<{ annotations: PublicAnnotation[] }>(socket, 'room:join', { caseId });
  if (!join.ok) throw new Error(`room:join refused: ${join.error.code}`);
  return join.data.annotations.filter((a) => !a.deleted);
}

function expectNear(actual: number[][], expected: number[][], tolerance: number): void {
  expect(actual).toHaveLength(expected.length);
  actual.forEach((p, i) => {
    expect(Math.abs(p[0]! - expected[i]![0]!)).toBeLessThanOrEqual(tolerance);
    expect(Math.abs(p[1]! - expected[i]![1]!)).toBeLessThanOrEqual(tolerance);
  });
}

beforeAll(async () => {
  t = await startHarness();
  const siteId = (await t.server.server.store.sites.list())[0]!.id;
  const series = ctSeries({ patient: { name: 'E2E^ANNOT', id: 'MRN-E2E-ANNOT', birthDate: '19580303', sex: 'F' }, slices: SLICES, size: SIZE });
  for (const s of series.slices) {
    const result = await t.server.server.app.radiology.intake(siteId, { kind: 'stow', ip: '127.0.0.1', userId: null, role: null, userAgent: 'e2e' }, s.file);
    caseId = result.caseId;
    materialId = result.materialId;
  }
  drawer = await t.newPage();
  viewer = await t.newPage();
  await t.signIn(drawer, 'clinician');
  await t.signIn(viewer, 'pathologist');
}, 120_000);

afterAll(async () => {
  socket?.disconnect();
  await t?.close();
});

test('a rectangle drawn on one slice is seen on that slice only, by everyone, and after a reload', async () => {
  await openStack(drawer);
  await openStack(viewer);
  // Both open at the middle slice; nobody presents, so each scrolls on their own.
  expect(await sliceOf(drawer)).toBe(4);
  expect(await sliceOf(viewer)).toBe(4);

  await goToSlice(drawer, SLICE);
  await drawer.getByLabel('Label for new annotations').fill('Nodule');
  await drawer.getByRole('button', { name: 'Rectangle', exact: true }).click();

  // With a drawing tool, a right-button drag over the image does not change the window.
  const windowCenter = await drawer.locator('.stack-viewer').getAttribute('data-window-center');
  const middle = await imagePoint(drawer, 64, 64);
  await drawer.mouse.move(middle.x, middle.y);
  await drawer.mouse.down({ button: 'right' });
  await drawer.mouse.move(middle.x + 40, middle.y + 60, { steps: 5 });
  await drawer.mouse.up({ button: 'right' });
  expect(await drawer.locator('.stack-viewer').getAttribute('data-window-center')).toBe(windowCenter);
  expect(await shapesOn(drawer).count()).toBe(0);

  // Around the disc of slice 7 (radius 22 px at the centre of 128 × 128): image pixels 40..88.
  const from = await imagePoint(drawer, 40, 40);
  const to = await imagePoint(drawer, 88, 88);
  await drawer.mouse.move(from.x, from.y);
  await drawer.mouse.down();
  await drawer.mouse.move(to.x, to.y, { steps: 8 });
  await drawer.mouse.up();
  const row = drawer.locator('.annotation-list .annotation-item', { hasText: 'Nodule' });
  await row.locator('.annotation-slice', { hasText: `Slice ${SLICE + 1}` }).waitFor();
  await shapesOn(drawer).waitFor();
  const annotationId = (await row.getAttribute('data-annotation-id'))!;

  // Stored with its slice, in the slice's pixels (the letterbox of the <img> accounted for).
  const [saved] = (await stored()).filter((a) => a.id === annotationId);
  expect(saved).toMatchObject({ materialId, slice: SLICE, kind: 'rectangle', properties: { label: 'Nodule' } });
  expectNear((saved!.geometry as { coordinates: number[][][] }).coordinates[0]!, [[40, 40], [88, 40], [88, 88], [40, 88], [40, 40]], 1.5);

  // The shape sits where it was drawn: its box on screen is the dragged box.
  expectAt(await shapeBox(drawer), from, to);

  // The other person is on slice 5: the list names the annotation and its slice, the image shows nothing.
  await viewer.locator('.annotation-list .annotation-item', { hasText: 'Nodule' }).locator('.annotation-slice', { hasText: `Slice ${SLICE + 1}` }).waitFor();
  expect(await sliceOf(viewer)).toBe(4);
  await frames(viewer);
  expect(await viewer.locator('.stack-viewer .annotation-layer g.annotation').count()).toBe(0);
  // On the slice it was drawn on, it shows at the same place of the image (their own screen).
  await goToSlice(viewer, SLICE);
  await shapesOn(viewer).waitFor();
  const seenFrom = await imagePoint(viewer, 40, 40);
  expectAt(await shapeBox(viewer), seenFrom, await imagePoint(viewer, 88, 88));
  // One slice away, it is gone again; the wheel scrolls slices.
  await viewer.mouse.move(seenFrom.x, seenFrom.y);
  await viewer.mouse.wheel(0, 120);
  await waitFor(async () => (await sliceOf(viewer)) === SLICE + 1, 'the wheel moved one slice down');
  await waitFor(async () => (await shapesOn(viewer).count()) === 0, 'the rectangle is not shown on slice 8');

  // After a reload the stack opens at the middle slice again: the annotation waits on its own.
  await drawer.reload();
  await openStack(drawer);
  expect(await sliceOf(drawer)).toBe(4);
  await drawer.locator('.annotation-list .annotation-item', { hasText: 'Nodule' }).waitFor();
  await frames(drawer);
  expect(await drawer.locator('.stack-viewer .annotation-layer g.annotation').count()).toBe(0);
  await goToSlice(drawer, SLICE);
  await shapesOn(drawer).waitFor();
  expectAt(await shapeBox(drawer), await imagePoint(drawer, 40, 40), await imagePoint(drawer, 88, 88));
  await drawer.screenshot({ path: RELOAD_SCREENSHOT });

  t.expectCleanPages();
});

test('the list takes you to the slice; the other person edits, moves and deletes the annotation', async () => {
  // The viewer is on slice 8: a click on the list entry goes to slice 7 and selects the shape.
  expect(await sliceOf(viewer)).toBe(SLICE + 1);
  await viewer.locator('.annotation-list').getByRole('button', { name: /Nodule/ }).click();
  await waitFor(async () => (await sliceOf(viewer)) === SLICE, 'the list entry took the viewer to slice 7');
  await viewer.locator('.stack-viewer .annotation-layer g.annotation.selected').waitFor();
  const editor = viewer.getByRole('form', { name: 'Selected annotation' });
  await editor.locator('.editor-title', { hasText: `Slice ${SLICE + 1}` }).waitFor();

  // A new label, seen by the person who drew it.
  await editor.getByLabel('Label').fill('Nodule, 2 cm');
  await editor.getByRole('button', { name: 'Save' }).click();
  await drawer.locator('.stack-viewer .annotation-layer text.annotation-label', { hasText: 'Nodule, 2 cm' }).waitFor();
  await viewer.locator('.annotation-editor .editor-meta', { hasText: 'Version 2 ' }).waitFor();
  await viewer.screenshot({ path: SCREENSHOT });

  // Dragging the selected shape (Pan tool) moves it within its slice; the slice stays.
  const inside = await imagePoint(viewer, 50, 50);
  const moved = await imagePoint(viewer, 60, 40);
  await viewer.mouse.move(inside.x, inside.y);
  await viewer.mouse.down();
  await viewer.mouse.move(moved.x, moved.y, { steps: 8 });
  await viewer.mouse.up();
  await waitFor(async () => {
    const [a] = await stored();
    return a && a.version === 3 ? a : null;
  }, 'the move was stored as version 3');
  const [after] = await stored();
  expect(after!.slice).toBe(SLICE);
  expectNear((after!.geometry as { coordinates: number[][][] }).coordinates[0]!, [[50, 30], [98, 30], [98, 78], [50, 78], [50, 30]], 2);
  await waitFor(async () => {
    const box = await shapeBox(drawer);
    const expected = await imagePoint(drawer, 50, 30);
    return box !== null && Math.abs(box.left - expected.x) <= 2 && Math.abs(box.top - expected.y) <= 2;
  }, 'the drawer sees the rectangle moved');

  // Deleted by the other person: gone from the drawer's image and list.
  await editor.getByRole('button', { name: 'Delete' }).click();
  await waitFor(async () => (await drawer.locator('.stack-viewer .annotation-layer g.annotation').count()) === 0, "the rectangle left the drawer's slice");
  await drawer.locator('.annotation-list .annotation-item').first().waitFor({ state: 'detached' });
  expect(await stored()).toEqual([]);

  t.expectCleanPages();
});

test('following the presenter shows the annotations of each slice they go to; a slide beside the stack keeps its own', async () => {
  await drawer.getByRole('button', { name: 'Present' }).click();
  await drawer.getByText('You are presenting: the room follows your view.').waitFor();
  await viewer.locator('.follow-bar', { hasText: 'Following Demo Clinician' }).waitFor();

  // A point on slice 3, placed by the presenter; the follower is taken to slice 3 and sees it.
  await goToSlice(drawer, 2);
  await waitFor(async () => (await sliceOf(viewer)) === 2, 'the follower followed to slice 3');
  await drawer.getByLabel('Label for new annotations').fill('Vessel');
  await drawer.getByRole('button', { name: 'Point', exact: true }).click();
  const spot = await imagePoint(drawer, 20, 100);
  await drawer.mouse.click(spot.x, spot.y);
  const pointOn = (page: Page) => page.locator('.stack-viewer .annotation-layer g.annotation-mark.kind-point', { hasText: 'Vessel' });
  await pointOn(viewer).waitFor();
  const [point] = (await stored()).filter((a) => a.properties.label === 'Vessel');
  expect(point).toMatchObject({ materialId, slice: 2, kind: 'point' });
  expectNear([(point!.geometry as { coordinates: number[] }).coordinates], [[20, 100]], 1.5);

  // The presenter moves on: the follower's slice 4 has nothing; back on slice 3 the point returns.
  await goToSlice(drawer, 3);
  await waitFor(async () => (await sliceOf(viewer)) === 3 && (await pointOn(viewer).count()) === 0, 'the follower is on slice 4, without the point');
  await goToSlice(drawer, 2);
  await waitFor(async () => (await sliceOf(viewer)) === 2, 'the follower is back on slice 3');
  await pointOn(viewer).waitFor();

  // A slide in the same case: the layer moves to the slide viewer and back, with the tool.
  const { client } = await t.account('clinician');
  const token = await client.csrf();
  const upload = await client.agent
    .post(`/api/cases/${caseId}/materials?name=slide.png`)
    .set('X-CSRF-Token', token)
    .set('Content-Type', 'application/octet-stream')
    .send(await slidePng(800, 600))
    .expect(202);
  const slideId = upload.body.material.id as string;
  // Conversion progress reaches the page through the room; the name becomes a button when ready.
  await drawer.locator(`li.material[data-material-id="${slideId}"][data-status="ready"]`).getByRole('button', { name: 'slide.png' }).click({ timeout: 60_000 });
  await drawer.locator(`.viewer[data-material-id="${slideId}"][data-opened="true"]`).waitFor();
  expect(await drawer.locator('.stack-viewer').isHidden()).toBe(true);
  // The Point tool is still chosen: a click on the slide places a point without a slice.
  await drawer.getByLabel('Label for new annotations').fill('Slide dot');
  const box = (await drawer.locator('.viewer').boundingBox())!;
  await drawer.mouse.click(box.x + box.width / 2, box.y + box.height / 2);
  await drawer.locator('.viewer .annotation-layer g.annotation-mark.kind-point', { hasText: 'Slide dot' }).waitFor();
  const [onSlide] = (await stored()).filter((a) => a.properties.label === 'Slide dot');
  expect(onSlide).toMatchObject({ materialId: slideId, slice: null });
  // The list is the slide's: its point, no slice named, nothing of the stack.
  const list = drawer.locator('.annotation-list');
  await list.locator('.annotation-item', { hasText: 'Slide dot' }).waitFor();
  expect(await list.locator('.annotation-item').count()).toBe(1);
  expect(await list.locator('.annotation-slice').count()).toBe(0);
  // The follower followed to the slide and sees the point there.
  await viewer.locator('.viewer .annotation-layer g.annotation-mark.kind-point', { hasText: 'Slide dot' }).waitFor();

  // Back to the stack: it opens at the middle slice (5) without the point, which waits on slice 3.
  await drawer.locator(`li.material[data-material-id="${materialId}"]`).getByRole('button').click();
  await drawer.locator(`.stack-viewer:not([hidden])[data-material-id="${materialId}"]`).waitFor();
  await list.locator('.annotation-item', { hasText: 'Vessel' }).locator('.annotation-slice', { hasText: 'Slice 3' }).waitFor();
  expect(await list.locator('.annotation-item').count()).toBe(1);
  await frames(drawer);
  expect(await sliceOf(drawer)).toBe(4);
  expect(await drawer.locator('.stack-viewer .annotation-layer .annotation-mark').count()).toBe(0);
  await list.getByRole('button', { name: /Vessel/ }).click();
  await waitFor(async () => (await sliceOf(drawer)) === 2, 'the list entry took the presenter to slice 3');
  await pointOn(drawer).waitFor();
  await waitFor(async () => (await sliceOf(viewer)) === 2, 'the follower came along to slice 3');
  await pointOn(viewer).waitFor();

  t.expectCleanPages();
});
