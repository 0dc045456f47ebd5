// The clinicians' follow-up page (/followups): schedule a video follow-up for a case (the invite
// link is shown once), and the live waiting list of every follow-up the user hosts or was
// invited to: who is waiting and for how long, whether their camera and microphone passed the
// check, a visible and audible alert on arrival, a short message to a waiting patient, admit,
// decline, end, and the call itself (VideoGrid over the same socket).
import { io, type Socket } from 'socket.io-client';
import type { AppContext, View } from '../context';
import { describeError } from '../api';
import { h, replaceChildren } from '../dom';
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

export function followUpPageView(ctx: AppContext): View {
  const followUps = new Map<string, PublicFollowUp>();
  const alerts = h('div', { class: 'fu-alerts', attrs: { role: 'alert', 'aria-live': 'assertive' } });
  const list = h('ul', { class: 'fu-waiting-list', attrs: { 'aria-label': 'Waiting list' } });
  const created = h('div', { class: 'fu-created' });
  const callArea = h('div', { class: 'fu-call-area' });
  const caseSelect = h('select', { id: 'fu-case', required: true });
  const start = h('input', { id: 'fu-start', type: 'datetime-local', required: true, value: localInput(new Date()) });
  const end = h('input', { id: 'fu-end', type: 'datetime-local', required: true, value: localInput(new Date(Date.now() + 3600_000)) });
  const label = h('input', { id: 'fu-label', type: 'text', required: true, maxLength: 80, placeholder: 'e.g. Mrs K. (mobile …42)' });
  const verify = h('input', { id: 'fu-verify', type: 'checkbox' });
  const formError = h('p', { class: 'form-error', hidden: true });
  let call: VideoGrid | null = null;
  let callFollowUp: string | null = null;
  let disposed = false;
  /** Messages being typed survive the list's re-renders (a change arrives, the clock ticks). */
  const drafts = new Map<string, string>();

  const socket: Socket = io({ path: '/socket.io', transports: ['websocket'], withCredentials: true });
  const emit = <T>(event: string, payload: unknown) => (socket.timeout(15_000) as unknown as { emitWithAck(e: string, p: unknown): Promise<Ack<T>> }).emitWithAck(event, payload);
  socket.on('followup:changed', ({ followUp }: { followUp: PublicFollowUp }) => {
    followUps.set(followUp.id, followUp);
    renderList();
    if (callFollowUp === followUp.id && (followUp.state === 'ended' || followUp.state === 'declined')) leaveCall();
  });
  socket.on('followup:alert', ({ followUpId, kind, contactLabel, at }: { followUpId: string; kind: FollowUpAlertKind; contactLabel: string; at: string }) => {
    const time = new Date(at).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    const item = h('p', { class: `fu-alert fu-alert-${kind}`, dataset: { followUpId } }, `${time} · ${contactLabel} ${ALERT_TEXT[kind]}`, ' ', h('button', { type: 'button', class: 'link', on: { click: () => item.remove() } }, 'Dismiss'));
    alerts.prepend(item);
    if (kind === 'arrived' || kind === 'second_device') chime();
  });
  const ticker = window.setInterval(renderList, 20_000);

  function renderList(): void {
    const focused = (document.activeElement as HTMLElement | null)?.closest?.('[data-follow-up-id]')?.getAttribute('data-follow-up-id') ?? null;
    const hadFocus = document.activeElement?.tagName === 'INPUT' && list.contains(document.activeElement);
    const rows = [...followUps.values()].sort((a, b) => {
      // Waiting patients first, longest waiting first; then by start time.
      const w = (f: PublicFollowUp) => (f.state === 'waiting' ? 0 : f.state === 'admitted' || f.state === 'dropped' ? 1 : f.state === 'ended' || f.state === 'declined' ? 3 : 2);
      return w(a) - w(b) || (a.waitingSince ?? a.startsAt).localeCompare(b.waitingSince ?? b.startsAt);
    });
    replaceChildren(list, ...(rows.length ? rows.map(row) : [h('li', { class: 'muted' }, 'No follow-ups scheduled.')]));
    if (hadFocus && focused) list.querySelector<HTMLInputElement>(`[data-follow-up-id="${focused}"] input`)?.focus();
  }

  function row(f: PublicFollowUp): HTMLElement {
    const final = f.state === 'ended' || f.state === 'declined';
    const message = h('input', { type: 'text', maxLength: 200, placeholder: 'Message to the patient', value: drafts.get(f.id) ?? '', attrs: { 'aria-label': `Message to ${f.contactLabel}` } });
    message.addEventListener('input', () => drafts.set(f.id, message.value));
    const act = (path: string, body?: unknown) => () => {
      ctx.api.post(`/api/followups/${f.id}/${path}`, body).then(
        (answer) => {
          const updated = (answer as { followUp: PublicFollowUp }).followUp;
          followUps.set(updated.id, updated);
          renderList();
        },
        (err) => alerts.prepend(h('p', { class: 'fu-alert form-error' }, describeError(err))),
      );
    };
    const device = f.deviceCheck ? `camera ${f.deviceCheck.camera ? '✓' : '✗'} · microphone ${f.deviceCheck.microphone ? '✓' : '✗'}` : 'device check not done';
    return h(
      'li',
      { class: `fu-row fu-state-${f.state}`, dataset: { followUpId: f.id } },
      h('div', { class: 'fu-row-head' }, h('strong', {}, f.contactLabel), ' ', h('span', { class: 'fu-badge' }, STATE_LABEL[f.state])),
      h(
        'p',
        { class: 'muted' },
        f.state === 'waiting' ? `Waiting ${minutesSince(f.waitingSince)} · ${device}` : `${new Date(f.startsAt).toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' })} – ${new Date(f.endsAt).toLocaleTimeString([], { timeStyle: 'short' })}`,
      ),
      final
        ? null
        : h(
            'div',
            { class: 'fu-actions' },
            f.state === 'waiting' ? h('button', { type: 'button', class: 'primary', on: { click: act('admit') } }, `Admit ${f.contactLabel}`) : null,
            ['waiting', 'left', 'dropped', 'consented', 'opened', 'invited'].includes(f.state) ? h('button', { type: 'button', on: { click: act('decline') } }, 'Decline') : null,
            h('button', { type: 'button', on: { click: () => void joinCall(f) } }, callFollowUp === f.id ? 'In the call' : 'Join the call'),
            h('button', { type: 'button', class: 'danger', on: { click: act('end') } }, 'End follow-up'),
            h(
              'form',
              {
                class: 'fu-message-form',
                on: {
                  submit: (e: Event) => {
                    e.preventDefault();
                    if (message.value.trim()) act('messages', { text: message.value.trim() })();
                    message.value = '';
                    drafts.delete(f.id);
                  },
                },
              },
              message,
              h('button', { type: 'submit' }, 'Send'),
            ),
          ),
    );
  }

  async function joinCall(f: PublicFollowUp): Promise<void> {
    if (callFollowUp === f.id) return;
    leaveCall();
    const answer = await emit<{ roomId: string }>('followup:join', { followUpId: f.id });
    if (!answer.ok) {
      alerts.prepend(h('p', { class: 'fu-alert form-error' }, answer.error.message));
      return;
    }
    callFollowUp = f.id;
    call = new VideoGrid(socket, answer.data.roomId, { myName: ctx.me?.user.name ?? 'Me', autoJoin: true });
    replaceChildren(callArea, h('h2', {}, `Call with ${f.contactLabel}`), call.element);
    renderList();
  }

  function leaveCall(): void {
    if (!callFollowUp) return;
    void emit('followup:leave', { followUpId: callFollowUp });
    call?.dispose();
    call = null;
    callFollowUp = null;
    replaceChildren(callArea);
  }

  const form = h(
    'form',
    { class: 'panel fu-schedule' },
    h('h2', {}, 'Schedule a video follow-up'),
    h('label', { attrs: { for: 'fu-case' } }, 'Case'),
    caseSelect,
    h('label', { attrs: { for: 'fu-start' } }, 'From'),
    start,
    h('label', { attrs: { for: 'fu-end' } }, 'Until'),
    end,
    h('label', { attrs: { for: 'fu-label' } }, 'Patient (as you will recognise them)'),
    label,
    h('label', { class: 'fu-check' }, verify, ' Ask the patient their date of birth (checked against the case)'),
    formError,
    h('button', { type: 'submit', class: 'primary' }, 'Create the invite link'),
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    formError.hidden = true;
    ctx.api
      .post<CreatedFollowUp>(`/api/cases/${caseSelect.value}/followups`, {
        startsAt: new Date(start.value).toISOString(),
        endsAt: new Date(end.value).toISOString(),
        contactLabel: label.value.trim(),
        verification: verify.checked ? 'dateOfBirth' : null,
      })
      .then(
        (result) => {
          followUps.set(result.followUp.id, result.followUp);
          renderList();
          showLink(result);
          label.value = '';
        },
        (err) => {
          formError.textContent = describeError(err);
          formError.hidden = false;
        },
      );
  });

  function showLink(result: CreatedFollowUp): void {
    const link = h('input', { type: 'text', readOnly: true, value: result.inviteUrl, class: 'fu-link', attrs: { 'aria-label': 'Invite link' } });
    const channel = h('select', { attrs: { 'aria-label': 'Sent by' } }, ...['sms', 'email', 'letter', 'phone', 'other'].map((c) => h('option', { value: c }, c)));
    const sent = h('button', { type: 'button' }, 'Mark as sent');
    sent.addEventListener('click', () => {
      ctx.api.post(`/api/followups/${result.followUp.id}/sent`, { channel: channel.value }).then(
        () => replaceChildren(created, h('p', { class: 'muted' }, `Invite for ${result.followUp.contactLabel} marked as sent.`)),
        (err) => alerts.prepend(h('p', { class: 'fu-alert form-error' }, describeError(err))),
      );
    });
    replaceChildren(
      created,
      h('p', {}, `Send this link to ${result.followUp.contactLabel}. It is shown only now, works on one device, and stops working when the follow-up ends.`),
      link,
      h('button', { type: 'button', on: { click: () => void navigator.clipboard?.writeText(result.inviteUrl).catch(() => link.select()) } }, 'Copy'),
      channel,
      sent,
    );
    link.select();
  }

  ctx.setTitle('Video follow-ups');
  const element = h(
    'div',
    { class: 'page fu-page' },
    h('h1', {}, 'Video follow-ups'),
    alerts,
    h('div', { class: 'fu-columns' }, h('div', {}, form, created), h('section', { class: 'panel', attrs: { 'aria-label': 'Waiting list' } }, h('h2', {}, 'Waiting list'), list)),
    callArea,
  );

  ctx.api.get<{ followUps: PublicFollowUp[] }>('/api/followups').then(
    ({ followUps: all }) => {
      if (disposed) return;
      for (const f of all) followUps.set(f.id, f);
      renderList();
    },
    (err) => alerts.prepend(h('p', { class: 'fu-alert form-error' }, describeError(err))),
  );
  ctx.api.get<{ cases: PublicCase[] }>('/api/cases?limit=200').then(
    ({ cases }) => {
      if (disposed) return;
      replaceChildren(caseSelect, ...cases.map((c) => h('option', { value: c.id }, `${c.label} · ${c.title}`)));
      const preselect = new URLSearchParams(location.search).get('case');
      if (preselect) caseSelect.value = preselect;
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
    },
  };
}
