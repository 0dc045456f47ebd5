// A case: its materials, the slide viewer, and the live room (presence, presenter and follow
// mode, laser pointers, chat, annotations). This page owns the room connection and the viewer
// and wires them together; each panel owns its own part of the screen.
import { ApiError, describeError } from '../api';
import type { AppContext, View } from '../context';
import { h, randomId, replaceChildren, throttle } from '../dom';
import { STATUS_LABEL } from '../labels';
import { ChatPanel } from '../room/ChatPanel';
import { PresencePanel } from '../room/PresencePanel';
import { AckFailure, RoomClient, type ConnectionState } from '../room/RoomClient';
import { AnnotationLayer, type Tool } from '../viewer/AnnotationLayer';
import { PointerLayer } from '../viewer/PointerLayer';
import { SlideViewer } from '../viewer/SlideViewer';
import { caseSubject } from './caseList';
import { MaterialsPanel } from './MaterialsPanel';
import type { AnnotationGeometry, AnnotationKind, AnnotationOp, PublicAnnotation } from '../../../src/protocol/annotations';
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
/** The colour offered for new annotations (a choice of this page; the server's default is for imports). */
const NEW_ANNOTATION_COLOUR = '#1e88e5';

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
  #viewer: SlideViewer | null = null;
  #pointers: PointerLayer | null = null;
  #annotations: AnnotationLayer | null = null;
  #materials: MaterialsPanel | null = null;
  #chat: ChatPanel | null = null;
  #presence: PresencePanel | null = null;
  readonly #members = new Map<string, Member>();
  #presenter: Presenter | null = null;
  #following = false;
  #pointerOn = false;
  /** A presenter's view waiting for its material to open (or to become ready). */
  #pendingView: Viewport | null = null;
  /** The presenter's latest view, kept while not following so that Follow catches up at once. */
  #presenterView: Viewport | null = null;
  #selected: string | null = null;
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
  readonly #pointerButton = h('button', { type: 'button', class: 'tool', attrs: { 'aria-pressed': 'false' }, title: 'Show your pointer to the room' }, 'Pointer');
  readonly #toolButtons = new Map<Tool, HTMLButtonElement>();
  readonly #labelInput = h('input', { type: 'text', name: 'annotation-label', placeholder: 'Label', maxLength: 200, attrs: { 'aria-label': 'Label for new annotations' } });
  readonly #colourInput = h('input', { type: 'color', name: 'annotation-colour', value: NEW_ANNOTATION_COLOUR, attrs: { 'aria-label': 'Colour for new annotations' } });
  readonly #annotationList = h('ul', { class: 'annotation-list' });
  readonly #annotationRows = new Map<string, { row: HTMLLIElement; label: HTMLInputElement; colour: HTMLInputElement }>();

  readonly #sendViewport = throttle(() => this.#viewportNow(), VIEWPORT_EVERY_MS);
  readonly #sendPointer = throttle((x: number, y: number) => {
    const materialId = this.#viewer?.materialId;
    if (materialId && this.#pointerActive) this.#room?.sendPointer({ caseId: this.caseId, materialId, position: { x, y } });
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
    this.#room?.close();
    this.#materials?.dispose();
    this.#pointers?.destroy();
    this.#annotations?.destroy();
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
      sessionEnded: (reason, code) => {
        const notice = reason === 'refused' ? (code === 'ACCESS_STOPPED' ? 'Access for this account has been stopped.' : SESSION_END_NOTICE.expired) : SESSION_END_NOTICE[reason];
        this.ctx.sessionEnded(notice);
      },
      joinFailed: (error) => this.#say('code' in error && error.code === 'NOT_FOUND' ? 'This case no longer exists.' : `Could not join the case room: ${error.message}`),
    });
    this.#watchPresence();
    this.#pollTimer = window.setInterval(() => void this.#poll(), POLL_EVERY_MS);
  }

  #layout(c: PublicCase): void {
    const me = this.#me;
    const viewer = (this.#viewer = new SlideViewer());
    this.#pointers = new PointerLayer(viewer);
    this.#annotations = new AnnotationLayer(
      viewer,
      (kind, geometry) => void this.#createAnnotation(kind, geometry),
      (id) => this.#select(id),
      () => this.#colourInput.value,
    );
    viewer.overlayHost.append(this.#annotations.element, this.#pointers.element);
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
    const toolbar = h(
      'div',
      { class: 'viewer-toolbar', attrs: { role: 'toolbar', 'aria-label': 'Viewer' } },
      h('button', { type: 'button', class: 'tool', title: 'Zoom out', attrs: { 'aria-label': 'Zoom out' }, on: { click: () => viewer.zoomBy(1 / 1.5) } }, '−'),
      h('button', { type: 'button', class: 'tool', title: 'Zoom in', attrs: { 'aria-label': 'Zoom in' }, on: { click: () => viewer.zoomBy(1.5) } }, '+'),
      h('button', { type: 'button', class: 'tool', title: 'Fit the image', on: { click: () => viewer.home() } }, 'Fit'),
      h('button', { type: 'button', class: 'tool', title: 'Rotate 90°', on: { click: () => viewer.rotateBy(90) } }, 'Rotate'),
      this.#pointerButton,
      h('span', { class: 'toolbar-gap' }),
      ...(['pan', 'point', 'rectangle'] as const).map((tool) => {
        const button = h('button', { type: 'button', class: 'tool', attrs: { 'aria-pressed': String(tool === 'pan') }, on: { click: () => this.#setTool(tool) } }, { pan: 'Pan', point: 'Point', rectangle: 'Rectangle' }[tool]);
        this.#toolButtons.set(tool, button);
        return button;
      }),
      this.#labelInput,
      this.#colourInput,
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
    const annotationsPanel = h('section', { class: 'panel annotations-panel' }, h('h2', {}, 'Annotations'), this.#annotationList);
    replaceChildren(
      this.element,
      header,
      c.clinicalQuestion ? h('p', { class: 'clinical-question' }, h('strong', {}, 'Clinical question: '), c.clinicalQuestion) : null,
      this.#notice,
      h(
        'div',
        { class: 'case-body' },
        h('aside', { class: 'case-left' }, this.#materials.element),
        h('section', { class: 'case-center', attrs: { 'aria-label': 'Slide viewer' } }, toolbar, this.#followBar, viewer.element),
        h('aside', { class: 'case-right' }, this.#presence.element, this.#chat.element, annotationsPanel),
      ),
    );
    this.#renderPresence();
  }

  // ------------------------------------------------------------------ room

  #onSnapshot(s: JoinSnapshot, first: boolean): void {
    this.#members.clear();
    for (const m of s.members) this.#members.set(m.socketId, m);
    this.#chat?.add(s.chat as PublicChatMessage[], !first);
    if (s.annotations) this.#annotations?.setAll(s.annotations as PublicAnnotation[]);
    for (const op of s.annotationOps as AnnotationOp[]) this.#annotations?.apply(op.annotation);
    this.#renderAnnotationList();
    // The presenter and the latest view: a newcomer (or a rejoin) follows a presenter at once.
    this.#setPresenter(s.presenter, s.viewport);
    if (this.#presenceState === 'idle') void this.#call('presence:state', { caseId: this.caseId, state: 'idle' }).catch(() => undefined);
    // Conversion progress pushed while disconnected was lost: read the materials again.
    if (!first) void this.#refreshMaterials();
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
    if (!viewer) return;
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
    const viewer = this.#viewer;
    const view = viewer?.view();
    if (!view || !viewer?.materialId || !this.#iPresent) return;
    this.#room?.sendViewport({ caseId: this.caseId, materialId: viewer.materialId, center: view.center, zoom: view.zoom, rotation: view.rotation });
  }

  #onPointerMove(e: PointerEvent): void {
    const viewer = this.#viewer;
    if (!this.#pointerActive || !viewer) return;
    const box = viewer.element.getBoundingClientRect();
    const image = viewer.screenToImage(e.clientX - box.left, e.clientY - box.top);
    const size = viewer.imageSize();
    if (!image || !size) return;
    this.#sendPointer(image.x / size.width, image.y / size.height);
  }

  #hidePointer(): void {
    this.#sendPointer.cancel();
    const materialId = this.#viewer?.materialId;
    if (materialId) this.#room?.sendPointer({ caseId: this.caseId, materialId, position: null });
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
    this.#setSelected(null);
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
    this.#annotations?.render();
    this.#renderAnnotationList();
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

  // ------------------------------------------------------------------ annotations

  #setTool(tool: Tool): void {
    this.#annotations?.setTool(tool);
    for (const [t, button] of this.#toolButtons) button.setAttribute('aria-pressed', String(t === tool));
  }

  async #createAnnotation(kind: AnnotationKind, geometry: AnnotationGeometry): Promise<void> {
    const materialId = this.#viewer?.materialId;
    if (!materialId) return;
    try {
      const op = await this.#call<AnnotationOp>('annotation:create', {
        caseId: this.caseId,
        materialId,
        clientId: randomId(),
        kind,
        geometry,
        properties: { label: this.#labelInput.value.trim(), color: this.#colourInput.value, text: '' },
      });
      this.#applyOp(op);
      this.#select(op.annotationId);
    } catch (err) {
      this.#say(err instanceof AckFailure ? err.message : 'The annotation could not be saved.');
    }
  }

  #applyOp(op: AnnotationOp): void {
    this.#annotations?.apply(op.annotation);
    this.#renderAnnotationList();
  }

  async #updateAnnotation(id: string, properties: { label?: string; color?: string }): Promise<void> {
    let base = this.#annotations?.get(id);
    for (let attempt = 0; base && attempt < 2; attempt++) {
      try {
        this.#applyOp(await this.#call<AnnotationOp>('annotation:update', { caseId: this.caseId, annotationId: id, baseVersion: base.version, properties }));
        return;
      } catch (err) {
        const current = conflictCurrent(err);
        if (!current) {
          this.#say(err instanceof AckFailure ? err.message : 'The change could not be saved.');
          return;
        }
        // Someone changed it first: take their version, then apply only the fields changed here.
        this.#annotations?.apply(current);
        this.#renderAnnotationList();
        if (current.deleted) {
          this.#say('Someone deleted this annotation meanwhile.');
          return;
        }
        this.#say('Someone changed this annotation first; your change was applied to their version.');
        base = current;
      }
    }
  }

  async #deleteAnnotation(id: string): Promise<void> {
    const base = this.#annotations?.get(id);
    if (!base) return;
    try {
      this.#applyOp(await this.#call<AnnotationOp>('annotation:delete', { caseId: this.caseId, annotationId: id, baseVersion: base.version }));
    } catch (err) {
      const current = conflictCurrent(err);
      if (!current) {
        this.#say(err instanceof AckFailure ? err.message : 'The annotation could not be deleted.');
        return;
      }
      // A deletion is not re-applied blindly to a version nobody here has seen: show it first.
      this.#annotations?.apply(current);
      this.#renderAnnotationList();
      this.#say(current.deleted ? 'This annotation was already deleted.' : 'Someone changed this annotation meanwhile; it now shows their version. Delete it again if you still want to.');
    }
  }

  #select(id: string | null): void {
    this.#setSelected(id);
    const row = id ? this.#annotationRows.get(id) : undefined;
    row?.row.scrollIntoView({ block: 'nearest' });
    row?.label.focus();
  }

  #setSelected(id: string | null): void {
    this.#selected = id;
    this.#annotations?.setSelected(id);
    for (const [rowId, { row }] of this.#annotationRows) row.classList.toggle('selected', rowId === id);
  }

  /** Keyed: rows are reused, and a field being edited is not overwritten under the cursor. */
  #renderAnnotationList(): void {
    const list = this.#annotations?.forMaterial(this.#viewer?.materialId ?? null) ?? [];
    const keep = new Set(list.map((a) => a.id));
    for (const [id, { row }] of this.#annotationRows) {
      if (!keep.has(id)) {
        row.remove();
        this.#annotationRows.delete(id);
      }
    }
    const rows = list.map((a) => {
      let entry = this.#annotationRows.get(a.id);
      if (!entry) {
        const label = h('input', { type: 'text', maxLength: 200, placeholder: a.kind, attrs: { 'aria-label': 'Annotation label' } });
        const colour = h('input', { type: 'color', attrs: { 'aria-label': 'Annotation colour' } });
        label.addEventListener('change', () => void this.#updateAnnotation(a.id, { label: label.value.trim() }));
        label.addEventListener('focus', () => this.#setSelected(a.id));
        colour.addEventListener('change', () => void this.#updateAnnotation(a.id, { color: colour.value }));
        const remove = h('button', { type: 'button', class: 'small', title: 'Delete', on: { click: () => void this.#deleteAnnotation(a.id) } }, 'Delete');
        const row = h('li', { class: 'annotation-item', dataset: { annotationId: a.id } }, colour, label, h('span', { class: 'annotation-kind' }, a.kind), remove);
        entry = { row, label, colour };
        this.#annotationRows.set(a.id, entry);
      }
      if (document.activeElement !== entry.label) entry.label.value = a.properties.label;
      if (document.activeElement !== entry.colour) entry.colour.value = a.properties.color;
      entry.row.classList.toggle('selected', a.id === this.#selected);
      return entry.row;
    });
    replaceChildren(this.#annotationList, ...(rows.length ? rows : [h('li', { class: 'muted' }, this.#viewer?.materialId ? 'None yet. Choose Point or Rectangle to draw.' : 'Open a material to see its annotations.')]));
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

function conflictCurrent(err: unknown): PublicAnnotation | null {
  if (err instanceof AckFailure && err.code === 'VERSION_CONFLICT' && err.error.current) return err.error.current as PublicAnnotation;
  return null;
}
