// A case: its materials, the slide viewer, and the live room (presence, presenter and follow
// mode, laser pointers, chat, annotations). This page owns the room connection and the viewer
// and wires them together; each panel owns its own part of the screen.
import { ApiError, describeError } from '../api';
import type { AppContext, View } from '../context';
import { h, replaceChildren, throttle } from '../dom';
import { STATUS_LABEL } from '../labels';
import { VideoGrid } from '../media/VideoGrid';
import { ChatPanel } from '../room/ChatPanel';
import { PresencePanel } from '../room/PresencePanel';
import { AckFailure, RoomClient, type ConnectionState } from '../room/RoomClient';
import { AnnotationPanel } from '../annotations/AnnotationPanel';
import { PointerLayer } from '../viewer/PointerLayer';
import { SlideViewer } from '../viewer/SlideViewer';
import { StackRoomHook } from '../radiology/roomHook';
import { DocumentsPanel } from '../radiology/DocumentsPanel';
import { caseSubject } from './caseList';
import { MaterialsPanel } from './MaterialsPanel';
import type { AnnotationOp, PublicAnnotation } from '../../../src/protocol/annotations';
import type { PublicCase, PublicMaterial } from '../../../src/protocol/cases';
import type { PublicChatMessage } from '../../../src/protocol/chat';
import type { MeResponse } from '../../../src/protocol/identity';
import type { JoinSnapshot, Member, Presenter, SessionEndReason, Viewport } from '../../../src/protocol/realtime';

/** Without input for this long, the room shows this person as idle. */
const PRESENCE_IDLE_MS = 2 * 60_000;
const PRESENCE_CHECK_MS = 5_000;
/** ~10 viewport updates a second while presenting, ~20 pointer updates (the server allows 60 volatile/s). */
const VIEWPORT_EVERY_MS = 100;
const POINTER_EVERY_MS = 50;
/** Conversion progress is polled only while the room is not connected (the socket pushes it otherwise). */
const POLL_EVERY_MS = 1000;
const NOTICE_MS = 8000;

const SESSION_END_NOTICE: Record<SessionEndReason, string> = {
  logout: 'You were signed out.',
  expired: 'Your session has ended. Sign in again.',
  revoked: 'Your session was ended (password change, or by a site administrator). Sign in again.',
};

const CONNECTION_TEXT: Record<ConnectionState, string> = {
  connecting: 'Connecting…',
  online: '',
  reconnecting: 'Reconnecting…',
  'back-online': 'Back online',
};

export function casePageView(ctx: AppContext, caseId: string): View {
  const page = new CasePage(ctx, caseId);
  return { element: page.element, dispose: () => page.dispose() };
}

class CasePage {
  readonly element = h('main', { class: 'page case-page' }, h('p', { class: 'loading' }, 'Opening the case…'));
  readonly #me: MeResponse;
  #room: RoomClient | null = null;
  #callPanel: VideoGrid | null = null;
  #viewer: SlideViewer | null = null;
  /** DICOM stacks open in their own viewer (client/src/radiology). */
  #stack: StackRoomHook | null = null;
  #pointers: PointerLayer | null = null;
  #annotations: AnnotationPanel | null = null;
  #materials: MaterialsPanel | null = null;
  /** Orders and reports received by HL7 for this case. */
  #documents: DocumentsPanel | null = null;
  #chat: ChatPanel | null = null;
  #presence: PresencePanel | null = null;
  readonly #members = new Map<string, Member>();
  /** Names of everyone seen in the room since the page opened (for annotation histories). */
  readonly #formerNames = new Map<string, string>();
  #presenter: Presenter | null = null;
  #following = false;
  #pointerOn = false;
  /** A presenter's view waiting for its material to open (or to become ready). */
  #pendingView: Viewport | null = null;
  /** The presenter's latest view, kept while not following so that Follow catches up at once. */
  #presenterView: Viewport | null = null;
  #presenceState: 'active' | 'idle' = 'active';
  #lastInput = Date.now();
  #presenceTimer: number | null = null;
  #pollTimer: number | null = null;
  #polling = false;
  #noticeTimer: number | null = null;
  #disposed = false;
  readonly #cleanups: (() => void)[] = [];

  readonly #connection = h('span', { class: 'connection', hidden: true, attrs: { role: 'status', 'aria-live': 'polite' } });
  readonly #notice = h('p', { class: 'notice', hidden: true, attrs: { role: 'status', 'aria-live': 'polite' } });
  readonly #followBar = h('div', { class: 'follow-bar', hidden: true, attrs: { role: 'status' } });
  /** The toolbar's zoom, fit and rotate buttons: shown only while a slide (not a stack) is open. */
  #slideTools: HTMLElement[] = [];
  readonly #pointerButton = h('button', { type: 'button', class: 'tool', attrs: { 'aria-pressed': 'false' }, title: 'Show your pointer to the room' }, 'Pointer');

  readonly #sendViewport = throttle(() => this.#viewportNow(), VIEWPORT_EVERY_MS);
  readonly #sendPointer = throttle((materialId: string, x: number, y: number) => {
    if (this.#pointerActive && this.#pointers?.surface.materialId === materialId) this.#room?.sendPointer({ caseId: this.caseId, materialId, position: { x, y } });
  }, POINTER_EVERY_MS);

  constructor(
    private readonly ctx: AppContext,
    readonly caseId: string,
  ) {
    this.#me = ctx.me!;
    ctx.setTitle('Case');
    void this.#load();
  }

  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#sendViewport.cancel();
    this.#sendPointer.cancel();
    if (this.#presenceTimer !== null) window.clearInterval(this.#presenceTimer);
    if (this.#pollTimer !== null) window.clearInterval(this.#pollTimer);
    if (this.#noticeTimer !== null) window.clearTimeout(this.#noticeTimer);
    for (const cleanup of this.#cleanups) cleanup();
    this.#callPanel?.dispose();
    this.#room?.close();
    this.#materials?.dispose();
    this.#documents?.dispose();
    this.#pointers?.destroy();
    this.#annotations?.destroy();
    this.#stack?.destroy();
    this.#viewer?.destroy();
  }

  get #iPresent(): boolean {
    return this.#presenter?.userId === this.#me.user.id;
  }

  get #pointerActive(): boolean {
    return this.#iPresent || this.#pointerOn;
  }

  // ------------------------------------------------------------------ loading and layout

  async #load(): Promise<void> {
    let data: { case: PublicCase; materials: PublicMaterial[] };
    try {
      data = await this.ctx.api.get(`/api/cases/${this.caseId}`);
    } catch (err) {
      if (this.#disposed) return;
      const text = err instanceof ApiError && err.code === 'NOT_FOUND' ? 'This case does not exist, or it was deleted.' : describeError(err);
      replaceChildren(this.element, h('p', { class: 'form-error' }, text), h('a', { href: '/cases', dataset: { link: '' } }, 'Back to the cases'));
      return;
    }
    if (this.#disposed) return;
    this.ctx.setTitle(data.case.title);
    this.#layout(data.case);
    this.#materials!.setAll(data.materials);
    const firstReady = this.#materials!.all().find((m) => m.status === 'ready');
    if (firstReady && !this.#viewer!.isOpen) void this.#open(firstReady);
    this.#room = new RoomClient(this.caseId, {
      snapshot: (s, first) => this.#onSnapshot(s, first),
      connection: (state) => this.#onConnection(state),
      memberJoined: (m) => {
        this.#members.set(m.socketId, m);
        this.#formerNames.set(m.userId, m.name);
        this.#renderPresence();
      },
      memberLeft: (socketId, userId) => {
        this.#members.delete(socketId);
        if (![...this.#members.values()].some((m) => m.userId === userId)) this.#pointers?.remove(userId);
        this.#renderPresence();
      },
      memberState: (socketId, state) => {
        const m = this.#members.get(socketId);
        if (m) this.#members.set(socketId, { ...m, state });
        this.#renderPresence();
      },
      presenter: (p) => this.#setPresenter(p),
      viewport: (v) => this.#onRemoteViewport(v),
      pointer: (p) => this.#pointers?.show(p),
      chat: (m) => this.#chat?.add([m]),
      annotationOp: (op) => this.#applyOp(op),
      material: (m) => this.#materials?.upsert(m),
      documents: () => void this.#documents?.refresh(),
      sessionEnded: (reason, code) => {
        const notice = reason === 'refused' ? (code === 'ACCESS_STOPPED' ? 'Access for this account has been stopped.' : SESSION_END_NOTICE.expired) : SESSION_END_NOTICE[reason];
        this.ctx.sessionEnded(notice);
      },
      joinFailed: (error) => this.#say('code' in error && error.code === 'NOT_FOUND' ? 'This case no longer exists.' : `Could not join the case room: ${error.message}`),
    });
    // Audio and video ride the room's socket; the panel sits above the presence list.
    this.#callPanel = new VideoGrid(this.#room.socket as never, this.caseId, { myName: this.#me.user.name, say: (text) => this.#say(text) });
    this.element.querySelector('.case-right')?.prepend(this.#callPanel.element);
    this.#watchPresence();
    this.#pollTimer = window.setInterval(() => void this.#poll(), POLL_EVERY_MS);
  }

  #layout(c: PublicCase): void {
    const me = this.#me;
    const viewer = (this.#viewer = new SlideViewer());
    this.#pointers = new PointerLayer(viewer);
    this.#annotations = new AnnotationPanel(viewer, {
      caseId: this.caseId,
      api: this.ctx.api,
      myUserId: me.user.id,
      call: (event, payload) => this.#call(event, payload),
      say: (text) => this.#say(text),
      nameOf: (userId) => this.#formerNames.get(userId) ?? null,
    });
    viewer.overlayHost.append(this.#annotations.layer.element, this.#pointers.element);
    this.#cleanups.push(
      viewer.onChange(() => {
        if (this.#iPresent) this.#sendViewport();
      }),
      viewer.onUserMove(() => {
        if (this.#following) {
          this.#following = false;
          this.#renderFollow();
        }
      }),
    );
    viewer.element.addEventListener('pointermove', (e) => this.#onPointerMove(e));
    viewer.element.addEventListener('pointerleave', () => this.#hidePointer());
    this.#stack = new StackRoomHook(viewer.element, this.ctx.api, {
      changed: () => this.#iPresent && this.#sendViewport(),
      userMoved: () => this.#following && this.#setFollowing(false),
    });
    this.#stack.viewer.element.addEventListener('pointermove', (e) => this.#onPointerMove(e));
    this.#stack.viewer.element.addEventListener('pointerleave', () => this.#hidePointer());

    this.#documents = new DocumentsPanel(this.ctx.api, this.caseId);
    void this.#documents.refresh();
    this.#materials = new MaterialsPanel(this.ctx.api, this.caseId, me.user.permissions.canUpload, (m) => this.#userOpens(m), (m, before) => this.#onMaterialChanged(m, before));
    this.#presence = new PresencePanel(
      { userId: me.user.id, role: me.user.role },
      { take: () => void this.#presenterCall('presenter:take', {}), release: () => void this.#presenterCall('presenter:release', {}), handover: (toUserId) => void this.#presenterCall('presenter:handover', { toUserId }) },
    );
    this.#chat = new ChatPanel(me.user.id, (text, clientId) => this.#call<PublicChatMessage>('chat:send', { caseId: this.caseId, text, clientId }));

    this.#pointerButton.addEventListener('click', () => {
      this.#pointerOn = !this.#pointerOn;
      if (!this.#pointerActive) this.#hidePointer();
      this.#renderPointerButton();
    });
    // Zoom, fit and rotate act on the slide viewer; a DICOM stack has its own controls.
    this.#slideTools = [
      h('button', { type: 'button', class: 'tool', title: 'Zoom out', attrs: { 'aria-label': 'Zoom out' }, on: { click: () => viewer.zoomBy(1 / 1.5) } }, '−'),
      h('button', { type: 'button', class: 'tool', title: 'Zoom in', attrs: { 'aria-label': 'Zoom in' }, on: { click: () => viewer.zoomBy(1.5) } }, '+'),
      h('button', { type: 'button', class: 'tool', title: 'Fit the image', on: { click: () => viewer.home() } }, 'Fit'),
      h('button', { type: 'button', class: 'tool', title: 'Rotate 90°', on: { click: () => viewer.rotateBy(90) } }, 'Rotate'),
    ];
    const toolbar = h(
      'div',
      { class: 'viewer-toolbar', attrs: { role: 'toolbar', 'aria-label': 'Viewer' } },
      ...this.#slideTools,
      this.#pointerButton,
      h('span', { class: 'toolbar-gap' }),
      this.#annotations.toolbar,
    );

    const subject = caseSubject(c);
    const header = h(
      'header',
      { class: 'case-header' },
      h('a', { href: '/cases', class: 'back', dataset: { link: '' } }, '← Cases'),
      h('h1', {}, c.title),
      h('span', { class: `status status-${c.status}` }, STATUS_LABEL[c.status]),
      h('span', { class: 'subject' }, subject.primary),
      subject.secondary ? h('span', { class: 'subject-detail' }, subject.secondary) : null,
      this.#connection,
    );
    replaceChildren(
      this.element,
      header,
      c.clinicalQuestion ? h('p', { class: 'clinical-question' }, h('strong', {}, 'Clinical question: '), c.clinicalQuestion) : null,
      this.#notice,
      h(
        'div',
        { class: 'case-body' },
        h('aside', { class: 'case-left' }, this.#materials.element, this.#documents.element),
        h('section', { class: 'case-center', attrs: { 'aria-label': 'Slide viewer' } }, toolbar, this.#annotations.hint, this.#followBar, viewer.element),
        h('aside', { class: 'case-right' }, this.#presence.element, this.#chat.element, this.#annotations.element),
      ),
    );
    this.#renderPresence();
  }

  // ------------------------------------------------------------------ room

  #onSnapshot(s: JoinSnapshot, first: boolean): void {
    this.#members.clear();
    for (const m of s.members) this.#members.set(m.socketId, m);
    this.#chat?.add(s.chat as PublicChatMessage[], !first);
    for (const m of s.members) this.#formerNames.set(m.userId, m.name);
    if (s.annotations) this.#annotations?.setAll(s.annotations as PublicAnnotation[]);
    for (const op of s.annotationOps as AnnotationOp[]) this.#annotations?.applyOp(op);
    // The presenter and the latest view: a newcomer (or a rejoin) follows a presenter at once.
    this.#setPresenter(s.presenter, s.viewport);
    if (this.#presenceState === 'idle') void this.#call('presence:state', { caseId: this.caseId, state: 'idle' }).catch(() => undefined);
    // Conversion progress pushed while disconnected was lost: read the materials again.
    if (!first) {
      void this.#refreshMaterials();
      void this.#documents?.refresh();
    }
  }

  #onConnection(state: ConnectionState): void {
    this.#connection.textContent = CONNECTION_TEXT[state];
    this.#connection.hidden = state === 'online';
    this.#connection.className = `connection connection-${state}`;
  }

  async #call<T>(event: Parameters<RoomClient['call']>[0], payload: unknown): Promise<T> {
    if (!this.#room) throw new AckFailure({ code: 'INTERNAL', message: 'Not connected.' });
    return this.#room.call<T>(event, payload);
  }

  async #presenterCall(event: 'presenter:take' | 'presenter:release' | 'presenter:handover', extra: Record<string, string>): Promise<void> {
    try {
      const result = await this.#call<Presenter | null>(event, { caseId: this.caseId, ...extra });
      this.#setPresenter(result);
    } catch (err) {
      this.#say(err instanceof AckFailure ? err.message : 'That did not work. Try again.');
    }
  }

  #setPresenter(presenter: Presenter | null, snapshotView: Viewport | null = null): void {
    const before = this.#presenter;
    this.#presenter = presenter;
    if (snapshotView) this.#presenterView = snapshotView;
    const someoneElse = presenter !== null && presenter.userId !== this.#me.user.id;
    if (!someoneElse) this.#following = false;
    // A new presenter is followed at once; "Stop following" holds until the next presenter.
    else if (before?.userId !== presenter.userId) this.#following = true;
    if (this.#iPresent && before?.userId !== this.#me.user.id) this.#viewportNow();
    if (!this.#pointerActive && before?.userId === this.#me.user.id) this.#hidePointer();
    if (someoneElse && this.#following && snapshotView && snapshotView.byUserId === presenter.userId) void this.#applyView(snapshotView);
    this.#renderPresence();
    this.#renderFollow();
    this.#renderPointerButton();
  }

  #renderPresence(): void {
    this.#presence?.render(this.#members.values(), this.#presenter);
  }

  #renderFollow(): void {
    const p = this.#presenter;
    const bar = this.#followBar;
    if (!p) {
      bar.hidden = true;
      replaceChildren(bar);
      return;
    }
    bar.hidden = false;
    if (p.userId === this.#me.user.id) {
      bar.className = 'follow-bar presenting';
      replaceChildren(bar, h('span', {}, 'You are presenting: the room follows your view.'));
    } else if (this.#following) {
      bar.className = 'follow-bar following';
      replaceChildren(bar, h('span', { class: 'follow-text' }, `Following ${p.name}`), ' · ', h('button', { type: 'button', class: 'link', on: { click: () => this.#setFollowing(false) } }, 'Stop following'));
    } else {
      bar.className = 'follow-bar';
      replaceChildren(bar, h('span', { class: 'follow-text' }, `${p.name} is presenting`), ' · ', h('button', { type: 'button', class: 'link', on: { click: () => this.#setFollowing(true) } }, 'Follow'));
    }
  }

  #setFollowing(on: boolean): void {
    this.#following = on;
    this.#renderFollow();
    const view = this.#presenterView;
    if (on && view && view.byUserId === this.#presenter?.userId) void this.#applyView(view);
  }

  #onRemoteViewport(v: Viewport): void {
    if (v.byUserId !== this.#presenter?.userId) return;
    this.#presenterView = v;
    if (this.#following) void this.#applyView(v);
  }

  async #applyView(v: Viewport): Promise<void> {
    const viewer = this.#viewer;
    if (!viewer || this.#stack?.apply(v)) return;
    if (v.materialId === viewer.materialId && viewer.isOpen) {
      viewer.apply(v);
      return;
    }
    this.#pendingView = v;
    const material = this.#materials?.get(v.materialId);
    // Not known or not ready yet here: opened when its progress event says ready.
    if (material?.status === 'ready' && viewer.materialId !== material.id) await this.#open(material);
  }

  #viewportNow(): void {
    const stackView = this.#stack?.viewport(this.caseId);
    if (stackView) return void (this.#iPresent && this.#room?.sendViewport(stackView));
    const viewer = this.#viewer;
    const view = viewer?.view();
    if (!view || !viewer?.materialId || !this.#iPresent) return;
    this.#room?.sendViewport({ caseId: this.caseId, materialId: viewer.materialId, center: view.center, zoom: view.zoom, rotation: view.rotation });
  }

  #onPointerMove(e: PointerEvent): void {
    if (!this.#pointerActive) return;
    const at = this.#pointers?.positionOf(e);
    if (at) this.#sendPointer(at.materialId, at.x, at.y);
  }

  #hidePointer(): void {
    this.#sendPointer.cancel();
    const materialId = this.#pointers?.surface.materialId;
    if (materialId) this.#room?.sendPointer({ caseId: this.caseId, materialId, position: null });
  }

  #showSlideTools(show: boolean): void {
    for (const tool of this.#slideTools) tool.hidden = !show;
  }

  #renderPointerButton(): void {
    this.#pointerButton.setAttribute('aria-pressed', String(this.#pointerActive));
    this.#pointerButton.disabled = this.#iPresent;
    this.#pointerButton.title = this.#iPresent ? 'Your pointer is shown while you present' : 'Show your pointer to the room';
  }

  /** Active/idle for the room: idle after two minutes without input, active again at the next. */
  #watchPresence(): void {
    const onInput = () => {
      this.#lastInput = Date.now();
      if (this.#presenceState === 'idle') this.#setPresenceState('active');
    };
    for (const name of ['pointermove', 'pointerdown', 'keydown', 'wheel'] as const) {
      document.addEventListener(name, onInput, { passive: true, capture: true });
      this.#cleanups.push(() => document.removeEventListener(name, onInput, { capture: true }));
    }
    this.#presenceTimer = window.setInterval(() => {
      if (this.#presenceState === 'active' && Date.now() - this.#lastInput >= PRESENCE_IDLE_MS) this.#setPresenceState('idle');
    }, PRESENCE_CHECK_MS);
  }

  #setPresenceState(state: 'active' | 'idle'): void {
    this.#presenceState = state;
    if (this.#room?.joined) void this.#call('presence:state', { caseId: this.caseId, state }).catch(() => undefined);
  }

  // ------------------------------------------------------------------ materials

  #userOpens(material: PublicMaterial): void {
    if (this.#following) {
      this.#following = false;
      this.#renderFollow();
    }
    void this.#open(material);
  }

  async #open(material: PublicMaterial): Promise<void> {
    const viewer = this.#viewer;
    if (!viewer) return;
    this.#materials?.setActive(material.id);
    if (await this.#stack?.open(material, this.#following ? this.#pendingView : null).catch(() => (this.#say('The series could not be opened.'), true))) {
      // Annotations are drawn on the stack, slice by slice, while it is shown.
      if (this.#stack) {
        this.#annotations?.showOn(this.#stack.viewer);
        this.#pointers?.showOn(this.#stack.viewer);
      }
      this.#showSlideTools(false);
      if (this.#pendingView?.materialId === material.id) this.#pendingView = null;
      if (this.#iPresent) this.#viewportNow();
      return;
    }
    this.#annotations?.showOn(viewer);
    this.#pointers?.showOn(viewer);
    this.#showSlideTools(true);
    this.#annotations?.materialChanged();
    try {
      await viewer.open(material);
    } catch (err) {
      this.#say(err instanceof Error ? err.message : 'The image could not be opened.');
      return;
    }
    if (this.#disposed || viewer.materialId !== material.id) return;
    const pending = this.#pendingView;
    if (pending && pending.materialId === material.id) {
      this.#pendingView = null;
      if (this.#following) viewer.apply(pending, true);
    }
    this.#annotations?.materialChanged();
    if (this.#iPresent) this.#viewportNow();
  }

  #onMaterialChanged(material: PublicMaterial, before: PublicMaterial | undefined): void {
    if (material.status !== 'ready' || before?.status === 'ready') return;
    const viewer = this.#viewer;
    if (this.#pendingView?.materialId === material.id && this.#following) void this.#open(material);
    else if (viewer && !viewer.isOpen && viewer.materialId === null && !(this.#following && this.#presenter)) void this.#open(material);
  }

  async #refreshMaterials(): Promise<void> {
    try {
      const { materials } = await this.ctx.api.get<{ materials: PublicMaterial[] }>(`/api/cases/${this.caseId}`);
      if (!this.#disposed) this.#materials?.setAll(materials);
    } catch {
      // The next rejoin or poll tries again; a lost session is handled by the API hook.
    }
  }

  async #poll(): Promise<void> {
    if (this.#polling || this.#room?.joined || !this.#materials) return;
    const converting = this.#materials.converting();
    if (converting.length === 0) return;
    this.#polling = true;
    try {
      for (const m of converting) {
        const { material } = await this.ctx.api.get<{ material: PublicMaterial }>(`/api/cases/${this.caseId}/materials/${m.id}`);
        if (this.#disposed) return;
        this.#materials.upsert(material);
      }
    } catch {
      // Offline as well: the next tick tries again.
    } finally {
      this.#polling = false;
    }
  }

  #applyOp(op: AnnotationOp): void {
    this.#annotations?.applyOp(op);
  }

  // ------------------------------------------------------------------ messages

  #say(text: string): void {
    this.#notice.textContent = text;
    this.#notice.hidden = false;
    if (this.#noticeTimer !== null) window.clearTimeout(this.#noticeTimer);
    this.#noticeTimer = window.setTimeout(() => {
      this.#notice.hidden = true;
    }, NOTICE_MS);
  }
}
