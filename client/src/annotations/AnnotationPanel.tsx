// The annotation tools of a case room: the drawing toolbar (tools, colour, label for new shapes),
// the list of the open material's annotations, the editor of the selected one (label, colour,
// comment, delete, history with restore), and GeoJSON export and import. It owns every
// annotation write and its version-conflict handling; the SVG overlay (AnnotationLayer) owns
// drawing and dragging on the image. The image is a surface: the slide viewer, or the stack
// viewer of a DICOM series, where new annotations carry the slice they are drawn on and the list
// names each one's slice.
//
// The class keeps the small imperative API the case page wires to the room and holds the state;
// Preact components render that state into its three elements (toolbar, hint line, side panel),
// the pattern of docs/client.md ("UI library"). The overlay stays imperative (redrawn per frame).
import { Component, createRef, render, type RefObject } from 'preact';
import { describeError } from '../api';
import type { Api } from '../api';
import { formatDateTime, randomId } from '../dom';
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

const GEOJSON_ACCEPT = '.geojson,.json,application/geo+json,application/json';

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

/** The list as last rendered: taken once per animation frame at most (an import is thousands of ops). */
interface ListView {
  materialId: string | null;
  annotations: PublicAnnotation[];
}

/** What the editor's fields hold: the selected annotation's values, or what the person typed. */
interface Draft {
  id: string;
  label: string;
  color: string;
  text: string;
}

type DraftField = 'label' | 'color' | 'text';

interface HistoryEntry {
  version: number;
  what: string;
  who: string;
  /** The version to write again, when Restore is offered for it. */
  restore: PublicAnnotation | null;
}

type HistoryView = { state: 'loading' } | { state: 'failed'; message: string } | { state: 'loaded'; annotationId: string; entries: HistoryEntry[] };

/** What the components call back; one object for the panel's lifetime. */
interface PanelActions {
  setTool(tool: Tool): void;
  setNewLabel(value: string): void;
  setNewColour(value: string): void;
  /** A list row was clicked: selects it, or clears the selection if it was selected. */
  pick(id: string): void;
  edit(field: DraftField, value: string): void;
  save(): void;
  remove(): void;
  toggleHistory(): void;
  close(): void;
  restore(id: string, old: PublicAnnotation): void;
  exportFile(): void;
  chooseFile(): void;
  importFile(input: HTMLInputElement): void;
}

// ------------------------------------------------------------------ components

function Tools({ tool, newLabel, newColour, actions }: { tool: Tool; newLabel: string; newColour: string; actions: PanelActions }) {
  return (
    <>
      {TOOLS.map((t) => (
        <button key={t.tool} type="button" class="tool" aria-pressed={t.tool === tool} aria-describedby="annotation-tool-hint" onClick={() => actions.setTool(t.tool)}>
          {t.label}
        </button>
      ))}
      <input type="text" name="annotation-label" placeholder="Label" maxLength={LABEL_MAX} aria-label="Label for new annotations" value={newLabel} onInput={(e) => actions.setNewLabel(e.currentTarget.value)} />
      <input type="color" name="annotation-colour" aria-label="Colour for new annotations" value={newColour} onInput={(e) => actions.setNewColour(e.currentTarget.value)} />
    </>
  );
}

interface ListProps {
  view: ListView;
  selected: string | null;
  actions: PanelActions;
}

/**
 * Keyed rows: a row (and its button) is the same element across updates, so focus stays on the
 * row being used while others' changes arrive. Rendered again only when the list was taken anew
 * or the selection changed, not on every editor update.
 */
class AnnotationList extends Component<ListProps> {
  override shouldComponentUpdate(next: ListProps): boolean {
    return next.view !== this.props.view || next.selected !== this.props.selected;
  }

  override render({ view, selected, actions }: ListProps) {
    return (
      <ul class="annotation-list" aria-label="Annotations of this image">
        {view.annotations.length ? (
          view.annotations.map((a) => (
            <li key={a.id} class={a.id === selected ? 'annotation-item selected' : 'annotation-item'} data-annotation-id={a.id}>
              <button type="button" class="annotation-select" aria-pressed={a.id === selected} onClick={() => actions.pick(a.id)}>
                {/* The annotation's own colour: a CSSOM property (the CSP allows it, not a style attribute). */}
                <span class="swatch" aria-hidden="true" style={{ backgroundColor: a.properties.color }} />
                <span class="annotation-name">{a.properties.label || '(no label)'}</span>
                <span class="annotation-kind">{ANNOTATION_KIND_LABEL[a.kind]}</span>
                {a.slice !== null ? (
                  <span class="annotation-slice" data-slice={String(a.slice)}>
                    {sliceName(a.slice)}
                  </span>
                ) : null}
                {a.properties.text ? (
                  <span class="annotation-has-comment" title="Has a comment">
                    ✎
                  </span>
                ) : null}
              </button>
            </li>
          ))
        ) : (
          <li class="muted">{view.materialId ? 'None yet. Choose a tool above the slide to draw.' : 'Open a material to see its annotations.'}</li>
        )}
      </ul>
    );
  }
}

interface EditorRefs {
  form: RefObject<HTMLFormElement | null>;
  label: RefObject<HTMLInputElement | null>;
  color: RefObject<HTMLInputElement | null>;
  text: RefObject<HTMLTextAreaElement | null>;
}

interface EditorProps {
  /** The selected annotation with its words, or null: the editor is hidden. */
  shown: { annotation: PublicAnnotation; title: string; meta: string } | null;
  draft: Draft | null;
  historyOpen: boolean;
  history: HistoryView | null;
  refs: EditorRefs;
  actions: PanelActions;
}

function Editor({ shown, draft, historyOpen, history, refs, actions }: EditorProps) {
  const a = shown?.annotation;
  return (
    <form
      ref={refs.form}
      class="annotation-editor"
      hidden={!shown}
      aria-label="Selected annotation"
      data-annotation-id={a?.id ?? ''}
      data-version={a ? String(a.version) : undefined}
      onSubmit={(e) => {
        e.preventDefault();
        actions.save();
      }}
    >
      {shown && draft ? (
        <>
          <h3 class="editor-title">{shown.title}</h3>
          <label class="field" for="annotation-edit-label">
            <span>Label</span>
            <input ref={refs.label} type="text" name="label" maxLength={LABEL_MAX} id="annotation-edit-label" value={draft.label} onInput={(e) => actions.edit('label', e.currentTarget.value)} />
          </label>
          <label class="field field-inline" for="annotation-edit-colour">
            <span>Colour</span>
            <input ref={refs.color} type="color" name="color" id="annotation-edit-colour" value={draft.color} onInput={(e) => actions.edit('color', e.currentTarget.value)} />
          </label>
          <label class="field" for="annotation-edit-text">
            <span>Comment</span>
            <textarea ref={refs.text} name="text" rows={3} maxLength={TEXT_MAX} id="annotation-edit-text" placeholder="A comment for the room" value={draft.text} onInput={(e) => actions.edit('text', e.currentTarget.value)} />
          </label>
          <p class="editor-meta">{shown.meta}</p>
          <div class="editor-actions">
            <button type="submit" class="primary small">
              Save
            </button>
            <button type="button" class="small danger" onClick={actions.remove}>
              Delete
            </button>
            <button type="button" class="small" aria-expanded={historyOpen} aria-controls="annotation-history" onClick={actions.toggleHistory}>
              History
            </button>
            <button type="button" class="small" onClick={actions.close}>
              Close
            </button>
          </div>
          <div class="annotation-history" id="annotation-history" hidden={!historyOpen}>
            <History history={history} actions={actions} />
          </div>
        </>
      ) : null}
    </form>
  );
}

function History({ history, actions }: { history: HistoryView | null; actions: PanelActions }) {
  if (!history) return null;
  if (history.state === 'loading') return <p class="muted">Loading the history…</p>;
  if (history.state === 'failed') return <p class="form-error">{history.message}</p>;
  return (
    <>
      <h4>History</h4>
      <ol class="history-list">
        {history.entries.map((entry) => (
          <li key={entry.version} class="history-item" data-version={String(entry.version)}>
            <span class="history-what">{`Version ${entry.version}: ${entry.what}`}</span>
            <span class="history-who">{entry.who}</span>
            {entry.restore ? (
              <button type="button" class="small link" aria-label={`Restore version ${entry.version}`} onClick={() => actions.restore(history.annotationId, entry.restore!)}>
                Restore
              </button>
            ) : null}
          </li>
        ))}
      </ol>
    </>
  );
}

function GeoJsonActions({ materialId, importInput, actions }: { materialId: string | null; importInput: RefObject<HTMLInputElement | null>; actions: PanelActions }) {
  return (
    <div class="geojson-actions">
      <button type="button" class="small" disabled={!materialId} onClick={actions.exportFile}>
        Export GeoJSON
      </button>
      <button type="button" class="small" disabled={!materialId} onClick={actions.chooseFile}>
        Import GeoJSON
      </button>
      <input ref={importInput} type="file" accept={GEOJSON_ACCEPT} class="visually-hidden" tabIndex={-1} aria-label="GeoJSON file to import" onChange={(e) => actions.importFile(e.currentTarget)} />
    </div>
  );
}

// ------------------------------------------------------------------ the panel

export class AnnotationPanel {
  readonly layer: AnnotationLayer;
  /** Tools for the viewer's toolbar. */
  readonly toolbar: HTMLElement = document.createElement('div');
  /** The side panel: list, editor, history, import and export. */
  readonly element: HTMLElement = document.createElement('section');
  readonly #hint: HTMLElement = document.createElement('p');
  #hintText: string;
  #newLabel = '';
  #newColour = NEW_ANNOTATION_COLOUR;
  #listView: ListView = { materialId: null, annotations: [] };
  #selected: string | null = null;
  #draft: Draft | null = null;
  #historyOpen = false;
  #historyFor: string | null = null;
  #history: HistoryView | null = null;
  readonly #refs: EditorRefs = { form: createRef(), label: createRef(), color: createRef(), text: createRef() };
  readonly #importInput = createRef<HTMLInputElement>();
  readonly #actions: PanelActions;
  #textField: HTMLInputElement | null = null;
  #nudge: { id: string; timer: number; geometry: AnnotationGeometry } | null = null;
  /** A list render waiting for the next frame (an import arrives as thousands of ops). */
  #listFrame: number | null = null;
  #destroyed = false;
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
      draftColour: () => this.#newColour,
      canEdit: () => true,
    });
    this.#actions = {
      setTool: (tool) => this.setTool(tool),
      setNewLabel: (value) => (this.#newLabel = value),
      setNewColour: (value) => (this.#newColour = value),
      pick: (id) => this.select(id === this.#selected ? null : id),
      edit: (field, value) => {
        if (this.#draft) this.#draft = { ...this.#draft, [field]: value };
      },
      save: () => void this.#saveEditor(),
      remove: () => this.#selected && void this.#delete(this.#selected),
      toggleHistory: () => this.#toggleHistory(),
      close: () => {
        const id = this.#selected;
        this.select(null);
        if (id) this.#row(id)?.querySelector('button')?.focus();
      },
      restore: (id, old) => void this.#restore(id, old),
      exportFile: () => void this.#export(),
      chooseFile: () => this.#importInput.current?.click(),
      importFile: (input) => void this.#import(input),
    };
    this.toolbar.className = 'annotation-tools';
    this.toolbar.setAttribute('role', 'group');
    this.toolbar.setAttribute('aria-label', 'Annotation tools');
    this.#hint.className = 'tool-hint';
    this.#hint.id = 'annotation-tool-hint';
    this.#hint.setAttribute('aria-live', 'polite');
    this.element.className = 'panel annotations-panel';
    this.element.setAttribute('aria-labelledby', 'annotations-heading');
    this.#hintText = this.#hintFor('pan');
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
      this.#announce(this.#hintFor(this.layer.tool));
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
    this.#hintText = this.#hintFor(tool);
    if (tool !== 'pan') this.select(null);
    this.layer.render();
    this.#paint();
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
    if (id && !this.#listView.annotations.some((a) => a.id === id)) this.#flushList();
    // An annotation of another slice is selected (from the list): the stack goes to its slice.
    const a = id ? this.layer.get(id) : undefined;
    const surface = this.layer.surface;
    if (a && a.slice !== null && surface.slice !== null && a.slice !== surface.slice && a.materialId === surface.materialId) surface.showSlice(a.slice);
    this.#selected = id;
    this.layer.setSelected(id);
    this.#syncEditor();
    this.#paint();
    if (id) this.#row(id)?.scrollIntoView({ block: 'nearest' });
  }

  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    if (this.#nudge) window.clearTimeout(this.#nudge.timer);
    if (this.#listFrame !== null) cancelAnimationFrame(this.#listFrame);
    document.removeEventListener('keydown', this.#onKey);
    this.#stopEmptyClick();
    this.#textField?.remove();
    this.layer.destroy();
    render(null, this.toolbar);
    render(null, this.#hint);
    render(null, this.element);
  }

  render(): void {
    this.layer.render();
    this.#takeList();
    this.#syncEditor();
    this.#paint();
  }

  #scheduleList(): void {
    if (this.#listFrame === null) this.#listFrame = requestAnimationFrame(() => this.#flushList());
  }

  #flushList(): void {
    this.#takeList();
    this.#paint();
  }

  #takeList(): void {
    if (this.#listFrame !== null) cancelAnimationFrame(this.#listFrame);
    this.#listFrame = null;
    const materialId = this.#materialId();
    this.#listView = { materialId, annotations: this.layer.forMaterial(materialId) };
  }

  /** Renders the state into the three elements (the list only when taken anew or reselected). */
  #paint(): void {
    if (this.#destroyed) return;
    render(<Tools tool={this.layer.tool} newLabel={this.#newLabel} newColour={this.#newColour} actions={this.#actions} />, this.toolbar);
    render(<>{this.#hintText}</>, this.#hint);
    const a = this.#shown();
    const shown = a ? { annotation: a, title: editorTitle(a), meta: `Version ${a.version} · ${a.updatedBy === a.createdBy && a.version === 1 ? 'drawn' : 'last changed'} by ${this.#who(a.updatedBy)}, ${formatDateTime(a.updatedAt)}` } : null;
    render(
      <>
        <h2 id="annotations-heading">Annotations</h2>
        <AnnotationList view={this.#listView} selected={this.#selected} actions={this.#actions} />
        <Editor shown={shown} draft={this.#draft} historyOpen={this.#historyOpen} history={this.#history} refs={this.#refs} actions={this.#actions} />
        <GeoJsonActions materialId={this.#listView.materialId} importInput={this.#importInput} actions={this.#actions} />
      </>,
      this.element,
    );
  }

  /** The list row of an annotation (its data attribute compared, never put into a selector). */
  #row(id: string): HTMLElement | undefined {
    for (const row of this.element.querySelectorAll<HTMLElement>('.annotation-item')) if (row.dataset.annotationId === id) return row;
    return undefined;
  }

  // ------------------------------------------------------------------ state

  #applyState(annotation: PublicAnnotation): void {
    this.layer.apply(annotation);
    if (annotation.deleted && this.#selected === annotation.id) this.#selected = null;
    this.#scheduleList();
    this.#syncEditor();
    this.#paint();
    if (this.#historyFor === annotation.id && this.#historyOpen) void this.#loadHistory(annotation.id);
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

  async #create(kind: AnnotationKind, geometry: AnnotationGeometry, label = this.#newLabel.trim(), slice = this.layer.surface.slice): Promise<void> {
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
        properties: { label, color: this.#newColour, text: '' },
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
      // The focused row is gone: focus goes to the first row, not to the page's top.
      this.element.querySelector<HTMLButtonElement>('.annotation-list button.annotation-select')?.focus();
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
    this.#hintText = text;
    this.#paint();
  }

  // ------------------------------------------------------------------ editor

  /** The selected annotation when it belongs to the open material (the editor shows it). */
  #shown(): PublicAnnotation | undefined {
    const a = this.#selected ? this.layer.get(this.#selected) : undefined;
    return a && a.materialId === this.#materialId() ? a : undefined;
  }

  /**
   * Brings the editor's fields to the selected annotation's newest version. Fields being edited
   * keep what the person typed; a newer version shows in the others. Another annotation (or none)
   * starts afresh, with the history closed.
   */
  #syncEditor(): void {
    const a = this.#shown();
    if (!a) {
      this.#draft = null;
      this.#historyOpen = false;
      return;
    }
    const before = this.#draft;
    const switched = before?.id !== a.id;
    const active = document.activeElement;
    const editing = !switched && !!this.#refs.form.current?.contains(active);
    const typing = (field: { current: Element | null }) => editing && active !== null && active === field.current;
    this.#draft = {
      id: a.id,
      label: typing(this.#refs.label) ? before!.label : a.properties.label,
      color: typing(this.#refs.color) ? before!.color : a.properties.color,
      text: typing(this.#refs.text) ? before!.text : a.properties.text,
    };
    if (switched) this.#historyOpen = false;
  }

  async #saveEditor(): Promise<void> {
    const a = this.#selected ? this.layer.get(this.#selected) : undefined;
    const draft = this.#draft;
    if (!a || !draft) return;
    const patch: PropertiesPatch = {};
    const label = draft.label.trim();
    const text = draft.text.trim();
    const color = draft.color.toLowerCase();
    if (label !== a.properties.label) patch.label = label;
    if (color !== a.properties.color) patch.color = color;
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

  #toggleHistory(): void {
    this.#historyOpen = !this.#historyOpen;
    this.#paint();
    if (this.#historyOpen && this.#selected) void this.#loadHistory(this.#selected);
  }

  async #loadHistory(id: string): Promise<void> {
    this.#historyFor = id;
    this.#history = { state: 'loading' };
    this.#paint();
    let ops: AnnotationOp[];
    try {
      ops = await this.host.call<AnnotationOp[]>('annotation:history', { caseId: this.host.caseId, annotationId: id });
    } catch (err) {
      if (this.#historyFor === id) {
        this.#history = { state: 'failed', message: err instanceof AckFailure ? err.message : 'The history could not be loaded.' };
        this.#paint();
      }
      return;
    }
    if (this.#historyFor !== id) return;
    const current = this.layer.get(id);
    const entries = ops.map((op, i): HistoryEntry => {
      const before = i > 0 ? ops[i - 1]!.annotation : null;
      const restorable = current && !current.deleted && op.op !== 'delete' && op.version !== current.version;
      return { version: op.version, what: describeChange(op, before), who: `${this.#who(op.userId)}, ${formatDateTime(op.at)}`, restore: restorable ? op.annotation : null };
    });
    this.#history = { state: 'loaded', annotationId: id, entries };
    this.#paint();
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
      // A download link clicked once and removed; the file name carries ids only, never a patient's name.
      const link = document.createElement('a');
      link.href = url;
      link.download = `annotations-${materialId}.geojson`;
      link.hidden = true;
      document.body.appendChild(link);
      link.click();
      link.remove();
      window.setTimeout(() => URL.revokeObjectURL(url), 60_000);
      this.#announce(`Exported ${collection.features.length} annotation${collection.features.length === 1 ? '' : 's'}.`);
    } catch (err) {
      this.host.say(`Export failed: ${describeError(err)}`);
    }
  }

  async #import(input: HTMLInputElement): Promise<void> {
    const materialId = this.#materialId();
    const file = input.files?.[0];
    // Emptied at once, so choosing the same file again is a change again.
    input.value = '';
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

function editorTitle(a: PublicAnnotation): string {
  return `${ANNOTATION_KIND_LABEL[a.kind]}${a.properties.label ? `: ${a.properties.label}` : ''}${a.slice !== null ? ` (${sliceName(a.slice)})` : ''}`;
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
