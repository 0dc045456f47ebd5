// The case's materials: each with its conversion status and progress, the one open in the viewer
// marked, and uploads with a progress bar of the bytes actually sent (XHR upload events), then
// the server's conversion progress until the pyramid is ready.
import { looksLikeDicom, uploadDicom } from '../radiology/dicomUpload';
import { describeError, type Api } from '../api';
import { h, replaceChildren } from '../dom';
import { MATERIAL_STATUS_LABEL } from '../labels';
import type { PublicMaterial } from '../../../src/protocol/cases';

function megabytes(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(bytes < 10 * 1024 * 1024 ? 1 : 0)} MB`;
}

/** The label stands in for the hidden file input: Enter and Space open the picker, as on a button. */
function openPicker(e: KeyboardEvent, input: HTMLInputElement): void {
  if (e.key !== 'Enter' && e.key !== ' ') return;
  e.preventDefault();
  input.click();
}

export class MaterialsPanel {
  readonly element: HTMLElement;
  readonly #list = h('ul', { class: 'material-list' });
  readonly #uploads = h('ul', { class: 'upload-list' });
  readonly #materials = new Map<string, PublicMaterial>();
  readonly #aborts = new Set<AbortController>();
  #active: string | null = null;

  constructor(
    private readonly api: Api,
    private readonly caseId: string,
    canUpload: boolean,
    private readonly open: (material: PublicMaterial) => void,
    private readonly changed: (material: PublicMaterial, before: PublicMaterial | undefined) => void,
  ) {
    const input = h('input', { type: 'file', accept: 'image/jpeg,image/png,image/tiff,.svs,.ndpi,.tif,.tiff,.dcm,.zip,application/dicom', multiple: true, class: 'visually-hidden', id: 'material-file' });
    input.addEventListener('change', () => {
      const files = [...(input.files ?? [])];
      input.value = '';
      void this.#uploadAll(files);
    });
    const upload = canUpload
      ? h('div', { class: 'upload' }, input, h('label', { htmlFor: 'material-file', class: 'button', attrs: { role: 'button', tabindex: '0' }, on: { keydown: (e: KeyboardEvent) => openPicker(e, input) } }, 'Upload image'))
      : null;
    this.element = h('section', { class: 'panel materials-panel' }, h('h2', {}, 'Materials'), upload, this.#uploads, this.#list);
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
    for (const abort of this.#aborts) abort.abort();
  }

  #render(): void {
    replaceChildren(
      this.#list,
      ...this.all().map((m) => {
        const ready = m.status === 'ready';
        const name = ready
          ? h('button', { type: 'button', class: 'link material-open', on: { click: () => this.open(m) } }, m.name)
          : h('span', { class: 'material-name' }, m.name);
        const status =
          m.status === 'converting' || m.status === 'queued'
            ? h('span', { class: 'material-progress' }, h('progress', { max: 100, value: m.progress, attrs: { 'aria-label': `Converting ${m.name}` } }), `${MATERIAL_STATUS_LABEL[m.status]} ${m.progress}%`)
            : h('span', { class: `material-status status-${m.status}` }, m.status === 'failed' ? `Failed: ${m.error ?? 'the image could not be read'}` : m.width === null ? 'DICOM series' : `${m.width} × ${m.height}`);
        return h('li', { class: `material${m.id === this.#active ? ' active' : ''}`, dataset: { materialId: m.id, status: m.status } }, name, status);
      }),
    );
  }

  async #uploadAll(files: File[]): Promise<void> {
    for (const file of files) await this.#upload(file);
  }

  async #upload(file: File): Promise<void> {
    const abort = new AbortController();
    this.#aborts.add(abort);
    const bar = h('progress', { max: file.size || 1, value: 0, attrs: { 'aria-label': `Uploading ${file.name}` } });
    const text = h('span', { class: 'upload-text' }, `0 of ${megabytes(file.size)}`);
    const cancel = h('button', { type: 'button', class: 'small', on: { click: () => abort.abort() } }, 'Cancel');
    const row = h('li', { class: 'upload-item', dataset: { file: file.name } }, h('span', { class: 'material-name' }, file.name), bar, text, cancel);
    this.#uploads.appendChild(row);
    const progress = (sent: number, total: number) => {
      bar.max = total || 1;
      bar.value = sent;
      text.textContent = `${megabytes(sent)} of ${megabytes(total)}`;
    };
    try {
      // DICOM (one instance or a zip of a study) goes to the radiology intake (client/src/radiology).
      if (await looksLikeDicom(file)) {
        const summary = await uploadDicom(this.api, this.caseId, file, progress, abort.signal);
        row.remove();
        for (const id of summary.materialIds) this.upsert((await this.api.get<{ material: PublicMaterial }>(`/api/cases/${this.caseId}/materials/${id}`)).material);
        return;
      }
      const material = await this.api.upload(this.caseId, file, progress, abort.signal);
      row.remove();
      this.upsert(material);
    } catch (err) {
      cancel.remove();
      bar.remove();
      row.classList.add('failed');
      text.textContent = describeError(err);
      row.appendChild(h('button', { type: 'button', class: 'small', on: { click: () => row.remove() } }, 'Dismiss'));
    } finally {
      this.#aborts.delete(abort);
    }
  }
}
