// Hostile input on the socket: thousands of malformed, oversized and out-of-order events. The
// server never crashes, answers each acked event with a typed error, and changes nothing.
import fc from 'fast-check';
import type { Socket as ClientSocket } from 'socket.io-client';
import { ERROR_CODES } from '../../src/protocol/errors';
import { call, connect, startTestServer, type TestServer } from '../helpers/server';

const EVENTS = [
  'room:join',
  'room:leave',
  'presence:state',
  'presenter:take',
  'presenter:handover',
  'presenter:release',
  'chat:send',
  'chat:sync',
  'annotation:create',
  'annotation:update',
  'annotation:delete',
  'annotation:sync',
  'annotation:history',
];

let t: TestServer;
let socket: ClientSocket;
let caseId: string;

beforeAll(async () => {
  t = await startTestServer();
  const { client } = await t.demoLogin('clinician');
  caseId = (await client.post('/api/cases', { title: 'Fuzz target' }).expect(201)).body.case.id;
  socket = await connect(t.socket(client));
});
afterAll(async () => {
  socket?.disconnect();
  await t.close();
});

const UNKNOWN = new Set(['no:such:event', '__proto__', 'constructor']);

/** Payloads that look almost right: the real case id, wrong types, extra keys, prototype keys. */
const nearMiss = () => fc.oneof(
  // (not undefined: JSON drops undefined keys, which would turn a near miss into a valid join)
  fc.record({ caseId: fc.constantFrom(caseId, 'AAAAAAAAAAAAAAAAAAAAAA', '', '../../etc'), extra: fc.anything().filter((v) => v !== undefined) }),
  fc.record({ caseId: fc.anything(), text: fc.string(), clientId: fc.anything() }),
  fc.record({ caseId: fc.constant('AAAAAAAAAAAAAAAAAAAAAA'), state: fc.string(), toUserId: fc.anything() }),
  fc.dictionary(fc.constantFrom('__proto__', 'constructor', 'caseId', 'baseVersion', 'geometry'), fc.anything()),
);

test('thousands of malformed and out-of-order events: typed errors only, no crash, no change', async () => {
  const before = {
    cases: (await t.server.store.cases.list((await t.server.store.sites.list())[0]!.id, { limit: 200, offset: 0 })).total,
    audit: (await t.server.store.audit.listChain((await t.server.store.sites.list())[0]!.id, 0, 1_000_000)).length,
  };
  const codes = new Set<string>();
  let answered = 0;
  await fc.assert(
    fc.asyncProperty(fc.oneof({ arbitrary: fc.constantFrom(...EVENTS), weight: 20 }, { arbitrary: fc.constantFrom(...UNKNOWN), weight: 1 }), fc.oneof(fc.anything(), nearMiss()), async (event, payload) => {
      // Unknown events get no answer (nothing listens): wait briefly for them only.
      const res = (await call(socket, event, payload, UNKNOWN.has(event) ? 100 : 10_000).catch(() => null)) as { ok: boolean; error?: { code: string } } | null;
      if (res === null) return UNKNOWN.has(event);
      answered++;
      if (res.ok) return true;
      codes.add(res.error!.code);
      return Object.prototype.hasOwnProperty.call(ERROR_CODES, res.error!.code) && res.error!.code !== 'INTERNAL';
    }),
    { numRuns: 2500 },
  );
  expect(socket.connected).toBe(true);
  expect(answered).toBeGreaterThan(1800);
  expect([...codes]).toEqual(expect.arrayContaining(['VALIDATION_FAILED']));
  const siteId = (await t.server.store.sites.list())[0]!.id;
  expect((await t.server.store.cases.list(siteId, { limit: 200, offset: 0 })).total).toBe(before.cases);
  // Nothing was joined or written: the audit chain did not grow.
  const grown = (await t.server.store.audit.listChain(siteId, 0, 1_000_000)).slice(before.audit);
  expect(grown.map((r) => `${r.type} ${JSON.stringify(r.details)}`)).toEqual([]);
  const health = await t.client().get('/healthz');
  expect(health.status).toBe(200);
}, 120_000);

test('an oversized event closes only that connection; the server keeps serving', async () => {
  const { client } = await t.demoLogin('pathologist');
  const victim = await connect(t.socket(client));
  const closed = new Promise((resolve) => victim.once('disconnect', resolve));
  victim.emit('chat:send', { caseId, text: 'x'.repeat(2 * 1024 * 1024), clientId: 'c1' }, () => undefined);
  await closed;
  expect((await t.client().get('/healthz')).status).toBe(200);
  expect(socket.connected).toBe(true);
  const again = await call(socket, 'room:join', { caseId });
  expect(again.ok).toBe(true);
});
