// Site admin: the site policy (password minimum, two-factor requirement, inactivity sign-out,
// retention, lockout). Only the fields that changed are sent; the server's rule that a short
// minimum needs two-factor comes back as a plain message.
import { describeError } from '../api';
import type { AppContext, View } from '../context';
import { h, replaceChildren } from '../dom';
import { keysOf, POLICY_FIELDS } from '../labels';
import type { SitePolicy } from '../../../src/protocol/identity';

type SiteAnswer = { id: string; name: string; policy: SitePolicy };

export function policyView(ctx: AppContext): View {
  const form = h('form', { class: 'panel policy-form', attrs: { 'aria-label': 'Site policy' } }, h('p', { class: 'loading' }, 'Loading…'));
  let disposed = false;
  let policy: SitePolicy | null = null;

  const render = (site: SiteAnswer) => {
    policy = site.policy;
    const numbers = keysOf(POLICY_FIELDS).map((key) => {
      const f = POLICY_FIELDS[key];
      const input = h('input', { type: 'number', id: `policy-${key}`, name: key, min: String(f.min), max: String(f.max), step: '1', required: true, value: String(site.policy[key]), attrs: { 'aria-describedby': `policy-${key}-unit` } });
      return h('div', { class: 'policy-row' }, h('label', { htmlFor: `policy-${key}` }, f.label), input, h('span', { class: 'field-hint', id: `policy-${key}-unit` }, `${f.unit} (${f.min}–${f.max})`));
    });
    const totp = h('input', { type: 'checkbox', id: 'policy-requireTotp', name: 'requireTotp', checked: site.policy.requireTotp, attrs: { role: 'switch', 'aria-describedby': 'policy-requireTotp-hint' } });
    const error = h('p', { class: 'form-error', attrs: { role: 'alert' } });
    const done = h('p', { class: 'form-ok', attrs: { role: 'status' } });
    const save = h('button', { type: 'submit', class: 'primary' }, 'Save policy');
    replaceChildren(
      form,
      h('h2', {}, site.name),
      h(
        'div',
        { class: 'switch-row' },
        totp,
        h('label', { htmlFor: 'policy-requireTotp' }, 'Require two-factor authentication'),
        h('span', { class: 'field-hint', id: 'policy-requireTotp-hint' }, 'Everyone enrols an authenticator app at their next sign-in. A minimum password length under 12 needs this.'),
      ),
      ...numbers,
      error,
      done,
      h('div', { class: 'form-actions' }, save),
    );
    form.onsubmit = (e) => {
      e.preventDefault();
      if (!policy) return;
      const change: Partial<SitePolicy> = {};
      for (const key of keysOf(POLICY_FIELDS)) {
        const value = Number((form.elements.namedItem(key) as HTMLInputElement).value);
        if (value !== policy[key]) change[key] = value;
      }
      if (totp.checked !== policy.requireTotp) change.requireTotp = totp.checked;
      error.textContent = '';
      done.textContent = '';
      if (Object.keys(change).length === 0) {
        done.textContent = 'Nothing changed.';
        return;
      }
      save.disabled = true;
      ctx.api
        .patch<SiteAnswer>('/api/admin/site/policy', change)
        .then((answer) => {
          if (disposed) return;
          render(answer);
          (form.querySelector('.form-ok') as HTMLElement).textContent = 'Policy saved. It applies to new sign-ins and password changes; the inactivity limit applies at once.';
        })
        .catch((err) => {
          error.textContent = describeError(err);
        })
        .finally(() => {
          save.disabled = false;
        });
    };
  };

  ctx.api.get<SiteAnswer>('/api/site').then(
    (site) => !disposed && render(site),
    (err) => !disposed && replaceChildren(form, h('p', { class: 'form-error' }, describeError(err))),
  );
  return {
    element: form,
    dispose: () => {
      disposed = true;
    },
  };
}
