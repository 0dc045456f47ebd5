// Identity records as stored: sites with their security policy, and users with credentials,
// permissions and lockout state. Only `toPublicUser` output ever leaves the server.
import type { Permissions, PublicUser, Role, SitePolicy } from '../protocol/identity';

export interface SiteRecord {
  id: string;
  name: string;
  policy: SitePolicy;
  createdAt: string;
  updatedAt: string;
}

export interface UserRecord {
  id: string;
  siteId: string;
  /** Lower-cased; unique across all sites because login asks only for the e-mail. */
  email: string;
  name: string;
  role: Role;
  permissions: Permissions;
  passwordHash: string;
  mustChangePassword: boolean;
  /** TOTP secret once enrolment is confirmed, sealed under the site's data key (DataKeys), bound to this user id. */
  totpSecret: string | null;
  /** Sealed secret issued by enrolment, not yet confirmed with a code. */
  totpPendingSecret: string | null;
  /** Last accepted TOTP time step: a code is never accepted twice. */
  totpLastStep: number | null;
  failedLoginCount: number;
  failedLoginWindowStart: string | null;
  lockedUntil: string | null;
  createdAt: string;
  updatedAt: string;
  createdBy: string | null;
  updatedBy: string | null;
}

export const DEFAULT_POLICY: SitePolicy = {
  minPasswordLength: 12,
  requireTotp: false,
  lockoutThreshold: 5,
  lockoutWindowMinutes: 15,
  lockoutDurationMinutes: 15,
  idleTimeoutMinutes: 30,
  retentionDays: 30,
};

export const NO_PERMISSIONS: Permissions = {
  stopAccess: false,
  canUpload: false,
  canDownload: false,
  canDelete: false,
  transferStudy: false,
  viewPatientInfo: false,
};

/** Sensible starting permissions per role; a site admin adjusts them per user. */
export function defaultPermissions(role: Role): Permissions {
  switch (role) {
    case 'site_admin':
      return { ...NO_PERMISSIONS, canUpload: true, canDownload: true, canDelete: true, transferStudy: true, viewPatientInfo: true };
    case 'clinician':
      return { ...NO_PERMISSIONS, canUpload: true, viewPatientInfo: true };
    case 'pathologist':
      return { ...NO_PERMISSIONS, canUpload: true };
  }
}

export function toPublicUser(user: UserRecord, now = new Date()): PublicUser {
  const locked = user.lockedUntil !== null && Date.parse(user.lockedUntil) > now.getTime();
  return {
    id: user.id,
    siteId: user.siteId,
    email: user.email,
    name: user.name,
    role: user.role,
    permissions: { ...user.permissions },
    totpEnabled: user.totpSecret !== null,
    mustChangePassword: user.mustChangePassword,
    lockedUntil: locked ? user.lockedUntil : null,
    createdAt: user.createdAt,
    updatedAt: user.updatedAt,
  };
}
