// HTTP routes of the identity domain: login/logout (passport-local), the current user, password
// and TOTP self-service, user administration and site policy. Each route validates its input
// strictly, authorises through IdentityService (authorize()), is rate-limited and audited.
import { Router, type Request, type Response } from 'express';
import passport from 'passport';
import { Strategy as LocalStrategy } from 'passport-local';
import type { RateLimiterAbstract } from 'rate-limiter-flexible';
import { AppError } from '../errors';
import type { Csrf } from '../http/csrf';
import { consume } from '../http/rateLimit';
import { route } from '../http/route';
import {
  destroySession,
  pendingStep,
  regenerate,
  requestContext,
  saveSession,
  SESSION_COOKIE,
  type AuthOptions,
} from '../http/session';
import {
  alertsQuerySchema,
  changePasswordSchema,
  createUserSchema,
  idParamSchema,
  loginSchema,
  sitePolicyPatchSchema,
  totpConfirmSchema,
  totpDisableSchema,
  updateUserSchema,
  type LoginResponse,
  type MeResponse,
} from '../protocol/identity';
import { toPublicUser, type SiteRecord, type UserRecord } from './model';
import { IdentityService } from './service';
import type { RequestHandler } from 'express';

export interface IdentityRouteDeps {
  identity: IdentityService;
  csrf: Csrf;
  auth: (options?: AuthOptions) => RequestHandler;
  limiters: { login: RateLimiterAbstract; loginAccount: RateLimiterAbstract; sensitive: RateLimiterAbstract };
  absoluteSessionMs: number;
  clock: () => Date;
}

function meResponse(req: Request, user: UserRecord, site: SiteRecord, absoluteMs: number): MeResponse {
  const s = req.session;
  const createdAt = s.createdAt ?? 0;
  return {
    user: toPublicUser(user),
    site: { id: site.id, name: site.name, policy: { ...site.policy } },
    session: {
      idleTimeoutSeconds: site.policy.idleTimeoutMinutes * 60,
      expiresAt: new Date(createdAt + absoluteMs).toISOString(),
    },
    pending: pendingStep(user, site),
  };
}

export function identityRoutes(deps: IdentityRouteDeps): Router {
  const { identity, csrf, auth, limiters } = deps;
  const router = Router();

  const strategy = new LocalStrategy(
    { usernameField: 'email', passwordField: 'password', passReqToCallback: true, session: false },
    (req, email, password, done) => {
      const totp = (req.body as { totp?: string }).totp;
      identity.login({ email, password, totp }, requestContext(req)).then(
        (result) => done(null, result),
        (err) => done(err),
      );
    },
  );
  const authenticator = new passport.Passport();
  authenticator.use('local', strategy);

  const sensitive = (req: Request, res: Response) => consume(limiters.sensitive, req.actor?.userId ?? req.ip ?? '-', res);

  router.get(
    '/auth/csrf',
    route({}, async ({ req, res }) => ({ csrfToken: csrf.issue(req, res) })),
  );

  router.post(
    '/auth/login',
    route({ body: loginSchema }, async ({ req, res, body }) => {
      await consume(limiters.login, req.ip ?? '-', res);
      // Per-account limiter on top of the lockout: bounds the argon2 work one e-mail can cause.
      await consume(limiters.loginAccount, body.email, res);
      req.body = body;
      const result = await new Promise<{ user: UserRecord; site: SiteRecord }>((resolve, reject) => {
        authenticator.authenticate('local', { session: false }, (err: unknown, value: { user: UserRecord; site: SiteRecord } | false) => {
          if (err) reject(err);
          else if (!value) reject(new AppError('VALIDATION_FAILED', 'E-mail and password are required.'));
          else resolve(value);
        })(req, res, (err?: unknown) => reject(err ?? new AppError('INTERNAL')));
      });
      // A new session id at login: an id planted before login is worthless (no fixation).
      await regenerate(req);
      const now = deps.clock().getTime();
      Object.assign(req.session, {
        userId: result.user.id,
        siteId: result.site.id,
        role: result.user.role,
        createdAt: now,
        lastSeenAt: now,
        idleMs: result.site.policy.idleTimeoutMinutes * 60_000,
      });
      await saveSession(req);
      const body2: LoginResponse = { ...meResponse(req, result.user, result.site, deps.absoluteSessionMs), csrfToken: csrf.issue(req, res) };
      return body2;
    }),
  );

  router.post(
    '/auth/logout',
    auth({ allowPending: true }),
    route({}, async ({ req, res }) => {
      await identity.recordLogout(req.actor!, requestContext(req), req.sessionID);
      await destroySession(req);
      res.clearCookie(SESSION_COOKIE, { path: '/', secure: true, httpOnly: true, sameSite: 'lax' });
      return undefined;
    }),
  );

  router.get(
    '/me',
    auth({ allowPending: true }),
    route({}, async ({ req }) => meResponse(req, req.currentUser!, req.currentSite!, deps.absoluteSessionMs)),
  );

  router.post(
    '/auth/password',
    auth({ allowPending: true }),
    route({ body: changePasswordSchema }, async ({ req, res, body }) => {
      await sensitive(req, res);
      const user = await identity.changePassword(req.actor!, requestContext(req), body, req.sessionID);
      return meResponse(req, user, req.currentSite!, deps.absoluteSessionMs);
    }),
  );

  router.post(
    '/auth/totp/enrol',
    auth({ allowPending: true }),
    route({}, async ({ req, res }) => {
      await sensitive(req, res);
      if (req.currentUser!.mustChangePassword) throw new AppError('PASSWORD_CHANGE_REQUIRED');
      res.setHeader('Cache-Control', 'no-store');
      return identity.beginTotpEnrolment(req.actor!, requestContext(req));
    }),
  );

  router.post(
    '/auth/totp/confirm',
    auth({ allowPending: true }),
    route({ body: totpConfirmSchema }, async ({ req, res, body }) => {
      await sensitive(req, res);
      if (req.currentUser!.mustChangePassword) throw new AppError('PASSWORD_CHANGE_REQUIRED');
      const user = await identity.confirmTotpEnrolment(req.actor!, requestContext(req), body.code);
      return meResponse(req, user, req.currentSite!, deps.absoluteSessionMs);
    }),
  );

  router.post(
    '/auth/totp/disable',
    auth(),
    route({ body: totpDisableSchema }, async ({ req, res, body }) => {
      await sensitive(req, res);
      const user = await identity.disableTotp(req.actor!, requestContext(req), body.password);
      return meResponse(req, user, req.currentSite!, deps.absoluteSessionMs);
    }),
  );

  router.get(
    '/site',
    auth(),
    route({}, async ({ req }) => {
      const site = req.currentSite!;
      return { id: site.id, name: site.name, policy: site.policy };
    }),
  );

  router.patch(
    '/admin/site/policy',
    auth(),
    route({ body: sitePolicyPatchSchema }, async ({ req, body }) => {
      const site = await identity.updatePolicy(req.actor!, requestContext(req), body);
      return { id: site.id, name: site.name, policy: site.policy };
    }),
  );

  router.get(
    '/admin/alerts',
    auth(),
    route({ query: alertsQuerySchema }, async ({ req, query }) => identity.alerts(req.actor!, requestContext(req), query.days)),
  );

  router.get(
    '/admin/users',
    auth(),
    route({}, async ({ req }) => {
      const users = await identity.listUsers(req.actor!, requestContext(req));
      return { users: users.map((u) => toPublicUser(u)) };
    }),
  );

  router.post(
    '/admin/users',
    auth(),
    route(
      { body: createUserSchema },
      async ({ req, res, body }) => {
        await sensitive(req, res);
        res.setHeader('Cache-Control', 'no-store');
        const { user, oneTimePassword } = await identity.createUser(req.actor!, requestContext(req), body);
        return { user: toPublicUser(user), oneTimePassword };
      },
      201,
    ),
  );

  router.get(
    '/admin/users/:id',
    auth(),
    route({ params: idParamSchema }, async ({ req, params }) => ({
      user: toPublicUser(await identity.getUser(req.actor!, requestContext(req), params.id)),
    })),
  );

  router.patch(
    '/admin/users/:id',
    auth(),
    route({ params: idParamSchema, body: updateUserSchema }, async ({ req, res, params, body }) => {
      await sensitive(req, res);
      return { user: toPublicUser(await identity.updateUser(req.actor!, requestContext(req), params.id, body)) };
    }),
  );

  router.post(
    '/admin/users/:id/reset-password',
    auth(),
    route({ params: idParamSchema }, async ({ req, res, params }) => {
      await sensitive(req, res);
      res.setHeader('Cache-Control', 'no-store');
      const { user, oneTimePassword } = await identity.resetPassword(req.actor!, requestContext(req), params.id);
      return { user: toPublicUser(user), oneTimePassword };
    }),
  );

  router.post(
    '/admin/users/:id/unlock',
    auth(),
    route({ params: idParamSchema }, async ({ req, res, params }) => {
      await sensitive(req, res);
      return { user: toPublicUser(await identity.unlockUser(req.actor!, requestContext(req), params.id)) };
    }),
  );

  router.post(
    '/admin/users/:id/revoke-sessions',
    auth(),
    route({ params: idParamSchema }, async ({ req, res, params }) => {
      await sensitive(req, res);
      return { revoked: await identity.revokeSessions(req.actor!, requestContext(req), params.id) };
    }),
  );

  return router;
}
