// Shared set-up of the browser-client end-to-end tests: Debian's Chromium through playwright-core,
// pages watched for CSP violations and script errors, accounts signed in through the real
// sign-in page, and a case with a converted slide made through the HTTP API (the upload flow
// itself is covered by client.test.ts; these tests need a ready slide quickly).
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { CLIENT_DIST } from '../../src/http/static';
import { startTestServer, waitFor, type TestClient, type TestServer } from '../helpers/server';
import type { Role } from '../../src/protocol/identity';

export const CHROMIUM = '/usr/bin/chromium';
export const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream'];
export const DESKTOP = { width: 1280, height: 800 };
export const TABLET = { width: 820, height: 1180 };

/** Problems a page reported: CSP violations, uncaught errors, console errors. */
export interface Watch {
  csp: string[];
  errors: string[];
}

export interface Harness {
  server: TestServer;
  browser: Browser;
  watches: Map<Page, Watch>;
  newPage(options?: { viewport?: { width: number; height: number } }): Promise<Page>;
  /** Signs a demo account in through the sign-in page (its password already changed by the API). */
  signIn(page: Page, role: Role, path?: string): Promise<void>;
  /** A demo account's API client (password changed on first use). */
  account(role: Role): Promise<{ client: TestClient; email: string; password: string }>;
  /** Every page ran without a CSP violation or a script error. */
  expectCleanPages(): void;
  close(): Promise<void>;
}

export async function startHarness(env: Record<string, string> = {}): Promise<Harness> {
  if (!fs.existsSync(path.join(CLIENT_DIST, 'index.html'))) throw new Error('client/dist is missing: run `node scripts/setup.mjs --test` (npm test does it)');
  const server = await startTestServer(env);
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS });
  const contexts: BrowserContext[] = [];
  const watches = new Map<Page, Watch>();
  const accounts = new Map<Role, { client: TestClient; email: string; password: string }>();

  const account = async (role: Role) => {
    let a = accounts.get(role);
    if (!a) {
      a = await server.demoLogin(role);
      accounts.set(role, a);
    }
    return a;
  };

  return {
    server,
    browser,
    watches,
    account,
    async newPage(options = {}) {
      const context = await browser.newContext({ ignoreHTTPSErrors: true, baseURL: server.url, viewport: options.viewport ?? DESKTOP, acceptDownloads: true });
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
        // Answers the page handles and explains itself (401 before sign-in, 409 of a conflict
        // the test provokes, 400/422 of input the test gets wrong on purpose) are logged by Chromium.
        else if (msg.type() === 'error' && !/status of (400|401|409|422)/.test(text)) watch.errors.push(text);
      });
      page.on('pageerror', (err) => watch.errors.push(String(err)));
      return page;
    },
    async signIn(page, role, target = '/') {
      const a = await account(role);
      await page.goto(target);
      await page.getByLabel('E-mail').fill(a.email);
      await page.getByLabel('Password').fill(a.password);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.getByRole('button', { name: 'Sign out' }).waitFor();
    },
    expectCleanPages() {
      for (const [page, watch] of watches) {
        expect({ page: page.url(), csp: watch.csp, errors: watch.errors }).toEqual({ page: page.url(), csp: [], errors: [] });
      }
    },
    async close() {
      for (const context of contexts) await context.close().catch(() => undefined);
      await browser.close();
      await server.close();
    },
  };
}

/** A slide-like test image: pink tissue blobs on white. */
export async function slidePng(width = 1600, height = 1200): Promise<Buffer> {
  const blobs: string[] = [];
  for (let i = 0; i < 40; i++) {
    const x = (i * 397) % width;
    const y = (i * 233) % height;
    blobs.push(`<circle cx="${x}" cy="${y}" r="${40 + ((i * 17) % 90)}" fill="hsl(${320 + (i % 30)}, 55%, ${55 + (i % 20)}%)"/>`);
  }
  const svgImage = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}"><rect width="100%" height="100%" fill="#fbf7f8"/>${blobs.join('')}</svg>`;
  return sharp(Buffer.from(svgImage)).png().toBuffer();
}

/** A case with one converted slide, made through the API by `client` (a clinician). */
export async function caseWithSlide(client: TestClient, title: string): Promise<{ caseId: string; materialId: string }> {
  const created = await client.post('/api/cases', { title, clinicalQuestion: 'Annotate the lesion.' }).expect(201);
  const caseId = created.body.case.id as string;
  const token = await client.csrf();
  const upload = await client.agent
    .post(`/api/cases/${caseId}/materials?name=slide.png`)
    .set('X-CSRF-Token', token)
    .set('Content-Type', 'application/octet-stream')
    .send(await slidePng())
    .expect(202);
  const materialId = upload.body.material.id as string;
  await waitFor(
    async () => {
      const res = await client.get(`/api/cases/${caseId}/materials/${materialId}`).expect(200);
      if (res.body.material.status === 'failed') throw new Error('the test slide failed to convert');
      return res.body.material.status === 'ready';
    },
    'the test slide converted',
    60_000,
  );
  return { caseId, materialId };
}
