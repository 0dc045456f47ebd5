// Patient video follow-ups end to end against a real node: invite, consent, verification, waiting
// room, admission, audio and video both ways through the real mediasoup worker (wrtc peers in
// child processes), end, reuse refused, second device refused, drop and re-admission, decline,
// expiry, token guessing; and nothing of the case ever reaching the patient's socket.
import { createHash } from 'node:crypto';
import type { Socket as ClientSocket } from 'socket.io-client';
import { FollowUpPeer } from '../helpers/followups';
import { call, connect, cookieHeaderOf, recordSecret, startTestServer, waitFor, type TestClient, type TestServer } from '../helpers/server';

jest.setTimeout(120_000);

let t: TestServer;
let clinician: TestClient;
let pathologist: TestClient;
let pathologistId: string;
let caseId: string;
let clinicianSocket: ClientSocket;
const staffEvents: { event: string; payload: Record<string, unknown> }[] = [];
const peers: FollowUpPeer[] = [];

const PATIENT = { name: 'Ingrid Followup-Testpatient', dateOfBirth: '1961-07-14', medicalRecordNumber: 'FU-77123', sex: 'female' as const };
const CASE_TITLE = 'Follow-up case: melanoma margin review';
const CONTACT = 'Mrs Testpatient (mobile ending 4411)';

async function schedule(overrides: Record<string, unknown> = {}): Promise<{ id: string; token: string; inviteUrl: string }> {
  const now = t.clock.now().getTime();
  const res = await clinician
    .post(`/api/cases/${caseId}/followups`, {
      startsAt: new Date(now - 60_000).toISOString(),
      endsAt: new Date(now + 3600_000).toISOString(),
      contactLabel: CONTACT,
      ...overrides,
    })
    .expect(201);
  const inviteUrl: string = res.body.inviteUrl;
  const token = inviteUrl.split('#t=')[1]!;
  recordSecret(token, token.split('.')[1]);
  return { id: res.body.followUp.id, token, inviteUrl };
}

/** A patient device (its own cookie jar) that has opened the invite. */
async function openInvite(token: string, device = t.client()) {
  // As the page does: a fresh CSRF token for whatever session the device has now.
  await device.csrf();
  const res = await device.post('/api/followup/open', { token });
  if (res.status === 200) device.csrfToken = res.body.csrfToken;
  return { device, res };
}

async function consentedPatient(token: string) {
  const { device, res } = await openInvite(token);
  expect(res.status).toBe(200);
  await device.post('/api/followup/consent', { version: res.body.consent.version, accepted: true }).expect(200);
  return device;
}

async function patientPeer(device: TestClient): Promise<FollowUpPeer> {
  const p = await FollowUpPeer.start(t, cookieHeaderOf(device), { recordAll: true });
  peers.push(p);
  return p;
}

async function staffPeer(client: TestClient): Promise<FollowUpPeer> {
  const p = await FollowUpPeer.start(t, cookieHeaderOf(client));
  peers.push(p);
  return p;
}

function alerts(followUpId: string, kind: string) {
  return staffEvents.filter((e) => e.event === 'followup:alert' && e.payload.followUpId === followUpId && e.payload.kind === kind);
}

let siteId: string;

async function auditOf(followUpId: string) {
  const records = await t.server.app.store.audit.listChain(siteId, 0, 100_000);
  return records.filter((r) => r.objects.some((o) => o.type === 'followup' && o.id === followUpId));
}

async function auditTypes(followUpId: string): Promise<string[]> {
  return (await auditOf(followUpId)).map((r) => r.type);
}

beforeAll(async () => {
  t = await startTestServer({}, { rateLimits: { followUpOpenPerIpPerMinute: 200 } });
  const c = await t.demoLogin('clinician');
  clinician = c.client;
  const p = await t.demoLogin('pathologist');
  pathologist = p.client;
  const me = (await clinician.get('/api/me').expect(200)).body;

  siteId = me.user.siteId;
  pathologistId = (await pathologist.get('/api/me').expect(200)).body.user.id;
  caseId = (await clinician.post('/api/cases', { title: CASE_TITLE, clinicalQuestion: 'Margins clear?', patient: PATIENT }).expect(201)).body.case.id;
  recordSecret(PATIENT.name, PATIENT.medicalRecordNumber);
  clinicianSocket = await connect(t.socket(clinician));
  clinicianSocket.onAny((event: string, payload: Record<string, unknown>) => staffEvents.push({ event, payload }));
});
afterEach(async () => {
  await Promise.all(peers.splice(0).map((p) => p.close()));
});
afterAll(async () => {
  clinicianSocket?.disconnect();
  await t.close();
});

test('invite, consent, verification, waiting room, admission, audio and video both ways with screen share, end; nothing of the case reaches the patient', async () => {
  const { id, token, inviteUrl } = await schedule({ verification: 'dateOfBirth', colleagues: [pathologistId] });
  // The link carries >= 128 random bits in its fragment; the store keeps only the secret's hash.
  expect(inviteUrl).toMatch(new RegExp(`^https://[^/]+/followup\\.html#t=${id}\\.[A-Za-z0-9_-]{43}$`));
  const secret = token.split('.')[1]!;
  const stored = (await t.server.app.store.followUps.findById(id))!;
  expect(stored.tokenHash).toBe(createHash('sha256').update(secret).digest('hex'));
  expect(JSON.stringify(stored)).not.toContain(secret);
  expect(JSON.stringify(stored)).not.toContain(CONTACT);
  await clinician.post(`/api/followups/${id}/sent`, { channel: 'sms' }).expect(200);

  // Opening: the page learns what will happen and what is recorded; nothing else yet.
  const { device: patient, res: opened } = await openInvite(token);
  expect(opened.status).toBe(200);
  expect(opened.body).toMatchObject({ followUpId: id, state: 'opened', consented: false, verificationRequired: true, verified: false });
  expect(opened.body.consent.paragraphs.join(' ')).toMatch(/not recorded/);
  expect(JSON.stringify(opened.body)).not.toMatch(new RegExp([caseId, CASE_TITLE, PATIENT.name, PATIENT.dateOfBirth, CONTACT].map((s) => s.replace(/[()]/g, '.')).join('|')));

  // Nothing happens before consent: not the question, not the waiting room.
  const early = await patientPeer(patient);
  expect(await early.raw('followup:patient:wait', { deviceCheck: { camera: true, microphone: true } })).toMatchObject({ ok: false, error: { code: 'CONFLICT' } });
  await patient.post('/api/followup/verify', { dateOfBirth: PATIENT.dateOfBirth }).expect(409);
  await early.close();

  const consent = await patient.agent
    .post('/api/followup/consent')
    .set('X-CSRF-Token', patient.csrfToken!)
    .set('User-Agent', 'Mozilla/5.0 (Linux; Android 14) PatientPhone')
    .send({ version: opened.body.consent.version, accepted: true })
    .expect(200);
  expect(consent.body.consented).toBe(true);
  const [record] = await t.server.app.store.followUps.listConsents(stored.siteId, id);
  expect(record).toMatchObject({ textVersion: opened.body.consent.version, ip: expect.stringMatching(/127\.0\.0\.1/), userAgent: 'Mozilla/5.0 (Linux; Android 14) PatientPhone' });
  expect(record!.textSha256).toMatch(/^[0-9a-f]{64}$/);

  // The question is checked against the sealed record: a wrong answer says only "no".
  const wrong = await patient.post('/api/followup/verify', { dateOfBirth: '1961-07-15' }).expect(422);
  expect(wrong.body.error.code).toBe('VERIFICATION_FAILED');
  expect(JSON.stringify(wrong.body)).not.toContain(PATIENT.dateOfBirth);
  await waitFor(() => alerts(id, 'verification_failed').length === 1, 'clinician told of a failed verification');
  expect((await patient.post('/api/followup/verify', { dateOfBirth: PATIENT.dateOfBirth }).expect(200)).body.verified).toBe(true);

  // The waiting room: the clinician sees the patient arrive (label, device check, time waiting).
  const patientPeerProcess = await patientPeer(patient);
  const waited = await patientPeerProcess.raw<{ state: string }>('followup:patient:wait', { deviceCheck: { camera: true, microphone: true } });
  expect(waited).toMatchObject({ ok: true, data: { state: 'waiting' } });
  await waitFor(() => alerts(id, 'arrived').length === 1, 'clinician alerted of the arrival');
  expect(alerts(id, 'arrived')[0]!.payload.contactLabel).toBe(CONTACT);
  const list = (await clinician.get('/api/followups').expect(200)).body.followUps as { id: string; state: string; deviceCheck: unknown; waitingSince: string; contactLabel: string }[];
  expect(list.find((f) => f.id === id)).toMatchObject({ state: 'waiting', deviceCheck: { camera: true, microphone: true }, contactLabel: CONTACT, waitingSince: expect.any(String) });
  // The colleague sees it too.
  expect(((await pathologist.get('/api/followups').expect(200)).body.followUps as { id: string }[]).map((f) => f.id)).toContain(id);

  // Not admitted yet: no media.
  expect(await patientPeerProcess.raw('followup:patient:join', {})).toMatchObject({ ok: false, error: { code: 'CONFLICT' } });
  expect(await patientPeerProcess.raw('media:join', { roomId: id })).toMatchObject({ ok: false, error: { code: 'FORBIDDEN' } });

  await clinician.post(`/api/followups/${id}/messages`, { text: 'Running 5 minutes late, sorry' }).expect(200);
  await patientPeerProcess.waitForReceived('followup:message', (p) => p.text === 'Running 5 minutes late, sorry', 'patient reads the message');

  await clinician.post(`/api/followups/${id}/admit`, {}).expect(200);
  await patientPeerProcess.waitForReceived('followup:state', (p) => p.state === 'admitted', 'patient told of the admission');

  // The call: clinician and patient send audio and video; the clinician shares the screen.
  const doctor = await staffPeer(clinician);
  expect(await doctor.raw('followup:join', { followUpId: id })).toMatchObject({ ok: true, data: { roomId: id } });
  await doctor.cmd('setRoom', { roomId: id });
  await doctor.cmd('joinMedia');
  await doctor.cmd('produce', { source: 'mic' });
  await doctor.cmd('produce', { source: 'camera' });
  expect(await patientPeerProcess.raw('followup:patient:join', {})).toMatchObject({ ok: true, data: { roomId: id } });
  await patientPeerProcess.cmd('setRoom', { roomId: id });
  await patientPeerProcess.cmd('joinMedia');
  await patientPeerProcess.cmd('produce', { source: 'mic' });
  await patientPeerProcess.cmd('produce', { source: 'camera' });
  await patientPeerProcess.waitForFlow('patient receives the clinician audio and video', 2);
  await doctor.waitForFlow('clinician receives the patient audio and video', 2);
  await doctor.cmd('produce', { source: 'screen' });
  const withScreen = await patientPeerProcess.waitForFlow('patient receives the screen share', 3);
  expect(withScreen.map((s) => s.source).sort()).toEqual(['camera', 'mic', 'screen']);

  // A patient socket may not use anything else: every case-room event is refused.
  const caseEvents = [
    ['room:join', { caseId }],
    ['room:leave', { caseId }],
    ['chat:send', { caseId, text: 'hello', clientId: 'abcdefghijklmnopqrstuv' }],
    ['chat:history', { caseId }],
    ['annotation:list', { caseId }],
    ['viewport:update', { caseId }],
    ['media:join', { roomId: caseId }],
    ['followup:join', { followUpId: id }],
  ] as const;
  for (const [event, payload] of caseEvents) {
    const answer = await patientPeerProcess.raw(event, payload);
    expect([event, answer]).toEqual([event, { ok: false, error: expect.objectContaining({ code: expect.stringMatching(/^(FORBIDDEN|VALIDATION_FAILED)$/) }) }]);
  }
  // ...while the clinician's case room is busy with chat and annotations.
  const room = await connect(t.socket(clinician));
  expect((await call(room, 'room:join', { caseId })).ok).toBe(true);
  expect((await call(room, 'chat:send', { caseId, text: `About ${PATIENT.name}`, clientId: 'fu-chat-000000000000001' })).ok).toBe(true);
  room.disconnect();

  // The end: the patient is told and loses everything at once; the link is dead.
  await clinician.post(`/api/followups/${id}/end`, {}).expect(200);
  await patientPeerProcess.waitForReceived('followup:ended', (p) => p.reason === 'ended', 'patient told the follow-up ended');
  await waitFor(() => patientPeerProcess.events.some((e) => e.event === 'socket:disconnect'), 'patient socket closed');
  const media = t.server.realtime.media!;
  await waitFor(() => !media.room(id) || media.room(id)!.peers().length === 0, 'no peer left in the call');
  expect([401, 404]).toContain((await patient.get('/api/followup/me')).status);
  expect((await openInvite(token)).res.body.error.code).toBe('INVITE_INVALID');
  expect((await openInvite(token, patient)).res.body.error.code).toBe('INVITE_INVALID');

  // Everything the patient socket ever received: follow-up state, its messages, and media.
  const received = [...early.received(), ...patientPeerProcess.received()];
  expect(received.length).toBeGreaterThan(5);
  for (const { event } of received) expect(event).toMatch(/^(followup:(state|message|ended)|media:[a-z:]+|session:ended)$/);
  const everything = JSON.stringify(received);
  for (const secretValue of [caseId, CASE_TITLE, 'Margins clear', PATIENT.name, PATIENT.dateOfBirth, PATIENT.medicalRecordNumber, CONTACT]) {
    expect(everything).not.toContain(secretValue);
  }

  const types = await auditTypes(id);
  for (const type of ['followup.invite.create', 'followup.invite.sent', 'followup.invite.open', 'followup.consent', 'followup.verify', 'followup.wait', 'followup.message', 'followup.admit', 'followup.call.join', 'followup.call.leave', 'followup.end']) {
    expect([type, types.includes(type)]).toEqual([type, true]);
  }
});

test('one device at a time: before admission a new device takes over; after admission a second device is refused and the clinician told', async () => {
  const { id, token } = await schedule();
  const first = await consentedPatient(token);
  const firstPeer = await patientPeer(first);
  expect((await firstPeer.raw('followup:patient:wait', { deviceCheck: { camera: true, microphone: false } })).ok).toBe(true);

  // The patient switches to a phone before being admitted: the phone takes the invite over.
  const phone = await consentedPatient(token);
  await firstPeer.waitForReceived('followup:ended', (p) => p.reason === 'replaced', 'first device told it was replaced');
  expect((await first.get('/api/followup/me')).body.error.code).toBe('INVITE_INVALID');
  const phonePeer = await patientPeer(phone);
  expect((await phonePeer.raw('followup:patient:wait', { deviceCheck: { camera: true, microphone: true } })).ok).toBe(true);
  await clinician.post(`/api/followups/${id}/admit`, {}).expect(200);

  // Admitted: the invite is bound to the phone. A third device gets the generic refusal.
  const third = await openInvite(token);
  expect(third.res.status).toBe(404);
  expect(third.res.body.error.code).toBe('INVITE_INVALID');
  await waitFor(() => alerts(id, 'second_device').length === 1, 'clinician told of the second device');
  // The bound phone itself may open the link again.
  expect((await openInvite(token, phone)).res.status).toBe(200);
  expect((await phone.get('/api/followup/me').expect(200)).body.state).toBe('admitted');
  expect(await auditTypes(id)).toContain('followup.invite.open');
});

test('a patient who drops out of the call can be re-admitted within the window without a new link', async () => {
  const { id, token } = await schedule();
  const patient = await consentedPatient(token);
  const first = await patientPeer(patient);
  await first.raw('followup:patient:wait', { deviceCheck: { camera: true, microphone: true } });
  await clinician.post(`/api/followups/${id}/admit`, {}).expect(200);
  expect((await first.raw('followup:patient:join', {})).ok).toBe(true);

  // Network loss: the socket goes; the clinician sees the drop.
  await first.cmd('disconnect');
  await waitFor(() => alerts(id, 'dropped').length === 1, 'clinician told of the drop');
  expect((await clinician.get(`/api/followups/${id}`).expect(200)).body.followUp.state).toBe('dropped');

  // Back online, the same device waits again and is re-admitted.
  const again = await patientPeer(patient);
  expect(await again.raw('followup:patient:wait', { deviceCheck: { camera: true, microphone: true } })).toMatchObject({ ok: true, data: { state: 'waiting' } });
  await clinician.post(`/api/followups/${id}/admit`, {}).expect(200);
  await again.waitForReceived('followup:state', (p) => p.state === 'admitted', 'patient re-admitted');
  expect(await again.raw('followup:patient:join', {})).toMatchObject({ ok: true, data: { roomId: id } });
  await again.cmd('setRoom', { roomId: id });
  await again.cmd('joinMedia');
  expect(t.server.realtime.media!.room(id)!.peers().map((p) => p.identity.socketId)).toContain(again.socketId);
});

test('decline: the patient is told, access ends, and the link cannot be used again', async () => {
  const { id, token } = await schedule();
  const patient = await consentedPatient(token);
  const peer = await patientPeer(patient);
  await peer.raw('followup:patient:wait', { deviceCheck: { camera: false, microphone: true } });
  await clinician.post(`/api/followups/${id}/decline`, {}).expect(200);
  await peer.waitForReceived('followup:ended', (p) => p.reason === 'declined', 'patient told of the decline');
  await waitFor(() => peer.events.some((e) => e.event === 'socket:disconnect'), 'patient socket closed');
  expect((await openInvite(token, patient)).res.body.error.code).toBe('INVITE_INVALID');
  await clinician.post(`/api/followups/${id}/admit`, {}).expect(409);
  expect(await auditTypes(id)).toContain('followup.decline');
});

test('expiry: at the end of the window the link and the patient session stop working', async () => {
  const now = t.clock.now().getTime();
  const { id, token } = await schedule({ startsAt: new Date(now - 60_000).toISOString(), endsAt: new Date(now + 120_000).toISOString() });
  const patient = await consentedPatient(token);
  const peer = await patientPeer(patient);
  expect((await peer.raw('followup:patient:wait', { deviceCheck: { camera: true, microphone: true } })).ok).toBe(true);
  t.clock.advance(121_000);
  try {
    expect((await peer.raw('followup:patient:ping', {})).ok).toBe(false);
    await waitFor(() => peer.events.some((e) => e.event === 'socket:disconnect'), 'patient socket closed at expiry');
    expect((await patient.get('/api/followup/me')).status).toBe(401);
    expect((await openInvite(token)).res.body.error.code).toBe('INVITE_INVALID');
    await clinician.post(`/api/followups/${id}/admit`, {}).expect(409);
  } finally {
    t.clock.advance(-121_000);
  }
});

test('token guessing: every failure looks the same, and failures are limited per follow-up', async () => {
  const { id, token } = await schedule();
  const secret = token.split('.')[1]!;
  const ended = await schedule();
  await clinician.post(`/api/followups/${ended.id}/end`, {}).expect(200);
  const attempts = [
    'not-a-token-at-all',
    `AAAAAAAAAAAAAAAAAAAAAA.${secret}`, // unknown follow-up
    `${id}.${secret.slice(0, -2)}xx`, // wrong secret
    ended.token, // ended
  ];
  const answers = await Promise.all(attempts.map(async (a) => (await openInvite(a)).res));
  for (const res of answers) {
    expect(res.status).toBe(404);
    expect(res.body).toEqual(answers[0]!.body);
  }
  // Ten failures against one follow-up (whatever the IP) lock it for the hour, even the right token.
  for (let i = 0; i < 9; i++) expect((await openInvite(`${id}.${'x'.repeat(43)}`)).res.status).toBe(404);
  expect((await openInvite(token)).res.status).toBe(429);
  expect((await auditOf(id)).filter((r) => r.type === 'followup.invite.open' && r.outcome === 4).length).toBeGreaterThanOrEqual(10);
});

test('a patient session is refused on every staff HTTP route and gains nothing from a case id', async () => {
  const { token } = await schedule();
  const patient = await consentedPatient(token);
  const { listRoutes } = await import('../helpers/registry');
  const routes = listRoutes(t.server.app.handler).filter((r) => r.path.startsWith('/api/') && !r.path.startsWith('/api/followup/') && !['/api/auth/csrf', '/api/auth/login'].includes(r.path));
  expect(routes.length).toBeGreaterThan(20);
  for (const r of routes) {
    const path = r.path.replace(/:caseId/g, caseId).replace(/:[A-Za-z]+/g, 'AAAAAAAAAAAAAAAAAAAAAA');
    const method = r.method.toLowerCase() as 'get' | 'post' | 'patch' | 'put' | 'delete';
    const req = patient.agent[method](path).set('X-CSRF-Token', patient.csrfToken!);
    const res = method === 'get' || method === 'delete' ? await req : await req.send({});
    expect([r.key, res.status]).toEqual([r.key, expect.any(Number)]);
    expect([r.key, [401, 403, 404].includes(res.status)]).toEqual([r.key, true]);
  }
  // Still a working patient session afterwards (nothing above ended it or changed it).
  expect((await patient.get('/api/followup/me').expect(200)).body.consented).toBe(true);
});

test('colleagues: an invited colleague sees the follow-up and may join the call; staff not invited do not see it', async () => {
  const { id } = await schedule({ colleagues: [pathologistId] });
  const admin = (await t.demoLogin('site_admin')).client;
  await admin.get(`/api/followups/${id}`).expect(404);
  await pathologist.get(`/api/followups/${id}`).expect(200);
  const colleague = await connect(t.socket(pathologist));
  const outsider = await connect(t.socket(admin));
  try {
    expect(await call(colleague, 'followup:join', { followUpId: id })).toMatchObject({ ok: true, data: { roomId: id } });
    expect(await call(outsider, 'followup:join', { followUpId: id })).toMatchObject({ ok: false, error: { code: 'NOT_FOUND' } });
    // The outsider cannot reach the call's media either.
    expect(await call(outsider, 'media:join', { roomId: id })).toMatchObject({ ok: false, error: { code: 'FORBIDDEN' } });
    expect((await call(colleague, 'media:join', { roomId: id })).ok).toBe(true);
    expect(await auditTypes(id)).toContain('followup.call.join');
  } finally {
    colleague.disconnect();
    outsider.disconnect();
  }
});

test('the patient session has its own idle timeout (10 minutes), shorter than the window', async () => {
  const { token } = await schedule();
  const patient = await consentedPatient(token);
  t.clock.advance(9 * 60_000);
  try {
    await patient.get('/api/followup/me').expect(200);
    t.clock.advance(10 * 60_000 + 1000);
    const idle = await patient.get('/api/followup/me');
    expect(idle.status).toBe(401);
    expect(idle.body.error.code).toBe('SESSION_EXPIRED');
  } finally {
    t.clock.advance(-(19 * 60_000 + 1000));
  }
});

test('token guessing is limited per client IP too', async () => {
  const small = await startTestServer({ MEDIASOUP_WORKERS: '0' }, { rateLimits: { followUpOpenPerIpPerMinute: 5 } });
  try {
    const statuses: number[] = [];
    for (let i = 0; i < 7; i++) {
      const c = small.client();
      // A different follow-up id each time: only the per-IP budget can stop these.
      const res = await c.post('/api/followup/open', { token: `${String(i).padStart(22, 'B')}.${'y'.repeat(43)}` });
      statuses.push(res.status);
    }
    expect(statuses).toEqual([404, 404, 404, 404, 404, 429, 429]);
  } finally {
    await small.close();
  }
});

test('retention: follow-ups and their consent records are purged with the retention period; the consent events stay in the audit trail', async () => {
  const { id, token } = await schedule();
  await consentedPatient(token);
  expect(await t.server.app.store.followUps.listConsents(siteId, id)).toHaveLength(1);
  t.clock.advance(31 * 24 * 3600 * 1000);
  try {
    const reports = await t.server.app.retention.purgeAll('command');
    expect(reports.find((r) => r.siteId === siteId)!.followUps).toBeGreaterThanOrEqual(1);
    expect(await t.server.app.store.followUps.findById(id)).toBeNull();
    expect(await t.server.app.store.followUps.listConsents(siteId, id)).toEqual([]);
    const purge = (await t.server.app.store.audit.listChain(siteId, 0, 100_000)).filter((r) => r.type === 'retention.purge');
    expect(purge.at(-1)!.details.followUps).toBeGreaterThanOrEqual(1);
    expect(await auditTypes(id)).toContain('followup.consent');
  } finally {
    t.clock.advance(-31 * 24 * 3600 * 1000);
  }
});
