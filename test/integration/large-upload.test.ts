// Large uploads are streamed to disk, never held in memory: a 2.1 GB body goes through with the
// server's memory flat; an oversized one is refused and leaves nothing behind.
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { Readable } from 'node:stream';
import os from 'node:os';
import { ChildNode, freePort } from '../helpers/childNode';
import { recordSecret, startTestServer, TestClient, waitFor } from '../helpers/server';

const GB = 1024 ** 3;

/** A body of `size` bytes that starts like a TIFF, made on the fly (never whole in memory). */
function tiffLikeStream(size: number): Readable {
  const chunk = Buffer.alloc(1024 * 1024, 0);
  let sent = 0;
  return new Readable({
    read() {
      if (sent >= size) return this.push(null);
      const n = Math.min(chunk.length, size - sent);
      const out = sent === 0 ? Buffer.concat([Buffer.from('II*\0'), chunk.subarray(4, n)]) : chunk.subarray(0, n);
      sent += n;
      this.push(out);
    },
  });
}

function cookieHeader(client: TestClient): string {
  const jar = (client.agent as unknown as { jar: { getCookies(o: object): { name: string; value: string }[] } }).jar;
  return jar
    .getCookies({ domain: '127.0.0.1', path: '/', secure: true, script: false })
    .map((c) => `${c.name}=${c.value}`)
    .join('; ');
}

function streamUpload(t: { url: string; ca: string }, client: TestClient, caseId: string, body: Readable, length: number | null): Promise<{ status: number; body: { material?: { id: string; sizeBytes: number }; error?: { code: string } } }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      `${t.url}/api/cases/${caseId}/materials?name=big.tif`,
      {
        method: 'POST',
        ca: t.ca,
        headers: {
          Cookie: cookieHeader(client),
          'X-CSRF-Token': client.csrfToken!,
          'Content-Type': 'application/octet-stream',
          ...(length === null ? {} : { 'Content-Length': String(length) }),
        },
      },
      (res) => {
        let text = '';
        res.on('data', (d) => (text += d));
        res.on('end', () => resolve({ status: res.statusCode!, body: JSON.parse(text || '{}') }));
      },
    );
    req.on('error', reject);
    body.pipe(req);
  });
}

/** Resident memory now and at its peak (the kernel's high-water mark) of a process, in bytes. */
function residentMemory(pid: number): { rss: number; peak: number } {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)![1]) * 1024;
  return { rss: kb('VmRSS'), peak: kb('VmHWM') };
}

test('a 2.1 GB upload is streamed to disk with flat memory, then fails conversion cleanly', async () => {
  // The node runs in its own process, so its memory is measured alone (the kernel's peak RSS, not
  // samples): whatever else runs in this test worker cannot blur the figure.
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cc-upload-'));
  const node = new ChildNode(dataDir, await freePort());
  try {
    await node.start();
    const demo = node.demo.find((d) => d.role === 'clinician')!;
    const client = new TestClient(node.url, node.ca);
    await client.login(demo.email, demo.password).expect(200);
    const newPassword = `streamed not buffered ${Math.random().toString(36).slice(2)}`;
    await client.post('/api/auth/password', { currentPassword: demo.password, newPassword }).expect(200);
    recordSecret(demo.password, newPassword);
    const caseId = (await client.post('/api/cases', { title: 'Big upload' }).expect(201)).body.case.id;
    const size = Math.round(2.1 * GB);
    const before = residentMemory(node.pid!);
    const res = await streamUpload(node, client, caseId, tiffLikeStream(size), size);
    const after = residentMemory(node.pid!);
    expect(res.status).toBe(202);
    expect(res.body.material!.sizeBytes).toBe(size);
    // Streamed, never held: the node's peak stays far below the file size.
    expect(after.peak - before.rss).toBeLessThan(300 * 1024 * 1024);

    const id = res.body.material!.id;
    const failed = await waitFor(async () => {
      const m = (await client.get(`/api/cases/${caseId}/materials/${id}`).expect(200)).body.material;
      return m.status === 'failed' ? m : null;
    }, 'the zero-filled TIFF is rejected by the decoder', 60_000, 250);
    expect(failed.error).toMatch(/could not be read/);
    expect(fs.readdirSync(path.join(dataDir, 'tmp', 'uploads'))).toEqual([]);
    expect(fs.existsSync(path.join(dataDir, 'materials', id))).toBe(false);
  } finally {
    await node.stop();
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}, 240_000);

test('an upload over the limit is refused, declared or not, and leaves no file', async () => {
  const t = await startTestServer({ MAX_UPLOAD_MB: '1' });
  try {
    const { client } = await t.demoLogin('clinician');
    const caseId = (await client.post('/api/cases', { title: 'Too big' }).expect(201)).body.case.id;
    const declared = await streamUpload(t, client, caseId, tiffLikeStream(3 * 1024 * 1024), 3 * 1024 * 1024).catch((e: Error) => ({ status: 0, body: { error: { code: e.message } } }));
    expect([413, 0]).toContain(declared.status);
    if (declared.status === 413) expect(declared.body.error!.code).toBe('PAYLOAD_TOO_LARGE');
    const chunked = await streamUpload(t, client, caseId, tiffLikeStream(3 * 1024 * 1024), null).catch((e: Error) => ({ status: 0, body: { error: { code: e.message } } }));
    expect([413, 0]).toContain(chunked.status);
    await waitFor(() => fs.readdirSync(path.join(t.dataDir, 'tmp', 'uploads')).length === 0, 'the partial upload is removed');
    expect((await client.get(`/api/cases/${caseId}`).expect(200)).body.materials).toEqual([]);
  } finally {
    await t.close();
  }
});
