// The TLS settings testssl checks (scripts/testssl.sh, docs/security.md), asserted on every test
// run in a second instead of testssl's minute: TLS 1.0/1.1 and CBC suites refused, TLS 1.2 only
// with ECDHE + AEAD, TLS 1.3 offered, HSTS on every HTTPS answer, plain HTTP redirected.
import http from 'node:http';
import tls from 'node:tls';
import { startTestServer, type TestServer } from '../helpers/server';

let t: TestServer;
beforeAll(async () => {
  t = await startTestServer({ MEDIASOUP_WORKERS: '0' });
});
afterAll(() => t?.close());

function handshake(options: tls.ConnectionOptions): Promise<{ protocol: string | null; cipher: string } | { error: string }> {
  return new Promise((resolve) => {
    const socket = tls.connect({ host: '127.0.0.1', port: t.server.port, ca: t.ca, servername: 'localhost', ...options }, () => {
      const result = { protocol: socket.getProtocol(), cipher: socket.getCipher().name };
      socket.end();
      resolve(result);
    });
    socket.once('error', (err) => resolve({ error: err.message }));
  });
}

test.each(['TLSv1', 'TLSv1.1'] as const)('%s is refused', async (version) => {
  const r = await handshake({ minVersion: version, maxVersion: version, ciphers: 'DEFAULT:@SECLEVEL=0' });
  expect('error' in r).toBe(true);
});

test.each(['ECDHE-RSA-AES128-SHA256', 'ECDHE-RSA-AES256-SHA384', 'ECDHE-RSA-AES128-SHA', 'AES128-GCM-SHA256', 'AES256-SHA'])('TLS 1.2 CBC or non-forward-secret suite %s is refused', async (cipher) => {
  const r = await handshake({ maxVersion: 'TLSv1.2', ciphers: cipher });
  expect('error' in r).toBe(true);
});

test('TLS 1.2 negotiates ECDHE with AEAD; TLS 1.3 is offered', async () => {
  const v12 = await handshake({ maxVersion: 'TLSv1.2' });
  expect(v12).toEqual({ protocol: 'TLSv1.2', cipher: expect.stringMatching(/^ECDHE-(RSA|ECDSA)-(AES(128|256)-GCM-SHA(256|384)|CHACHA20-POLY1305)$/) });
  const v13 = await handshake({});
  expect(v13).toEqual({ protocol: 'TLSv1.3', cipher: expect.stringMatching(/^TLS_(AES|CHACHA20)/) });
});

test('every HTTPS answer carries HSTS for a year with subdomains; plain HTTP is redirected to HTTPS', async () => {
  for (const path of ['/healthz', '/api/me', '/no/such/page']) {
    const res = await t.client().get(path);
    expect(res.headers['strict-transport-security']).toMatch(/max-age=31536000; includeSubDomains/);
  }
  const redirect = await new Promise<http.IncomingMessage>((resolve, reject) => http.get({ host: '127.0.0.1', port: t.server.port, path: '/api/me' }, resolve).once('error', reject));
  redirect.resume();
  expect(redirect.statusCode).toBe(308);
  expect(redirect.headers.location).toBe(`https://127.0.0.1:${t.server.port}/api/me`);
});
