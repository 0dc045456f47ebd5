// The one authorisation decision: authorize(actor, action, resource). Every route and socket
// event names an action from ACTIONS; nothing checks roles or permissions anywhere else.
import { AppError, ForbiddenError, NotFoundError } from '../errors';
import type { Permission, Permissions, Role } from '../protocol/identity';

/**
 * 'patient' is the follow-up guest (src/followups): no user account, one follow-up, and no action
 * below lists it, so every case, room and admin action refuses a patient session.
 */
export type ActorRole = Role | 'patient';

export interface Actor {
  userId: string;
  siteId: string;
  role: ActorRole;
  permissions: Permissions;
}

export interface Resource {
  /** The site owning the resource; a resource of another site does not exist for the actor. */
  siteId: string;
  /** The user the resource belongs to, when it is a user's own record. */
  ownerId?: string;
}

interface Rule {
  roles?: readonly ActorRole[];
  permission?: Permission;
  /** Allowed to the owner of the resource whatever the role. */
  owner?: boolean;
}

const ANY: readonly Role[] = ['site_admin', 'clinician', 'pathologist'];
const ADMIN: readonly Role[] = ['site_admin'];

export const ACTIONS = {
  'self.read': { roles: ANY },
  'self.changePassword': { roles: ANY },
  'self.manageTotp': { roles: ANY },
  'site.read': { roles: ANY },
  'site.updatePolicy': { roles: ADMIN },
  'user.list': { roles: ADMIN },
  'user.read': { roles: ADMIN, owner: true },
  'user.create': { roles: ADMIN },
  'user.update': { roles: ADMIN },
  'user.resetPassword': { roles: ADMIN },
  'user.revokeSessions': { roles: ADMIN },
  'user.unlock': { roles: ADMIN },
  'site.readAlerts': { roles: ADMIN },
  // The site's audit trail and usage figures are the site admin's (seed 003: records "to
  // hospital staff"); reading, exporting and verifying them is audited in turn.
  'audit.read': { roles: ADMIN },
  'audit.export': { roles: ADMIN },
  'audit.verify': { roles: ADMIN },
  'usage.read': { roles: ADMIN },
  'case.list': { roles: ANY },
  'case.read': { roles: ANY },
  'case.create': { roles: ANY },
  'case.update': { roles: ANY },
  // Patient details can only be edited by someone allowed to see them.
  'case.updatePatient': { roles: ANY, permission: 'viewPatientInfo' },
  'case.delete': { roles: ANY, permission: 'canDelete' },
  'case.transfer': { roles: ANY, permission: 'transferStudy' },
  'material.upload': { roles: ANY, permission: 'canUpload' },
  'material.view': { roles: ANY },
  'material.download': { roles: ANY, permission: 'canDownload' },
  'material.delete': { roles: ANY, permission: 'canDelete' },
  // Which sites this site accepts studies from is the site admin's decision.
  'site.manageTransfers': { roles: ADMIN },
  'transfer.list': { roles: ANY, permission: 'transferStudy' },
  'transfer.decide': { roles: ANY, permission: 'transferStudy' },
  // Everyone in a case's room talks and annotates; the room itself is the site's case.
  'chat.send': { roles: ANY },
  'chat.read': { roles: ANY },
  'annotation.read': { roles: ANY },
  'annotation.write': { roles: ANY },
  // Audio, video and screen share in a case room the user has joined.
  'media.join': { roles: ANY },
  // Patient video follow-ups: clinicians (and site admins) schedule and run them; any staff
  // member the host invites may watch the waiting list and join the call (src/followups).
  'followup.create': { roles: ['clinician', 'site_admin'] },
  'followup.manage': { roles: ANY },
} as const satisfies Record<string, Rule>;

export type Action = keyof typeof ACTIONS;

export type Decision = { allowed: true } | { allowed: false; error: AppError };

export function authorize(actor: Actor, action: Action, resource: Resource): Decision {
  // Stop Access (seed 003) overrides everything, including the site admin role.
  if (actor.permissions.stopAccess) return { allowed: false, error: new AppError('ACCESS_STOPPED') };
  // Another site's resources are reported as absent, never as forbidden: no existence oracle.
  if (resource.siteId !== actor.siteId) return { allowed: false, error: new NotFoundError() };
  const rule: Rule = ACTIONS[action];
  if (rule.owner && resource.ownerId === actor.userId) return { allowed: true };
  if (rule.roles && !rule.roles.includes(actor.role)) return { allowed: false, error: new ForbiddenError() };
  if (rule.permission && !actor.permissions[rule.permission]) return { allowed: false, error: new ForbiddenError() };
  return { allowed: true };
}

export function requireAuthorized(actor: Actor, action: Action, resource: Resource): void {
  const decision = authorize(actor, action, resource);
  if (!decision.allowed) throw decision.error;
}
