// DOM helpers. Elements are built from properties and text nodes only, never from HTML strings:
// text from the server cannot turn into markup, and no inline style attribute is ever written
// (the CSP refuses them; positions and colours are set through element.style from code).
export type Child = Node | string | number | null | undefined | false;

type Handlers = { [K in keyof HTMLElementEventMap]?: (event: HTMLElementEventMap[K]) => void };

export interface Props {
  class?: string;
  /** Event listeners by event name. */
  on?: Handlers;
  dataset?: Record<string, string>;
  /** Attributes without a property (aria-*, role, for...). */
  attrs?: Record<string, string>;
  /** Any other key is set as a property of the element (type, value, disabled, hidden...). */
  [property: string]: unknown;
}

export function h<K extends keyof HTMLElementTagNameMap>(tag: K, props: Props = {}, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined) continue;
    if (key === 'class') el.className = value as string;
    else if (key === 'on') {
      for (const [name, fn] of Object.entries(value as Handlers)) el.addEventListener(name, fn as EventListener);
    } else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key === 'attrs') {
      for (const [name, v] of Object.entries(value as Record<string, string>)) el.setAttribute(name, v);
    } else (el as unknown as Record<string, unknown>)[key] = value;
  }
  append(el, ...children);
  return el;
}

const SVG_NS = 'http://www.w3.org/2000/svg';

/** An SVG element with presentation attributes (fill, stroke...: not inline styles for the CSP). */
export function svg<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string | number> = {}): SVGElementTagNameMap[K] {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  return el;
}

export function setAttrs(el: Element, attrs: Record<string, string | number>): void {
  for (const [name, value] of Object.entries(attrs)) el.setAttribute(name, String(value));
}

export function append(parent: Node, ...children: Child[]): void {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    parent.appendChild(typeof child === 'string' || typeof child === 'number' ? document.createTextNode(String(child)) : child);
  }
}

export function replaceChildren(parent: Element, ...children: Child[]): void {
  parent.replaceChildren();
  append(parent, ...children);
}

/** A stable colour per user id (pointer dots, presence), readable on light and dark slides. */
export function colourFor(id: string): string {
  let hash = 0;
  for (let i = 0; i < id.length; i++) hash = (hash * 31 + id.charCodeAt(i)) | 0;
  return `hsl(${Math.abs(hash) % 360} 80% 45%)`;
}

/** A random id for idempotent writes (8..64 characters of A-Z a-z 0-9 _ -). */
export function randomId(): string {
  return crypto.randomUUID().replaceAll('-', '');
}

export function formatTime(iso: string): string {
  return new Date(iso).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

export function formatDateTime(iso: string): string {
  return new Date(iso).toLocaleString([], { dateStyle: 'medium', timeStyle: 'short' });
}

/** Calls `fn` at most every `ms`, always ending with the latest arguments (trailing call). */
export function throttle<A extends unknown[]>(fn: (...args: A) => void, ms: number): ((...args: A) => void) & { cancel(): void } {
  let last = 0;
  let timer: number | null = null;
  let pending: A | null = null;
  const run = () => {
    timer = null;
    last = performance.now();
    const args = pending!;
    pending = null;
    fn(...args);
  };
  const throttled = (...args: A) => {
    pending = args;
    if (timer !== null) return;
    const wait = Math.max(0, ms - (performance.now() - last));
    if (wait === 0) run();
    else timer = window.setTimeout(run, wait);
  };
  throttled.cancel = () => {
    if (timer !== null) window.clearTimeout(timer);
    timer = null;
    pending = null;
  };
  return throttled;
}
