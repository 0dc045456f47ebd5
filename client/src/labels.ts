// Words shown for the protocol's enumerations. Typed as records over the protocol's own types, so
// a value added there fails the client's type check until it has a label here.
import type { CaseStatus, Patient } from '../../src/protocol/cases';
import type { Role } from '../../src/protocol/identity';
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
export function keysOf<K extends string>(labels: Record<K, string>): K[] {
  return Object.keys(labels) as K[];
}

export const ANNOTATION_KIND_LABEL: Record<AnnotationKind, string> = {
  point: 'Point',
  line: 'Line',
  rectangle: 'Rectangle',
  polygon: 'Polygon',
  freehand: 'Freehand',
};
