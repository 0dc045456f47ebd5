// End-to-end: the built browser client (client/dist) served by a real node, driven in Debian's
// Chromium through playwright-core. Two people in two browser contexts: a clinician who signs in
// with a one-time password, changes it, creates a case, uploads an image and presents; a
// pathologist who joins, follows, sees the pointer, chat and annotations. Every page is watched for
// CSP violations and script errors. No sleeps: Playwright's auto-waiting locators, and polling
// with a reason where a value has to converge.
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import * as otp from 'otplib';
import { chromium, type Browser, type BrowserContext, type Locator, type Page } from 'playwright-core';
import { CLIENT_DIST } from '../../src/http/static';
import { startTestServer, waitFor, type TestServer } from '../helpers/server';

jest.setTimeout(120_000);

const CHROMIUM = '/usr/bin/chromium';
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream'];
const SCREENSHOTS = { signIn: '/tmp/client-sign-in.png', room: '/tmp/client-case-room.png', follower: '/tmp/client-case-room-follower.png' };

/** Problems a page reported: CSP violations, uncaught errors, console errors. */
interface Watch {
  csp: string[];
  errors: string[];
}

let server: TestServer;
let browser: Browser;
const contexts: BrowserContext[] = [];
const watches = new Map<Page, Watch>();

async function newPage(): Promise<Page> {
  const context = await browser.newContext({ ignoreHTTPSErrors: true, baseURL: server.url, viewport: { width: 1440, height: 900 } });
  contexts.push(context);
  context.setDefaultTimeout(15_000);
  // Reported by the page itself (not only the console), so a violation cannot go unnoticed.
  await context.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || 'inline'}`));
  });
  const page = await context.newPage();
  const watch: Watch = { csp: [], errors: [] };
  watches.set(page, watch);
  page.on('console', (msg) => {
    const text = msg.text();
    if (/Content Security Policy|CSP violation/i.test(text)) watch.csp.push(text);
    // A 401 on the first GET /api/me (not signed in yet) is the expected answer, logged by Chromium.
    else if (msg.type() === 'error' && !/status of 401/.test(text)) watch.errors.push(text);
  });
  page.on('pageerror', (err) => watch.errors.push(String(err)));
  return page;
}

/** A slide-like test image: pink tissue blobs on white, big enough for several pyramid levels. */
async function slidePng(): Promise<Buffer> {
  const blobs: string[] = [];
  for (let i = 0; i < 60; i++) {
    const x = (i * 397) % 2400;
    const y = (i * 233) % 1800;
    blobs.push(`<circle cx="${x}" cy="${y}" r="${40 + ((i * 17) % 90)}" fill="hsl(${320 + (i % 30)}, 55%, ${55 + (i % 20)}%)"/>`);
  }
  const svgImage = `<svg xmlns="http://www.w3.org/2000/svg" width="2400" height="1800"><rect width="100%" height="100%" fill="#fbf7f8"/>${blobs.join('')}</svg>`;
  return sharp(Buffer.from(svgImage)).png().toBuffer();
}

async function signInChangingPassword(page: Page, role: 'clinician' | 'pathologist', path = '/'): Promise<string> {
  const account = server.server.demoAccounts!.find((a) => a.role === role)!;
  await page.goto(path);
  await page.getByLabel('E-mail').fill(account.email);
  await page.getByLabel('Password').fill(account.oneTimePassword);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Choose your password' }).waitFor();
  // Not containing the e-mail's local part (the role): the site policy refuses that.
  const newPassword = `e2e-correct-horse-battery-${Math.random().toString(36).slice(2)}`;
  await page.getByLabel('New password', { exact: true }).fill(newPassword);
  await page.getByLabel('Repeat the new password').fill(newPassword);
  await page.getByRole('button', { name: 'Change password' }).click();
  account.oneTimePassword = newPassword;
  return newPassword;
}

async function numberAttr(locator: Locator, name: string): Promise<number> {
  return Number((await locator.getAttribute(name)) ?? NaN);
}

/** The viewer's current (drawn) center and zoom, from its data-* attributes. */
async function viewOf(page: Page): Promise<{ x: number; y: number; zoom: number }> {
  const v = page.locator('.viewer');
  return { x: await numberAttr(v, 'data-center-x'), y: await numberAttr(v, 'data-center-y'), zoom: await numberAttr(v, 'data-zoom') };
}

/** The view once it stops moving: the same in three readings a frame or more apart. */
async function settledView(page: Page): Promise<{ x: number; y: number; zoom: number }> {
  const readings: string[] = [];
  const json = await waitFor(
    async () => {
      readings.push(JSON.stringify(await viewOf(page)));
      const last = readings.slice(-3);
      return last.length === 3 && last.every((r) => r === last[0]) ? last[0] : null;
    },
    'the view stopped moving',
  );
  return JSON.parse(json!) as { x: number; y: number; zoom: number };
}

/** Both viewers show the same view (within what differing animation frames allow). */
async function sameView(a: Page, b: Page): Promise<boolean> {
  const [va, vb] = [await viewOf(a), await viewOf(b)];
  return Math.abs(va.x - vb.x) < 0.005 && Math.abs(va.y - vb.y) < 0.005 && Math.abs(va.zoom - vb.zoom) / vb.zoom < 0.01;
}

async function codeAt(secret: string, date: Date): Promise<string> {
  return otp.generate({ secret, epoch: Math.floor(date.getTime() / 1000) });
}

async function textOf(locator: Locator): Promise<string> {
  return (await locator.textContent()) ?? '';
}

beforeAll(async () => {
  if (!fs.existsSync(path.join(CLIENT_DIST, 'index.html'))) throw new Error('client/dist is missing: run `node scripts/setup.mjs --test` (npm test does it)');
  server = await startTestServer();
  browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS });
});

afterAll(async () => {
  for (const context of contexts) await context.close().catch(() => undefined);
  await browser?.close();
  await server?.close();
});

describe('browser client', () => {
  let clinician: Page;
  let pathologist: Page;
  let caseUrl: string;

  afterEach(() => {
    // Every page must run under the CSP without a single violation or script error.
    for (const [page, watch] of watches) {
      expect({ page: page.url(), csp: watch.csp, errors: watch.errors }).toEqual({ page: page.url(), csp: [], errors: [] });
    }
  });

  it('is served with the CSP, cached correctly, and falls back to index.html for page paths only', async () => {
    const page = await server.client().get('/cases/some-page').expect(200);
    expect(page.headers['content-type']).toMatch(/text\/html/);
    expect(page.headers['cache-control']).toBe('no-store');
    expect(page.headers['content-security-policy']).toContain("script-src 'self'");
    expect(page.headers['content-security-policy']).toContain("style-src 'self'");
    expect(page.text).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/); // no inline script
    expect(page.text).not.toMatch(/<style|style=/);
    const asset = /src="(\/assets\/[^"]+\.js)"/.exec(page.text)![1]!;
    const js = await server.client().get(asset).expect(200);
    expect(js.headers['cache-control']).toBe('public, max-age=31536000, immutable');
    await server.client().get('/assets/missing-0000.js').expect(404);
    const api = await server.client().get('/api/no-such-route').expect(404);
    expect(api.body.error.code).toBe('NOT_FOUND');
    await server.client().get('/healthz').expect(200);
    await server.client().post('/cases').expect(404);
  });

  it('signs in with the one-time password, forces the password change, then shows the cases', async () => {
    clinician = await newPage();
    await clinician.goto('/');
    await clinician.getByRole('heading', { name: 'Sign in' }).waitFor();
    expect(new URL(clinician.url()).pathname).toBe('/sign-in');
    await clinician.screenshot({ path: SCREENSHOTS.signIn });

    // A wrong password: the one generic message, whatever was wrong.
    await clinician.getByLabel('E-mail').fill('clinician@demo.local');
    await clinician.getByLabel('Password').fill('not-the-password');
    await clinician.getByRole('button', { name: 'Sign in' }).click();
    await clinician.getByRole('alert').filter({ hasText: 'The e-mail, password or code is not correct, or the account is locked.' }).waitFor();

    await signInChangingPassword(clinician, 'clinician');
    await clinician.getByRole('heading', { name: 'Cases' }).waitFor();
    await clinician.getByText('Demo Clinician · Clinician').waitFor();
    expect(new URL(clinician.url()).pathname).toBe('/cases');
  });

  it('creates a case with patient details and finds it by search', async () => {
    await clinician.getByRole('button', { name: 'New case' }).click();
    const form = clinician.getByRole('form', { name: 'New case' });
    await form.getByLabel('Title').fill('E2E biopsy review');
    await form.getByLabel('Clinical question').fill('Margins clear?');
    await form.getByLabel('Name').fill('Alice Example');
    await form.getByLabel('Date of birth').fill('1970-03-04');
    await form.getByLabel('Medical record number').fill('MRN-4711');
    await form.getByLabel('Sex').selectOption('female');
    await form.getByRole('button', { name: 'Create case' }).click();
    await clinician.getByRole('heading', { name: 'E2E biopsy review' }).waitFor();
    caseUrl = new URL(clinician.url()).pathname;
    expect(caseUrl).toMatch(/^\/cases\/[A-Za-z0-9_-]{22}$/);
    await clinician.getByText('Alice Example').first().waitFor();

    // The list: search narrows it to the new case (the demo case does not match).
    await clinician.getByRole('link', { name: '← Cases' }).click();
    await clinician.locator('tr.case-row', { hasText: 'Demo Patient' }).waitFor();
    await clinician.getByRole('searchbox', { name: 'Search cases' }).fill('E2E');
    await waitFor(async () => (await clinician.locator('tr.case-row').count()) === 1, 'search shows only the new case');
    await clinician.locator('tr.case-row', { hasText: 'Alice Example' }).waitFor();
    await clinician.getByRole('combobox', { name: 'Status' }).selectOption('closed');
    await clinician.getByText('No cases match.').waitFor();
    await clinician.getByRole('combobox', { name: 'Status' }).selectOption('open');
    await clinician.locator('tr.case-row', { hasText: 'Alice Example' }).waitFor();
    expect(new URL(clinician.url()).search).toBe('?q=E2E&status=open');
    await clinician.getByRole('link', { name: 'E2E biopsy review' }).click();
    await clinician.getByRole('heading', { name: 'E2E biopsy review' }).waitFor();
  });

  it('uploads an image with a real progress bar, follows its conversion and shows its tiles', async () => {
    const png = await slidePng();
    // Slow the upload down so that the progress bar is seen between empty and full.
    const cdp = await clinician.context().newCDPSession(clinician);
    await cdp.send('Network.enable');
    await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: Math.ceil(png.length / 2) });
    await clinician.locator('#material-file').setInputFiles({ name: 'biopsy-slide.png', mimeType: 'image/png', buffer: png });
    const partial = (await waitFor(
      () =>
        clinician.evaluate(() => {
          const el = document.querySelector<HTMLProgressElement>('.upload-item progress');
          return el && el.value > 0 && el.value < el.max ? { value: el.value, max: el.max } : null;
        }),
      'the upload progress bar shows a part of the bytes sent',
      30_000,
    ))!;
    expect(partial.max).toBe(png.length);
    await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
    await cdp.detach();

    const material = clinician.locator('li.material', { hasText: 'biopsy-slide.png' });
    await material.and(clinician.locator('[data-status="ready"]')).waitFor({ timeout: 60_000 });
    expect(await textOf(material)).toContain('2400 × 1800');
    const viewer = clinician.locator('.viewer');
    await viewer.and(clinician.locator('[data-opened="true"]')).waitFor();
    await waitFor(async () => (await numberAttr(viewer, 'data-tiles-loaded')) > 0, 'OpenSeadragon loaded tiles');
    expect(await viewer.getAttribute('data-material-id')).toBe(await material.getAttribute('data-material-id'));
    await viewer.locator('canvas').first().waitFor();
    // OpenSeadragon found its style marker and added no inline stylesheet (the CSP would refuse it).
    expect(await clinician.evaluate(() => [...document.getElementsByTagName('style')].filter((e) => e instanceof HTMLStyleElement).length)).toBe(0);
  });

  it('lets a second user join: presence, presenter, follow mode, pointer, and patient details hidden', async () => {
    pathologist = await newPage();
    // A deep link: sign-in first, then back to the case.
    await signInChangingPassword(pathologist, 'pathologist', caseUrl);
    await pathologist.getByRole('heading', { name: 'E2E biopsy review' }).waitFor();
    expect(new URL(pathologist.url()).pathname).toBe(caseUrl);
    // No View Patient Info: the label, never the patient's name.
    const subject = await textOf(pathologist.locator('.case-header .subject'));
    expect(subject).toMatch(/^C-[A-Z0-9]{4}-[A-Z0-9]{4}$/);
    expect(await pathologist.getByText('Alice Example').count()).toBe(0);

    // Presence on both sides.
    await clinician.locator('.presence-item', { hasText: 'Demo Pathologist' }).waitFor();
    await pathologist.locator('.presence-item', { hasText: 'Demo Clinician' }).waitFor();
    // A pathologist cannot take the presenter role; the clinician can.
    expect(await pathologist.getByRole('button', { name: 'Present' }).count()).toBe(0);
    await clinician.getByRole('button', { name: 'Present' }).click();
    await clinician.getByText('You are presenting: the room follows your view.').waitFor();
    await pathologist.locator('.follow-bar', { hasText: 'Following Demo Clinician' }).waitFor();
    await pathologist.locator('.viewer[data-opened="true"]').waitFor();

    // The presenter zooms and pans; the follower's view converges on the presenter's.
    await clinician.getByRole('button', { name: 'Zoom in' }).click();
    await clinician.getByRole('button', { name: 'Zoom in' }).click();
    const box = (await clinician.locator('.viewer').boundingBox())!;
    await clinician.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
    await clinician.mouse.down();
    await clinician.mouse.move(box.x + box.width / 2 - 180, box.y + box.height / 2 - 90, { steps: 8 });
    await clinician.mouse.up();
    const presenterView = (await waitFor(async () => {
      const view = await viewOf(clinician);
      return view.zoom > 2 ? view : null;
    }, 'the presenter zoomed in'))!;
    await waitFor(() => sameView(pathologist, clinician), `the follower's viewer moved to the presenter's view (${JSON.stringify(presenterView)})`, 20_000);

    // The presenter's pointer shows on the follower's viewer, with the presenter's name.
    await clinician.mouse.move(box.x + box.width / 3, box.y + box.height / 3, { steps: 4 });
    const dot = pathologist.locator('.pointer', { hasText: 'Demo Clinician' });
    await dot.waitFor({ state: 'visible' });

    // Stop following: the presenter's moves no longer move this viewer; Follow catches up.
    await pathologist.getByRole('button', { name: 'Stop following' }).click();
    await pathologist.locator('.follow-bar', { hasText: 'Demo Clinician is presenting' }).waitFor();
    const parked = await settledView(pathologist);
    await clinician.getByRole('button', { name: 'Zoom out' }).click();
    await waitFor(async () => (await viewOf(clinician)).zoom < presenterView.zoom * 0.8, 'the presenter zoomed out');
    await settledView(clinician);
    expect(await viewOf(pathologist)).toEqual(parked);
    await pathologist.getByRole('button', { name: 'Follow' }).click();
    await pathologist.locator('.follow-bar', { hasText: 'Following Demo Clinician' }).waitFor();
    await waitFor(() => sameView(pathologist, clinician), 'Follow caught up with the presenter', 20_000);

  });

  it('delivers chat with an unread badge while collapsed, and catches up after a reconnect', async () => {
    const chatToggle = pathologist.getByRole('button', { name: /^Chat/ });
    await chatToggle.click();
    await clinician.getByRole('textbox', { name: 'Message' }).fill('Please look at the upper margin.');
    await clinician.getByRole('textbox', { name: 'Message' }).press('Enter');
    await clinician.locator('.chat-message', { hasText: 'Please look at the upper margin.' }).waitFor();
    const badge = pathologist.locator('.chat-panel .badge');
    await waitFor(async () => (await badge.isVisible()) && (await textOf(badge)) === '1', 'an unread badge of 1 on the collapsed chat');
    await chatToggle.click();
    await pathologist.locator('.chat-message', { hasText: 'Please look at the upper margin.' }).waitFor();
    expect(await badge.isVisible()).toBe(false);
    expect(await clinician.locator('.chat-message').count()).toBe(1);

    // Offline: the room says so; a message sent meanwhile arrives after the automatic rejoin.
    await pathologist.context().setOffline(true);
    await pathologist.locator('.connection', { hasText: 'Reconnecting…' }).waitFor();
    await clinician.getByRole('textbox', { name: 'Message' }).fill('Sent while you were away.');
    await clinician.getByRole('button', { name: 'Send' }).click();
    await clinician.locator('.chat-message', { hasText: 'Sent while you were away.' }).waitFor();
    await pathologist.context().setOffline(false);
    await pathologist.locator('.connection', { hasText: 'Back online' }).waitFor({ timeout: 30_000 });
    await pathologist.locator('.chat-message', { hasText: 'Sent while you were away.' }).waitFor();
    expect(await pathologist.locator('.chat-message').count()).toBe(2);
  });

  it('draws a rectangle annotation that the other user sees', async () => {
    await clinician.getByRole('button', { name: 'Rectangle', exact: true }).click();
    await clinician.getByRole('textbox', { name: 'Label for new annotations' }).fill('Margin');
    const box = (await clinician.locator('.viewer').boundingBox())!;
    await clinician.mouse.move(box.x + 200, box.y + 150);
    await clinician.mouse.down();
    await clinician.mouse.move(box.x + 340, box.y + 260, { steps: 5 });
    await clinician.mouse.up();
    await clinician.getByRole('button', { name: 'Pan', exact: true }).click();
    await clinician.locator('.annotation-item').first().waitFor();
    const shape = pathologist.locator('.annotation-layer g.annotation', { hasText: 'Margin' });
    await shape.waitFor();
    await pathologist.locator('.annotation-list').getByRole('button', { name: /Margin.*Rectangle/ }).waitFor();

    // The room as both see it: the presenter's pointer over the annotation, on the follower's screen too.
    await clinician.mouse.move(box.x + 330, box.y + 250, { steps: 3 });
    await pathologist.locator('.pointer', { hasText: 'Demo Clinician' }).waitFor({ state: 'visible' });
    await clinician.screenshot({ path: SCREENSHOTS.room });
    await pathologist.screenshot({ path: SCREENSHOTS.follower });
  });

  it('signs out to the sign-in page', async () => {
    await clinician.getByRole('button', { name: 'Sign out' }).click();
    await clinician.getByRole('heading', { name: 'Sign in' }).waitFor();
    await clinician.getByText('You have signed out.').waitFor();
    // The session is gone on the server too.
    const status = await clinician.evaluate(async () => (await fetch('/api/me')).status);
    expect(status).toBe(401);
    // The other user is unaffected and sees the presenter leave.
    await pathologist.locator('.presence-item', { hasText: 'Demo Clinician' }).waitFor({ state: 'detached' });
  });

  it('enrols TOTP when the site requires it, then asks for the code at sign-in', async () => {
    // The other users are done; their pages would only see the new policy refuse them.
    for (const page of [pathologist, clinician]) {
      watches.delete(page);
      await page.context().close();
    }
    const admin = await server.demoLogin('site_admin');
    await admin.client.patch('/api/admin/site/policy', { requireTotp: true }).expect(200);

    const page = await newPage();
    await page.goto('/');
    await page.getByLabel('E-mail').fill(admin.email);
    await page.getByLabel('Password').fill(admin.password);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Set up two-factor authentication' }).waitFor();
    const qr = page.getByRole('img', { name: 'QR code for your authenticator app' });
    await qr.waitFor();
    expect(await qr.getAttribute('src')).toMatch(/^data:image\/png;base64,/);
    expect(await qr.evaluate((img: HTMLImageElement) => img.naturalWidth)).toBeGreaterThan(0);
    const secret = (await textOf(page.locator('.totp-secret'))).replace(/\s+/g, '');
    await page.getByLabel('Code from the app').fill(await codeAt(secret, server.clock.now()));
    await page.getByRole('button', { name: 'Confirm' }).click();
    await page.getByRole('heading', { name: 'Cases' }).waitFor();

    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByLabel('E-mail').fill(admin.email);
    await page.getByLabel('Password').fill(admin.password);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').filter({ hasText: 'Enter the code from your authenticator app.' }).waitFor();
    // A code works once per time step: the next step's code.
    server.clock.advance(30_000);
    await page.getByLabel('Authenticator code').fill(await codeAt(secret, server.clock.now()));
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('heading', { name: 'Cases' }).waitFor();
  });
});
