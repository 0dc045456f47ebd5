// Signing in and the steps the server may require first: the one-time password change and the
// TOTP enrolment. Each form shows the server's own message for what went wrong; a wrong e-mail,
// password or code is one generic message, as the server answers it.
import { ApiError, describeError } from '../api';
import type { AppContext, View } from '../context';
import { h, replaceChildren } from '../dom';
import type { MeResponse } from '../../../src/protocol/identity';

let fieldCount = 0;

/** A labelled input; the hint is its description, not part of its name. */
function field(label: string, input: HTMLInputElement, hint?: string): HTMLElement {
  const id = `auth-field-${++fieldCount}`;
  input.id = id;
  const hintElement = hint ? h('span', { class: 'field-hint', id: `${id}-hint` }, hint) : null;
  if (hintElement) input.setAttribute('aria-describedby', hintElement.id);
  return h('div', { class: 'field' }, h('label', { class: 'field-label', htmlFor: id }, label), input, hintElement);
}

function card(title: string, ...content: (HTMLElement | null)[]): HTMLElement {
  return h('main', { class: 'auth-page' }, h('section', { class: 'auth-card' }, h('p', { class: 'auth-brand' }, 'Case collaboration'), h('h1', {}, title), ...content));
}

function busy(button: HTMLButtonElement, on: boolean, label: string): void {
  button.disabled = on;
  button.textContent = label;
}

export function signInView(ctx: AppContext, notice: string | null): View {
  const email = h('input', { type: 'email', name: 'email', required: true, autocomplete: 'username', spellcheck: false });
  const password = h('input', { type: 'password', name: 'password', required: true, autocomplete: 'current-password' });
  const totp = h('input', { type: 'text', name: 'totp', inputMode: 'numeric', autocomplete: 'one-time-code', pattern: '\\d{6}', maxLength: 6 });
  const totpField = field('Authenticator code', totp, 'Six digits from your authenticator app.');
  totpField.hidden = true;
  const message = h('p', { class: 'form-error', attrs: { role: 'alert', 'aria-live': 'assertive' } });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Sign in');
  const form = h(
    'form',
    { class: 'form', noValidate: false },
    notice ? h('p', { class: 'notice', attrs: { role: 'status' } }, notice) : null,
    field('E-mail', email),
    field('Password', password),
    totpField,
    message,
    submit,
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    message.textContent = '';
    busy(submit, true, 'Signing in…');
    const code = totpField.hidden || totp.value.trim() === '' ? undefined : totp.value.trim();
    ctx.api
      .login(email.value, password.value, code)
      .then((me) => ctx.signedIn(me, { currentPassword: password.value }))
      .catch((err: unknown) => {
        busy(submit, false, 'Sign in');
        if (err instanceof ApiError && err.code === 'TOTP_REQUIRED') {
          totpField.hidden = false;
          message.textContent = err.message;
          totp.required = true;
          totp.focus();
          return;
        }
        if (err instanceof ApiError && err.code === 'INVALID_CREDENTIALS') totp.value = '';
        message.textContent = describeError(err);
      });
  });
  const view = card('Sign in', form);
  queueMicrotask(() => email.focus());
  return { element: view };
}

export function passwordChangeView(ctx: AppContext, me: MeResponse, knownCurrent: string | null): View {
  const min = me.site.policy.minPasswordLength;
  const current = h('input', { type: 'password', name: 'current-password', required: true, autocomplete: 'current-password' });
  const next = h('input', { type: 'password', name: 'new-password', required: true, autocomplete: 'new-password', minLength: min });
  const repeat = h('input', { type: 'password', name: 'repeat-password', required: true, autocomplete: 'new-password', minLength: min });
  const message = h('p', { class: 'form-error', attrs: { role: 'alert', 'aria-live': 'assertive' } });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Change password');
  const form = h(
    'form',
    { class: 'form' },
    h('p', {}, 'Your password was set by an administrator and works only once. Choose your own password to continue.'),
    // Just typed on the sign-in page: not asked again (kept in memory only until this form is done).
    knownCurrent === null ? field('One-time password', current) : null,
    field('New password', next, `At least ${min} characters. A long passphrase is best; common passwords are refused.`),
    field('Repeat the new password', repeat),
    message,
    submit,
    h('button', { type: 'button', class: 'link', on: { click: () => void ctx.signOut() } }, 'Sign out'),
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    message.textContent = '';
    if (next.value !== repeat.value) {
      message.textContent = 'The two new passwords differ.';
      repeat.focus();
      return;
    }
    if (next.value.length < min) {
      message.textContent = `The new password needs at least ${min} characters.`;
      next.focus();
      return;
    }
    busy(submit, true, 'Changing…');
    ctx.api
      .post<MeResponse>('/api/auth/password', { currentPassword: knownCurrent ?? current.value, newPassword: next.value })
      .then((updated) => ctx.signedIn(updated))
      .catch((err: unknown) => {
        busy(submit, false, 'Change password');
        message.textContent = describeError(err);
      });
  });
  queueMicrotask(() => (knownCurrent === null ? current : next).focus());
  return { element: card('Choose your password', form) };
}

interface Enrolment {
  otpauthUri: string;
  qrDataUrl: string;
  secret: string;
}

export function totpEnrolView(ctx: AppContext): View {
  const setup = h('div', { class: 'totp-setup' }, h('p', {}, 'Preparing your authenticator set-up…'));
  const code = h('input', { type: 'text', name: 'code', required: true, inputMode: 'numeric', autocomplete: 'one-time-code', pattern: '\\d{6}', maxLength: 6 });
  const message = h('p', { class: 'form-error', attrs: { role: 'alert', 'aria-live': 'assertive' } });
  const submit = h('button', { type: 'submit', class: 'primary', disabled: true }, 'Confirm');
  const form = h(
    'form',
    { class: 'form' },
    h('p', {}, 'This site requires two-factor authentication. Scan the code with an authenticator app, then enter the six digits it shows.'),
    setup,
    field('Code from the app', code),
    message,
    submit,
    h('button', { type: 'button', class: 'link', on: { click: () => void ctx.signOut() } }, 'Sign out'),
  );
  ctx.api
    .post<Enrolment>('/api/auth/totp/enrol')
    .then((enrolment) => {
      // Only an image data URL from our own server is shown; anything else is not an image to load.
      const img = enrolment.qrDataUrl.startsWith('data:image/') ? h('img', { class: 'totp-qr', src: enrolment.qrDataUrl, alt: 'QR code for your authenticator app', width: 200, height: 200 }) : null;
      const grouped = enrolment.secret.replace(/(.{4})/g, '$1 ').trim();
      replaceChildren(setup, img, h('p', { class: 'field-hint' }, 'Cannot scan? Enter this key in the app: ', h('code', { class: 'totp-secret' }, grouped)));
      submit.disabled = false;
      code.focus();
    })
    .catch((err: unknown) => {
      replaceChildren(setup);
      message.textContent = describeError(err);
    });
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    message.textContent = '';
    busy(submit, true, 'Confirming…');
    ctx.api
      .post<MeResponse>('/api/auth/totp/confirm', { code: code.value.trim() })
      .then((me) => ctx.signedIn(me))
      .catch((err: unknown) => {
        busy(submit, false, 'Confirm');
        code.value = '';
        message.textContent = describeError(err);
      });
  });
  return { element: card('Set up two-factor authentication', form) };
}
