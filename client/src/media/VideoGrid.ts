// The call panel of a room: join/leave, microphone (with mute), camera, screen share, device
// pickers, a tile per person (camera video, name, muted state, active-speaker ring) and the
// screen share shown large. Audio plays through hidden <audio> elements. Each remote camera asks
// for the simulcast layer that fits its tile (enlarged: top layer; thumbnail: lowest).
import { h, replaceChildren } from '../dom';
import type { MediaSource } from '../../../src/protocol/media';
import type { Socket } from 'socket.io-client';
import { MediaSession, type LocalState, type RemoteMedia } from './MediaSession';
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

export class VideoGrid {
  readonly element: HTMLElement;
  readonly session: MediaSession;
  readonly #status = h('p', { class: 'call-status', attrs: { role: 'status' } }, 'Not in the call.');
  readonly #controls = h('div', { class: 'call-controls', attrs: { role: 'toolbar', 'aria-label': 'Call controls' } });
  readonly #stage = h('div', { class: 'call-stage', hidden: true });
  readonly #tiles = h('ul', { class: 'call-tiles', attrs: { 'aria-label': 'People in the call' } });
  readonly #audio = h('div', { class: 'call-audio', hidden: true });
  readonly #devices = h('div', { class: 'call-devices', hidden: true });
  readonly #micSelect = h('select', { attrs: { 'aria-label': 'Microphone' } });
  readonly #cameraSelect = h('select', { attrs: { 'aria-label': 'Camera' } });
  readonly #audioEls = new Map<string, HTMLAudioElement>();
  readonly #videoEls = new Map<string, HTMLVideoElement>();
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
    this.element = h(
      'section',
      { class: 'panel call-panel', attrs: { 'aria-label': 'Audio and video call' } },
      h('h2', {}, 'Call'),
      this.#status,
      this.#controls,
      this.#devices,
      this.#stage,
      this.#tiles,
      this.#audio,
    );
    this.session.on('remote', () => this.#render());
    this.session.on('local', () => this.#render());
    this.session.on('speaker', (s) => {
      this.#speaker = s?.socketId ?? null;
      this.#renderSpeaker();
    });
    this.session.on('status', (status, error) => {
      const text = error
        ? `Call problem: ${error}`
        : status === 'live'
          ? 'In the call (encrypted: DTLS/SRTP).'
          : status === 'joining'
            ? 'Joining the call…'
            : status === 'rebuilding'
              ? 'Reconnecting the call…'
              : 'Not in the call.';
      this.#status.textContent = text;
      this.element.dataset.callStatus = status;
      if (error || status === 'rebuilding') this.options.say?.(text);
      this.#render();
    });
    this.#devices.append(h('label', {}, 'Microphone ', this.#micSelect), h('label', {}, 'Camera ', this.#cameraSelect));
    this.#micSelect.addEventListener('change', () => void this.#act(() => this.session.enableMic(this.#micSelect.value || undefined)));
    this.#cameraSelect.addEventListener('change', () => void this.#act(() => this.session.enableCamera(this.#cameraSelect.value || undefined)));
    navigator.mediaDevices?.addEventListener?.('devicechange', () => void this.#listDevices());
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
      this.#status.textContent = `Call problem: ${message}`;
      this.options.say?.(`Call problem: ${message}`);
    } finally {
      this.#busy = false;
      this.#render();
    }
  }

  async #listDevices(): Promise<void> {
    if (!navigator.mediaDevices?.enumerateDevices) return;
    const devices = await navigator.mediaDevices.enumerateDevices();
    const fill = (select: HTMLSelectElement, kind: MediaDeviceKind, current: string | null) => {
      const list = devices.filter((d) => d.kind === kind);
      replaceChildren(select, ...list.map((d, i) => h('option', { value: d.deviceId, selected: d.deviceId === current }, d.label || `${kind === 'audioinput' ? 'Microphone' : 'Camera'} ${i + 1}`)));
    };
    fill(this.#micSelect, 'audioinput', this.session.local.mic.deviceId);
    fill(this.#cameraSelect, 'videoinput', this.session.local.camera.deviceId);
  }

  #button(label: string, pressed: boolean | null, onClick: () => Promise<void>, name: string): HTMLButtonElement {
    return h(
      'button',
      {
        type: 'button',
        class: `call-button${pressed ? ' on' : ''}`,
        disabled: this.#busy,
        dataset: { call: name },
        ...(pressed === null ? {} : { attrs: { 'aria-pressed': String(pressed) } }),
        on: { click: () => void this.#act(onClick) },
      },
      label,
    );
  }

  #render(): void {
    if (this.#disposed) return;
    const status = this.session.status;
    const local: LocalState = this.session.local;
    if (status === 'off') {
      replaceChildren(this.#controls, this.#button('Join the call', null, () => this.session.start(), 'join'));
      this.#devices.hidden = true;
    } else {
      replaceChildren(
        this.#controls,
        this.#button(local.mic.on ? 'Microphone off' : 'Microphone on', local.mic.on, () => (local.mic.on ? this.session.stop('mic') : this.session.enableMic(this.#micSelect.value || undefined)), 'mic'),
        local.mic.on ? this.#button(local.mic.muted ? 'Unmute' : 'Mute', local.mic.muted, () => this.session.setMicMuted(!local.mic.muted), 'mute') : null,
        this.#button(local.camera.on ? 'Camera off' : 'Camera on', local.camera.on, () => (local.camera.on ? this.session.stop('camera') : this.session.enableCamera(this.#cameraSelect.value || undefined)), 'camera'),
        this.#button(local.screen.on ? 'Stop sharing' : 'Share screen', local.screen.on, () => (local.screen.on ? this.session.stop('screen') : this.session.shareScreen()), 'screen'),
        this.#button('Leave the call', null, () => this.session.leave(), 'leave'),
      );
      this.#devices.hidden = false;
      void this.#listDevices();
    }
    this.#renderTiles(local);
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

  #videoFor(key: string, track: MediaStreamTrack, muted = true): HTMLVideoElement {
    let el = this.#videoEls.get(key);
    if (!el) {
      el = h('video', { autoplay: true, playsInline: true, muted, dataset: { track: key } });
      this.#videoEls.set(key, el);
    }
    const stream = el.srcObject as MediaStream | null;
    if (!stream || stream.getTracks()[0] !== track) el.srcObject = new MediaStream([track]);
    return el;
  }

  #renderTiles(local: LocalState): void {
    const people = this.#people();
    const used = new Set<string>();
    // Audio: one hidden element per remote microphone.
    const liveAudio = new Set<string>();
    for (const p of people) {
      if (!p.mic) continue;
      liveAudio.add(p.mic.producerId);
      if (!this.#audioEls.has(p.mic.producerId)) {
        const el = h('audio', { autoplay: true });
        el.srcObject = new MediaStream([p.mic.track]);
        this.#audioEls.set(p.mic.producerId, el);
        this.#audio.append(el);
      }
    }
    for (const [id, el] of this.#audioEls) {
      if (!liveAudio.has(id)) {
        el.srcObject = null;
        el.remove();
        this.#audioEls.delete(id);
      }
    }
    // The screen share, large.
    const sharing = people.find((p) => p.screen) ?? null;
    if (sharing?.screen) {
      const video = this.#videoFor(sharing.screen.producerId, sharing.screen.track);
      used.add(sharing.screen.producerId);
      replaceChildren(
        this.#stage,
        video,
        h(
          'p',
          { class: 'call-stage-label' },
          `${sharing.name} is sharing their screen`,
          // The shared screen across the whole display (Esc returns).
          h('button', { type: 'button', class: 'call-fullscreen', on: { click: () => void this.#stage.requestFullscreen?.().catch(() => undefined) } }, 'Full screen'),
        ),
      );
      this.#stage.hidden = false;
    } else if (local.screen.on && local.screen.track) {
      used.add('local-screen');
      replaceChildren(this.#stage, this.#videoFor('local-screen', local.screen.track), h('p', { class: 'call-stage-label' }, 'You are sharing your screen'));
      this.#stage.hidden = false;
    } else {
      this.#stage.hidden = true;
      replaceChildren(this.#stage);
    }
    // Tiles: me first, then everyone with media.
    const tiles: HTMLElement[] = [];
    if (this.session.status !== 'off') {
      const mine = local.camera.on && local.camera.track ? this.#videoFor('local-camera', local.camera.track) : null;
      if (mine) used.add('local-camera');
      tiles.push(this.#tile('me', `${this.options.myName} (you)`, mine, local.mic.on && !local.mic.muted, !local.mic.on || local.mic.muted, false));
    }
    for (const p of people) {
      const video = p.camera && !p.camera.paused ? this.#videoFor(p.camera.producerId, p.camera.track) : null;
      if (p.camera) used.add(p.camera.producerId);
      tiles.push(this.#tile(p.socketId, p.name, video, !!p.mic && !p.mic.paused, !p.mic || p.mic.paused, this.#speaker === p.socketId));
      if (p.camera?.simulcast) void this.session.preferLayer(p.camera.producerId, this.#enlarged ? 2 : people.length > 4 ? 0 : 1).catch(() => undefined);
    }
    replaceChildren(this.#tiles, ...tiles);
    this.#tiles.classList.toggle('enlarged', this.#enlarged);
    for (const [key, el] of this.#videoEls) {
      if (!used.has(key)) {
        el.srcObject = null;
        this.#videoEls.delete(key);
      }
    }
  }

  #tile(key: string, name: string, video: HTMLVideoElement | null, speaking: boolean, muted: boolean, active: boolean): HTMLElement {
    const body = video ?? h('div', { class: 'call-avatar', attrs: { 'aria-hidden': 'true' } }, initials(name));
    return h(
      'li',
      { class: `call-tile${active ? ' speaking' : ''}`, dataset: { peer: key, hasVideo: String(!!video), micOn: String(speaking) } },
      body,
      h(
        'span',
        { class: 'call-name' },
        name,
        muted ? h('span', { class: 'call-muted', attrs: { 'aria-label': 'microphone off' } }, ' · muted') : null,
        active ? h('span', { class: 'visually-hidden' }, ' · speaking') : null,
      ),
      video && key !== 'me'
        ? h('button', { type: 'button', class: 'call-enlarge', attrs: { 'aria-pressed': String(this.#enlarged) }, on: { click: () => this.#toggleEnlarged() } }, this.#enlarged ? 'Smaller' : 'Larger')
        : null,
    );
  }

  #toggleEnlarged(): void {
    this.#enlarged = !this.#enlarged;
    this.#render();
  }

  #renderSpeaker(): void {
    for (const tile of this.#tiles.querySelectorAll<HTMLElement>('.call-tile')) tile.classList.toggle('speaking', tile.dataset.peer === this.#speaker);
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.session.close();
    for (const el of this.#audioEls.values()) el.srcObject = null;
    for (const el of this.#videoEls.values()) el.srcObject = null;
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
