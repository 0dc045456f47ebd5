// Audit forwarding over the IHE ATNA transport: a real TLS syslog collector (node:tls, mutual
// TLS) receives every audit record as an RFC 5424 message in RFC 5425 octet-counting frames,
// with a DICOM audit message inside; records made while the collector was down arrive, in
// order, once it is up.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { generate } from 'selfsigned';
import { startTestServer, waitFor, type TestServer } from '../helpers/server';

interface Collector {
  messages: Buffer[];
  peerCertificates: string[];
  close(): Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

async function certificate(commonName: string, usage: 'serverAuth' | 'clientAuth') {
  return generate([{ name: 'commonName', value: commonName }], {
    keySize: 2048,
    algorithm: 'sha256',
    notAfterDate: new Date(Date.now() + 24 * 3600_000),
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
      { name: 'extKeyUsage', [usage]: true },
      { name: 'subjectAltName', altNames: [{ type: 7, ip: '127.0.0.1' }] },
    ],
  });
}

/** A syslog-over-TLS collector that parses RFC 5425 frames: "<octet count> <message>". */
function startCollector(port: number, server: { cert: string; key: string }, clientCa: string): Promise<Collector> {
  const messages: Buffer[] = [];
  const peerCertificates: string[] = [];
  const sockets = new Set<tls.TLSSocket>();
  const collector = tls.createServer({ cert: server.cert, key: server.key, ca: clientCa, requestCert: true, rejectUnauthorized: true }, (socket) => {
    sockets.add(socket);
    peerCertificates.push(socket.getPeerCertificate().subject.CN as string);
    let buffer = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      for (;;) {
        const space = buffer.indexOf(0x20);
        if (space < 0) return;
        const length = Number(buffer.subarray(0, space).toString('ascii'));
        if (!Number.isInteger(length) || length <= 0) throw new Error(`bad frame length: ${buffer.subarray(0, space).toString()}`);
        if (buffer.length < space + 1 + length) return;
        messages.push(buffer.subarray(space + 1, space + 1 + length));
        buffer = buffer.subarray(space + 1 + length);
      }
    });
    socket.on('close', () => sockets.delete(socket));
  });
  return new Promise((resolve) =>
    collector.listen(port, '127.0.0.1', () =>
      resolve({
        messages,
        peerCertificates,
        close: () =>
          new Promise<void>((done) => {
            for (const s of sockets) s.destroy();
            collector.close(() => done());
          }),
      }),
    ),
  );
}

let t: TestServer;
let collector: Collector | null = null;
afterAll(async () => {
  await t?.close();
  await collector?.close();
});

test('every audit record reaches the TLS collector as an RFC 5424 / DICOM audit message, also those made while it was down', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cc-syslog-'));
  const serverCert = await certificate('collector', 'serverAuth');
  const clientCert = await certificate('case-collab-node', 'clientAuth');
  fs.writeFileSync(path.join(dir, 'ca.pem'), serverCert.cert);
  fs.writeFileSync(path.join(dir, 'client.pem'), clientCert.cert);
  fs.writeFileSync(path.join(dir, 'client.key'), clientCert.private, { mode: 0o600 });
  const port = await freePort();

  // The collector is not up yet: the node starts anyway and queues what it records.
  t = await startTestServer({
    AUDIT_SYSLOG_URL: `tls://127.0.0.1:${port}`,
    AUDIT_SYSLOG_CA_FILE: path.join(dir, 'ca.pem'),
    AUDIT_SYSLOG_CERT_FILE: path.join(dir, 'client.pem'),
    AUDIT_SYSLOG_KEY_FILE: path.join(dir, 'client.key'),
  });
  const siteId = (await t.server.store.sites.list())[0]!.id;
  // Records of the first start (demo seeding) predate the forwarder; everything after is sent.
  const seeded = (await t.server.store.audit.listChain(siteId, 0, 100_000)).length;
  const { client } = await t.demoLogin('clinician');
  const me = (await client.get('/api/me').expect(200)).body;
  await waitFor(() => t.logs.some((l) => l.includes('"alert":"audit_syslog_unreachable"')), 'connection refused is logged');

  collector = await startCollector(port, { cert: serverCert.cert, key: serverCert.private }, clientCert.cert);
  const caseId = (await client.post('/api/cases', { title: 'Forwarded case' }).expect(201)).body.case.id;
  const chain = () => t.server.store.audit.listChain(me.site.id, 0, 100_000);
  const expected = (await chain()).slice(seeded);
  await waitFor(() => collector!.messages.length >= expected.length, `collector got ${expected.length} messages (has ${collector!.messages.length})`, 20_000);
  expect(collector.peerCertificates[0]).toBe('case-collab-node');

  const parsed = collector.messages.map((m) => {
    const text = m.toString('utf8');
    const header = /^<(\d+)>1 (\S+) (\S+) case-collab (\d+) IHE\+RFC-3881 - \uFEFF(<\?xml .*<\/AuditMessage>)$/s.exec(text);
    expect(header).not.toBeNull();
    return { pri: Number(header![1]), time: header![2]!, xml: header![5]! };
  });
  // In order and complete: the site's records appear with consecutive sequence numbers.
  const siteMessages = parsed.filter((p) => p.xml.includes(`AuditEnterpriseSiteID="${me.site.id}"`));
  const seqs = siteMessages.map((p) => Number(Buffer.from(/type="seq" value="([^"]+)"/.exec(p.xml)![1]!, 'base64').toString()));
  expect(seqs).toEqual(expected.map((r) => r.seq));
  expect(seqs[0]).toBe(seeded + 1);

  const login = siteMessages.find((p) => p.xml.includes('originalText="auth.login"'))!;
  expect(login.pri).toBe(10 * 8 + 5);
  expect(login.xml).toContain('<EventID csd-code="110114" codeSystemName="DCM" originalText="User Authentication"/>');
  expect(login.xml).toContain(`UserID="${me.user.id}"`);
  expect(login.xml).toMatch(/NetworkAccessPointID="[^"]*127\.0\.0\.1"/);
  const created = siteMessages.find((p) => p.xml.includes('originalText="case.create"'))!;
  expect(created.xml).toContain(`<ParticipantObjectIdentification ParticipantObjectID="${caseId}" ParticipantObjectTypeCode="2">`);
  expect(created.xml).toContain('EventActionCode="C"');
  // A failure is a warning (severity 4).
  await t.client().login(me.user.email, 'wrong password for syslog').expect(401);
  await waitFor(() => collector!.messages.some((m) => m.toString().startsWith(`<${10 * 8 + 4}>1 `) && m.includes('originalText="auth.login"')), 'failed login forwarded as a warning');
  // The forwarding state is a metric an operator can alert on.
  const metrics = await t.server.app.metrics.registry.metrics();
  expect(metrics).toMatch(/^audit_syslog_connected 1$/m);
  expect(metrics).toMatch(/^audit_syslog_dropped_total 0$/m);
  expect(Number(/^audit_syslog_sent_total (\d+)$/m.exec(metrics)![1])).toBeGreaterThanOrEqual(collector.messages.length);
  // No secret or patient field travels: only ids, types and outcomes.
  expect(collector.messages.map((m) => m.toString()).join('\n')).not.toContain('wrong password for syslog');
});

test('a collector whose certificate the CA file did not sign gets nothing: the node refuses to talk to an impostor', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cc-syslog-'));
  const trusted = await certificate('collector', 'serverAuth');
  const impostor = await certificate('collector', 'serverAuth');
  const clientCert = await certificate('case-collab-node', 'clientAuth');
  fs.writeFileSync(path.join(dir, 'ca.pem'), trusted.cert);
  const port = await freePort();
  const fake = await startCollector(port, { cert: impostor.cert, key: impostor.private }, clientCert.cert);
  const node = await startTestServer({ AUDIT_SYSLOG_URL: `tls://127.0.0.1:${port}`, AUDIT_SYSLOG_CA_FILE: path.join(dir, 'ca.pem') });
  try {
    await node.demoLogin('clinician');
    await waitFor(() => node.logs.some((l) => l.includes('"alert":"audit_syslog_unreachable"') && l.includes('self-signed')), 'certificate refused and logged');
    expect(fake.messages).toEqual([]);
    expect(await node.server.app.metrics.registry.metrics()).toMatch(/^audit_syslog_connected 0$/m);
  } finally {
    await node.close();
    await fake.close();
  }
});
