// Site admin: the site's users. List, create (the one-time password is shown once), and for one
// user: name, role, the six permissions as switches (each saved at once), reset password (which
// also lifts a lockout), and ending their sessions.
//
// One component holds the list, the selection and the outcome of the last action; the table
// rows and the detail panel are keyed by user id, so an answer from the server updates them in
// place and the control that had focus keeps it.
import type { ComponentChildren, TargetedEvent, TargetedSubmitEvent } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { describeError } from '../api';
import type { AppContext } from '../context';
import { formatDateTime } from '../dom';
import { keysOf, PERMISSION_HINT, PERMISSION_LABEL, ROLE_LABEL } from '../labels';
import type { Permission, PublicUser, Role } from '../../../src/protocol/identity';
import { keepFocus, useAlive, useFocusAfterRender } from './hooks';

/** A second click within this time confirms an action that cannot be undone. */
const CONFIRM_MS = 6000;
/** How far back the security summary looks. */
const ALERT_DAYS = 7;

interface Alerts {
  since: string;
  failedLogins: number;
  lockouts: { at: string; userId: string; email: string | null; name: string | null; ip: string | null; lockedUntil: string }[];
}

/** The outcome of the last action on the selected user (one of the two is empty). */
interface Outcome {
  error: string;
  ok: string;
}

/** A one-time password on show, with the element to give focus back to when it is closed. */
interface Secret {
  user: PublicUser;
  password: string;
  title: string;
  returnFocus: Element | null;
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

function byName(users: PublicUser[]): PublicUser[] {
  return users.sort((a, b) => a.name.localeCompare(b.name));
}

function RoleOptions() {
  return (
    <>
      {keysOf(ROLE_LABEL).map((r) => (
        <option key={r} value={r}>
          {ROLE_LABEL[r]}
        </option>
      ))}
    </>
  );
}

/** A button that asks for a second click before it acts. */
function ConfirmButton({ label, confirmLabel, action }: { label: string; confirmLabel: string; action: () => Promise<void> }) {
  const [armed, setArmed] = useState(false);
  const [busy, setBusy] = useState(false);
  const timer = useRef<number | null>(null);
  const alive = useAlive();
  useEffect(
    () => () => {
      if (timer.current !== null) window.clearTimeout(timer.current);
    },
    [],
  );
  const disarm = () => {
    if (timer.current !== null) window.clearTimeout(timer.current);
    timer.current = null;
    setArmed(false);
  };
  const click = (e: TargetedEvent<HTMLButtonElement>) => {
    if (timer.current === null) {
      timer.current = window.setTimeout(disarm, CONFIRM_MS);
      setArmed(true);
      return;
    }
    disarm();
    const refocus = keepFocus(e.currentTarget);
    setBusy(true);
    void action().finally(() => {
      if (!alive.current) return;
      setBusy(false);
      refocus();
    });
  };
  return (
    <button type="button" class={armed ? 'small armed' : 'small'} disabled={busy} onClick={click} onBlur={disarm}>
      {armed ? confirmLabel : label}
    </button>
  );
}

interface DetailProps {
  ctx: AppContext;
  user: PublicUser;
  outcome: Outcome;
  setOutcome: (outcome: Outcome) => void;
  /** An answer of the server about this user. */
  onUser: (user: PublicUser) => void;
  /** Shows a one-time password; `returnFocus` gets focus when it is closed. */
  onSecret: (user: PublicUser, password: string, title: string, returnFocus: Element | null) => void;
  /** Focus goes to the panel's title (after an unlock removes the button that had it). */
  focusTitle: () => void;
}

/** The selected user's panel, keyed by user id: switching users starts from that user's values. */
function UserDetail({ ctx, user: u, outcome, setOutcome, onUser, onSecret, focusTitle }: DetailProps) {
  const [name, setName] = useState(u.name);
  const [role, setRole] = useState<Role | null>(null);
  /** Switches whose change is on its way to the server, with the value asked for. */
  const [switching, setSwitching] = useState<Partial<Record<Permission, boolean>>>({});
  const alive = useAlive();

  const fail = (err: unknown) => setOutcome({ error: describeError(err), ok: '' });
  const ok = (text: string) => setOutcome({ error: '', ok: text });
  const patch = async (body: object, what: string) => {
    const { user } = await ctx.api.patch<{ user: PublicUser }>(`/api/admin/users/${u.id}`, body);
    onUser(user);
    ok(what);
    return user;
  };

  const saveName = (e: TargetedSubmitEvent<HTMLFormElement>) => {
    e.preventDefault();
    patch({ name: name.trim() }, 'Name saved.').then((user) => alive.current && setName(user.name), fail);
  };

  const changeRole = (e: TargetedEvent<HTMLSelectElement>) => {
    const next = e.currentTarget.value as Role;
    setRole(next);
    patch({ role: next }, `Role changed to ${ROLE_LABEL[next]}.`)
      .catch(fail)
      .finally(() => alive.current && setRole(null));
  };

  const toggle = (p: Permission, e: TargetedEvent<HTMLInputElement>) => {
    const box = e.currentTarget;
    const on = box.checked;
    const refocus = keepFocus(box);
    setSwitching((s) => ({ ...s, [p]: on }));
    patch({ permissions: { [p]: on } }, `${PERMISSION_LABEL[p]} ${on ? 'on' : 'off'}${p === 'stopAccess' && on ? '; their sessions were ended' : ''}.`)
      .catch(fail)
      .finally(() => {
        if (!alive.current) return;
        setSwitching(({ [p]: _, ...rest }) => rest);
        refocus();
      });
  };

  // Unlock keeps the password (the person proved who they are to the help desk); a reset also
  // clears the lock and issues a new one-time password.
  const unlock = async () => {
    try {
      const { user } = await ctx.api.post<{ user: PublicUser }>(`/api/admin/users/${u.id}/unlock`);
      onUser(user);
      ok(`${user.name} is unlocked and can sign in with their password.`);
      focusTitle();
    } catch (err) {
      fail(err);
    }
  };
  const reset = async () => {
    // The button that asked (it is disabled, so without focus, by the time the password arrives).
    const from = document.activeElement;
    try {
      const { user, oneTimePassword } = await ctx.api.post<{ user: PublicUser; oneTimePassword: string }>(`/api/admin/users/${u.id}/reset-password`);
      onUser(user);
      onSecret(user, oneTimePassword, 'New one-time password', from);
    } catch (err) {
      fail(err);
    }
  };
  const revoke = async () => {
    try {
      const { revoked } = await ctx.api.post<{ revoked: number }>(`/api/admin/users/${u.id}/revoke-sessions`);
      ok(revoked === 0 ? 'No session was open.' : `${revoked} session${revoked === 1 ? '' : 's'} ended.`);
    } catch (err) {
      fail(err);
    }
  };

  const locked = isLocked(u);
  return (
    <>
      <p class="muted">
        {u.email} · {statusOf(u)}
      </p>
      <form class="inline-form" onSubmit={saveName}>
        <label for="user-name" class="field-label">
          Name
        </label>
        <input type="text" id="user-name" name="name" value={name} maxLength={120} required autocomplete="off" onInput={(e) => setName(e.currentTarget.value)} />
        <button type="submit" class="small">
          Save name
        </button>
      </form>
      <div class="inline-form">
        <label for="user-role" class="field-label">
          Role
        </label>
        <select id="user-role" name="role" value={role ?? u.role} onChange={changeRole}>
          <RoleOptions />
        </select>
      </div>
      <fieldset class="permissions">
        <legend>Permissions</legend>
        {keysOf(PERMISSION_LABEL).map((p) => (
          <div key={p} class={`switch-row${p === 'stopAccess' ? ' danger-zone' : ''}`}>
            <input
              type="checkbox"
              id={`perm-${p}`}
              name={p}
              role="switch"
              aria-describedby={`perm-${p}-hint`}
              checked={switching[p] ?? u.permissions[p]}
              disabled={p in switching}
              onChange={(e) => toggle(p, e)}
            />
            <label for={`perm-${p}`}>{PERMISSION_LABEL[p]}</label>
            <span class="field-hint" id={`perm-${p}-hint`}>
              {PERMISSION_HINT[p]}
            </span>
          </div>
        ))}
      </fieldset>
      <div class="user-actions">
        {locked ? <ConfirmButton key="unlock" label="Unlock" confirmLabel="Click again to unlock" action={unlock} /> : null}
        <ConfirmButton key="reset" label="Reset password" confirmLabel="Click again to confirm" action={reset} />
        <ConfirmButton key="revoke" label="End all sessions" confirmLabel="Click again to confirm" action={revoke} />
      </div>
      {locked ? <p class="field-hint">Unlock lets the person sign in with their password again; Reset password also unlocks, with a new one-time password.</p> : null}
      <p class="form-error" role="alert">
        {outcome.error}
      </p>
      <p class="form-ok" role="status">
        {outcome.ok}
      </p>
    </>
  );
}

/** The one-time password, shown once; keyed by the password so "Copied" starts afresh. */
function SecretNotice({ secret, onDone }: { secret: Secret; onDone: () => void }) {
  const [copy, setCopy] = useState('Copy');
  const alive = useAlive();
  const copyIt = () => {
    navigator.clipboard?.writeText(secret.password).then(
      () => alive.current && setCopy('Copied'),
      () => alive.current && setCopy('Copy failed: select the text'),
    );
  };
  return (
    <>
      <p>
        <strong>{`${secret.title} for ${secret.user.name}: `}</strong>
        <code class="secret-value">{secret.password}</code>{' '}
        <button type="button" class="small" onClick={copyIt}>
          {copy}
        </button>{' '}
        <button type="button" class="small secret-done" onClick={onDone}>
          Done
        </button>
      </p>
      <p class="field-hint">Shown only now. Give it to the person directly; they choose their own password at the first sign-in.</p>
    </>
  );
}

function SecurityAlerts({ alerts, onManage }: { alerts: Alerts | { error: string } | null; onManage: (userId: string) => void }) {
  let body: ComponentChildren = null;
  if (alerts && 'error' in alerts) body = <p class="form-error">{alerts.error}</p>;
  else if (alerts) {
    body = (
      <>
        <p class={alerts.failedLogins > 0 ? 'alert-count' : 'muted'}>
          {alerts.failedLogins === 0 ? 'No failed sign-ins.' : `${alerts.failedLogins} failed sign-in${alerts.failedLogins === 1 ? '' : 's'}.`}
        </p>
        {alerts.lockouts.length ? (
          <ul class="lockout-list">
            {alerts.lockouts.map((l) => (
              <li key={`${l.at} ${l.userId}`} class="lockout">
                <strong>{l.name ?? 'A deleted user'}</strong>
                {l.email ? ` (${l.email})` : ''}
                {` locked at ${formatDateTime(l.at)}`}
                {l.ip ? ` after failed sign-ins from ${l.ip}` : ''}
                {l.lockedUntil ? `, until ${formatDateTime(l.lockedUntil)}. ` : '. '}
                {l.name ? (
                  <button type="button" class="link" onClick={() => onManage(l.userId)}>
                    {`Manage ${l.name}`}
                  </button>
                ) : null}
              </li>
            ))}
          </ul>
        ) : (
          <p class="muted">No account was locked.</p>
        )}
      </>
    );
  }
  return (
    <section class="panel security-alerts" aria-labelledby="security-alerts-title">
      <h2 id="security-alerts-title">{`Security, last ${ALERT_DAYS} days`}</h2>
      {body}
    </section>
  );
}

interface CreateProps {
  ctx: AppContext;
  hidden: boolean;
  onCancel: () => void;
  onCreated: (user: PublicUser, oneTimePassword: string) => void;
  emailRef: { current: HTMLInputElement | null };
}

/** The new-user form; it empties itself when it is hidden. */
function CreateUserForm({ ctx, hidden, onCancel, onCreated, emailRef }: CreateProps) {
  const [email, setEmail] = useState('');
  const [name, setName] = useState('');
  const [role, setRole] = useState<Role>('clinician');
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const alive = useAlive();
  useEffect(() => {
    if (!hidden) return;
    setEmail('');
    setName('');
    setRole('clinician');
    setError('');
  }, [hidden]);
  const submit = (e: TargetedSubmitEvent<HTMLFormElement>) => {
    e.preventDefault();
    // Pressing Enter in a field keeps focus there; a click on "Create user" gets it back if refused.
    const refocus = e.submitter ? keepFocus(e.submitter as HTMLElement) : () => undefined;
    setBusy(true);
    setError('');
    ctx.api
      .post<{ user: PublicUser; oneTimePassword: string }>('/api/admin/users', { email: email.trim(), name: name.trim(), role })
      .then(
        ({ user, oneTimePassword }) => alive.current && onCreated(user, oneTimePassword),
        (err) => {
          if (!alive.current) return;
          setError(describeError(err));
          refocus();
        },
      )
      .finally(() => alive.current && setBusy(false));
  };
  return (
    <form class="panel form-grid new-user-form" aria-label="New user" hidden={hidden} onSubmit={submit}>
      <label class="field" for="new-user-email">
        <span class="field-label">E-mail</span>
        <input type="email" id="new-user-email" name="email" required maxLength={254} autocomplete="off" ref={emailRef} value={email} onInput={(e) => setEmail(e.currentTarget.value)} />
      </label>
      <label class="field" for="new-user-name">
        <span class="field-label">Full name</span>
        <input type="text" id="new-user-name" name="name" required maxLength={120} autocomplete="off" value={name} onInput={(e) => setName(e.currentTarget.value)} />
      </label>
      <label class="field" for="new-user-role">
        <span class="field-label">Role</span>
        <select id="new-user-role" name="role" value={role} onChange={(e) => setRole(e.currentTarget.value as Role)}>
          <RoleOptions />
        </select>
      </label>
      <p class="field-hint">Permissions start at the role’s defaults; change them after creating the user.</p>
      <p class="form-error" role="alert">
        {error}
      </p>
      <div class="form-actions">
        <button type="submit" class="primary" disabled={busy}>
          Create user
        </button>
        <button type="button" onClick={onCancel}>
          Cancel
        </button>
      </div>
    </form>
  );
}

export function UsersView({ ctx }: { ctx: AppContext }) {
  const [users, setUsers] = useState<PublicUser[] | null>(null);
  const [listError, setListError] = useState<string | null>(null);
  const [alerts, setAlerts] = useState<Alerts | { error: string } | null>(null);
  const [selected, setSelected] = useState<string | null>(null);
  const [outcome, setOutcome] = useState<Outcome>({ error: '', ok: '' });
  const [creating, setCreating] = useState(false);
  const [secret, setSecret] = useState<Secret | null>(null);
  const alive = useAlive();
  const focusAfterRender = useFocusAfterRender();
  const newButton = useRef<HTMLButtonElement>(null);
  const newEmail = useRef<HTMLInputElement>(null);
  const detailTitle = useRef<HTMLHeadingElement>(null);
  const secretPanel = useRef<HTMLDivElement>(null);

  useEffect(() => {
    ctx.api.get<{ users: PublicUser[] }>('/api/admin/users').then(
      ({ users }) => alive.current && setUsers(byName(users)),
      (err) => alive.current && setListError(describeError(err)),
    );
    // Lockouts and failed sign-ins of the last days (from the audit trail; reading them is audited).
    ctx.api.get<Alerts>(`/api/admin/alerts?days=${ALERT_DAYS}`).then(
      (a) => alive.current && setAlerts(a),
      (err) => alive.current && setAlerts({ error: describeError(err) }),
    );
  }, [ctx]);

  const replace = (user: PublicUser) => {
    if (!alive.current) return;
    setUsers((list) => byName([...(list ?? []).filter((u) => u.id !== user.id), user]));
  };

  const select = (id: string, open = false) => {
    const next = selected === id && !open ? null : id;
    setSelected(next);
    setOutcome({ error: '', ok: '' });
    if (next) focusAfterRender(() => detailTitle.current);
  };

  const showSecret = (user: PublicUser, password: string, title: string, returnFocus: Element | null) => {
    if (!alive.current) return;
    setSecret({ user, password, title, returnFocus });
    focusAfterRender(() => secretPanel.current?.querySelector<HTMLElement>('.secret-done'));
  };

  const closeSecret = () => {
    const back = secret?.returnFocus;
    setSecret(null);
    // Back to where the password came from (the reset button), else to "New user".
    focusAfterRender(() => (back instanceof HTMLElement && back !== document.body && back.isConnected && !back.closest('[hidden]') ? back : newButton.current));
  };

  const hideCreate = () => {
    setCreating(false);
    focusAfterRender(() => newButton.current);
  };

  const me = ctx.me?.user.id;
  const user = users?.find((u) => u.id === selected);
  const status = users ? `${users.length} user${users.length === 1 ? '' : 's'}.` : (listError ?? 'Loading…');
  return (
    <div class="admin-users">
      <SecurityAlerts alerts={alerts} onManage={(id) => select(id, true)} />
      <div class="admin-actions">
        <button
          type="button"
          class="primary"
          ref={newButton}
          hidden={creating}
          onClick={() => {
            setCreating(true);
            focusAfterRender(() => newEmail.current);
          }}
        >
          New user
        </button>
      </div>
      <CreateUserForm
        ctx={ctx}
        hidden={!creating}
        emailRef={newEmail}
        onCancel={hideCreate}
        onCreated={(created, password) => {
          hideCreate();
          replace(created);
          showSecret(created, password, 'One-time password', newButton.current);
        }}
      />
      <div class="one-time-password" role="alert" hidden={!secret} ref={secretPanel}>
        {secret ? <SecretNotice key={secret.password} secret={secret} onDone={closeSecret} /> : null}
      </div>
      <p class="list-summary" role="status">
        {status}
      </p>
      <div class="admin-split">
        <div class="table-wrap">
          <table class="case-table user-table">
            <caption class="visually-hidden">Users of this site</caption>
            <thead>
              <tr>
                <th scope="col">Name</th>
                <th scope="col">E-mail</th>
                <th scope="col">Role</th>
                <th scope="col">Status</th>
              </tr>
            </thead>
            <tbody>
              {(users ?? []).map((u) => (
                <tr key={u.id} class={`user-row${u.id === selected ? ' selected' : ''}`} data-user-id={u.id}>
                  <td>
                    <button type="button" class="link" aria-pressed={u.id === selected} onClick={() => select(u.id)}>
                      {u.name}
                    </button>
                    {u.id === me ? ' (you)' : ''}
                  </td>
                  <td>{u.email}</td>
                  <td>{ROLE_LABEL[u.role]}</td>
                  <td class="user-status">{statusOf(u)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
        <section class="panel user-detail" hidden={!user} aria-labelledby="user-detail-title">
          {user ? (
            <>
              <h2 id="user-detail-title" tabIndex={-1} ref={detailTitle}>
                {user.name}
              </h2>
              <UserDetail
                key={user.id}
                ctx={ctx}
                user={user}
                outcome={outcome}
                setOutcome={(o) => alive.current && setOutcome(o)}
                onUser={replace}
                onSecret={showSecret}
                focusTitle={() => alive.current && focusAfterRender(() => detailTitle.current)}
              />
            </>
          ) : null}
        </section>
      </div>
    </div>
  );
}
