// Materials: real uploads (JPEG, PNG, tiled pyramidal TIFF, BigTIFF) converted by libvips into
// encrypted DeepZoom pyramids with real progress; tiles only through the authorised endpoint;
// originals only with Can Download; bad uploads leave nothing behind; crashes are recovered.
import fs from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { SQLITE_FILE } from '../../src/store';
import Database from 'better-sqlite3';
import { startTestServer, waitFor, type TestClient, type TestServer } from '../helpers/server';

let t: TestServer;
let clinician: TestClient;
let pathologist: TestClient;
let admin: TestClient;
let caseId: string;

async function testImage(width: number, height: number): Promise<sharp.Sharp> {
  // A gradient with text-like structure, so tiles differ from each other.
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">
    <defs><linearGradient id="g"><stop offset="0" stop-color="#f3c"/><stop offset="1" stop-color="#36f"/></linearGradient></defs>
    <rect width="100%" height="100%" fill="url(#g)"/>
    ${Array.from({ length: 40 }, (_, i) => `<circle cx="${(i * 97) % width}" cy="${(i * 53) % height}" r="${10 + (i % 7) * 5}" fill="#fff"/>`).join('')}
  </svg>`;
  return sharp(Buffer.from(svg));
}

function upload(client: TestClient, body: Buffer, name: string, id = caseId) {
  return client.agent
    .post(`/api/cases/${id}/materials?name=${encodeURIComponent(name)}`)
    .set('X-CSRF-Token', client.csrfToken!)
    .set('Content-Type', 'application/octet-stream')
    .send(body);
}

async function untilReady(client: TestClient, materialId: string, seen: number[] = []) {
  return waitFor(async () => {
    const res = await client.get(`/api/cases/${caseId}/materials/${materialId}`).expect(200);
    seen.push(res.body.material.progress);
    if (res.body.material.status === 'failed') {
      const why = t.logs.filter((l) => l.includes('conversion failed')).join('\n');
      throw new Error(`conversion failed: ${res.body.material.error}\n${why}`);
    }
    return res.body.material.status === 'ready' ? res.body.material : null;
  }, `material ${materialId} becomes ready`, 60_000);
}

function filesUnder(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { recursive: true, withFileTypes: true }).filter((e) => e.isFile()).map((e) => path.join(e.parentPath, e.name));
}

beforeAll(async () => {
  t = await startTestServer();
  admin = (await t.demoLogin('site_admin')).client;
  clinician = (await t.demoLogin('clinician')).client;
  pathologist = (await t.demoLogin('pathologist')).client;
  caseId = (await clinician.post('/api/cases', { title: 'Slides for the material tests' }).expect(201)).body.case.id;
});
afterAll(() => t.close());

test('a JPEG upload converts with real progress into an encrypted pyramid served only through the tile endpoint', async () => {
  const jpeg = await (await testImage(2000, 1500)).jpeg({ quality: 90 }).toBuffer();
  const res = await upload(clinician, jpeg, 'Jane Roe slide 1.jpg').expect(202);
  const m = res.body.material;
  expect(m).toMatchObject({ name: 'Jane Roe slide 1.jpg', mime: 'image/jpeg', sizeBytes: jpeg.length });
  expect(['queued', 'converting', 'ready']).toContain(m.status);
  const progress: number[] = [];
  const ready = await untilReady(clinician, m.id, progress);
  expect(ready).toMatchObject({ status: 'ready', progress: 100, width: 2000, height: 1500, dziUrl: `/api/cases/${caseId}/materials/${m.id}/slide.dzi` });
  expect(progress).toEqual([...progress].sort((a, b) => a - b));

  const dzi = await pathologist.get(ready.dziUrl).expect(200);
  expect(dzi.headers['content-type']).toMatch(/application\/xml/);
  expect(dzi.headers['cache-control']).toBe('no-store');
  expect(dzi.text).toContain('TileSize="256"');
  expect(dzi.text).toContain('<Size Width="2000" Height="1500"/>');

  // Level 11 is full resolution for 2000 px (ceil(log2 2000) = 11).
  const tile = await pathologist.get(`/api/cases/${caseId}/materials/${m.id}/slide_files/11/3_2.jpeg`).expect(200);
  expect(tile.headers['content-type']).toBe('image/jpeg');
  expect(tile.headers['cache-control']).toBe('no-store');
  expect(tile.headers.etag).toBeUndefined();
  const meta = await sharp(tile.body as Buffer).metadata();
  expect(meta).toMatchObject({ format: 'jpeg', width: 256, height: 256 });
  const top = await pathologist.get(`/api/cases/${caseId}/materials/${m.id}/slide_files/0/0_0.jpeg`).expect(200);
  expect((await sharp(top.body as Buffer).metadata()).width).toBe(1);
  await pathologist.get(`/api/cases/${caseId}/materials/${m.id}/slide_files/11/99_99.jpeg`).expect(404);
  await pathologist.get(`/api/cases/${caseId}/materials/${m.id}/slide_files/11/..%2F..%2Foriginal.enc`).expect(400);

  // Nothing on disk is readable: tiles and original are ciphertext; no plaintext left behind.
  const files = filesUnder(path.join(t.dataDir, 'materials', m.id));
  expect(files.length).toBeGreaterThan(40);
  for (const f of files.slice(0, 20)) {
    const head = fs.readFileSync(f).subarray(0, 3);
    expect(head.equals(Buffer.from([0xff, 0xd8, 0xff]))).toBe(false);
  }
  expect(fs.readFileSync(path.join(t.dataDir, 'materials', m.id, 'original.enc')).includes(jpeg.subarray(100, 200))).toBe(false);
  expect(filesUnder(path.join(t.dataDir, 'tmp'))).toEqual([]);

  // Anonymous and other-site requests get nothing.
  const anon = await t.client().get(`/api/cases/${caseId}/materials/${m.id}/slide_files/11/3_2.jpeg`).expect(401);
  expect(anon.body.error.code).toBe('UNAUTHENTICATED');
});

test('PNG, tiled pyramidal TIFF and BigTIFF are accepted and converted', async () => {
  const img = await testImage(1200, 900);
  const inputs: [string, Buffer, string][] = [
    ['scan.png', await img.clone().png().toBuffer(), 'image/png'],
    ['export.tif', await img.clone().tiff({ tile: true, pyramid: true, tileWidth: 256, tileHeight: 256, compression: 'jpeg' }).toBuffer(), 'image/tiff'],
    ['wsi.btf', await img.clone().tiff({ tile: true, pyramid: true, bigtiff: true, compression: 'deflate' }).toBuffer(), 'image/tiff'],
  ];
  for (const [name, body, mime] of inputs) {
    const m = (await upload(clinician, body, name).expect(202)).body.material;
    expect(m.mime).toBe(mime);
    const ready = await untilReady(clinician, m.id);
    expect(ready).toMatchObject({ width: 1200, height: 900 });
  }
});

test('originals only with Can Download, decrypted byte for byte, and every download audited', async () => {
  const png = await (await testImage(600, 400)).png().toBuffer();
  const m = (await upload(clinician, png, 'original.png').expect(202)).body.material;
  await untilReady(clinician, m.id);
  const refused = await pathologist.get(`/api/cases/${caseId}/materials/${m.id}/original`).expect(403);
  expect(refused.body.error.code).toBe('FORBIDDEN');
  const res = await admin.agent.get(`/api/cases/${caseId}/materials/${m.id}/original`).buffer(true).parse((r, cb) => {
    const chunks: Buffer[] = [];
    r.on('data', (c: Buffer) => chunks.push(c));
    r.on('end', () => cb(null, Buffer.concat(chunks)));
  });
  expect(res.status).toBe(200);
  expect(res.headers['content-disposition']).toBe("attachment; filename*=UTF-8''original.png");
  expect(Buffer.compare(res.body as Buffer, png)).toBe(0);
  const chain = await t.server.store.audit.listChain((await admin.get('/api/me')).body.site.id, 0, 1_000_000);
  const downloads = chain.filter((r) => r.type === 'material.download' && r.objects.some((o) => o.id === m.id));
  expect(downloads).toHaveLength(1);
  expect(downloads[0]!.actor.role).toBe('site_admin');
});

test('uploads need Can Upload', async () => {
  const users = (await admin.get('/api/admin/users').expect(200)).body.users as { id: string; email: string }[];
  const p = users.find((u) => u.email === 'pathologist@demo.local')!;
  await admin.patch(`/api/admin/users/${p.id}`, { permissions: { canUpload: false } }).expect(200);
  const res = await upload(pathologist, await (await testImage(64, 64)).png().toBuffer(), 'x.png').expect(403);
  expect(res.body.error.code).toBe('FORBIDDEN');
  await admin.patch(`/api/admin/users/${p.id}`, { permissions: { canUpload: true } }).expect(200);
});

test('rejected uploads leave nothing behind: wrong content, empty, unknown case, bad name', async () => {
  const materialsBefore = (await clinician.get(`/api/cases/${caseId}`).expect(200)).body.materials.length;
  const pdfRenamed = Buffer.concat([Buffer.from('%PDF-1.7\n'), Buffer.alloc(2000, 1)]);
  const r1 = await upload(clinician, pdfRenamed, 'looks-like.jpg').expect(415);
  expect(r1.body.error.code).toBe('UNSUPPORTED_FILE_TYPE');
  const r2 = await upload(clinician, Buffer.alloc(0), 'empty.png');
  expect(r2.status).toBeGreaterThanOrEqual(400);
  await upload(clinician, Buffer.from([0xff, 0xd8, 0xff, 0xe0]), 'x.jpg', 'AAAAAAAAAAAAAAAAAAAAAA').expect(404);
  const r4 = await upload(clinician, Buffer.from([0xff, 0xd8, 0xff, 0xe0]), '../../etc/passwd').expect(400);
  expect(r4.body.error.code).toBe('VALIDATION_FAILED');
  expect((await clinician.get(`/api/cases/${caseId}`).expect(200)).body.materials.length).toBe(materialsBefore);
  expect(filesUnder(path.join(t.dataDir, 'tmp'))).toEqual([]);
});

test('a corrupt image fails conversion with a clear reason and leaves no files', async () => {
  const corrupt = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), Buffer.alloc(50_000, 7)]);
  const m = (await upload(clinician, corrupt, 'broken.jpg').expect(202)).body.material;
  const failed = await waitFor(async () => {
    const res = await clinician.get(`/api/cases/${caseId}/materials/${m.id}`).expect(200);
    return res.body.material.status === 'failed' ? res.body.material : null;
  }, 'the corrupt upload is marked failed');
  expect(failed.error).toMatch(/could not be read/);
  expect(filesUnder(path.join(t.dataDir, 'materials', m.id))).toEqual([]);
  expect(filesUnder(path.join(t.dataDir, 'tmp'))).toEqual([]);
  // The failed entry can be removed by someone with Can Delete.
  await admin.agent.delete(`/api/cases/${caseId}/materials/${m.id}`).set('X-CSRF-Token', admin.csrfToken!).expect(204);
});

test('a tampered tile is refused, not served', async () => {
  const m = (await upload(clinician, await (await testImage(300, 300)).jpeg().toBuffer(), 'tamper.jpg').expect(202)).body.material;
  await untilReady(clinician, m.id);
  const file = path.join(t.dataDir, 'materials', m.id, 'tiles', '9', '0_0.jpeg');
  const bytes = fs.readFileSync(file);
  bytes[bytes.length - 1]! ^= 0xff;
  fs.writeFileSync(file, bytes);
  const res = await clinician.get(`/api/cases/${caseId}/materials/${m.id}/slide_files/9/0_0.jpeg`);
  expect(res.status).toBe(500);
  expect(res.body.error.code).toBe('INTERNAL');
});

test('a conversion interrupted by a crash resumes at the next start; stray files are swept', async () => {
  const jpeg = await (await testImage(800, 600)).jpeg().toBuffer();
  // Simulate the state a crash leaves: a queued record whose plaintext upload is on disk, plus
  // half-written output, plus files of a material that has no record at all.
  const m = (await upload(clinician, jpeg, 'crash.jpg').expect(202)).body.material;
  await untilReady(clinician, m.id);
  const siteId = (await clinician.get('/api/me')).body.site.id;
  await t.close();
  const db = new Database(path.join(t.dataDir, SQLITE_FILE));
  db.prepare("UPDATE materials SET status = 'converting', progress = 40 WHERE id = ?").run(m.id);
  db.close();
  fs.writeFileSync(path.join(t.dataDir, 'tmp', 'uploads', `${m.id}.part`), jpeg);
  fs.mkdirSync(path.join(t.dataDir, 'tmp', 'work', m.id, 'slide_files', '3'), { recursive: true });
  fs.writeFileSync(path.join(t.dataDir, 'tmp', 'work', m.id, 'slide_files', '3', '0_0.jpeg'), 'partial');
  const orphan = 'OrphanOrphanOrphan0000';
  fs.mkdirSync(path.join(t.dataDir, 'materials', orphan, 'tiles', '0'), { recursive: true });
  fs.writeFileSync(path.join(t.dataDir, 'materials', orphan, 'tiles', '0', '0_0.jpeg'), 'x');

  t = await startTestServer({}, { dataDir: t.dataDir });
  const c = t.client();
  const account = t.server.demoAccounts;
  expect(account).toBeNull(); // not a first start
  const clinicianEmail = 'clinician@demo.local';
  const password = (await import('../helpers/server')).lastPasswords.get(clinicianEmail)!;
  await c.login(clinicianEmail, password).expect(200);
  clinician = c;
  const ready = await untilReady(c, m.id);
  expect(ready).toMatchObject({ status: 'ready', width: 800, height: 600 });
  expect(fs.existsSync(path.join(t.dataDir, 'materials', orphan))).toBe(false);
  expect(filesUnder(path.join(t.dataDir, 'tmp'))).toEqual([]);
  expect(siteId).toBeTruthy();
});
