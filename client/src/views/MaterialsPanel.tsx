// The case's materials: each with its conversion status and progress, the one open in the viewer
// marked, and uploads with a progress bar of the bytes actually sent (XHR upload events), then
// the server's conversion progress until the pyramid is ready.
//
// The class keeps the case page's imperative API (get, upsert, setActive...) and the state; a
// Preact component renders that state into `element` (docs/client.md, "UI library").
import { render } from 'preact';
import { useRef } from 'preact/hooks';
import { looksLikeDicom, uploadDicom } from '../radiology/dicomUpload';
import { describeError, type Api } from '../api';
import { MATERIAL_STATUS_LABEL } from '../labels';
import type { PublicMaterial } from '../../../src/protocol/cases';

function megabytes(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(bytes < 10 * 1024 * 1024 ? 1 : 0)} MB`;
}

/** The label stands in for the hidden file input: Enter and Space open the picker, as on a button. */
function openPicker(e: KeyboardEvent, input: HTMLInputElement | null): void {
  if (e.key !== 'Enter' && e.key !== ' ') return;
  e.preventDefault();
  input?.click();
}

/** One file on its way up: bytes sent of total, or why it failed (then it waits to be dismissed). */
interface Upload {
  key: number;
  name: string;
  /** Bytes sent as last reported; null before the first progress event. */
  sent: number | null;
  total: number;
  error: string | null;
  abort: AbortController;
}

/** The label acts as a button (Preact's types allow no role on a label, the browser does). */
const LABEL_AS_BUTTON: Record<string, string> = { role: 'button' };

interface Props {
  materials: PublicMaterial[];
  active: string | null;
  uploads: Upload[];
  canUpload: boolean;
  onFiles: (files: File[]) => void;
  onOpen: (material: PublicMaterial) => void;
  onDismiss: (upload: Upload) => void;
}

function Materials({ materials, active, uploads, canUpload, onFiles, onOpen, onDismiss }: Props) {
  const input = useRef<HTMLInputElement>(null);
  return (
    <>
      <h2>Materials</h2>
      {canUpload ? (
        <div class="upload">
          <input
            ref={input}
            type="file"
            accept="image/jpeg,image/png,image/tiff,.svs,.ndpi,.tif,.tiff,.dcm,.zip,application/dicom"
            multiple
            class="visually-hidden"
            id="material-file"
            onChange={(e) => {
              const files = [...(e.currentTarget.files ?? [])];
              e.currentTarget.value = '';
              onFiles(files);
            }}
          />
          <label htmlFor="material-file" class="button" {...LABEL_AS_BUTTON} tabIndex={0} onKeyDown={(e) => openPicker(e, input.current)}>
            Upload image
          </label>
        </div>
      ) : null}
      <ul class="upload-list">
        {uploads.map((u) => (
          <li key={u.key} class={`upload-item${u.error === null ? '' : ' failed'}`} data-file={u.name}>
            <span class="material-name">{u.name}</span>
            {u.error === null ? (
              <>
                <progress max={u.total || 1} value={u.sent ?? 0} aria-label={`Uploading ${u.name}`} />
                <span class="upload-text">{`${u.sent === null ? '0' : megabytes(u.sent)} of ${megabytes(u.total)}`}</span>
                <button type="button" class="small" onClick={() => u.abort.abort()}>
                  Cancel
                </button>
              </>
            ) : (
              <>
                <span class="upload-text">{u.error}</span>
                <button type="button" class="small" onClick={() => onDismiss(u)}>
                  Dismiss
                </button>
              </>
            )}
          </li>
        ))}
      </ul>
      <ul class="material-list">
        {materials.map((m) => (
          <li key={m.id} class={`material${m.id === active ? ' active' : ''}`} data-material-id={m.id} data-status={m.status}>
            {m.status === 'ready' ? (
              <button type="button" class="link material-open" onClick={() => onOpen(m)}>
                {m.name}
              </button>
            ) : (
              <span class="material-name">{m.name}</span>
            )}
            {m.status === 'converting' || m.status === 'queued' ? (
              <span class="material-progress">
                <progress max={100} value={m.progress} aria-label={`Converting ${m.name}`} />
                {`${MATERIAL_STATUS_LABEL[m.status]} ${m.progress}%`}
              </span>
            ) : (
              <span class={`material-status status-${m.status}`}>
                {m.status === 'failed' ? `Failed: ${m.error ?? 'the image could not be read'}` : m.width === null ? 'DICOM series' : `${m.width} × ${m.height}`}
              </span>
            )}
          </li>
        ))}
      </ul>
    </>
  );
}

export class MaterialsPanel {
  readonly element: HTMLElement = document.createElement('section');
  readonly #materials = new Map<string, PublicMaterial>();
  readonly #aborts = new Set<AbortController>();
  #uploads: Upload[] = [];
  #uploadCount = 0;
  #active: string | null = null;
  #disposed = false;

  constructor(
    private readonly api: Api,
    private readonly caseId: string,
    private readonly canUpload: boolean,
    private readonly open: (material: PublicMaterial) => void,
    private readonly changed: (material: PublicMaterial, before: PublicMaterial | undefined) => void,
  ) {
    this.element.className = 'panel materials-panel';
    this.#render();
  }

  get(id: string): PublicMaterial | undefined {
    return this.#materials.get(id);
  }

  all(): PublicMaterial[] {
    return [...this.#materials.values()].sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  }

  /** Materials still converting (polled when the room is not connected). */
  converting(): PublicMaterial[] {
    return this.all().filter((m) => m.status === 'queued' || m.status === 'converting');
  }

  setAll(materials: PublicMaterial[]): void {
    for (const m of materials) this.upsert(m);
  }

  upsert(material: PublicMaterial): void {
    const before = this.#materials.get(material.id);
    // Progress events may overtake each other; a finished state is never undone by a late one.
    if (before && (before.status === 'ready' || before.status === 'failed') && material.status !== before.status) return;
    this.#materials.set(material.id, material);
    this.#render();
    this.changed(material, before);
  }

  setActive(id: string | null): void {
    this.#active = id;
    this.#render();
  }

  dispose(): void {
    this.#disposed = true;
    for (const abort of this.#aborts) abort.abort();
    render(null, this.element);
  }

  #render(): void {
    if (this.#disposed) return;
    render(
      <Materials
        materials={this.all()}
        active={this.#active}
        uploads={this.#uploads}
        canUpload={this.canUpload}
        onFiles={(files) => void this.#uploadAll(files)}
        onOpen={(m) => this.open(m)}
        onDismiss={(u) => this.#removeUpload(u)}
      />,
      this.element,
    );
  }

  #updateUpload(upload: Upload, change: Partial<Upload>): void {
    Object.assign(upload, change);
    this.#render();
  }

  #removeUpload(upload: Upload): void {
    this.#uploads = this.#uploads.filter((u) => u !== upload);
    this.#render();
  }

  async #uploadAll(files: File[]): Promise<void> {
    for (const file of files) await this.#upload(file);
  }

  async #upload(file: File): Promise<void> {
    const abort = new AbortController();
    this.#aborts.add(abort);
    const upload: Upload = { key: ++this.#uploadCount, name: file.name, sent: null, total: file.size, error: null, abort };
    this.#uploads = [...this.#uploads, upload];
    this.#render();
    const progress = (sent: number, total: number) => this.#updateUpload(upload, { sent, total });
    try {
      // DICOM (one instance or a zip of a study) goes to the radiology intake (client/src/radiology).
      if (await looksLikeDicom(file)) {
        const summary = await uploadDicom(this.api, this.caseId, file, progress, abort.signal);
        this.#removeUpload(upload);
        for (const id of summary.materialIds) this.upsert((await this.api.get<{ material: PublicMaterial }>(`/api/cases/${this.caseId}/materials/${id}`)).material);
        return;
      }
      const material = await this.api.upload(this.caseId, file, progress, abort.signal);
      this.#removeUpload(upload);
      this.upsert(material);
    } catch (err) {
      this.#updateUpload(upload, { error: describeError(err) });
    } finally {
      this.#aborts.delete(abort);
    }
  }
}
