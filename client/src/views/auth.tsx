// Signing in and the steps the server may require first: the one-time password change and the
// TOTP enrolment. Each form shows the server's own message for what went wrong; a wrong e-mail,
// password or code is one generic message, as the server answers it.
//
// Each view is a Preact component rendered into the page's <main>; the function that makes the
// view keeps the shape the application shell expects (`View`: element and dispose).
import { render, type ComponentChildren, type VNode } from 'preact';
import { useLayoutEffect, useRef, useState } from 'preact/hooks';
import { ApiError, describeError } from '../api';
import type { AppContext, View } from '../context';
import type { MeResponse } from '../../../src/protocol/identity';

let fieldCount = 0;

/** A field id that stays the same across renders of one form. */
function useFieldId(): string {
  return useState(() => `auth-field-${++fieldCount}`)[0];
}

/** A labelled input (the child, carrying `id`); the hint is its description, not part of its name. */
function Field({ id, label, hint, hidden, children }: { id: string; label: string; hint?: string; hidden?: boolean; children: ComponentChildren }) {
  return (
    <div class="field" hidden={hidden}>
      <label class="field-label" htmlFor={id}>
        {label}
      </label>
      {children}
      {hint ? (
        <span class="field-hint" id={`${id}-hint`}>
          {hint}
        </span>
      ) : null}
    </div>
  );
}

function Card({ title, children }: { title: string; children: ComponentChildren }) {
  return (
    <section class="auth-card">
      <p class="auth-brand">Case collaboration</p>
      <h1>{title}</h1>
      {children}
    </section>
  );
}

/** The server's message for what went wrong, read out as soon as it appears. */
function FormError({ text }: { text: string }) {
  return (
    <p class="form-error" role="alert" aria-live="assertive">
      {text}
    </p>
  );
}

/** Focuses `ref`'s element once the page holds the view (the shell attaches it after this render). */
function useInitialFocus(ref: { current: HTMLElement | null }): void {
  useLayoutEffect(() => queueMicrotask(() => ref.current?.focus()), []);
}

/** Focus for an element that the next render shows (a hidden element cannot take focus). */
function useFocusAfterRender(): (ref: { current: HTMLElement | null }) => void {
  const pending = useRef<{ current: HTMLElement | null } | null>(null);
  useLayoutEffect(() => {
    const target = pending.current;
    pending.current = null;
    target?.current?.focus();
  });
  return (ref) => {
    pending.current = ref;
  };
}

function mount(vnode: VNode): View {
  const element = document.createElement('main');
  element.className = 'auth-page';
  render(vnode, element);
  return { element, dispose: () => render(null, element) };
}

function SignIn({ ctx, notice }: { ctx: AppContext; notice: string | null }) {
  const emailId = useFieldId();
  const passwordId = useFieldId();
  const totpId = useFieldId();
  const [email, setEmail] = useState('');
  const [password, setPassword] = useState('');
  const [totp, setTotp] = useState('');
  const [totpShown, setTotpShown] = useState(false);
  const [message, setMessage] = useState('');
  const [busy, setBusy] = useState(false);
  const emailRef = useRef<HTMLInputElement>(null);
  const totpRef = useRef<HTMLInputElement>(null);
  const focusAfterRender = useFocusAfterRender();
  useInitialFocus(emailRef);

  const submit = (event: Event) => {
    event.preventDefault();
    setMessage('');
    setBusy(true);
    const code = !totpShown || totp.trim() === '' ? undefined : totp.trim();
    ctx.api
      .login(email, password, code)
      .then((me) => ctx.signedIn(me, { currentPassword: password }))
      .catch((err: unknown) => {
        // Busy was on: this render happens, and with it the focus below.
        setBusy(false);
        if (err instanceof ApiError && err.code === 'TOTP_REQUIRED') {
          setTotpShown(true);
          setMessage(err.message);
          focusAfterRender(totpRef);
          return;
        }
        if (err instanceof ApiError && err.code === 'INVALID_CREDENTIALS') setTotp('');
        setMessage(describeError(err));
      });
  };

  return (
    <Card title="Sign in">
      <form class="form" onSubmit={submit}>
        {notice ? (
          <p class="notice" role="status">
            {notice}
          </p>
        ) : null}
        <Field id={emailId} label="E-mail">
          <input
            ref={emailRef}
            id={emailId}
            type="email"
            name="email"
            required
            autocomplete="username"
            spellcheck={false}
            value={email}
            onInput={(e) => setEmail(e.currentTarget.value)}
          />
        </Field>
        <Field id={passwordId} label="Password">
          <input id={passwordId} type="password" name="password" required autocomplete="current-password" value={password} onInput={(e) => setPassword(e.currentTarget.value)} />
        </Field>
        <Field id={totpId} label="Authenticator code" hint="Six digits from your authenticator app." hidden={!totpShown}>
          <input
            ref={totpRef}
            id={totpId}
            aria-describedby={`${totpId}-hint`}
            type="text"
            name="totp"
            inputMode="numeric"
            autocomplete="one-time-code"
            pattern={'\\d{6}'}
            maxLength={6}
            required={totpShown}
            value={totp}
            onInput={(e) => setTotp(e.currentTarget.value)}
          />
        </Field>
        <FormError text={message} />
        <button type="submit" class="primary" disabled={busy}>
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
      </form>
    </Card>
  );
}

export function signInView(ctx: AppContext, notice: string | null): View {
  return mount(<SignIn ctx={ctx} notice={notice} />);
}

function PasswordChange({ ctx, me, knownCurrent }: { ctx: AppContext; me: MeResponse; knownCurrent: string | null }) {
  const min = me.site.policy.minPasswordLength;
  const currentId = useFieldId();
  const nextId = useFieldId();
  const repeatId = useFieldId();
  const [current, setCurrent] = useState('');
  const [next, setNext] = useState('');
  const [repeat, setRepeat] = useState('');
  const [message, setMessage] = useState('');
  const [busy, setBusy] = useState(false);
  const currentRef = useRef<HTMLInputElement>(null);
  const nextRef = useRef<HTMLInputElement>(null);
  const repeatRef = useRef<HTMLInputElement>(null);
  useInitialFocus(knownCurrent === null ? currentRef : nextRef);

  const submit = (event: Event) => {
    event.preventDefault();
    setMessage('');
    if (next !== repeat) {
      setMessage('The two new passwords differ.');
      repeatRef.current?.focus();
      return;
    }
    if (next.length < min) {
      setMessage(`The new password needs at least ${min} characters.`);
      nextRef.current?.focus();
      return;
    }
    setBusy(true);
    ctx.api
      .post<MeResponse>('/api/auth/password', { currentPassword: knownCurrent ?? current, newPassword: next })
      .then((updated) => ctx.signedIn(updated))
      .catch((err: unknown) => {
        setBusy(false);
        setMessage(describeError(err));
      });
  };

  return (
    <Card title="Choose your password">
      <form class="form" onSubmit={submit}>
        <p>Your password was set by an administrator and works only once. Choose your own password to continue.</p>
        {/* Just typed on the sign-in page: not asked again (kept in memory only until this form is done). */}
        {knownCurrent === null ? (
          <Field id={currentId} label="One-time password">
            <input
              ref={currentRef}
              id={currentId}
              type="password"
              name="current-password"
              required
              autocomplete="current-password"
              value={current}
              onInput={(e) => setCurrent(e.currentTarget.value)}
            />
          </Field>
        ) : null}
        <Field id={nextId} label="New password" hint={`At least ${min} characters. A long passphrase is best; common passwords are refused.`}>
          <input
            ref={nextRef}
            id={nextId}
            aria-describedby={`${nextId}-hint`}
            type="password"
            name="new-password"
            required
            autocomplete="new-password"
            minLength={min}
            value={next}
            onInput={(e) => setNext(e.currentTarget.value)}
          />
        </Field>
        <Field id={repeatId} label="Repeat the new password">
          <input
            ref={repeatRef}
            id={repeatId}
            type="password"
            name="repeat-password"
            required
            autocomplete="new-password"
            minLength={min}
            value={repeat}
            onInput={(e) => setRepeat(e.currentTarget.value)}
          />
        </Field>
        <FormError text={message} />
        <button type="submit" class="primary" disabled={busy}>
          {busy ? 'Changing…' : 'Change password'}
        </button>
        <button type="button" class="link" onClick={() => void ctx.signOut()}>
          Sign out
        </button>
      </form>
    </Card>
  );
}

export function passwordChangeView(ctx: AppContext, me: MeResponse, knownCurrent: string | null): View {
  return mount(<PasswordChange ctx={ctx} me={me} knownCurrent={knownCurrent} />);
}

interface Enrolment {
  otpauthUri: string;
  qrDataUrl: string;
  secret: string;
}

function TotpEnrol({ ctx }: { ctx: AppContext }) {
  const codeId = useFieldId();
  /** The set-up from the server; null while it is asked for, 'failed' when it could not be had. */
  const [enrolment, setEnrolment] = useState<Enrolment | 'failed' | null>(null);
  const [code, setCode] = useState('');
  const [message, setMessage] = useState('');
  const [busy, setBusy] = useState(false);
  const codeRef = useRef<HTMLInputElement>(null);

  useLayoutEffect(() => {
    ctx.api
      .post<Enrolment>('/api/auth/totp/enrol')
      .then((answer) => {
        setEnrolment(answer);
        codeRef.current?.focus();
      })
      .catch((err: unknown) => {
        setEnrolment('failed');
        setMessage(describeError(err));
      });
  }, []);

  const submit = (event: Event) => {
    event.preventDefault();
    setMessage('');
    setBusy(true);
    ctx.api
      .post<MeResponse>('/api/auth/totp/confirm', { code: code.trim() })
      .then((me) => ctx.signedIn(me))
      .catch((err: unknown) => {
        setBusy(false);
        setCode('');
        setMessage(describeError(err));
      });
  };

  let setup: ComponentChildren = null;
  if (enrolment === null) setup = <p>Preparing your authenticator set-up…</p>;
  else if (enrolment !== 'failed') {
    setup = (
      <>
        {/* Only an image data URL from our own server is shown; anything else is not an image to load. */}
        {enrolment.qrDataUrl.startsWith('data:image/') ? <img class="totp-qr" src={enrolment.qrDataUrl} alt="QR code for your authenticator app" width={200} height={200} /> : null}
        <p class="field-hint">
          Cannot scan? Enter this key in the app: <code class="totp-secret">{enrolment.secret.replace(/(.{4})/g, '$1 ').trim()}</code>
        </p>
      </>
    );
  }

  return (
    <Card title="Set up two-factor authentication">
      <form class="form" onSubmit={submit}>
        <p>This site requires two-factor authentication. Scan the code with an authenticator app, then enter the six digits it shows.</p>
        <div class="totp-setup">{setup}</div>
        <Field id={codeId} label="Code from the app">
          <input
            ref={codeRef}
            id={codeId}
            type="text"
            name="code"
            required
            inputMode="numeric"
            autocomplete="one-time-code"
            pattern={'\\d{6}'}
            maxLength={6}
            value={code}
            onInput={(e) => setCode(e.currentTarget.value)}
          />
        </Field>
        <FormError text={message} />
        <button type="submit" class="primary" disabled={busy || enrolment === null || enrolment === 'failed'}>
          {busy ? 'Confirming…' : 'Confirm'}
        </button>
        <button type="button" class="link" onClick={() => void ctx.signOut()}>
          Sign out
        </button>
      </form>
    </Card>
  );
}

export function totpEnrolView(ctx: AppContext): View {
  return mount(<TotpEnrol ctx={ctx} />);
}
