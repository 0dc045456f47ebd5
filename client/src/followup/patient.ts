// The patient's page of a video follow-up (client/followup.html, its own bundle: nothing of the
// case UI is loaded). Steps: open the invite (token from the link's fragment, removed from the
// address bar at once), consent, the optional question, a camera and microphone check, the
// waiting room, the call. Large controls, one column, works on a phone.
import { io, type Socket } from 'socket.io-client';
import type { Ack } from '../../../src/protocol/realtime';
import type { OpenInviteResponse, PatientMessage, PatientState, PatientView } from '../../../src/protocol/followups';
import { MediaSession, type RemoteMedia } from '../media/MediaSession';
import { h } from '../dom';
import './followup.css';

const root = document.getElementById('followup')!;
let csrfToken: string | null = null;
let view: PatientView | null = null;
let socket: Socket | null = null;
let session: MediaSession | null = null;
let deviceCheck = { camera: false, microphone: false };
let phase: 'start' | 'consent' | 'question' | 'check' | 'waiting' | 'call' | 'ended' = 'start';
let pingTimer: number | null = null;
let waitingSince = Date.now();
const messages: PatientMessage[] = [];

class RequestError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

async function request<T>(method: 'GET' | 'POST', path: string, body?: unknown): Promise<T> {
  const headers: Record<string, string> = { Accept: 'application/json' };
  if (method !== 'GET') {
    headers['Content-Type'] = 'application/json';
    if (!csrfToken) csrfToken = ((await request<{ csrfToken: string }>('GET', '/api/auth/csrf')).csrfToken);
    headers['X-CSRF-Token'] = csrfToken;
  }
  const res = await fetch(path, { method, headers, credentials: 'same-origin', body: body === undefined ? undefined : JSON.stringify(body) });
  const data = res.status === 204 ? null : await res.json().catch(() => null);
  if (!res.ok) throw new RequestError(res.status, data?.error?.code ?? 'NETWORK', data?.error?.message ?? 'The server could not be reached.');
  return data as T;
}

function screen(title: string, ...children: (Node | string)[]): void {
  root.replaceChildren(h('section', { class: 'fu-card' }, h('h1', { class: 'fu-title', tabIndex: -1 }, title), ...children));
  (root.querySelector('h1') as HTMLElement | null)?.focus();
}

function problem(text: string): HTMLElement {
  return h('p', { class: 'fu-problem', attrs: { role: 'alert' } }, text);
}

function ended(text: string): void {
  phase = 'ended';
  if (pingTimer !== null) window.clearInterval(pingTimer);
  session?.close();
  session = null;
  socket?.disconnect();
  socket = null;
  screen('Your appointment has ended', h('p', { class: 'fu-text' }, text), h('p', { class: 'fu-text' }, 'You can close this page.'));
}

function invalid(): void {
  phase = 'ended';
  screen('This link cannot be used', h('p', { class: 'fu-text' }, 'The appointment may have ended, or the link was opened on another device. Contact your clinic for a new link.'));
}

// --- steps ----------------------------------------------------------------------------------

function route(): void {
  if (!view) return;
  if (view.state === 'ended' || view.state === 'declined') return ended('Thank you.');
  if (!view.consented) return showConsent();
  if (view.verificationRequired && !view.verified) return showQuestion();
  if (phase === 'waiting' || phase === 'call') return;
  showCheck();
}

function showConsent(): void {
  phase = 'consent';
  const consent = view!.consent;
  const agree = h('button', { class: 'fu-button fu-primary', type: 'button' }, 'I agree, continue');
  const status = h('div');
  agree.addEventListener('click', () => {
    agree.disabled = true;
    request<PatientView>('POST', '/api/followup/consent', { version: consent.version, accepted: true }).then(
      (v) => {
        view = v;
        route();
      },
      (err: RequestError) => {
        agree.disabled = false;
        status.replaceChildren(problem(err.message));
      },
    );
  });
  screen(consent.title, h('p', { class: 'fu-when' }, `Appointment: ${formatWindow(view!.startsAt, view!.endsAt)}`), ...consent.paragraphs.map((p) => h('p', { class: 'fu-text' }, p)), status, agree);
}

function showQuestion(): void {
  phase = 'question';
  const input = h('input', { class: 'fu-input', type: 'date', id: 'fu-dob', required: true, autocomplete: 'bday' });
  const status = h('div');
  const form = h(
    'form',
    { class: 'fu-form' },
    h('label', { class: 'fu-label', attrs: { for: 'fu-dob' } }, 'Your date of birth'),
    input,
    status,
    h('button', { class: 'fu-button fu-primary', type: 'submit' }, 'Continue'),
  );
  form.addEventListener('submit', (event) => {
    event.preventDefault();
    request<PatientView>('POST', '/api/followup/verify', { dateOfBirth: input.value }).then(
      (v) => {
        view = v;
        route();
      },
      (err: RequestError) => {
        if (err.code === 'INVITE_INVALID') return invalid();
        status.replaceChildren(problem(err.code === 'VERIFICATION_FAILED' ? 'That does not match our records. Check and try again.' : err.message));
      },
    );
  });
  screen('Please confirm who you are', h('p', { class: 'fu-text' }, 'We check your answer against your records. It is not shown to anyone.'), form);
}

function showCheck(): void {
  phase = 'check';
  const preview = h('video', { class: 'fu-preview', autoplay: true, muted: true, playsInline: true, attrs: { 'aria-label': 'Your camera' } });
  const result = h('ul', { class: 'fu-checks' });
  const next = h('button', { class: 'fu-button fu-primary', type: 'button', disabled: true }, 'Go to the waiting room');
  let stream: MediaStream | null = null;
  const check = async () => {
    result.replaceChildren(h('li', {}, 'Checking your camera and microphone…'));
    try {
      stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
    } catch {
      // One of them may still work on its own.
      stream = await navigator.mediaDevices.getUserMedia({ audio: true }).catch(() => null);
    }
    const video = stream?.getVideoTracks()[0];
    const audio = stream?.getAudioTracks()[0];
    deviceCheck = { camera: video?.readyState === 'live', microphone: audio?.readyState === 'live' };
    if (stream) preview.srcObject = stream;
    result.replaceChildren(
      h('li', { class: deviceCheck.camera ? 'fu-ok' : 'fu-bad' }, deviceCheck.camera ? 'Camera: working' : 'Camera: not available'),
      h('li', { class: deviceCheck.microphone ? 'fu-ok' : 'fu-bad' }, deviceCheck.microphone ? 'Microphone: working' : 'Microphone: not available'),
    );
    next.disabled = false;
  };
  next.addEventListener('click', () => {
    for (const track of stream?.getTracks() ?? []) track.stop();
    showWaiting();
  });
  screen(
    'Check your camera and microphone',
    h('p', { class: 'fu-text' }, 'Your browser may ask for permission. Nothing is recorded.'),
    preview,
    result,
    h('button', { class: 'fu-button', type: 'button', on: { click: () => void check() } }, 'Check again'),
    next,
  );
  void check();
}

function renderMessages(): HTMLElement {
  return h(
    'ul',
    { class: 'fu-messages', attrs: { 'aria-label': 'Messages from your clinic' } },
    ...messages.map((m) => h('li', { class: 'fu-message' }, h('span', { class: 'fu-message-time' }, new Date(m.at).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })), ' ', m.text)),
  );
}

function showWaiting(reconnecting = false): void {
  phase = 'waiting';
  waitingSince = Date.now();
  const waited = h('p', { class: 'fu-when', id: 'fu-waited' }, 'Waiting: less than a minute');
  screen(
    'Waiting room',
    h('p', { class: 'fu-text' }, reconnecting ? 'Your connection was lost. Your clinician can let you back in.' : 'Your clinician will let you in shortly. Please keep this page open.'),
    waited,
    h('div', { id: 'fu-messages' }, renderMessages()),
    h('button', { class: 'fu-button', type: 'button', on: { click: () => void leave() } }, 'Leave'),
  );
  connectSocket();
}

function updateWaited(): void {
  const el = document.getElementById('fu-waited');
  if (!el) return;
  const minutes = Math.floor((Date.now() - waitingSince) / 60_000);
  el.textContent = minutes < 1 ? 'Waiting: less than a minute' : `Waiting: ${minutes} minute${minutes === 1 ? '' : 's'}`;
}

function emit<T>(event: string, payload: unknown): Promise<Ack<T>> {
  return (socket!.timeout(15_000) as unknown as { emitWithAck(e: string, p: unknown): Promise<Ack<T>> }).emitWithAck(event, payload);
}

function connectSocket(): void {
  if (socket) {
    if (socket.connected) void wait();
    return;
  }
  socket = io({ path: '/socket.io', transports: ['websocket'], withCredentials: true });
  socket.on('connect', () => void wait());
  socket.on('disconnect', () => {
    if (phase === 'call') {
      session?.close();
      session = null;
      showWaiting(true);
    }
  });
  socket.on('followup:state', ({ state }: { state: PatientState }) => {
    if (state === 'admitted' && phase === 'waiting') void joinCall();
  });
  socket.on('followup:message', (message: PatientMessage) => {
    messages.push(message);
    document.getElementById('fu-messages')?.replaceChildren(renderMessages());
  });
  socket.on('followup:ended', ({ reason }: { reason: string }) => {
    if (reason === 'replaced') return ended('This appointment was opened on another device.');
    ended(reason === 'declined' ? 'Your clinic cannot see you in this appointment. They will contact you.' : 'Thank you for attending.');
  });
  socket.on('session:ended', () => ended('Your session has ended.'));
  socket.on('connect_error', () => {
    if (phase !== 'ended') document.getElementById('fu-waited')?.replaceChildren('Connecting…');
  });
  pingTimer = window.setInterval(() => {
    updateWaited();
    if (socket?.connected) void emit('followup:patient:ping', {});
  }, 30_000);
}

async function wait(): Promise<void> {
  const answer = await emit<{ state: PatientState; messages: PatientMessage[] }>('followup:patient:wait', { deviceCheck });
  if (!answer.ok) {
    if (answer.error.code === 'INVITE_INVALID') return invalid();
    return;
  }
  messages.splice(0, messages.length, ...answer.data.messages);
  document.getElementById('fu-messages')?.replaceChildren(renderMessages());
  if (answer.data.state === 'admitted') await joinCall();
}

async function joinCall(): Promise<void> {
  const answer = await emit<{ roomId: string }>('followup:patient:join', {});
  if (!answer.ok) return;
  phase = 'call';
  const remoteArea = h('div', { class: 'fu-remote', id: 'fu-remote' }, h('p', { class: 'fu-text' }, 'Connecting to your clinician…'));
  const self = h('video', { class: 'fu-self', autoplay: true, muted: true, playsInline: true, attrs: { 'aria-label': 'You' } });
  const micButton = h('button', { class: 'fu-button', type: 'button', attrs: { 'aria-pressed': 'false' } }, 'Mute');
  const camButton = h('button', { class: 'fu-button', type: 'button', attrs: { 'aria-pressed': 'false' } }, 'Camera off');
  const status = h('div');
  root.replaceChildren(
    h(
      'section',
      { class: 'fu-call' },
      h('h1', { class: 'fu-visually-hidden' }, 'Video appointment'),
      remoteArea,
      self,
      status,
      h('div', { class: 'fu-controls' }, micButton, camButton, h('button', { class: 'fu-button fu-danger', type: 'button', on: { click: () => void leave() } }, 'Leave')),
    ),
  );
  const media = new MediaSession(socket!, answer.data.roomId);
  session = media;
  media.on('remote', (list) => renderRemote(remoteArea, list));
  media.on('local', (local) => {
    self.srcObject = local.camera.track ? new MediaStream([local.camera.track]) : null;
    micButton.textContent = local.mic.muted ? 'Unmute' : 'Mute';
    micButton.setAttribute('aria-pressed', String(local.mic.muted));
    camButton.textContent = local.camera.on ? 'Camera off' : 'Camera on';
    camButton.setAttribute('aria-pressed', String(!local.camera.on));
  });
  micButton.addEventListener('click', () => void media.setMicMuted(!media.local.mic.muted));
  camButton.addEventListener('click', () => void (media.local.camera.on ? media.stop('camera') : media.enableCamera()));
  try {
    await media.start();
    if (deviceCheck.microphone) await media.enableMic().catch(() => undefined);
    if (deviceCheck.camera) await media.enableCamera().catch(() => undefined);
  } catch (err) {
    status.replaceChildren(problem((err as Error).message));
  }
}

const remoteElements = new Map<string, HTMLMediaElement>();

/** The clinician's screen share large when there is one, cameras beside it, sound from every microphone. */
function renderRemote(area: HTMLElement, list: RemoteMedia[]): void {
  const wanted = new Set(list.map((m) => m.consumerId));
  for (const [id, el] of remoteElements) {
    if (!wanted.has(id)) {
      el.srcObject = null;
      remoteElements.delete(id);
    }
  }
  const videos = list.filter((m) => m.kind === 'video').sort((a, b) => (a.source === 'screen' ? -1 : b.source === 'screen' ? 1 : 0));
  const tiles: HTMLElement[] = [];
  for (const m of list) {
    let el = remoteElements.get(m.consumerId);
    if (!el) {
      el = m.kind === 'video' ? h('video', { autoplay: true, playsInline: true, muted: true }) : h('audio', { autoplay: true });
      el.srcObject = new MediaStream([m.track]);
      remoteElements.set(m.consumerId, el);
    }
    if (m.kind === 'audio') tiles.push(el);
  }
  for (const m of videos) {
    const el = remoteElements.get(m.consumerId)!;
    el.className = m.source === 'screen' ? 'fu-video fu-screen' : 'fu-video';
    el.setAttribute('aria-label', m.source === 'screen' ? `${m.name}'s shared screen` : m.name);
    tiles.push(h('figure', { class: m.source === 'screen' ? 'fu-tile fu-tile-screen' : 'fu-tile' }, el, h('figcaption', {}, m.source === 'screen' ? `${m.name} (screen)` : m.name)));
  }
  area.replaceChildren(...(videos.length ? tiles : [h('p', { class: 'fu-text' }, 'Waiting for your clinician\'s video…'), ...tiles]));
}

async function leave(): Promise<void> {
  session?.close();
  session = null;
  await request('POST', '/api/followup/leave').catch(() => undefined);
  ended('You left the appointment.');
}

function formatWindow(start: string, end: string): string {
  const s = new Date(start);
  const e = new Date(end);
  const day = s.toLocaleDateString([], { weekday: 'long', day: 'numeric', month: 'long' });
  const time = (d: Date) => d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  return `${day}, ${time(s)} – ${time(e)}`;
}

async function startPage(): Promise<void> {
  // The token leaves the address bar and the history at once; it lives only in this function.
  const token = new URLSearchParams(location.hash.slice(1)).get('t');
  if (location.hash) history.replaceState(null, '', location.pathname);
  screen('Video appointment', h('p', { class: 'fu-text' }, 'Opening your appointment…'));
  try {
    view = await request<PatientView>('GET', '/api/followup/me');
  } catch {
    view = null;
  }
  if (!view || (token && !view.followUpId)) {
    if (!token) return invalid();
    try {
      const opened = await request<OpenInviteResponse>('POST', '/api/followup/open', { token });
      csrfToken = opened.csrfToken;
      view = opened;
    } catch (err) {
      if ((err as RequestError).code === 'RATE_LIMITED') return screen('Please wait a moment', problem('Too many attempts. Try again in a few minutes.'));
      return invalid();
    }
  }
  route();
}

void startPage();
