// End-to-end: the RIS sends an order (ORM^O01) and then a report (ORU^R01) over a real MLLP
// socket; a clinician in Debian's Chromium opens the case the order created and reads both in
// the case's "Orders and reports" panel (the report appears by itself while the page is open),
// the report's text shown as text (markup in it is not interpreted). A slide case shows the panel empty. Pages are watched for CSP violations and
// script errors. No sleeps: auto-waiting locators and polling with a reason.
import fs from 'node:fs';
import path from 'node:path';
import { Hl7Message } from '@medplum/core';
import { Hl7Client } from '@medplum/hl7';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { CLIENT_DIST } from '../../src/http/static';
import { registerPatientSecrets } from '../helpers/dicom';
import { lastPasswords, startTestServer, waitFor, type TestServer } from '../helpers/server';
import { CHROMIUM } from './clientHarness';

jest.setTimeout(120_000);

const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'];
registerPatientSecrets('ROE^RITA', 'RITA ROE', 'MRN-E2E-DOCS');

let server: TestServer;
let browser: Browser;
let hl7: Hl7Client;
let context: BrowserContext;
const problems: string[] = [];
let seq = 0;

function msg(type: string, segments: string[]): Hl7Message {
  const ts = new Date().toISOString().replace(/[-:TZ.]/g, '').slice(0, 14);
  return Hl7Message.parse([`MSH|^~\\&|RIS|RIS_E2E|CASECOLLAB|SITE|${ts}||${type}|E2E${Date.now()}${++seq}|P|2.5`, ...segments].join('\r'));
}

function obr(accession: string, status = ''): string {
  const fields = ['OBR', '1', 'P-7', 'F-7', 'MRHEAD^MR head'];
  while (fields.length < 18) fields.push('');
  fields.push(accession);
  while (fields.length < 25) fields.push('');
  fields.push(status);
  return fields.join('|');
}

async function ackCode(m: Hl7Message): Promise<string> {
  return (await hl7.sendAndWait(m, { timeoutMs: 10_000 })).getSegment('MSA')!.getField(1).toString();
}

beforeAll(async () => {
  if (!fs.existsSync(path.join(CLIENT_DIST, 'index.html'))) throw new Error('client/dist is missing: run `node scripts/setup.mjs --test` (npm test does it)');
  // The HL7 allowlist names the site, which exists once the store has been created.
  const first = await startTestServer();
  const siteId = (await first.server.store.sites.list())[0]!.id;
  await first.demoLogin('clinician');
  await first.close();
  server = await startTestServer({ HL7_PORT: '0', HL7_PEERS: `RIS_E2E@127.0.0.1=${siteId}` }, { dataDir: first.dataDir });
  hl7 = new Hl7Client({ host: '127.0.0.1', port: server.server.radiology.hl7!.port });
  browser = await chromium.launch({ executablePath: CHROMIUM, args: FLAGS });
});

afterAll(async () => {
  await context?.close().catch(() => undefined);
  await hl7?.close();
  await browser?.close();
  await server?.close();
});

async function signIn(): Promise<Page> {
  context = await browser.newContext({ ignoreHTTPSErrors: true, baseURL: server.url, viewport: { width: 1280, height: 800 } });
  context.setDefaultTimeout(20_000);
  await context.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || 'inline'}`));
  });
  const page = await context.newPage();
  page.on('console', (m) => m.type() === 'error' && !/status of 401/.test(m.text()) && problems.push(m.text()));
  page.on('pageerror', (err) => problems.push(String(err)));
  await page.goto('/');
  await page.getByLabel('E-mail').fill('clinician@demo.local');
  await page.getByLabel('Password').fill(lastPasswords.get('clinician@demo.local')!);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Cases' }).waitFor();
  return page;
}

test('an order and its report sent by the RIS are read in the case page, the report as plain text', async () => {
  const pid = 'PID|1||MRN-E2E-DOCS^^^HOSP^MR||ROE^RITA||19711111|F';
  expect(await ackCode(msg('ORM^O01', [pid, 'ORC|NW|P-7|F-7', obr('ACC-E2E-DOCS')]))).toBe('AA');
  const page = await signIn();
  await page.getByRole('link', { name: /Radiology order: MR head/ }).click();
  const panel = page.getByRole('region', { name: 'Orders and reports' });
  await panel.locator('.document-order').waitFor();
  await expect(panel.locator('.document-order .document-text').textContent()).resolves.toBe('MR head');
  await expect(panel.locator('.document-order .document-status').textContent()).resolves.toBe('new order');

  // The report arrives while the page is open: it shows up by itself (the room is told).
  const report = 'Impression: no acute intracranial findings. <img src=x onerror=alert(1)>';
  expect(await ackCode(msg('ORU^R01', [pid, obr('ACC-E2E-DOCS', 'F'), `OBX|1|TX|IMP^Impression||${report}||||||F`]))).toBe('AA');
  await panel.locator('.document-report').waitFor();
  await expect(panel.locator('.document-report .document-text').textContent()).resolves.toBe(report);
  await expect(panel.locator('.document-report .document-status').textContent()).resolves.toBe('final');
  expect(await panel.locator('.document-report img').count()).toBe(0);
  await expect(panel.getAttribute('data-count')).resolves.toBe('2');
  // Refresh reads them again: the same two.
  await panel.getByRole('button', { name: 'Refresh' }).click();
  await waitFor(async () => (await panel.locator('.document').count()) === 2 && (await panel.getAttribute('data-count')) === '2', 'a refresh shows the same two documents');

  // A reload shows both at once (the order first), and the case carries the reported status.
  await page.reload();
  await page.getByRole('region', { name: 'Orders and reports' }).locator('.document-report').waitFor();
  await expect(page.getByRole('region', { name: 'Orders and reports' }).locator('.document').evaluateAll((items) => items.map((i) => (i as HTMLElement).dataset.kind))).resolves.toEqual(['order', 'report']);
  await page.screenshot({ path: path.join(__dirname, '..', '..', 'docs', 'screenshots', 'radiology-orders-reports.png') });

  // A case the RIS never spoke about says so.
  await page.goto('/cases');
  await page.getByRole('button', { name: 'New case' }).click();
  const form = page.getByRole('form', { name: 'New case' });
  await form.getByLabel('Title').fill('Slide without orders');
  await form.getByRole('button', { name: 'Create case' }).click();
  await page.getByRole('heading', { name: 'Slide without orders' }).waitFor();
  const empty = page.getByRole('region', { name: 'Orders and reports' });
  await empty.locator('.documents-state', { hasText: 'None received from the RIS.' }).waitFor();
  await expect(empty.getAttribute('data-count')).resolves.toBe('0');
  expect(problems).toEqual([]);
});
