// Annotations of the open material as an SVG overlay: geometry is stored in image pixels and
// mapped to screen pixels on every frame the view moves (rotation included). With a drawing tool
// chosen, the overlay takes the pointer: a click makes a point, a drag a rectangle; the shape is
// handed to `create` in image pixels. Colours are SVG presentation attributes, not inline styles.
import { setAttrs, svg } from '../dom';
import type { AnnotationGeometry, AnnotationKind, PublicAnnotation } from '../../../src/protocol/annotations';
import type { ImageToScreen, SlideViewer } from './SlideViewer';

export type Tool = 'pan' | 'point' | 'rectangle';

/** A press that moves less than this is a click. */
const CLICK_SLOP_PX = 4;

export class AnnotationLayer {
  readonly element: SVGSVGElement = svg('svg', { class: 'annotation-layer', role: 'img', 'aria-label': 'Annotations' });
  readonly #annotations = new Map<string, PublicAnnotation>();
  readonly #draft = svg('polygon', { class: 'annotation-draft', fill: 'none' });
  readonly #stopRedraw: () => void;
  #tool: Tool = 'pan';
  #selected: string | null = null;
  #press: { x: number; y: number; id: number } | null = null;

  constructor(
    private readonly viewer: SlideViewer,
    private readonly create: (kind: AnnotationKind, geometry: AnnotationGeometry) => void,
    private readonly select: (id: string | null) => void,
    private readonly draftColour: () => string,
  ) {
    this.#stopRedraw = viewer.onRedraw(() => this.render());
    this.element.addEventListener('pointerdown', (e) => this.#down(e));
    this.element.addEventListener('pointermove', (e) => this.#move(e));
    this.element.addEventListener('pointerup', (e) => this.#up(e));
    this.element.addEventListener('pointercancel', () => this.#cancel());
  }

  get tool(): Tool {
    return this.#tool;
  }

  setTool(tool: Tool): void {
    this.#tool = tool;
    this.#cancel();
    // While drawing, the overlay takes the pointer and OSD does not pan underneath.
    this.element.classList.toggle('drawing', tool !== 'pan');
    this.viewer.osd.setMouseNavEnabled(tool === 'pan');
  }

  /** Replaces every annotation (a first join). */
  setAll(annotations: PublicAnnotation[]): void {
    this.#annotations.clear();
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
    if (annotation.deleted && this.#selected === annotation.id) this.#selected = null;
    this.render();
  }

  get(id: string): PublicAnnotation | undefined {
    return this.#annotations.get(id);
  }

  /** The open material's annotations, oldest first. */
  forMaterial(materialId: string | null): PublicAnnotation[] {
    return [...this.#annotations.values()].filter((a) => a.materialId === materialId).sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  }

  setSelected(id: string | null): void {
    this.#selected = id;
    this.render();
  }

  render(): void {
    const map = this.viewer.imageToScreen();
    const shapes: SVGElement[] = [];
    if (map) {
      for (const a of this.forMaterial(this.viewer.materialId)) shapes.push(this.#shape(a, map));
    }
    this.element.replaceChildren(...shapes, this.#draft);
  }

  destroy(): void {
    this.#stopRedraw();
    this.element.remove();
  }

  #shape(a: PublicAnnotation, map: ImageToScreen): SVGGElement {
    const colour = a.properties.color;
    const selected = a.id === this.#selected;
    const group = svg('g', { class: `annotation${selected ? ' selected' : ''}`, 'data-annotation-id': a.id });
    const stroke = { stroke: colour, 'stroke-width': selected ? 3 : 2 };
    const g = a.geometry;
    let anchor: { x: number; y: number };
    if (g.type === 'Point') {
      anchor = map(g.coordinates[0], g.coordinates[1]);
      group.append(svg('circle', { cx: anchor.x, cy: anchor.y, r: selected ? 7 : 6, fill: colour, 'fill-opacity': 0.6, ...stroke }));
    } else if (g.type === 'LineString') {
      const points = g.coordinates.map(([x, y]) => map(x, y));
      anchor = points[0]!;
      group.append(svg('polyline', { points: points.map((p) => `${p.x},${p.y}`).join(' '), fill: 'none', ...stroke }));
    } else {
      const rings = g.coordinates.map((ring) => ring.map(([x, y]) => map(x, y)));
      anchor = rings[0]!.reduce((top, p) => (p.y < top.y ? p : top), rings[0]![0]!);
      const d = rings.map((ring) => `M${ring.map((p) => `${p.x},${p.y}`).join('L')}Z`).join(' ');
      group.append(svg('path', { d, fill: colour, 'fill-opacity': 0.12, 'fill-rule': 'evenodd', ...stroke }));
    }
    if (a.properties.label) {
      const text = svg('text', { x: anchor.x + 8, y: anchor.y - 8, class: 'annotation-label', fill: colour });
      text.textContent = a.properties.label;
      group.append(text);
    }
    group.addEventListener('click', (e) => {
      if (this.#tool !== 'pan') return;
      e.stopPropagation();
      this.select(a.id);
    });
    return group;
  }

  #local(e: PointerEvent): { x: number; y: number } {
    const box = this.element.getBoundingClientRect();
    return { x: e.clientX - box.left, y: e.clientY - box.top };
  }

  #down(e: PointerEvent): void {
    if (this.#tool === 'pan' || e.button !== 0) return;
    e.preventDefault();
    this.element.setPointerCapture(e.pointerId);
    this.#press = { ...this.#local(e), id: e.pointerId };
  }

  #move(e: PointerEvent): void {
    if (!this.#press || this.#tool !== 'rectangle') return;
    const p = this.#local(e);
    const s = this.#press;
    setAttrs(this.#draft, { points: `${s.x},${s.y} ${p.x},${s.y} ${p.x},${p.y} ${s.x},${p.y}`, stroke: this.draftColour(), 'stroke-width': 2, 'stroke-dasharray': '6 4' });
  }

  #up(e: PointerEvent): void {
    const press = this.#press;
    this.#cancel();
    if (!press || press.id !== e.pointerId) return;
    const end = this.#local(e);
    const moved = Math.hypot(end.x - press.x, end.y - press.y) > CLICK_SLOP_PX;
    const toImage = (x: number, y: number): [number, number] | null => {
      const p = this.viewer.screenToImage(x, y);
      return p ? [Math.round(p.x * 100) / 100, Math.round(p.y * 100) / 100] : null;
    };
    if (this.#tool === 'point' && !moved) {
      const p = toImage(end.x, end.y);
      if (p) this.create('point', { type: 'Point', coordinates: p });
    } else if (this.#tool === 'rectangle' && moved) {
      // The four screen corners, mapped back: a rotated view gives a rotated rectangle in the image.
      const corners = [toImage(press.x, press.y), toImage(end.x, press.y), toImage(end.x, end.y), toImage(press.x, end.y)];
      if (corners.every((c) => c !== null)) {
        const ring = corners as [number, number][];
        this.create('rectangle', { type: 'Polygon', coordinates: [[...ring, ring[0]!]] });
      }
    }
  }

  #cancel(): void {
    this.#press = null;
    this.#draft.removeAttribute('points');
  }
}
