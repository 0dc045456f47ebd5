// DICOM over TLS (DICOM_TLS=true): dcmtk's echoscu and storescu connect with TLS, verifying the
// server certificate; a plain TCP association on the TLS port gets nowhere; an instance over
// DICOM_MAX_INSTANCE_MB is refused while it arrives.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ctSeries, registerPatientSecrets, run, writeFiles } from '../helpers/dicom';
import { startTestServer, type TestServer } from '../helpers/server';

registerPatientSecrets('TLS^TOM', 'TOM TLS', 'MRN-TLS-1');

let t: TestServer;
let siteId: string;

beforeAll(async () => {
  const first = await startTestServer();
  siteId = (await first.server.store.sites.list())[0]!.id;
  await first.close();
  t = await startTestServer({ DICOM_PORT: '0', DICOM_TLS: 'true', DICOM_MAX_INSTANCE_MB: '1', DICOM_AE_TITLES: `SECURE_AE=${siteId}`, DICOM_PEERS: 'MODALITY1@127.0.0.1=SECURE_AE' }, { dataDir: first.dataDir });
}, 120_000);

afterAll(async () => {
  await t?.close();
});

async function dcmtk(tool: string, args: string[]): Promise<{ code: number; out: string }> {
  try {
    const { stdout, stderr } = await run(tool, args, { timeout: 60_000 });
    return { code: 0, out: stdout + stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, out: `${e.stdout ?? ''}${e.stderr ?? ''}` };
  }
}

test('echoscu and storescu over TLS; plain TCP on the TLS port fails', async () => {
  const port = String(t.server.radiology.dicom!.port);
  const cert = path.join(t.dataDir, 'tls', 'cert.pem');
  const tls = ['+tla', '+cf', cert];
  const echo = await dcmtk('echoscu', [...tls, '-aet', 'MODALITY1', '-aec', 'SECURE_AE', '127.0.0.1', port]);
  expect(echo).toMatchObject({ code: 0 });

  const plain = await dcmtk('echoscu', ['-to', '5', '-ta', '5', '-aet', 'MODALITY1', '-aec', 'SECURE_AE', '127.0.0.1', port]);
  expect(plain.code).not.toBe(0);

  const series = ctSeries({ patient: { name: 'TLS^TOM', id: 'MRN-TLS-1', birthDate: '19800101', sex: 'M' }, slices: 2 });
  const files = writeFiles(fs.mkdtempSync(path.join(os.tmpdir(), 'rad-tls-')), series.slices.map((s) => s.file));
  expect((await dcmtk('storescu', [...tls, '-aet', 'MODALITY1', '-aec', 'SECURE_AE', '127.0.0.1', port, ...files])).code).toBe(0);
  const audit = await t.server.store.audit.listChain(siteId, 0, 10_000);
  expect(audit.filter((r) => r.type === 'radiology.instance.store' && r.outcome === 0)).toHaveLength(2);
  expect(audit.some((r) => r.type === 'radiology.dicom.association' && r.details.tls === true)).toBe(true);
});

test('an instance over DICOM_MAX_INSTANCE_MB is refused (out of resources) and nothing is stored', async () => {
  const port = String(t.server.radiology.dicom!.port);
  const cert = path.join(t.dataDir, 'tls', 'cert.pem');
  // 1024 x 1024 x 16 bit: 2 MiB of pixel data, over the 1 MiB limit of this server.
  const big = ctSeries({ patient: { name: 'TLS^TOM', id: 'MRN-TLS-1', birthDate: '19800101', sex: 'M' }, slices: 1, size: 1024 });
  const files = writeFiles(fs.mkdtempSync(path.join(os.tmpdir(), 'rad-big-')), [big.slices[0]!.file]);
  const before = (await t.server.store.audit.listChain(siteId, 0, 10_000)).filter((r) => r.type === 'radiology.instance.store' && r.outcome === 0).length;
  const sent = await dcmtk('storescu', ['-v', '+tla', '+cf', cert, '-aet', 'MODALITY1', '-aec', 'SECURE_AE', '127.0.0.1', port, ...files]);
  expect(sent.out).toMatch(/Refused: OutOfResources/);
  const audit = await t.server.store.audit.listChain(siteId, 0, 10_000);
  expect(audit.filter((r) => r.type === 'radiology.instance.store' && r.outcome === 0)).toHaveLength(before);
  expect(audit.some((r) => r.type === 'radiology.instance.store' && r.outcome === 4 && r.details.refusal === 'TOO_LARGE')).toBe(true);
});
