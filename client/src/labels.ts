// Words shown for the protocol's enumerations. Typed as records over the protocol's own types, so
// a value added there fails the client's type check until it has a label here.
import type { CaseStatus, Patient } from '../../src/protocol/cases';
import type { Permission, Role, SitePolicy } from '../../src/protocol/identity';
import type { MaterialStatus } from '../../src/protocol/cases';
import type { AnnotationKind } from '../../src/protocol/annotations';

export const ROLE_LABEL: Record<Role, string> = {
  site_admin: 'Site admin',
  clinician: 'Clinician',
  pathologist: 'Pathologist',
};

export const STATUS_LABEL: Record<CaseStatus, string> = {
  open: 'Open',
  in_review: 'In review',
  reported: 'Reported',
  closed: 'Closed',
};

export const SEX_LABEL: Record<Patient['sex'], string> = {
  female: 'Female',
  male: 'Male',
  other: 'Other',
  unknown: 'Unknown',
};

export const MATERIAL_STATUS_LABEL: Record<MaterialStatus, string> = {
  queued: 'Queued',
  converting: 'Converting',
  ready: 'Ready',
  failed: 'Failed',
};

/** Keys of a label record, in their declared order (the protocol's order). */
export function keysOf<K extends string>(labels: Record<K, unknown>): K[] {
  return Object.keys(labels) as K[];
}

export const ANNOTATION_KIND_LABEL: Record<AnnotationKind, string> = {
  point: 'Point',
  line: 'Line',
  rectangle: 'Rectangle',
  polygon: 'Polygon',
  freehand: 'Freehand',
};

/** The six per-user permissions, in the protocol's order, as the policy names them. */
export const PERMISSION_LABEL: Record<Permission, string> = {
  stopAccess: 'Stop Access',
  canUpload: 'Can Upload',
  canDownload: 'Can Download',
  canDelete: 'Can Delete',
  transferStudy: 'Transfer Study',
  viewPatientInfo: 'View Patient Info',
};

export const PERMISSION_HINT: Record<Permission, string> = {
  stopAccess: 'Blocks every sign-in and ends the current sessions.',
  canUpload: 'Upload images to cases.',
  canDownload: 'Download original files.',
  canDelete: 'Delete cases and materials.',
  transferStudy: 'Send studies to partner sites.',
  viewPatientInfo: 'See patient names, birth dates and record numbers.',
};

/** Site policy fields with their words and bounds (the bounds are the server's; it checks them). */
export const POLICY_FIELDS: Record<Exclude<keyof SitePolicy, 'requireTotp'>, { label: string; unit: string; min: number; max: number }> = {
  minPasswordLength: { label: 'Minimum password length', unit: 'characters', min: 8, max: 128 },
  idleTimeoutMinutes: { label: 'Sign out after inactivity', unit: 'minutes', min: 1, max: 720 },
  retentionDays: { label: 'Keep cases for', unit: 'days', min: 1, max: 3650 },
  lockoutThreshold: { label: 'Lock an account after', unit: 'failed sign-ins', min: 3, max: 20 },
  lockoutWindowMinutes: { label: 'Counting failed sign-ins over', unit: 'minutes', min: 1, max: 1440 },
  lockoutDurationMinutes: { label: 'Lock for', unit: 'minutes', min: 1, max: 1440 },
};

export const AUDIT_ACTION_LABEL: Record<'C' | 'R' | 'U' | 'D' | 'E', string> = {
  C: 'Create',
  R: 'Read',
  U: 'Update',
  D: 'Delete',
  E: 'Execute',
};

export const AUDIT_OUTCOME_LABEL: Record<'0' | '4' | '8' | '12', string> = {
  '0': 'Success',
  '4': 'Minor failure',
  '8': 'Serious failure',
  '12': 'Major failure',
};
