// The site's case list: search by title or label, filter by status, create a case, open one.
// Patient details appear only when the server sent them (the viewer has View Patient Info);
// otherwise the case's pseudonymous label stands in for the patient.
//
// A Preact component rendered into the page's <main>; caseListView keeps the shape the
// application shell expects (`View`: element and dispose).
import { render } from 'preact';
import { useLayoutEffect, useRef, useState } from 'preact/hooks';
import { describeError } from '../api';
import type { AppContext, View } from '../context';
import { formatDateTime } from '../dom';
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
  const element = document.createElement('main');
  element.className = 'page case-list-page';
  render(<CaseList ctx={ctx} />, element);
  return { element, dispose: () => render(null, element) };
}

function CaseList({ ctx }: { ctx: AppContext }) {
  const [filter, setFilter] = useState(() => {
    const params = new URLSearchParams(location.search);
    return { q: params.get('q') ?? '', status: params.get('status') ?? '' };
  });
  /** The filter as last typed, for a load that a timer starts after the render that showed it. */
  const current = useRef(filter);
  const [summary, setSummary] = useState('');
  const [cases, setCases] = useState<PublicCase[]>([]);
  const [creating, setCreating] = useState(false);
  const titleRef = useRef<HTMLInputElement>(null);
  const focusTitle = useRef(false);
  const generation = useRef(0);
  const timer = useRef<number | null>(null);

  const load = async () => {
    const mine = ++generation.current;
    const { q, status } = current.current;
    const query = new URLSearchParams();
    if (q.trim()) query.set('q', q.trim());
    if (status) query.set('status', status);
    history.replaceState(null, '', `/cases${query.size ? `?${query}` : ''}`);
    query.set('limit', String(PAGE_SIZE));
    setSummary('Loading…');
    try {
      const answer = await ctx.api.get<{ cases: PublicCase[]; total: number }>(`/api/cases?${query}`);
      if (mine !== generation.current) return;
      const { total } = answer;
      const shown = answer.cases.length;
      setSummary(total === 0 ? 'No cases match.' : total > shown ? `Showing ${shown} of ${total} cases, newest first.` : `${total} case${total === 1 ? '' : 's'}.`);
      setCases(answer.cases);
    } catch (err) {
      if (mine === generation.current) setSummary(describeError(err));
    }
  };

  const change = (next: { q: string; status: string }) => {
    current.current = next;
    setFilter(next);
  };

  useLayoutEffect(() => {
    void load();
    return () => {
      // Replaced: an answer still under way is not shown, a pending search not started.
      generation.current++;
      if (timer.current !== null) window.clearTimeout(timer.current);
    };
  }, []);

  // The form was hidden until this render: it can take focus now.
  useLayoutEffect(() => {
    if (!focusTitle.current) return;
    focusTitle.current = false;
    titleRef.current?.focus();
  });

  return (
    <>
      <div class="page-title">
        <h1>Cases</h1>
        <button
          type="button"
          class="primary"
          hidden={creating}
          onClick={() => {
            focusTitle.current = true;
            setCreating(true);
          }}
        >
          New case
        </button>
      </div>
      <NewCaseForm ctx={ctx} hidden={!creating} titleRef={titleRef} onCancel={() => setCreating(false)} />
      <div class="filters">
        <input
          type="search"
          name="q"
          placeholder="Search title or label"
          maxLength={100}
          aria-label="Search cases"
          value={filter.q}
          onInput={(e) => {
            change({ ...current.current, q: e.currentTarget.value });
            if (timer.current !== null) window.clearTimeout(timer.current);
            timer.current = window.setTimeout(() => void load(), SEARCH_DELAY_MS);
          }}
        />
        <select
          name="status"
          aria-label="Status"
          value={filter.status}
          onChange={(e) => {
            change({ ...current.current, status: e.currentTarget.value });
            void load();
          }}
        >
          <option value="">All statuses</option>
          {keysOf(STATUS_LABEL).map((s) => (
            <option key={s} value={s}>
              {STATUS_LABEL[s]}
            </option>
          ))}
        </select>
      </div>
      <p class="list-summary" role="status">
        {summary}
      </p>
      <table class="case-table">
        <thead>
          <tr>
            <th scope="col">Case</th>
            <th scope="col">Title</th>
            <th scope="col">Status</th>
            <th scope="col">Updated</th>
          </tr>
        </thead>
        <tbody>
          {cases.map((c) => (
            <CaseRow key={c.id} ctx={ctx} c={c} />
          ))}
        </tbody>
      </table>
    </>
  );
}

function CaseRow({ ctx, c }: { ctx: AppContext; c: PublicCase }) {
  const subject = caseSubject(c);
  const href = `/cases/${c.id}`;
  return (
    <tr
      class="case-row"
      data-case-id={c.id}
      // The whole row opens the case; the title link keeps it reachable by keyboard.
      onClick={(event) => {
        if ((event.target as Element).closest('a')) return;
        ctx.navigate(href);
      }}
    >
      <td>
        <span class="subject">{subject.primary}</span>
        {subject.secondary ? <span class="subject-detail">{subject.secondary}</span> : null}
      </td>
      <td>
        <a href={href} data-link="">
          {c.title}
        </a>
      </td>
      <td>
        <span class={`status status-${c.status}`}>{STATUS_LABEL[c.status]}</span>
      </td>
      <td>{formatDateTime(c.updatedAt)}</td>
    </tr>
  );
}

const FIRST_STATUS = keysOf(STATUS_LABEL)[0]!;

function NewCaseForm({ ctx, hidden, titleRef, onCancel }: { ctx: AppContext; hidden: boolean; titleRef: { current: HTMLInputElement | null }; onCancel: () => void }) {
  const [title, setTitle] = useState('');
  const [question, setQuestion] = useState('');
  const [caseStatus, setCaseStatus] = useState<CaseStatus>(FIRST_STATUS);
  const [patientName, setPatientName] = useState('');
  const [dob, setDob] = useState('');
  const [mrn, setMrn] = useState('');
  const [sex, setSex] = useState('');
  const [message, setMessage] = useState('');
  const [busy, setBusy] = useState(false);

  const submit = (event: Event) => {
    event.preventDefault();
    setMessage('');
    const patientValues = [patientName.trim(), dob, mrn.trim(), sex];
    const filled = patientValues.filter(Boolean).length;
    if (filled > 0 && filled < patientValues.length) {
      setMessage('Give all four patient details, or none.');
      return;
    }
    const patient: Patient | undefined =
      filled === 0 ? undefined : { name: patientValues[0]!, dateOfBirth: patientValues[1]!, medicalRecordNumber: patientValues[2]!, sex: sex as Patient['sex'] };
    setBusy(true);
    ctx.api
      .post<{ case: PublicCase }>('/api/cases', { title, clinicalQuestion: question, status: caseStatus, patient })
      .then(({ case: created }) => ctx.navigate(`/cases/${created.id}`))
      .catch((err: unknown) => {
        setBusy(false);
        setMessage(describeError(err));
      });
  };

  return (
    <form class="form new-case" aria-label="New case" hidden={hidden} onSubmit={submit}>
      <h2>New case</h2>
      <label class="field">
        <span class="field-label">Title</span>
        <input ref={titleRef} type="text" name="title" required maxLength={200} value={title} onInput={(e) => setTitle(e.currentTarget.value)} />
      </label>
      <label class="field">
        <span class="field-label">Clinical question</span>
        <textarea name="clinicalQuestion" rows={3} maxLength={4000} value={question} onInput={(e) => setQuestion(e.currentTarget.value)} />
      </label>
      <label class="field">
        <span class="field-label">Status</span>
        <select name="status" value={caseStatus} onChange={(e) => setCaseStatus(e.currentTarget.value as CaseStatus)}>
          {keysOf(STATUS_LABEL).map((s) => (
            <option key={s} value={s}>
              {STATUS_LABEL[s]}
            </option>
          ))}
        </select>
      </label>
      <fieldset class="patient-fields">
        <legend>Patient (optional: all four or none)</legend>
        <label class="field">
          <span class="field-label">Name</span>
          <input type="text" name="patientName" maxLength={200} autocomplete="off" value={patientName} onInput={(e) => setPatientName(e.currentTarget.value)} />
        </label>
        <label class="field">
          <span class="field-label">Date of birth</span>
          <input type="date" name="dateOfBirth" value={dob} onInput={(e) => setDob(e.currentTarget.value)} />
        </label>
        <label class="field">
          <span class="field-label">Medical record number</span>
          <input type="text" name="medicalRecordNumber" maxLength={64} autocomplete="off" value={mrn} onInput={(e) => setMrn(e.currentTarget.value)} />
        </label>
        <label class="field">
          <span class="field-label">Sex</span>
          <select name="sex" value={sex} onChange={(e) => setSex(e.currentTarget.value)}>
            <option value="">—</option>
            {keysOf(SEX_LABEL).map((s) => (
              <option key={s} value={s}>
                {SEX_LABEL[s]}
              </option>
            ))}
          </select>
        </label>
      </fieldset>
      <p class="form-error" role="alert">
        {message}
      </p>
      <div class="form-actions">
        <button type="submit" class="primary" disabled={busy}>
          Create case
        </button>
        <button type="button" onClick={onCancel}>
          Cancel
        </button>
      </div>
    </form>
  );
}
