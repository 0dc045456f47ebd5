// Hostile socket input beyond fuzz.test.ts: events sent in an order that makes no sense from a
// socket that HAS joined the room (updates and deletions of annotations that do not exist,
// hand-overs to strangers, releases by non-presenters, syncs from far-future sequence numbers),
// wrong argument counts and binary attachments, and raw Engine.IO frames with payloads nested
// thousands deep that no client library would encode. Every acked event gets a typed answer, the
// connection survives, and no chat message, annotation or operation is stored.
import fc from 'fast-check';
import type { Socket as ClientSocket } from 'socket.io-client';
import { ERROR_CODES } from '../../src/protocol/errors';
import { call, connect, startTestServer, type TestServer } from '../helpers/server';
import { storeSnapshot } from '../helpers/hostile';

const RUNS = Number(process.env.FUZZ_SOCKET_RUNS ?? 3500);
const SEED = Number(process.env.FUZZ_SEED ?? Date.now() % 2_147_483_647);

let t: TestServer;
let socket: ClientSocket;
const tabs: ClientSocket[] = [];
let caseId: string;
let userId: string;

beforeAll(async () => {
  t = await startTestServer({ MEDIASOUP_WORKERS: '0' });
  const { client } = await t.demoLogin('clinician');
  caseId = (await client.post('/api/cases', { title: 'Out of order' }).expect(201)).body.case.id;
  userId = (await client.get('/api/me').expect(200)).body.user.id;
  socket = await connect(t.socket(client));
  const joined = await call(socket, 'room:join', { caseId });
  expect(joined.ok).toBe(true);
  // More tabs of the same user in the room: the events are spread over them so that most get
  // past the per-socket rate limit (checked last) into the handlers.
  for (let i = 0; i < 9; i++) {
    const tab = await connect(t.socket(client));
    expect((await call(tab, 'room:join', { caseId })).ok).toBe(true);
    tabs.push(tab);
  }
  tabs.push(socket);
});
afterAll(async () => {
  for (const tab of tabs) tab.disconnect();
  await t?.close();
});

const id22 = fc.stringMatching(/^[A-Za-z0-9_-]{22}$/);
const seq = fc.oneof(fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), fc.constantFrom(-1, 1.5, 2 ** 60, Number.MAX_SAFE_INTEGER + 2));
const square = { type: 'Polygon', coordinates: [[[1, 1], [5, 1], [5, 5], [1, 5], [1, 1]]] };

/** Well-formed events that make no sense now: they must be refused, not half-applied. */
function outOfOrder() {
  return fc.oneof(
    fc.record({ annotationId: id22, baseVersion: fc.integer({ min: 1, max: 1000 }) }).map((p) => ['annotation:update', { caseId, ...p, properties: { label: 'x' } }] as const),
    fc.record({ annotationId: id22, baseVersion: fc.integer({ min: 1, max: 1000 }) }).map((p) => ['annotation:delete', { caseId, ...p }] as const),
    id22.map((annotationId) => ['annotation:history', { caseId, annotationId }] as const),
    // A material that does not exist: the create is refused, nothing stored.
    fc.record({ materialId: id22, clientId: fc.stringMatching(/^[A-Za-z0-9_-]{8,64}$/) }).map((p) => ['annotation:create', { caseId, ...p, kind: 'rectangle', geometry: square, properties: { label: 'x' } }] as const),
    id22.map((toUserId) => ['presenter:handover', { caseId, toUserId }] as const),
    fc.constant(['presenter:release', { caseId }] as const),
    fc.constant(['presenter:handover', { caseId, toUserId: userId.length === 22 ? userId : 'AAAAAAAAAAAAAAAAAAAAAA' }] as const),
    // Another case, never joined.
    id22.map((other) => ['chat:send', { caseId: other, text: 'x', clientId: 'clientid-1234' }] as const),
    id22.map((other) => ['room:leave', { caseId: other }] as const),
    fc.record({ afterSeq: seq, limit: fc.oneof(fc.integer({ min: -5, max: 100_000 }), fc.constant(undefined)) }).map((p) => ['annotation:sync', { caseId, ...p }] as const),
    fc.record({ afterSeq: seq }).map((p) => ['chat:sync', { caseId, ...p }] as const),
    fc.record({ lastChatSeq: seq, lastAnnotationSeq: seq }).map((p) => ['room:join', { caseId, ...p }] as const),
  );
}

/** Wrong shapes: extra arguments, none, binary, arrays, huge strings, deep (but encodable) nesting. */
function wrongShape() {
  const events = ['room:join', 'chat:send', 'annotation:create', 'annotation:update', 'presence:state', 'presenter:take', 'chat:sync', 'annotation:sync'];
  let deep: unknown = { caseId };
  for (let i = 0; i < 40; i++) deep = { a: deep };
  return fc.tuple(
    fc.constantFrom(...events),
    fc.oneof(
      fc.constant(Buffer.from('binary attachment')),
      fc.constant([caseId]),
      fc.constant(deep),
      fc.string({ minLength: 1000, maxLength: 20_000 }),
      fc.record({ caseId: fc.constant(caseId), text: fc.string({ minLength: 5000, maxLength: 60_000 }), clientId: fc.constant('clientid-1') }),
      fc.anything({ maxDepth: 8, withTypedArray: true, withBigInt: false, withMap: true, withSet: true, withDate: true }),
    ),
  );
}

test(`${RUNS} out-of-order and wrong-shaped events from a joined socket: typed refusals, nothing stored`, async () => {
  const before = storeSnapshot(t.dataDir, ['sessions', 'audit_events', 'audit_object_refs']);
  const samples = fc.sample(fc.oneof({ weight: 3, arbitrary: outOfOrder() }, { weight: 2, arbitrary: wrongShape() }), { numRuns: RUNS, seed: SEED });
  const failures: string[] = [];
  const codes = new Map<string, number>();
  let ok = 0;
  let rateLimited = 0;
  for (const [i, [event, payload]] of samples.entries()) {
    const send = () => call(tabs[i % tabs.length]!, event, payload).catch((err: Error) => ({ ok: false as const, error: { code: `NO ANSWER (${err.message})`, message: '' } }));
    let res = await send();
    // The per-socket rate limit is checked last: wait it out, so the event reaches the handler.
    for (let retry = 0; retry < 30 && !res.ok && res.error.code === 'RATE_LIMITED'; retry++) {
      rateLimited++;
      await new Promise((r) => setTimeout(r, 100));
      res = await send();
    }
    if (res.ok) {
      ok++;
      // Reads (syncs, a repeated join) may succeed; a write may not.
      if (!['annotation:sync', 'chat:sync', 'room:join', 'annotation:history'].includes(event)) failures.push(`${event} ${JSON.stringify(payload).slice(0, 120)} was accepted`);
      continue;
    }
    codes.set(res.error.code, (codes.get(res.error.code) ?? 0) + 1);
    if (!Object.prototype.hasOwnProperty.call(ERROR_CODES, res.error.code) || res.error.code === 'INTERNAL') failures.push(`${event} ${JSON.stringify(payload)?.slice(0, 120)}: ${res.error.code}`);
  }
  // eslint-disable-next-line no-console
  console.log(`fuzz-socket seed ${SEED}: ${samples.length} events, ${ok} accepted reads, refusals ${JSON.stringify(Object.fromEntries(codes))}, ${rateLimited} rate-limited answers waited out`);
  expect(failures.slice(0, 20)).toEqual([]);
  expect(tabs.every((tab) => tab.connected)).toBe(true);
  // The events reached the handlers (their own refusals), not only the edge checks.
  expect(codes.get('NOT_FOUND') ?? 0).toBeGreaterThan(RUNS / 20);
  expect(storeSnapshot(t.dataDir, ['sessions', 'audit_events', 'audit_object_refs'])).toEqual(before);
}, 120_000);

test('raw frames no client would send (nesting 100 to 100,000 deep, bad packet types): the connection or the node survives', async () => {
  const engine = (socket.io as unknown as { engine: { write(data: string): void } }).engine;
  const before = storeSnapshot(t.dataDir, ['sessions', 'audit_events', 'audit_object_refs']);
  for (const depth of [100, 1_000, 10_000, 100_000]) {
    const nested = `${'['.repeat(depth)}${']'.repeat(depth)}`;
    const objects = `${'{"a":'.repeat(depth)}1${'}'.repeat(depth)}`;
    for (const frame of [`42["chat:send",${nested}]`, `42["annotation:create",{"caseId":"${caseId}","geometry":${objects}}]`, `421["room:join",${objects}]`, `45-["chat:send",{"_placeholder":true,"num":${depth}}]`]) {
      if (!socket.connected) break;
      engine.write(frame);
    }
  }
  for (const frame of ['9', '4', '42', '42[', '42{"a":1}', '42["__proto__",{}]', '42[1,2,3]', '43999[]', '46["x"]', '4' + '2'.repeat(5000)]) {
    if (!socket.connected) break;
    engine.write(frame);
  }
  // A frame the parser refuses closes that one connection (Socket.IO's own rule); the node and
  // every other connection carry on.
  const { client } = await t.demoLogin('pathologist');
  const other = await connect(t.socket(client));
  const joined = await call(other, 'room:join', { caseId });
  expect(joined.ok).toBe(true);
  other.disconnect();
  expect((await t.client().get('/healthz')).status).toBe(200);
  expect(storeSnapshot(t.dataDir, ['sessions', 'audit_events', 'audit_object_refs'])).toEqual(before);
});
