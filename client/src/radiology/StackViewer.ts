// The stack viewer: a DICOM series (material of type application/dicom) shown slice by slice,
// with slice navigation (slider, mouse wheel, arrow keys) and window/level (centre and width
// fields, presets, right-button drag). Slices are rendered by the server as PNG for the chosen
// window (src/radiology/routes.ts) and loaded as same-origin images (no-store, never cached).
// It reports changes (the presenter sends them) and tells user moves from applied ones (follow
// mode), and mirrors its state in data-* attributes for tests. It is an AnnotationSurface: image
// pixels are the slice's columns and rows, mapped to where the picture actually sits inside the
// <img> box (object-fit: contain letterboxes it), so annotations are drawn slice by slice.
import { h, replaceChildren } from '../dom';
import './stack.css';
import type { PublicMaterial } from '../../../src/protocol/cases';
import type { PublicStack } from '../../../src/protocol/radiology';
import type { AnnotationSurface, ImageToScreen } from '../viewer/AnnotationLayer';

export const DICOM_STACK_MIME = 'application/dicom';

export interface StackView {
  slice: number;
  window: { center: number; width: number } | null;
}

export function isStack(material: Pick<PublicMaterial, 'mime'>): boolean {
  return material.mime === DICOM_STACK_MIME;
}

/** A press that moves less than this is a click. */
const CLICK_SLOP_PX = 4;

const PRESETS: { label: string; center: number; width: number }[] = [
  { label: 'Soft tissue', center: 40, width: 400 },
  { label: 'Lung', center: -600, width: 1500 },
  { label: 'Bone', center: 400, width: 1800 },
  { label: 'Brain', center: 40, width: 80 },
];

export class StackViewer implements AnnotationSurface {
  readonly element: HTMLElement;
  /** Over the slice image, the size of its frame: annotations draw here. */
  readonly overlayHost = h('div', { class: 'viewer-overlays stack-overlays' });
  readonly #frame: HTMLElement;
  #stack: PublicStack | null = null;
  #view: StackView = { slice: 0, window: null };
  #materialId: string | null = null;
  readonly #image = h('img', { class: 'stack-image', alt: 'DICOM slice', draggable: false });
  readonly #slider = h('input', { type: 'range', min: '0', max: '0', value: '0', class: 'stack-slider', attrs: { 'aria-label': 'Slice' } });
  readonly #sliceLabel = h('span', { class: 'stack-slice-label' });
  readonly #center = h('input', { type: 'number', step: '1', class: 'stack-wc', attrs: { 'aria-label': 'Window centre' } });
  readonly #width = h('input', { type: 'number', step: '1', min: '1', class: 'stack-ww', attrs: { 'aria-label': 'Window width' } });
  readonly #changeListeners = new Set<() => void>();
  readonly #userMoveListeners = new Set<() => void>();
  readonly #redrawListeners = new Set<() => void>();
  readonly #clickListeners = new Set<() => void>();
  #drag: { x: number; y: number; center: number; width: number } | null = null;
  /** A primary-button press on the image that may become a click. */
  #press: { pointerId: number; x: number; y: number } | null = null;
  /** Off while an annotation tool draws: the right-button window drag would fight the tool. */
  #navigation = true;
  #redrawFrame: number | null = null;
  readonly #resize: ResizeObserver;

  constructor(private readonly getJson: <T>(url: string) => Promise<T>) {
    const presets = PRESETS.map((p) => h('button', { type: 'button', class: 'stack-preset', on: { click: () => this.#userSet({ window: { center: p.center, width: p.width } }) } }, p.label));
    const reset = h('button', { type: 'button', class: 'stack-preset', on: { click: () => this.#userSet({ window: this.#stack?.window ?? null }) } }, 'Header');
    this.element = h(
      'div',
      { class: 'stack-viewer', hidden: true, tabIndex: 0, attrs: { role: 'group', 'aria-label': 'DICOM stack viewer' } },
      (this.#frame = h('div', { class: 'stack-frame' }, this.#image, this.overlayHost)),
      h('div', { class: 'stack-controls' }, this.#slider, this.#sliceLabel),
      h('div', { class: 'stack-controls' }, h('label', {}, 'C ', this.#center), h('label', {}, 'W ', this.#width), ...presets, reset),
    );
    this.#slider.addEventListener('input', () => this.#userSet({ slice: Number(this.#slider.value) }));
    const onWindowInput = () => {
      const center = Number(this.#center.value);
      const width = Number(this.#width.value);
      if (Number.isFinite(center) && Number.isFinite(width) && width >= 1) this.#userSet({ window: { center, width } });
    };
    this.#center.addEventListener('change', onWindowInput);
    this.#width.addEventListener('change', onWindowInput);
    this.element.addEventListener(
      'wheel',
      (e) => {
        if (!this.#stack) return;
        e.preventDefault();
        this.#userSet({ slice: this.#view.slice + (e.deltaY > 0 ? 1 : -1) });
      },
      { passive: false },
    );
    this.element.addEventListener('keydown', (e) => {
      if (!this.#stack || e.target instanceof HTMLInputElement) return;
      if (e.key === 'ArrowDown' || e.key === 'ArrowRight' || e.key === 'PageDown') this.#userSet({ slice: this.#view.slice + 1 });
      else if (e.key === 'ArrowUp' || e.key === 'ArrowLeft' || e.key === 'PageUp') this.#userSet({ slice: this.#view.slice - 1 });
      else return;
      e.preventDefault();
    });
    // Right-button drag: horizontal = width, vertical = centre (the usual radiology gesture).
    // Listened to on the frame, so that it also starts over an annotation (events bubble up
    // from the overlay); a left press that does not move is a click on the image.
    const frame = this.#frame;
    frame.addEventListener('contextmenu', (e) => e.preventDefault());
    frame.addEventListener('pointerdown', (e) => {
      if (e.button === 0) {
        this.#press = { pointerId: e.pointerId, x: e.clientX, y: e.clientY };
        return;
      }
      if (e.button !== 2 || !this.#navigation || !this.#stack) return;
      const w = this.#effectiveWindow();
      this.#drag = { x: e.clientX, y: e.clientY, center: w.center, width: w.width };
      frame.setPointerCapture(e.pointerId);
    });
    frame.addEventListener('pointermove', (e) => {
      if (!this.#drag) return;
      const width = Math.max(1, Math.round(this.#drag.width + (e.clientX - this.#drag.x) * 4));
      const center = Math.round(this.#drag.center + (e.clientY - this.#drag.y) * 2);
      this.#userSet({ window: { center, width } });
    });
    frame.addEventListener('pointerup', (e) => {
      this.#drag = null;
      const press = this.#press;
      this.#press = null;
      if (press && press.pointerId === e.pointerId && Math.hypot(e.clientX - press.x, e.clientY - press.y) <= CLICK_SLOP_PX) {
        for (const l of this.#clickListeners) l();
      }
    });
    frame.addEventListener('pointercancel', () => {
      this.#drag = null;
      this.#press = null;
    });
    // The picture's place in the frame changes with the frame's size and the image's.
    this.#resize = new ResizeObserver(() => this.#scheduleRedraw());
    this.#resize.observe(frame);
    // A src replaced before its image arrived fires neither load nor error for the old one:
    // "loaded" is the current request's state (img.complete), updated when it settles.
    this.#image.addEventListener('load', () => {
      this.#mirror();
      this.#scheduleRedraw();
    });
    this.#image.addEventListener('error', () => {
      this.#mirror();
    });
  }

  get materialId(): string | null {
    return this.#materialId;
  }

  get isOpen(): boolean {
    return this.#stack !== null;
  }

  /** The slice shown, or null when no stack is open. */
  get slice(): number | null {
    return this.#stack ? this.#view.slice : null;
  }

  /** Goes to a slice as the user's own move (follow mode stops, a presenter sends it). */
  showSlice(slice: number): void {
    this.#userSet({ slice });
  }

  setNavigationEnabled(enabled: boolean): void {
    this.#navigation = enabled;
    if (!enabled) this.#drag = null;
    this.element.dataset.navigation = String(enabled);
  }

  onRedraw(listener: () => void): () => void {
    this.#redrawListeners.add(listener);
    return () => this.#redrawListeners.delete(listener);
  }

  onEmptyClick(listener: () => void): () => void {
    this.#clickListeners.add(listener);
    return () => this.#clickListeners.delete(listener);
  }

  /**
   * Where the slice's pixels are on screen, relative to the overlay host: the <img> box, less
   * the letterbox bands of object-fit: contain (the picture is centred at its own aspect ratio).
   */
  #picture(): { left: number; top: number; width: number; height: number; columns: number; rows: number } | null {
    const stack = this.#stack;
    if (!stack || this.element.hidden) return null;
    const box = this.#image.getBoundingClientRect();
    const host = this.overlayHost.getBoundingClientRect();
    if (box.width === 0 || box.height === 0) return null;
    // Before the first slice has loaded the header's size stands in for the PNG's.
    const naturalWidth = this.#image.naturalWidth || stack.columns;
    const naturalHeight = this.#image.naturalHeight || stack.rows;
    const scale = Math.min(box.width / naturalWidth, box.height / naturalHeight);
    const width = naturalWidth * scale;
    const height = naturalHeight * scale;
    return { left: box.left - host.left + (box.width - width) / 2, top: box.top - host.top + (box.height - height) / 2, width, height, columns: stack.columns, rows: stack.rows };
  }

  /** The slice's size in image pixels (columns, rows), or null when nothing is open. */
  imageSize(): { width: number; height: number } | null {
    return this.#stack ? { width: this.#stack.columns, height: this.#stack.rows } : null;
  }

  imageToScreen(): ImageToScreen | null {
    const p = this.#picture();
    if (!p) return null;
    const sx = p.width / p.columns;
    const sy = p.height / p.rows;
    return (x, y) => ({ x: p.left + x * sx, y: p.top + y * sy });
  }

  screenToImage(x: number, y: number): { x: number; y: number } | null {
    const p = this.#picture();
    if (!p) return null;
    return { x: ((x - p.left) * p.columns) / p.width, y: ((y - p.top) * p.rows) / p.height };
  }

  destroy(): void {
    this.#resize.disconnect();
    if (this.#redrawFrame !== null) cancelAnimationFrame(this.#redrawFrame);
    this.#redrawFrame = null;
    this.#changeListeners.clear();
    this.#userMoveListeners.clear();
    this.#redrawListeners.clear();
    this.#clickListeners.clear();
  }

  onChange(listener: () => void): () => void {
    this.#changeListeners.add(listener);
    return () => this.#changeListeners.delete(listener);
  }

  /** Changes made by this user (not by `apply`): follow mode stops on them. */
  onUserMove(listener: () => void): () => void {
    this.#userMoveListeners.add(listener);
    return () => this.#userMoveListeners.delete(listener);
  }

  async open(material: PublicMaterial): Promise<void> {
    this.#materialId = material.id;
    let stack: PublicStack;
    try {
      ({ stack } = await this.getJson<{ stack: PublicStack }>(`/api/cases/${material.caseId}/materials/${material.id}/stack`));
    } catch (err) {
      // Not the previous stack's slices under this material's id (annotations would go to it).
      if (this.#materialId === material.id) this.close();
      throw err;
    }
    if (this.#materialId !== material.id) return;
    this.#stack = stack;
    this.#view = { slice: Math.floor((stack.slices.length - 1) / 2), window: stack.window };
    this.#slider.max = String(Math.max(0, stack.slices.length - 1));
    this.element.hidden = false;
    this.#render();
  }

  close(): void {
    this.#stack = null;
    this.#materialId = null;
    this.element.hidden = true;
    this.#image.removeAttribute('src');
    replaceChildren(this.#sliceLabel);
    this.#scheduleRedraw();
  }

  view(): StackView | null {
    return this.#stack ? { slice: this.#view.slice, window: this.#view.window } : null;
  }

  /** Shows what the presenter shows (no user-move event). */
  apply(view: StackView): void {
    if (!this.#stack) return;
    this.#view = { slice: this.#clamp(view.slice), window: view.window };
    this.#render();
  }

  #clamp(slice: number): number {
    const n = this.#stack?.slices.length ?? 1;
    return Math.min(n - 1, Math.max(0, Math.round(slice)));
  }

  #effectiveWindow(): { center: number; width: number } {
    return this.#view.window ?? this.#stack?.window ?? { center: 40, width: 400 };
  }

  #userSet(change: Partial<StackView>): void {
    if (!this.#stack) return;
    const next: StackView = { slice: change.slice !== undefined ? this.#clamp(change.slice) : this.#view.slice, window: change.window !== undefined ? change.window : this.#view.window };
    if (next.slice === this.#view.slice && JSON.stringify(next.window) === JSON.stringify(this.#view.window)) return;
    this.#view = next;
    this.#render();
    for (const l of this.#userMoveListeners) l();
    for (const l of this.#changeListeners) l();
  }

  #render(): void {
    const stack = this.#stack;
    if (!stack) return;
    const { slice, window } = this.#view;
    const query = window ? `?wc=${encodeURIComponent(String(window.center))}&ww=${encodeURIComponent(String(window.width))}` : '';
    const src = `${stack.sliceUrl.replace('{index}', String(slice))}${query}`;
    if (this.#image.getAttribute('src') !== src) this.#image.src = src;
    this.#slider.value = String(slice);
    const info = stack.slices[slice];
    replaceChildren(this.#sliceLabel, `Slice ${slice + 1} / ${stack.slices.length}${info?.slicePosition !== null && info?.slicePosition !== undefined ? ` · ${info.slicePosition.toFixed(1)} mm` : ''}`);
    const w = this.#effectiveWindow();
    if (document.activeElement !== this.#center) this.#center.value = String(w.center);
    if (document.activeElement !== this.#width) this.#width.value = String(w.width);
    this.#mirror();
    // The annotations of the new slice (the picture's place is unchanged until the image loads).
    this.#scheduleRedraw();
  }

  #scheduleRedraw(): void {
    if (this.#redrawFrame !== null) return;
    this.#redrawFrame = requestAnimationFrame(() => {
      this.#redrawFrame = null;
      for (const l of this.#redrawListeners) l();
    });
  }

  #mirror(): void {
    const w = this.#effectiveWindow();
    this.element.dataset.materialId = this.#materialId ?? '';
    this.element.dataset.slice = String(this.#view.slice);
    this.element.dataset.windowCenter = String(w.center);
    this.element.dataset.windowWidth = String(w.width);
    this.element.dataset.loaded = String(this.#image.complete && this.#image.naturalWidth > 0);
  }
}
