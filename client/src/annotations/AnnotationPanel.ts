// The annotation tools of a case room: the drawing toolbar (tools, colour, label for new shapes),
// the list of the open material's annotations, the editor of the selected one (label, colour,
// comment, delete, history with restore), and GeoJSON export and import. It owns every
// annotation write and its version-conflict handling; the SVG overlay (AnnotationLayer) owns
// drawing and dragging on the image. The image is a surface: the slide viewer, or the stack
// viewer of a DICOM series, where new annotations carry the slice they are drawn on and the list
// names each one's slice.
import { describeError } from '../api';
import type { Api } from '../api';
import { formatDateTime, h, randomId, replaceChildren } from '../dom';
import { ANNOTATION_KIND_LABEL } from '../labels';
import { AckFailure } from '../room/RoomClient';
import { AnnotationLayer, floatingTextField, type AnnotationSurface, type Tool } from '../viewer/AnnotationLayer';
import { LABEL_MAX, TEXT_MAX } from '../viewer/AnnotationLayer';
import type { AnnotationGeometry, AnnotationKind, AnnotationOp, AnnotationProperties, GeoJsonFeatureCollection, PublicAnnotation } from '../../../src/protocol/annotations';

/** Keyboard nudges of the selected shape are sent as one change once the keys rest this long. */
const NUDGE_SETTLE_MS = 400;
const NUDGE_PX = 10;

/** The colour offered for new annotations (a choice of this page; the server's default is for imports). */
const NEW_ANNOTATION_COLOUR = '#1e88e5';

const TOOLS: { tool: Tool; label: string; hint: string }[] = [
  { tool: 'pan', label: 'Pan', hint: 'Drag to pan, scroll to zoom. Click a shape to select it; drag the selected shape or its handles to change it, or use the arrow keys on its row in the list.' },
  { tool: 'point', label: 'Point', hint: 'Click the image to place a point.' },
  { tool: 'line', label: 'Line', hint: 'Drag from one end of the line to the other.' },
  { tool: 'rectangle', label: 'Rectangle', hint: 'Drag from one corner to the opposite corner.' },
  { tool: 'polygon', label: 'Polygon', hint: 'Click each corner. Double-click, press Enter or click the first corner to finish; Backspace removes the last corner; Escape cancels.' },
  { tool: 'freehand', label: 'Freehand', hint: 'Hold the button and draw. End near the start for a closed outline.' },
  { tool: 'text', label: 'Text', hint: 'Click the image where the text goes, type it, then press Enter.' },
];

/** Pan on a stack: the stack viewer's own gestures, not OpenSeadragon's. */
const STACK_PAN_HINT = 'Scroll or use the arrow keys to change slice; right-drag sets the window. Click a shape to select it; drag the selected shape or its handles to change it. Annotations are drawn on the slice shown.';

type AnnotationEvent = 'annotation:create' | 'annotation:update' | 'annotation:delete' | 'annotation:history';

export interface AnnotationHost {
  readonly caseId: string;
  readonly api: Api;
  readonly myUserId: string;
  call<T>(event: AnnotationEvent, payload: unknown): Promise<T>;
  say(text: string): void;
  /** A display name for a user id (the room's members), or null when unknown here. */
  nameOf(userId: string): string | null;
}

/** How a slice is named to people: from 1, as the stack viewer's slice label counts. */
export function sliceName(slice: number): string {
  return `Slice ${slice + 1}`;
}

type PropertiesPatch = Partial<AnnotationProperties>;

export class AnnotationPanel {
  readonly layer: AnnotationLayer;
  /** Tools for the viewer's toolbar. */
  readonly toolbar: HTMLElement;
  /** The side panel: list, editor, history, import and export. */
  readonly element: HTMLElement;
  readonly #toolButtons = new Map<Tool, HTMLButtonElement>();
  readonly #hint = h('p', { class: 'tool-hint', id: 'annotation-tool-hint', attrs: { 'aria-live': 'polite' } });
  readonly #labelInput = h('input', { type: 'text', name: 'annotation-label', placeholder: 'Label', maxLength: LABEL_MAX, attrs: { 'aria-label': 'Label for new annotations' } });
  readonly #colourInput = h('input', { type: 'color', name: 'annotation-colour', value: NEW_ANNOTATION_COLOUR, attrs: { 'aria-label': 'Colour for new annotations' } });
  readonly #list = h('ul', { class: 'annotation-list', attrs: { 'aria-label': 'Annotations of this image' } });
  readonly #editor = h('form', { class: 'annotation-editor', hidden: true, attrs: { 'aria-label': 'Selected annotation' } });
  readonly #editorTitle = h('h3', { class: 'editor-title' });
  readonly #editLabel = h('input', { type: 'text', name: 'label', maxLength: LABEL_MAX, id: 'annotation-edit-label' });
  readonly #editColour = h('input', { type: 'color', name: 'color', id: 'annotation-edit-colour' });
  readonly #editText = h('textarea', { name: 'text', rows: 3, maxLength: TEXT_MAX, id: 'annotation-edit-text', placeholder: 'A comment for the room' });
  readonly #editMeta = h('p', { class: 'editor-meta' });
  readonly #historyButton = h('button', { type: 'button', class: 'small', attrs: { 'aria-expanded': 'false', 'aria-controls': 'annotation-history' } }, 'History');
  readonly #history = h('div', { class: 'annotation-history', id: 'annotation-history', hidden: true });
  readonly #importInput = h('input', { type: 'file', accept: '.geojson,.json,application/geo+json,application/json', class: 'visually-hidden', tabIndex: -1, attrs: { 'aria-label': 'GeoJSON file to import' } });
  readonly #exportButton = h('button', { type: 'button', class: 'small' }, 'Export GeoJSON');
  readonly #importButton = h('button', { type: 'button', class: 'small' }, 'Import GeoJSON');
  readonly #rows = new Map<string, HTMLLIElement>();
  #selected: string | null = null;
  #historyFor: string | null = null;
  #textField: HTMLInputElement | null = null;
  #nudge: { id: string; timer: number; geometry: AnnotationGeometry } | null = null;
  /** A list render waiting for the next frame (an import arrives as thousands of ops). */
  #listFrame: number | null = null;
  readonly #onKey = (e: KeyboardEvent) => this.#key(e);
  #stopEmptyClick: () => void;

  constructor(
    surface: AnnotationSurface,
    private readonly host: AnnotationHost,
  ) {
    this.layer = new AnnotationLayer(surface, {
      create: (kind, geometry) => void this.#create(kind, geometry),
      placeText: (screen, image) => this.#placeText(screen, image),
      select: (id) => this.select(id),
      edit: (id, geometry) => void this.#update(id, { geometry }),
      draftColour: () => this.#colourInput.value,
      canEdit: () => true,
    });
    this.toolbar = h(
      'div',
      { class: 'annotation-tools', attrs: { role: 'group', 'aria-label': 'Annotation tools' } },
      ...TOOLS.map(({ tool, label }) => {
        const button = h('button', { type: 'button', class: 'tool', attrs: { 'aria-pressed': String(tool === 'pan'), 'aria-describedby': 'annotation-tool-hint' }, on: { click: () => this.setTool(tool) } }, label);
        this.#toolButtons.set(tool, button);
        return button;
      }),
      this.#labelInput,
      this.#colourInput,
    );
    this.#hint.textContent = this.#hintFor('pan');

    this.#buildEditor();
    this.#exportButton.addEventListener('click', () => void this.#export());
    this.#importButton.addEventListener('click', () => this.#importInput.click());
    this.#importInput.addEventListener('change', () => void this.#import());
    this.element = h(
      'section',
      { class: 'panel annotations-panel', attrs: { 'aria-labelledby': 'annotations-heading' } },
      h('h2', { id: 'annotations-heading' }, 'Annotations'),
      this.#list,
      this.#editor,
      h('div', { class: 'geojson-actions' }, this.#exportButton, this.#importButton, this.#importInput),
    );
    document.addEventListener('keydown', this.#onKey);
    this.#stopEmptyClick = this.#watchEmptyClicks(surface);
    this.render();
  }

  /** The surface drawn on now (the slide viewer or a stack viewer). */
  get surface(): AnnotationSurface {
    return this.layer.surface;
  }

  /** The material open on the surface. */
  #materialId(): string | null {
    return this.layer.surface.materialId;
  }

  /**
   * Draws on `surface` from now on (the page shows a stack in place of the slide, or back, or
   * opened another material on it): the chosen tool stays, the selection and a drawing in
   * progress do not.
   */
  showOn(surface: AnnotationSurface): void {
    if (surface !== this.layer.surface) {
      this.#textField?.blur();
      this.#stopEmptyClick();
      this.layer.attach(surface);
      this.#stopEmptyClick = this.#watchEmptyClicks(surface);
      this.#hint.textContent = this.#hintFor(this.layer.tool);
    }
    this.materialChanged();
  }

  #hintFor(tool: Tool): string {
    if (tool === 'pan' && this.layer.surface.slice !== null) return STACK_PAN_HINT;
    return TOOLS.find((t) => t.tool === tool)!.hint;
  }

  /** A click on the image away from any shape (Pan tool) clears the selection. */
  #watchEmptyClicks(surface: AnnotationSurface): () => void {
    return surface.onEmptyClick(() => {
      if (this.layer.tool === 'pan' && this.#selected) this.select(null);
    });
  }

  /** A line under the toolbar that says how the chosen tool works. */
  get hint(): HTMLElement {
    return this.#hint;
  }

  setTool(tool: Tool): void {
    this.#textField?.blur();
    this.layer.setTool(tool);
    for (const [t, button] of this.#toolButtons) button.setAttribute('aria-pressed', String(t === tool));
    this.#hint.textContent = this.#hintFor(tool);
    if (tool !== 'pan') this.select(null);
    this.layer.render();
  }

  setAll(annotations: PublicAnnotation[]): void {
    this.layer.setAll(annotations);
    this.render();
  }

  applyOp(op: AnnotationOp): void {
    this.#applyState(op.annotation);
  }

  /** The open material changed: the list and the overlay show its annotations. */
  materialChanged(): void {
    this.select(null);
    this.layer.cancelDrawing();
    this.render();
  }

  select(id: string | null): void {
    if (id && !this.#rows.has(id)) this.#flushList();
    // An annotation of another slice is selected (from the list): the stack goes to its slice.
    const a = id ? this.layer.get(id) : undefined;
    const surface = this.layer.surface;
    if (a && a.slice !== null && surface.slice !== null && a.slice !== surface.slice && a.materialId === surface.materialId) surface.showSlice(a.slice);
    this.#selected = id;
    this.layer.setSelected(id);
    this.#renderEditor();
    for (const [rowId, row] of this.#rows) {
      row.classList.toggle('selected', rowId === id);
      row.querySelector('button')?.setAttribute('aria-pressed', String(rowId === id));
    }
    if (id) this.#rows.get(id)?.scrollIntoView({ block: 'nearest' });
  }

  destroy(): void {
    if (this.#nudge) window.clearTimeout(this.#nudge.timer);
    if (this.#listFrame !== null) cancelAnimationFrame(this.#listFrame);
    document.removeEventListener('keydown', this.#onKey);
    this.#stopEmptyClick();
    this.#textField?.remove();
    this.layer.destroy();
  }

  render(): void {
    this.layer.render();
    this.#flushList();
    this.#renderEditor();
  }

  #scheduleList(): void {
    if (this.#listFrame === null) this.#listFrame = requestAnimationFrame(() => this.#flushList());
  }

  #flushList(): void {
    if (this.#listFrame !== null) cancelAnimationFrame(this.#listFrame);
    this.#listFrame = null;
    this.#renderList();
  }

  // ------------------------------------------------------------------ state

  #applyState(annotation: PublicAnnotation): void {
    this.layer.apply(annotation);
    if (annotation.deleted && this.#selected === annotation.id) this.#selected = null;
    this.#scheduleList();
    this.#renderEditor();
    if (this.#historyFor === annotation.id && !this.#history.hidden) void this.#loadHistory(annotation.id);
  }

  #key(e: KeyboardEvent): void {
    const target = e.target as HTMLElement | null;
    const typing = target instanceof HTMLInputElement || target instanceof HTMLTextAreaElement || target instanceof HTMLSelectElement;
    if (typing || e.altKey || e.ctrlKey || e.metaKey) return;
    if (this.layer.tool === 'polygon' && this.layer.polygonVertices > 0) {
      if (e.key === 'Enter') this.layer.finishPolygon();
      else if (e.key === 'Escape') this.layer.cancelDrawing();
      else if (e.key === 'Backspace') this.layer.undoVertex();
      else return;
      e.preventDefault();
    } else if (e.key === 'Escape' && this.layer.tool !== 'pan') {
      this.setTool('pan');
      e.preventDefault();
    } else if (e.key === 'Delete' && this.#selected && this.element.contains(target)) {
      void this.#delete(this.#selected);
      e.preventDefault();
    } else if (e.key.startsWith('Arrow') && this.#selected && target?.classList.contains('annotation-select') && target.getAttribute('aria-pressed') === 'true') {
      // Arrow keys on the selected row move the shape on the slide (Shift: one pixel at a time).
      const step = e.shiftKey ? 1 : NUDGE_PX;
      const moves: Record<string, [number, number]> = { ArrowLeft: [-step, 0], ArrowRight: [step, 0], ArrowUp: [0, -step], ArrowDown: [0, step] };
      const move = moves[e.key];
      if (!move) return;
      e.preventDefault();
      this.#nudgeSelected(this.#selected, move[0], move[1]);
    }
  }

  #nudgeSelected(id: string, dx: number, dy: number): void {
    if (this.#nudge && this.#nudge.id !== id) this.#flushNudge();
    const geometry = this.layer.nudge(id, dx, dy);
    if (!geometry) return;
    if (this.#nudge) window.clearTimeout(this.#nudge.timer);
    this.#nudge = { id, geometry, timer: window.setTimeout(() => this.#flushNudge(), NUDGE_SETTLE_MS) };
  }

  #flushNudge(): void {
    const nudge = this.#nudge;
    if (!nudge) return;
    window.clearTimeout(nudge.timer);
    this.#nudge = null;
    void this.#update(nudge.id, { geometry: nudge.geometry }).then((saved) => saved && this.#announce('Annotation moved.'));
  }

  // ------------------------------------------------------------------ writes

  async #create(kind: AnnotationKind, geometry: AnnotationGeometry, label = this.#labelInput.value.trim(), slice = this.layer.surface.slice): Promise<void> {
    const materialId = this.#materialId();
    if (!materialId) return;
    try {
      const op = await this.host.call<AnnotationOp>('annotation:create', {
        caseId: this.host.caseId,
        materialId,
        // On a stack: the slice it was drawn on (the server refuses `slice` on other materials).
        ...(slice !== null ? { slice } : {}),
        clientId: randomId(),
        kind,
        geometry,
        properties: { label, color: this.#colourInput.value, text: '' },
      });
      this.#applyState(op.annotation);
      if (this.layer.tool === 'pan' || this.layer.tool === 'text') this.select(op.annotationId);
      else this.#announce(`${ANNOTATION_KIND_LABEL[kind]} saved.`);
    } catch (err) {
      this.host.say(err instanceof AckFailure ? err.message : 'The annotation could not be saved.');
    }
  }

  #placeText(screen: { x: number; y: number }, image: [number, number]): void {
    this.#textField?.remove();
    // The slice is the one clicked on, even if the stack moves while the text is typed.
    const slice = this.layer.surface.slice;
    this.#textField = floatingTextField(this.layer.surface.overlayHost, screen, (text) => {
      this.#textField = null;
      if (text) void this.#create('point', { type: 'Point', coordinates: image }, text.slice(0, LABEL_MAX), slice);
    });
  }

  /**
   * Sends a change made from `base` (the version the person saw). On VERSION_CONFLICT the
   * current version is shown; property changes name only their fields, so they are sent again
   * on top of it; a shape change is sent again only if the other change left the shape alone.
   */
  async #update(id: string, change: { geometry?: AnnotationGeometry; properties?: PropertiesPatch }): Promise<boolean> {
    let base = this.layer.get(id);
    for (let attempt = 0; base && attempt < 3; attempt++) {
      try {
        const op = await this.host.call<AnnotationOp>('annotation:update', { caseId: this.host.caseId, annotationId: id, baseVersion: base.version, ...change });
        this.#applyState(op.annotation);
        return true;
      } catch (err) {
        const current = conflictCurrent(err);
        if (!current) {
          this.layer.clearPreview(id);
          this.host.say(err instanceof AckFailure ? err.message : 'The change could not be saved.');
          return false;
        }
        this.#applyState(current);
        if (current.deleted) {
          this.layer.clearPreview(id);
          this.host.say('Someone deleted this annotation meanwhile.');
          return false;
        }
        if (change.geometry && JSON.stringify(current.geometry) !== JSON.stringify(base.geometry)) {
          this.layer.clearPreview(id);
          this.host.say('Someone moved or reshaped this annotation first; it now shows their version.');
          return false;
        }
        this.host.say('Someone changed this annotation first; your change was applied to their version.');
        base = current;
      }
    }
    this.layer.clearPreview(id);
    return false;
  }

  async #delete(id: string): Promise<void> {
    const base = this.layer.get(id);
    if (!base) return;
    try {
      const op = await this.host.call<AnnotationOp>('annotation:delete', { caseId: this.host.caseId, annotationId: id, baseVersion: base.version });
      this.#applyState(op.annotation);
      this.#announce('Annotation deleted.');
      this.#flushList();
      this.#list.querySelector<HTMLButtonElement>('button.annotation-select')?.focus();
    } catch (err) {
      const current = conflictCurrent(err);
      if (!current) {
        this.host.say(err instanceof AckFailure ? err.message : 'The annotation could not be deleted.');
        return;
      }
      // A deletion is not re-applied blindly to a version nobody here has seen: show it first.
      this.#applyState(current);
      this.host.say(current.deleted ? 'This annotation was already deleted.' : 'Someone changed this annotation meanwhile; it now shows their version. Delete it again if you still want to.');
    }
  }

  #announce(text: string): void {
    this.#hint.textContent = text;
  }

  // ------------------------------------------------------------------ list and editor

  /** Keyed rows: reused, so focus stays on a row while others change. */
  #renderList(): void {
    const list = this.layer.forMaterial(this.#materialId());
    const keep = new Set(list.map((a) => a.id));
    for (const [id, row] of this.#rows) {
      if (!keep.has(id)) {
        row.remove();
        this.#rows.delete(id);
      }
    }
    const rows = list.map((a) => {
      let row = this.#rows.get(a.id);
      if (!row) {
        row = h('li', { class: 'annotation-item', dataset: { annotationId: a.id } });
        this.#rows.set(a.id, row);
      }
      const swatch = h('span', { class: 'swatch', attrs: { 'aria-hidden': 'true' } });
      swatch.style.backgroundColor = a.properties.color;
      const name = a.properties.label || '(no label)';
      const hadFocus = row.contains(document.activeElement);
      const button = h(
        'button',
        { type: 'button', class: 'annotation-select', attrs: { 'aria-pressed': String(a.id === this.#selected) }, on: { click: () => this.select(a.id === this.#selected ? null : a.id) } },
        swatch,
        h('span', { class: 'annotation-name' }, name),
        h('span', { class: 'annotation-kind' }, ANNOTATION_KIND_LABEL[a.kind]),
        a.slice !== null ? h('span', { class: 'annotation-slice', dataset: { slice: String(a.slice) } }, sliceName(a.slice)) : null,
        a.properties.text ? h('span', { class: 'annotation-has-comment', title: 'Has a comment' }, '✎') : null,
      );
      replaceChildren(row, button);
      if (hadFocus) button.focus();
      row.classList.toggle('selected', a.id === this.#selected);
      return row;
    });
    const materialId = this.#materialId();
    replaceChildren(this.#list, ...(rows.length ? rows : [h('li', { class: 'muted' }, materialId ? 'None yet. Choose a tool above the slide to draw.' : 'Open a material to see its annotations.')]));
    this.#exportButton.disabled = !materialId;
    this.#importButton.disabled = !materialId;
  }

  #buildEditor(): void {
    const save = h('button', { type: 'submit', class: 'primary small' }, 'Save');
    const remove = h('button', { type: 'button', class: 'small danger' }, 'Delete');
    const close = h('button', { type: 'button', class: 'small' }, 'Close');
    remove.addEventListener('click', () => this.#selected && void this.#delete(this.#selected));
    close.addEventListener('click', () => {
      const id = this.#selected;
      this.select(null);
      if (id) this.#rows.get(id)?.querySelector('button')?.focus();
    });
    this.#historyButton.addEventListener('click', () => {
      const open = this.#history.hidden;
      this.#history.hidden = !open;
      this.#historyButton.setAttribute('aria-expanded', String(open));
      if (open && this.#selected) void this.#loadHistory(this.#selected);
    });
    this.#editor.addEventListener('submit', (e) => {
      e.preventDefault();
      void this.#saveEditor();
    });
    replaceChildren(
      this.#editor,
      this.#editorTitle,
      h('label', { class: 'field', htmlFor: 'annotation-edit-label' }, h('span', {}, 'Label'), this.#editLabel),
      h('label', { class: 'field field-inline', htmlFor: 'annotation-edit-colour' }, h('span', {}, 'Colour'), this.#editColour),
      h('label', { class: 'field', htmlFor: 'annotation-edit-text' }, h('span', {}, 'Comment'), this.#editText),
      this.#editMeta,
      h('div', { class: 'editor-actions' }, save, remove, this.#historyButton, close),
      this.#history,
    );
  }

  #renderEditor(): void {
    const a = this.#selected ? this.layer.get(this.#selected) : undefined;
    if (!a || a.materialId !== this.#materialId()) {
      this.#editor.hidden = true;
      this.#history.hidden = true;
      this.#historyButton.setAttribute('aria-expanded', 'false');
      this.#editor.dataset.annotationId = '';
      return;
    }
    const switched = this.#editor.dataset.annotationId !== a.id;
    this.#editor.hidden = false;
    this.#editor.dataset.annotationId = a.id;
    this.#editor.dataset.version = String(a.version);
    this.#editorTitle.textContent = `${ANNOTATION_KIND_LABEL[a.kind]}${a.properties.label ? `: ${a.properties.label}` : ''}${a.slice !== null ? ` (${sliceName(a.slice)})` : ''}`;
    // Fields being edited keep what the person typed; a newer version shows in the others.
    const editing = this.#editor.contains(document.activeElement) && !switched;
    if (!editing || document.activeElement !== this.#editLabel) this.#editLabel.value = a.properties.label;
    if (!editing || document.activeElement !== this.#editColour) this.#editColour.value = a.properties.color;
    if (!editing || document.activeElement !== this.#editText) this.#editText.value = a.properties.text;
    this.#editMeta.textContent = `Version ${a.version} · ${a.updatedBy === a.createdBy && a.version === 1 ? 'drawn' : 'last changed'} by ${this.#who(a.updatedBy)}, ${formatDateTime(a.updatedAt)}`;
    if (switched) {
      this.#history.hidden = true;
      this.#historyButton.setAttribute('aria-expanded', 'false');
    }
  }

  async #saveEditor(): Promise<void> {
    const a = this.#selected ? this.layer.get(this.#selected) : undefined;
    if (!a) return;
    const patch: PropertiesPatch = {};
    const label = this.#editLabel.value.trim();
    const text = this.#editText.value.trim();
    if (label !== a.properties.label) patch.label = label;
    if (this.#editColour.value.toLowerCase() !== a.properties.color) patch.color = this.#editColour.value.toLowerCase();
    if (text !== a.properties.text) patch.text = text;
    if (Object.keys(patch).length === 0) {
      this.#announce('Nothing to save: no field changed.');
      return;
    }
    if (await this.#update(a.id, { properties: patch })) this.#announce('Annotation saved.');
  }

  #who(userId: string): string {
    if (userId === this.host.myUserId) return 'you';
    return this.host.nameOf(userId) ?? 'another user';
  }

  // ------------------------------------------------------------------ history

  async #loadHistory(id: string): Promise<void> {
    this.#historyFor = id;
    replaceChildren(this.#history, h('p', { class: 'muted' }, 'Loading the history…'));
    let ops: AnnotationOp[];
    try {
      ops = await this.host.call<AnnotationOp[]>('annotation:history', { caseId: this.host.caseId, annotationId: id });
    } catch (err) {
      if (this.#historyFor === id) replaceChildren(this.#history, h('p', { class: 'form-error' }, err instanceof AckFailure ? err.message : 'The history could not be loaded.'));
      return;
    }
    if (this.#historyFor !== id) return;
    const current = this.layer.get(id);
    const items = ops.map((op, i) => {
      const before = i > 0 ? ops[i - 1]!.annotation : null;
      const restorable = current && !current.deleted && op.op !== 'delete' && op.version !== current.version;
      return h(
        'li',
        { class: 'history-item', dataset: { version: String(op.version) } },
        h('span', { class: 'history-what' }, `Version ${op.version}: ${describeChange(op, before)}`),
        h('span', { class: 'history-who' }, `${this.#who(op.userId)}, ${formatDateTime(op.at)}`),
        restorable
          ? h('button', { type: 'button', class: 'small link', attrs: { 'aria-label': `Restore version ${op.version}` }, on: { click: () => void this.#restore(id, op.annotation) } }, 'Restore')
          : null,
      );
    });
    replaceChildren(this.#history, h('h4', {}, 'History'), h('ol', { class: 'history-list' }, ...items));
  }

  async #restore(id: string, old: PublicAnnotation): Promise<void> {
    const { label, color, text } = old.properties;
    if (await this.#update(id, { geometry: old.geometry, properties: { label, color, text } })) this.#announce(`Version ${old.version} restored as a new version.`);
  }

  // ------------------------------------------------------------------ GeoJSON

  #geojsonUrl(materialId: string, suffix: string): string {
    return `/api/cases/${encodeURIComponent(this.host.caseId)}/materials/${encodeURIComponent(materialId)}/${suffix}`;
  }

  async #export(): Promise<void> {
    const materialId = this.#materialId();
    if (!materialId) return;
    try {
      const collection = await this.host.api.get<GeoJsonFeatureCollection>(this.#geojsonUrl(materialId, 'annotations.geojson'));
      const url = URL.createObjectURL(new Blob([JSON.stringify(collection, null, 2)], { type: 'application/geo+json' }));
      // The file name carries ids only, never a patient's name.
      const link = h('a', { href: url, download: `annotations-${materialId}.geojson`, hidden: true });
      document.body.appendChild(link);
      link.click();
      link.remove();
      window.setTimeout(() => URL.revokeObjectURL(url), 60_000);
      this.#announce(`Exported ${collection.features.length} annotation${collection.features.length === 1 ? '' : 's'}.`);
    } catch (err) {
      this.host.say(`Export failed: ${describeError(err)}`);
    }
  }

  async #import(): Promise<void> {
    const materialId = this.#materialId();
    const file = this.#importInput.files?.[0];
    this.#importInput.value = '';
    if (!materialId || !file) return;
    let body: unknown;
    try {
      body = JSON.parse(await file.text());
    } catch {
      this.host.say(`${file.name} is not a JSON file.`);
      return;
    }
    try {
      const { imported } = await this.host.api.post<{ imported: number }>(this.#geojsonUrl(materialId, 'annotations/import'), body);
      // The new annotations arrive through the room as annotation:op events, like anyone's.
      this.#announce(`Imported ${imported} annotation${imported === 1 ? '' : 's'} from ${file.name}.`);
      this.host.say(`Imported ${imported} annotation${imported === 1 ? '' : 's'}.`);
    } catch (err) {
      this.host.say(`Import failed: ${describeError(err)}`);
    }
  }
}

function conflictCurrent(err: unknown): PublicAnnotation | null {
  if (err instanceof AckFailure && err.code === 'VERSION_CONFLICT' && err.error.current) return err.error.current as PublicAnnotation;
  return null;
}

/** What one history entry changed, in words. */
function describeChange(op: AnnotationOp, before: PublicAnnotation | null): string {
  if (op.op === 'create') return 'drawn';
  if (op.op === 'delete') return 'deleted';
  if (!before) return 'changed';
  const a = op.annotation;
  const parts: string[] = [];
  if (a.properties.label !== before.properties.label) parts.push(a.properties.label ? `label “${a.properties.label}”` : 'label removed');
  if (a.properties.color !== before.properties.color) parts.push(`colour ${a.properties.color}`);
  if (a.properties.text !== before.properties.text) parts.push(a.properties.text ? 'comment changed' : 'comment removed');
  if (JSON.stringify(a.geometry) !== JSON.stringify(before.geometry)) parts.push('shape moved or changed');
  return parts.length ? parts.join(', ') : 'changed';
}
