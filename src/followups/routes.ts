// HTTP routes of follow-ups. Clinicians (staff sessions) schedule and run them under
// /api/cases/:caseId/followups and /api/followups/*; the patient's narrow session reaches only
// /api/followup/* (singular), and no staff route accepts it (no user id in the session).
import { Router, type Request, type RequestHandler } from 'express';
import type { RateLimiterAbstract } from 'rate-limiter-flexible';
import { AppError } from '../errors';
import type { Csrf } from '../http/csrf';
import { consume } from '../http/rateLimit';
import { route } from '../http/route';
import { ACTIVITY_RESOLUTION_MS, destroySession, regenerate, requestContext, saveSession, sessionDeadline, type AuthOptions } from '../http/session';
import {
  addColleagueSchema,
  caseFollowUpParams,
  consentSchema,
  createFollowUpSchema,
  followUpParams,
  inviteSentSchema,
  messageSchema,
  openInviteSchema,
  verifySchema,
  type OpenInviteResponse,
  type PatientView,
} from '../protocol/followups';
import type { FollowUpService, PatientSession } from './service';

export interface FollowUpRouteDeps {
  followUps: FollowUpService;
  auth: (options?: AuthOptions) => RequestHandler;
  csrf: Csrf;
  clock: () => Date;
  absoluteSessionMs: number;
  limiters: {
    /** Clinician writes per user. */
    write: RateLimiterAbstract;
    /** Patient requests per follow-up. */
    patient: RateLimiterAbstract;
  };
}

declare module 'express-serve-static-core' {
  interface Request {
    patient?: PatientSession;
  }
}

/**
 * Authenticates a patient session: its own idle timeout, the end of the window, and the follow-up
 * still admitting this device (not ended, declined, or taken over by another device).
 */
function patientAuth(deps: FollowUpRouteDeps): RequestHandler {
  return (req, res, next) => {
    (async () => {
      const s = req.session;
      if (!s?.patient || s.userId) throw new AppError('UNAUTHENTICATED');
      const now = deps.clock().getTime();
      if (now >= sessionDeadline(s, deps.absoluteSessionMs)) {
        await destroySession(req);
        throw new AppError('SESSION_EXPIRED');
      }
      if (!(await deps.followUps.checkPatient(s.patient, now))) {
        await destroySession(req);
        throw new AppError('INVITE_INVALID');
      }
      await consume(deps.limiters.patient, s.patient.followUpId, res);
      if (now - (s.lastSeenAt ?? 0) >= ACTIVITY_RESOLUTION_MS) s.lastSeenAt = now;
      req.patient = s.patient;
    })().then(() => next(), next);
  };
}

export function followUpRoutes(deps: FollowUpRouteDeps): Router {
  const { followUps, auth, limiters } = deps;
  const router = Router();
  const write: RequestHandler = (req, res, next) => {
    consume(limiters.write, req.actor!.userId, res).then(() => next(), next);
  };
  const patient = patientAuth(deps);

  // --- clinicians ---
  router.post(
    '/cases/:caseId/followups',
    auth(),
    write,
    route({ params: caseFollowUpParams, body: createFollowUpSchema }, async ({ req, params, body }) => followUps.create(req.actor!, requestContext(req), params.caseId, body), 201),
  );
  router.get(
    '/cases/:caseId/followups',
    auth(),
    route({ params: caseFollowUpParams }, async ({ req, params }) => ({ followUps: await followUps.listByCase(req.actor!, params.caseId) })),
  );
  router.get('/followups', auth(), route({}, async ({ req }) => ({ followUps: await followUps.listMine(req.actor!) })));
  router.get('/followups/:followUpId', auth(), route({ params: followUpParams }, async ({ req, params }) => followUps.get(req.actor!, requestContext(req), params.followUpId)));
  router.post(
    '/followups/:followUpId/sent',
    auth(),
    write,
    route({ params: followUpParams, body: inviteSentSchema }, async ({ req, params, body }) => ({ followUp: await followUps.markSent(req.actor!, requestContext(req), params.followUpId, body.channel) })),
  );
  router.post(
    '/followups/:followUpId/colleagues',
    auth(),
    write,
    route({ params: followUpParams, body: addColleagueSchema }, async ({ req, params, body }) => ({ followUp: await followUps.addColleague(req.actor!, requestContext(req), params.followUpId, body.userId) })),
  );
  for (const action of ['admit', 'decline', 'end'] as const) {
    router.post(
      `/followups/:followUpId/${action}`,
      auth(),
      write,
      route({ params: followUpParams }, async ({ req, params }) => ({ followUp: await followUps[action](req.actor!, requestContext(req), params.followUpId) })),
    );
  }
  router.post(
    '/followups/:followUpId/messages',
    auth(),
    write,
    route({ params: followUpParams, body: messageSchema }, async ({ req, params, body }) => ({ followUp: await followUps.message(req.actor!, requestContext(req), params.followUpId, body.text) })),
  );

  // --- the patient ---
  router.post(
    '/followup/open',
    route({ body: openInviteSchema }, async ({ req, res, body }): Promise<OpenInviteResponse> => {
      const current = currentPatient(req);
      const { record, session } = await followUps.open(body.token, requestContext(req), current);
      // A new session id for the patient device (no fixation), holding nothing but the follow-up.
      // Opening a link in a browser signed in as staff ends that staff session.
      if (!current || current.bindingId !== session.bindingId) await regenerate(req);
      const now = deps.clock().getTime();
      Object.assign(req.session, { role: 'patient', createdAt: req.session.createdAt ?? now, lastSeenAt: now, idleMs: followUps.patientIdleMs, patient: session });
      await saveSession(req);
      return { ...followUps.patientView(record), csrfToken: deps.csrf.issue(req, res) };
    }),
  );
  router.get('/followup/me', patient, route({}, async ({ req }): Promise<PatientView> => followUps.patientView(await followUps.mustCheckPatient(req.patient!))));
  router.post(
    '/followup/consent',
    patient,
    route({ body: consentSchema }, async ({ req }): Promise<PatientView> => followUps.patientView(await followUps.consent(req.patient!, requestContext(req)))),
  );
  router.post(
    '/followup/verify',
    patient,
    route({ body: verifySchema }, async ({ req, body }): Promise<PatientView> => followUps.patientView(await followUps.verify(req.patient!, requestContext(req), body.dateOfBirth))),
  );
  router.post(
    '/followup/leave',
    patient,
    route({}, async ({ req }) => {
      await destroySession(req);
      return undefined;
    }),
  );
  return router;
}

function currentPatient(req: Request): PatientSession | undefined {
  return req.session?.patient && !req.session.userId ? req.session.patient : undefined;
}
