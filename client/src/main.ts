// The application shell: decides from the server's answer (GET /api/me) which page a person
// sees (sign-in, a pending step, the case list or a case), keeps the URL in step (history API;
// the server answers index.html for these paths), and owns the inactivity warning. The top bar and
// the warning are Preact components (shell.tsx) rendered into elements this shell owns.
import './styles.css';
import { Api, type SessionLossCode } from './api';
import type { AppContext, View } from './context';
import { h, replaceChildren } from './dom';
import { IdleWatch } from './idle';
import { passwordChangeView, signInView, totpEnrolView } from './views/auth';
import { caseListView } from './views/caseList';
import { APP_NAME, hideIdleWarning, renderHeader, showIdleWarning } from './shell';
import { ERROR_CODES } from '../../src/protocol/errors';
import type { MeResponse } from '../../src/protocol/identity';

const CASE_PATH = /^\/cases\/([A-Za-z0-9_-]{22})\/?$/;
const ADMIN_PATH = /^\/admin(?:\/([a-z]+))?\/?$/;
const FOLLOWUPS_PATH = /^\/followups\/?$/;

const SESSION_LOSS_NOTICE: Record<SessionLossCode, string> = {
  SESSION_EXPIRED: ERROR_CODES.SESSION_EXPIRED.message,
  UNAUTHENTICATED: 'You were signed out. Sign in again to continue.',
  ACCESS_STOPPED: ERROR_CODES.ACCESS_STOPPED.message,
};

class App implements AppContext {
  readonly api: Api;
  me: MeResponse | null = null;
  readonly #header = h('header', { class: 'app-header' });
  readonly #main = h('div', { class: 'app-main' });
  readonly #warning = h('div', { class: 'idle-warning', hidden: true, attrs: { role: 'alertdialog', 'aria-labelledby': 'idle-warning-text' } });
  #view: View | null = null;
  #idle: IdleWatch | null = null;
  #notice: string | null = null;
  #returnTo: string | null = null;
  /** The one-time password just typed at sign-in, until it is changed (memory only). */
  #currentPassword: string | null = null;

  constructor(root: HTMLElement) {
    this.api = new Api({
      sessionLost: (code) => this.sessionEnded(SESSION_LOSS_NOTICE[code]),
      pending: () => void this.#refreshMe(),
      contact: () => this.#idle?.serverContact(),
    });
    replaceChildren(root, this.#header, this.#main, this.#warning);
    window.addEventListener('popstate', () => this.#render());
    // In-app links navigate without a reload.
    document.addEventListener('click', (event) => {
      const link = (event.target as Element).closest?.('a[data-link]') as HTMLAnchorElement | null;
      if (!link || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
      event.preventDefault();
      this.navigate(link.pathname + link.search);
    });
  }

  async start(): Promise<void> {
    try {
      this.me = await this.api.me({ anonymous: true });
      this.#startIdle();
    } catch {
      // Not signed in (or the server is away): the sign-in page says more when it is tried.
      this.me = null;
    }
    this.#render();
  }

  navigate(path: string, options: { replace?: boolean } = {}): void {
    if (options.replace) history.replaceState(null, '', path);
    else if (path !== location.pathname + location.search) history.pushState(null, '', path);
    this.#render();
  }

  signedIn(me: MeResponse, options: { currentPassword?: string } = {}): void {
    this.me = me;
    this.#currentPassword = me.pending === 'password_change' ? (options.currentPassword ?? this.#currentPassword) : null;
    this.#startIdle();
    if (location.pathname === '/sign-in' && me.pending === null) {
      const target = this.#returnTo ?? '/cases';
      this.#returnTo = null;
      this.navigate(target, { replace: true });
    } else {
      this.#render();
    }
  }

  async signOut(notice = 'You have signed out.', returnHere = false): Promise<void> {
    // Close the page's sockets first, so the server's session:ended is not taken for a surprise.
    this.#disposeView();
    try {
      await this.api.logout();
    } catch {
      // Already ended on the server: signing out here is all that is left.
    }
    // A deliberate sign-out forgets the page: the next person at this desk starts at the list.
    this.#end(notice, returnHere);
  }

  sessionEnded(notice: string): void {
    this.#end(notice, true);
  }

  /** Back to sign-in; `returnHere` brings the user back to this page after signing in again. */
  #end(notice: string, returnHere: boolean): void {
    if (this.me === null && location.pathname === '/sign-in') return;
    this.#stopIdle();
    this.me = null;
    this.#currentPassword = null;
    this.api.forgetToken();
    this.#notice = notice;
    const here = location.pathname + location.search;
    this.#returnTo = returnHere && here !== '/sign-in' && here !== '/' ? here : null;
    this.navigate('/sign-in', { replace: true });
  }

  setTitle(title: string): void {
    document.title = title ? `${title} · ${APP_NAME}` : APP_NAME;
  }

  async #refreshMe(): Promise<void> {
    try {
      this.me = await this.api.me();
      this.#render();
    } catch {
      // A lost session is handled by the API hook.
    }
  }

  #startIdle(): void {
    const seconds = this.me?.session.idleTimeoutSeconds;
    if (!seconds) return;
    if (this.#idle) {
      this.#idle.setTimeout(seconds);
      return;
    }
    this.#idle = new IdleWatch(seconds, {
      warn: (deadline) => this.#showWarning(deadline),
      clearWarning: () => this.#hideWarning(),
      expire: () => {
        const minutes = Math.round(seconds / 60);
        void this.signOut(`You were signed out after ${minutes} minute${minutes === 1 ? '' : 's'} without activity.`, true);
      },
      keepAlive: async () => {
        const me = await this.api.me();
        if (!this.me) return;
        // A site admin may have changed the idle timeout meanwhile.
        if (me.session.idleTimeoutSeconds !== this.me.session.idleTimeoutSeconds) this.#idle?.setTimeout(me.session.idleTimeoutSeconds);
        this.me = { ...this.me, session: me.session, site: me.site, user: me.user };
      },
    });
  }

  #stopIdle(): void {
    this.#idle?.close();
    this.#idle = null;
    this.#hideWarning();
  }

  #showWarning(deadline: number): void {
    showIdleWarning(this.#warning, deadline, () => {
      // The click itself counts as activity (IdleWatch); this also restarts the server's clock now.
      this.api.me().catch(() => undefined);
      this.#idle?.activity();
    });
  }

  #hideWarning(): void {
    hideIdleWarning(this.#warning);
  }

  #disposeView(): void {
    const view = this.#view;
    this.#view = null;
    view?.dispose?.();
  }

  #renderHeader(): void {
    renderHeader(this.#header, this.me, () => void this.signOut());
  }

  #render(): void {
    this.#disposeView();
    const path = location.pathname;
    let view: View;
    if (!this.me) {
      if (path !== '/sign-in') {
        if (path !== '/') this.#returnTo = path + location.search;
        history.replaceState(null, '', '/sign-in');
      }
      this.setTitle('Sign in');
      view = signInView(this, this.#notice);
      this.#notice = null;
    } else if (this.me.pending === 'password_change') {
      this.setTitle('Choose your password');
      view = passwordChangeView(this, this.me, this.#currentPassword);
    } else if (this.me.pending === 'totp_enrolment') {
      this.setTitle('Two-factor authentication');
      view = totpEnrolView(this);
    } else {
      const match = CASE_PATH.exec(path);
      const admin = ADMIN_PATH.exec(path);
      if (match) {
        view = lazyCasePage(this, match[1]!);
      } else if (FOLLOWUPS_PATH.test(path)) {
        view = lazyFollowUpPage(this);
      } else if (admin && this.me.user.role === 'site_admin') {
        view = lazyAdminPage(this, admin[1] ?? 'users');
      } else {
        if (!/^\/cases\/?$/.test(path)) history.replaceState(null, '', '/cases');
        this.setTitle('Cases');
        view = caseListView(this);
      }
    }
    this.#renderHeader();
    this.#view = view;
    replaceChildren(this.#main, view.element);
  }
}

/**
 * The case page with the viewer and the room (OpenSeadragon and socket.io-client: most of the
 * bundle) is a separate chunk, fetched when a case opens, so sign-in and the list load quickly.
 */
function lazyCasePage(ctx: AppContext, caseId: string): View {
  const element = h('div', { class: 'lazy-view' }, h('p', { class: 'page loading' }, 'Opening the case…'));
  let inner: View | null = null;
  let disposed = false;
  import('./views/casePage').then(
    ({ casePageView }) => {
      if (disposed) return;
      inner = casePageView(ctx, caseId);
      replaceChildren(element, inner.element);
    },
    () => {
      if (!disposed) replaceChildren(element, h('p', { class: 'page form-error' }, 'The page could not be loaded. Check the connection and reload.'));
    },
  );
  return {
    element,
    dispose: () => {
      disposed = true;
      inner?.dispose?.();
    },
  };
}

/** The clinicians' video follow-ups (schedule, waiting list, call): a chunk of its own. */
function lazyFollowUpPage(ctx: AppContext): View {
  const element = h('div', { class: 'lazy-view' }, h('p', { class: 'page loading' }, 'Opening the follow-ups…'));
  let inner: View | null = null;
  let disposed = false;
  import('./followup/clinicianPage').then(
    ({ followUpPageView }) => {
      if (disposed) return;
      inner = followUpPageView(ctx);
      replaceChildren(element, inner.element);
    },
    () => {
      if (!disposed) replaceChildren(element, h('p', { class: 'page form-error' }, 'The page could not be loaded. Check the connection and reload.'));
    },
  );
  return {
    element,
    dispose: () => {
      disposed = true;
      inner?.dispose?.();
    },
  };
}

/** The administration pages, a chunk of their own (only site admins load it). */
function lazyAdminPage(ctx: AppContext, section: string): View {
  const element = h('div', { class: 'lazy-view' }, h('p', { class: 'page loading' }, 'Opening the administration…'));
  let inner: View | null = null;
  let disposed = false;
  import('./admin/adminPage').then(
    ({ adminPageView, isAdminSection }) => {
      if (disposed) return;
      if (!isAdminSection(section)) {
        ctx.navigate('/admin/users', { replace: true });
        return;
      }
      inner = adminPageView(ctx, section);
      replaceChildren(element, inner.element);
    },
    () => {
      if (!disposed) replaceChildren(element, h('p', { class: 'page form-error' }, 'The page could not be loaded. Check the connection and reload.'));
    },
  );
  return {
    element,
    dispose: () => {
      disposed = true;
      inner?.dispose?.();
    },
  };
}

const root = document.getElementById('app');
if (root) void new App(root).start();
