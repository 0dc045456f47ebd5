// Site admin: the site policy (password minimum, two-factor requirement, inactivity sign-out,
// retention, lockout). Only the fields that changed are sent; the server's rule that a short
// minimum needs two-factor comes back as a plain message, and what was typed stays in the form.
import type { TargetedSubmitEvent } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { describeError } from '../api';
import type { AppContext } from '../context';
import { keysOf, POLICY_FIELDS } from '../labels';
import type { SitePolicy } from '../../../src/protocol/identity';
import { keepFocus, useAlive } from './hooks';

type SiteAnswer = { id: string; name: string; policy: SitePolicy };
type NumberField = keyof typeof POLICY_FIELDS;

const SAVED = 'Policy saved. It applies to new sign-ins and password changes; the inactivity limit applies at once.';

/** The form's fields as typed (numbers stay text until the form is sent). */
function draftOf(policy: SitePolicy): Record<NumberField, string> {
  return Object.fromEntries(keysOf(POLICY_FIELDS).map((key) => [key, String(policy[key])])) as Record<NumberField, string>;
}

export function PolicyView({ ctx }: { ctx: AppContext }) {
  const [site, setSite] = useState<SiteAnswer | null>(null);
  const [loadError, setLoadError] = useState<string | null>(null);
  const alive = useAlive();
  useEffect(() => {
    ctx.api.get<SiteAnswer>('/api/site').then(
      (answer) => alive.current && setSite(answer),
      (err) => alive.current && setLoadError(describeError(err)),
    );
  }, [ctx]);
  if (!site) {
    return (
      <form class="panel policy-form" aria-label="Site policy" onSubmit={(e) => e.preventDefault()}>
        {loadError ? <p class="form-error">{loadError}</p> : <p class="loading">Loading…</p>}
      </form>
    );
  }
  return <PolicyForm ctx={ctx} site={site} />;
}

function PolicyForm({ ctx, site: loaded }: { ctx: AppContext; site: SiteAnswer }) {
  /** The policy as the server last answered it: what "changed" is measured against. */
  const [site, setSite] = useState(loaded);
  const [draft, setDraft] = useState(() => draftOf(loaded.policy));
  const [requireTotp, setRequireTotp] = useState(loaded.policy.requireTotp);
  const [error, setError] = useState('');
  const [done, setDone] = useState('');
  const [saving, setSaving] = useState(false);
  const alive = useAlive();

  const submit = (e: TargetedSubmitEvent<HTMLFormElement>) => {
    e.preventDefault();
    const policy = site.policy;
    const change: Partial<SitePolicy> = {};
    for (const key of keysOf(POLICY_FIELDS)) {
      const value = Number(draft[key]);
      if (value !== policy[key]) change[key] = value;
    }
    if (requireTotp !== policy.requireTotp) change.requireTotp = requireTotp;
    setError('');
    if (Object.keys(change).length === 0) {
      setDone('Nothing changed.');
      return;
    }
    setDone('');
    const refocus = e.submitter ? keepFocus(e.submitter as HTMLElement) : () => undefined;
    setSaving(true);
    ctx.api
      .patch<SiteAnswer>('/api/admin/site/policy', change)
      .then((answer) => {
        if (!alive.current) return;
        setSite(answer);
        setDraft(draftOf(answer.policy));
        setRequireTotp(answer.policy.requireTotp);
        setDone(SAVED);
      })
      .catch((err) => alive.current && setError(describeError(err)))
      .finally(() => {
        if (!alive.current) return;
        setSaving(false);
        refocus();
      });
  };

  return (
    <form class="panel policy-form" aria-label="Site policy" onSubmit={submit}>
      <h2>{site.name}</h2>
      <div class="switch-row">
        <input
          type="checkbox"
          id="policy-requireTotp"
          name="requireTotp"
          role="switch"
          aria-describedby="policy-requireTotp-hint"
          checked={requireTotp}
          onChange={(e) => setRequireTotp(e.currentTarget.checked)}
        />
        <label for="policy-requireTotp">Require two-factor authentication</label>
        <span class="field-hint" id="policy-requireTotp-hint">
          Everyone enrols an authenticator app at their next sign-in. A minimum password length under 12 needs this.
        </span>
      </div>
      {keysOf(POLICY_FIELDS).map((key) => {
        const f = POLICY_FIELDS[key];
        return (
          <div key={key} class="policy-row">
            <label for={`policy-${key}`}>{f.label}</label>
            <input
              type="number"
              id={`policy-${key}`}
              name={key}
              min={f.min}
              max={f.max}
              step={1}
              required
              aria-describedby={`policy-${key}-unit`}
              value={draft[key]}
              onInput={(e) => {
                const value = e.currentTarget.value;
                setDraft((d) => ({ ...d, [key]: value }));
              }}
            />
            <span class="field-hint" id={`policy-${key}-unit`}>{`${f.unit} (${f.min}–${f.max})`}</span>
          </div>
        );
      })}
      <p class="form-error" role="alert">
        {error}
      </p>
      <p class="form-ok" role="status">
        {done}
      </p>
      <div class="form-actions">
        <button type="submit" class="primary" disabled={saving}>
          Save policy
        </button>
      </div>
    </form>
  );
}
