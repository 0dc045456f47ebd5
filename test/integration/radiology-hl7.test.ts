// HL7 v2 over a real MLLP socket (@medplum/hl7's client as the sender): ADT^A04/A08 register and
// update the patient record, ORM^O01 attaches an order (creating the case the images then join),
// ORU^R01 attaches the report; every message is ACKed, and malformed input, garbage, unknown
// senders and oversized messages get AE/AR and change nothing.
import { createHash } from 'node:crypto';
import net from 'node:net';
import { Hl7Message } from '@medplum/core';
import { Hl7Client } from '@medplum/hl7';
import { ctSeries, registerPatientSecrets } from '../helpers/dicom';
import { lastPasswords, startTestServer, waitFor, type TestClient, type TestServer } from '../helpers/server';

const TOKEN = 'hl7-test-intake-token-abcdef0123456789';
registerPatientSecrets('DOE^ALICE', 'ALICE DOE', 'ALICE MARIE DOE', 'MRN-HL7-1');

let t: TestServer;
let siteId: string;
let clinician: TestClient;
let hl7: Hl7Client;

const now = () => new Date().toISOString().replace(/[-:TZ.]/g, '').slice(0, 14);
let seq = 0;
function msg(type: string, segments: string[], facility = 'RIS_A'): Hl7Message {
  seq++;
  return Hl7Message.parse([`MSH|^~\\&|RIS|${facility}|CASECOLLAB|SITE|${now()}||${type}|CTRL${Date.now()}${seq}|P|2.5`, ...segments].join('\r'));
}
const PID = 'PID|1||MRN-HL7-1^^^HOSP^MR||DOE^ALICE||19800315|F';
/** OBR with the accession number in OBR-18 (IHE Scheduled Workflow) and the result status in OBR-25. */
function obr(accession: string, status = ''): string {
  const fields = ['OBR', '1', 'P-100', 'F-100', 'CTCHEST^CT chest'];
  while (fields.length < 18) fields.push('');
  fields.push(accession);
  while (fields.length < 25) fields.push('');
  fields.push(status);
  return fields.join('|');
}

beforeAll(async () => {
  const first = await startTestServer();
  siteId = (await first.server.store.sites.list())[0]!.id;
  await first.demoLogin('clinician');
  const clin = (await first.server.store.users.findByEmail('clinician@demo.local'))!;
  await first.server.store.users.update(siteId, clin.id, { permissions: { ...clin.permissions, viewPatientInfo: true }, updatedAt: new Date().toISOString(), updatedBy: null });
  await first.close();
  t = await startTestServer(
    { HL7_PORT: '0', HL7_PEERS: `RIS_A@127.0.0.1=${siteId}`, HL7_MAX_MESSAGE_KB: '64', DICOMWEB_TOKENS: `${siteId}=${createHash('sha256').update(TOKEN).digest('hex')}` },
    { dataDir: first.dataDir },
  );
  clinician = t.client();
  await clinician.login('clinician@demo.local', lastPasswords.get('clinician@demo.local')!).expect(200);
  hl7 = new Hl7Client({ host: '127.0.0.1', port: t.server.radiology.hl7!.port });
}, 120_000);

afterAll(async () => {
  await hl7?.close();
  await t?.close();
});

async function send(m: Hl7Message): Promise<{ code: string; text: string; controlId: string }> {
  const ack = await hl7.sendAndWait(m, { timeoutMs: 10_000 });
  const msa = ack.getSegment('MSA')!;
  return { code: msa.getField(1).toString(), controlId: msa.getField(2).toString(), text: msa.getField(3)?.toString() ?? '' };
}

async function cases() {
  return (await clinician.get('/api/cases?limit=200').expect(200)).body as { total: number; cases: { id: string; title: string; status: string; patient?: { name: string } | null }[] };
}

test('ADT^A04 registers, ORM^O01 creates the case, images join it, ADT^A08 updates, ORU^R01 attaches the report', async () => {
  const a04 = msg('ADT^A04', ['EVN|A04', PID]);
  const ack = await send(a04);
  expect(ack.code).toBe('AA');
  expect(ack.controlId).toBe(a04.header.getField(10).toString());

  expect((await send(msg('ORM^O01', [PID, 'ORC|NW|P-100|F-100', obr('ACC-HL7-1')]))).code).toBe('AA');
  let list = await cases();
  const order = list.cases.find((c) => c.title === 'Radiology order: CT chest')!;
  expect(order.patient).toEqual({ name: 'ALICE DOE', medicalRecordNumber: 'MRN-HL7-1', dateOfBirth: '1980-03-15', sex: 'female' });

  // The modality sends the images with the accession number: they join the order's case.
  const series = ctSeries({ patient: { name: 'DOE^ALICE', id: 'MRN-HL7-1', birthDate: '19800315', sex: 'F' }, accession: 'ACC-HL7-1', slices: 2 });
  const boundary = 'hl7bound';
  const body = Buffer.concat([...series.slices.flatMap((s) => [Buffer.from(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`), s.file, Buffer.from('\r\n')]), Buffer.from(`--${boundary}--`)]);
  const stow = await t.client().agent.post('/dicomweb/studies').set('Authorization', `Bearer ${TOKEN}`).set('Content-Type', `multipart/related; type="application/dicom"; boundary=${boundary}`).send(body);
  expect(stow.status).toBe(200);
  list = await cases();
  expect(list.cases.filter((c) => c.title === 'Radiology order: CT chest' || c.title === 'CT study')).toHaveLength(1);
  expect((await clinician.get(`/api/cases/${order.id}`).expect(200)).body.materials).toHaveLength(1);

  expect((await send(msg('ADT^A08', ['EVN|A08', 'PID|1||MRN-HL7-1^^^HOSP^MR||DOE^ALICE^MARIE||19800315|F']))).code).toBe('AA');
  const updated = (await clinician.get(`/api/cases/${order.id}`).expect(200)).body.case;
  expect(updated.patient.name).toBe('ALICE MARIE DOE');

  // The report comes a while after the order (the test server's clock stands still otherwise).
  t.clock.advance(60_000);
  const oru = await send(msg('ORU^R01', [PID, obr('ACC-HL7-1', 'F'), 'OBX|1|TX|IMP^Impression||No acute cardiopulmonary findings.||||||F', 'OBX|2|TX|REC^Recommendation||No follow-up needed.||||||F']));
  expect(oru.code).toBe('AA');
  const docs = (await clinician.get(`/api/cases/${order.id}/radiology/documents`).expect(200)).body.documents;
  expect(docs.map((d: { kind: string }) => d.kind)).toEqual(['order', 'report']);
  expect(docs[1].text).toBe('No acute cardiopulmonary findings.\nNo follow-up needed.');
  expect(docs[1].status).toBe('F');
  expect((await clinician.get(`/api/cases/${order.id}`).expect(200)).body.case.status).toBe('reported');

  const audit = await t.server.store.audit.listChain(siteId, 0, 10_000);
  expect(audit.filter((r) => r.type === 'radiology.hl7.received')).toHaveLength(4);
  expect(audit.filter((r) => r.type === 'radiology.hl7.applied')).toHaveLength(4);
});

test('a report for an unknown accession, an unsupported type, a missing PID and a foreign sender get AE/AR and change nothing', async () => {
  const before = await cases();
  const unknown = await send(msg('ORU^R01', [obr('ACC-NOPE'), 'OBX|1|TX|IMP||Text||||||F']));
  expect(unknown.code).toBe('AE');
  expect(unknown.text).toMatch(/accession/i);
  const unsupported = await send(msg('SIU^S12', ['SCH|1']));
  expect(unsupported.code).toBe('AR');
  expect(unsupported.text).toMatch(/not supported/);
  const noPid = await send(msg('ADT^A08', ['EVN|A08']));
  expect(noPid.code).toBe('AE');
  expect(noPid.text).toMatch(/PID-3/);
  const foreign = await send(msg('ADT^A04', ['EVN|A04', 'PID|1||MRN-X-2||INTRUDER^EVE||19900101|F'], 'OTHER_HOSPITAL'));
  expect(foreign.code).toBe('AR');
  expect(foreign.text).toMatch(/not allowed/);
  const after = await cases();
  expect(after.total).toBe(before.total);
  const audit = await t.server.store.audit.listChain(siteId, 0, 10_000);
  expect(audit.filter((r) => r.type === 'radiology.hl7.rejected').length).toBeGreaterThanOrEqual(3);
});

/** A raw MLLP connection: what the server answers to bytes a library would not send. */
function rawExchange(payload: Buffer, expectedFrames: number): Promise<{ frames: string[]; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(t.server.radiology.hl7!.port, '127.0.0.1');
    let data = Buffer.alloc(0);
    const frames: string[] = [];
    let closed = false;
    const finish = () => resolve({ frames, closed });
    socket.on('data', (chunk) => {
      data = Buffer.concat([data, chunk]);
      for (;;) {
        const start = data.indexOf(0x0b);
        const end = data.indexOf(0x1c);
        if (start < 0 || end < 0) break;
        frames.push(data.subarray(start + 1, end).toString('utf8'));
        data = data.subarray(end + 2);
      }
      if (frames.length >= expectedFrames) {
        socket.end();
      }
    });
    socket.on('close', () => {
      closed = true;
      finish();
    });
    socket.on('error', reject);
    socket.write(payload);
  });
}

test('garbage on the MLLP port, an unparseable frame and an oversized message are answered with AR', async () => {
  const before = await cases();
  const garbage = await rawExchange(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), 1);
  expect(garbage.frames[0]).toMatch(/MSA\|AR\|\|Bytes outside an MLLP frame/);

  const unparseable = await rawExchange(Buffer.concat([Buffer.from([0x0b]), Buffer.from('hello there, not HL7'), Buffer.from([0x1c, 0x0d])]), 1);
  expect(unparseable.frames[0]).toMatch(/MSA\|AR\|\|The message could not be parsed/);

  const huge = `MSH|^~\\&|RIS|RIS_A|CASECOLLAB|SITE|${now()}||ADT^A08|BIG1|P|2.5\rPID|1||MRN-HL7-1||${'X'.repeat(100 * 1024)}`;
  const oversized = await rawExchange(Buffer.concat([Buffer.from([0x0b]), Buffer.from(huge), Buffer.from([0x1c, 0x0d])]), 1);
  expect(oversized.frames[0]).toMatch(/MSA\|AR\|\|The message is larger than 65536 bytes/);
  await waitFor(() => oversized.closed, 'the server closes the connection after an oversized message');
  const after = await cases();
  expect(after.total).toBe(before.total);
  const names = after.cases.map((c) => c.patient?.name ?? '');
  expect(names.some((n) => n.includes('XXXX'))).toBe(false);
});

test('retention purges the patient registry with the cases: an ADT patient is forgotten after the retention period', async () => {
  const siteCases = (await cases()).cases.filter((c) => c.title.startsWith('Radiology order'));
  expect(siteCases.length).toBeGreaterThan(0);
  // Past the site's retention period (default 30 days; the test server's clock is ours to move).
  t.clock.advance(31 * 24 * 3600 * 1000);
  await t.server.app.retention.purgeAll('command');
  const patientKey = await t.server.app.radiology.keyHash(siteId, 'patient', 'MRN-HL7-1');
  expect(await t.server.store.radiology.getPatient(siteId, patientKey)).toBeNull();
  const audit = await t.server.store.audit.listChain(siteId, 0, 10_000);
  const purge = audit.filter((r) => r.type === 'retention.purge').at(-1)!;
  expect(purge.details.radiologyPatients).toBe(1);
  // A new ADT^A08 for the forgotten patient registers them afresh (no case to update).
  expect((await send(msg('ADT^A08', ['EVN|A08', PID]))).code).toBe('AA');
  expect(await t.server.store.radiology.getPatient(siteId, patientKey)).not.toBeNull();
});
