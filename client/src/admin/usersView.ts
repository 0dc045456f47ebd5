// Site admin: the site's users. List, create (the one-time password is shown once), and for one
// user: name, role, the six permissions as switches (each saved at once), reset password (which
// also lifts a lockout), and ending their sessions.
import { describeError } from '../api';
import type { AppContext, View } from '../context';
import { formatDateTime, h, replaceChildren } from '../dom';
import { keysOf, PERMISSION_HINT, PERMISSION_LABEL, ROLE_LABEL } from '../labels';
import type { Permission, PublicUser, Role } from '../../../src/protocol/identity';

/** A second click within this time confirms an action that cannot be undone. */
const CONFIRM_MS = 6000;
/** How far back the security summary looks. */
const ALERT_DAYS = 7;

interface Alerts {
  since: string;
  failedLogins: number;
  lockouts: { at: string; userId: string; email: string | null; name: string | null; ip: string | null; lockedUntil: string }[];
}

export function usersView(ctx: AppContext): View {
  const page = new UsersPage(ctx);
  return { element: page.element, dispose: () => page.dispose() };
}

function isLocked(u: PublicUser): boolean {
  return u.lockedUntil !== null && Date.parse(u.lockedUntil) > Date.now();
}

function statusOf(u: PublicUser): string {
  const parts: string[] = [];
  if (u.permissions.stopAccess) parts.push('Access stopped');
  if (isLocked(u)) parts.push(`Locked until ${formatDateTime(u.lockedUntil!)}`);
  if (u.mustChangePassword) parts.push('Must choose a password');
  parts.push(u.totpEnabled ? 'Two-factor on' : 'Two-factor off');
  return parts.join(' · ');
}

function roleSelect(id: string, value: Role): HTMLSelectElement {
  const select = h('select', { id, name: 'role' }, ...keysOf(ROLE_LABEL).map((r) => h('option', { value: r }, ROLE_LABEL[r])));
  select.value = value;
  return select;
}

/** A button that asks for a second click before it acts. */
function confirmingButton(label: string, confirmLabel: string, action: () => Promise<void>, className = 'small'): HTMLButtonElement {
  const button = h('button', { type: 'button', class: className }, label);
  let armed: number | null = null;
  const disarm = () => {
    if (armed !== null) window.clearTimeout(armed);
    armed = null;
    button.textContent = label;
    button.classList.remove('armed');
  };
  button.addEventListener('click', () => {
    if (armed === null) {
      button.textContent = confirmLabel;
      button.classList.add('armed');
      armed = window.setTimeout(disarm, CONFIRM_MS);
      return;
    }
    disarm();
    button.disabled = true;
    void action().finally(() => {
      button.disabled = false;
    });
  });
  button.addEventListener('blur', disarm);
  return button;
}

class UsersPage {
  readonly element: HTMLElement;
  readonly #status = h('p', { class: 'list-summary', attrs: { role: 'status' } });
  readonly #body = h('tbody');
  readonly #detail = h('section', { class: 'panel user-detail', hidden: true, attrs: { 'aria-labelledby': 'user-detail-title' } });
  readonly #secret = h('div', { class: 'one-time-password', hidden: true, attrs: { role: 'alert' } });
  readonly #createForm: HTMLFormElement;
  readonly #newButton = h('button', { type: 'button', class: 'primary' }, 'New user');
  /** Outcome of the last action on the selected user; kept across re-renders of the panel. */
  readonly #detailError = h('p', { class: 'form-error', attrs: { role: 'alert' } });
  readonly #detailOk = h('p', { class: 'form-ok', attrs: { role: 'status' } });
  readonly #alerts = h('section', { class: 'panel security-alerts', attrs: { 'aria-labelledby': 'security-alerts-title' } });
  #users: PublicUser[] = [];
  #selected: string | null = null;
  #disposed = false;

  constructor(private readonly ctx: AppContext) {
    this.#createForm = this.#buildCreateForm();
    this.#createForm.hidden = true;
    this.#newButton.addEventListener('click', () => {
      this.#createForm.hidden = false;
      this.#newButton.hidden = true;
      this.#createForm.querySelector('input')?.focus();
    });
    const table = h(
      'table',
      { class: 'case-table user-table' },
      h('caption', { class: 'visually-hidden' }, 'Users of this site'),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Name'), h('th', { scope: 'col' }, 'E-mail'), h('th', { scope: 'col' }, 'Role'), h('th', { scope: 'col' }, 'Status'))),
      this.#body,
    );
    this.element = h(
      'div',
      { class: 'admin-users' },
      this.#alerts,
      h('div', { class: 'admin-actions' }, this.#newButton),
      this.#createForm,
      this.#secret,
      this.#status,
      h('div', { class: 'admin-split' }, h('div', { class: 'table-wrap' }, table), this.#detail),
    );
    void this.#load();
    void this.#loadAlerts();
  }

  dispose(): void {
    this.#disposed = true;
  }

  async #load(): Promise<void> {
    this.#status.textContent = 'Loading…';
    try {
      const { users } = await this.ctx.api.get<{ users: PublicUser[] }>('/api/admin/users');
      if (this.#disposed) return;
      this.#users = users.sort((a, b) => a.name.localeCompare(b.name));
      this.#status.textContent = `${users.length} user${users.length === 1 ? '' : 's'}.`;
      this.#renderList();
      this.#renderDetail();
    } catch (err) {
      if (!this.#disposed) this.#status.textContent = describeError(err);
    }
  }

  /** Lockouts and failed sign-ins of the last days (from the audit trail; reading them is audited). */
  async #loadAlerts(): Promise<void> {
    const title = h('h2', { id: 'security-alerts-title' }, `Security, last ${ALERT_DAYS} days`);
    try {
      const alerts = await this.ctx.api.get<Alerts>(`/api/admin/alerts?days=${ALERT_DAYS}`);
      if (this.#disposed) return;
      const failed = h('p', { class: alerts.failedLogins > 0 ? 'alert-count' : 'muted' }, alerts.failedLogins === 0 ? 'No failed sign-ins.' : `${alerts.failedLogins} failed sign-in${alerts.failedLogins === 1 ? '' : 's'}.`);
      const lockouts = alerts.lockouts.map((l) =>
        h(
          'li',
          { class: 'lockout' },
          h('strong', {}, l.name ?? 'A deleted user'),
          l.email ? ` (${l.email})` : '',
          ` locked at ${formatDateTime(l.at)}`,
          l.ip ? ` after failed sign-ins from ${l.ip}` : '',
          l.lockedUntil ? `, until ${formatDateTime(l.lockedUntil)}. ` : '. ',
          l.name ? h('button', { type: 'button', class: 'link', on: { click: () => this.#select(l.userId, true) } }, `Manage ${l.name}`) : null,
        ),
      );
      replaceChildren(this.#alerts, title, failed, lockouts.length ? h('ul', { class: 'lockout-list' }, ...lockouts) : h('p', { class: 'muted' }, 'No account was locked.'));
    } catch (err) {
      if (!this.#disposed) replaceChildren(this.#alerts, title, h('p', { class: 'form-error' }, describeError(err)));
    }
  }

  #replace(user: PublicUser): void {
    const i = this.#users.findIndex((u) => u.id === user.id);
    if (i >= 0) this.#users[i] = user;
    else this.#users.push(user);
    this.#users.sort((a, b) => a.name.localeCompare(b.name));
    this.#renderList();
    this.#renderDetail();
  }

  #renderList(): void {
    replaceChildren(
      this.#body,
      ...this.#users.map((u) => {
        const open = h(
          'button',
          { type: 'button', class: 'link', attrs: { 'aria-pressed': String(u.id === this.#selected) }, on: { click: () => this.#select(u.id) } },
          u.name,
        );
        return h(
          'tr',
          { class: `user-row${u.id === this.#selected ? ' selected' : ''}`, dataset: { userId: u.id } },
          h('td', {}, open, u.id === this.ctx.me?.user.id ? ' (you)' : ''),
          h('td', {}, u.email),
          h('td', {}, ROLE_LABEL[u.role]),
          h('td', { class: 'user-status' }, statusOf(u)),
        );
      }),
    );
  }

  #select(id: string, open = false): void {
    this.#selected = this.#selected === id && !open ? null : id;
    this.#detailError.textContent = '';
    this.#detailOk.textContent = '';
    this.#renderList();
    this.#renderDetail();
    if (this.#selected) this.#detail.querySelector<HTMLElement>('h2')?.focus();
  }

  #renderDetail(): void {
    const u = this.#users.find((x) => x.id === this.#selected);
    if (!u) {
      this.#detail.hidden = true;
      replaceChildren(this.#detail);
      return;
    }
    this.#detail.hidden = false;
    // The panel is rebuilt after each change: focus goes back to the control that had it.
    const focusedId = this.#detail.contains(document.activeElement) ? document.activeElement?.id : undefined;
    const error = this.#detailError;
    const done = this.#detailOk;
    const fail = (err: unknown) => {
      done.textContent = '';
      error.textContent = describeError(err);
    };
    const ok = (text: string) => {
      error.textContent = '';
      done.textContent = text;
    };
    const patch = async (body: object, what: string) => {
      const { user } = await this.ctx.api.patch<{ user: PublicUser }>(`/api/admin/users/${u.id}`, body);
      this.#replace(user);
      ok(what);
    };

    const name = h('input', { type: 'text', id: 'user-name', name: 'name', value: u.name, maxLength: 120, required: true, autocomplete: 'off' });
    const nameForm = h('form', { class: 'inline-form' }, h('label', { htmlFor: 'user-name', class: 'field-label' }, 'Name'), name, h('button', { type: 'submit', class: 'small' }, 'Save name'));
    nameForm.addEventListener('submit', (e) => {
      e.preventDefault();
      patch({ name: name.value.trim() }, 'Name saved.').catch(fail);
    });

    const role = roleSelect('user-role', u.role);
    role.addEventListener('change', () => {
      patch({ role: role.value as Role }, `Role changed to ${ROLE_LABEL[role.value as Role]}.`).catch((err) => {
        role.value = u.role;
        fail(err);
      });
    });

    const switches = keysOf(PERMISSION_LABEL).map((p: Permission) => {
      const id = `perm-${p}`;
      const box = h('input', { type: 'checkbox', id, name: p, checked: u.permissions[p], attrs: { role: 'switch', 'aria-describedby': `${id}-hint` } });
      box.addEventListener('change', () => {
        const on = box.checked;
        box.disabled = true;
        patch({ permissions: { [p]: on } }, `${PERMISSION_LABEL[p]} ${on ? 'on' : 'off'}${p === 'stopAccess' && on ? '; their sessions were ended' : ''}.`)
          .catch((err) => {
            box.checked = !on;
            fail(err);
          })
          .finally(() => {
            box.disabled = false;
          });
      });
      return h(
        'div',
        { class: `switch-row${p === 'stopAccess' ? ' danger-zone' : ''}` },
        box,
        h('label', { htmlFor: id }, PERMISSION_LABEL[p]),
        h('span', { class: 'field-hint', id: `${id}-hint` }, PERMISSION_HINT[p]),
      );
    });

    // Unlock keeps the password (the person proved who they are to the help desk); a reset also
    // clears the lock and issues a new one-time password.
    const unlock = isLocked(u)
      ? confirmingButton('Unlock', 'Click again to unlock', async () => {
          try {
            const { user } = await this.ctx.api.post<{ user: PublicUser }>(`/api/admin/users/${u.id}/unlock`);
            this.#replace(user);
            ok(`${user.name} is unlocked and can sign in with their password.`);
          } catch (err) {
            fail(err);
          }
        })
      : null;
    const reset = confirmingButton('Reset password', 'Click again to confirm', async () => {
      try {
        const { user, oneTimePassword } = await this.ctx.api.post<{ user: PublicUser; oneTimePassword: string }>(`/api/admin/users/${u.id}/reset-password`);
        this.#replace(user);
        this.#showSecret(user, oneTimePassword, 'New one-time password');
      } catch (err) {
        fail(err);
      }
    });
    const revoke = confirmingButton('End all sessions', 'Click again to confirm', async () => {
      try {
        const { revoked } = await this.ctx.api.post<{ revoked: number }>(`/api/admin/users/${u.id}/revoke-sessions`);
        ok(revoked === 0 ? 'No session was open.' : `${revoked} session${revoked === 1 ? '' : 's'} ended.`);
      } catch (err) {
        fail(err);
      }
    });

    replaceChildren(
      this.#detail,
      h('h2', { id: 'user-detail-title', tabIndex: -1 }, u.name),
      h('p', { class: 'muted' }, u.email, ' · ', statusOf(u)),
      nameForm,
      h('div', { class: 'inline-form' }, h('label', { htmlFor: 'user-role', class: 'field-label' }, 'Role'), role),
      h('fieldset', { class: 'permissions' }, h('legend', {}, 'Permissions'), ...switches),
      h(
        'div',
        { class: 'user-actions' },
        unlock,
        reset,
        revoke,
      ),
      isLocked(u) ? h('p', { class: 'field-hint' }, 'Unlock lets the person sign in with their password again; Reset password also unlocks, with a new one-time password.') : null,
      error,
      done,
    );
    if (focusedId) document.getElementById(focusedId)?.focus();
  }

  #showSecret(user: PublicUser, password: string, title: string): void {
    const code = h('code', { class: 'secret-value' }, password);
    const copy = h('button', { type: 'button', class: 'small' }, 'Copy');
    copy.addEventListener('click', () => {
      navigator.clipboard?.writeText(password).then(
        () => (copy.textContent = 'Copied'),
        () => (copy.textContent = 'Copy failed: select the text'),
      );
    });
    const close = h('button', { type: 'button', class: 'small' }, 'Done');
    close.addEventListener('click', () => {
      this.#secret.hidden = true;
      replaceChildren(this.#secret);
    });
    replaceChildren(
      this.#secret,
      h('p', {}, h('strong', {}, `${title} for ${user.name}: `), code, ' ', copy, ' ', close),
      h('p', { class: 'field-hint' }, 'Shown only now. Give it to the person directly; they choose their own password at the first sign-in.'),
    );
    this.#secret.hidden = false;
    close.focus();
  }

  #buildCreateForm(): HTMLFormElement {
    const email = h('input', { type: 'email', id: 'new-user-email', name: 'email', required: true, maxLength: 254, autocomplete: 'off' });
    const name = h('input', { type: 'text', id: 'new-user-name', name: 'name', required: true, maxLength: 120, autocomplete: 'off' });
    const role = roleSelect('new-user-role', 'clinician');
    const error = h('p', { class: 'form-error', attrs: { role: 'alert' } });
    const submit = h('button', { type: 'submit', class: 'primary' }, 'Create user');
    const cancel = h('button', { type: 'button' }, 'Cancel');
    const form = h(
      'form',
      { class: 'panel form-grid new-user-form', attrs: { 'aria-label': 'New user' } },
      h('label', { class: 'field', htmlFor: 'new-user-email' }, h('span', { class: 'field-label' }, 'E-mail'), email),
      h('label', { class: 'field', htmlFor: 'new-user-name' }, h('span', { class: 'field-label' }, 'Full name'), name),
      h('label', { class: 'field', htmlFor: 'new-user-role' }, h('span', { class: 'field-label' }, 'Role'), role),
      h('p', { class: 'field-hint' }, 'Permissions start at the role’s defaults; change them after creating the user.'),
      error,
      h('div', { class: 'form-actions' }, submit, cancel),
    );
    const hide = () => {
      form.hidden = true;
      form.reset();
      error.textContent = '';
      this.#newButton.hidden = false;
      this.#newButton.focus();
    };
    cancel.addEventListener('click', hide);
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      submit.disabled = true;
      error.textContent = '';
      this.ctx.api
        .post<{ user: PublicUser; oneTimePassword: string }>('/api/admin/users', { email: email.value.trim(), name: name.value.trim(), role: role.value })
        .then(({ user, oneTimePassword }) => {
          hide();
          this.#replace(user);
          this.#status.textContent = `${this.#users.length} users.`;
          this.#showSecret(user, oneTimePassword, 'One-time password');
        })
        .catch((err) => {
          error.textContent = describeError(err);
        })
        .finally(() => {
          submit.disabled = false;
        });
    });
    return form;
  }
}
