// ChatService over a real SQLite store and real envelope keys: a per-case sequence without gaps,
// idempotent retries by client id, text sealed at rest and never audited, authorisation by case
// and site, catch-up in pages, and one 'message' event per new message.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { AuditService } from '../../src/audit/service';
import { ChatService } from '../../src/chat/service';
import { DataKeys } from '../../src/crypto/dataKeys';
import { KeyRing } from '../../src/crypto/keyring';
import type { Actor } from '../../src/identity/authorize';
import { DEFAULT_POLICY, defaultPermissions } from '../../src/identity/model';
import { newId } from '../../src/ids';
import type { PublicChatMessage } from '../../src/protocol/chat';
import { SqliteStore } from '../../src/store/sqlite';

const NOW = new Date('2030-05-06T07:08:09.000Z');
const ctx = { ip: '203.0.113.9', userAgent: 'jest' };

let dir: string;
let store: SqliteStore;
let chat: ChatService;
let caseId: string;
let otherSiteCaseId: string;
const alice: Actor = { userId: newId(), siteId: newId(), role: 'clinician', permissions: defaultPermissions('clinician') };
const bob: Actor = { ...alice, userId: newId(), role: 'pathologist', permissions: defaultPermissions('pathologist') };
const outsider: Actor = { userId: newId(), siteId: newId(), role: 'site_admin', permissions: defaultPermissions('site_admin') };

async function makeCase(siteId: string): Promise<string> {
  const id = newId();
  const now = NOW.toISOString();
  await store.cases.create({ id, siteId, label: 'C-TEST-CASE', title: 'Chat case', clinicalQuestion: '', status: 'open', patientSealed: null, createdAt: now, updatedAt: now, createdBy: null, updatedBy: null });
  return id;
}

async function rejection(promise: Promise<unknown>): Promise<{ code?: string; status?: number; details?: unknown }> {
  try {
    await promise;
  } catch (err) {
    return err as { code?: string };
  }
  throw new Error('expected a rejection');
}

beforeEach(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cc-chat-'));
  store = SqliteStore.open(path.join(dir, 'store.sqlite'));
  const dataKeys = new DataKeys(store.dataKeys, KeyRing.open(path.join(dir, 'master.key')));
  chat = new ChatService(store, new AuditService(store.audit, () => NOW), dataKeys, () => NOW);
  for (const siteId of [alice.siteId, outsider.siteId]) {
    await store.sites.create({ id: siteId, name: siteId, policy: { ...DEFAULT_POLICY }, createdAt: NOW.toISOString(), updatedAt: NOW.toISOString() });
  }
  caseId = await makeCase(alice.siteId);
  otherSiteCaseId = await makeCase(outsider.siteId);
});

afterEach(async () => {
  chat.removeAllListeners();
  await store.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('send stores a message durably under seq 1, 2...; the text is sealed at rest and absent from the audit record', async () => {
  const first = await chat.send(alice, ctx, { caseId, text: '  Patient Jane Roe, MRN-448812: see slide 3  ', clientId: 'client-000001' }, 'Dr Alice');
  expect(first).toEqual({
    id: expect.stringMatching(/^[A-Za-z0-9_-]{22}$/),
    caseId,
    seq: 1,
    userId: alice.userId,
    userName: 'Dr Alice',
    text: 'Patient Jane Roe, MRN-448812: see slide 3',
    createdAt: NOW.toISOString(),
  });
  const second = await chat.send(bob, ctx, { caseId, text: 'Agreed.', clientId: 'client-000002' }, 'Dr Bob');
  expect(second.seq).toBe(2);

  const row = store.db.prepare('SELECT * FROM chat_messages WHERE id = ?').get(first.id) as Record<string, unknown>;
  expect(String(row.text_sealed)).toMatch(/^e1\./);
  expect(JSON.stringify(row)).not.toMatch(/Jane|Roe|448812/);

  const audit = (await store.audit.listChain(alice.siteId, 0, 100)).filter((r) => r.type === 'chat.message');
  expect(audit).toHaveLength(2);
  expect(audit[0]).toMatchObject({
    action: 'C',
    actor: { userId: alice.userId, role: 'clinician', ip: ctx.ip },
    objects: [
      { type: 'case', id: caseId },
      { type: 'chat_message', id: first.id },
    ],
    details: { seq: 1 },
  });
  expect(JSON.stringify(audit)).not.toMatch(/Jane|Roe|448812|slide 3/);
});

test('a retry with the same clientId returns the first message and stores, audits and announces nothing new', async () => {
  const events: PublicChatMessage[] = [];
  chat.on('message', ({ message }) => events.push(message));
  const first = await chat.send(alice, ctx, { caseId, text: 'Once only', clientId: 'retry-client-1' }, 'Dr Alice');
  const again = await chat.send(alice, ctx, { caseId, text: 'Once only', clientId: 'retry-client-1' }, 'Dr Alice');
  expect(again).toEqual(first);
  // Concurrent duplicates (two sockets resending) also collapse into the one message.
  const racing = await Promise.all([1, 2, 3].map(() => chat.send(alice, ctx, { caseId, text: 'Racing', clientId: 'retry-client-2' }, 'Dr Alice')));
  expect(new Set(racing.map((m) => m.id)).size).toBe(1);
  expect((await chat.since(alice, ctx, caseId, 0)).messages.map((m) => m.seq)).toEqual([1, 2]);
  expect(events.map((m) => m.id)).toEqual([first.id, racing[0]!.id]);
  expect((await store.audit.listChain(alice.siteId, 0, 100)).filter((r) => r.type === 'chat.message')).toHaveLength(2);
});

test("another user's clientId is a CONFLICT, not a way to read their message", async () => {
  await chat.send(alice, ctx, { caseId, text: 'Mine', clientId: 'shared-client' }, 'Dr Alice');
  const err = await rejection(chat.send(bob, ctx, { caseId, text: 'Mine too', clientId: 'shared-client' }, 'Dr Bob'));
  expect(err).toMatchObject({ code: 'CONFLICT', status: 409 });
});

test('text must be 1..4000 characters after trimming; the client id and case id must be well formed', async () => {
  for (const input of [
    { caseId, text: '   ', clientId: 'client-000001' },
    { caseId, text: 'x'.repeat(4001), clientId: 'client-000001' },
    { caseId, text: 'ok', clientId: 'short' },
    { caseId: 'not-an-id', text: 'ok', clientId: 'client-000001' },
    { caseId, text: 'ok', clientId: 'client-000001', siteId: outsider.siteId },
  ]) {
    expect(await rejection(chat.send(alice, ctx, input as never, 'Dr Alice'))).toMatchObject({ code: 'VALIDATION_FAILED', status: 400 });
  }
  expect((await chat.send(alice, ctx, { caseId, text: 'x'.repeat(4000), clientId: 'client-000001' }, 'Dr Alice')).text).toHaveLength(4000);
});

test("a case of another site, or no case at all, is NOT_FOUND; Stop Access is ACCESS_STOPPED", async () => {
  expect(await rejection(chat.send(alice, ctx, { caseId: otherSiteCaseId, text: 'hello', clientId: 'client-000001' }, 'Dr Alice'))).toMatchObject({ code: 'NOT_FOUND' });
  expect(await rejection(chat.since(alice, ctx, otherSiteCaseId, 0))).toMatchObject({ code: 'NOT_FOUND' });
  expect(await rejection(chat.since(alice, ctx, newId(), 0))).toMatchObject({ code: 'NOT_FOUND' });
  const stopped = { ...alice, permissions: { ...alice.permissions, stopAccess: true } };
  expect(await rejection(chat.send(stopped, ctx, { caseId, text: 'hello', clientId: 'client-000001' }, 'Dr Alice'))).toMatchObject({ code: 'ACCESS_STOPPED' });
  expect(await rejection(chat.since(stopped, ctx, caseId, 0))).toMatchObject({ code: 'ACCESS_STOPPED' });
});

test('since returns the decrypted messages after a seq in pages, with the latest seq', async () => {
  for (let i = 1; i <= 7; i++) await chat.send(i % 2 ? alice : bob, ctx, { caseId, text: `message ${i}`, clientId: `client-${String(i).padStart(6, '0')}` }, i % 2 ? 'Dr Alice' : 'Dr Bob');
  const all = await chat.since(bob, ctx, caseId, 0);
  expect(all.latestSeq).toBe(7);
  expect(all.messages.map((m) => [m.seq, m.text, m.userName])).toEqual(Array.from({ length: 7 }, (_, i) => [i + 1, `message ${i + 1}`, i % 2 ? 'Dr Bob' : 'Dr Alice']));
  const page = await chat.since(bob, ctx, caseId, 2, 3);
  expect(page).toMatchObject({ latestSeq: 7 });
  expect(page.messages.map((m) => m.seq)).toEqual([3, 4, 5]);
  expect(await chat.since(bob, ctx, caseId, 7)).toEqual({ messages: [], latestSeq: 7 });
  expect(await rejection(chat.since(bob, ctx, caseId, -1))).toMatchObject({ code: 'VALIDATION_FAILED' });
});

test('20 concurrent sends take seq 1..20 without a gap, each announced once', async () => {
  let announced = 0;
  chat.on('message', () => announced++);
  const sent = await Promise.all(Array.from({ length: 20 }, (_, i) => chat.send(alice, ctx, { caseId, text: `n${i}`, clientId: `concurrent-${i}-xx` }, 'Dr Alice')));
  expect(sent.map((m) => m.seq).sort((a, b) => a - b)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
  expect(announced).toBe(20);
});

test('deleteByCase removes the case chat (retention) and leaves other cases alone', async () => {
  const otherCase = await makeCase(alice.siteId);
  await chat.send(alice, ctx, { caseId, text: 'one', clientId: 'client-000001' }, 'Dr Alice');
  await chat.send(alice, ctx, { caseId, text: 'two', clientId: 'client-000002' }, 'Dr Alice');
  await chat.send(alice, ctx, { caseId: otherCase, text: 'three', clientId: 'client-000003' }, 'Dr Alice');
  expect(await chat.deleteByCase(outsider.siteId, caseId)).toBe(0);
  expect(await chat.deleteByCase(alice.siteId, caseId)).toBe(2);
  expect(await chat.since(alice, ctx, caseId, 0)).toEqual({ messages: [], latestSeq: 0 });
  expect((await chat.since(alice, ctx, otherCase, 0)).messages.map((m) => m.text)).toEqual(['three']);
});
