// Wire contract of the identity API: request schemas (strict: unknown keys are rejected) and
// response shapes, shared by the server and the browser client.
import { z } from 'zod';

export const ROLES = ['site_admin', 'clinician', 'pathologist'] as const;
export type Role = (typeof ROLES)[number];

/** The six per-user permissions of the 3DnetMedical policy (seed 003). */
export const PERMISSIONS = [
  'stopAccess',
  'canUpload',
  'canDownload',
  'canDelete',
  'transferStudy',
  'viewPatientInfo',
] as const;
export type Permission = (typeof PERMISSIONS)[number];
export type Permissions = Record<Permission, boolean>;

/** Passwords are never truncated; 1024 bounds the cost of hashing hostile input. */
export const PASSWORD_MAX_LENGTH = 1024;

const email = z.string().trim().toLowerCase().max(254).pipe(z.email());
const password = z.string().min(1).max(PASSWORD_MAX_LENGTH);
const totpCode = z.string().regex(/^\d{6}$/, 'six digits');
const displayName = z.string().trim().min(1).max(120);

export const permissionsPatchSchema = z.strictObject({
  stopAccess: z.boolean().optional(),
  canUpload: z.boolean().optional(),
  canDownload: z.boolean().optional(),
  canDelete: z.boolean().optional(),
  transferStudy: z.boolean().optional(),
  viewPatientInfo: z.boolean().optional(),
});

export const loginSchema = z.strictObject({ email, password, totp: totpCode.optional() });
export const changePasswordSchema = z.strictObject({ currentPassword: password, newPassword: password });
export const totpConfirmSchema = z.strictObject({ code: totpCode });
export const totpDisableSchema = z.strictObject({ password });

export const createUserSchema = z.strictObject({
  email,
  name: displayName,
  role: z.enum(ROLES),
  permissions: permissionsPatchSchema.optional(),
});
export const updateUserSchema = z
  .strictObject({
    name: displayName.optional(),
    role: z.enum(ROLES).optional(),
    permissions: permissionsPatchSchema.optional(),
  })
  .refine((v) => Object.keys(v).length > 0, 'nothing to change');

export const sitePolicyPatchSchema = z
  .strictObject({
    minPasswordLength: z.number().int().min(8).max(128).optional(),
    requireTotp: z.boolean().optional(),
    lockoutThreshold: z.number().int().min(3).max(20).optional(),
    lockoutWindowMinutes: z.number().int().min(1).max(24 * 60).optional(),
    lockoutDurationMinutes: z.number().int().min(1).max(24 * 60).optional(),
    idleTimeoutMinutes: z.number().int().min(1).max(12 * 60).optional(),
    retentionDays: z.number().int().min(1).max(3650).optional(),
  })
  .refine((v) => Object.keys(v).length > 0, 'nothing to change');

export const alertsQuerySchema = z.strictObject({ days: z.coerce.number().int().min(1).max(90).default(7) });

export const idParamSchema = z.strictObject({ id: z.string().regex(/^[A-Za-z0-9_-]{8,64}$/) });

export interface SitePolicy {
  minPasswordLength: number;
  requireTotp: boolean;
  lockoutThreshold: number;
  lockoutWindowMinutes: number;
  lockoutDurationMinutes: number;
  idleTimeoutMinutes: number;
  retentionDays: number;
}

export interface PublicUser {
  id: string;
  siteId: string;
  email: string;
  name: string;
  role: Role;
  permissions: Permissions;
  totpEnabled: boolean;
  mustChangePassword: boolean;
  lockedUntil: string | null;
  createdAt: string;
  updatedAt: string;
}

export interface MeResponse {
  user: PublicUser;
  site: { id: string; name: string; policy: SitePolicy };
  session: { idleTimeoutSeconds: number; expiresAt: string };
  /** What the user must do before anything else is allowed, if anything. */
  pending: 'password_change' | 'totp_enrolment' | null;
}

export interface LoginResponse extends MeResponse {
  csrfToken: string;
}
