// Browser DICOM upload: one instance or a zip of a study, sent to the radiology intake
// (POST /api/cases/:caseId/dicom) with upload progress. The materials panel hands a file here
// when it looks like DICOM (a .dcm or .zip name, or the "DICM" marker at byte 128).
import { ApiError } from '../api';
import { isErrorCode } from '../../../src/protocol/errors';

export interface DicomUploadSummary {
  stored: number;
  duplicates: number;
  refused: { index: number; code: string; reason: string }[];
  materialIds: string[];
}

export async function looksLikeDicom(file: File): Promise<boolean> {
  if (/\.(dcm|dicom|zip)$/i.test(file.name)) return true;
  if (file.size < 132) return false;
  const marker = new Uint8Array(await file.slice(128, 132).arrayBuffer());
  return String.fromCharCode(...marker) === 'DICM';
}

async function csrfToken(): Promise<string> {
  const res = await fetch('/api/auth/csrf', { credentials: 'same-origin', cache: 'no-store', headers: { Accept: 'application/json' } });
  if (!res.ok) throw new ApiError('NETWORK', 'Could not reach the server.', res.status);
  return ((await res.json()) as { csrfToken: string }).csrfToken;
}

export async function uploadDicom(
  api: { forgetToken(): void },
  caseId: string,
  file: File,
  onProgress: (sent: number, total: number) => void,
  signal?: AbortSignal,
): Promise<DicomUploadSummary> {
  // A fresh token replaces the CSRF cookie, so the shared client must fetch its own again.
  const token = await csrfToken();
  api.forgetToken();
  const head = new Uint8Array(await file.slice(0, 4).arrayBuffer());
  const zip = head[0] === 0x50 && head[1] === 0x4b && head[2] === 0x03 && head[3] === 0x04;
  const result = await new Promise<{ status: number; text: string }>((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open('POST', `/api/cases/${encodeURIComponent(caseId)}/dicom`);
    xhr.setRequestHeader('X-CSRF-Token', token);
    xhr.setRequestHeader('Content-Type', zip ? 'application/zip' : 'application/dicom');
    xhr.setRequestHeader('Accept', 'application/json');
    xhr.upload.onprogress = (e) => onProgress(e.loaded, e.lengthComputable ? e.total : file.size);
    xhr.onload = () => resolve({ status: xhr.status, text: xhr.responseText });
    xhr.onerror = () => reject(new ApiError('NETWORK', 'Could not reach the server.', 0));
    xhr.onabort = () => reject(new DOMException('The upload was cancelled.', 'AbortError'));
    signal?.addEventListener('abort', () => xhr.abort(), { once: true });
    xhr.send(file);
  });
  let body: unknown = null;
  try {
    body = JSON.parse(result.text);
  } catch {
    // not JSON: handled below by status
  }
  if (result.status >= 200 && result.status < 300) return body as DicomUploadSummary;
  const error = (body as { error?: { code?: unknown; message?: unknown } } | null)?.error;
  const refused = (body as DicomUploadSummary | null)?.refused;
  if (refused?.length) throw new ApiError('INVALID_DICOM', `No file could be stored: ${refused[0]!.reason}`, result.status);
  throw new ApiError(isErrorCode(error?.code) ? error.code : 'INTERNAL', typeof error?.message === 'string' ? error.message : 'The upload failed.', result.status);
}
