// The clinicians' follow-up page (/followups): schedule a video follow-up for a case (the invite
// link is shown once), and the live waiting list of every follow-up the user hosts or was
// invited to: who is waiting and for how long, whether their camera and microphone passed the
// check, a visible and audible alert on arrival, a short message to a waiting patient, admit,
// decline, end, and the call itself (VideoGrid over the same socket).
//
// The view holds its state in this closure and renders it with Preact into its element after
// every change (docs/client.md, "UI library"); rows are keyed by follow-up, so a message being
// typed keeps its text and its focus when the list changes or the clock ticks.
import { createRef, render } from 'preact';
import { useLayoutEffect, useRef } from 'preact/hooks';
import { io, type Socket } from 'socket.io-client';
import type { AppContext, View } from '../context';
import { describeError } from '../api';
import { VideoGrid } from '../media/VideoGrid';
import type { PublicCase } from '../../../src/protocol/cases';
import type { CreatedFollowUp, FollowUpAlertKind, PatientState, PublicFollowUp } from '../../../src/protocol/followups';
import type { Ack } from '../../../src/protocol/realtime';
import './clinician.css';

const STATE_LABEL: Record<PatientState, string> = {
  invited: 'Invited',
  opened: 'Link opened',
  consented: 'Consented',
  waiting: 'Waiting',
  admitted: 'In the call',
  dropped: 'Connection lost',
  left: 'Left the waiting room',
  declined: 'Declined',
  ended: 'Ended',
};

const ALERT_TEXT: Record<FollowUpAlertKind, string> = {
  arrived: 'is in the waiting room',
  left: 'left the waiting room',
  dropped: 'lost the connection (you can admit them again when they are back)',
  second_device: 'link was tried on a second device and refused',
  verification_failed: 'gave a wrong answer to the question',
};

const CHANNELS = ['sms', 'email', 'letter', 'phone', 'other'];

function minutesSince(iso: string | null): string {
  if (!iso) return '';
  const minutes = Math.max(0, Math.floor((Date.now() - Date.parse(iso)) / 60_000));
  return minutes < 1 ? 'less than a minute' : `${minutes} min`;
}

function localInput(date: Date): string {
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}T${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

/** Two short tones: an arrival must be noticed by someone looking elsewhere. */
function chime(): void {
  try {
    const audio = new AudioContext();
    for (const [at, freq] of [[0, 880], [0.25, 1175]] as const) {
      const osc = audio.createOscillator();
      const gain = audio.createGain();
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.15, audio.currentTime + at);
      gain.gain.exponentialRampToValueAtTime(0.001, audio.currentTime + at + 0.2);
      osc.connect(gain).connect(audio.destination);
      osc.start(audio.currentTime + at);
      osc.stop(audio.currentTime + at + 0.22);
    }
    window.setTimeout(() => void audio.close(), 800);
  } catch {
    // No audio output: the visible alert remains.
  }
}

/** An alert about a patient (dismissable), or a request that failed. */
type Alert = { id: number; kind: FollowUpAlertKind; followUpId: string; text: string } | { id: number; kind: 'error'; text: string };

/** What the area under the schedule form shows: the invite link once, then that it was sent. */
type Created = { kind: 'link'; result: CreatedFollowUp } | { kind: 'sent'; text: string } | null;

/** Waiting patients first, longest waiting first; then by start time. */
function sortRows(rows: Iterable<PublicFollowUp>): PublicFollowUp[] {
  const w = (f: PublicFollowUp) => (f.state === 'waiting' ? 0 : f.state === 'admitted' || f.state === 'dropped' ? 1 : f.state === 'ended' || f.state === 'declined' ? 3 : 2);
  return [...rows].sort((a, b) => w(a) - w(b) || (a.waitingSince ?? a.startsAt).localeCompare(b.waitingSince ?? b.startsAt));
}

/** The call panel (a VideoGrid, which renders itself) placed right after its heading. */
function CallArea({ title, grid }: { title: string; grid: VideoGrid }) {
  const heading = useRef<HTMLHeadingElement>(null);
  useLayoutEffect(() => {
    heading.current?.after(grid.element);
    return () => grid.element.remove();
  }, [grid]);
  return <h2 ref={heading}>{title}</h2>;
}

interface RowProps {
  f: PublicFollowUp;
  inCall: boolean;
  draft: string;
  onDraft: (text: string) => void;
  act: (path: string, body?: unknown) => void;
  onSend: () => void;
  onJoin: () => void;
}

function Row({ f, inCall, draft, onDraft, act, onSend, onJoin }: RowProps) {
  const final = f.state === 'ended' || f.state === 'declined';
  const device = f.deviceCheck ? `camera ${f.deviceCheck.camera ? '✓' : '✗'} · microphone ${f.deviceCheck.microphone ? '✓' : '✗'}` : 'device check not done';
  return (
    <li class={`fu-row fu-state-${f.state}`} data-follow-up-id={f.id}>
      <div class="fu-row-head">
        <strong>{f.contactLabel}</strong> <span class="fu-badge">{STATE_LABEL[f.state]}</span>
      </div>
      <p class="muted">
        {f.state === 'waiting'
          ? `Waiting ${minutesSince(f.waitingSince)} · ${device}`
          : `${new Date(f.startsAt).toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' })} – ${new Date(f.endsAt).toLocaleTimeString([], { timeStyle: 'short' })}`}
      </p>
      {final ? null : (
        <div class="fu-actions">
          {f.state === 'waiting' ? (
            <button type="button" class="primary" onClick={() => act('admit')}>
              {`Admit ${f.contactLabel}`}
            </button>
          ) : null}
          {['waiting', 'left', 'dropped', 'consented', 'opened', 'invited'].includes(f.state) ? (
            <button type="button" onClick={() => act('decline')}>
              Decline
            </button>
          ) : null}
          <button type="button" onClick={onJoin}>
            {inCall ? 'In the call' : 'Join the call'}
          </button>
          <button type="button" class="danger" onClick={() => act('end')}>
            End follow-up
          </button>
          <form
            class="fu-message-form"
            onSubmit={(e) => {
              e.preventDefault();
              onSend();
            }}
          >
            <input
              type="text"
              maxLength={200}
              placeholder="Message to the patient"
              value={draft}
              aria-label={`Message to ${f.contactLabel}`}
              onInput={(e) => onDraft(e.currentTarget.value)}
            />
            <button type="submit">Send</button>
          </form>
        </div>
      )}
    </li>
  );
}

export function followUpPageView(ctx: AppContext): View {
  const followUps = new Map<string, PublicFollowUp>();
  /** Newest first. */
  let alerts: Alert[] = [];
  let alertSeq = 0;
  let created: Created = null;
  let cases: PublicCase[] = [];
  let formError: string | null = null;
  let call: VideoGrid | null = null;
  let callFollowUp: string | null = null;
  let callTitle = '';
  let disposed = false;
  /** Messages being typed survive the list's re-renders (a change arrives, the clock ticks). */
  const drafts = new Map<string, string>();
  // The schedule form's fields are the browser's own (uncontrolled); read on submit.
  const caseSelect = createRef<HTMLSelectElement>();
  const start = createRef<HTMLInputElement>();
  const end = createRef<HTMLInputElement>();
  const label = createRef<HTMLInputElement>();
  const verify = createRef<HTMLInputElement>();
  const channel = createRef<HTMLSelectElement>();
  const link = createRef<HTMLInputElement>();
  const list = createRef<HTMLUListElement>();
  const defaults = { start: localInput(new Date()), end: localInput(new Date(Date.now() + 3600_000)) };
  const element = document.createElement('div');
  element.className = 'page fu-page';

  const socket: Socket = io({ path: '/socket.io', transports: ['websocket'], withCredentials: true });
  const emit = <T,>(event: string, payload: unknown) => (socket.timeout(15_000) as unknown as { emitWithAck(e: string, p: unknown): Promise<Ack<T>> }).emitWithAck(event, payload);
  socket.on('followup:changed', ({ followUp }: { followUp: PublicFollowUp }) => {
    followUps.set(followUp.id, followUp);
    update();
    if (callFollowUp === followUp.id && (followUp.state === 'ended' || followUp.state === 'declined')) leaveCall();
  });
  socket.on('followup:alert', ({ followUpId, kind, contactLabel, at }: { followUpId: string; kind: FollowUpAlertKind; contactLabel: string; at: string }) => {
    const time = new Date(at).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    alerts = [{ id: ++alertSeq, kind, followUpId, text: `${time} · ${contactLabel} ${ALERT_TEXT[kind]}` }, ...alerts];
    update();
    if (kind === 'arrived' || kind === 'second_device') chime();
  });
  const ticker = window.setInterval(update, 20_000);

  function problem(text: string): void {
    alerts = [{ id: ++alertSeq, kind: 'error', text }, ...alerts];
    update();
  }

  function act(f: PublicFollowUp, path: string, body?: unknown): void {
    ctx.api.post(`/api/followups/${f.id}/${path}`, body).then(
      (answer) => {
        const updated = (answer as { followUp: PublicFollowUp }).followUp;
        followUps.set(updated.id, updated);
        update();
      },
      (err) => problem(describeError(err)),
    );
  }

  function send(f: PublicFollowUp): void {
    const text = (drafts.get(f.id) ?? '').trim();
    if (text) act(f, 'messages', { text });
    drafts.delete(f.id);
    update();
  }

  async function joinCall(f: PublicFollowUp): Promise<void> {
    if (callFollowUp === f.id) return;
    leaveCall();
    const answer = await emit<{ roomId: string }>('followup:join', { followUpId: f.id });
    if (!answer.ok) return problem(answer.error.message);
    callFollowUp = f.id;
    callTitle = `Call with ${f.contactLabel}`;
    call = new VideoGrid(socket, answer.data.roomId, { myName: ctx.me?.user.name ?? 'Me', autoJoin: true });
    update();
  }

  function leaveCall(): void {
    if (!callFollowUp) return;
    void emit('followup:leave', { followUpId: callFollowUp });
    call?.dispose();
    call = null;
    callFollowUp = null;
    update();
  }

  function schedule(event: Event): void {
    event.preventDefault();
    formError = null;
    update();
    ctx.api
      .post<CreatedFollowUp>(`/api/cases/${caseSelect.current!.value}/followups`, {
        startsAt: new Date(start.current!.value).toISOString(),
        endsAt: new Date(end.current!.value).toISOString(),
        contactLabel: label.current!.value.trim(),
        verification: verify.current!.checked ? 'dateOfBirth' : null,
      })
      .then(
        (result) => {
          followUps.set(result.followUp.id, result.followUp);
          created = { kind: 'link', result };
          update();
          link.current?.select();
          if (label.current) label.current.value = '';
        },
        (err) => {
          formError = describeError(err);
          update();
        },
      );
  }

  function markSent(result: CreatedFollowUp): void {
    ctx.api.post(`/api/followups/${result.followUp.id}/sent`, { channel: channel.current!.value }).then(
      () => {
        created = { kind: 'sent', text: `Invite for ${result.followUp.contactLabel} marked as sent.` };
        update();
      },
      (err) => problem(describeError(err)),
    );
  }

  function createdArea() {
    if (created?.kind === 'sent') return <p class="muted">{created.text}</p>;
    if (created?.kind !== 'link') return null;
    const { result } = created;
    return (
      <>
        <p>{`Send this link to ${result.followUp.contactLabel}. It is shown only now, works on one device, and stops working when the follow-up ends.`}</p>
        <input key={result.followUp.id} type="text" readOnly value={result.inviteUrl} class="fu-link" aria-label="Invite link" ref={link} />
        <button type="button" onClick={() => void navigator.clipboard?.writeText(result.inviteUrl).catch(() => link.current?.select())}>
          Copy
        </button>
        <select key={result.followUp.id} aria-label="Sent by" ref={channel}>
          {CHANNELS.map((c) => (
            <option value={c}>{c}</option>
          ))}
        </select>
        <button type="button" onClick={() => markSent(result)}>
          Mark as sent
        </button>
      </>
    );
  }

  function page() {
    const rows = sortRows(followUps.values());
    return (
      <>
        <h1>Video follow-ups</h1>
        <div class="fu-alerts" role="alert" aria-live="assertive">
          {alerts.map((a) =>
            a.kind === 'error' ? (
              <p key={a.id} class="fu-alert form-error">
                {a.text}
              </p>
            ) : (
              <p key={a.id} class={`fu-alert fu-alert-${a.kind}`} data-follow-up-id={a.followUpId}>
                {a.text}{' '}
                <button
                  type="button"
                  class="link"
                  onClick={() => {
                    alerts = alerts.filter((x) => x.id !== a.id);
                    update();
                  }}
                >
                  Dismiss
                </button>
              </p>
            ),
          )}
        </div>
        <div class="fu-columns">
          <div>
            <form class="panel fu-schedule" onSubmit={schedule}>
              <h2>Schedule a video follow-up</h2>
              <label for="fu-case">Case</label>
              <select id="fu-case" required ref={caseSelect}>
                {cases.map((c) => (
                  <option key={c.id} value={c.id}>{`${c.label} · ${c.title}`}</option>
                ))}
              </select>
              <label for="fu-start">From</label>
              <input id="fu-start" type="datetime-local" required defaultValue={defaults.start} ref={start} />
              <label for="fu-end">Until</label>
              <input id="fu-end" type="datetime-local" required defaultValue={defaults.end} ref={end} />
              <label for="fu-label">Patient (as you will recognise them)</label>
              <input id="fu-label" type="text" required maxLength={80} placeholder="e.g. Mrs K. (mobile …42)" ref={label} />
              <label class="fu-check">
                <input id="fu-verify" type="checkbox" ref={verify} />
                {' Ask the patient their date of birth (checked against the case)'}
              </label>
              <p class="form-error" hidden={formError === null}>
                {formError}
              </p>
              <button type="submit" class="primary">
                Create the invite link
              </button>
            </form>
            <div class="fu-created">{createdArea()}</div>
          </div>
          <section class="panel" aria-label="Waiting list">
            <h2>Waiting list</h2>
            <ul class="fu-waiting-list" aria-label="Waiting list" ref={list}>
              {rows.length ? (
                rows.map((f) => (
                  <Row
                    key={f.id}
                    f={f}
                    inCall={callFollowUp === f.id}
                    draft={drafts.get(f.id) ?? ''}
                    onDraft={(text) => drafts.set(f.id, text)}
                    act={(path, body) => act(f, path, body)}
                    onSend={() => send(f)}
                    onJoin={() => void joinCall(f)}
                  />
                ))
              ) : (
                <li class="muted">No follow-ups scheduled.</li>
              )}
            </ul>
          </section>
        </div>
        <div class="fu-call-area">{call ? <CallArea key={callFollowUp} title={callTitle} grid={call} /> : null}</div>
      </>
    );
  }

  function update(): void {
    if (disposed) return;
    // A row that moves (its patient starts waiting) is taken out and put back by the DOM, which
    // drops the focus: it goes back to the same field, with the caret where it was.
    const active = document.activeElement;
    const inList = active instanceof HTMLElement && !!list.current?.contains(active) ? active : null;
    const caret = inList instanceof HTMLInputElement ? [inList.selectionStart, inList.selectionEnd] : null;
    render(page(), element);
    if (inList && inList.isConnected && document.activeElement !== inList) {
      inList.focus();
      if (caret && inList instanceof HTMLInputElement) inList.setSelectionRange(caret[0], caret[1]);
    }
  }

  ctx.setTitle('Video follow-ups');
  update();

  ctx.api.get<{ followUps: PublicFollowUp[] }>('/api/followups').then(
    ({ followUps: all }) => {
      if (disposed) return;
      for (const f of all) followUps.set(f.id, f);
      update();
    },
    (err) => problem(describeError(err)),
  );
  ctx.api.get<{ cases: PublicCase[] }>('/api/cases?limit=200').then(
    ({ cases: all }) => {
      if (disposed) return;
      cases = all;
      update();
      const preselect = new URLSearchParams(location.search).get('case');
      if (preselect && caseSelect.current) caseSelect.current.value = preselect;
    },
    () => undefined,
  );

  return {
    element,
    dispose() {
      disposed = true;
      window.clearInterval(ticker);
      leaveCall();
      socket.disconnect();
      render(null, element);
    },
  };
}
