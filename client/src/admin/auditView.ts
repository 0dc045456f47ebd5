// Site admin: the audit trail. Search with filters (newest first, keyset pages), export of the
// same selection as CSV or FHIR (a plain download link: the server streams it), and the hash
// chain's verification (the latest result, and "Verify now"). Users are shown by name where the
// site's user list knows them; records themselves carry ids only.
import { describeError } from '../api';
import type { AppContext, View } from '../context';
import { formatDateTime, h, replaceChildren } from '../dom';
import { AUDIT_ACTION_LABEL, AUDIT_OUTCOME_LABEL, keysOf, ROLE_LABEL } from '../labels';
import type { AuditSearchResponse, AuditVerification, PublicAuditRecord } from '../../../src/protocol/governance';
import type { PublicUser, Role } from '../../../src/protocol/identity';

const PAGE_SIZE = 50;
const OBJECT_TYPES = ['case', 'material', 'user', 'site', 'annotation', 'chat', 'transfer', 'session'];

export function auditView(ctx: AppContext): View {
  const page = new AuditPage(ctx);
  return { element: page.element, dispose: () => page.dispose() };
}

/** A datetime-local value (the admin's local time) as the UTC ISO time the API takes. */
function toUtc(local: string): string | null {
  if (!local) return null;
  const t = new Date(local);
  return Number.isNaN(t.getTime()) ? null : t.toISOString();
}

class AuditPage {
  readonly element: HTMLElement;
  readonly #form: HTMLFormElement;
  readonly #body = h('tbody');
  readonly #summary = h('p', { class: 'list-summary', attrs: { role: 'status' } });
  readonly #more = h('button', { type: 'button', hidden: true }, 'Show older records');
  readonly #csv = h('a', { class: 'button', download: '' }, 'Export CSV');
  readonly #fhir = h('a', { class: 'button', download: '' }, 'Export FHIR');
  readonly #verification = h('p', { class: 'verification', attrs: { role: 'status' } });
  readonly #actor = h('select', { id: 'audit-actor', name: 'actor' }, h('option', { value: '' }, 'Anyone'));
  readonly #users = new Map<string, PublicUser>();
  #filters = new URLSearchParams();
  #cursor: string | null = null;
  #shown = 0;
  #generation = 0;
  #disposed = false;

  constructor(private readonly ctx: AppContext) {
    this.#form = this.#buildForm();
    this.#more.addEventListener('click', () => void this.#search(false));
    const verify = h('button', { type: 'button' }, 'Verify now');
    verify.addEventListener('click', () => {
      verify.disabled = true;
      this.#verification.textContent = 'Checking every record of the chain…';
      this.ctx.api
        .post<AuditVerification>('/api/admin/audit/verify')
        .then((v) => this.#showVerification(v))
        .catch((err) => {
          this.#verification.textContent = describeError(err);
        })
        .finally(() => {
          verify.disabled = false;
        });
    });
    const table = h(
      'table',
      { class: 'case-table audit-table' },
      h('caption', { class: 'visually-hidden' }, 'Audit records, newest first'),
      h(
        'thead',
        {},
        h('tr', {}, ...['Time', 'Event', 'Action', 'Outcome', 'User', 'IP address', 'Objects', 'Details'].map((t) => h('th', { scope: 'col' }, t))),
      ),
      this.#body,
    );
    this.element = h(
      'div',
      { class: 'admin-audit' },
      h('section', { class: 'panel verification-panel', attrs: { 'aria-labelledby': 'verification-title' } }, h('h2', { id: 'verification-title' }, 'Chain verification'), this.#verification, verify),
      this.#form,
      h('div', { class: 'admin-actions' }, this.#summary, h('span', { class: 'toolbar-gap' }), this.#csv, this.#fhir),
      h('div', { class: 'table-wrap' }, table),
      this.#more,
    );
    this.#applyFilters();
    void this.#loadUsers();
    void this.#search(true);
    void this.#loadVerification();
  }

  dispose(): void {
    this.#disposed = true;
  }

  #buildForm(): HTMLFormElement {
    const field = (id: string, label: string, control: HTMLElement) => h('label', { class: 'field', htmlFor: id }, h('span', { class: 'field-label' }, label), control);
    const select = (id: string, name: string, any: string, options: [string, string][]) =>
      h('select', { id, name }, h('option', { value: '' }, any), ...options.map(([v, t]) => h('option', { value: v }, t)));
    const form = h(
      'form',
      { class: 'panel audit-filters', attrs: { 'aria-label': 'Audit filters' } },
      field('audit-type', 'Event type', h('input', { type: 'text', id: 'audit-type', name: 'type', placeholder: 'auth.* or case.read', maxLength: 64 })),
      field('audit-actor', 'User', this.#actor),
      field('audit-action', 'Action', select('audit-action', 'action', 'Any', keysOf(AUDIT_ACTION_LABEL).map((a) => [a, AUDIT_ACTION_LABEL[a]]))),
      field('audit-outcome', 'Outcome', select('audit-outcome', 'outcome', 'Any', keysOf(AUDIT_OUTCOME_LABEL).map((o) => [o, AUDIT_OUTCOME_LABEL[o]]))),
      field('audit-objectType', 'Object type', select('audit-objectType', 'objectType', 'Any', OBJECT_TYPES.map((t) => [t, t]))),
      field('audit-objectId', 'Object id', h('input', { type: 'text', id: 'audit-objectId', name: 'objectId', maxLength: 64 })),
      field('audit-from', 'From (your time)', h('input', { type: 'datetime-local', id: 'audit-from', name: 'from' })),
      field('audit-to', 'Until (your time)', h('input', { type: 'datetime-local', id: 'audit-to', name: 'to' })),
      field('audit-ip', 'IP address', h('input', { type: 'text', id: 'audit-ip', name: 'ip', maxLength: 64 })),
      h('div', { class: 'form-actions' }, h('button', { type: 'submit', class: 'primary' }, 'Search'), h('button', { type: 'reset' }, 'Clear')),
    );
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      this.#applyFilters();
      void this.#search(true);
    });
    form.addEventListener('reset', () => {
      // After the browser cleared the fields.
      window.setTimeout(() => {
        this.#applyFilters();
        void this.#search(true);
      });
    });
    return form;
  }

  /** Reads the form into the query both the search and the export links use. */
  #applyFilters(): void {
    const q = new URLSearchParams();
    const data = new FormData(this.#form);
    for (const name of ['type', 'actor', 'action', 'outcome', 'objectType', 'objectId', 'ip']) {
      const v = String(data.get(name) ?? '').trim();
      if (v) q.set(name, v);
    }
    for (const name of ['from', 'to']) {
      const v = toUtc(String(data.get(name) ?? ''));
      if (v) q.set(name, v);
    }
    this.#filters = q;
    const exportQuery = (format: string) => {
      const e = new URLSearchParams(q);
      e.set('format', format);
      return `/api/admin/audit/export?${e}`;
    };
    this.#csv.href = exportQuery('csv');
    this.#fhir.href = exportQuery('fhir');
  }

  async #search(fresh: boolean): Promise<void> {
    const mine = ++this.#generation;
    const q = new URLSearchParams(this.#filters);
    q.set('limit', String(PAGE_SIZE));
    if (!fresh && this.#cursor) q.set('cursor', this.#cursor);
    this.#summary.textContent = 'Searching…';
    this.#more.disabled = true;
    try {
      const page = await this.ctx.api.get<AuditSearchResponse>(`/api/admin/audit?${q}`);
      if (this.#disposed || mine !== this.#generation) return;
      if (fresh) {
        replaceChildren(this.#body);
        this.#shown = 0;
      }
      this.#body.append(...page.records.map((r) => this.#row(r)));
      this.#shown += page.records.length;
      this.#cursor = page.nextCursor;
      this.#more.hidden = page.nextCursor === null;
      this.#summary.textContent = this.#shown === 0 ? 'No records match.' : `${this.#shown} record${this.#shown === 1 ? '' : 's'}${page.nextCursor ? ' (more are older)' : ''}.`;
    } catch (err) {
      if (mine === this.#generation) this.#summary.textContent = describeError(err);
    } finally {
      this.#more.disabled = false;
    }
  }

  #row(r: PublicAuditRecord): HTMLTableRowElement {
    const user = r.actor.userId ? this.#users.get(r.actor.userId) : undefined;
    const who = user ? user.name : r.actor.userId ? r.actor.userId : 'system';
    const role = r.actor.role && r.actor.role in ROLE_LABEL ? ROLE_LABEL[r.actor.role as Role] : r.actor.role;
    const details = Object.entries(r.details)
      .map(([k, v]) => `${k}: ${v}`)
      .join(', ');
    return h(
      'tr',
      { class: `audit-row outcome-${r.outcome}`, dataset: { seq: String(r.seq) } },
      h('td', {}, h('time', { dateTime: r.time }, formatDateTime(r.time))),
      h('td', {}, h('code', {}, r.type)),
      h('td', {}, AUDIT_ACTION_LABEL[r.action]),
      h('td', { class: 'audit-outcome' }, AUDIT_OUTCOME_LABEL[String(r.outcome) as '0']),
      h('td', {}, who, role ? h('span', { class: 'muted' }, ` · ${role}`) : null),
      h('td', {}, r.actor.ip ?? ''),
      h('td', { class: 'audit-objects' }, r.objects.map((o) => `${o.type} ${o.id}`).join(', ')),
      h('td', { class: 'audit-details' }, details),
    );
  }

  async #loadUsers(): Promise<void> {
    try {
      const { users } = await this.ctx.api.get<{ users: PublicUser[] }>('/api/admin/users');
      if (this.#disposed) return;
      for (const u of users.sort((a, b) => a.name.localeCompare(b.name))) {
        this.#users.set(u.id, u);
        this.#actor.append(h('option', { value: u.id }, `${u.name} (${u.email})`));
      }
      // Rows drawn before the names arrived show ids: redraw them with names.
      if (this.#shown > 0) void this.#search(true);
    } catch {
      // The filter still works with "Anyone"; the rows show user ids.
    }
  }

  async #loadVerification(): Promise<void> {
    try {
      const { last } = await this.ctx.api.get<{ last: AuditVerification | null }>('/api/admin/audit/verify');
      if (this.#disposed) return;
      if (last) this.#showVerification(last);
      else this.#verification.textContent = 'The chain has not been verified yet.';
    } catch (err) {
      if (!this.#disposed) this.#verification.textContent = describeError(err);
    }
  }

  #showVerification(v: AuditVerification): void {
    const by = v.verifiedBy === null ? 'the scheduler or the command line' : (this.#users.get(v.verifiedBy)?.name ?? v.verifiedBy);
    this.#verification.className = `verification ${v.intact ? 'intact' : 'broken'}`;
    this.#verification.textContent = v.intact
      ? `Intact: ${v.records} record${v.records === 1 ? '' : 's'} checked, ${formatDateTime(v.verifiedAt)}, by ${by}.`
      : `Broken at record ${v.firstBreak?.seq ?? '?'} (${v.firstBreak?.reason ?? 'unknown'}): ${v.records} records checked, ${formatDateTime(v.verifiedAt)}, by ${by}. Keep the database and the logs as they are and tell your security officer.`;
  }
}
