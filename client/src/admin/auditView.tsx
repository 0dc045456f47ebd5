// Site admin: the audit trail. Search with filters (newest first, keyset pages), export of the
// same selection as CSV or FHIR (a plain download link: the server streams it), and the hash
// chain's verification (the latest result, and "Verify now"). Users are shown by name where the
// site's user list knows them; records themselves carry ids only. Rows are keyed by sequence
// number: the names fill in where they arrive after the records, without searching again.
import type { ComponentChildren, TargetedEvent, TargetedSubmitEvent } from 'preact';
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import { describeError } from '../api';
import type { AppContext } from '../context';
import { formatDateTime } from '../dom';
import { AUDIT_ACTION_LABEL, AUDIT_OUTCOME_LABEL, keysOf, ROLE_LABEL } from '../labels';
import type { AuditSearchResponse, AuditVerification, PublicAuditRecord } from '../../../src/protocol/governance';
import type { PublicUser, Role } from '../../../src/protocol/identity';
import { keepFocus, useAlive } from './hooks';

const PAGE_SIZE = 50;
const OBJECT_TYPES = ['case', 'material', 'user', 'site', 'annotation', 'chat', 'transfer', 'session'];
const COLUMNS = ['Time', 'Event', 'Action', 'Outcome', 'User', 'IP address', 'Objects', 'Details'];

/** A datetime-local value (the admin's local time) as the UTC ISO time the API takes. */
function toUtc(local: string): string | null {
  if (!local) return null;
  const t = new Date(local);
  return Number.isNaN(t.getTime()) ? null : t.toISOString();
}

/** The form's filters as the query both the search and the export links use. */
function readFilters(form: HTMLFormElement): URLSearchParams {
  const q = new URLSearchParams();
  const data = new FormData(form);
  for (const name of ['type', 'actor', 'action', 'outcome', 'objectType', 'objectId', 'ip']) {
    const v = String(data.get(name) ?? '').trim();
    if (v) q.set(name, v);
  }
  for (const name of ['from', 'to']) {
    const v = toUtc(String(data.get(name) ?? ''));
    if (v) q.set(name, v);
  }
  return q;
}

function exportLink(filters: URLSearchParams, format: string): string {
  const q = new URLSearchParams(filters);
  q.set('format', format);
  return `/api/admin/audit/export?${q}`;
}

/** The rows found so far, the cursor to older ones, and what the search is doing. */
interface Results {
  records: PublicAuditRecord[];
  cursor: string | null;
  state: { phase: 'searching' } | { phase: 'done' } | { phase: 'failed'; message: string };
}

function summaryOf({ records, cursor, state }: Results): string {
  if (state.phase === 'searching') return 'Searching…';
  if (state.phase === 'failed') return state.message;
  const n = records.length;
  return n === 0 ? 'No records match.' : `${n} record${n === 1 ? '' : 's'}${cursor ? ' (more are older)' : ''}.`;
}

/** The verification line: a result, or a sentence (not verified yet, checking, an error). */
type Verification = { result: AuditVerification } | { text: string };

function verificationText(v: AuditVerification, users: Map<string, PublicUser>): string {
  const by = v.verifiedBy === null ? 'the scheduler or the command line' : (users.get(v.verifiedBy)?.name ?? v.verifiedBy);
  return v.intact
    ? `Intact: ${v.records} record${v.records === 1 ? '' : 's'} checked, ${formatDateTime(v.verifiedAt)}, by ${by}.`
    : `Broken at record ${v.firstBreak?.seq ?? '?'} (${v.firstBreak?.reason ?? 'unknown'}): ${v.records} records checked, ${formatDateTime(v.verifiedAt)}, by ${by}. Keep the database and the logs as they are and tell your security officer.`;
}

function AuditRow({ record: r, users }: { record: PublicAuditRecord; users: Map<string, PublicUser> }) {
  const user = r.actor.userId ? users.get(r.actor.userId) : undefined;
  const who = user ? user.name : r.actor.userId ? r.actor.userId : 'system';
  const role = r.actor.role && r.actor.role in ROLE_LABEL ? ROLE_LABEL[r.actor.role as Role] : r.actor.role;
  const details = Object.entries(r.details)
    .map(([k, v]) => `${k}: ${v}`)
    .join(', ');
  return (
    <tr class={`audit-row outcome-${r.outcome}`} data-seq={String(r.seq)}>
      <td>
        <time dateTime={r.time}>{formatDateTime(r.time)}</time>
      </td>
      <td>
        <code>{r.type}</code>
      </td>
      <td>{AUDIT_ACTION_LABEL[r.action]}</td>
      <td class="audit-outcome">{AUDIT_OUTCOME_LABEL[String(r.outcome) as '0']}</td>
      <td>
        {who}
        {role ? <span class="muted">{` · ${role}`}</span> : null}
      </td>
      <td>{r.actor.ip ?? ''}</td>
      <td class="audit-objects">{r.objects.map((o) => `${o.type} ${o.id}`).join(', ')}</td>
      <td class="audit-details">{details}</td>
    </tr>
  );
}

function Field({ id, label, children }: { id: string; label: string; children: ComponentChildren }) {
  return (
    <label class="field" for={id}>
      <span class="field-label">{label}</span>
      {children}
    </label>
  );
}

function Choice({ id, name, options }: { id: string; name: string; options: [string, string][] }) {
  return (
    <select id={id} name={name}>
      <option value="">Any</option>
      {options.map(([value, text]) => (
        <option key={value} value={value}>
          {text}
        </option>
      ))}
    </select>
  );
}

export function AuditView({ ctx }: { ctx: AppContext }) {
  const [users, setUsers] = useState<PublicUser[]>([]);
  const byId = useMemo(() => new Map(users.map((u) => [u.id, u])), [users]);
  const [filters, setFilters] = useState(() => new URLSearchParams());
  const [results, setResults] = useState<Results>({ records: [], cursor: null, state: { phase: 'searching' } });
  const [verification, setVerification] = useState<Verification>({ text: '' });
  const [verifying, setVerifying] = useState(false);
  const form = useRef<HTMLFormElement>(null);
  /** Only the latest search may fill the table (a new search outruns an older page). */
  const generation = useRef(0);
  const alive = useAlive();

  const search = async (query: URLSearchParams, cursor: string | null, refocus = () => {}) => {
    const mine = ++generation.current;
    const q = new URLSearchParams(query);
    q.set('limit', String(PAGE_SIZE));
    if (cursor) q.set('cursor', cursor);
    setResults((r) => ({ ...r, state: { phase: 'searching' } }));
    try {
      const page = await ctx.api.get<AuditSearchResponse>(`/api/admin/audit?${q}`);
      if (!alive.current || mine !== generation.current) return;
      setResults((r) => ({ records: cursor ? [...r.records, ...page.records] : page.records, cursor: page.nextCursor, state: { phase: 'done' } }));
    } catch (err) {
      if (alive.current && mine === generation.current) setResults((r) => ({ ...r, state: { phase: 'failed', message: describeError(err) } }));
    }
    if (alive.current) refocus();
  };

  /** Reads the form, then searches from the newest record. */
  const searchAfresh = () => {
    if (!form.current) return;
    const q = readFilters(form.current);
    setFilters(q);
    void search(q, null);
  };

  useEffect(() => {
    void search(filters, null);
    ctx.api.get<{ users: PublicUser[] }>('/api/admin/users').then(
      ({ users }) => alive.current && setUsers(users.sort((a, b) => a.name.localeCompare(b.name))),
      // The filter still works with "Anyone"; the rows show user ids.
      () => undefined,
    );
    ctx.api.get<{ last: AuditVerification | null }>('/api/admin/audit/verify').then(
      ({ last }) => alive.current && setVerification(last ? { result: last } : { text: 'The chain has not been verified yet.' }),
      (err) => alive.current && setVerification({ text: describeError(err) }),
    );
  }, [ctx]);

  const verify = (e: TargetedEvent<HTMLButtonElement>) => {
    const refocus = keepFocus(e.currentTarget);
    setVerifying(true);
    setVerification({ text: 'Checking every record of the chain…' });
    ctx.api
      .post<AuditVerification>('/api/admin/audit/verify')
      .then((v) => alive.current && setVerification({ result: v }))
      .catch((err) => alive.current && setVerification({ text: describeError(err) }))
      .finally(() => {
        if (!alive.current) return;
        setVerifying(false);
        refocus();
      });
  };

  const submit = (e: TargetedSubmitEvent<HTMLFormElement>) => {
    e.preventDefault();
    searchAfresh();
  };
  // After the browser cleared the fields.
  const reset = () => window.setTimeout(() => alive.current && searchAfresh());

  const searching = results.state.phase === 'searching';
  const outcome = 'result' in verification ? (verification.result.intact ? ' intact' : ' broken') : '';
  return (
    <div class="admin-audit">
      <section class="panel verification-panel" aria-labelledby="verification-title">
        <h2 id="verification-title">Chain verification</h2>
        <p class={`verification${outcome}`} role="status">
          {'result' in verification ? verificationText(verification.result, byId) : verification.text}
        </p>
        <button type="button" disabled={verifying} onClick={verify}>
          Verify now
        </button>
      </section>
      <form class="panel audit-filters" aria-label="Audit filters" ref={form} onSubmit={submit} onReset={reset}>
        <Field id="audit-type" label="Event type">
          <input type="text" id="audit-type" name="type" placeholder="auth.* or case.read" maxLength={64} />
        </Field>
        <Field id="audit-actor" label="User">
          <select id="audit-actor" name="actor">
            <option value="">Anyone</option>
            {users.map((u) => (
              <option key={u.id} value={u.id}>{`${u.name} (${u.email})`}</option>
            ))}
          </select>
        </Field>
        <Field id="audit-action" label="Action">
          <Choice id="audit-action" name="action" options={keysOf(AUDIT_ACTION_LABEL).map((a) => [a, AUDIT_ACTION_LABEL[a]])} />
        </Field>
        <Field id="audit-outcome" label="Outcome">
          <Choice id="audit-outcome" name="outcome" options={keysOf(AUDIT_OUTCOME_LABEL).map((o) => [o, AUDIT_OUTCOME_LABEL[o]])} />
        </Field>
        <Field id="audit-objectType" label="Object type">
          <Choice id="audit-objectType" name="objectType" options={OBJECT_TYPES.map((t) => [t, t])} />
        </Field>
        <Field id="audit-objectId" label="Object id">
          <input type="text" id="audit-objectId" name="objectId" maxLength={64} />
        </Field>
        <Field id="audit-from" label="From (your time)">
          <input type="datetime-local" id="audit-from" name="from" />
        </Field>
        <Field id="audit-to" label="Until (your time)">
          <input type="datetime-local" id="audit-to" name="to" />
        </Field>
        <Field id="audit-ip" label="IP address">
          <input type="text" id="audit-ip" name="ip" maxLength={64} />
        </Field>
        <div class="form-actions">
          <button type="submit" class="primary">
            Search
          </button>
          <button type="reset">Clear</button>
        </div>
      </form>
      <div class="admin-actions">
        <p class="list-summary" role="status">
          {summaryOf(results)}
        </p>
        <span class="toolbar-gap" />
        <a class="button" download="" href={exportLink(filters, 'csv')}>
          Export CSV
        </a>
        <a class="button" download="" href={exportLink(filters, 'fhir')}>
          Export FHIR
        </a>
      </div>
      <div class="table-wrap">
        <table class="case-table audit-table">
          <caption class="visually-hidden">Audit records, newest first</caption>
          <thead>
            <tr>
              {COLUMNS.map((c) => (
                <th key={c} scope="col">
                  {c}
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {results.records.map((r) => (
              <AuditRow key={r.seq} record={r} users={byId} />
            ))}
          </tbody>
        </table>
      </div>
      <button type="button" hidden={results.cursor === null} disabled={searching} onClick={(e) => void search(filters, results.cursor, keepFocus(e.currentTarget))}>
        Show older records
      </button>
    </div>
  );
}
