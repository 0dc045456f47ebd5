// End-to-end: a CT series received by the radiology intake opens in the case room as a stack in
// Debian's Chromium; the presenter scrolls slices and changes window/level, and the follower's
// stack viewer follows (same slice, same window, image rendered by the server for that window).
// Every page is watched for CSP violations and script errors. No sleeps: auto-waiting locators
// and polling with a reason.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { CLIENT_DIST } from '../../src/http/static';
import { ctSeries, registerPatientSecrets } from '../helpers/dicom';
import { startTestServer, waitFor, type TestServer } from '../helpers/server';

jest.setTimeout(120_000);

const CHROMIUM = '/usr/bin/chromium';
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'];
registerPatientSecrets('E2E^STACK', 'STACK E2E', 'MRN-E2E-STACK');

let server: TestServer;
let browser: Browser;
let caseId: string;
const contexts: BrowserContext[] = [];
const problems = new Map<Page, string[]>();

async function newPage(): Promise<Page> {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, baseURL: server.url, viewport: { width: 1440, height: 900 } });
  contexts.push(context);
  context.setDefaultTimeout(20_000);
  await context.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || 'inline'}`));
  });
  const page = await context.newPage();
  const list: string[] = [];
  problems.set(page, list);
  page.on('console', (msg) => {
    // The first GET /api/me before sign-in answers 401, which Chromium logs.
    if (msg.type() === 'error' && !/status of 401/.test(msg.text())) list.push(msg.text());
  });
  page.on('pageerror', (err) => list.push(String(err)));
  return page;
}

async function signIn(page: Page, role: 'clinician' | 'pathologist'): Promise<void> {
  const account = server.server.demoAccounts!.find((a) => a.role === role)!;
  await page.goto('/');
  await page.getByLabel('E-mail').fill(account.email);
  await page.getByLabel('Password').fill(account.oneTimePassword);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Choose your password' }).waitFor();
  const newPassword = `e2e-stack-horse-battery-${Math.random().toString(36).slice(2)}`;
  await page.getByLabel('New password', { exact: true }).fill(newPassword);
  await page.getByLabel('Repeat the new password').fill(newPassword);
  await page.getByRole('button', { name: 'Change password' }).click();
  account.oneTimePassword = newPassword;
  await page.getByRole('heading', { name: 'Cases' }).waitFor();
}

async function stackState(page: Page): Promise<{ slice: number; center: number; width: number; loaded: boolean; src: string }> {
  const viewer = page.locator('.stack-viewer');
  return {
    slice: Number(await viewer.getAttribute('data-slice')),
    center: Number(await viewer.getAttribute('data-window-center')),
    width: Number(await viewer.getAttribute('data-window-width')),
    loaded: (await viewer.getAttribute('data-loaded')) === 'true',
    src: (await page.locator('.stack-image').getAttribute('src')) ?? '',
  };
}

/** Where the slice's pixels are on the page: the <img> box less its letterbox bands (object-fit: contain). */
async function pictureBox(page: Page): Promise<{ x: number; y: number; width: number; height: number }> {
  return page.locator('.stack-image').evaluate((img: HTMLImageElement) => {
    const b = img.getBoundingClientRect();
    const scale = Math.min(b.width / img.naturalWidth, b.height / img.naturalHeight);
    const [width, height] = [img.naturalWidth * scale, img.naturalHeight * scale];
    return { x: b.left + (b.width - width) / 2, y: b.top + (b.height - height) / 2, width, height };
  });
}

beforeAll(async () => {
  if (!fs.existsSync(path.join(CLIENT_DIST, 'index.html'))) throw new Error('client/dist is missing: run `node scripts/setup.mjs --test` (npm test does it)');
  server = await startTestServer();
  const siteId = (await server.server.store.sites.list())[0]!.id;
  // The study arrives as from a PACS (the same intake as DIMSE and STOW-RS).
  const series = ctSeries({ patient: { name: 'E2E^STACK', id: 'MRN-E2E-STACK', birthDate: '19600101', sex: 'M' }, slices: 9, size: 128 });
  for (const s of series.slices) {
    const result = await server.server.app.radiology.intake(siteId, { kind: 'stow', ip: '127.0.0.1', userId: null, role: null, userAgent: 'e2e' }, s.file);
    caseId = result.caseId;
  }
  browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS });
});

afterAll(async () => {
  for (const context of contexts) await context.close().catch(() => undefined);
  await browser?.close();
  await server?.close();
});

test('the presenter scrolls slices and changes window/level; the follower follows', async () => {
  const presenter = await newPage();
  const follower = await newPage();
  await signIn(presenter, 'clinician');
  await signIn(follower, 'pathologist');
  await presenter.goto(`/cases/${caseId}`);
  await follower.goto(`/cases/${caseId}`);

  // The series opens as a stack, in the middle slice, with the header's window.
  for (const page of [presenter, follower]) {
    await page.locator('.stack-viewer:not([hidden])').waitFor();
    await waitFor(async () => (await stackState(page)).loaded, 'the first slice image loaded');
    expect(await stackState(page)).toMatchObject({ slice: 4, center: 40, width: 400 });
  }

  await presenter.getByRole('button', { name: 'Present' }).click();
  await presenter.getByText('You are presenting: the room follows your view.').waitFor();
  await follower.locator('.follow-bar', { hasText: 'Following Demo Clinician' }).waitFor();

  // Scroll two slices down with the wheel over the image, then one with the keyboard.
  const image = presenter.locator('.stack-image');
  await image.hover();
  await presenter.mouse.wheel(0, 120);
  await waitFor(async () => (await stackState(presenter)).slice === 5, 'the wheel moved the presenter one slice');
  await presenter.mouse.wheel(0, 120);
  await waitFor(async () => (await stackState(presenter)).slice === 6, 'the wheel moved the presenter another slice');
  await presenter.locator('.stack-viewer').press('ArrowDown');
  await waitFor(async () => (await stackState(presenter)).slice === 7, 'the arrow key moved the presenter a slice');
  await waitFor(async () => (await stackState(follower)).slice === 7, "the follower's stack moved to slice 8 of 9", 20_000);

  // Window/level: the bone preset, then a typed centre.
  await presenter.getByRole('button', { name: 'Bone' }).click();
  await waitFor(async () => {
    const s = await stackState(follower);
    return s.center === 400 && s.width === 1800 && s.src.includes('wc=400&ww=1800') && s.loaded;
  }, 'the follower shows the bone window, rendered for it');
  await presenter.getByLabel('Window centre').fill('150');
  await presenter.getByLabel('Window centre').press('Enter');
  await waitFor(async () => (await stackState(follower)).center === 150, 'the follower took the typed window centre');

  // Both show the same rendered slice: same URL, image decoded.
  const [p, f] = [await stackState(presenter), await stackState(follower)];
  expect(f.src).toBe(p.src);
  expect(await follower.locator('.stack-image').evaluate((img: HTMLImageElement) => img.naturalWidth)).toBe(128);

  // The slide's zoom, fit and rotate are not offered on a stack (it has its own controls).
  for (const page of [presenter, follower]) expect(await page.getByRole('button', { name: 'Zoom in' }).isVisible()).toBe(false);

  // The presenter's laser pointer shows on the follower's stack at the same place of the slice.
  const from = await pictureBox(presenter);
  await presenter.mouse.move(from.x + from.width * 0.25, from.y + from.height * 0.75);
  const to = await pictureBox(follower);
  const dot = follower.locator('.stack-overlays .pointer-dot');
  await waitFor(async () => {
    const b = (await dot.count()) === 1 && (await dot.isVisible()) ? await dot.boundingBox() : null;
    return b !== null && Math.abs(b.x + b.width / 2 - (to.x + to.width * 0.25)) < to.width * 0.03 && Math.abs(b.y + b.height / 2 - (to.y + to.height * 0.75)) < to.height * 0.03;
  }, "the presenter's pointer is shown a quarter across and three quarters down the follower's slice");

  // The follower scrolls on their own: follow mode stops, and the presenter's moves no longer apply.
  await follower.locator('.stack-viewer').press('ArrowUp');
  await follower.locator('.follow-bar', { hasText: 'Demo Clinician is presenting' }).waitFor();
  await presenter.locator('.stack-viewer').press('ArrowUp');
  await presenter.locator('.stack-viewer').press('ArrowUp');
  await waitFor(async () => (await stackState(presenter)).slice === 5, 'the presenter moved up two slices');
  expect((await stackState(follower)).slice).toBe(6);

  for (const [page, list] of problems) expect({ page: page.url(), problems: list }).toEqual({ page: page.url(), problems: [] });
});

test('the presenter uploads a zip of a study in the browser; it becomes a second stack that opens', async () => {
  const presenter = [...problems.keys()][0]!;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'e2e-zip-'));
  const series = ctSeries({ patient: { name: 'E2E^STACK', id: 'MRN-E2E-STACK', birthDate: '19600101', sex: 'M' }, slices: 3, size: 64 });
  fs.mkdirSync(path.join(dir, 'study'));
  series.slices.forEach((s, i) => fs.writeFileSync(path.join(dir, 'study', `IM${i}`), s.file));
  execFileSync('python3', ['-c', `import shutil; shutil.make_archive('${path.join(dir, 'upload')}', 'zip', '${path.join(dir, 'study')}')`]);
  await presenter.locator('#material-file').setInputFiles(path.join(dir, 'upload.zip'));
  await waitFor(async () => (await presenter.locator('.material-list li.material').count()) === 2, 'the uploaded study appears as a second material');
  await presenter.locator('.material-list li.material').nth(1).getByRole('button').click();
  await waitFor(async () => (await presenter.locator('.stack-viewer').getAttribute('data-material-id')) === (await presenter.locator('.material-list li.material').nth(1).getAttribute('data-material-id')), 'the new stack is open');
  await presenter.locator('.stack-slice-label', { hasText: 'Slice 2 / 3' }).waitFor();
  for (const [page, list] of problems) expect({ page: page.url(), problems: list }).toEqual({ page: page.url(), problems: [] });
});
