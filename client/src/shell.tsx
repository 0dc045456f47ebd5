// The parts of the page shell (main.ts) that are drawn from state: the top bar with the main
// navigation, and the inactivity warning with its countdown. Preact components rendered into the
// elements the shell owns; the routing stays in main.ts.
import { render } from 'preact';
import { useLayoutEffect, useRef, useState } from 'preact/hooks';
import { ROLE_LABEL } from './labels';
import type { MeResponse } from '../../src/protocol/identity';

export const APP_NAME = 'Case collaboration';

function NavLink({ href, section, path, children }: { href: string; section: string; path: string; children: string }) {
  return (
    <a href={href} data-link="" aria-current={path.startsWith(section) ? 'page' : undefined}>
      {children}
    </a>
  );
}

function Header({ me, path, onSignOut }: { me: MeResponse; path: string; onSignOut: () => void }) {
  return (
    <>
      <a class="brand" href="/cases" data-link="">
        {APP_NAME}
      </a>
      <span class="site-name">{me.site.name}</span>
      <nav class="main-nav" aria-label="Main">
        <NavLink href="/cases" section="/cases" path={path}>
          Cases
        </NavLink>
        <NavLink href="/followups" section="/followups" path={path}>
          Follow-ups
        </NavLink>
        {me.user.role === 'site_admin' ? (
          <NavLink href="/admin/users" section="/admin" path={path}>
            Administration
          </NavLink>
        ) : null}
      </nav>
      <span class="user-name" title={me.user.email}>{`${me.user.name} · ${ROLE_LABEL[me.user.role]}`}</span>
      <button type="button" class="sign-out" onClick={onSignOut}>
        Sign out
      </button>
    </>
  );
}

/** The top bar for a signed-in user with nothing pending; hidden (and empty) otherwise. */
export function renderHeader(header: HTMLElement, me: MeResponse | null, onSignOut: () => void): void {
  const shown = me !== null && me.pending === null;
  header.hidden = !shown;
  render(shown ? <Header me={me} path={location.pathname} onSignOut={onSignOut} /> : null, header);
}

function secondsLeft(deadline: number): number {
  return Math.max(0, Math.ceil((deadline - Date.now()) / 1000));
}

function IdleWarning({ deadline, onStay }: { deadline: number; onStay: () => void }) {
  const [left, setLeft] = useState(() => secondsLeft(deadline));
  const stay = useRef<HTMLButtonElement>(null);
  useLayoutEffect(() => {
    setLeft(secondsLeft(deadline));
    const countdown = window.setInterval(() => setLeft(secondsLeft(deadline)), 1000);
    return () => window.clearInterval(countdown);
  }, [deadline]);
  // The warning takes focus when it appears, so a key press answers it.
  useLayoutEffect(() => stay.current?.focus(), []);
  return (
    <div class="idle-warning-box">
      <p id="idle-warning-text">{`You will be signed out in ${left} second${left === 1 ? '' : 's'} because of inactivity.`}</p>
      <button ref={stay} type="button" class="primary" onClick={onStay}>
        Stay signed in
      </button>
    </div>
  );
}

/** Shows the inactivity warning in `box` (an alertdialog the shell owns), counting down to `deadline`. */
export function showIdleWarning(box: HTMLElement, deadline: number, onStay: () => void): void {
  // Shown before it renders: a hidden button cannot take the focus.
  box.hidden = false;
  render(<IdleWarning deadline={deadline} onStay={onStay} />, box);
}

export function hideIdleWarning(box: HTMLElement): void {
  box.hidden = true;
  render(null, box);
}
