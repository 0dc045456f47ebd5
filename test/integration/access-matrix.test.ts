// Access-control matrix, generated from the registry (test/helpers/registry.ts): every HTTP route
// express mounted and every socket event the server listens to is tried by every role, with all
// permissions, with none, without the one the rule needs, from another site, anonymously and with
// Stop Access. The expected answer follows from the route's entry in EXPECTED (which action of
// src/identity/authorize.ts ACTIONS guards it) and that action's rule. A route or event with no
// entry fails the first test: adding one means deciding, here, who may use it.
//
// Patient sessions (follow-up guests, DESIGN 1.4; src/followups) have their own test at the end:
// a guest who opened an invite tries every staff route (401/403/404) and every socket event
// (FORBIDDEN). The guests' own routes have the access kind 'patient' (staff: UNAUTHENTICATED).
import sharp from 'sharp';
import type { Socket as ClientSocket } from 'socket.io-client';
import { ACTIONS, type Action } from '../../src/identity/authorize';
import { CONSENT } from '../../src/protocol/followups';
import type { Permissions, Role } from '../../src/protocol/identity';
import { MEDIA_SOURCES } from '../../src/protocol/media';
import { call, connect, startTestServer, waitFor, type TestClient, type TestServer } from '../helpers/server';
import { listRoutes, listSocketEvents } from '../helpers/registry';

const ROLES: Role[] = ['site_admin', 'clinician', 'pathologist'];
const PERMISSIONS = ['canUpload', 'canDownload', 'canDelete', 'transferStudy', 'viewPatientInfo'] as const;
type Perm = (typeof PERMISSIONS)[number];
const ctx = { ip: null, userAgent: 'access-matrix' };
const patient = { name: 'Matrix Patient', dateOfBirth: '1970-02-03', medicalRecordNumber: 'MX-1', sex: 'female' as const };

interface Fixtures {
  siteA: string;
  siteB: string;
  caseA: string;
  materialA: string;
  /** A user of site A none of the actors is, target of the admin routes. */
  targetUser: string;
  /** Site admins that own the fixtures and never take part in a probe (their rights never change). */
  admin: { A: ActorRef; B: ActorRef };
}
interface ActorRef {
  siteId: string;
  userId: string;
  role: Role;
  email: string;
  password: string;
  client: TestClient;
}
interface Req {
  path: string;
  body?: unknown;
  raw?: { type: string; data: Buffer };
}

/**
 * public: no session needed; session: any signed-in user; patient: only a patient's follow-up
 * session (src/followups; every staff session is UNAUTHENTICATED there); else the action.
 */
type Access = 'public' | 'session' | 'patient' | Action;
interface HttpRule {
  access: Access;
  /**
   * resource: acts on a record of the actor's site (another site's actor gets 404: it does not
   * exist for them); site: acts on the actor's own site or self, so "another site" means nothing.
   */
  scope: 'resource' | 'site';
  build(f: Fixtures, actor: ActorRef | null): Promise<Req> | Req;
  /** Codes that mean "authorisation passed, the operation itself refused" (a wrong password). */
  passed?: string[];
  /**
   * Routes whose resource this suite cannot create yet (a DICOM series) are probed only where the
   * answer does not depend on it: anonymously and with Stop Access. Their roles and permissions
   * are the radiology suite's to prove; give them a fixture here to lift this.
   */
  sessionChecksOnly?: true;
  /** Statuses without an error body that also mean "passed" (STOW-RS answers 409: none stored). */
  passedStatus?: number[];
  /** Sent from a client with no session whoever the actor is (login: a session would be replaced). */
  freshClient?: true;
}

let t: TestServer;
let f: Fixtures;
/** A follow-up of case A hosted by the site A admin, every site A actor invited (socket probes). */
let followUpA = '';
const actors = new Map<string, ActorRef>(); // `${site}:${role}`
let n = 0;

// ---- fixtures built through the services (fast, no HTTP), owned by the site A admin ----
const actorOf = (a: ActorRef) => ({ userId: a.userId, siteId: a.siteId, role: a.role, permissions: allPerms(true) });
function allPerms(value: boolean, except?: Perm): Permissions {
  const p = Object.fromEntries(PERMISSIONS.map((k) => [k, k === except ? !value : value])) as Omit<Permissions, 'stopAccess'>;
  return { stopAccess: false, ...p };
}
async function freshCase(siteAdmin = f.admin.A): Promise<string> {
  return (await t.server.app.cases.create(actorOf(siteAdmin), ctx, { title: `matrix ${n++}`, clinicalQuestion: '', status: 'open', patient })).id;
}
/** A follow-up of case A hosted by the site A admin, with `colleague` (if of site A) invited. */
async function freshFollowUp(colleague?: ActorRef | null): Promise<string> {
  const now = t.clock.now().getTime();
  const colleagues = colleague ? (colleague.siteId === f.siteA ? [colleague.userId] : []) : ROLES.map((r) => actors.get(`a:${r}`)!.userId);
  const created = await t.server.app.followUps.create(actorOf(f.admin.A), ctx, f.caseA, { startsAt: new Date(now - 60_000).toISOString(), endsAt: new Date(now + 3600_000).toISOString(), contactLabel: 'Matrix patient', verification: null, colleagues });
  return created.followUp.id;
}
const followUpBody = () => ({ startsAt: new Date(t.clock.now().getTime()).toISOString(), endsAt: new Date(t.clock.now().getTime() + 3600_000).toISOString(), contactLabel: `Matrix ${n++}` });
let png: Buffer;
async function freshMaterial(caseId: string): Promise<string> {
  const c = f.admin.A.client;
  const res = await c.agent.post(`/api/cases/${caseId}/materials?name=m${n++}.png`).set('X-CSRF-Token', c.csrfToken!).set('Content-Type', 'application/octet-stream').send(png);
  if (res.status !== 202) throw new Error(`upload fixture: ${res.status} ${JSON.stringify(res.body)}`);
  const id = res.body.material.id as string;
  await waitFor(async () => (await c.get(`/api/cases/${caseId}/materials/${id}`)).body.material?.status === 'ready', 'fixture material converted', 30_000);
  return id;
}
/** A pending transfer from site B to site A (site A agreed to receive from B). */
async function freshInboundTransfer(): Promise<string> {
  // The partner-route probes withdraw site A's agreement; give it again (idempotent).
  await t.server.app.transfers.agree(actorOf(f.admin.A), ctx, f.siteB);
  const caseB = await freshCase(f.admin.B);
  return (await t.server.app.transfers.send(actorOf(f.admin.B), ctx, caseB, { toSiteId: f.siteA, note: '' })).id;
}

const geojson = { type: 'FeatureCollection', features: [{ type: 'Feature', geometry: { type: 'Polygon', coordinates: [[[1, 1], [9, 1], [9, 9], [1, 9], [1, 1]]] }, properties: { label: 'matrix' } }] };
const caseParams = (p: string) => p.replace(':caseId', f.caseA).replace(':materialId', f.materialA);

/**
 * The expected access of every route. Keys are `METHOD path` as mounted. `build` gives a request
 * that is valid in every respect but authorisation, so that an allowed actor gets a success.
 */
const EXPECTED: Record<string, HttpRule> = {
  'GET /healthz': { access: 'public', scope: 'site', build: () => ({ path: '/healthz' }) },
  'GET /readyz': { access: 'public', scope: 'site', build: () => ({ path: '/readyz' }) },
  'GET /api/auth/csrf': { access: 'public', scope: 'site', build: () => ({ path: '/api/auth/csrf' }) },
  // A wrong password: the route is open to anyone, the answer is the generic refusal.
  'POST /api/auth/login': { access: 'public', scope: 'site', freshClient: true, build: () => ({ path: '/api/auth/login', body: { email: 'nobody@matrix.example', password: 'not the password at all' } }), passed: ['INVALID_CREDENTIALS'] },
  'POST /api/auth/logout': { access: 'session', scope: 'site', build: () => ({ path: '/api/auth/logout' }) },
  'GET /api/me': { access: 'self.read', scope: 'site', build: () => ({ path: '/api/me' }) },
  'POST /api/auth/password': { access: 'self.changePassword', scope: 'site', build: () => ({ path: '/api/auth/password', body: { currentPassword: 'not the current password', newPassword: 'a brand new long passphrase' } }), passed: ['INVALID_CREDENTIALS'] },
  'POST /api/auth/totp/enrol': { access: 'self.manageTotp', scope: 'site', build: () => ({ path: '/api/auth/totp/enrol' }) },
  'POST /api/auth/totp/confirm': { access: 'self.manageTotp', scope: 'site', build: () => ({ path: '/api/auth/totp/confirm', body: { code: '000000' } }), passed: ['INVALID_CREDENTIALS', 'CONFLICT'] },
  'POST /api/auth/totp/disable': { access: 'self.manageTotp', scope: 'site', build: () => ({ path: '/api/auth/totp/disable', body: { password: 'not the current password' } }), passed: ['INVALID_CREDENTIALS', 'CONFLICT'] },
  'GET /api/site': { access: 'site.read', scope: 'site', build: () => ({ path: '/api/site' }) },
  'PATCH /api/admin/site/policy': { access: 'site.updatePolicy', scope: 'site', build: () => ({ path: '/api/admin/site/policy', body: { lockoutThreshold: 5 } }) },
  'GET /api/admin/alerts': { access: 'site.readAlerts', scope: 'site', build: () => ({ path: '/api/admin/alerts' }) },
  'GET /api/admin/users': { access: 'user.list', scope: 'site', build: () => ({ path: '/api/admin/users' }) },
  'POST /api/admin/users': { access: 'user.create', scope: 'site', build: () => ({ path: '/api/admin/users', body: { email: `created.${n++}@matrix.example`, name: 'Created', role: 'pathologist' } }) },
  'GET /api/admin/users/:id': { access: 'user.read', scope: 'resource', build: () => ({ path: `/api/admin/users/${f.targetUser}` }) },
  'PATCH /api/admin/users/:id': { access: 'user.update', scope: 'resource', build: () => ({ path: `/api/admin/users/${f.targetUser}`, body: { name: `Target ${n++}` } }) },
  'POST /api/admin/users/:id/reset-password': { access: 'user.resetPassword', scope: 'resource', build: () => ({ path: `/api/admin/users/${f.targetUser}/reset-password` }) },
  'POST /api/admin/users/:id/unlock': { access: 'user.unlock', scope: 'resource', build: () => ({ path: `/api/admin/users/${f.targetUser}/unlock` }) },
  'POST /api/admin/users/:id/revoke-sessions': { access: 'user.revokeSessions', scope: 'resource', build: () => ({ path: `/api/admin/users/${f.targetUser}/revoke-sessions` }) },
  'GET /api/admin/audit': { access: 'audit.read', scope: 'site', build: () => ({ path: '/api/admin/audit' }) },
  'GET /api/admin/audit/export': { access: 'audit.export', scope: 'site', build: () => ({ path: '/api/admin/audit/export?format=csv' }) },
  'POST /api/admin/audit/verify': { access: 'audit.verify', scope: 'site', build: () => ({ path: '/api/admin/audit/verify' }) },
  'GET /api/admin/audit/verify': { access: 'audit.read', scope: 'site', build: () => ({ path: '/api/admin/audit/verify' }) },
  'GET /api/admin/usage': { access: 'usage.read', scope: 'site', build: () => ({ path: '/api/admin/usage' }) },
  'GET /api/cases': { access: 'case.list', scope: 'site', build: () => ({ path: '/api/cases' }) },
  'POST /api/cases': { access: 'case.create', scope: 'site', build: () => ({ path: '/api/cases', body: { title: `matrix new ${n++}` } }) },
  'GET /api/cases/:caseId': { access: 'case.read', scope: 'resource', build: () => ({ path: `/api/cases/${f.caseA}` }) },
  'PATCH /api/cases/:caseId': { access: 'case.updatePatient', scope: 'resource', build: () => ({ path: `/api/cases/${f.caseA}`, body: { patient: { ...patient, medicalRecordNumber: `MX-${n++}` } } }) },
  'DELETE /api/cases/:caseId': { access: 'case.delete', scope: 'resource', build: async () => ({ path: `/api/cases/${await freshCase()}` }) },
  'POST /api/cases/:caseId/materials': { access: 'material.upload', scope: 'resource', build: () => ({ path: `/api/cases/${f.caseA}/materials?name=up${n++}.png`, raw: { type: 'application/octet-stream', data: png } }) },
  'GET /api/cases/:caseId/materials/:materialId': { access: 'material.view', scope: 'resource', build: () => ({ path: caseParams('/api/cases/:caseId/materials/:materialId') }) },
  'DELETE /api/cases/:caseId/materials/:materialId': { access: 'material.delete', scope: 'resource', build: async () => ({ path: `/api/cases/${f.caseA}/materials/${await freshMaterial(f.caseA)}` }) },
  'GET /api/cases/:caseId/materials/:materialId/slide.dzi': { access: 'material.view', scope: 'resource', build: () => ({ path: caseParams('/api/cases/:caseId/materials/:materialId/slide.dzi') }) },
  'GET /api/cases/:caseId/materials/:materialId/slide_files/:level/:tile': { access: 'material.view', scope: 'resource', build: () => ({ path: caseParams('/api/cases/:caseId/materials/:materialId/slide_files/0/0_0.jpeg') }) },
  'GET /api/cases/:caseId/materials/:materialId/original': { access: 'material.download', scope: 'resource', build: () => ({ path: caseParams('/api/cases/:caseId/materials/:materialId/original') }) },
  'GET /api/cases/:caseId/materials/:materialId/annotations.geojson': { access: 'annotation.read', scope: 'resource', build: () => ({ path: caseParams('/api/cases/:caseId/materials/:materialId/annotations.geojson') }) },
  'POST /api/cases/:caseId/materials/:materialId/annotations/import': { access: 'annotation.write', scope: 'resource', build: () => ({ path: caseParams('/api/cases/:caseId/materials/:materialId/annotations/import'), body: geojson }) },
  // Radiology. Uploads of bytes that are not DICOM pass authorisation and are then refused.
  'POST /api/cases/:caseId/dicom': { access: 'material.upload', scope: 'resource', build: () => ({ path: `/api/cases/${f.caseA}/dicom`, raw: { type: 'application/dicom', data: Buffer.from('not a dicom file at all') } }), passed: ['UNSUPPORTED_DICOM', 'INVALID_DICOM', 'DICOM_INVALID', 'UNPROCESSABLE'] },
  'POST /dicomweb/studies': { access: 'material.upload', scope: 'site', build: () => ({ path: '/dicomweb/studies', raw: { type: 'multipart/related; type="application/dicom"; boundary=matrix', data: Buffer.from('--matrix\r\nContent-Type: application/dicom\r\n\r\nnot dicom\r\n--matrix--\r\n') } }), passed: ['UNSUPPORTED_DICOM', 'INVALID_DICOM', 'DICOM_INVALID'], passedStatus: [409] },
  'GET /api/cases/:caseId/radiology/documents': { access: 'case.read', scope: 'resource', build: () => ({ path: `/api/cases/${f.caseA}/radiology/documents` }) },
  'GET /api/cases/:caseId/materials/:materialId/stack': { access: 'material.view', scope: 'resource', sessionChecksOnly: true, build: () => ({ path: caseParams('/api/cases/:caseId/materials/:materialId/stack') }) },
  'GET /api/cases/:caseId/materials/:materialId/slices/:index.png': { access: 'material.view', scope: 'resource', sessionChecksOnly: true, build: () => ({ path: caseParams('/api/cases/:caseId/materials/:materialId/slices/0.png') }) },
  'GET /api/cases/:caseId/materials/:materialId/slices/:index/header': { access: 'material.view', scope: 'resource', sessionChecksOnly: true, build: () => ({ path: caseParams('/api/cases/:caseId/materials/:materialId/slices/0/header') }) },
  'GET /api/cases/:caseId/materials/:materialId/slices/:index/original': { access: 'material.download', scope: 'resource', sessionChecksOnly: true, build: () => ({ path: caseParams('/api/cases/:caseId/materials/:materialId/slices/0/original') }) },
  'GET /api/transfer-partners': { access: 'site.read', scope: 'site', build: () => ({ path: '/api/transfer-partners' }) },
  'PUT /api/admin/transfer-partners/:siteId': { access: 'site.manageTransfers', scope: 'site', build: () => ({ path: `/api/admin/transfer-partners/${f.siteB}` }) },
  'DELETE /api/admin/transfer-partners/:siteId': {
    access: 'site.manageTransfers',
    scope: 'site',
    build: async () => {
      await t.server.app.transfers.agree(actorOf(f.admin.A), ctx, f.siteB); // something to withdraw
      return { path: `/api/admin/transfer-partners/${f.siteB}` };
    },
  },
  'POST /api/cases/:caseId/transfers': { access: 'case.transfer', scope: 'resource', build: async () => ({ path: `/api/cases/${await freshCase()}/transfers`, body: { toSiteId: f.siteB } }) },
  'GET /api/transfers/inbox': { access: 'transfer.list', scope: 'site', build: () => ({ path: '/api/transfers/inbox' }) },
  'GET /api/transfers/outbox': { access: 'transfer.list', scope: 'site', build: () => ({ path: '/api/transfers/outbox' }) },
  'POST /api/transfers/:transferId/accept': { access: 'transfer.decide', scope: 'resource', build: async () => ({ path: `/api/transfers/${await freshInboundTransfer()}/accept` }) },
  // Follow-ups (src/followups). Staff routes act on a follow-up the actor was invited to.
  'POST /api/cases/:caseId/followups': { access: 'followup.create', scope: 'resource', build: () => ({ path: `/api/cases/${f.caseA}/followups`, body: followUpBody() }) },
  'GET /api/cases/:caseId/followups': { access: 'followup.manage', scope: 'resource', build: () => ({ path: `/api/cases/${f.caseA}/followups` }) },
  'GET /api/followups': { access: 'followup.manage', scope: 'site', build: () => ({ path: '/api/followups' }) },
  'GET /api/followups/:followUpId': { access: 'followup.manage', scope: 'resource', build: async (_f, a) => ({ path: `/api/followups/${await freshFollowUp(a)}` }) },
  'POST /api/followups/:followUpId/sent': { access: 'followup.manage', scope: 'resource', build: async (_f, a) => ({ path: `/api/followups/${await freshFollowUp(a)}/sent`, body: { channel: 'sms' } }) },
  'POST /api/followups/:followUpId/colleagues': { access: 'followup.manage', scope: 'resource', build: async (_f, a) => ({ path: `/api/followups/${await freshFollowUp(a)}/colleagues`, body: { userId: f.targetUser } }) },
  // Nobody is waiting: authorisation passed, the admission itself is refused.
  'POST /api/followups/:followUpId/admit': { access: 'followup.manage', scope: 'resource', build: async (_f, a) => ({ path: `/api/followups/${await freshFollowUp(a)}/admit` }), passed: ['CONFLICT'] },
  'POST /api/followups/:followUpId/decline': { access: 'followup.manage', scope: 'resource', build: async (_f, a) => ({ path: `/api/followups/${await freshFollowUp(a)}/decline` }) },
  'POST /api/followups/:followUpId/end': { access: 'followup.manage', scope: 'resource', build: async (_f, a) => ({ path: `/api/followups/${await freshFollowUp(a)}/end` }) },
  'POST /api/followups/:followUpId/messages': { access: 'followup.manage', scope: 'resource', build: async (_f, a) => ({ path: `/api/followups/${await freshFollowUp(a)}/messages`, body: { text: 'Running late' } }) },
  // The patient's routes: opening an invite is public (a wrong token gets the one refusal).
  'POST /api/followup/open': { access: 'public', scope: 'site', freshClient: true, build: () => ({ path: '/api/followup/open', body: { token: `${'A'.repeat(21)}${n++ % 10}.not-the-secret` } }), passed: ['INVITE_INVALID'] },
  'GET /api/followup/me': { access: 'patient', scope: 'site', build: () => ({ path: '/api/followup/me' }) },
  'POST /api/followup/consent': { access: 'patient', scope: 'site', build: () => ({ path: '/api/followup/consent', body: { version: CONSENT.version, accepted: true } }) },
  'POST /api/followup/verify': { access: 'patient', scope: 'site', build: () => ({ path: '/api/followup/verify', body: { dateOfBirth: '1970-02-03' } }) },
  'POST /api/followup/leave': { access: 'patient', scope: 'site', build: () => ({ path: '/api/followup/leave' }) },
  'POST /api/transfers/:transferId/refuse': { access: 'transfer.decide', scope: 'resource', build: async () => ({ path: `/api/transfers/${await freshInboundTransfer()}/refuse`, body: { reason: 'matrix' } }) },
};

/** Socket events: the action the dispatcher (or the handler) checks, and a valid payload. */
interface EventRule {
  access: Action;
  /** room:join authorises the case itself; every other event needs the room joined first. */
  joins?: boolean;
  payload(f: Fixtures): unknown;
  /**
   * false: not a case-room event (follow-up calls): joining a case room changes nothing, and
   * another site's actor gets NOT_FOUND (the follow-up does not exist for them).
   */
  caseRoom?: false;
  /** Volatile events have no ack: they are checked through the room instead (see below). */
  volatile?: boolean;
  passed?: string[];
}
const uuid = '5d0c8a9e-7f6b-4c3a-9e2d-1b0a9c8d7e6f';
const media = (extra: object = {}): EventRule => ({ access: 'media.join', payload: (x) => ({ roomId: x.caseA, ...extra }), passed: ['MEDIA_UNAVAILABLE', 'NOT_FOUND', 'CONFLICT'] });
const EVENTS: Record<string, EventRule> = {
  'room:join': { access: 'case.read', joins: true, payload: (x) => ({ caseId: x.caseA }) },
  'room:leave': { access: 'case.read', payload: (x) => ({ caseId: x.caseA }) },
  'presence:state': { access: 'case.read', payload: (x) => ({ caseId: x.caseA, state: 'idle' }) },
  // Only clinicians and site admins take the presenter role (a product rule, answered FORBIDDEN).
  'presenter:take': { access: 'case.read', payload: (x) => ({ caseId: x.caseA }), passed: ['FORBIDDEN_BY_PRODUCT_RULE'] },
  'presenter:handover': { access: 'case.read', payload: (x) => ({ caseId: x.caseA, toUserId: 'AAAAAAAAAAAAAAAAAAAAAA' }), passed: ['NOT_FOUND', 'FORBIDDEN_BY_PRODUCT_RULE'] },
  'presenter:release': { access: 'case.read', payload: (x) => ({ caseId: x.caseA }), passed: ['FORBIDDEN_BY_PRODUCT_RULE'] },
  'viewport:update': { access: 'case.read', volatile: true, payload: (x) => ({ caseId: x.caseA, materialId: x.materialA, center: { x: 0.5, y: 0.5 }, zoom: 1, rotation: 0 }) },
  'pointer:update': { access: 'case.read', volatile: true, payload: (x) => ({ caseId: x.caseA, materialId: x.materialA, position: { x: 0.1, y: 0.2 } }) },
  'chat:send': { access: 'chat.send', payload: (x) => ({ caseId: x.caseA, text: 'matrix', clientId: `matrix-${n++}-chat` }) },
  'chat:sync': { access: 'chat.read', payload: (x) => ({ caseId: x.caseA, afterSeq: 0 }) },
  'annotation:create': { access: 'annotation.write', payload: (x) => ({ caseId: x.caseA, materialId: x.materialA, clientId: `matrix-${n++}-ann`, kind: 'rectangle', geometry: { type: 'Polygon', coordinates: [[[1, 1], [5, 1], [5, 5], [1, 5], [1, 1]]] }, properties: { label: 'm' } }) },
  'annotation:update': { access: 'annotation.write', payload: (x) => ({ caseId: x.caseA, annotationId: 'AAAAAAAAAAAAAAAAAAAAAA', baseVersion: 1, properties: { label: 'n' } }), passed: ['NOT_FOUND'] },
  'annotation:delete': { access: 'annotation.write', payload: (x) => ({ caseId: x.caseA, annotationId: 'AAAAAAAAAAAAAAAAAAAAAA', baseVersion: 1 }), passed: ['NOT_FOUND'] },
  'annotation:sync': { access: 'annotation.read', payload: (x) => ({ caseId: x.caseA, afterSeq: 0 }) },
  'annotation:history': { access: 'annotation.read', payload: (x) => ({ caseId: x.caseA, annotationId: 'AAAAAAAAAAAAAAAAAAAAAA' }), passed: ['NOT_FOUND'] },
  // Media signalling (the media suite tests what each does; here: who may ask at all).
  'media:join': media(),
  'media:leave': media(),
  'media:transport:create': media({ direction: 'recv' }),
  'media:transport:connect': media({ transportId: uuid, dtlsParameters: { role: 'client', fingerprints: [{ algorithm: 'sha-256', value: 'AB:'.repeat(31) + 'AB' }] } }),
  'media:transport:restartIce': media({ transportId: uuid }),
  'media:produce': media({ transportId: uuid, kind: 'audio', rtpParameters: { codecs: [{ mimeType: 'audio/opus', payloadType: 111, clockRate: 48000, channels: 2 }] }, source: MEDIA_SOURCES[0] }),
  'media:producer:pause': media({ producerId: uuid }),
  'media:producer:resume': media({ producerId: uuid }),
  'media:producer:close': media({ producerId: uuid }),
  'media:consume': media({ transportId: uuid, producerId: uuid, rtpCapabilities: { codecs: [] } }),
  'media:consumer:pause': media({ consumerId: uuid }),
  'media:consumer:resume': media({ consumerId: uuid }),
  'media:consumer:layers': media({ consumerId: uuid, spatialLayer: 0 }),
  // Follow-up calls (src/followups): staff the host invited; every actor of site A is invited.
  'followup:join': { access: 'followup.manage', caseRoom: false, payload: () => ({ followUpId: followUpA }) },
  'followup:leave': { access: 'followup.manage', caseRoom: false, payload: () => ({ followUpId: followUpA }) },
};

/** What the rule says this actor gets: allowed, or the code of the refusal. */
function expected(access: Access, role: Role | null, perms: Permissions, sameSite: boolean, scope: 'resource' | 'site'): 'allowed' | string {
  if (access === 'public') return 'allowed';
  if (access === 'patient') return 'UNAUTHENTICATED';
  if (role === null) return 'UNAUTHENTICATED';
  if (perms.stopAccess) return 'ACCESS_STOPPED';
  if (access === 'session') return 'allowed';
  if (!sameSite && scope === 'resource') return 'NOT_FOUND';
  const rule = ACTIONS[access] as { roles?: readonly Role[]; permission?: Perm };
  if (rule.roles && !rule.roles.includes(role)) return 'FORBIDDEN';
  if (rule.permission && !perms[rule.permission]) return 'FORBIDDEN';
  return 'allowed';
}

async function setPermissions(a: ActorRef, perms: Permissions): Promise<void> {
  await t.server.store.users.update(a.siteId, a.userId, { permissions: perms, updatedAt: new Date().toISOString(), updatedBy: null });
}

async function login(a: ActorRef): Promise<void> {
  a.client = t.client();
  await a.client.login(a.email, a.password).expect(200);
}

async function send(client: TestClient, method: string, req: Req) {
  if (!client.csrfToken) await client.csrf();
  const m = method.toLowerCase() as 'get' | 'post' | 'put' | 'patch' | 'delete';
  let r = client.agent[m](req.path).set('X-CSRF-Token', client.csrfToken!);
  if (req.raw) r = r.set('Content-Type', req.raw.type).send(req.raw.data);
  else if (req.body !== undefined) r = r.send(req.body as object);
  const res = await r;
  // GET /api/auth/csrf issues a new token (the old one stops matching): keep it, as a browser would.
  if (typeof res.body?.csrfToken === 'string') client.csrfToken = res.body.csrfToken;
  return res;
}

function outcome(status: number, body: { error?: { code?: string } } | undefined, passed: string[] = [], passedStatus: number[] = []): 'allowed' | string {
  const code = body?.error?.code;
  if (status < 400 || (!code && passedStatus.includes(status))) return 'allowed';
  if (code && passed.includes(code)) return 'allowed';
  return code ?? `HTTP ${status}`;
}

beforeAll(async () => {
  t = await startTestServer(
    { MEDIASOUP_WORKERS: '0' },
    { rateLimits: { apiPerIpPerMinute: 1_000_000, caseWritesPerUserPerMinute: 100_000, uploadsPerUserPerMinute: 100_000, sensitivePerUserPerMinute: 100_000, adminReadsPerUserPerMinute: 100_000, adminHeavyPerUserPerMinute: 100_000, loginPerAccountPerMinute: 100_000, loginPerIpPerMinute: 100_000, followUpOpenPerIpPerMinute: 100_000 } as never },
  );
  png = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#c8a' } }).png().toBuffer();
  const siteA = (await t.server.app.identity.createSite('Matrix A')).id;
  const siteB = (await t.server.app.identity.createSite('Matrix B')).id;
  for (const [siteName, siteId] of [['a', siteA], ['b', siteB]] as const) {
    for (const role of ROLES) {
      const email = `${role}.${siteName}@matrix.example`;
      const created = await t.server.app.identity.createUser(null, ctx, { siteId, email, name: `${role} ${siteName}`, role });
      const c = t.client();
      await c.login(email, created.oneTimePassword).expect(200);
      const password = `matrix passphrase for ${role} ${siteName} ${Math.random()}`;
      await c.post('/api/auth/password', { currentPassword: created.oneTimePassword, newPassword: password }).expect(200);
      const a: ActorRef = { siteId, userId: created.user.id, role, email, password, client: c };
      actors.set(`${siteName}:${role}`, a);
      await setPermissions(a, allPerms(true));
    }
  }
  const owners: ActorRef[] = [];
  for (const [siteName, siteId] of [['a', siteA], ['b', siteB]] as const) {
    const email = `owner.${siteName}@matrix.example`;
    const created = await t.server.app.identity.createUser(null, ctx, { siteId, email, name: `owner ${siteName}`, role: 'site_admin' });
    const c = t.client();
    await c.login(email, created.oneTimePassword).expect(200);
    await c.post('/api/auth/password', { currentPassword: created.oneTimePassword, newPassword: `owner passphrase ${siteName} ${Math.random()}` }).expect(200);
    const owner: ActorRef = { siteId, userId: created.user.id, role: 'site_admin', email, password: '', client: c };
    await setPermissions(owner, allPerms(true));
    owners.push(owner);
  }
  const target = await t.server.app.identity.createUser(null, ctx, { siteId: siteA, email: 'target@matrix.example', name: 'Target', role: 'clinician' });
  f = { siteA, siteB, caseA: '', materialA: '', targetUser: target.user.id, admin: { A: owners[0]!, B: owners[1]! } };
  f.caseA = await freshCase();
  f.materialA = await freshMaterial(f.caseA);
  // Site A receives from site B, and B from A: transfers can be sent and decided.
  await t.server.app.transfers.agree(actorOf(f.admin.A), ctx, siteB);
  await t.server.app.transfers.agree(actorOf(f.admin.B), ctx, siteA);
  followUpA = await freshFollowUp();
}, 120_000);
afterAll(() => t?.close());

test('every mounted route and every socket event has an expected-access rule', async () => {
  const routes = listRoutes(t.server.app.handler).map((r) => r.key);
  expect(routes.length).toBeGreaterThan(30);
  expect(routes.filter((k) => !(k in EXPECTED))).toEqual([]);
  const s = await connect(t.socket(f.admin.A.client));
  try {
    const events = listSocketEvents(t.server.realtime.io);
    expect(events.length).toBeGreaterThan(10);
    expect(events.filter((e) => !(e in EVENTS))).toEqual([]);
  } finally {
    s.disconnect();
  }
});

test('HTTP: every route, every role, with and without each permission, same and other site, anonymous, stopped', async () => {
  const routes = listRoutes(t.server.app.handler).filter((r) => r.key in EXPECTED);
  const mismatches: string[] = [];
  let probes = 0;
  const check = async (label: string, want: string, client: TestClient, method: string, rule: HttpRule, actor: ActorRef | null) => {
    const req = await rule.build(f, actor);
    const res = await send(rule.freshClient ? t.client() : client, method, req);
    const got = outcome(res.status, res.body, rule.passed, rule.passedStatus);
    probes++;
    if (got !== want) mismatches.push(`${label}: expected ${want}, got ${got} (HTTP ${res.status})`);
  };
  // The three roles run side by side (each changes only its own actor's permissions); within a
  // role, routes run in order.
  await Promise.all(
    ROLES.map(async (role, roleIndex) => {
      const a = actors.get(`a:${role}`)!;
      for (const [routeIndex, route] of routes.entries()) {
        const rule = EXPECTED[route.key]!;
        const needs = rule.access !== 'public' && rule.access !== 'session' && rule.access !== 'patient' ? (ACTIONS[rule.access] as { permission?: Perm }).permission : undefined;
        if (!rule.sessionChecksOnly) {
          const variants: [string, Permissions][] = [['all permissions', allPerms(true)], ['no permission', allPerms(false)]];
          if (needs) variants.push([`without ${needs}`, allPerms(true, needs)]);
          for (const [label, perms] of variants) {
            await setPermissions(a, perms);
            await check(`${route.key} as ${role} with ${label}`, expected(rule.access, role, perms, true, rule.scope), a.client, route.method, rule, a);
            // Logging out ends the session the next probes need.
            if (route.key === 'POST /api/auth/logout') await login(a);
          }
          await setPermissions(a, allPerms(true));
          if (rule.scope === 'resource') {
            const b = actors.get(`b:${role}`)!;
            await check(`${route.key} as ${role} of another site`, expected(rule.access, role, allPerms(true), false, rule.scope), b.client, route.method, rule, b);
          }
        }
        if (routeIndex % ROLES.length !== roleIndex) continue;
        await check(`${route.key} anonymously`, expected(rule.access, null, allPerms(true), true, rule.scope), t.client(), route.method, rule, null);
        // Stop Access ends the session at once, so one role per route (rotating) keeps this quick.
        await setPermissions(a, { ...allPerms(true), stopAccess: true });
        await check(`${route.key} as ${role} with Stop Access`, expected(rule.access, role, { ...allPerms(true), stopAccess: true }, true, rule.scope), a.client, route.method, rule, a);
        await setPermissions(a, allPerms(true));
        if (rule.access !== 'public') await login(a);
      }
    }),
  );
  expect(mismatches).toEqual([]);
  expect(probes).toBeGreaterThan(routes.length * 6);
}, 240_000);

test('socket: every event, every role, same and other site, not joined, stopped', async () => {
  const events = Object.keys(EVENTS);
  const mismatches: string[] = [];
  let probes = 0;
  const sockets: ClientSocket[] = [];
  const open = async (a: ActorRef) => {
    const s = await connect(t.socket(a.client));
    sockets.push(s);
    return s;
  };
  // A watcher in the room tells whether a volatile event (no ack) went through.
  const watcher = await open(actors.get('a:clinician')!);
  expect((await call(watcher, 'room:join', { caseId: f.caseA })).ok).toBe(true);
  const volatileOutcome = async (s: ClientSocket, event: string, payload: unknown): Promise<string> => {
    const relayed = event === 'viewport:update' ? 'viewport' : 'pointer';
    let seen = false;
    const on = () => (seen = true);
    watcher.on(relayed, on);
    // The viewport is relayed from the presenter only: the sender takes the role first if it can.
    s.emit(event, payload);
    const marker = await call(s, 'chat:sync', { caseId: f.caseA, afterSeq: 0 });
    await waitFor(() => true, 'one turn');
    watcher.off(relayed, on);
    return seen ? 'allowed' : marker.ok ? 'dropped' : marker.error.code;
  };
  try {
    for (const role of ROLES) {
      const a = actors.get(`a:${role}`)!;
      const b = actors.get(`b:${role}`)!;
      const joined = await open(a);
      const notJoined = await open(a);
      const other = await open(b);
      expect((await call(joined, 'room:join', { caseId: f.caseA })).ok).toBe(true);
      // Another site's case does not exist for b; it cannot join, so every event is refused.
      const otherJoin = await call(other, 'room:join', { caseId: f.caseA });
      probes++;
      if (otherJoin.ok || otherJoin.error.code !== 'NOT_FOUND') mismatches.push(`room:join as ${role} of another site: expected NOT_FOUND, got ${JSON.stringify(otherJoin)}`);
      const presenterRole = role === 'clinician' || role === 'site_admin';
      for (const event of events) {
        const rule = EVENTS[event]!;
        if (event === 'room:join' || event === 'room:leave') {
          // join then leave from a socket that is in no room: both allowed; leaving again is not.
          if (event === 'room:leave') continue;
          const want = expected(rule.access, role, allPerms(true), true, 'resource');
          for (const [step, ev, w] of [['join', 'room:join', want], ['leave', 'room:leave', want], ['leave again', 'room:leave', 'FORBIDDEN']] as const) {
            const r = await call(notJoined, ev, rule.payload(f));
            probes++;
            const got = r.ok ? 'allowed' : r.error.code;
            if (got !== w) mismatches.push(`${ev} (${step}) as ${role}: expected ${w}, got ${got}`);
          }
          continue;
        }
        if (rule.volatile) {
          probes += 2;
          const want = event === 'viewport:update' && !presenterRole ? 'dropped' : expected(rule.access, role, allPerms(true), true, 'resource');
          if (presenterRole) await call(joined, 'presenter:take', { caseId: f.caseA });
          const got = await volatileOutcome(joined, event, rule.payload(f));
          if (got !== want) mismatches.push(`${event} as ${role} in the room: expected ${want}, got ${got}`);
          const notIn = await volatileOutcome(notJoined, event, rule.payload(f));
          if (notIn === 'allowed') mismatches.push(`${event} as ${role} not in the room was relayed`);
          continue;
        }
        for (const [label, s, want] of [
          ['in the room', joined, expected(rule.access, role, allPerms(true), true, 'resource')],
          ['not in the room', notJoined, rule.caseRoom === false ? expected(rule.access, role, allPerms(true), true, 'resource') : 'FORBIDDEN'],
          ['of another site', other, rule.caseRoom === false ? 'NOT_FOUND' : 'FORBIDDEN'],
        ] as const) {
          const r = await call(s, event, rule.payload(f));
          probes++;
          let got = r.ok ? 'allowed' : r.error.code;
          // Product rules answered FORBIDDEN with their own message are not access control.
          if (!r.ok && r.error.code === 'FORBIDDEN' && label === 'in the room' && /presenter|Only a clinician/.test(r.error.message)) got = 'FORBIDDEN_BY_PRODUCT_RULE';
          if (!r.ok && rule.passed?.includes(got) && label === 'in the room') got = 'allowed';
          if (got !== want) mismatches.push(`${event} as ${role} ${label}: expected ${want}, got ${got} ${r.ok ? '' : r.error.message}`);
        }
      }
      await call(joined, 'presenter:release', { caseId: f.caseA });
    }
    // Stop Access: the next event (once the socket re-reads its session) is refused and the socket closed.
    for (const event of events.filter((e) => !EVENTS[e]!.volatile)) {
      const a = actors.get(`a:${ROLES[probes % ROLES.length]}`)!;
      await login(a);
      const s = await open(a);
      if (event !== 'room:join') await call(s, 'room:join', { caseId: f.caseA });
      await setPermissions(a, { ...allPerms(true), stopAccess: true });
      t.clock.advance(6_000); // past the socket's store re-check interval
      const r = await call(s, event, EVENTS[event]!.payload(f));
      probes++;
      if (r.ok || r.error.code !== 'ACCESS_STOPPED') mismatches.push(`${event} with Stop Access: got ${JSON.stringify(r)}`);
      const closed = await waitFor(() => !s.connected, 'socket closed', 3_000).catch(() => false);
      if (!closed) mismatches.push(`${event} with Stop Access: the socket stayed open`);
      await setPermissions(a, allPerms(true));
      await login(a);
    }
  } finally {
    for (const s of sockets) s.disconnect();
  }
  expect(mismatches).toEqual([]);
  expect(probes).toBeGreaterThan(events.length * ROLES.length * 3);
}, 120_000);

test('patient session (follow-up guest): every staff route and every socket event is refused', async () => {
  const now = t.clock.now().getTime();
  const { inviteUrl } = await t.server.app.followUps.create(actorOf(f.admin.A), ctx, f.caseA, { startsAt: new Date(now - 60_000).toISOString(), endsAt: new Date(now + 3600_000).toISOString(), contactLabel: 'Matrix guest', verification: null, colleagues: [] });
  const guest = t.client();
  const opened = await send(guest, 'POST', { path: '/api/followup/open', body: { token: inviteUrl.split('#t=')[1] } });
  expect(opened.status).toBe(200);
  expect((await send(guest, 'POST', { path: '/api/followup/consent', body: { version: CONSENT.version, accepted: true } })).status).toBe(200);
  const mismatches: string[] = [];
  for (const route of listRoutes(t.server.app.handler)) {
    const rule = EXPECTED[route.key];
    if (!rule || rule.access === 'public' || rule.access === 'patient') continue;
    const res = await send(guest, route.method, await rule.build(f, null));
    const got = outcome(res.status, res.body);
    if (!['UNAUTHENTICATED', 'FORBIDDEN', 'NOT_FOUND'].includes(got)) mismatches.push(`${route.key} as a patient: got ${got} (HTTP ${res.status})`);
  }
  const s = await connect(t.socket(guest));
  try {
    for (const event of Object.keys(EVENTS)) {
      const r = await call(s, event, EVENTS[event]!.payload(f));
      if (r.ok || r.error.code !== 'FORBIDDEN') mismatches.push(`${event} as a patient: got ${JSON.stringify(r)}`);
    }
  } finally {
    s.disconnect();
  }
  expect(mismatches).toEqual([]);
  // The guest's own session still works: refusals above changed nothing.
  expect((await send(guest, 'GET', { path: '/api/followup/me' })).body.consented).toBe(true);
});
