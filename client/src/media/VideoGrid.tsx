// The call panel of a room: join/leave, microphone (with mute), camera, screen share, device
// pickers, a tile per person (camera video, name, muted state, active-speaker ring) and the
// screen share shown large. Audio plays through hidden <audio> elements. Each remote camera asks
// for the simulcast layer that fits its tile (enlarged: top layer; thumbnail: lowest).
//
// The class keeps the small imperative API the pages use (`element`, `session`, `dispose()`) and
// holds the state; a Preact component renders it into `element` (docs/client.md, "UI library").
// Media elements are keyed by producer, so they survive every re-render (StreamMedia.tsx).
import { createRef, render, type RefObject } from 'preact';
import type { MediaSource } from '../../../src/protocol/media';
import type { Socket } from 'socket.io-client';
import { MediaSession, type LocalState, type RemoteMedia, type SessionStatus } from './MediaSession';
import { StreamAudio, StreamVideo } from './StreamMedia';
import './media.css';

interface Person {
  socketId: string;
  userId: string;
  name: string;
  camera: RemoteMedia | null;
  mic: RemoteMedia | null;
  screen: RemoteMedia | null;
}

export interface VideoGridOptions {
  /** Shown on the local tile. */
  myName: string;
  /** Announces a status change to assistive technology (the page's live region). */
  say?: (text: string) => void;
  /** Start with the call joined (the patient page). */
  autoJoin?: boolean;
}

interface DeviceOption {
  id: string;
  label: string;
}

interface Devices {
  mics: DeviceOption[];
  cameras: DeviceOption[];
}

interface PanelProps {
  status: SessionStatus;
  statusText: string;
  local: LocalState;
  people: Person[];
  myName: string;
  speaker: string | null;
  enlarged: boolean;
  busy: boolean;
  devices: Devices;
  micSelect: RefObject<HTMLSelectElement | null>;
  cameraSelect: RefObject<HTMLSelectElement | null>;
  stage: RefObject<HTMLDivElement | null>;
  act: (fn: () => Promise<void>) => void;
  session: MediaSession;
  toggleEnlarged: () => void;
}

function CallButton({ label, pressed, name, busy, onClick }: { label: string; pressed: boolean | null; name: string; busy: boolean; onClick: () => void }) {
  return (
    <button type="button" class={`call-button${pressed ? ' on' : ''}`} disabled={busy} data-call={name} aria-pressed={pressed ?? undefined} onClick={onClick}>
      {label}
    </button>
  );
}

function Controls({ status, local, busy, act, session, micSelect, cameraSelect }: PanelProps) {
  const button = (label: string, pressed: boolean | null, onClick: () => Promise<void>, name: string) => (
    <CallButton key={name} label={label} pressed={pressed} name={name} busy={busy} onClick={() => act(onClick)} />
  );
  if (status === 'off') return <>{button('Join the call', null, () => session.start(), 'join')}</>;
  return (
    <>
      {button(local.mic.on ? 'Microphone off' : 'Microphone on', local.mic.on, () => (local.mic.on ? session.stop('mic') : session.enableMic(micSelect.current?.value || undefined)), 'mic')}
      {local.mic.on ? button(local.mic.muted ? 'Unmute' : 'Mute', local.mic.muted, () => session.setMicMuted(!local.mic.muted), 'mute') : null}
      {button(local.camera.on ? 'Camera off' : 'Camera on', local.camera.on, () => (local.camera.on ? session.stop('camera') : session.enableCamera(cameraSelect.current?.value || undefined)), 'camera')}
      {button(local.screen.on ? 'Stop sharing' : 'Share screen', local.screen.on, () => (local.screen.on ? session.stop('screen') : session.shareScreen()), 'screen')}
      {button('Leave the call', null, () => session.leave(), 'leave')}
    </>
  );
}

/** Shows the device in use (else the first, as the browser would); a choice switches to it at once. */
function DevicePicker({ label, options, current, select, onPick }: { label: string; options: DeviceOption[]; current: string | null; select: RefObject<HTMLSelectElement | null>; onPick: (deviceId: string | undefined) => void }) {
  const shown = options.some((d) => d.id === current) ? current! : (options[0]?.id ?? '');
  return (
    <label>
      {`${label} `}
      <select aria-label={label} ref={select} value={shown} onChange={(e) => onPick(e.currentTarget.value || undefined)}>
        {options.map((d) => (
          <option key={d.id} value={d.id}>
            {d.label}
          </option>
        ))}
      </select>
    </label>
  );
}

/** The screen share, large: someone else's first, else our own. */
function Stage({ people, local, stage }: PanelProps) {
  const sharing = people.find((p) => p.screen) ?? null;
  const fullScreen = () => void stage.current?.requestFullscreen?.().catch(() => undefined);
  let body = null;
  if (sharing?.screen) {
    const key = sharing.screen.producerId;
    body = (
      <>
        <StreamVideo key={key} source={sharing.screen.track} autoplay playsInline muted data-track={key} />
        <p class="call-stage-label">
          {`${sharing.name} is sharing their screen`}
          {/* The shared screen across the whole display (Esc returns). */}
          <button type="button" class="call-fullscreen" onClick={fullScreen}>
            Full screen
          </button>
        </p>
      </>
    );
  } else if (local.screen.on && local.screen.track) {
    body = (
      <>
        <StreamVideo key="local-screen" source={local.screen.track} autoplay playsInline muted data-track="local-screen" />
        <p class="call-stage-label">You are sharing your screen</p>
      </>
    );
  }
  return (
    <div class="call-stage" hidden={!body} ref={stage}>
      {body}
    </div>
  );
}

function Tile({ peer, name, video, speaking, muted, active, enlarged, toggleEnlarged }: { peer: string; name: string; video: { key: string; track: MediaStreamTrack } | null; speaking: boolean; muted: boolean; active: boolean; enlarged: boolean; toggleEnlarged: () => void }) {
  return (
    <li class={`call-tile${active ? ' speaking' : ''}`} data-peer={peer} data-has-video={String(!!video)} data-mic-on={String(speaking)}>
      {video ? (
        <StreamVideo key={video.key} source={video.track} autoplay playsInline muted data-track={video.key} />
      ) : (
        <div class="call-avatar" aria-hidden="true">
          {initials(name)}
        </div>
      )}
      <span class="call-name">
        {name}
        {muted ? (
          <span class="call-muted" aria-label="microphone off">
            {' · muted'}
          </span>
        ) : null}
        {active ? <span class="visually-hidden">{' · speaking'}</span> : null}
      </span>
      {video && peer !== 'me' ? (
        <button type="button" class="call-enlarge" aria-pressed={enlarged} onClick={toggleEnlarged}>
          {enlarged ? 'Smaller' : 'Larger'}
        </button>
      ) : null}
    </li>
  );
}

function CallPanel(props: PanelProps) {
  const { status, statusText, local, people, myName, speaker, enlarged, devices, act, session, micSelect, cameraSelect, toggleEnlarged } = props;
  return (
    <>
      <h2>Call</h2>
      <p class="call-status" role="status">
        {statusText}
      </p>
      <div class="call-controls" role="toolbar" aria-label="Call controls">
        <Controls {...props} />
      </div>
      <div class="call-devices" hidden={status === 'off'}>
        {/* The choice is read before act() renders again (which shows the device still in use). */}
        <DevicePicker label="Microphone" options={devices.mics} current={local.mic.deviceId} select={micSelect} onPick={(id) => act(() => session.enableMic(id))} />
        <DevicePicker label="Camera" options={devices.cameras} current={local.camera.deviceId} select={cameraSelect} onPick={(id) => act(() => session.enableCamera(id))} />
      </div>
      <Stage {...props} />
      {/* Tiles: me first, then everyone with media. */}
      <ul class={`call-tiles${enlarged ? ' enlarged' : ''}`} aria-label="People in the call">
        {status !== 'off' ? (
          <Tile
            key="me"
            peer="me"
            name={`${myName} (you)`}
            video={local.camera.on && local.camera.track ? { key: 'local-camera', track: local.camera.track } : null}
            speaking={local.mic.on && !local.mic.muted}
            muted={!local.mic.on || local.mic.muted}
            active={false}
            enlarged={enlarged}
            toggleEnlarged={toggleEnlarged}
          />
        ) : null}
        {people.map((p) => (
          <Tile
            key={p.socketId}
            peer={p.socketId}
            name={p.name}
            video={p.camera && !p.camera.paused ? { key: p.camera.producerId, track: p.camera.track } : null}
            speaking={!!p.mic && !p.mic.paused}
            muted={!p.mic || p.mic.paused}
            active={speaker === p.socketId}
            enlarged={enlarged}
            toggleEnlarged={toggleEnlarged}
          />
        ))}
      </ul>
      {/* Audio: one hidden element per remote microphone. */}
      <div class="call-audio" hidden>
        {people.map((p) => (p.mic ? <StreamAudio key={p.mic.producerId} source={p.mic.track} autoplay /> : null))}
      </div>
    </>
  );
}

function statusText(status: SessionStatus, error?: string): string {
  if (error) return `Call problem: ${error}`;
  if (status === 'live') return 'In the call (encrypted: DTLS/SRTP).';
  if (status === 'joining') return 'Joining the call…';
  if (status === 'rebuilding') return 'Reconnecting the call…';
  return 'Not in the call.';
}

export class VideoGrid {
  readonly element: HTMLElement = document.createElement('section');
  readonly session: MediaSession;
  readonly #micSelect = createRef<HTMLSelectElement>();
  readonly #cameraSelect = createRef<HTMLSelectElement>();
  readonly #stage = createRef<HTMLDivElement>();
  readonly #onDeviceChange = () => void this.#listDevices();
  #statusText = 'Not in the call.';
  #devices: Devices = { mics: [], cameras: [] };
  #speaker: string | null = null;
  #enlarged = false;
  #busy = false;
  #disposed = false;

  constructor(
    socket: Socket,
    roomId: string,
    private readonly options: VideoGridOptions,
  ) {
    this.session = new MediaSession(socket, roomId);
    this.element.className = 'panel call-panel';
    this.element.setAttribute('aria-label', 'Audio and video call');
    this.session.on('remote', () => this.#render());
    this.session.on('local', () => this.#render());
    this.session.on('speaker', (s) => {
      this.#speaker = s?.socketId ?? null;
      this.#draw();
    });
    this.session.on('status', (status, error) => {
      const text = statusText(status, error);
      this.#statusText = text;
      this.element.dataset.callStatus = status;
      if (error || status === 'rebuilding') this.options.say?.(text);
      this.#render();
    });
    navigator.mediaDevices?.addEventListener?.('devicechange', this.#onDeviceChange);
    this.#render();
    if (options.autoJoin) void this.#act(() => this.session.start());
  }

  async #act(fn: () => Promise<void>): Promise<void> {
    if (this.#busy) return;
    this.#busy = true;
    this.#render();
    try {
      await fn();
    } catch (err) {
      const message = (err as Error).name === 'NotAllowedError' ? 'The browser was not allowed to use this device.' : (err as Error).message;
      this.#statusText = `Call problem: ${message}`;
      this.options.say?.(`Call problem: ${message}`);
    } finally {
      this.#busy = false;
      this.#render();
    }
  }

  /** The device lists, read again while in the call: labels appear once a device was allowed. */
  async #listDevices(): Promise<void> {
    if (!navigator.mediaDevices?.enumerateDevices) return;
    const all = await navigator.mediaDevices.enumerateDevices();
    const list = (kind: MediaDeviceKind): DeviceOption[] =>
      all.filter((d) => d.kind === kind).map((d, i) => ({ id: d.deviceId, label: d.label || `${kind === 'audioinput' ? 'Microphone' : 'Camera'} ${i + 1}` }));
    const devices = { mics: list('audioinput'), cameras: list('videoinput') };
    // Drawn only when something changed (this runs after every render of the call).
    if (JSON.stringify(devices) === JSON.stringify(this.#devices)) return;
    this.#devices = devices;
    this.#draw();
  }

  #people(): Person[] {
    const people = new Map<string, Person>();
    for (const m of this.session.remoteMedia()) {
      const p = people.get(m.socketId) ?? { socketId: m.socketId, userId: m.userId, name: m.name, camera: null, mic: null, screen: null };
      p[m.source as MediaSource] = m;
      people.set(m.socketId, p);
    }
    return [...people.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  #render(): void {
    if (this.#disposed) return;
    const people = this.#draw();
    if (this.session.status !== 'off') void this.#listDevices();
    for (const p of people) {
      if (p.camera?.simulcast) void this.session.preferLayer(p.camera.producerId, this.#enlarged ? 2 : people.length > 4 ? 0 : 1).catch(() => undefined);
    }
  }

  #draw(): Person[] {
    const people = this.#people();
    if (this.#disposed) return people;
    render(
      <CallPanel
        status={this.session.status}
        statusText={this.#statusText}
        local={this.session.local}
        people={people}
        myName={this.options.myName}
        speaker={this.#speaker}
        enlarged={this.#enlarged}
        busy={this.#busy}
        devices={this.#devices}
        micSelect={this.#micSelect}
        cameraSelect={this.#cameraSelect}
        stage={this.#stage}
        act={(fn) => void this.#act(fn)}
        session={this.session}
        toggleEnlarged={() => {
          this.#enlarged = !this.#enlarged;
          this.#render();
        }}
      />,
      this.element,
    );
    return people;
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    navigator.mediaDevices?.removeEventListener?.('devicechange', this.#onDeviceChange);
    this.session.close();
    // Unmounting lets every media element drop its stream.
    render(null, this.element);
  }
}

function initials(name: string): string {
  return name
    .split(/\s+/)
    .filter(Boolean)
    .slice(0, 2)
    .map((w) => w[0]!.toUpperCase())
    .join('');
}
