// Orders and reports of a case, as they arrived from the hospital's RIS by HL7 (ORM^O01 orders,
// ORU^R01 reports; src/radiology/hl7.ts). They are read from the authorised, audited route
// GET /api/cases/:caseId/radiology/documents when the case opens, when the room says one arrived
// (`documents:changed`), after a reconnect, and on demand. Report text is rendered as text by
// Preact (never as markup).
//
// The pattern of the client's panels: a class with a small imperative API for the page that owns
// it (`element`, `refresh()`, `dispose()`), holding the state, and a Preact component rendering
// that state into `element` (docs/client.md, "UI library").
import { render } from 'preact';
import { describeError, type Api } from '../api';
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

/** What was read last (null before the first answer), and why the latest read failed, if it did. */
interface State {
  documents: PublicRadiologyDocument[] | null;
  error: string | null;
}

function stateText({ documents, error }: State): string {
  if (error) return `Orders and reports could not be read: ${error}`;
  if (documents === null) return '';
  return documents.length ? '' : 'None received from the RIS.';
}

function Documents({ state, onRefresh }: { state: State; onRefresh: () => void }) {
  const documents = state.documents ?? [];
  const text = stateText(state);
  return (
    <>
      <div class="documents-head">
        <h2>
          Orders and reports <span class="documents-count">{documents.length ? `(${documents.length})` : ''}</span>
        </h2>
        <button type="button" class="link small documents-refresh" onClick={onRefresh}>
          Refresh
        </button>
      </div>
      <p class="documents-state" role="status" aria-live="polite" hidden={!text}>
        {text}
      </p>
      <ol class="document-list">
        {documents.map((d) => (
          <li key={d.id} class={`document document-${d.kind}`} data-document-id={d.id} data-kind={d.kind}>
            <div class="document-meta">
              <strong>{KIND_LABEL[d.kind]}</strong>
              {d.status ? <span class="document-status">{STATUS_LABEL[d.status] ?? d.status}</span> : null}
              <time dateTime={d.createdAt}>{when(d.createdAt)}</time>
            </div>
            <p class="document-text">{d.text}</p>
          </li>
        ))}
      </ol>
    </>
  );
}

export class DocumentsPanel {
  readonly element: HTMLElement = document.createElement('section');
  #state: State = { documents: null, error: null };
  #loading: Promise<void> | null = null;
  #disposed = false;

  constructor(
    private readonly api: Api,
    private readonly caseId: string,
  ) {
    this.element.className = 'panel documents-panel';
    this.element.setAttribute('aria-label', 'Orders and reports');
    this.#render();
  }

  /** Reads the documents again; concurrent calls share one request. */
  refresh(): Promise<void> {
    this.#loading ??= this.#load().finally(() => (this.#loading = null));
    return this.#loading;
  }

  dispose(): void {
    this.#disposed = true;
    render(null, this.element);
  }

  async #load(): Promise<void> {
    try {
      const { documents } = await this.api.get<{ documents: PublicRadiologyDocument[] }>(`/api/cases/${this.caseId}/radiology/documents`);
      // The server lists them in arrival order (two in the same millisecond stay in order).
      this.#state = { documents, error: null };
    } catch (err) {
      // A failed refresh keeps what was shown before it, with the reason.
      this.#state = { documents: this.#state.documents, error: describeError(err) };
    }
    if (!this.#disposed) this.#render();
  }

  #render(): void {
    this.element.dataset.count = String(this.#state.documents?.length ?? 0);
    this.element.dataset.loaded = String(this.#state.documents !== null);
    render(<Documents state={this.#state} onRefresh={() => void this.refresh()} />, this.element);
  }
}
