// Hostile HTTP input: thousands of generated requests against every mounted route (from the
// registry) - malformed, wrong-type, oversized, deeply nested and prototype-polluting bodies,
// wrong content types and methods, hostile path parameters and query strings - sent by a signed-in
// site admin with a valid CSRF token, so that they reach the schemas and handlers. The node never
// answers 500, every refusal is a typed `{ error: { code, message } }`, and nothing in the store
// changes (every table counted; the audit trail may only grow by refusals). Then slow and
// oversized connections: the node keeps serving while they hang, and its limits are in place.
import fc from 'fast-check';
import net from 'node:net';
import tls from 'node:tls';
import { ERROR_CODES } from '../../src/protocol/errors';
import { cookieHeaderOf, startTestServer, type TestServer } from '../helpers/server';
import { listRoutes } from '../helpers/registry';
import { pool, RawClient, storeSnapshot } from '../helpers/hostile';

const RUNS = Number(process.env.FUZZ_HTTP_RUNS ?? 4000);
const SEED = Number(process.env.FUZZ_SEED ?? Date.now() % 2_147_483_647);

let t: TestServer;
let raw: RawClient;
let ids: { caseId: string; materialId: string; userId: string; siteId: string };

beforeAll(async () => {
  t = await startTestServer(
    { MEDIASOUP_WORKERS: '0' },
    { rateLimits: { apiPerIpPerMinute: 10_000_000, caseWritesPerUserPerMinute: 10_000_000, uploadsPerUserPerMinute: 10_000_000, sensitivePerUserPerMinute: 10_000_000, adminReadsPerUserPerMinute: 10_000_000, adminHeavyPerUserPerMinute: 10_000_000, tilesPerUserPerMinute: 10_000_000 } as never },
  );
  const { client } = await t.demoLogin('site_admin');
  const caseId = (await client.post('/api/cases', { title: 'Fuzz target' }).expect(201)).body.case.id as string;
  const me = (await client.get('/api/me').expect(200)).body;
  const materialId = 'AAAAAAAAAAAAAAAAAAAAAB'; // well-formed, of no material
  ids = { caseId, materialId, userId: me.user.id, siteId: me.site.id };
  raw = new RawClient(t.url, t.ca, { cookie: cookieHeaderOf(client), 'x-csrf-token': client.csrfToken! });
});
afterAll(async () => {
  raw?.close();
  await t?.close();
});

interface HostileRequest {
  method: string;
  path: string;
  contentType: string | null;
  body: string | undefined;
  kind: string;
}

const hostileStrings = fc.constantFrom('..%2F..%2Fetc%2Fpasswd', '%00', "'%20OR%201%3D1%20--", '__proto__', 'constructor', '%E2%80%AE', 'x'.repeat(3000), '%F0%9F%92%A9', '-1', '1e309', 'NaN');
const KEYS = ['title', 'email', 'password', 'newPassword', 'currentPassword', 'name', 'role', 'permissions', 'patient', 'status', 'clinicalQuestion', 'lockoutThreshold', 'requireTotp', 'toSiteId', 'note', 'reason', 'code', 'type', 'features', 'geometry', 'caseId', 'totp', 'stopAccess'];

function bodyArbitrary() {
  const json = (v: unknown) => JSON.stringify(v) ?? 'null';
  return fc.oneof(
    { weight: 4, arbitrary: fc.anything({ maxDepth: 5, withBigInt: false }).map((v) => ({ kind: 'anything', body: json(v) })) },
    // Real field names with wrong values, plus one unknown key, so no body is ever valid.
    { weight: 5, arbitrary: fc.dictionary(fc.constantFrom(...KEYS), fc.anything({ maxDepth: 3 }), { maxKeys: 6 }).map((o) => ({ kind: 'near-miss', body: json({ ...o, fuzzUnknownKey: 1 }) })) },
    { weight: 1, arbitrary: fc.integer({ min: 50, max: 20_000 }).chain((d) => fc.constantFrom(`${'['.repeat(d)}${']'.repeat(d)}`, `${'{"a":'.repeat(d)}1${'}'.repeat(d)}`, `{"title":${'['.repeat(d)}${']'.repeat(d)}}`)).map((b) => ({ kind: 'deep', body: b })) },
    { weight: 1, arbitrary: fc.integer({ min: 65 * 1024, max: 160 * 1024 }).map((n) => ({ kind: 'oversized', body: `{"title":"${'x'.repeat(n)}"}` })) },
    { weight: 2, arbitrary: fc.oneof(fc.string({ maxLength: 200 }), fc.constantFrom('{', '{"a":}', '\u0000', '[1,2', '{"a":1}}', 'null', 'true', '"str"', '1e999', '\uFEFF{}')).map((b) => ({ kind: 'not-json', body: b })) },
    { weight: 1, arbitrary: fc.constantFrom('{"__proto__":{"polluted":true},"fuzzUnknownKey":1}', '{"constructor":{"prototype":{"polluted":true}}}', '{"title":"x","__proto__":{"isAdmin":true}}').map((b) => ({ kind: 'prototype', body: b })) },
  );
}

function requestArbitrary(routes: ReturnType<typeof listRoutes>) {
  const param = fc.oneof(
    { weight: 3, arbitrary: fc.constantFrom(ids.caseId, ids.materialId, ids.userId, ids.siteId, 'AAAAAAAAAAAAAAAAAAAAAA', '0', '0_0.jpeg') },
    { weight: 3, arbitrary: fc.string({ maxLength: 60 }).map((s) => encodeURIComponent(s) || 'x') },
    { weight: 2, arbitrary: hostileStrings },
  );
  const query = fc.array(fc.tuple(fc.constantFrom('limit', 'offset', 'q', 'status', 'name', 'days', 'format', 'a[b][c]', '__proto__[polluted]', 'constructor[prototype][polluted]', 'limit[]'), fc.oneof(fc.string({ maxLength: 20 }), hostileStrings)), { maxLength: 4 });
  return fc
    .record({
      route: fc.constantFrom(...routes),
      params: fc.array(param, { minLength: 4, maxLength: 4 }),
      query,
      body: bodyArbitrary(),
      wrongMethod: fc.boolean().map((b) => b && Math.random() < 0.1),
      contentType: fc.oneof(
        { weight: 8, arbitrary: fc.constant('application/json') },
        { weight: 1, arbitrary: fc.constantFrom('text/plain', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/json; charset=utf-16', 'application/octet-stream', 'application/dicom', 'multipart/related; type="application/dicom"; boundary=x') },
        { weight: 1, arbitrary: fc.constant(null) },
      ),
    })
    .map(({ route, params, query, body, wrongMethod, contentType }): HostileRequest => {
      let i = 0;
      const path = route.path.replace(/:[A-Za-z]+/g, () => params[i++ % params.length]!);
      // The unknown query key makes every request invalid for the strict query schemas, so no
      // state-changing request can pass even when its body happens to be well-formed.
      const qs = [['fuzz', '1'], ...query].map(([k, v]) => `${encodeURIComponent(k!).replace(/%5B/g, '[').replace(/%5D/g, ']')}=${encodeURIComponent(v!)}`).join('&');
      const method = wrongMethod ? (route.method === 'GET' ? 'PUT' : 'GET') : route.method;
      return { method, path: `${path}?${qs}`, contentType: method === 'GET' ? null : contentType, body: method === 'GET' ? undefined : body.body, kind: body.kind };
    });
}

test(`${RUNS} generated hostile HTTP requests: no 500, typed errors only, nothing stored`, async () => {
  const routes = listRoutes(t.server.app.handler).filter((r) => r.path.startsWith('/api/') || r.path.startsWith('/dicomweb/'));
  expect(routes.length).toBeGreaterThan(30);
  const siteId = ids.siteId;
  const auditBefore = (await t.server.store.audit.listChain(siteId, 0, 10_000_000)).length;
  const before = storeSnapshot(t.dataDir, ['sessions', 'audit_events', 'audit_object_refs']);
  const samples = fc.sample(requestArbitrary(routes), { numRuns: RUNS, seed: SEED });
  const failures: string[] = [];
  const statuses = new Map<string, number>();
  const kinds = new Map<string, number>();
  const msByKind = new Map<string, number>();
  await pool(samples, 8, async (r) => {
    const headers: Record<string, string> = r.contentType ? { 'content-type': r.contentType } : {};
    let res;
    const started = performance.now();
    try {
      res = await raw.request(r.method, r.path, r.body, headers);
      msByKind.set(r.kind, (msByKind.get(r.kind) ?? 0) + performance.now() - started);
    } catch (err) {
      failures.push(`${r.method} ${r.path.slice(0, 120)} [${r.kind}]: no answer (${(err as Error).message})`);
      return;
    }
    const label = `${r.method} ${r.path.slice(0, 120)} [${r.kind}, ${r.contentType}]`;
    statuses.set(String(res.status), (statuses.get(String(res.status)) ?? 0) + 1);
    if (res.status === 401 && process.env.FUZZ_DEBUG) console.log(label, res.body);
    kinds.set(r.kind, (kinds.get(r.kind) ?? 0) + 1);
    if (res.status >= 500) failures.push(`${label}: HTTP ${res.status} ${res.body.slice(0, 200)}`);
    if (res.status < 400) {
      // Reads of the fixture may succeed (tiles ignore the query); nothing else may.
      if (r.method !== 'GET') failures.push(`${label}: accepted with HTTP ${res.status}`);
      return;
    }
    let parsed: { error?: { code?: string; message?: string } } | null = null;
    try {
      parsed = JSON.parse(res.body);
    } catch {
      /* reported below */
    }
    const code = parsed?.error?.code;
    if (!code || typeof parsed?.error?.message !== 'string' || !Object.prototype.hasOwnProperty.call(ERROR_CODES, code) || code === 'INTERNAL') {
      failures.push(`${label}: untyped answer HTTP ${res.status} ${res.body.slice(0, 200)}`);
    }
    if (/at .*\.(ts|js):\d+|Error:|SqliteError|stack/i.test(res.body)) failures.push(`${label}: internals leaked ${res.body.slice(0, 200)}`);
  });
  // eslint-disable-next-line no-console
  console.log(`fuzz-http seed ${SEED}: ${samples.length} requests; statuses ${JSON.stringify(Object.fromEntries(statuses))}; kinds ${JSON.stringify(Object.fromEntries(kinds))}; mean ms by kind ${JSON.stringify(Object.fromEntries([...msByKind].map(([k, v]) => [k, Math.round(v / (kinds.get(k) ?? 1))])))}`);
  expect(failures.slice(0, 20)).toEqual([]);
  // The server runs in this process: a polluted prototype would show here.
  expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  expect(({} as Record<string, unknown>).isAdmin).toBeUndefined();
  expect(storeSnapshot(t.dataDir, ['sessions', 'audit_events', 'audit_object_refs'])).toEqual(before);
  const grown = (await t.server.store.audit.listChain(siteId, 0, 10_000_000)).slice(auditBefore);
  // Refusals may be audited (outcome 4/8/12); no successful action may have been recorded.
  expect(grown.filter((a) => a.outcome === 0).map((a) => a.type)).toEqual([]);
  expect((await raw.request('GET', '/healthz')).status).toBe(200);
}, 120_000);

function tlsConnect(port: number): Promise<tls.TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, ca: t.ca, servername: 'localhost' }, () => resolve(s));
    s.once('error', reject);
  });
}

test('slow and oversized connections do not exhaust the node; its limits are in place', async () => {
  const port = t.server.port;
  const held: net.Socket[] = [];
  const drip: NodeJS.Timeout[] = [];
  try {
    // 100 connections that never finish their headers, 100 that never finish a JSON body, 100
    // that connect and say nothing, all trickling a byte now and then.
    for (let i = 0; i < 100; i++) {
      const slowHeaders = await tlsConnect(port);
      slowHeaders.on('error', () => undefined);
      slowHeaders.write('GET /api/me HTTP/1.1\r\nHost: 127.0.0.1\r\n');
      held.push(slowHeaders);
      const slowBody = await tlsConnect(port);
      slowBody.on('error', () => undefined);
      slowBody.write(`POST /api/cases HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 60000\r\n\r\n{"title":"`);
      held.push(slowBody);
      const idle = net.connect(port, '127.0.0.1');
      idle.on('error', () => undefined);
      held.push(idle);
    }
    drip.push(setInterval(() => held.forEach((s, i) => i % 3 === 0 && !s.destroyed && s.write(`X-Slow-${Date.now()}: 1\r\n`)), 500));
    drip.push(setInterval(() => held.forEach((s, i) => i % 3 === 1 && !s.destroyed && s.write('x')), 500));
    // Meanwhile a normal user is served at once, including a write.
    const latencies: number[] = [];
    for (let i = 0; i < 20; i++) {
      const start = Date.now();
      const res = await raw.request('GET', '/api/me');
      latencies.push(Date.now() - start);
      expect(res.status).toBe(200);
    }
    const created = await raw.request('POST', '/api/cases', JSON.stringify({ title: 'During the slow attack' }), { 'content-type': 'application/json' });
    expect(created.status).toBe(201);
    expect(Math.max(...latencies)).toBeLessThan(2_000);
    // eslint-disable-next-line no-console
    console.log(`with 300 slow connections open: /api/me p100 ${Math.max(...latencies)} ms`);
  } finally {
    drip.forEach(clearInterval);
    held.forEach((s) => s.destroy());
  }
  // The limits that bound what slow or large connections can hold (src/http/server.ts,
  // src/realtime/server.ts, src/app.ts).
  const httpsServer = t.server.realtime.io.httpServer as unknown as { headersTimeout: number; requestTimeout: number; timeout: number; keepAliveTimeout: number };
  expect(httpsServer.headersTimeout).toBeGreaterThan(0);
  expect(httpsServer.headersTimeout).toBeLessThanOrEqual(20_000);
  // No byte either way for this long closes the connection (a body trickled slower is dropped).
  expect(httpsServer.timeout).toBeGreaterThan(0);
  expect(httpsServer.timeout).toBeLessThanOrEqual(120_000);
  expect((t.server.realtime.io.engine as unknown as { opts: { maxHttpBufferSize: number } }).opts.maxHttpBufferSize).toBeLessThanOrEqual(1024 * 1024);
  const tooBig = await raw.request('POST', '/api/cases', JSON.stringify({ title: 'x'.repeat(70 * 1024) }), { 'content-type': 'application/json' });
  expect(tooBig.status).toBe(413);
  expect(JSON.parse(tooBig.body).error.code).toBe('PAYLOAD_TOO_LARGE');
  // An HTTP long-polling frame over the limit is refused without taking the node down.
  const handshake = await raw.request('GET', '/socket.io/?EIO=4&transport=polling');
  const sid = /"sid":"([^"]+)"/.exec(handshake.body)?.[1];
  expect(sid).toBeDefined();
  const frame = await raw.request('POST', `/socket.io/?EIO=4&transport=polling&sid=${sid}`, '4' + 'x'.repeat(2 * 1024 * 1024), { 'content-type': 'text/plain;charset=UTF-8' });
  expect(frame.status).toBeGreaterThanOrEqual(400);
  expect((await raw.request('GET', '/healthz')).status).toBe(200);
}, 60_000);
