// DICOM DIMSE intake with Debian's dcmtk as the real peer: echoscu answers, storescu sends a
// synthetic CT series (and an img2dcm secondary capture); the instances land in the right case,
// series and slice order, patient fields only sealed; unknown AE titles, addresses and transfer
// syntaxes are refused and change nothing. Viewing: stack, rendered slices with window/level,
// de-identified header, original download with Can Download only.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sharp from 'sharp';
import { ctSeries, pngStats, registerPatientSecrets, run, writeFiles } from '../helpers/dicom';
import { lastPasswords, startTestServer, TestClient, type TestServer } from '../helpers/server';

const PATIENT = { name: 'RADIOLOGY^JANE^Q', id: 'MRN-DIMSE-4711', birthDate: '19700102', sex: 'F' as const };
registerPatientSecrets('RADIOLOGY^JANE', 'JANE Q RADIOLOGY', 'MRN-DIMSE-4711');

let t: TestServer;
let siteId: string;
let dataDir: string;
let clinician: TestClient;
let pathologist: TestClient;
let work: string;

async function login(server: TestServer, email: string): Promise<TestClient> {
  const c = server.client();
  await c.login(email, lastPasswords.get(email)!).expect(200);
  return c;
}

beforeAll(async () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'rad-dimse-'));
  // First start creates the site; the AE title configuration names it, so start again with it.
  const first = await startTestServer();
  dataDir = first.dataDir;
  siteId = (await first.server.store.sites.list())[0]!.id;
  await first.demoLogin('clinician');
  await first.demoLogin('pathologist');
  // The pathologist works without View Patient Info (the de-identified view).
  const path_ = (await first.server.store.users.findByEmail('pathologist@demo.local'))!;
  await first.server.store.users.update(siteId, path_.id, { permissions: { ...path_.permissions, viewPatientInfo: false, canDownload: false }, updatedAt: new Date().toISOString(), updatedBy: null });
  const clin = (await first.server.store.users.findByEmail('clinician@demo.local'))!;
  await first.server.store.users.update(siteId, clin.id, { permissions: { ...clin.permissions, viewPatientInfo: true, canDownload: true, canUpload: true }, updatedAt: new Date().toISOString(), updatedBy: null });
  await first.close();
  t = await startTestServer(
    { DICOM_PORT: '0', DICOM_AE_TITLES: `CASECOLLAB=${siteId}`, DICOM_PEERS: 'MODALITY1@127.0.0.1=CASECOLLAB,PACS@10.9.9.9=CASECOLLAB' },
    { dataDir },
  );
  clinician = await login(t, 'clinician@demo.local');
  pathologist = await login(t, 'pathologist@demo.local');
}, 120_000);

afterAll(async () => {
  await t?.close();
});

const dicomPort = () => String(t.server.radiology.dicom!.port);

async function dcmtk(tool: string, args: string[]): Promise<{ code: number; out: string }> {
  try {
    const { stdout, stderr } = await run(tool, args, { timeout: 60_000 });
    return { code: 0, out: stdout + stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, out: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

async function radiologyCases(): Promise<{ id: string; title: string; patient?: { name: string; medicalRecordNumber: string; dateOfBirth: string; sex: string } | null }[]> {
  const res = await clinician.get('/api/cases?limit=200').expect(200);
  return res.body.cases.filter((c: { title: string }) => / study$|^Radiology order/.test(c.title));
}

test('C-ECHO answers a listed peer and refuses unknown calling or called AE titles', async () => {
  expect((await dcmtk('echoscu', ['-aet', 'MODALITY1', '-aec', 'CASECOLLAB', '127.0.0.1', dicomPort()])).code).toBe(0);

  const wrongCalling = await dcmtk('echoscu', ['-aet', 'INTRUDER', '-aec', 'CASECOLLAB', '127.0.0.1', dicomPort()]);
  expect(wrongCalling.code).not.toBe(0);
  expect(wrongCalling.out).toMatch(/Calling AE Title Not Recognized/i);

  const wrongCalled = await dcmtk('echoscu', ['-aet', 'MODALITY1', '-aec', 'SOMEONEELSE', '127.0.0.1', dicomPort()]);
  expect(wrongCalled.code).not.toBe(0);
  expect(wrongCalled.out).toMatch(/Called AE Title Not Recognized/i);

  const audit = await t.server.store.audit.listChain(siteId, 0, 10_000);
  const associations = audit.filter((r) => r.type === 'radiology.dicom.association');
  expect(associations.some((r) => r.outcome === 0)).toBe(true);
  expect(associations.some((r) => r.outcome === 4 && String(r.details.refused).includes('allowlist'))).toBe(true);
});

test('storescu sends a CT series: one case, one stack in slice-position order, patient only sealed', async () => {
  const casesBefore = (await radiologyCases()).length;
  const series = ctSeries({ patient: PATIENT, accession: 'ACC-DIMSE-1', slices: 5, shuffleInstanceNumbers: true });
  // Sent in a scrambled order: the stack must still follow the slice positions.
  const files = writeFiles(path.join(work, 'ct'), [series.slices[2]!, series.slices[0]!, series.slices[4]!, series.slices[1]!, series.slices[3]!].map((s) => s.file));
  const sent = await dcmtk('storescu', ['-aet', 'MODALITY1', '-aec', 'CASECOLLAB', '127.0.0.1', dicomPort(), ...files]);
  expect(sent.code).toBe(0);

  const cases = await radiologyCases();
  expect(cases).toHaveLength(casesBefore + 1);
  const ct = cases.find((c) => c.title === 'CT study')!;
  expect(ct.patient).toEqual({ name: 'JANE Q RADIOLOGY', medicalRecordNumber: 'MRN-DIMSE-4711', dateOfBirth: '1970-01-02', sex: 'female' });
  const detail = await clinician.get(`/api/cases/${ct.id}`).expect(200);
  const stacks = detail.body.materials.filter((m: { mime: string }) => m.mime === 'application/dicom');
  expect(stacks).toHaveLength(1);
  const stack = (await clinician.get(`/api/cases/${ct.id}/materials/${stacks[0].id}/stack`).expect(200)).body.stack;
  expect(stack.slices.map((s: { slicePosition: number }) => s.slicePosition)).toEqual([-100, -95, -90, -85, -80]);
  // InstanceNumbers were reversed against position: ordering is by position, not by number.
  expect(stack.slices.map((s: { instanceNumber: number }) => s.instanceNumber)).toEqual([5, 4, 3, 2, 1]);
  expect(stack.window).toEqual({ center: 40, width: 400 });

  // The pathologist (no View Patient Info) sees the case without patient fields.
  const forPathologist = await pathologist.get(`/api/cases/${ct.id}`).expect(200);
  expect(forPathologist.body.case.patient).toBeUndefined();

  // Nothing identifying in plain storage: the SQLite file and the instance files.
  const db = fs.readFileSync(path.join(dataDir, 'case-collab.sqlite'));
  const wal = fs.existsSync(path.join(dataDir, 'case-collab.sqlite-wal')) ? fs.readFileSync(path.join(dataDir, 'case-collab.sqlite-wal')) : Buffer.alloc(0);
  for (const needle of ['RADIOLOGY^JANE', 'JANE Q RADIOLOGY', 'MRN-DIMSE-4711', 'ACC-DIMSE-1', series.studyUid]) {
    expect(db.includes(needle)).toBe(false);
    expect(wal.includes(needle)).toBe(false);
  }
  const instanceDir = path.join(dataDir, 'materials', stacks[0].id, 'dicom');
  const stored = fs.readdirSync(instanceDir);
  expect(stored).toHaveLength(5);
  for (const f of stored) expect(fs.readFileSync(path.join(instanceDir, f)).includes('RADIOLOGY^JANE')).toBe(false);

  // Sending the same series again stores nothing new.
  expect((await dcmtk('storescu', ['-aet', 'MODALITY1', '-aec', 'CASECOLLAB', '127.0.0.1', dicomPort(), ...files])).code).toBe(0);
  expect(fs.readdirSync(instanceDir)).toHaveLength(5);
  expect((await radiologyCases()).length).toBe(casesBefore + 1);
});

test('slices render as PNG with the header window or a chosen one; no-store; the disc grows along the stack', async () => {
  const ct = (await radiologyCases()).find((c) => c.title === 'CT study')!;
  const material = (await clinician.get(`/api/cases/${ct.id}`).expect(200)).body.materials.find((m: { mime: string }) => m.mime === 'application/dicom');
  const base = `/api/cases/${ct.id}/materials/${material.id}/slices`;
  const first = await clinician.get(`${base}/0.png`).expect(200);
  expect(first.headers['content-type']).toBe('image/png');
  expect(first.headers['cache-control']).toBe('no-store');
  const last = await clinician.get(`${base}/4.png`).expect(200);
  const a = await pngStats(first.body);
  const b = await pngStats(last.body);
  expect(a.width).toBe(64);
  // The last slice (highest position) has the largest bright disc.
  expect(b.mean).toBeGreaterThan(a.mean);
  // A bone window (c=400, w=1800) makes the 400 HU disc mid-grey instead of white.
  const bone = await pngStats((await clinician.get(`${base}/4.png?wc=400&ww=1800`).expect(200)).body);
  const centre = (s: { pixels: Buffer }) => s.pixels[32 * 64 + 32]!;
  expect(centre(b)).toBe(255);
  expect(centre(bone)).toBeGreaterThan(100);
  expect(centre(bone)).toBeLessThan(160);
  await clinician.get(`${base}/5.png`).expect(404);
  await clinician.get(`${base}/0.png?wc=40`).expect(400);
  expect((await sharp(first.body).metadata()).format).toBe('png');
});

test('headers are de-identified for viewers without View Patient Info; originals need Can Download and are audited', async () => {
  const ct = (await radiologyCases()).find((c) => c.title === 'CT study')!;
  const material = (await clinician.get(`/api/cases/${ct.id}`).expect(200)).body.materials.find((m: { mime: string }) => m.mime === 'application/dicom');
  const base = `/api/cases/${ct.id}/materials/${material.id}/slices/0`;
  const full = (await clinician.get(`${base}/header`).expect(200)).body.header;
  expect(full.PatientName).toBe('RADIOLOGY^JANE^Q');
  const deid = (await pathologist.get(`${base}/header`).expect(200)).body.header;
  expect(deid.PatientName).toBe('');
  expect(deid.PatientID).toBe('');
  expect(deid.PatientBirthDate).toBe('');
  expect(deid.AccessionNumber).toBe('');
  expect(deid.InstitutionName).toBeUndefined();
  expect(deid.StudyDescription).toBeUndefined();
  expect(deid.PatientIdentityRemoved).toBe('YES');
  expect(deid.StudyInstanceUID).toMatch(/^2\.25\.\d+$/);
  expect(deid.StudyInstanceUID).not.toBe(full.StudyInstanceUID);
  expect(deid.Modality).toBe('CT');
  expect(deid.WindowCenter).toBe(40);
  expect(JSON.stringify(deid)).not.toContain('RADIOLOGY');

  await pathologist.get(`${base}/original`).expect(403);
  const original = await clinician.get(`${base}/original`).buffer(true).parse((res, cb) => {
    const chunks: Buffer[] = [];
    res.on('data', (c: Buffer) => chunks.push(c));
    res.on('end', () => cb(null, Buffer.concat(chunks)));
  }).expect(200);
  expect(original.headers['content-type']).toBe('application/dicom');
  const file = path.join(work, 'downloaded.dcm');
  fs.writeFileSync(file, original.body as Buffer);
  const dump = await dcmtk('dcmdump', [file]);
  expect(dump.code).toBe(0);
  expect(dump.out).toContain('RADIOLOGY^JANE^Q');
  const audit = await t.server.store.audit.listChain(siteId, 0, 10_000);
  expect(audit.some((r) => r.type === 'material.download' && r.objects.some((o) => o.type === 'dicom-instance'))).toBe(true);
});

test('img2dcm secondary capture (JPEG Baseline) becomes its own case and renders', async () => {
  const jpeg = path.join(work, 'photo.jpg');
  await sharp({ create: { width: 96, height: 64, channels: 3, background: { r: 200, g: 40, b: 40 } } }).jpeg().toFile(jpeg);
  const dcm = path.join(work, 'sc.dcm');
  const made = await dcmtk('img2dcm', ['-k', 'PatientName=CAPTURE^PAT', '-k', 'PatientID=MRN-SC-1', '-k', 'Modality=OT', jpeg, dcm]);
  expect(made.code).toBe(0);
  registerPatientSecrets('CAPTURE^PAT', 'MRN-SC-1');
  const before = (await radiologyCases()).length;
  // storescu proposes JPEG Baseline only when asked to (-xy), as a PACS configured for it does.
  expect((await dcmtk('storescu', ['-xy', '-aet', 'MODALITY1', '-aec', 'CASECOLLAB', '127.0.0.1', dicomPort(), dcm])).code).toBe(0);
  const cases = await radiologyCases();
  expect(cases).toHaveLength(before + 1);
  const sc = cases.find((c) => c.title === 'OT study')!;
  // No birth date in the header: the patient record is not complete, so it stays empty (sealed facts wait for ADT).
  expect(sc.patient).toBeNull();
  const material = (await clinician.get(`/api/cases/${sc.id}`).expect(200)).body.materials[0];
  const png = await clinician.get(`/api/cases/${sc.id}/materials/${material.id}/slices/0.png`).expect(200);
  const meta = await sharp(png.body).metadata();
  expect([meta.width, meta.height]).toEqual([96, 64]);
});

test('JPEG-LS (dcmcjpls) is accepted and decoded for the viewer; MPEG-2 is refused at negotiation and nothing is stored', async () => {
  const series = ctSeries({ patient: PATIENT, slices: 1 });
  const [plain] = writeFiles(path.join(work, 'ls'), [series.slices[0]!.file]);
  const jls = path.join(work, 'ls', 'slice.jls.dcm');
  expect((await dcmtk('dcmcjpls', [plain!, jls])).code).toBe(0);
  const before = (await radiologyCases()).length;
  // -xt proposes JPEG-LS lossless for it: accepted, stored as received, decoded to render.
  const stored = await dcmtk('storescu', ['-xt', '-aet', 'MODALITY1', '-aec', 'CASECOLLAB', '127.0.0.1', dicomPort(), jls]);
  expect(stored.code).toBe(0);
  const cases = await radiologyCases();
  expect(cases).toHaveLength(before + 1);
  const ids = cases.filter((c) => c.title === 'CT study').map((c) => c.id);
  let rendered = false;
  for (const id of ids) {
    const m = (await clinician.get(`/api/cases/${id}`).expect(200)).body.materials[0];
    const stack = (await clinician.get(`/api/cases/${id}/materials/${m.id}/stack`).expect(200)).body.stack;
    if (stack.slices.length !== 1) continue;
    const png = await pngStats((await clinician.get(`/api/cases/${id}/materials/${m.id}/slices/0.png`).expect(200)).body);
    // The first synthetic slice: a bright disc of radius 4 in the centre, air around it.
    expect(png.pixels[32 * 64 + 32]).toBe(255);
    expect(png.pixels[5 * 64 + 60]).toBe(0);
    rendered = true;
  }
  expect(rendered).toBe(true);

  // MPEG-2 video is not an image syntax we decode: no presentation context is accepted for it,
  // and storescu cannot convert it to anything else, so nothing is sent.
  const mpeg = ctSeries({ patient: PATIENT, slices: 1, transferSyntaxUid: '1.2.840.10008.1.2.4.100' });
  const [mpegFile] = writeFiles(path.join(work, 'mpeg'), [mpeg.slices[0]!.file]);
  const sent = await dcmtk('storescu', ['-aet', 'MODALITY1', '-aec', 'CASECOLLAB', '127.0.0.1', dicomPort(), mpegFile!]);
  expect(sent.code).not.toBe(0);
  expect(sent.out).toMatch(/no presentation context|unable to convert|not supported/i);
  expect((await radiologyCases()).length).toBe(before + 1);
  const audit = await t.server.store.audit.listChain(siteId, 0, 10_000);
  expect(audit.filter((r) => r.type === 'radiology.instance.store' && r.outcome === 0 && r.details.via === 'dimse').length).toBe(5 + 5 + 1 + 1);
});
