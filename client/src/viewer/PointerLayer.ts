// Other people's laser pointers: a coloured dot with a name per user, drawn over the viewer at an
// image-normalised position (0..1 across the image's width and height), re-placed on every frame
// the view moves. Positions are set through element.style from code, which the CSP allows. The
// layer sits on whichever surface the page shows: the slide viewer or a DICOM stack (whose
// image is the slice's columns and rows).
import { colourFor, h } from '../dom';
import type { PointerUpdate } from '../../../src/protocol/realtime';
import type { AnnotationSurface } from './AnnotationLayer';

/** What the pointers are drawn on. */
export type PointerSurface = Pick<AnnotationSurface, 'materialId' | 'overlayHost' | 'imageToScreen' | 'screenToImage' | 'onRedraw'> & {
  imageSize(): { width: number; height: number } | null;
};

/** A pointer that stops moving fades out: its owner probably looked away. */
const STALE_AFTER_MS = 8000;

interface Dot {
  element: HTMLElement;
  materialId: string;
  x: number;
  y: number;
  timer: number;
}

export class PointerLayer {
  readonly element = h('div', { class: 'pointer-layer', attrs: { 'aria-hidden': 'true' } });
  readonly #dots = new Map<string, Dot>();
  #stopRedraw: () => void;

  constructor(private viewer: PointerSurface) {
    this.#stopRedraw = viewer.onRedraw(() => this.#placeAll());
  }

  get surface(): PointerSurface {
    return this.viewer;
  }

  /** Moves the layer onto `surface` (the slide viewer or a stack). */
  showOn(surface: PointerSurface): void {
    if (surface === this.viewer) return;
    this.#stopRedraw();
    this.viewer = surface;
    surface.overlayHost.append(this.element);
    this.#stopRedraw = surface.onRedraw(() => this.#placeAll());
    this.#placeAll();
  }

  /**
   * Where a pointer event is on the shown image, normalised to 0..1 across its width and height
   * (what the room relays), or null when it is not over an open image.
   */
  positionOf(e: PointerEvent): { materialId: string; x: number; y: number } | null {
    const box = this.viewer.overlayHost.getBoundingClientRect();
    const image = this.viewer.screenToImage(e.clientX - box.left, e.clientY - box.top);
    const size = this.viewer.imageSize();
    const materialId = this.viewer.materialId;
    if (!image || !size || !materialId) return null;
    return { materialId, x: image.x / size.width, y: image.y / size.height };
  }

  show(pointer: PointerUpdate): void {
    if (!pointer.position) {
      this.remove(pointer.userId);
      return;
    }
    let dot = this.#dots.get(pointer.userId);
    if (!dot) {
      const mark = h('span', { class: 'pointer-dot' });
      mark.style.backgroundColor = colourFor(pointer.userId);
      const element = h('div', { class: 'pointer', dataset: { userId: pointer.userId } }, mark, h('span', { class: 'pointer-name' }, pointer.name));
      this.element.appendChild(element);
      dot = { element, materialId: pointer.materialId, x: 0, y: 0, timer: 0 };
      this.#dots.set(pointer.userId, dot);
    }
    dot.materialId = pointer.materialId;
    dot.x = pointer.position.x;
    dot.y = pointer.position.y;
    dot.element.classList.remove('stale');
    window.clearTimeout(dot.timer);
    dot.timer = window.setTimeout(() => dot.element.classList.add('stale'), STALE_AFTER_MS);
    this.#place(dot);
  }

  remove(userId: string): void {
    const dot = this.#dots.get(userId);
    if (!dot) return;
    window.clearTimeout(dot.timer);
    dot.element.remove();
    this.#dots.delete(userId);
  }

  clear(): void {
    for (const userId of [...this.#dots.keys()]) this.remove(userId);
  }

  destroy(): void {
    this.clear();
    this.#stopRedraw();
  }

  #placeAll(): void {
    for (const dot of this.#dots.values()) this.#place(dot);
  }

  #place(dot: Dot): void {
    const size = this.viewer.imageSize();
    const map = this.viewer.imageToScreen();
    if (!size || !map || dot.materialId !== this.viewer.materialId) {
      dot.element.hidden = true;
      return;
    }
    const p = map(dot.x * size.width, dot.y * size.height);
    dot.element.hidden = false;
    dot.element.style.transform = `translate(${p.x.toFixed(1)}px, ${p.y.toFixed(1)}px)`;
  }
}
