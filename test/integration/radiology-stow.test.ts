// STOW-RS (POST /dicomweb/studies) with a multipart/related request built by dicomweb-client:
// per-site intake token or browser session + CSRF; PS3.18 response; a stored instance
// cross-checked with dcmdump; malformed and unsupported instances refused, changing nothing.
// Browser upload (single file and zip of a study) goes through the same intake.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { api as dicomweb } from 'dicomweb-client';
import { ctSeries, registerPatientSecrets, run, wholeSlideInstance } from '../helpers/dicom';
import { lastPasswords, startTestServer, waitFor, type TestClient, type TestServer } from '../helpers/server';
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { XMLHttpRequest } = require('xmlhttprequest-ssl');

const TOKEN = 'stow-intake-token-0123456789abcdef';
const PATIENT = { name: 'STOW^PETER', id: 'MRN-STOW-88', birthDate: '19551224', sex: 'M' as const };
registerPatientSecrets('STOW^PETER', 'PETER STOW', 'MRN-STOW-88');

let t: TestServer;
let siteId: string;
let clinician: TestClient;
let work: string;

beforeAll(async () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'rad-stow-'));
  const first = await startTestServer();
  siteId = (await first.server.store.sites.list())[0]!.id;
  await first.demoLogin('clinician');
  const clin = (await first.server.store.users.findByEmail('clinician@demo.local'))!;
  await first.server.store.users.update(siteId, clin.id, { permissions: { ...clin.permissions, viewPatientInfo: true, canDownload: true, canUpload: true }, updatedAt: new Date().toISOString(), updatedBy: null });
  await first.close();
  t = await startTestServer({ DICOMWEB_TOKENS: `${siteId}=${createHash('sha256').update(TOKEN).digest('hex')}` }, { dataDir: first.dataDir });
  clinician = t.client();
  await clinician.login('clinician@demo.local', lastPasswords.get('clinician@demo.local')!).expect(200);
}, 120_000);

afterAll(async () => {
  await t?.close();
});

/** dicomweb-client over Node: an XHR that trusts the test CA and sends ArrayBuffers as Buffers. */
function client(headers: Record<string, string>) {
  const make = () => {
    const xhr = new XMLHttpRequest({ ca: t.ca });
    const send = xhr.send.bind(xhr);
    xhr.send = (data: unknown) => send(data instanceof ArrayBuffer ? Buffer.from(data) : data);
    return xhr;
  };
  const c = new dicomweb.DICOMwebClient({ url: `${t.url}/dicomweb`, headers });
  return {
    store: (datasets: Buffer[]) =>
      c.storeInstances({ datasets: datasets.map((b) => b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength)), request: { instance: make() } }).then(
        (r: unknown) => ({ status: 200, body: r }),
        (err: { status?: number; response?: unknown }) => ({ status: err.status ?? 0, body: err.response }),
      ),
  };
}

async function caseCount(): Promise<number> {
  return (await clinician.get('/api/cases?limit=200').expect(200)).body.total;
}

test('STOW-RS with an intake token stores a series; the stored instance matches the sent one in dcmdump', async () => {
  const series = ctSeries({ patient: PATIENT, accession: 'ACC-STOW-1', slices: 3 });
  const before = await caseCount();
  const res = await client({ Authorization: `Bearer ${TOKEN}` }).store(series.slices.map((s) => s.file));
  expect(res.status).toBe(200);
  expect(await caseCount()).toBe(before + 1);

  const cases = (await clinician.get('/api/cases?limit=200').expect(200)).body.cases;
  const ct = cases.find((c: { patient?: { medicalRecordNumber: string } }) => c.patient?.medicalRecordNumber === 'MRN-STOW-88');
  expect(ct.patient).toEqual({ name: 'PETER STOW', medicalRecordNumber: 'MRN-STOW-88', dateOfBirth: '1955-12-24', sex: 'male' });
  const material = (await clinician.get(`/api/cases/${ct.id}`).expect(200)).body.materials[0];
  const stack = (await clinician.get(`/api/cases/${ct.id}/materials/${material.id}/stack`).expect(200)).body.stack;
  expect(stack.slices).toHaveLength(3);

  const download = await clinician
    .get(`/api/cases/${ct.id}/materials/${material.id}/slices/1/original`)
    .buffer(true)
    .parse((r, cb) => {
      const chunks: Buffer[] = [];
      r.on('data', (c: Buffer) => chunks.push(c));
      r.on('end', () => cb(null, Buffer.concat(chunks)));
    })
    .expect(200);
  const sentFile = path.join(work, 'sent.dcm');
  const storedFile = path.join(work, 'stored.dcm');
  fs.writeFileSync(sentFile, series.slices[1]!.file);
  fs.writeFileSync(storedFile, download.body as Buffer);
  const dump = async (f: string) => (await run('dcmdump', ['+P', '0008,0018', '+P', '0010,0010', '+P', '0020,0013', '+P', '7fe0,0010', f])).stdout;
  const stored = await dump(storedFile);
  expect(stored).toContain(series.slices[1]!.sopInstanceUid);
  expect(stored).toContain('STOW^PETER');
  expect(stored).toBe(await dump(sentFile));
});

test('STOW-RS answers per instance: a malformed part and an unsupported transfer syntax fail (409), nothing stored', async () => {
  const before = await caseCount();
  const garbage = Buffer.concat([Buffer.alloc(128), Buffer.from('DICM'), Buffer.from('this is not a dataset at all')]);
  const mpeg2 = ctSeries({ patient: PATIENT, slices: 1, transferSyntaxUid: '1.2.840.10008.1.2.4.100' }).slices[0]!.file;
  const res = await client({ Authorization: `Bearer ${TOKEN}` }).store([garbage, mpeg2]);
  expect(res.status).toBe(409);
  const body = JSON.parse(Buffer.from(res.body as ArrayBuffer).toString('utf8'));
  const reasons = body['00081198'].Value.map((item: Record<string, { Value: number[] }>) => item['00081197']!.Value[0]);
  expect(reasons).toEqual([0xc000, 0xc122]);
  expect(body['00081199']).toBeUndefined();
  expect(await caseCount()).toBe(before);
});

test('STOW-RS refuses a wrong token, and a browser without CSRF token or Can Upload', async () => {
  const series = ctSeries({ patient: PATIENT, slices: 1 });
  expect((await client({ Authorization: 'Bearer wrong-token-wrong-token-wrong' }).store([series.slices[0]!.file])).status).toBe(401);
  expect((await client({}).store([series.slices[0]!.file])).status).toBe(403);
  // With the session and its CSRF token, a clinician with Can Upload may store.
  const boundary = 'b0undary42';
  const body = Buffer.concat([Buffer.from(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`), series.slices[0]!.file, Buffer.from(`\r\n--${boundary}--\r\n`)]);
  const res = await clinician.agent
    .post('/dicomweb/studies')
    .set('X-CSRF-Token', clinician.csrfToken!)
    .set('Content-Type', `multipart/related; type="application/dicom"; boundary=${boundary}`)
    .send(body);
  expect(res.status).toBe(200);
  expect(res.headers['content-type']).toMatch(/^application\/dicom\+json/);
  const audit = await t.server.store.audit.listChain(siteId, 0, 10_000);
  expect(audit.filter((r) => r.type === 'radiology.instance.store' && r.details.via === 'stow' && r.outcome === 0).length).toBe(4);
  expect(audit.filter((r) => r.type === 'radiology.instance.store' && r.details.via === 'stow' && r.outcome === 4).length).toBe(2);
});

test('browser upload: a zip of a study into an existing case, and a single refused file', async () => {
  const created = await clinician.post('/api/cases', { title: 'Uploaded study' }).expect(201);
  const caseId = created.body.case.id;
  const series = ctSeries({ patient: { ...PATIENT, id: 'MRN-STOW-88' }, slices: 4 });
  const dir = path.join(work, 'zip');
  fs.mkdirSync(path.join(dir, 'DICOM'), { recursive: true });
  series.slices.forEach((s, i) => fs.writeFileSync(path.join(dir, 'DICOM', `IM${i}`), s.file));
  const zip = path.join(work, 'study.zip');
  await run('python3', ['-c', `import shutil; shutil.make_archive('${zip.replace(/\.zip$/, '')}', 'zip', '${dir}')`]);
  const res = await clinician.agent
    .post(`/api/cases/${caseId}/dicom`)
    .set('X-CSRF-Token', clinician.csrfToken!)
    .set('Content-Type', 'application/zip')
    .send(fs.readFileSync(zip));
  expect(res.status).toBe(201);
  expect(res.body).toMatchObject({ stored: 4, duplicates: 0, refused: [] });
  const detail = (await clinician.get(`/api/cases/${caseId}`).expect(200)).body;
  expect(detail.materials.filter((m: { mime: string }) => m.mime === 'application/dicom')).toHaveLength(1);
  expect(detail.case.patient.medicalRecordNumber).toBe('MRN-STOW-88');

  const bad = await clinician.agent
    .post(`/api/cases/${caseId}/dicom`)
    .set('X-CSRF-Token', clinician.csrfToken!)
    .set('Content-Type', 'application/dicom')
    .send(Buffer.from('not dicom at all, just text'));
  expect(bad.status).toBe(422);
  expect(bad.body.error.code).toBe('INVALID_DICOM');
  // A different patient's study cannot go into this case.
  const other = ctSeries({ patient: { ...PATIENT, id: 'MRN-OTHER-1' }, slices: 1 });
  registerPatientSecrets('MRN-OTHER-1');
  const mismatch = await clinician.agent
    .post(`/api/cases/${caseId}/dicom`)
    .set('X-CSRF-Token', clinician.csrfToken!)
    .set('Content-Type', 'application/dicom')
    .send(other.slices[0]!.file);
  expect(mismatch.status).toBe(409);
  expect(mismatch.body.error.code).toBe('PATIENT_MISMATCH');
  expect((await clinician.get(`/api/cases/${caseId}`).expect(200)).body.materials).toHaveLength(1);
});

test('a large single frame also becomes a DeepZoom material through the slide converter', async () => {
  // The threshold is 4096 x 4096 pixels in production; lowered here to keep the test small.
  t.server.app.radiology.limits.deepZoomMinPixels = 1000 * 1000;
  try {
    const big = ctSeries({ patient: PATIENT, slices: 1, size: 1024 });
    const res = await client({ Authorization: `Bearer ${TOKEN}` }).store([big.slices[0]!.file]);
    expect(res.status).toBe(200);
    const cases = (await clinician.get('/api/cases?limit=200').expect(200)).body.cases as { id: string; patient?: { medicalRecordNumber: string } }[];
    // The same patient's study, another case (another Study Instance UID).
    const withBig = await waitFor(async () => {
      for (const c of cases) {
        const m = (await clinician.get(`/api/cases/${c.id}`).expect(200)).body.materials as { id: string; mime: string; status: string; width: number }[];
        const zoom = m.find((x) => x.mime === 'image/png');
        if (zoom) return { caseId: c.id, materials: m, zoom };
      }
      return null;
    }, 'a PNG material appeared next to the stack');
    expect(withBig!.materials.map((m) => m.mime).sort()).toEqual(['application/dicom', 'image/png']);
    const ready = await waitFor(async () => {
      const { material } = (await clinician.get(`/api/cases/${withBig!.caseId}/materials/${withBig!.zoom.id}`).expect(200)).body;
      return material.status === 'ready' ? material : material.status === 'failed' ? Promise.reject(new Error(material.error)) : null;
    }, 'the converter built the pyramid', 60_000);
    expect([ready.width, ready.height]).toEqual([1024, 1024]);
    const dzi = await clinician.get(`/api/cases/${withBig!.caseId}/materials/${withBig!.zoom.id}/slide.dzi`).expect(200);
    expect(dzi.text).toContain('Width="1024"');
    await clinician.get(`/api/cases/${withBig!.caseId}/materials/${withBig!.zoom.id}/slide_files/10/0_0.jpeg`).expect(200);
  } finally {
    t.server.app.radiology.limits.deepZoomMinPixels = 4096 * 4096;
  }
});

test('a tiled whole-slide instance (VL WSI, TILED_FULL) is assembled and converted into one DeepZoom slide', async () => {
  t.server.app.radiology.limits.deepZoomMinPixels = 300 * 300;
  try {
    const wsi = await wholeSlideInstance({ width: 700, height: 500, patient: { ...PATIENT, id: 'MRN-STOW-88' } });
    const res = await client({ Authorization: `Bearer ${TOKEN}` }).store([wsi]);
    expect(res.status).toBe(200);
    const cases = (await clinician.get('/api/cases?limit=200').expect(200)).body.cases as { id: string; title: string }[];
    const sm = cases.find((c) => c.title === 'SM study')!;
    const materials = (await clinician.get(`/api/cases/${sm.id}`).expect(200)).body.materials as { id: string; mime: string }[];
    expect(materials.map((m) => m.mime).sort()).toEqual(['application/dicom', 'image/tiff']);
    const slide = materials.find((m) => m.mime === 'image/tiff')!;
    const ready = await waitFor(async () => {
      const { material } = (await clinician.get(`/api/cases/${sm.id}/materials/${slide.id}`).expect(200)).body;
      return material.status === 'ready' ? material : material.status === 'failed' ? Promise.reject(new Error(material.error)) : null;
    }, 'the whole slide was converted', 60_000);
    expect([ready.width, ready.height]).toEqual([700, 500]);
    // The stack still shows the tiles frame by frame.
    const stack = (await clinician.get(`/api/cases/${sm.id}/materials/${materials.find((m) => m.mime === 'application/dicom')!.id}/stack`).expect(200)).body.stack;
    expect(stack.slices[0].frames).toBe(6);
    await clinician.get(`/api/cases/${sm.id}/materials/${stack.materialId}/slices/0.png?frame=5`).expect(200);
  } finally {
    t.server.app.radiology.limits.deepZoomMinPixels = 4096 * 4096;
  }
});
