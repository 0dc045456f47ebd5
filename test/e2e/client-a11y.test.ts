// End-to-end accessibility of the browser client, in Debian's Chromium: on each main screen
// (sign-in, case list, case room, the four administration pages), at a desktop window (1280x800)
// and a tablet (820x1180), the Tab key alone reaches every visible control, each focused control
// shows a focus ring and has an accessible name (Chromium's own accessibility tree, through the
// DevTools protocol), all text meets WCAG AA contrast against its background, and nothing spills
// out sideways.
import type { CDPSession, Page } from 'playwright-core';
import { caseWithSlide, DESKTOP, startHarness, TABLET, type Harness } from './clientHarness';
import { waitFor } from '../helpers/server';

jest.setTimeout(180_000);

let t: Harness;
let caseId: string;

interface Stop {
  /** A short description of the element, for failure messages. */
  what: string;
  role: string;
  name: string;
  focusRing: boolean;
}

/** Visible, enabled, keyboard-focusable controls (what Tab must reach), as descriptions. */
async function focusableControls(page: Page): Promise<string[]> {
  return page.evaluate(() => {
    const describe = (el: Element) => `${el.tagName.toLowerCase()}${el.id ? `#${el.id}` : ''}[${(el.getAttribute('aria-label') ?? el.textContent ?? '').trim().slice(0, 40)}]`;
    const candidates = document.querySelectorAll<HTMLElement>('a[href], button, input, select, textarea, [tabindex]');
    const out: string[] = [];
    for (const el of candidates) {
      if ((el as HTMLButtonElement).disabled || el.tabIndex < 0 || el.closest('[inert]')) continue;
      if (!el.checkVisibility({ checkOpacity: true, checkVisibilityCSS: true })) continue;
      const box = el.getBoundingClientRect();
      if (box.width < 2 || box.height < 2) continue;
      out.push(describe(el));
    }
    return out;
  });
}

/** The focused element's role and accessible name as Chromium computes them, and its focus ring. */
async function focusedStop(page: Page, cdp: CDPSession): Promise<Stop | null> {
  const { result } = await cdp.send('Runtime.evaluate', { expression: 'document.activeElement' });
  if (!result.objectId) return null;
  const info = await page.evaluate(() => {
    const el = document.activeElement as HTMLElement | null;
    if (!el || el === document.body) return null;
    const style = getComputedStyle(el);
    const ring = (style.outlineStyle !== 'none' && parseFloat(style.outlineWidth) >= 2) || (style.boxShadow !== 'none' && style.boxShadow !== '');
    const describe = `${el.tagName.toLowerCase()}${el.id ? `#${el.id}` : ''}[${(el.getAttribute('aria-label') ?? el.textContent ?? '').trim().slice(0, 40)}]`;
    return { what: describe, focusRing: ring };
  });
  if (!info) return null;
  const tree = await cdp.send('Accessibility.getPartialAXTree', { objectId: result.objectId, fetchRelatives: false });
  const node = tree.nodes.find((n) => !n.ignored) ?? tree.nodes[0];
  return { ...info, role: String(node?.role?.value ?? ''), name: String(node?.name?.value ?? '').trim() };
}

/** Tabs from the top of the page until focus comes back round; every stop on the way. */
async function tabThrough(page: Page): Promise<Stop[]> {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Accessibility.enable');
  // Tab from the very top: a focused, untabbable marker before everything else is the start.
  await page.evaluate(() => {
    const start = document.createElement('span');
    start.tabIndex = -1;
    start.id = 'a11y-walk-start';
    document.body.prepend(start);
    start.focus();
  });
  const stops: Stop[] = [];
  const seen = new Set<string>();
  let last = '';
  for (let i = 0; i < 300; i++) {
    await page.keyboard.press('Tab');
    const stop = await focusedStop(page, cdp);
    if (!stop) {
      if (stops.length > 0) break; // past the last control: focus left the document
      continue;
    }
    const key = `${stop.what}|${stop.name}`;
    // A date-time field takes one Tab per part (day, month, year, hours...): the same element again.
    if (key === last) continue;
    if (seen.has(key)) break; // wrapped round
    seen.add(key);
    last = key;
    stops.push(stop);
  }
  await cdp.detach();
  await page.evaluate(() => document.getElementById('a11y-walk-start')?.remove());
  return stops;
}

/** Text whose colour fails WCAG AA against the background behind it (4.5:1, 3:1 for large text). */
async function lowContrastText(page: Page): Promise<string[]> {
  return page.evaluate(() => {
    const parse = (c: string): [number, number, number, number] | null => {
      const m = /rgba?\(([^)]+)\)/.exec(c);
      if (!m) return null;
      const parts = m[1]!.split(/[\s,/]+/).filter(Boolean).map(Number);
      return [parts[0]!, parts[1]!, parts[2]!, parts[3] ?? 1];
    };
    const luminance = ([r, g, b]: number[]) => {
      const f = (v: number) => {
        const s = v / 255;
        return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
      };
      return 0.2126 * f(r!) + 0.7152 * f(g!) + 0.0722 * f(b!);
    };
    /** The opaque colour behind an element, or null over an image, a canvas or a video. */
    const backgroundOf = (el: Element | null): number[] | null => {
      const layers: number[][] = [];
      for (let e = el; e; e = e.parentElement) {
        const s = getComputedStyle(e);
        if (s.backgroundImage !== 'none' || ['CANVAS', 'VIDEO', 'IMG'].includes(e.tagName) || e.classList.contains('viewer')) return null;
        const c = parse(s.backgroundColor);
        if (c && c[3] > 0) {
          layers.push(c);
          if (c[3] >= 1) break;
        }
      }
      let out = [255, 255, 255];
      for (const [r, g, b, a] of layers.reverse()) out = [r! * a! + out[0]! * (1 - a!), g! * a! + out[1]! * (1 - a!), b! * a! + out[2]! * (1 - a!)];
      return out;
    };
    const failures: string[] = [];
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    const checked = new Set<Element>();
    for (let n = walker.nextNode(); n; n = walker.nextNode()) {
      const el = n.parentElement;
      if (!el || checked.has(el) || !n.textContent?.trim()) continue;
      checked.add(el);
      if (el.closest('svg, option, [hidden]') || (el as HTMLButtonElement).disabled || el.closest('button:disabled')) continue;
      if (!el.checkVisibility({ checkOpacity: true, checkVisibilityCSS: true })) continue;
      const s = getComputedStyle(el);
      const fg = parse(s.color);
      const bg = backgroundOf(el);
      if (!fg || !bg) continue;
      const blended = [fg[0] * fg[3] + bg[0]! * (1 - fg[3]), fg[1] * fg[3] + bg[1]! * (1 - fg[3]), fg[2] * fg[3] + bg[2]! * (1 - fg[3])];
      const [l1, l2] = [luminance(blended), luminance(bg)].sort((a, b) => b - a);
      const ratio = (l1! + 0.05) / (l2! + 0.05);
      const size = parseFloat(s.fontSize);
      const large = size >= 24 || (size >= 18.66 && Number(s.fontWeight) >= 700);
      if (ratio < (large ? 3 : 4.5)) failures.push(`${el.tagName.toLowerCase()}.${el.className} "${n.textContent.trim().slice(0, 30)}" ${ratio.toFixed(2)}:1`);
    }
    return failures;
  });
}

/** Runs every check on the page as it is now; returns the problems found, in words. */
async function audit(page: Page, screen: string): Promise<string[]> {
  const problems: string[] = [];
  const controls = await focusableControls(page);
  const stops = await tabThrough(page);
  const reached = new Set(stops.map((s) => s.what));
  for (const control of controls) if (!reached.has(control)) problems.push(`${screen}: Tab never reaches ${control}`);
  for (const s of stops) {
    if (!s.name) problems.push(`${screen}: ${s.what} (${s.role}) has no accessible name`);
    if (!s.focusRing) problems.push(`${screen}: ${s.what} shows no focus ring`);
  }
  for (const f of await lowContrastText(page)) problems.push(`${screen}: low contrast ${f}`);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  if (overflow > 1) problems.push(`${screen}: the page is ${overflow}px wider than the window`);
  if (stops.length < 3) problems.push(`${screen}: only ${stops.length} focus stops (the walk did not work)`);
  return problems;
}

beforeAll(async () => {
  t = await startHarness();
  const { client } = await t.account('clinician');
  ({ caseId } = await caseWithSlide(client, 'Accessibility review'));
});

afterAll(async () => {
  await t?.close();
});

afterEach(() => t.expectCleanPages());

describe.each([
  ['desktop 1280x800', DESKTOP],
  ['tablet 820x1180', TABLET],
])('keyboard, names, focus and contrast at %s', (label, viewport) => {
  it('sign-in page', async () => {
    const page = await t.newPage({ viewport });
    await page.goto('/');
    await page.getByRole('heading', { name: 'Sign in' }).waitFor();
    expect(await audit(page, 'sign-in')).toEqual([]);
    // The contrast check can fail: grey #aaa on white (2.3:1) is caught.
    await page.evaluate(() => {
      const faint = document.createElement('p');
      faint.id = 'faint';
      faint.textContent = 'Faint text';
      faint.style.color = '#aaaaaa';
      document.querySelector('main')!.append(faint);
    });
    expect(await lowContrastText(page)).toEqual([expect.stringMatching(/^p\. "Faint text" 2\.\d\d:1$/)]);
    await page.evaluate(() => document.getElementById('faint')!.remove());
    // The form works from the keyboard alone: type, Tab, type, Enter.
    const { email, password } = await t.account('clinician');
    await page.getByLabel('E-mail').focus();
    await page.keyboard.type(email);
    await page.keyboard.press('Tab');
    await page.keyboard.type(password);
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { name: 'Cases' }).waitFor();
    expect(await audit(page, 'case list')).toEqual([]);
    if (label.startsWith('desktop')) await page.screenshot({ path: '/tmp/client-a11y-cases.png' });
  });

  it('case room', async () => {
    const page = await t.newPage({ viewport });
    await t.signIn(page, 'pathologist', `/cases/${caseId}`);
    await page.locator('.viewer[data-opened="true"]').waitFor();
    await page.locator('.presence-item').first().waitFor();
    await waitFor(async () => Number(await page.locator('.viewer').getAttribute('data-tiles-loaded')) > 0, 'the slide drew tiles');
    expect(await audit(page, 'case room')).toEqual([]);
    if (!label.startsWith('desktop')) await page.screenshot({ path: '/tmp/client-a11y-room-tablet.png', fullPage: true });
  });

  it('administration pages', async () => {
    const page = await t.newPage({ viewport });
    await t.signIn(page, 'site_admin', '/admin/users');
    await page.locator('tr.user-row').first().waitFor();
    await page.getByRole('button', { name: 'Demo Clinician' }).click();
    await page.getByRole('switch', { name: 'Can Upload' }).waitFor();
    expect(await audit(page, 'users')).toEqual([]);
    for (const [link, ready] of [
      ['Site policy', 'Minimum password length'],
      ['Audit trail', 'Event type'],
      ['Usage', 'From'],
    ] as const) {
      await page.getByRole('navigation', { name: 'Administration' }).getByRole('link', { name: link }).click();
      await page.getByLabel(ready, { exact: true }).waitFor();
      if (link === 'Audit trail') await page.locator('tr.audit-row').first().waitFor();
      if (link === 'Usage') await page.getByRole('table', { name: 'Monthly figures' }).waitFor();
      expect(await audit(page, link)).toEqual([]);
    }
  });
});
