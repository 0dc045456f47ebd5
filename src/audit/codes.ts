// Our event types mapped to DICOM PS3.16 audit event ids (the "DCM" code system used by IHE
// ATNA and by FHIR AuditEvent.type), so a hospital's audit repository can classify them.
export const DCM_SYSTEM = 'http://dicom.nema.org/resources/ontology/DCM';

export interface EventCode {
  code: string;
  display: string;
}

const AUTH: EventCode = { code: '110114', display: 'User Authentication' };
const AUDIT_LOG: EventCode = { code: '110101', display: 'Audit Log Used' };
const EXPORT: EventCode = { code: '110106', display: 'Export' };
const IMPORT: EventCode = { code: '110107', display: 'Import' };
const QUERY: EventCode = { code: '110112', display: 'Query' };
const SECURITY_ATTRS: EventCode = { code: '110137', display: 'User Security Attributes Changed' };
const SECURITY_ALERT: EventCode = { code: '110113', display: 'Security Alert' };
const PATIENT_RECORD: EventCode = { code: '110110', display: 'Patient Record' };
const APPLICATION_ACTIVITY: EventCode = { code: '110100', display: 'Application Activity' };

/** The DCM event id of one of our audit event types. */
export function eventCode(type: string): EventCode {
  if (type === 'auth.lockout') return SECURITY_ALERT;
  if (type.startsWith('auth.')) return AUTH;
  if (type.startsWith('audit.')) return AUDIT_LOG;
  if (type.endsWith('.export') || type === 'material.download' || type === 'case.transfer.send') return EXPORT;
  if (type.endsWith('.import') || type === 'material.upload' || type === 'case.transfer.receive') return IMPORT;
  if (type.endsWith('.list') || type.endsWith('.search')) return QUERY;
  if (type.startsWith('user.') && type !== 'user.read') return SECURITY_ATTRS;
  if (type.startsWith('keys.') || type.startsWith('site.policy')) return SECURITY_ALERT;
  if (/^(case|material|annotation|chat|retention)\./.test(type)) return PATIENT_RECORD;
  return APPLICATION_ACTIVITY;
}

/** FHIR audit-entity-type / ATNA ParticipantObjectTypeCode: 1 person, 2 system object. */
export function objectTypeCode(objectType: string): '1' | '2' {
  return objectType === 'user' || objectType === 'patient' ? '1' : '2';
}
