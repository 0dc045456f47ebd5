// End-to-end: the annotation tools of the browser client, in Debian's Chromium against a real
// node. Two people in two browser contexts on one converted slide: every drawing tool, what the
// other person sees, editing label, colour and comment, moving a shape, the history with restore,
// a version conflict rebased on the newer version, deletion from the keyboard, and GeoJSON export
// and import. Pages are watched for CSP violations and script errors. No sleeps.
import fs from 'node:fs';
import type { Locator, Page } from 'playwright-core';
import { waitFor } from '../helpers/server';
import { caseWithSlide, startHarness, type Harness } from './clientHarness';

jest.setTimeout(120_000);

const SCREENSHOT = '/tmp/client-annotations.png';

let t: Harness;
let caseId: string;
let materialId: string;
let clinician: Page;
let pathologist: Page;
/** While true, the pathologist's page does not receive other people's annotation changes. */
let dropOps = false;

async function openCase(page: Page): Promise<void> {
  await page.goto(`/cases/${caseId}`);
  await page.getByRole('heading', { name: 'Annotation tools e2e' }).waitFor();
  await page.locator('.viewer[data-opened="true"]').waitFor();
  await waitFor(async () => Number(await page.locator('.viewer').getAttribute('data-tiles-loaded')) > 0, 'the slide drew tiles');
  // The room is joined: the person sees themselves in it.
  await page.locator('.presence-item').first().waitFor();
}

/** A point of the viewer, as fractions of its width and height, in page pixels. */
async function at(page: Page, fx: number, fy: number): Promise<{ x: number; y: number }> {
  const box = (await page.locator('.viewer').boundingBox())!;
  return { x: box.x + box.width * fx, y: box.y + box.height * fy };
}

async function drag(page: Page, from: { x: number; y: number }, to: { x: number; y: number }, steps = 8): Promise<void> {
  await page.mouse.move(from.x, from.y);
  await page.mouse.down();
  await page.mouse.move(to.x, to.y, { steps });
  await page.mouse.up();
}

function shapes(page: Page, kind: string): Locator {
  return page.locator(`.annotation-layer g.annotation.kind-${kind}`);
}

function row(page: Page, name: string | RegExp): Locator {
  return page.locator('.annotation-list').getByRole('button', { name });
}

/** Selects an annotation from the list (a second click on a selected row would deselect it). */
async function select(page: Page, name: string | RegExp): Promise<void> {
  const button = row(page, name);
  if ((await button.getAttribute('aria-pressed')) !== 'true') await button.click();
  await page.getByRole('form', { name: 'Selected annotation' }).waitFor();
}

function version(page: Page, n: number): Locator {
  return page.locator('.annotation-editor .editor-meta', { hasText: `Version ${n} ` });
}

/** A label on the slide (labels keep their size on screen, so they are drawn apart from the shapes). */
function labelOf(page: Page, kind: string, label: string | RegExp): Locator {
  return page.locator(`.annotation-layer .annotation-mark.kind-${kind} text.annotation-label`, { hasText: label });
}

beforeAll(async () => {
  t = await startHarness();
  const { client } = await t.account('clinician');
  ({ caseId, materialId } = await caseWithSlide(client, 'Annotation tools e2e'));
  clinician = await t.newPage();
  pathologist = await t.newPage();
  // The pathologist's socket goes through a relay that can hold back annotation:op broadcasts,
  // which makes the page's copy stale on purpose (a version conflict without a race).
  await pathologist.routeWebSocket(/\/socket\.io\//, (ws) => {
    const server = ws.connectToServer();
    ws.onMessage((m) => server.send(m));
    server.onMessage((m) => {
      if (dropOps && typeof m === 'string' && m.startsWith('42["annotation:op"')) return;
      ws.send(m);
    });
  });
  await t.signIn(clinician, 'clinician');
  await t.signIn(pathologist, 'pathologist');
  await openCase(clinician);
  await openCase(pathologist);
});

afterAll(async () => {
  await t?.close();
});

afterEach(() => t.expectCleanPages());

describe('annotation tools', () => {
  it('draws a polygon corner by corner that the other user sees with its label', async () => {
    await clinician.getByRole('textbox', { name: 'Label for new annotations' }).fill('Lesion');
    await clinician.getByRole('button', { name: 'Polygon', exact: true }).click();
    await clinician.getByText('Click each corner.').waitFor();
    for (const [fx, fy] of [
      [0.4, 0.35],
      [0.6, 0.33],
      [0.63, 0.55],
      [0.42, 0.6],
    ] as const) {
      const p = await at(clinician, fx, fy);
      await clinician.mouse.click(p.x, p.y);
    }
    // Not yet saved: the draft is on screen only.
    expect(await shapes(clinician, 'polygon').count()).toBe(0);
    await clinician.keyboard.press('Enter');

    const seen = shapes(pathologist, 'polygon');
    await seen.filter({ hasText: 'Lesion' }).waitFor();
    // Four corners and the closing move back to the first: M a L b L c L d L a Z.
    const d = (await seen.locator('path').getAttribute('d'))!;
    expect(d.match(/[ML]/g)!.length).toBe(5);
    await row(pathologist, /Lesion.*Polygon/).waitFor();

    // Stored, not only broadcast: it is still there after the page is loaded again.
    await openCase(pathologist);
    await shapes(pathologist, 'polygon').filter({ hasText: 'Lesion' }).waitFor();
    expect(await shapes(pathologist, 'polygon').locator('path').getAttribute('d')).toBe(d);
  });

  it('draws a line, a rectangle, a freehand outline, a point and a text label', async () => {
    await clinician.getByRole('textbox', { name: 'Label for new annotations' }).fill('');
    await clinician.getByRole('button', { name: 'Line', exact: true }).click();
    await drag(clinician, await at(clinician, 0.2, 0.7), await at(clinician, 0.35, 0.8));
    await shapes(clinician, 'line').waitFor();

    await clinician.getByRole('button', { name: 'Rectangle', exact: true }).click();
    await drag(clinician, await at(clinician, 0.7, 0.2), await at(clinician, 0.8, 0.3));
    await shapes(clinician, 'rectangle').waitFor();

    await clinician.getByRole('button', { name: 'Freehand', exact: true }).click();
    const c = await at(clinician, 0.25, 0.25);
    await clinician.mouse.move(c.x + 40, c.y);
    await clinician.mouse.down();
    for (let i = 1; i <= 24; i++) {
      const angle = (i / 24) * 2 * Math.PI;
      await clinician.mouse.move(c.x + 40 * Math.cos(angle), c.y + 30 * Math.sin(angle));
    }
    await clinician.mouse.up();
    await shapes(clinician, 'freehand').waitFor();

    await clinician.getByRole('button', { name: 'Point', exact: true }).click();
    const p = await at(clinician, 0.8, 0.7);
    await clinician.mouse.click(p.x, p.y);
    await shapes(clinician, 'point').waitFor();

    await clinician.getByRole('button', { name: 'Text', exact: true }).click();
    const q = await at(clinician, 0.55, 0.8);
    await clinician.mouse.click(q.x, q.y);
    const field = clinician.getByRole('textbox', { name: 'Text label' });
    await field.fill('Mitosis');
    await field.press('Enter');
    await shapes(clinician, 'point').filter({ hasText: 'Mitosis' }).waitFor();
    await clinician.keyboard.press('Escape');
    await clinician.locator('.annotation-layer[data-tool="pan"]').waitFor();

    // The other person sees every shape; a closed freehand stroke is an outline (a polygon path).
    await shapes(pathologist, 'point').filter({ hasText: 'Mitosis' }).waitFor();
    for (const kind of ['line', 'rectangle', 'freehand']) await shapes(pathologist, kind).waitFor();
    expect(await shapes(pathologist, 'point').count()).toBe(2);
    expect(await shapes(pathologist, 'freehand').locator('path').count()).toBe(1);
    expect(await pathologist.locator('.annotation-list .annotation-item').count()).toBe(6);
  });

  it('edits label, colour and comment; the history lists each version and restores one', async () => {
    await select(pathologist, /Lesion/);
    const editor = pathologist.getByRole('form', { name: 'Selected annotation' });
    await editor.getByLabel('Label').fill('Tumour');
    await editor.getByLabel('Colour').fill('#c62828');
    await editor.getByLabel('Comment').fill('Check the upper margin.');
    await editor.getByRole('button', { name: 'Save' }).click();
    await version(pathologist, 2).waitFor();

    const polygon = shapes(clinician, 'polygon');
    await labelOf(clinician, 'polygon', 'Tumour ✎').waitFor();
    expect(await polygon.locator('path').getAttribute('stroke')).toBe('#c62828');
    // The comment shows as the shape's tooltip and in the editor.
    expect(await polygon.locator('title').textContent()).toBe('Tumour: Check the upper margin.');
    await select(clinician, /Tumour/);
    const clinicianEditor = clinician.getByRole('form', { name: 'Selected annotation' });
    expect(await clinicianEditor.getByLabel('Comment').inputValue()).toBe('Check the upper margin.');
    await clinicianEditor.getByText('last changed by Demo Pathologist').waitFor();

    await clinicianEditor.getByRole('button', { name: 'History' }).click();
    const history = clinicianEditor.locator('.history-item');
    await history.nth(1).waitFor();
    expect(await history.allTextContents()).toEqual([
      expect.stringMatching(/^Version 1: drawn\s*you,/),
      expect.stringMatching(/^Version 2: label “Tumour”, colour #c62828, comment changed\s*Demo Pathologist,/),
    ]);
    await clinicianEditor.getByRole('button', { name: 'Restore version 1' }).click();
    await labelOf(pathologist, 'polygon', /^Lesion$/).waitFor();
    await history.nth(2).waitFor();
    expect(await history.nth(2).textContent()).toMatch(/^Version 3: label “Lesion”, colour #1e88e5, comment removed/);
  });

  it('keeps what is being typed in the editor while another person changes the same annotation', async () => {
    await select(clinician, /Freehand/);
    const mine = clinician.getByRole('form', { name: 'Selected annotation' });
    await mine.getByLabel('Comment').fill('Typed, not saved yet');
    await select(pathologist, /Freehand/);
    const theirs = pathologist.getByRole('form', { name: 'Selected annotation' });
    await theirs.getByLabel('Label').fill('Outline');
    await theirs.getByRole('button', { name: 'Save' }).click();
    // The newer version shows in the field not being typed in; the comment keeps the typing.
    await version(clinician, 2).waitFor();
    expect(await mine.getByLabel('Label').inputValue()).toBe('Outline');
    expect(await mine.getByLabel('Comment').inputValue()).toBe('Typed, not saved yet');
    await mine.getByRole('button', { name: 'Save' }).click();
    await version(clinician, 3).waitFor();
    await row(pathologist, /Outline/).locator('.annotation-has-comment').waitFor();
  });

  it('moves the selected shape by dragging it; the other user sees it move', async () => {
    const before = (await shapes(pathologist, 'polygon').locator('path').getAttribute('d'))!;
    await clinician.getByRole('button', { name: 'Pan', exact: true }).click();
    await select(clinician, /Lesion/);
    await clinician.locator('.annotation-handle').first().waitFor();
    expect(await clinician.locator('.annotation-handle').count()).toBe(4);
    const inside = await at(clinician, 0.52, 0.46);
    await drag(clinician, inside, { x: inside.x + 60, y: inside.y + 40 });
    await waitFor(async () => (await shapes(pathologist, 'polygon').locator('path').getAttribute('d')) !== before, 'the polygon moved on the other screen');
    await version(clinician, 4).waitFor();

    // One corner dragged: the shape keeps its other corners.
    const handle = (await waitFor(() => clinician.locator('.annotation-handle').nth(0).boundingBox(), 'a corner handle on screen'))!;
    await drag(clinician, { x: handle.x + 5, y: handle.y + 5 }, { x: handle.x + 45, y: handle.y + 35 });
    await version(clinician, 5).waitFor();

    // From the keyboard: arrow keys on the selected row move the shape, sent as one change.
    const moved = (await shapes(pathologist, 'polygon').locator('path').getAttribute('d'))!;
    const before30 = (await shapes(pathologist, 'polygon').locator('path').boundingBox())!.x;
    await row(clinician, /Lesion/).focus();
    for (let i = 0; i < 3; i++) await clinician.keyboard.press('ArrowRight');
    await version(clinician, 6).waitFor();
    await waitFor(async () => (await shapes(pathologist, 'polygon').locator('path').getAttribute('d')) !== moved, 'the nudged polygon moved on the other screen');
    expect(await version(clinician, 7).count()).toBe(0);
    // 30 screen pixels to the right: the other screen shows the same view size, so about 30 there too.
    const left = async () => (await shapes(pathologist, 'polygon').locator('path').boundingBox())!.x;
    expect(Math.abs((await left()) - before30 - 30)).toBeLessThan(2);

    // Another person's change redraws the list under the keyboard user: focus stays on their row.
    await select(pathologist, /Rectangle/);
    const other = pathologist.getByRole('form', { name: 'Selected annotation' });
    await other.getByLabel('Comment').fill('Second look.');
    await other.getByRole('button', { name: 'Save' }).click();
    await row(clinician, /Rectangle/).locator('.annotation-has-comment').waitFor();
    expect(await row(clinician, /Lesion/).evaluate((button) => button === document.activeElement)).toBe(true);
  });

  it('rebases a change made on a stale version (VERSION_CONFLICT) instead of losing either', async () => {
    // The pathologist stops hearing about changes; the clinician renames the line meanwhile.
    dropOps = true;
    await select(clinician, /Line/);
    const editor = clinician.getByRole('form', { name: 'Selected annotation' });
    await editor.getByLabel('Label').fill('Edge');
    await editor.getByRole('button', { name: 'Save' }).click();
    await version(clinician, 2).waitFor();
    await select(pathologist, /no label.*Line/);
    const stale = pathologist.getByRole('form', { name: 'Selected annotation' });
    await version(pathologist, 1).waitFor();
    dropOps = false;

    // A colour change made on version 1: refused as a conflict, shown, and sent again on version 2.
    await stale.getByLabel('Colour').fill('#2e7d32');
    await stale.getByRole('button', { name: 'Save' }).click();
    await pathologist.getByText('Someone changed this annotation first; your change was applied to their version.').waitFor();
    await version(pathologist, 3).waitFor();
    expect(await stale.getByLabel('Label').inputValue()).toBe('Edge');
    const line = shapes(clinician, 'line').filter({ hasText: 'Edge' });
    await waitFor(async () => (await line.locator('polyline').last().getAttribute('stroke')) === '#2e7d32', 'both changes kept: the label and the colour');
  });

  it('deletes the selected annotation from the keyboard', async () => {
    await row(pathologist, /Mitosis/).focus();
    await pathologist.keyboard.press('Enter');
    await pathologist.getByRole('form', { name: 'Selected annotation' }).waitFor();
    await row(pathologist, /Mitosis/).focus();
    await pathologist.keyboard.press('Delete');
    await labelOf(clinician, 'point', 'Mitosis').waitFor({ state: 'detached' });
    expect(await clinician.locator('.annotation-list .annotation-item').count()).toBe(5);
  });

  it('exports the annotations as GeoJSON and imports a file', async () => {
    const download = clinician.waitForEvent('download');
    await clinician.getByRole('button', { name: 'Export GeoJSON' }).click();
    const file = await download;
    expect(file.suggestedFilename()).toBe(`annotations-${materialId}.geojson`);
    const collection = JSON.parse(fs.readFileSync((await file.path())!, 'utf8'));
    expect(collection.type).toBe('FeatureCollection');
    expect(collection.features.map((f: { properties: { kind: string } }) => f.properties.kind).sort()).toEqual(['freehand', 'line', 'point', 'polygon', 'rectangle']);
    await clinician.getByText('Exported 5 annotations.').waitFor();

    // The exported polygon, renamed, imported back: both people see the copy.
    const polygon = collection.features.find((f: { properties: { kind: string } }) => f.properties.kind === 'polygon');
    // QuPath names an object by its classification.
    polygon.properties.classification.name = 'Imported lesion';
    const upload = { name: 'qupath.geojson', mimeType: 'application/geo+json', buffer: Buffer.from(JSON.stringify({ type: 'FeatureCollection', features: [polygon] })) };
    await clinician.locator('.geojson-actions input[type="file"]').setInputFiles(upload);
    await clinician.getByText('Imported 1 annotation from qupath.geojson.').waitFor();
    await shapes(pathologist, 'polygon').filter({ hasText: 'Imported lesion' }).waitFor();
    await row(clinician, /Imported lesion/).waitFor();

    // A file that is not GeoJSON: the server's reason, nothing imported.
    await clinician.locator('.geojson-actions input[type="file"]').setInputFiles({ name: 'notes.json', mimeType: 'application/json', buffer: Buffer.from('{"type":"Feature"}') });
    await clinician.locator('.notice', { hasText: 'Import failed:' }).waitFor();
    expect(await clinician.locator('.annotation-list .annotation-item').count()).toBe(6);

    await clinician.getByRole('button', { name: 'Pan', exact: true }).click();
    await select(clinician, /Imported lesion/);
    await clinician.evaluate(() => window.scrollTo(0, 0));
    await clinician.screenshot({ path: SCREENSHOT });
  });

  it('takes a QuPath file of 1,000 cell outlines: the other user sees all of them', async () => {
    const features = Array.from({ length: 1000 }, (_, i) => {
      const [cx, cy] = [40 + (i % 40) * 38, 40 + Math.floor(i / 40) * 45];
      const ring = Array.from({ length: 12 }, (_, k) => [Math.round(cx + 12 * Math.cos((k / 12) * 2 * Math.PI)), Math.round(cy + 12 * Math.sin((k / 12) * 2 * Math.PI))]);
      return { type: 'Feature', geometry: { type: 'Polygon', coordinates: [[...ring, ring[0]]] }, properties: { objectType: 'detection', classification: { name: 'Tumor', color: [200, 0, 0] } } };
    });
    await clinician.locator('.geojson-actions input[type="file"]').setInputFiles({ name: 'cells.geojson', mimeType: 'application/geo+json', buffer: Buffer.from(JSON.stringify(features)) });
    // 1,000 durable writes (fsync on) before the answer: on a busy machine that takes longer than a click.
    await clinician.getByText('Imported 1000 annotations from cells.geojson.').waitFor({ timeout: 60_000 });
    // Every op of the import reaches the other screen; the list and the slide show them all.
    await waitFor(async () => (await pathologist.locator('.annotation-list .annotation-item').count()) === 1006, 'the other user lists all 1,006 annotations', 60_000);
    expect(await shapes(pathologist, 'polygon').count()).toBe(1002);
    expect(await pathologist.locator('.annotation-layer path[stroke="#c80000"]').count()).toBe(1000);
  });
});
