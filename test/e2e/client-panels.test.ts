// End-to-end: what people do with the shell and the panels that client.test.ts does not walk
// through: the main navigation's current page, the new-case form (focus on open, the all-or-none
// patient rule, cancel), a row click opening a case, an upload cancelled and dismissed, the upload
// button opened by keyboard, the presenter's stop and hand-over, Shift+Enter in the chat, and the
// inactivity warning (focus, countdown, Stay signed in). Real server, real Chromium; no sleeps.
import { caseWithSlide, startHarness, type Harness } from './clientHarness';
import { waitFor } from '../helpers/server';

jest.setTimeout(180_000);

let t: Harness;
let caseId: string;

beforeAll(async () => {
  t = await startHarness();
  const { client } = await t.account('clinician');
  ({ caseId } = await caseWithSlide(client, 'Panels review'));
});

afterAll(async () => {
  await t?.close();
});

afterEach(() => t.expectCleanPages());

it('marks the current page in the navigation, and runs the new-case form and an upload by hand', async () => {
  const page = await t.newPage();
  await t.signIn(page, 'clinician', '/cases');
  const nav = page.getByRole('navigation', { name: 'Main' });
  expect(await nav.getByRole('link', { name: 'Cases' }).getAttribute('aria-current')).toBe('page');
  expect(await nav.getByRole('link', { name: 'Follow-ups' }).getAttribute('aria-current')).toBeNull();

  // New case: the form opens with the title focused; half the patient details are refused in words.
  await page.getByRole('button', { name: 'New case' }).click();
  const form = page.getByRole('form', { name: 'New case' });
  expect(await page.evaluate(() => (document.activeElement as HTMLInputElement | null)?.name)).toBe('title');
  expect(await page.getByRole('button', { name: 'New case' }).isVisible()).toBe(false);
  await form.getByLabel('Title').fill('Never created');
  await form.getByLabel('Name').fill('Only A Name');
  await form.getByRole('button', { name: 'Create case' }).click();
  await form.getByRole('alert').filter({ hasText: 'Give all four patient details, or none.' }).waitFor();
  await form.getByRole('button', { name: 'Cancel' }).click();
  await page.getByRole('button', { name: 'New case' }).waitFor();
  expect(await form.isVisible()).toBe(false);
  expect(await page.locator('tr.case-row', { hasText: 'Never created' }).count()).toBe(0);

  // A click anywhere on the row opens the case.
  await page.locator('tr.case-row', { hasText: 'Panels review' }).locator('td').first().click();
  await page.getByRole('heading', { name: 'Panels review' }).waitFor();

  // An upload throttled to a crawl, cancelled: the row says so without a bar, and Dismiss removes it.
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: 2_000 });
  await page.locator('#material-file').setInputFiles({ name: 'slow.png', mimeType: 'image/png', buffer: Buffer.alloc(200_000, 1) });
  const row = page.locator('.upload-item[data-file="slow.png"]');
  await row.locator('progress').waitFor();
  expect(await row.locator('.upload-text').textContent()).toMatch(/ of 0\.2 MB$/);
  await row.getByRole('button', { name: 'Cancel' }).click();
  await row.and(page.locator('.failed')).waitFor();
  expect(await row.locator('.upload-text').textContent()).toBe('The upload was cancelled.');
  expect(await row.locator('progress').count()).toBe(0);
  await row.getByRole('button', { name: 'Dismiss' }).click();
  await row.waitFor({ state: 'detached' });
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
  await cdp.detach();
  expect(await page.locator('li.material', { hasText: 'slow.png' }).count()).toBe(0);

  // The upload "button" (a label for the hidden file input) opens the picker from the keyboard.
  await page.locator('label[for="material-file"]').focus();
  const chooser = page.waitForEvent('filechooser');
  await page.keyboard.press('Enter');
  await chooser;

  await nav.getByRole('link', { name: 'Follow-ups' }).click();
  await waitFor(async () => (await nav.getByRole('link', { name: 'Follow-ups' }).getAttribute('aria-current')) === 'page', 'Follow-ups is the current page');
  expect(await nav.getByRole('link', { name: 'Cases' }).getAttribute('aria-current')).toBeNull();
});

it('stops presenting and hands over; Shift+Enter makes a new line in the chat, Enter sends', async () => {
  const clinician = await t.newPage();
  const admin = await t.newPage();
  await t.signIn(clinician, 'clinician', `/cases/${caseId}`);
  await t.signIn(admin, 'site_admin', `/cases/${caseId}`);
  await clinician.locator('.presence-item', { hasText: 'Demo Site Admin' }).waitFor();
  expect(await clinician.locator('.presence-item .presence-name').first().textContent()).toBe('Demo Clinician (you)');

  await clinician.getByRole('button', { name: 'Present' }).click();
  await clinician.getByText('You are presenting.', { exact: true }).waitFor();
  await admin.getByRole('button', { name: 'Take over from Demo Clinician' }).waitFor();
  await clinician.getByRole('button', { name: 'Stop presenting' }).click();
  await admin.getByRole('button', { name: 'Present' }).waitFor();

  await clinician.getByRole('button', { name: 'Present' }).click();
  await clinician.locator('.presence-item', { hasText: 'Demo Site Admin' }).getByRole('button', { name: 'Hand over' }).click();
  await admin.getByText('You are presenting.', { exact: true }).waitFor();
  await clinician.getByRole('button', { name: 'Take over from Demo Site Admin' }).waitFor();
  await clinician.locator('.presence-item', { hasText: 'Demo Site Admin' }).locator('.tag.presenting').waitFor();

  const box = clinician.getByRole('textbox', { name: 'Message' });
  await box.fill('line one');
  await box.press('Shift+Enter');
  await box.pressSequentially('line two');
  expect(await box.inputValue()).toBe('line one\nline two');
  await box.press('Enter');
  await admin.locator('.chat-message', { hasText: 'line two' }).waitFor();
  expect(await box.inputValue()).toBe('');
  // After sending, the box keeps the focus for the next message.
  expect(await clinician.evaluate(() => document.activeElement?.getAttribute('aria-label'))).toBe('Message');
});

it('warns before the inactivity sign-out, counting down with the focus on Stay signed in', async () => {
  const admin = await t.account('site_admin');
  // The shortest policy (one minute): the warning comes halfway.
  await admin.client.patch('/api/admin/site/policy', { idleTimeoutMinutes: 1 }).expect(200);
  try {
    const page = await t.newPage();
    await t.signIn(page, 'pathologist', '/cases');
    const dialog = page.getByRole('alertdialog');
    await dialog.waitFor({ timeout: 60_000 });
    const first = (await dialog.locator('p').textContent()) ?? '';
    expect(first).toMatch(/^You will be signed out in \d+ seconds? because of inactivity\.$/);
    expect(await page.evaluate(() => document.activeElement?.textContent)).toBe('Stay signed in');
    await waitFor(async () => (await dialog.locator('p').textContent()) !== first, 'the countdown moves on');
    await page.keyboard.press('Enter');
    await dialog.waitFor({ state: 'hidden' });
    expect(await page.locator('.idle-warning').innerHTML()).toBe('');
    await page.getByRole('heading', { name: 'Cases' }).waitFor();
  } finally {
    await admin.client.patch('/api/admin/site/policy', { idleTimeoutMinutes: 30 }).expect(200);
  }
});
