// Annotations of the open material as an SVG overlay. Shapes are drawn once in image pixels
// inside one group whose transform is the image-to-screen matrix of the frame (rotation
// included), with strokes that do not scale; a move of the view rewrites one attribute, not the
// shapes. Points and labels, which keep their size on screen, are placed in screen pixels each
// frame. (Measured with 3,000 imported cell outlines: rebuilding every shape each frame took
// frames of 0.1 to 2.6 s while zooming.) With a drawing tool
// chosen, the overlay takes the pointer and turns gestures into GeoJSON geometry in image pixels;
// with Pan chosen, a click on a shape selects it and the selected shape can be moved or reshaped
// by dragging it or its handles. Colours are SVG presentation attributes, not inline styles.
// The layer draws on an AnnotationSurface: the slide viewer (OpenSeadragon) or the stack viewer
// of a DICOM series, where it shows only the annotations of the slice on screen.
import { h, setAttrs, svg } from '../dom';
import type { AnnotationGeometry, AnnotationKind, PublicAnnotation } from '../../../src/protocol/annotations';
import type * as AnnotationProtocol from '../../../src/protocol/annotations';

/** Image pixel → overlay element pixel, for the current frame (affine). */
export type ImageToScreen = (x: number, y: number) => { x: number; y: number };

/**
 * What the layer needs of the image it draws on. Element pixels are relative to `overlayHost`,
 * which the layer's SVG fills.
 */
export interface AnnotationSurface {
  /** The material shown, or null. */
  readonly materialId: string | null;
  /** The slice shown (display order, from 0) when the surface is a stack; null otherwise. */
  readonly slice: number | null;
  /** Where overlays go: an element over the image, the size of the area the image is shown in. */
  readonly overlayHost: HTMLElement;
  /** The mapping for the current frame, or null when nothing is shown. */
  imageToScreen(): ImageToScreen | null;
  /** Element pixel → image pixel, or null when nothing is shown. */
  screenToImage(x: number, y: number): { x: number; y: number } | null;
  /** Called once per frame in which the view, the size or the slice changed. */
  onRedraw(listener: () => void): () => void;
  /** A quick primary-button click on the image that no shape took (it clears the selection). */
  onEmptyClick(listener: () => void): () => void;
  /** The surface's own pointer gestures (pan, zoom, window drag) on or off while a tool draws. */
  setNavigationEnabled(enabled: boolean): void;
  /** Shows a slice (a stack); a surface without slices ignores it. */
  showSlice(slice: number): void;
}

// The protocol's limits, as types: a value import from the protocol module would bring zod into
// the bundle (27 KB gzipped), and a changed limit there fails the client's type check here.
export const MAX_POSITIONS: typeof AnnotationProtocol.MAX_POSITIONS = 10_000;
export const LABEL_MAX: typeof AnnotationProtocol.LABEL_MAX = 200;
export const TEXT_MAX: typeof AnnotationProtocol.TEXT_MAX = 4000;

export type Tool = 'pan' | 'point' | 'line' | 'rectangle' | 'polygon' | 'freehand' | 'text';

/** A press that moves less than this is a click. */
const CLICK_SLOP_PX = 4;
/** A polygon click this close to the first vertex closes it; a freehand stroke ending this close to its start is an outline. */
const CLOSE_PX = 12;
/** Freehand samples closer than this to the previous one are dropped (a steady hand makes hundreds). */
const FREEHAND_STEP_PX = 3;

type ScreenPoint = { x: number; y: number };
type Position = [number, number];

export interface AnnotationLayerHooks {
  /** A finished drawing, in image pixels. */
  create(kind: AnnotationKind, geometry: AnnotationGeometry): void;
  /** The text tool was clicked at `screen` (element pixels) over image position `image`. */
  placeText(screen: ScreenPoint, image: Position): void;
  /** A click on a shape (or on nothing: null). */
  select(id: string | null): void;
  /** A selected shape was moved or reshaped. */
  edit(id: string, geometry: AnnotationGeometry): void;
  draftColour(): string;
  /** Whether this person may change annotations (handles are shown only then). */
  canEdit(): boolean;
}

/** What a drag on the selected shape changes: one vertex, or the whole shape. */
type Drag = { id: string; pointerId: number; start: ScreenPoint; vertex: { ring: number; index: number } | null; moved: boolean };

export class AnnotationLayer {
  readonly element: SVGSVGElement = svg('svg', { class: 'annotation-layer', role: 'img', 'aria-label': 'Annotations on the image' });
  readonly #annotations = new Map<string, PublicAnnotation>();
  readonly #draft = svg('polyline', { class: 'annotation-draft', fill: 'none' });
  /** Lines and areas, in image pixels; the group's transform maps them to the screen. */
  readonly #bodies = svg('g', { class: 'annotation-bodies' });
  /** Points and labels, in screen pixels, re-placed each frame. */
  readonly #marks = svg('g', { class: 'annotation-marks' });
  readonly #handleGroup = svg('g', { class: 'annotation-handles' });
  /** Each mark with its image position and its offset on screen. */
  #placed: { image: Position; set(at: ScreenPoint): void }[] = [];
  /** Shapes must be rebuilt (annotations, selection, preview or material changed). */
  #dirty = true;
  /** The material and slice the shapes were built for (`materialId#slice`). */
  #builtFor: string | null = null;
  /** A rebuild waiting for the next frame: many changes in one frame cost one rebuild. */
  #frame: number | null = null;
  #surface: AnnotationSurface;
  #stopRedraw: () => void;
  #tool: Tool = 'pan';
  #selected: string | null = null;
  /** Press of a drag tool (line, rectangle, freehand) or a click tool. */
  #press: { start: ScreenPoint; pointerId: number; trail: ScreenPoint[] } | null = null;
  /** Vertices of a polygon being drawn (screen pixels), and where the pointer hovers. */
  #polygon: ScreenPoint[] = [];
  #hover: ScreenPoint | null = null;
  #drag: Drag | null = null;
  /** The geometry shown for an annotation while it is dragged or its edit is on its way. */
  readonly #preview = new Map<string, AnnotationGeometry>();
  readonly #onWindowMove = (e: PointerEvent) => this.#dragMove(e);
  readonly #onWindowUp = (e: PointerEvent) => this.#dragEnd(e);

  constructor(
    surface: AnnotationSurface,
    private readonly hooks: AnnotationLayerHooks,
  ) {
    this.#surface = surface;
    this.#stopRedraw = surface.onRedraw(() => this.#place());
    surface.overlayHost.prepend(this.element);
    this.element.append(this.#bodies, this.#marks, this.#handleGroup, this.#draft);
    this.element.addEventListener('pointerdown', (e) => this.#down(e));
    this.element.addEventListener('pointermove', (e) => this.#move(e));
    this.element.addEventListener('pointerup', (e) => this.#up(e));
    this.element.addEventListener('pointercancel', () => this.cancelDrawing());
    this.element.addEventListener('dblclick', (e) => {
      if (this.#tool !== 'polygon') return;
      e.preventDefault();
      this.finishPolygon();
    });
  }

  get tool(): Tool {
    return this.#tool;
  }

  get surface(): AnnotationSurface {
    return this.#surface;
  }

  /**
   * Moves the layer to another surface (a stack opened in place of the slide, or back): the old
   * one gets its navigation back, the new one takes the tool's state. The annotations stay.
   */
  attach(surface: AnnotationSurface): void {
    if (surface === this.#surface) return;
    this.cancelDrawing();
    this.#stopRedraw();
    this.#surface.setNavigationEnabled(true);
    this.#surface = surface;
    this.#stopRedraw = surface.onRedraw(() => this.#place());
    surface.overlayHost.prepend(this.element);
    surface.setNavigationEnabled(this.#tool === 'pan');
    this.render();
  }

  /** Whether an annotation is drawn on what the surface shows now (its material, and its slice on a stack). */
  isShown(a: PublicAnnotation): boolean {
    const s = this.#surface;
    return a.materialId === s.materialId && (s.slice === null || a.slice === null || a.slice === s.slice);
  }

  /** Vertices placed so far by the polygon tool. */
  get polygonVertices(): number {
    return this.#polygon.length;
  }

  setTool(tool: Tool): void {
    this.#tool = tool;
    this.cancelDrawing();
    // While drawing, the overlay takes the pointer and OSD does not pan underneath.
    this.element.classList.toggle('drawing', tool !== 'pan');
    this.element.dataset.tool = tool;
    this.#surface.setNavigationEnabled(tool === 'pan');
  }

  /** Replaces every annotation (a first join). */
  setAll(annotations: PublicAnnotation[]): void {
    this.#annotations.clear();
    this.#preview.clear();
    for (const a of annotations) if (!a.deleted) this.#annotations.set(a.id, a);
    this.render();
  }

  /** Applies the state an op produced (create, update or delete). */
  apply(annotation: PublicAnnotation): void {
    const known = this.#annotations.get(annotation.id);
    // Ops arrive in seq order; a version older than the one held is a late duplicate.
    if (known && known.version > annotation.version) return;
    if (annotation.deleted) this.#annotations.delete(annotation.id);
    else this.#annotations.set(annotation.id, annotation);
    if (!this.#drag || this.#drag.id !== annotation.id) this.#preview.delete(annotation.id);
    if (annotation.deleted && this.#selected === annotation.id) this.#selected = null;
    this.render();
  }

  /**
   * Moves an annotation by a screen distance (keyboard nudging): shows it moved at once and
   * returns the geometry to send, or null when nothing is open.
   */
  nudge(id: string, dx: number, dy: number): AnnotationGeometry | null {
    const a = this.#annotations.get(id);
    const origin = this.#surface.screenToImage(0, 0);
    const moved = this.#surface.screenToImage(dx, dy);
    if (!a || !origin || !moved) return null;
    const ix = moved.x - origin.x;
    const iy = moved.y - origin.y;
    const shift = ([x, y]: Position): Position => [round(x + ix), round(y + iy)];
    const g = this.#preview.get(id) ?? a.geometry;
    const next: AnnotationGeometry =
      g.type === 'Point' ? { type: 'Point', coordinates: shift(g.coordinates) } : g.type === 'LineString' ? { type: 'LineString', coordinates: g.coordinates.map(shift) } : { type: 'Polygon', coordinates: g.coordinates.map((ring) => ring.map(shift)) };
    this.#preview.set(id, next);
    this.render();
    return next;
  }

  /** Drops the preview of an edit that failed: the shape goes back to its stored geometry. */
  clearPreview(id: string): void {
    if (this.#preview.delete(id)) this.render();
  }

  get(id: string): PublicAnnotation | undefined {
    return this.#annotations.get(id);
  }

  /** The open material's annotations: by slice on a stack (those without one first), then oldest first. */
  forMaterial(materialId: string | null): PublicAnnotation[] {
    return [...this.#annotations.values()]
      .filter((a) => a.materialId === materialId)
      .sort((a, b) => (a.slice ?? -1) - (b.slice ?? -1) || a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));
  }

  setSelected(id: string | null): void {
    this.#selected = id;
    this.render();
  }

  /** Ends the polygon being drawn (double click, Enter, or a click on its first vertex). */
  finishPolygon(): void {
    const points = dedupe(this.#polygon);
    this.#polygon = [];
    this.#hover = null;
    this.#renderDraft();
    if (points.length < 3) return;
    const ring = this.#toImageAll(points);
    if (ring) this.hooks.create('polygon', { type: 'Polygon', coordinates: [[...ring, ring[0]!]] });
  }

  /** Forgets a drawing in progress (Escape, a tool change). */
  cancelDrawing(): void {
    this.#press = null;
    this.#polygon = [];
    this.#hover = null;
    this.#draft.removeAttribute('points');
    // The tool may have changed: handles show only with Pan.
    this.#place();
  }

  /** Removes the last polygon vertex placed (Backspace). */
  undoVertex(): void {
    this.#polygon.pop();
    this.#renderDraft();
  }

  /** Something changed: the shapes are rebuilt and placed at the next frame. */
  render(): void {
    this.#dirty = true;
    if (this.#frame === null)
      this.#frame = requestAnimationFrame(() => {
        this.#frame = null;
        this.#place();
      });
  }

  /** Every frame the view moves: one transform for the shapes, positions for marks and handles. */
  #place(): void {
    const map = this.#surface.imageToScreen();
    const materialId = map ? this.#surface.materialId : null;
    const slice = this.#surface.slice;
    // A new slice on a stack is a new set of shapes, like a new material.
    const key = materialId === null ? null : `${materialId}#${slice ?? ''}`;
    this.element.dataset.slice = slice === null ? '' : String(slice);
    if (this.#dirty || this.#builtFor !== key) this.#build(key);
    if (map) {
      const o = map(0, 0);
      const ex = map(1, 0);
      const ey = map(0, 1);
      this.#bodies.setAttribute('transform', `matrix(${ex.x - o.x} ${ex.y - o.y} ${ey.x - o.x} ${ey.y - o.y} ${o.x} ${o.y})`);
      for (const mark of this.#placed) mark.set(map(mark.image[0], mark.image[1]));
      const selected = this.#selected ? this.#annotations.get(this.#selected) : undefined;
      const handles = selected && this.isShown(selected) && this.#tool === 'pan' && this.hooks.canEdit() ? this.#handles(selected, map) : [];
      this.#handleGroup.replaceChildren(...handles);
    } else {
      this.#handleGroup.replaceChildren();
    }
    this.#renderDraft();
  }

  #build(key: string | null): void {
    this.#dirty = false;
    this.#builtFor = key;
    const bodies: SVGElement[] = [];
    const marks: SVGElement[] = [];
    this.#placed = [];
    if (key !== null) {
      for (const a of this.forMaterial(this.#surface.materialId)) if (this.isShown(a)) this.#shape(a, bodies, marks);
    }
    this.#bodies.replaceChildren(...bodies);
    this.#marks.replaceChildren(...marks);
  }

  destroy(): void {
    if (this.#frame !== null) cancelAnimationFrame(this.#frame);
    this.#stopRedraw();
    window.removeEventListener('pointermove', this.#onWindowMove);
    window.removeEventListener('pointerup', this.#onWindowUp);
    this.element.remove();
  }

  // ------------------------------------------------------------------ shapes

  #geometryOf(a: PublicAnnotation): AnnotationGeometry {
    return this.#preview.get(a.id) ?? a.geometry;
  }

  /** Builds the elements of one annotation: its body (image pixels) and its marks (screen pixels). */
  #shape(a: PublicAnnotation, bodies: SVGElement[], marks: SVGElement[]): void {
    const colour = a.properties.color;
    const selected = a.id === this.#selected;
    const title = svg('title');
    title.textContent = [a.properties.label || a.kind, a.properties.text].filter(Boolean).join(': ');
    const stroke = { stroke: colour, 'stroke-width': selected ? 3 : 2, 'vector-effect': 'non-scaling-stroke' };
    const g = this.#geometryOf(a);
    let anchor: Position;
    let group: SVGGElement;
    if (g.type === 'Point') {
      // A point keeps its size on screen: it is a mark, placed each frame.
      anchor = g.coordinates;
      group = svg('g', { class: `annotation annotation-mark kind-${a.kind}${selected ? ' selected' : ''}`, 'data-annotation-id': a.id });
      const circle = svg('circle', { r: selected ? 7 : 6, fill: colour, 'fill-opacity': 0.6, ...stroke });
      group.append(title, circle);
      this.#placed.push({ image: anchor, set: (at) => setAttrs(circle, { cx: at.x, cy: at.y }) });
      marks.push(group);
    } else {
      group = svg('g', { class: `annotation kind-${a.kind}${selected ? ' selected' : ''}`, 'data-annotation-id': a.id });
      group.append(title);
      if (g.type === 'LineString') {
        anchor = g.coordinates[0]!;
        const points = g.coordinates.map(([x, y]) => `${x},${y}`).join(' ');
        // A wide transparent twin makes a thin line easy to hit.
        group.append(svg('polyline', { points, fill: 'none', stroke: 'transparent', 'stroke-width': 12, 'vector-effect': 'non-scaling-stroke', class: 'hit' }), svg('polyline', { points, fill: 'none', ...stroke }));
      } else {
        // The label sits at the ring's top vertex (in the image; close enough in a rotated view).
        anchor = g.coordinates[0]!.reduce((top, p) => (p[1] < top[1] ? p : top), g.coordinates[0]![0]!);
        const d = g.coordinates.map((ring) => `M${ring.map(([x, y]) => `${x},${y}`).join('L')}Z`).join(' ');
        group.append(svg('path', { d, fill: colour, 'fill-opacity': selected ? 0.22 : 0.12, 'fill-rule': 'evenodd', ...stroke }));
      }
      bodies.push(group);
    }
    group.addEventListener('pointerdown', (e) => this.#shapeDown(e, a.id, null));
    const words = a.properties.label ? (a.properties.text ? `${a.properties.label} ✎` : a.properties.label) : a.properties.text ? '✎' : '';
    if (words) {
      const text = svg('text', { class: 'annotation-label', fill: colour });
      text.textContent = words;
      this.#placed.push({ image: anchor, set: (at) => setAttrs(text, { x: at.x + 8, y: at.y - 8 }) });
      if (g.type === 'Point') group.append(text);
      else {
        const mark = svg('g', { class: `annotation-mark kind-${a.kind}`, 'data-annotation-id': a.id });
        mark.append(text);
        marks.push(mark);
      }
    }
  }

  /** Vertex handles of the selected shape (not for freehand: too many to be useful). */
  #handles(a: PublicAnnotation, map: ImageToScreen): SVGElement[] {
    if (a.kind === 'freehand') return [];
    const g = this.#geometryOf(a);
    const vertices: { ring: number; index: number; at: ScreenPoint }[] = [];
    if (g.type === 'Point') vertices.push({ ring: 0, index: 0, at: map(g.coordinates[0], g.coordinates[1]) });
    else if (g.type === 'LineString') g.coordinates.forEach(([x, y], index) => vertices.push({ ring: 0, index, at: map(x, y) }));
    // The closing position repeats the first: no handle of its own.
    else g.coordinates.forEach((ring, r) => ring.slice(0, -1).forEach(([x, y], index) => vertices.push({ ring: r, index, at: map(x, y) })));
    return vertices.map((v) => {
      const handle = svg('rect', { class: 'annotation-handle', x: v.at.x - 5, y: v.at.y - 5, width: 10, height: 10, fill: '#ffffff', stroke: '#0d47a1', 'stroke-width': 2 });
      handle.addEventListener('pointerdown', (e) => this.#shapeDown(e, a.id, { ring: v.ring, index: v.index }));
      return handle;
    });
  }

  // ------------------------------------------------------------------ selecting and editing

  #shapeDown(e: PointerEvent, id: string, vertex: Drag['vertex']): void {
    if (this.#tool !== 'pan' || e.button !== 0) return;
    e.preventDefault();
    e.stopPropagation();
    if (this.#selected !== id) {
      this.hooks.select(id);
      if (!vertex) {
        // The first press selects; moving needs a press on a selected shape (no accidental drags).
        return;
      }
    }
    if (!this.hooks.canEdit()) return;
    this.#drag = { id, pointerId: e.pointerId, start: this.#local(e), vertex, moved: false };
    window.addEventListener('pointermove', this.#onWindowMove);
    window.addEventListener('pointerup', this.#onWindowUp);
  }

  #dragMove(e: PointerEvent): void {
    const drag = this.#drag;
    if (!drag || e.pointerId !== drag.pointerId) return;
    const a = this.#annotations.get(drag.id);
    if (!a) return;
    const now = this.#local(e);
    if (!drag.moved && Math.hypot(now.x - drag.start.x, now.y - drag.start.y) <= CLICK_SLOP_PX) return;
    drag.moved = true;
    const moved = this.#dragged(a, drag, now);
    if (moved) this.#preview.set(a.id, moved);
    this.render();
  }

  #dragEnd(e: PointerEvent): void {
    const drag = this.#drag;
    if (!drag || e.pointerId !== drag.pointerId) return;
    this.#drag = null;
    window.removeEventListener('pointermove', this.#onWindowMove);
    window.removeEventListener('pointerup', this.#onWindowUp);
    const geometry = this.#preview.get(drag.id);
    if (!drag.moved || !geometry) {
      this.clearPreview(drag.id);
      return;
    }
    // The preview stays until the server's answer replaces it (or clearPreview after a failure).
    this.hooks.edit(drag.id, geometry);
  }

  /** The geometry of `a` after dragging from drag.start to `now`. */
  #dragged(a: PublicAnnotation, drag: Drag, now: ScreenPoint): AnnotationGeometry | null {
    const from = this.#surface.screenToImage(drag.start.x, drag.start.y);
    const to = this.#surface.screenToImage(now.x, now.y);
    if (!from || !to) return null;
    const g = a.geometry;
    if (!drag.vertex) {
      const dx = to.x - from.x;
      const dy = to.y - from.y;
      const shift = ([x, y]: Position): Position => [round(x + dx), round(y + dy)];
      if (g.type === 'Point') return { type: 'Point', coordinates: shift(g.coordinates) };
      if (g.type === 'LineString') return { type: 'LineString', coordinates: g.coordinates.map(shift) };
      return { type: 'Polygon', coordinates: g.coordinates.map((ring) => ring.map(shift)) };
    }
    const target: Position = [round(to.x), round(to.y)];
    const { ring, index } = drag.vertex;
    if (g.type === 'Point') return { type: 'Point', coordinates: target };
    if (g.type === 'LineString') return { type: 'LineString', coordinates: g.coordinates.map((p, i) => (i === index ? target : p)) };
    if (a.kind === 'rectangle') {
      // A rectangle stays a rectangle on screen: the opposite corner holds, the dragged one follows.
      const map = this.#surface.imageToScreen();
      const opposite = g.coordinates[0]![(index + 2) % 4]!;
      if (!map) return null;
      const fixed = map(opposite[0], opposite[1]);
      const corners = this.#toImageAll([fixed, { x: now.x, y: fixed.y }, now, { x: fixed.x, y: now.y }]);
      return corners ? { type: 'Polygon', coordinates: [[...corners, corners[0]!]] } : null;
    }
    return {
      type: 'Polygon',
      coordinates: g.coordinates.map((positions, r) => {
        if (r !== ring) return positions;
        const last = positions.length - 1;
        // The first vertex is also the closing one: both move together.
        return positions.map((p, i) => (i === index || (index === 0 && i === last) ? target : p));
      }),
    };
  }

  // ------------------------------------------------------------------ drawing

  #local(e: PointerEvent | MouseEvent): ScreenPoint {
    const box = this.element.getBoundingClientRect();
    return { x: e.clientX - box.left, y: e.clientY - box.top };
  }

  #toImage(p: ScreenPoint): Position | null {
    const image = this.#surface.screenToImage(p.x, p.y);
    return image ? [round(image.x), round(image.y)] : null;
  }

  #toImageAll(points: ScreenPoint[]): Position[] | null {
    const out: Position[] = [];
    for (const p of points) {
      const image = this.#toImage(p);
      if (!image) return null;
      out.push(image);
    }
    return out;
  }

  #down(e: PointerEvent): void {
    if (this.#tool === 'pan' || e.button !== 0) return;
    e.preventDefault();
    const p = this.#local(e);
    if (this.#tool === 'polygon') {
      const first = this.#polygon[0];
      if (first && this.#polygon.length >= 3 && Math.hypot(p.x - first.x, p.y - first.y) <= CLOSE_PX) {
        this.finishPolygon();
        return;
      }
      // A double click sends two presses at one place: the second is not a new vertex.
      const last = this.#polygon.at(-1);
      if (!last || Math.hypot(p.x - last.x, p.y - last.y) > CLICK_SLOP_PX) this.#polygon.push(p);
      this.#renderDraft();
      return;
    }
    this.element.setPointerCapture(e.pointerId);
    this.#press = { start: p, pointerId: e.pointerId, trail: [p] };
  }

  #move(e: PointerEvent): void {
    const p = this.#local(e);
    if (this.#tool === 'polygon') {
      this.#hover = p;
      this.#renderDraft();
      return;
    }
    const press = this.#press;
    if (!press || press.pointerId !== e.pointerId) return;
    if (this.#tool === 'freehand') {
      const last = press.trail.at(-1)!;
      if (Math.hypot(p.x - last.x, p.y - last.y) >= FREEHAND_STEP_PX) press.trail.push(p);
    } else {
      press.trail = [press.start, p];
    }
    this.#renderDraft();
  }

  #up(e: PointerEvent): void {
    const press = this.#press;
    if (!press || press.pointerId !== e.pointerId) return;
    this.#press = null;
    const end = this.#local(e);
    const moved = Math.hypot(end.x - press.start.x, end.y - press.start.y) > CLICK_SLOP_PX;
    const s = press.start;
    this.#renderDraft();
    switch (this.#tool) {
      case 'point': {
        const p = moved ? null : this.#toImage(end);
        if (p) this.hooks.create('point', { type: 'Point', coordinates: p });
        break;
      }
      case 'text': {
        const p = moved ? null : this.#toImage(end);
        if (p) this.hooks.placeText(end, p);
        break;
      }
      case 'line': {
        const line = moved ? this.#toImageAll([s, end]) : null;
        if (line) this.hooks.create('line', { type: 'LineString', coordinates: line });
        break;
      }
      case 'rectangle': {
        // The four screen corners, mapped back: a rotated view gives a rotated rectangle in the image.
        const corners = moved ? this.#toImageAll([s, { x: end.x, y: s.y }, end, { x: s.x, y: end.y }]) : null;
        if (corners) this.hooks.create('rectangle', { type: 'Polygon', coordinates: [[...corners, corners[0]!]] });
        break;
      }
      case 'freehand': {
        const trail = thin(dedupe([...press.trail, end]), MAX_POSITIONS - 1);
        // A closed outline ends where it started: what counts is how far the stroke went.
        const reach = Math.max(...trail.map((p) => Math.hypot(p.x - s.x, p.y - s.y)));
        if (trail.length < 2 || reach <= CLOSE_PX * 2) break;
        const closed = trail.length >= 3 && Math.hypot(end.x - s.x, end.y - s.y) <= CLOSE_PX * 2;
        const positions = this.#toImageAll(closed ? trail.slice(0, -1) : trail);
        if (!positions) break;
        if (closed && positions.length >= 3) this.hooks.create('freehand', { type: 'Polygon', coordinates: [[...positions, positions[0]!]] });
        else this.hooks.create('freehand', { type: 'LineString', coordinates: positions });
        break;
      }
      case 'pan':
      case 'polygon':
        break;
    }
  }

  #renderDraft(): void {
    const colour = this.hooks.draftColour();
    let points: ScreenPoint[] = [];
    if (this.#tool === 'polygon' && this.#polygon.length > 0) points = this.#hover ? [...this.#polygon, this.#hover] : this.#polygon;
    else if (this.#press && this.#tool === 'rectangle') {
      const [s, p] = [this.#press.start, this.#press.trail.at(-1)!];
      points = [s, { x: p.x, y: s.y }, p, { x: s.x, y: p.y }, s];
    } else if (this.#press && (this.#tool === 'line' || this.#tool === 'freehand')) points = this.#press.trail;
    if (points.length < 2) {
      this.#draft.removeAttribute('points');
      return;
    }
    setAttrs(this.#draft, { points: points.map((p) => `${p.x},${p.y}`).join(' '), stroke: colour, 'stroke-width': 2, 'stroke-dasharray': '6 4' });
  }
}

function round(v: number): number {
  return Math.round(v * 100) / 100;
}

/** Drops consecutive repeats (a ring must not have zero-length edges to be useful). */
function dedupe(points: ScreenPoint[]): ScreenPoint[] {
  return points.filter((p, i) => i === 0 || p.x !== points[i - 1]!.x || p.y !== points[i - 1]!.y);
}

/** Keeps at most `max` points, evenly spread, the last one included. */
function thin(points: ScreenPoint[], max: number): ScreenPoint[] {
  if (points.length <= max) return points;
  const step = (points.length - 1) / (max - 1);
  return Array.from({ length: max }, (_, i) => points[Math.round(i * step)]!);
}

/** An HTML text field placed over the viewer for the text tool (positions through element.style). */
export function floatingTextField(host: HTMLElement, at: ScreenPoint, done: (text: string | null) => void): HTMLInputElement {
  const input = h('input', { type: 'text', class: 'annotation-text-input', maxLength: 200, placeholder: 'Text, then Enter', attrs: { 'aria-label': 'Text label' } });
  input.style.left = `${Math.round(at.x)}px`;
  input.style.top = `${Math.round(at.y)}px`;
  let settled = false;
  const finish = (text: string | null) => {
    if (settled) return;
    settled = true;
    input.remove();
    done(text);
  };
  input.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') {
      e.preventDefault();
      finish(input.value.trim() || null);
    } else if (e.key === 'Escape') {
      e.preventDefault();
      finish(null);
    }
  });
  input.addEventListener('blur', () => finish(input.value.trim() || null));
  host.appendChild(input);
  input.focus();
  return input;
}
