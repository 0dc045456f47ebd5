// Orders and reports of a case, as they arrived from the hospital's RIS by HL7 (ORM^O01 orders,
// ORU^R01 reports; src/radiology/hl7.ts). They are read from the authorised, audited route
// GET /api/cases/:caseId/radiology/documents when the case opens, after a reconnect, and on
// demand. A case without any shows nothing but its heading, collapsed, so slide cases stay
// uncluttered. Report text is shown as text (textContent), never as markup.
import { describeError, type Api } from '../api';
import { h, replaceChildren } from '../dom';
import type { PublicRadiologyDocument } from '../../../src/protocol/radiology';
import './documents.css';

const KIND_LABEL: Record<PublicRadiologyDocument['kind'], string> = { order: 'Order', report: 'Report' };

/** HL7 result status (OBR-25) and order control (ORC-1) codes that people read in words. */
const STATUS_LABEL: Record<string, string> = {
  F: 'final',
  P: 'preliminary',
  C: 'corrected',
  X: 'cancelled',
  I: 'in progress',
  A: 'some results available',
  R: 'results stored, not verified',
  S: 'partial',
  NW: 'new order',
  CA: 'cancel request',
  XO: 'change order',
  SC: 'status changed',
};

function when(iso: string): string {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

export class DocumentsPanel {
  readonly element: HTMLElement;
  readonly #list = h('ol', { class: 'document-list' });
  readonly #state = h('p', { class: 'documents-state', attrs: { role: 'status', 'aria-live': 'polite' } });
  readonly #count = h('span', { class: 'documents-count' });
  #loading: Promise<void> | null = null;
  #disposed = false;

  constructor(
    private readonly api: Api,
    private readonly caseId: string,
  ) {
    const refresh = h('button', { type: 'button', class: 'link small documents-refresh', on: { click: () => void this.refresh() } }, 'Refresh');
    this.element = h(
      'section',
      { class: 'panel documents-panel', attrs: { 'aria-label': 'Orders and reports' }, dataset: { count: '0', loaded: 'false' } },
      h('div', { class: 'documents-head' }, h('h2', {}, 'Orders and reports ', this.#count), refresh),
      this.#state,
      this.#list,
    );
  }

  /** Reads the documents again; concurrent calls share one request. */
  refresh(): Promise<void> {
    this.#loading ??= this.#load().finally(() => (this.#loading = null));
    return this.#loading;
  }

  dispose(): void {
    this.#disposed = true;
  }

  async #load(): Promise<void> {
    let documents: PublicRadiologyDocument[];
    try {
      ({ documents } = await this.api.get<{ documents: PublicRadiologyDocument[] }>(`/api/cases/${this.caseId}/radiology/documents`));
    } catch (err) {
      if (this.#disposed) return;
      this.#state.textContent = `Orders and reports could not be read: ${describeError(err)}`;
      this.#state.hidden = false;
      return;
    }
    if (this.#disposed) return;
    const sorted = [...documents].sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));
    replaceChildren(this.#list, ...sorted.map((d) => this.#item(d)));
    this.#count.textContent = sorted.length ? `(${sorted.length})` : '';
    this.#state.textContent = sorted.length ? '' : 'None received from the RIS.';
    this.#state.hidden = sorted.length > 0;
    this.element.dataset.count = String(sorted.length);
    this.element.dataset.loaded = 'true';
  }

  #item(d: PublicRadiologyDocument): HTMLElement {
    const status = d.status ? (STATUS_LABEL[d.status] ?? d.status) : null;
    return h(
      'li',
      { class: `document document-${d.kind}`, dataset: { documentId: d.id, kind: d.kind } },
      h('div', { class: 'document-meta' }, h('strong', {}, KIND_LABEL[d.kind]), status ? h('span', { class: 'document-status' }, status) : null, h('time', { attrs: { datetime: d.createdAt } }, when(d.createdAt))),
      h('p', { class: 'document-text' }, d.text),
    );
  }
}
