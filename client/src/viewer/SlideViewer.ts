// The slide viewer: OpenSeadragon on one material's DeepZoom pyramid, read through the
// authorised endpoints of the same origin (the descriptor by OSD's XHR with credentials, the
// tiles as images, which carry the session cookie because they are same-origin). It reports
// viewport changes, tells user moves from programmatic ones (follow mode), maps image pixels to
// screen positions for the overlays, and mirrors its state in data-* attributes for tests.
import OpenSeadragon from 'openseadragon';
import { h } from '../dom';
import type { PublicMaterial } from '../../../src/protocol/cases';
import type { AnnotationSurface, ImageToScreen } from './AnnotationLayer';

export interface ViewState {
  center: { x: number; y: number };
  zoom: number;
  rotation: number;
}

export type { ImageToScreen };

/**
 * OSD 6 appends an inline <style> (a focus-outline rule for touch devices) unless an element
 * matching `style[data-openseadragon-mobile-css]` exists; style-src 'self' would refuse it and
 * report a violation. An element named "style" outside the HTML namespace satisfies that check
 * without being a stylesheet, and styles.css carries the same rule.
 */
function preventOsdInlineStyle(): void {
  if (document.querySelector('style[data-openseadragon-mobile-css]')) return;
  const marker = document.createElementNS('urn:x-case-collab:csp-marker', 'style');
  marker.setAttribute('data-openseadragon-mobile-css', 'provided-by-styles.css');
  document.head.appendChild(marker);
}

function normaliseDegrees(degrees: number): number {
  const d = degrees % 360;
  return d < 0 ? d + 360 : d;
}

export class SlideViewer implements AnnotationSurface {
  readonly element: HTMLElement;
  readonly osd: OpenSeadragon.Viewer;
  /** Where overlays (annotations, pointers) go: above the OSD canvas, same size. */
  readonly overlayHost: HTMLElement;
  #material: PublicMaterial | null = null;
  #openGeneration = 0;
  #tilesLoaded = 0;
  #frame: number | null = null;
  readonly #changeListeners = new Set<() => void>();
  readonly #userMoveListeners = new Set<() => void>();
  readonly #redrawListeners = new Set<() => void>();
  readonly #empty = h('p', { class: 'viewer-empty' }, 'No image open. Choose a ready material.');
  #destroyed = false;

  constructor() {
    preventOsdInlineStyle();
    const container = h('div', { class: 'osd-container' });
    this.overlayHost = h('div', { class: 'viewer-overlays' });
    this.element = h('div', { class: 'viewer', dataset: { materialId: '', tilesLoaded: '0' } }, container, this.overlayHost, this.#empty);
    this.osd = OpenSeadragon({
      element: container,
      // The built-in buttons load images from prefixUrl; the page has its own toolbar instead.
      showNavigationControl: false,
      // The descriptor is fetched by XHR: send the session cookie. Tiles are same-origin images
      // without a crossOrigin attribute, so the browser sends the cookie with them too.
      ajaxWithCredentials: true,
      crossOriginPolicy: false,
      loadTilesWithAjax: false,
      // A click is for the pointer and the annotation tools; double click still zooms.
      gestureSettingsMouse: { clickToZoom: false, dblClickToZoom: true },
      visibilityRatio: 0.5,
      maxZoomPixelRatio: 2,
      animationTime: 0.5,
      // The 2D canvas drawer: hospital desktops are often virtual machines without a GPU, where
      // WebGL falls back to software rendering (measured here: seconds per interaction).
      drawer: 'canvas',
    });
    // OSD's canvas takes the keyboard (arrows or WASD pan, + and - zoom, 0 fits, R rotates):
    // it is a focus stop, so it needs a name that says so.
    this.osd.canvas.setAttribute('role', 'application');
    this.osd.canvas.setAttribute('aria-label', 'Slide image. Arrow keys pan, plus and minus zoom, 0 fits the image, R rotates.');
    this.osd.addHandler('tile-loaded', () => {
      this.#tilesLoaded++;
      this.element.dataset.tilesLoaded = String(this.#tilesLoaded);
    });
    this.osd.addHandler('viewport-change', () => this.#emit(this.#changeListeners));
    this.osd.addHandler('animation-finish', () => this.#emit(this.#changeListeners));
    this.osd.addHandler('update-viewport', () => this.#scheduleRedraw());
    this.osd.addHandler('resize', () => this.#scheduleRedraw());
    for (const event of ['canvas-drag', 'canvas-scroll', 'canvas-pinch', 'canvas-double-click', 'canvas-key'] as const) {
      this.osd.addHandler(event, () => this.#emit(this.#userMoveListeners));
    }
  }

  get material(): PublicMaterial | null {
    return this.#material;
  }

  get materialId(): string | null {
    return this.#material?.id ?? null;
  }

  /** A slide has no slices. */
  get slice(): null {
    return null;
  }

  showSlice(): void {
    // Nothing to show: a slide is one image.
  }

  /** OSD's drag-to-pan and wheel zoom, off while an annotation tool draws. */
  setNavigationEnabled(enabled: boolean): void {
    this.osd.setMouseNavEnabled(enabled);
  }

  onEmptyClick(listener: () => void): () => void {
    const handler = (e: OpenSeadragon.CanvasClickEvent) => {
      if (e.quick) listener();
    };
    this.osd.addHandler('canvas-click', handler);
    return () => this.osd.removeHandler('canvas-click', handler);
  }

  /** Viewport changed, by anyone (fires often: throttle what it triggers). */
  onChange(listener: () => void): () => void {
    this.#changeListeners.add(listener);
    return () => this.#changeListeners.delete(listener);
  }

  /** The person moved the view themselves (drag, wheel, pinch, keys). */
  onUserMove(listener: () => void): () => void {
    this.#userMoveListeners.add(listener);
    return () => this.#userMoveListeners.delete(listener);
  }

  /** Once per drawn frame in which the view moved or the size changed: re-place overlays. */
  onRedraw(listener: () => void): () => void {
    this.#redrawListeners.add(listener);
    return () => this.#redrawListeners.delete(listener);
  }

  async open(material: PublicMaterial): Promise<void> {
    if (!material.dziUrl) throw new Error('This material is not ready yet.');
    const generation = ++this.#openGeneration;
    this.#material = material;
    this.element.dataset.materialId = material.id;
    this.element.dataset.opened = 'false';
    this.#empty.hidden = true;
    await new Promise<void>((resolve, reject) => {
      const settle = (fn: () => void) => () => {
        this.osd.removeHandler('open', onOpen);
        this.osd.removeHandler('open-failed', onFailed);
        fn();
      };
      const onOpen = settle(resolve);
      const onFailed = settle(() => reject(new Error('The image could not be opened.')));
      this.osd.addHandler('open', onOpen);
      this.osd.addHandler('open-failed', onFailed);
      this.osd.open({ tileSource: material.dziUrl! });
    });
    if (generation !== this.#openGeneration) return;
    this.element.dataset.opened = 'true';
    this.#scheduleRedraw();
  }

  close(): void {
    this.#openGeneration++;
    this.#material = null;
    this.element.dataset.materialId = '';
    this.#empty.hidden = false;
    this.osd.close();
  }

  get isOpen(): boolean {
    return this.#material !== null && this.osd.world.getItemCount() > 0;
  }

  /** The target view (where an animation is heading), in viewport coordinates. */
  view(): ViewState | null {
    if (!this.isOpen) return null;
    const vp = this.osd.viewport;
    const center = vp.getCenter(false);
    return { center: { x: center.x, y: center.y }, zoom: vp.getZoom(false), rotation: normaliseDegrees(vp.getRotation(false)) };
  }

  apply(view: ViewState, immediately = false): void {
    if (!this.isOpen) return;
    const vp = this.osd.viewport;
    if (normaliseDegrees(vp.getRotation(false)) !== normaliseDegrees(view.rotation)) vp.setRotation(view.rotation, immediately);
    vp.zoomTo(view.zoom, undefined, immediately);
    vp.panTo(new OpenSeadragon.Point(view.center.x, view.center.y), immediately);
  }

  zoomBy(factor: number): void {
    if (!this.isOpen) return;
    this.osd.viewport.zoomBy(factor);
    this.osd.viewport.applyConstraints();
    this.#emit(this.#userMoveListeners);
  }

  home(): void {
    if (!this.isOpen) return;
    this.osd.viewport.goHome();
    this.#emit(this.#userMoveListeners);
  }

  rotateBy(degrees: number): void {
    if (!this.isOpen) return;
    this.osd.viewport.setRotation(normaliseDegrees(this.osd.viewport.getRotation(false) + degrees));
    this.#emit(this.#userMoveListeners);
  }

  /** Full-resolution image size in pixels, once open. */
  imageSize(): { width: number; height: number } | null {
    const item = this.isOpen ? this.osd.world.getItemAt(0) : null;
    if (!item) return null;
    const size = item.getContentSize();
    return { width: size.x, height: size.y };
  }

  /** A mapping from image pixels to element pixels for the current frame (affine, rotation included). */
  imageToScreen(): ImageToScreen | null {
    const item = this.isOpen ? this.osd.world.getItemAt(0) : null;
    if (!item) return null;
    const map = (x: number, y: number) => item.imageToViewerElementCoordinates(new OpenSeadragon.Point(x, y));
    // Three points fix the affine map; each shape then costs two multiplications per vertex.
    const scale = 1000;
    const o = map(0, 0);
    const ex = map(scale, 0);
    const ey = map(0, scale);
    const ax = (ex.x - o.x) / scale;
    const ay = (ex.y - o.y) / scale;
    const bx = (ey.x - o.x) / scale;
    const by = (ey.y - o.y) / scale;
    return (x, y) => ({ x: o.x + x * ax + y * bx, y: o.y + x * ay + y * by });
  }

  /** Element pixel → image pixel, or null when nothing is open. */
  screenToImage(x: number, y: number): { x: number; y: number } | null {
    const item = this.isOpen ? this.osd.world.getItemAt(0) : null;
    if (!item) return null;
    const p = item.viewerElementToImageCoordinates(new OpenSeadragon.Point(x, y));
    return { x: p.x, y: p.y };
  }

  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    if (this.#frame !== null) cancelAnimationFrame(this.#frame);
    this.#changeListeners.clear();
    this.#userMoveListeners.clear();
    this.#redrawListeners.clear();
    this.osd.destroy();
  }

  #emit(listeners: Set<() => void>): void {
    for (const listener of listeners) listener();
  }

  #scheduleRedraw(): void {
    if (this.#frame !== null || this.#destroyed) return;
    this.#frame = requestAnimationFrame(() => {
      this.#frame = null;
      if (this.isOpen) {
        const vp = this.osd.viewport;
        const center = vp.getCenter(true);
        this.element.dataset.centerX = center.x.toFixed(5);
        this.element.dataset.centerY = center.y.toFixed(5);
        this.element.dataset.zoom = vp.getZoom(true).toFixed(5);
      }
      this.#emit(this.#redrawListeners);
    });
  }
}
