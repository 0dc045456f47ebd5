// Follow-ups across two nodes sharing a store, joined by a real Redis: the patient on node B, the
// clinician on node A. The arrival alert, the admission, the clinic's message and the end cross
// nodes; the call's media flows both ways between peers on different nodes (the room's media home
// forwards signalling); the end closes the patient's socket on the other node; a second device on
// node A is refused once the invite is bound on node B.
import type { Socket as ClientSocket } from 'socket.io-client';
import { FollowUpPeer } from '../helpers/followups';
import { TestRedis } from '../helpers/redis';
import { connect, cookieHeaderOf, recordSecret, socketFor, startTestServer, waitFor, type TestClient, type TestServer } from '../helpers/server';

jest.setTimeout(120_000);

let redis: TestRedis;
let a: TestServer;
let b: TestServer;
let clinician: TestClient;
let caseId: string;
let staffSocket: ClientSocket;
const staffEvents: { event: string; payload: Record<string, unknown> }[] = [];
const peers: FollowUpPeer[] = [];

beforeAll(async () => {
  redis = await TestRedis.start();
  a = await startTestServer({ REDIS_URL: redis.url });
  clinician = (await a.demoLogin('clinician')).client;
  b = await startTestServer({ REDIS_URL: redis.url }, { dataDir: a.dataDir });
  caseId = (await clinician.post('/api/cases', { title: 'Follow-up across nodes' }).expect(201)).body.case.id;
  staffSocket = await connect(socketFor(a.url, a.ca, clinician));
  staffSocket.onAny((event: string, payload: Record<string, unknown>) => staffEvents.push({ event, payload }));
}, 60_000);

afterAll(async () => {
  await Promise.all(peers.map((p) => p.close()));
  staffSocket?.disconnect();
  await b?.close();
  await a?.close();
  await redis?.kill();
});

test('patient on node B, clinician on node A: alert, admission, message, media both ways, second device refused, end', async () => {
  const now = a.clock.now().getTime();
  const created = await clinician
    .post(`/api/cases/${caseId}/followups`, { startsAt: new Date(now - 60_000).toISOString(), endsAt: new Date(now + 3600_000).toISOString(), contactLabel: 'Across-nodes patient' })
    .expect(201);
  const id = created.body.followUp.id as string;
  const token = (created.body.inviteUrl as string).split('#t=')[1]!;
  recordSecret(token, token.split('.')[1]);

  const device = b.client();
  const opened = await device.post('/api/followup/open', { token }).expect(200);
  device.csrfToken = opened.body.csrfToken;
  await device.post('/api/followup/consent', { version: opened.body.consent.version, accepted: true }).expect(200);
  const patient = await FollowUpPeer.start(b, cookieHeaderOf(device), { recordAll: true });
  peers.push(patient);
  expect((await patient.raw('followup:patient:wait', { deviceCheck: { camera: true, microphone: true } })).ok).toBe(true);
  await waitFor(() => staffEvents.some((e) => e.event === 'followup:alert' && e.payload.followUpId === id && e.payload.kind === 'arrived'), 'the clinician on A alerted of the arrival on B');

  await clinician.post(`/api/followups/${id}/messages`, { text: 'Nearly ready' }).expect(200);
  await patient.waitForReceived('followup:message', (p) => p.text === 'Nearly ready', 'message crosses nodes');
  await clinician.post(`/api/followups/${id}/admit`, {}).expect(200);
  await patient.waitForReceived('followup:state', (p) => p.state === 'admitted', 'admission crosses nodes');

  const doctor = await FollowUpPeer.start(a, cookieHeaderOf(clinician));
  peers.push(doctor);
  expect((await doctor.raw('followup:join', { followUpId: id })).ok).toBe(true);
  await doctor.cmd('setRoom', { roomId: id });
  await doctor.cmd('joinMedia');
  await doctor.cmd('produce', { source: 'mic' });
  await doctor.cmd('produce', { source: 'camera' });
  expect((await patient.raw('followup:patient:join', {})).ok).toBe(true);
  await patient.cmd('setRoom', { roomId: id });
  await patient.cmd('joinMedia');
  await patient.cmd('produce', { source: 'mic' });
  await patient.cmd('produce', { source: 'camera' });
  await patient.waitForFlow('patient on B receives the clinician on A', 2);
  await doctor.waitForFlow('clinician on A receives the patient on B', 2);

  // Bound to the device on B: another device, on A, gets the one refusal and the clinician is told.
  const second = a.client();
  await second.post('/api/followup/open', { token }).expect(404);
  await waitFor(() => staffEvents.some((e) => e.event === 'followup:alert' && e.payload.followUpId === id && e.payload.kind === 'second_device'), 'second device alert');

  await clinician.post(`/api/followups/${id}/end`, {}).expect(200);
  await patient.waitForReceived('followup:ended', (p) => p.reason === 'ended', 'end crosses nodes');
  await waitFor(() => patient.events.some((e) => e.event === 'socket:disconnect'), 'patient socket on B closed by the end on A');
  await device.post('/api/followup/open', { token }).expect(404);
});
