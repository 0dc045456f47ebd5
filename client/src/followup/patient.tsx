// The patient's page of a video follow-up (client/followup.html, its own bundle: nothing of the
// case UI is loaded). Steps: open the invite (token from the link's fragment, removed from the
// address bar at once), consent, the optional question, a camera and microphone check, the
// waiting room, the call. Large controls, one column, works on a phone.
//
// The page's state lives in this module and is rendered with Preact after every change. Each
// step is a screen of its own (keyed), whose heading takes the focus when it appears; camera and
// sound reach their <video>/<audio> through refs (StreamMedia.tsx), so a re-render never
// restarts them.
import { render, type ComponentChildren } from 'preact';
import { useLayoutEffect, useRef } from 'preact/hooks';
import { io, type Socket } from 'socket.io-client';
import type { Ack } from '../../../src/protocol/realtime';
import type { OpenInviteResponse, PatientMessage, PatientState, PatientView } from '../../../src/protocol/followups';
import { MediaSession, type LocalState, type RemoteMedia } from '../media/MediaSession';
import { StreamAudio, StreamVideo } from '../media/StreamMedia';
import './followup.css';

type Screen =
  | { kind: 'notice'; title: string; body: ComponentChildren }
  | { kind: 'consent' }
  | { kind: 'question' }
  | { kind: 'check' }
  | { kind: 'waiting'; reconnecting: boolean }
  | { kind: 'call' };

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

/** The screen shown; `screenSeq` counts screens, so showing one again starts it afresh. */
let current: Screen = { kind: 'notice', title: 'Video appointment', body: null };
let screenSeq = 0;
/** Per screen: what the step shows besides its fixed text. */
let consentBusy = false;
let stepProblem: string | null = null;
let checkStream: MediaStream | null = null;
let checking = false;
let checkDone = false;
let waitedText = 'Waiting: less than a minute';
let callLocal: LocalState | null = null;
let callRemote: RemoteMedia[] | null = null;
const dateOfBirth = { current: null as HTMLInputElement | null };

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
    if (!csrfToken) csrfToken = (await request<{ csrfToken: string }>('GET', '/api/auth/csrf')).csrfToken;
    headers['X-CSRF-Token'] = csrfToken;
  }
  const res = await fetch(path, { method, headers, credentials: 'same-origin', body: body === undefined ? undefined : JSON.stringify(body) });
  const data = res.status === 204 ? null : await res.json().catch(() => null);
  if (!res.ok) throw new RequestError(res.status, data?.error?.code ?? 'NETWORK', data?.error?.message ?? 'The server could not be reached.');
  return data as T;
}

// --- rendering ------------------------------------------------------------------------------

function Problem({ text }: { text: string }) {
  return (
    <p class="fu-problem" role="alert">
      {text}
    </p>
  );
}

/** One step: its heading takes the focus when the step appears (the section is keyed per step). */
function Card({ title, children }: { title: string; children?: ComponentChildren }) {
  const heading = useRef<HTMLHeadingElement>(null);
  useLayoutEffect(() => heading.current?.focus(), []);
  return (
    <section class="fu-card">
      <h1 class="fu-title" tabIndex={-1} ref={heading}>
        {title}
      </h1>
      {children}
    </section>
  );
}

function ConsentStep() {
  const consent = view!.consent;
  return (
    <Card title={consent.title}>
      <p class="fu-when">{`Appointment: ${formatWindow(view!.startsAt, view!.endsAt)}`}</p>
      {consent.paragraphs.map((p) => (
        <p class="fu-text">{p}</p>
      ))}
      <div>{stepProblem ? <Problem text={stepProblem} /> : null}</div>
      <button class="fu-button fu-primary" type="button" disabled={consentBusy} onClick={agree}>
        I agree, continue
      </button>
    </Card>
  );
}

function QuestionStep() {
  return (
    <Card title="Please confirm who you are">
      <p class="fu-text">We check your answer against your records. It is not shown to anyone.</p>
      <form class="fu-form" onSubmit={answerQuestion}>
        <label class="fu-label" for="fu-dob">
          Your date of birth
        </label>
        <input class="fu-input" type="date" id="fu-dob" required autocomplete="bday" ref={dateOfBirth} />
        <div>{stepProblem ? <Problem text={stepProblem} /> : null}</div>
        <button class="fu-button fu-primary" type="submit">
          Continue
        </button>
      </form>
    </Card>
  );
}

function CheckStep() {
  return (
    <Card title="Check your camera and microphone">
      <p class="fu-text">Your browser may ask for permission. Nothing is recorded.</p>
      <StreamVideo class="fu-preview" autoplay muted playsInline aria-label="Your camera" source={checkStream} />
      <ul class="fu-checks">
        {checking ? (
          <li>Checking your camera and microphone…</li>
        ) : checkDone ? (
          <>
            <li class={deviceCheck.camera ? 'fu-ok' : 'fu-bad'}>{deviceCheck.camera ? 'Camera: working' : 'Camera: not available'}</li>
            <li class={deviceCheck.microphone ? 'fu-ok' : 'fu-bad'}>{deviceCheck.microphone ? 'Microphone: working' : 'Microphone: not available'}</li>
          </>
        ) : null}
      </ul>
      <button class="fu-button" type="button" onClick={() => void check()}>
        Check again
      </button>
      <button class="fu-button fu-primary" type="button" disabled={!checkDone} onClick={toWaitingRoom}>
        Go to the waiting room
      </button>
    </Card>
  );
}

function WaitingStep({ reconnecting }: { reconnecting: boolean }) {
  return (
    <Card title="Waiting room">
      <p class="fu-text">{reconnecting ? 'Your connection was lost. Your clinician can let you back in.' : 'Your clinician will let you in shortly. Please keep this page open.'}</p>
      <p class="fu-when" id="fu-waited">
        {waitedText}
      </p>
      <div id="fu-messages">
        <ul class="fu-messages" aria-label="Messages from your clinic">
          {messages.map((m, i) => (
            <li key={i} class="fu-message">
              <span class="fu-message-time">{new Date(m.at).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })}</span> {m.text}
            </li>
          ))}
        </ul>
      </div>
      <button class="fu-button" type="button" onClick={() => void leave()}>
        Leave
      </button>
    </Card>
  );
}

/** The clinician's screen share large when there is one, cameras beside it, sound from every microphone. */
function Remote({ list }: { list: RemoteMedia[] | null }) {
  if (!list) return <p class="fu-text">Connecting to your clinician…</p>;
  const videos = list.filter((m) => m.kind === 'video').sort((a, b) => (a.source === 'screen' ? -1 : b.source === 'screen' ? 1 : 0));
  const sounds = list.filter((m) => m.kind === 'audio').map((m) => <StreamAudio key={m.consumerId} autoplay source={m.track} />);
  if (!videos.length) {
    return (
      <>
        <p key="waiting" class="fu-text">
          Waiting for your clinician's video…
        </p>
        {sounds}
      </>
    );
  }
  return (
    <>
      {sounds}
      {videos.map((m) => (
        <figure key={m.consumerId} class={m.source === 'screen' ? 'fu-tile fu-tile-screen' : 'fu-tile'}>
          <StreamVideo
            class={m.source === 'screen' ? 'fu-video fu-screen' : 'fu-video'}
            aria-label={m.source === 'screen' ? `${m.name}'s shared screen` : m.name}
            autoplay
            playsInline
            muted
            source={m.track}
          />
          <figcaption>{m.source === 'screen' ? `${m.name} (screen)` : m.name}</figcaption>
        </figure>
      ))}
    </>
  );
}

function CallStep() {
  // Before the session reports its local state the buttons read as the call starts: unmuted, camera on.
  const muted = callLocal?.mic.muted ?? false;
  const cameraOn = callLocal ? callLocal.camera.on : true;
  return (
    <section class="fu-call">
      <h1 class="fu-visually-hidden">Video appointment</h1>
      <div class="fu-remote" id="fu-remote">
        <Remote list={callRemote} />
      </div>
      <StreamVideo class="fu-self" autoplay muted playsInline aria-label="You" source={callLocal?.camera.track ?? null} />
      <div>{stepProblem ? <Problem text={stepProblem} /> : null}</div>
      <div class="fu-controls">
        <button class="fu-button" type="button" aria-pressed={muted} onClick={() => void session?.setMicMuted(!session.local.mic.muted)}>
          {muted ? 'Unmute' : 'Mute'}
        </button>
        <button class="fu-button" type="button" aria-pressed={!cameraOn} onClick={() => void (session && (session.local.camera.on ? session.stop('camera') : session.enableCamera()))}>
          {cameraOn ? 'Camera off' : 'Camera on'}
        </button>
        <button class="fu-button fu-danger" type="button" onClick={() => void leave()}>
          Leave
        </button>
      </div>
    </section>
  );
}

function Page({ screen, seq }: { screen: Screen; seq: number }) {
  switch (screen.kind) {
    case 'notice':
      return (
        <Card key={seq} title={screen.title}>
          {screen.body}
        </Card>
      );
    case 'consent':
      return <ConsentStep key={seq} />;
    case 'question':
      return <QuestionStep key={seq} />;
    case 'check':
      return <CheckStep key={seq} />;
    case 'waiting':
      return <WaitingStep key={seq} reconnecting={screen.reconnecting} />;
    case 'call':
      return <CallStep key={seq} />;
  }
}

function update(): void {
  render(<Page screen={current} seq={screenSeq} />, root);
}

/** Shows a new screen (a new step, or the same one started again). */
function show(screen: Screen): void {
  current = screen;
  screenSeq++;
  stepProblem = null;
  update();
}

function notice(title: string, body: ComponentChildren): void {
  show({ kind: 'notice', title, body });
}

function ended(text: string): void {
  phase = 'ended';
  if (pingTimer !== null) window.clearInterval(pingTimer);
  session?.close();
  session = null;
  socket?.disconnect();
  socket = null;
  notice(
    'Your appointment has ended',
    <>
      <p class="fu-text">{text}</p>
      <p class="fu-text">You can close this page.</p>
    </>,
  );
}

function invalid(): void {
  phase = 'ended';
  notice('This link cannot be used', <p class="fu-text">The appointment may have ended, or the link was opened on another device. Contact your clinic for a new link.</p>);
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
  consentBusy = false;
  show({ kind: 'consent' });
}

function agree(): void {
  consentBusy = true;
  update();
  request<PatientView>('POST', '/api/followup/consent', { version: view!.consent.version, accepted: true }).then(
    (v) => {
      view = v;
      route();
    },
    (err: RequestError) => {
      consentBusy = false;
      stepProblem = err.message;
      update();
    },
  );
}

function showQuestion(): void {
  phase = 'question';
  show({ kind: 'question' });
}

function answerQuestion(event: Event): void {
  event.preventDefault();
  request<PatientView>('POST', '/api/followup/verify', { dateOfBirth: dateOfBirth.current?.value ?? '' }).then(
    (v) => {
      view = v;
      route();
    },
    (err: RequestError) => {
      if (err.code === 'INVITE_INVALID') return invalid();
      stepProblem = err.code === 'VERIFICATION_FAILED' ? 'That does not match our records. Check and try again.' : err.message;
      update();
    },
  );
}

function showCheck(): void {
  phase = 'check';
  checkStream = null;
  checking = false;
  checkDone = false;
  show({ kind: 'check' });
  void check();
}

async function check(): Promise<void> {
  checking = true;
  update();
  let stream: MediaStream | null;
  try {
    stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
  } catch {
    // One of them may still work on its own.
    stream = await navigator.mediaDevices.getUserMedia({ audio: true }).catch(() => null);
  }
  const video = stream?.getVideoTracks()[0];
  const audio = stream?.getAudioTracks()[0];
  deviceCheck = { camera: video?.readyState === 'live', microphone: audio?.readyState === 'live' };
  if (stream) {
    // A check done again replaces the previous one: its camera and microphone are let go.
    if (checkStream && checkStream !== stream) for (const track of checkStream.getTracks()) track.stop();
    checkStream = stream;
  }
  checking = false;
  checkDone = true;
  if (phase === 'check') update();
  else for (const track of stream?.getTracks() ?? []) track.stop();
}

function toWaitingRoom(): void {
  for (const track of checkStream?.getTracks() ?? []) track.stop();
  checkStream = null;
  showWaiting();
}

function showWaiting(reconnecting = false): void {
  phase = 'waiting';
  waitingSince = Date.now();
  waitedText = 'Waiting: less than a minute';
  show({ kind: 'waiting', reconnecting });
  connectSocket();
}

function updateWaited(): void {
  const minutes = Math.floor((Date.now() - waitingSince) / 60_000);
  waitedText = minutes < 1 ? 'Waiting: less than a minute' : `Waiting: ${minutes} minute${minutes === 1 ? '' : 's'}`;
  update();
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
    update();
  });
  socket.on('followup:ended', ({ reason }: { reason: string }) => {
    if (reason === 'replaced') return ended('This appointment was opened on another device.');
    ended(reason === 'declined' ? 'Your clinic cannot see you in this appointment. They will contact you.' : 'Thank you for attending.');
  });
  socket.on('session:ended', () => ended('Your session has ended.'));
  socket.on('connect_error', () => {
    if (phase === 'ended') return;
    waitedText = 'Connecting…';
    update();
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
  update();
  if (answer.data.state === 'admitted') await joinCall();
}

async function joinCall(): Promise<void> {
  const answer = await emit<{ roomId: string }>('followup:patient:join', {});
  if (!answer.ok) return;
  phase = 'call';
  callLocal = null;
  callRemote = null;
  const media = new MediaSession(socket!, answer.data.roomId);
  session = media;
  show({ kind: 'call' });
  media.on('remote', (list) => {
    if (session !== media) return;
    callRemote = list;
    update();
  });
  media.on('local', (local) => {
    if (session !== media) return;
    callLocal = local;
    update();
  });
  try {
    await media.start();
    if (deviceCheck.microphone) await media.enableMic().catch(() => undefined);
    if (deviceCheck.camera) await media.enableCamera().catch(() => undefined);
  } catch (err) {
    if (session !== media) return;
    stepProblem = (err as Error).message;
    update();
  }
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
  notice('Video appointment', <p class="fu-text">Opening your appointment…</p>);
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
      if ((err as RequestError).code === 'RATE_LIMITED') return notice('Please wait a moment', <Problem text="Too many attempts. Try again in a few minutes." />);
      return invalid();
    }
  }
  route();
}

void startPage();
