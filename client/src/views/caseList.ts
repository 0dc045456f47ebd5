// The site's case list: search by title or label, filter by status, create a case, open one.
// Patient details appear only when the server sent them (the viewer has View Patient Info);
// otherwise the case's pseudonymous label stands in for the patient.
import { describeError } from '../api';
import type { AppContext, View } from '../context';
import { formatDateTime, h, replaceChildren } from '../dom';
import { keysOf, SEX_LABEL, STATUS_LABEL } from '../labels';
import type { CaseStatus, Patient, PublicCase } from '../../../src/protocol/cases';

const SEARCH_DELAY_MS = 250;
const PAGE_SIZE = 100;

/** What identifies the case to this viewer: the patient when shown, else the label. */
export function caseSubject(c: PublicCase): { primary: string; secondary: string } {
  if (c.patient) {
    return { primary: c.patient.name, secondary: `MRN ${c.patient.medicalRecordNumber} · born ${c.patient.dateOfBirth} · ${c.label}` };
  }
  return { primary: c.label, secondary: c.patient === null ? 'No patient details recorded' : '' };
}

export function caseListView(ctx: AppContext): View {
  const params = new URLSearchParams(location.search);
  const search = h('input', { type: 'search', name: 'q', placeholder: 'Search title or label', value: params.get('q') ?? '', maxLength: 100, attrs: { 'aria-label': 'Search cases' } });
  const status = h(
    'select',
    { name: 'status', attrs: { 'aria-label': 'Status' } },
    h('option', { value: '' }, 'All statuses'),
    ...keysOf(STATUS_LABEL).map((s) => h('option', { value: s }, STATUS_LABEL[s])),
  );
  status.value = params.get('status') ?? '';
  const summary = h('p', { class: 'list-summary', attrs: { role: 'status' } });
  const body = h('tbody');
  const table = h(
    'table',
    { class: 'case-table' },
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Case'), h('th', { scope: 'col' }, 'Title'), h('th', { scope: 'col' }, 'Status'), h('th', { scope: 'col' }, 'Updated'))),
    body,
  );
  const createForm = newCaseForm(ctx, () => {
    createForm.element.hidden = true;
    newButton.hidden = false;
  });
  createForm.element.hidden = true;
  const newButton = h('button', { type: 'button', class: 'primary' }, 'New case');
  newButton.addEventListener('click', () => {
    createForm.element.hidden = false;
    newButton.hidden = true;
    createForm.focus();
  });

  let generation = 0;
  let timer: number | null = null;
  const load = async () => {
    const mine = ++generation;
    const query = new URLSearchParams();
    if (search.value.trim()) query.set('q', search.value.trim());
    if (status.value) query.set('status', status.value);
    history.replaceState(null, '', `/cases${query.size ? `?${query}` : ''}`);
    query.set('limit', String(PAGE_SIZE));
    summary.textContent = 'Loading…';
    try {
      const { cases, total } = await ctx.api.get<{ cases: PublicCase[]; total: number }>(`/api/cases?${query}`);
      if (mine !== generation) return;
      summary.textContent = total === 0 ? 'No cases match.' : total > cases.length ? `Showing ${cases.length} of ${total} cases, newest first.` : `${total} case${total === 1 ? '' : 's'}.`;
      replaceChildren(body, ...cases.map((c) => caseRow(ctx, c)));
    } catch (err) {
      if (mine === generation) summary.textContent = describeError(err);
    }
  };
  search.addEventListener('input', () => {
    if (timer !== null) window.clearTimeout(timer);
    timer = window.setTimeout(() => void load(), SEARCH_DELAY_MS);
  });
  status.addEventListener('change', () => void load());
  void load();

  const element = h(
    'main',
    { class: 'page case-list-page' },
    h('div', { class: 'page-title' }, h('h1', {}, 'Cases'), newButton),
    createForm.element,
    h('div', { class: 'filters' }, search, status),
    summary,
    table,
  );
  return {
    element,
    dispose: () => {
      generation++;
      if (timer !== null) window.clearTimeout(timer);
    },
  };
}

function caseRow(ctx: AppContext, c: PublicCase): HTMLTableRowElement {
  const subject = caseSubject(c);
  const href = `/cases/${c.id}`;
  const row = h(
    'tr',
    { class: 'case-row', dataset: { caseId: c.id } },
    h('td', {}, h('span', { class: 'subject' }, subject.primary), subject.secondary ? h('span', { class: 'subject-detail' }, subject.secondary) : null),
    h('td', {}, h('a', { href, dataset: { link: '' } }, c.title)),
    h('td', {}, h('span', { class: `status status-${c.status}` }, STATUS_LABEL[c.status])),
    h('td', {}, formatDateTime(c.updatedAt)),
  );
  // The whole row opens the case; the title link keeps it reachable by keyboard.
  row.addEventListener('click', (event) => {
    if ((event.target as Element).closest('a')) return;
    ctx.navigate(href);
  });
  return row;
}

function newCaseForm(ctx: AppContext, onCancel: () => void): { element: HTMLFormElement; focus(): void } {
  const title = h('input', { type: 'text', name: 'title', required: true, maxLength: 200 });
  const question = h('textarea', { name: 'clinicalQuestion', rows: 3, maxLength: 4000 });
  const caseStatus = h('select', { name: 'status' }, ...keysOf(STATUS_LABEL).map((s) => h('option', { value: s }, STATUS_LABEL[s])));
  const patientName = h('input', { type: 'text', name: 'patientName', maxLength: 200, autocomplete: 'off' });
  const dob = h('input', { type: 'date', name: 'dateOfBirth' });
  const mrn = h('input', { type: 'text', name: 'medicalRecordNumber', maxLength: 64, autocomplete: 'off' });
  const sex = h('select', { name: 'sex' }, h('option', { value: '' }, '—'), ...keysOf(SEX_LABEL).map((s) => h('option', { value: s }, SEX_LABEL[s])));
  const message = h('p', { class: 'form-error', attrs: { role: 'alert' } });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Create case');
  const label = (text: string, input: HTMLElement) => h('label', { class: 'field' }, h('span', { class: 'field-label' }, text), input);
  const form = h(
    'form',
    { class: 'form new-case', attrs: { 'aria-label': 'New case' } },
    h('h2', {}, 'New case'),
    label('Title', title),
    label('Clinical question', question),
    label('Status', caseStatus),
    h(
      'fieldset',
      { class: 'patient-fields' },
      h('legend', {}, 'Patient (optional: all four or none)'),
      label('Name', patientName),
      label('Date of birth', dob),
      label('Medical record number', mrn),
      label('Sex', sex),
    ),
    message,
    h('div', { class: 'form-actions' }, submit, h('button', { type: 'button', on: { click: onCancel } }, 'Cancel')),
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    message.textContent = '';
    const patientValues = [patientName.value.trim(), dob.value, mrn.value.trim(), sex.value];
    const filled = patientValues.filter(Boolean).length;
    if (filled > 0 && filled < patientValues.length) {
      message.textContent = 'Give all four patient details, or none.';
      return;
    }
    const patient: Patient | undefined =
      filled === 0 ? undefined : { name: patientValues[0]!, dateOfBirth: patientValues[1]!, medicalRecordNumber: patientValues[2]!, sex: sex.value as Patient['sex'] };
    submit.disabled = true;
    ctx.api
      .post<{ case: PublicCase }>('/api/cases', { title: title.value, clinicalQuestion: question.value, status: caseStatus.value as CaseStatus, patient })
      .then(({ case: created }) => ctx.navigate(`/cases/${created.id}`))
      .catch((err: unknown) => {
        submit.disabled = false;
        message.textContent = describeError(err);
      });
  });
  return { element: form, focus: () => title.focus() };
}
