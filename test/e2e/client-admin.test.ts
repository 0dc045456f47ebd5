// End-to-end: the site admin's pages of the browser client, in Debian's Chromium against a real
// node. The admin creates a user (one-time password shown once), sets role and permissions with
// the switches, ends the user's sessions, unlocks a locked account with a password reset, edits
// the site policy (the server's rule shown in words), searches, exports and verifies the audit
// trail, and reads the usage figures. The other person's browser shows each effect.
import fs from 'node:fs';
import type { Page } from 'playwright-core';
import { waitFor } from '../helpers/server';
import { startHarness, type Harness } from './clientHarness';

jest.setTimeout(120_000);

const SHOTS = { users: '/tmp/client-admin-users.png', audit: '/tmp/client-admin-audit.png', usage: '/tmp/client-admin-usage.png', policy: '/tmp/client-admin-policy.png' };

let t: Harness;
let admin: Page;
let person: Page;
const email = 'new.pathologist@demo.local';
let oneTimePassword = '';
let chosenPassword = '';

async function signInAs(page: Page, address: string, password: string): Promise<void> {
  await page.goto('/');
  await page.getByLabel('E-mail').fill(address);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

async function userId(): Promise<string> {
  const { client } = await t.account('site_admin');
  const { body } = await client.get('/api/admin/users').expect(200);
  return body.users.find((u: { email: string }) => u.email === email).id;
}

async function userRecord(): Promise<{ role: string; permissions: Record<string, boolean>; lockedUntil: string | null }> {
  const { client } = await t.account('site_admin');
  return (await client.get(`/api/admin/users/${await userId()}`).expect(200)).body.user;
}

beforeAll(async () => {
  t = await startHarness();
  admin = await t.newPage();
  person = await t.newPage();
  await t.signIn(admin, 'site_admin');
});

afterAll(async () => {
  await t?.close();
});

afterEach(() => t.expectCleanPages());

describe('administration pages', () => {
  it('is offered to site admins only', async () => {
    await admin.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Administration' }).click();
    await admin.getByRole('heading', { name: 'Users', level: 1 }).waitFor();
    expect(new URL(admin.url()).pathname).toBe('/admin/users');
    await admin.locator('tr.user-row', { hasText: 'Demo Clinician' }).waitFor();

    const clinician = await t.newPage();
    await t.signIn(clinician, 'clinician');
    expect(await clinician.getByRole('link', { name: 'Administration' }).count()).toBe(0);
    await clinician.goto('/admin/users');
    await clinician.getByRole('heading', { name: 'Cases' }).waitFor();
    expect(new URL(clinician.url()).pathname).toBe('/cases');
    await clinician.context().close();
    t.watches.delete(clinician);
  });

  it('creates a user and shows the one-time password once; the user signs in with it', async () => {
    await admin.getByRole('button', { name: 'New user' }).click();
    const form = admin.getByRole('form', { name: 'New user' });
    await form.getByLabel('E-mail').fill(email);
    await form.getByLabel('Full name').fill('Nora Newcomer');
    await form.getByLabel('Role').selectOption('pathologist');
    await form.getByRole('button', { name: 'Create user' }).click();
    const secret = admin.locator('.one-time-password');
    await secret.getByText('One-time password for Nora Newcomer').waitFor();
    oneTimePassword = (await secret.locator('.secret-value').textContent())!;
    expect(oneTimePassword.length).toBeGreaterThanOrEqual(12);
    await admin.locator('tr.user-row', { hasText: 'Nora Newcomer' }).getByText('Must choose a password').waitFor();
    await secret.getByRole('button', { name: 'Done' }).click();
    expect(await secret.isHidden()).toBe(true);
    // Focus goes back to where creating started, not to the top of the page.
    await waitFor(() => admin.getByRole('button', { name: 'New user' }).evaluate((el) => el === document.activeElement), 'New user focused after Done');

    await signInAs(person, email, oneTimePassword);
    await person.getByRole('heading', { name: 'Choose your password' }).waitFor();
    chosenPassword = `a-long-chosen-secret-${Math.random().toString(36).slice(2)}`;
    await person.getByLabel('New password', { exact: true }).fill(chosenPassword);
    await person.getByLabel('Repeat the new password').fill(chosenPassword);
    await person.getByRole('button', { name: 'Change password' }).click();
    await person.getByRole('heading', { name: 'Cases' }).waitFor();
  });

  it('sets role and permissions with switches, each saved at once', async () => {
    await admin.getByRole('button', { name: 'Nora Newcomer' }).click();
    const detail = admin.getByRole('region', { name: 'Nora Newcomer' });
    await detail.waitFor();
    const download = detail.getByRole('switch', { name: 'Can Download' });
    expect(await download.isChecked()).toBe(false);
    await download.check();
    await detail.getByText('Can Download on.').waitFor();
    // The switch is disabled while it saves; afterwards it has focus again (keyboard users stay put).
    await waitFor(() => download.evaluate((el) => el === document.activeElement), 'the switch focused after its save');
    await detail.getByLabel('Role').selectOption('clinician');
    await detail.getByText('Role changed to Clinician.').waitFor();
    const saved = await userRecord();
    expect(saved.role).toBe('clinician');
    expect(saved.permissions.canDownload).toBe(true);
    // Every one of the six permissions has its switch.
    expect(await detail.getByRole('switch').count()).toBe(6);
  });

  it('ends the user’s sessions: their next request lands on the sign-in page', async () => {
    const detail = admin.getByRole('region', { name: 'Nora Newcomer' });
    const end = detail.getByRole('button', { name: 'End all sessions' });
    await end.click();
    await detail.getByRole('button', { name: 'Click again to confirm' }).click();
    await detail.getByText('1 session ended.').waitFor();
    await waitFor(() => end.evaluate((el) => el === document.activeElement), 'End all sessions focused after it acted');
    await person.reload();
    await person.getByRole('heading', { name: 'Sign in' }).waitFor();
  });

  it('shows a locked account and unlocks it with a password reset', async () => {
    const { client } = await t.account('site_admin');
    const { policy } = (await client.get('/api/site').expect(200)).body;
    for (let i = 0; i < policy.lockoutThreshold; i++) {
      await signInAs(person, email, `wrong-password-${i}`);
      await person.getByRole('alert').filter({ hasText: 'not correct' }).waitFor();
    }
    await waitFor(async () => (await userRecord()).lockedUntil !== null, 'the account locked');
    // Even the right password is refused while locked.
    await signInAs(person, email, chosenPassword);
    await person.getByRole('alert').filter({ hasText: 'not correct' }).waitFor();

    await admin.reload();
    // The security summary names the lockout and opens the account from there.
    const alerts = admin.getByRole('region', { name: 'Security, last 7 days' });
    await alerts.locator('li.lockout', { hasText: 'Nora Newcomer (new.pathologist@demo.local) locked at' }).waitFor();
    expect(await alerts.locator('.alert-count').textContent()).toMatch(/^\d+ failed sign-ins\.$/);
    await alerts.getByRole('button', { name: 'Manage Nora Newcomer' }).click();
    const detail = admin.getByRole('region', { name: 'Nora Newcomer' });
    await detail.getByText(/Locked until/).waitFor();
    await detail.getByRole('button', { name: 'Unlock', exact: true }).waitFor();
    await detail.getByRole('button', { name: 'Reset password' }).click();
    await detail.getByRole('button', { name: 'Click again to confirm' }).click();
    const secret = admin.locator('.one-time-password');
    await secret.getByText('New one-time password for Nora Newcomer').waitFor();
    const fresh = (await secret.locator('.secret-value').textContent())!;
    expect(fresh).not.toBe(oneTimePassword);
    expect((await userRecord()).lockedUntil).toBeNull();
    await admin.evaluate(() => window.scrollTo(0, 0));
    await admin.screenshot({ path: SHOTS.users });

    await signInAs(person, email, fresh);
    await person.getByRole('heading', { name: 'Choose your password' }).waitFor();
  });

  it('Stop Access in the middle of a case room ends the person’s access on their screen at once', async () => {
    chosenPassword = `another-long-chosen-secret-${Math.random().toString(36).slice(2)}`;
    await person.getByLabel('New password', { exact: true }).fill(chosenPassword);
    await person.getByLabel('Repeat the new password').fill(chosenPassword);
    await person.getByRole('button', { name: 'Change password' }).click();
    await person.getByRole('link', { name: 'Demo: breast core biopsy, second opinion' }).click();
    await person.locator('.presence-item', { hasText: 'Nora Newcomer' }).waitFor();

    const detail = admin.getByRole('region', { name: 'Nora Newcomer' });
    await detail.getByRole('switch', { name: 'Stop Access' }).check();
    await detail.getByText('Stop Access on; their sessions were ended.').waitFor();
    await person.getByRole('heading', { name: 'Sign in' }).waitFor();
    await person.getByText('Your session was ended (password change, or by a site administrator). Sign in again.').waitFor();
    await admin.locator('tr.user-row', { hasText: 'Nora Newcomer' }).getByText('Access stopped').waitFor();

    // Signing in again is refused until the switch is off again.
    await signInAs(person, email, chosenPassword);
    await person.getByRole('alert').filter({ hasText: 'stopped' }).waitFor();
    expect(await person.getByRole('button', { name: 'Sign out' }).count()).toBe(0);
    // That refusal is a 403 the browser logs; it is the one expected here.
    const watch = t.watches.get(person)!;
    expect(watch.errors).toEqual([expect.stringContaining('status of 403')]);
    watch.errors.length = 0;
    await detail.getByRole('switch', { name: 'Stop Access' }).uncheck();
    await detail.getByText('Stop Access off.').waitFor();
    await signInAs(person, email, chosenPassword);
    await person.getByRole('heading', { name: 'Cases' }).waitFor();
  });

  it('edits the site policy; a rule of the server is explained, nothing half-saved', async () => {
    await admin.getByRole('navigation', { name: 'Administration' }).getByRole('link', { name: 'Site policy' }).click();
    const form = admin.getByRole('form', { name: 'Site policy' });
    await form.getByLabel('Minimum password length').waitFor();
    const { client } = await t.account('site_admin');
    const before = (await client.get('/api/site').expect(200)).body.policy;
    expect(await form.getByRole('switch', { name: 'Require two-factor authentication' }).isChecked()).toBe(before.requireTotp);

    await form.getByLabel('Minimum password length').fill('10');
    await form.getByLabel('Sign out after inactivity').fill('20');
    await form.getByRole('button', { name: 'Save policy' }).click();
    await form.getByRole('alert').filter({ hasText: /\S/ }).waitFor();
    expect((await client.get('/api/site').expect(200)).body.policy).toEqual(before);

    await form.getByLabel('Minimum password length').fill('14');
    await form.getByLabel('Keep cases for').fill('400');
    await form.getByRole('button', { name: 'Save policy' }).click();
    await form.getByText('Policy saved.', { exact: false }).waitFor();
    const after = (await client.get('/api/site').expect(200)).body.policy;
    expect(after).toEqual({ ...before, minPasswordLength: 14, idleTimeoutMinutes: 20, retentionDays: 400 });
    await admin.screenshot({ path: SHOTS.policy });
  });

  it('searches the audit trail with filters, exports it and verifies the chain', async () => {
    await admin.getByRole('link', { name: 'Audit trail' }).click();
    const rows = admin.locator('tr.audit-row');
    await rows.first().waitFor();
    const filters = admin.getByRole('form', { name: 'Audit filters' });
    await filters.getByLabel('Event type').fill('auth.*');
    await filters.getByLabel('Outcome').selectOption('8');
    await filters.getByRole('button', { name: 'Search' }).click();
    // The failed sign-ins of the lockout above; users are named, the event type shown.
    await waitFor(async () => {
      const types = await rows.locator('td:nth-child(2)').allTextContents();
      return types.length > 0 && types.every((x) => x.startsWith('auth.'));
    }, 'only failed auth records listed');
    expect(await rows.locator('td.audit-outcome').allTextContents()).toEqual(expect.arrayContaining(['Serious failure']));

    const csv = admin.waitForEvent('download');
    await admin.getByRole('link', { name: 'Export CSV' }).click();
    const file = await csv;
    const text = fs.readFileSync((await file.path())!, 'utf8');
    const lines = text.trim().split(/\r?\n/);
    expect(lines[0]).toBe('time,seq,id,type,action,outcome,actor_user_id,actor_role,ip,user_agent,objects,details,hash');
    expect(lines.length - 1).toBe(await rows.count());
    expect(lines.slice(1).every((l) => /,auth\.[a-z_.]+,/.test(l))).toBe(true);

    const fhir = admin.waitForEvent('download');
    await admin.getByRole('link', { name: 'Export FHIR' }).click();
    const bundle = JSON.parse(fs.readFileSync((await (await fhir).path())!, 'utf8'));
    expect(bundle.resourceType).toBe('Bundle');
    expect(bundle.entry.length).toBe(lines.length - 1);

    // Paging: 60 case reads make sure the unfiltered trail has more than one page of 50.
    const { client } = await t.account('site_admin');
    const demoCase = (await client.get('/api/cases').expect(200)).body.cases[0].id;
    for (let i = 0; i < 60; i++) await client.get(`/api/cases/${demoCase}`).expect(200);
    await filters.getByRole('button', { name: 'Clear' }).click();
    await admin.getByText('50 records (more are older).').waitFor();
    await admin.getByRole('button', { name: 'Show older records' }).click();
    await waitFor(async () => (await rows.count()) > 50, 'the second page appended');
    const seqs = (await rows.evaluateAll((trs) => trs.map((tr) => Number((tr as HTMLElement).dataset.seq))));
    // Newest first, no record twice, none skipped between the pages.
    expect(seqs).toEqual([...seqs].sort((a, b) => b - a));
    expect(new Set(seqs).size).toBe(seqs.length);
    expect(seqs[0]! - seqs.at(-1)!).toBe(seqs.length - 1);

    await admin.getByRole('button', { name: 'Verify now' }).click();
    await admin.locator('.verification.intact', { hasText: /^Intact: \d+ records checked/ }).waitFor();
    await admin.evaluate(() => window.scrollTo(0, 0));
    await admin.screenshot({ path: SHOTS.audit });
  });

  it('shows usage figures as numbers, charts and a table', async () => {
    await admin.getByRole('link', { name: 'Usage' }).click();
    const table = admin.getByRole('table', { name: 'Monthly figures' });
    await table.waitFor();
    // The last 12 months and a total row.
    expect(await table.locator('tbody tr').count()).toBe(13);
    const totals = table.locator('tr.totals td');
    // Sign-ins of this run: the admin, the clinician, the new user (twice). Failed ones counted too.
    expect(Number(await totals.nth(1).textContent())).toBeGreaterThanOrEqual(4);
    expect(Number(await totals.nth(2).textContent())).toBeGreaterThanOrEqual(5);
    expect(await admin.locator('svg.bar-chart').count()).toBe(2);
    expect(await admin.locator('svg.bar-chart rect').count()).toBeGreaterThan(0);
    await admin.screenshot({ path: SHOTS.usage });
  });
});
