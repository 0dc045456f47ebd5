// The one authorisation decision (src/identity/authorize.ts): Stop Access beats every role,
// another site's resources do not exist, roles gate actions, owners may read themselves.
import { ACTIONS, authorize, requireAuthorized, type Action, type Actor } from '../../src/identity/authorize';
import { defaultPermissions } from '../../src/identity/model';
import type { Role } from '../../src/protocol/identity';

const ALL_ACTIONS = Object.keys(ACTIONS) as Action[];

function actor(role: Role, over: Partial<Actor> = {}): Actor {
  return { userId: `${role}-id`, siteId: 'site-a', role, permissions: defaultPermissions(role), ...over };
}

function deniedWith(decision: ReturnType<typeof authorize>): string {
  if (decision.allowed) throw new Error('expected a denial, got allowed');
  return decision.error.code;
}

describe('authorize', () => {
  test('the action table is not empty (so the loops below check something)', () => {
    expect(ALL_ACTIONS.length).toBeGreaterThanOrEqual(10);
  });

  test('Stop Access denies every action with ACCESS_STOPPED, for every role including site_admin, even on own records', () => {
    for (const role of ['site_admin', 'clinician', 'pathologist'] as const) {
      const stopped = actor(role, { permissions: { ...defaultPermissions(role), stopAccess: true } });
      for (const action of ALL_ACTIONS) {
        const decision = authorize(stopped, action, { siteId: 'site-a', ownerId: stopped.userId });
        expect({ role, action, code: deniedWith(decision) }).toEqual({ role, action, code: 'ACCESS_STOPPED' });
        if (!decision.allowed) expect(decision.error.status).toBe(403);
      }
    }
  });

  test("another site's resource is NOT_FOUND (never FORBIDDEN), for every action, even with a matching ownerId", () => {
    const admin = actor('site_admin');
    for (const action of ALL_ACTIONS) {
      expect({ action, code: deniedWith(authorize(admin, action, { siteId: 'site-b', ownerId: admin.userId })) }).toEqual({
        action,
        code: 'NOT_FOUND',
      });
    }
  });

  test('a clinician or pathologist cannot create users: FORBIDDEN', () => {
    expect(deniedWith(authorize(actor('clinician'), 'user.create', { siteId: 'site-a' }))).toBe('FORBIDDEN');
    expect(deniedWith(authorize(actor('pathologist'), 'user.create', { siteId: 'site-a' }))).toBe('FORBIDDEN');
    expect(deniedWith(authorize(actor('clinician'), 'site.updatePolicy', { siteId: 'site-a' }))).toBe('FORBIDDEN');
  });

  test("the owner may user.read their own record, but not someone else's", () => {
    const clinician = actor('clinician');
    expect(authorize(clinician, 'user.read', { siteId: 'site-a', ownerId: clinician.userId })).toEqual({ allowed: true });
    expect(deniedWith(authorize(clinician, 'user.read', { siteId: 'site-a', ownerId: 'someone-else' }))).toBe('FORBIDDEN');
    // Ownership grants only what the table marks as owner-allowed.
    expect(deniedWith(authorize(clinician, 'user.update', { siteId: 'site-a', ownerId: clinician.userId }))).toBe('FORBIDDEN');
  });

  test('a site admin may do every action in its own site', () => {
    const admin = actor('site_admin');
    for (const action of ALL_ACTIONS) {
      expect({ action, decision: authorize(admin, action, { siteId: 'site-a', ownerId: 'another-user' }) }).toEqual({
        action,
        decision: { allowed: true },
      });
    }
  });

  test('self actions are open to every role in its own site', () => {
    for (const role of ['clinician', 'pathologist'] as const) {
      for (const action of ['self.read', 'self.changePassword', 'self.manageTotp', 'site.read'] as const) {
        expect(authorize(actor(role), action, { siteId: 'site-a' })).toEqual({ allowed: true });
      }
    }
  });

  test('requireAuthorized throws the denial error and returns quietly when allowed', () => {
    expect(() => requireAuthorized(actor('clinician'), 'user.list', { siteId: 'site-a' })).toThrow(
      expect.objectContaining({ code: 'FORBIDDEN', status: 403 }),
    );
    expect(() => requireAuthorized(actor('site_admin'), 'user.list', { siteId: 'site-a' })).not.toThrow();
  });
});
