// The one table of error codes a client can receive, over HTTP ({ error: { code, message } })
// and in Socket.IO acks. Nothing outside this table ever reaches a client.

export const ERROR_CODES = {
  VALIDATION_FAILED: { status: 400, message: 'The request is not valid.' },
  UNAUTHENTICATED: { status: 401, message: 'Sign in to continue.' },
  INVALID_CREDENTIALS: { status: 401, message: 'The e-mail, password or code is not correct, or the account is locked.' },
  TOTP_REQUIRED: { status: 401, message: 'Enter the code from your authenticator app.' },
  SESSION_EXPIRED: { status: 401, message: 'Your session has ended. Sign in again.' },
  CSRF_INVALID: { status: 403, message: 'The request could not be verified. Reload and try again.' },
  FORBIDDEN: { status: 403, message: 'You do not have permission to do this.' },
  ACCESS_STOPPED: { status: 403, message: 'Access for this account has been stopped by a site administrator.' },
  PASSWORD_CHANGE_REQUIRED: { status: 403, message: 'Change your one-time password before continuing.' },
  TOTP_ENROLMENT_REQUIRED: { status: 403, message: 'This site requires two-factor authentication. Enrol an authenticator app first.' },
  NOT_FOUND: { status: 404, message: 'Not found.' },
  CONFLICT: { status: 409, message: 'This conflicts with the current state.' },
  VERSION_CONFLICT: {
    status: 409,
    message: 'Someone else changed this annotation first. Its current version is attached: apply your change to it and send it again with that version.',
  },
  PAYLOAD_TOO_LARGE: { status: 413, message: 'The request is too large.' },
  UNSUPPORTED_MEDIA_TYPE: { status: 415, message: 'Send JSON (Content-Type: application/json).' },
  UNSUPPORTED_FILE_TYPE: { status: 415, message: 'Upload a JPEG, PNG or TIFF (including BigTIFF and pyramidal TIFF) image.' },
  PASSWORD_POLICY: { status: 422, message: 'The password does not meet the site policy.' },
  INVALID_DICOM: { status: 422, message: 'The DICOM instance is damaged or lacks a required attribute.' },
  UNSUPPORTED_DICOM: { status: 415, message: 'This DICOM transfer syntax or SOP class is not supported (see docs/radiology.md).' },
  PATIENT_MISMATCH: { status: 409, message: 'The study belongs to another case or patient; nothing was stored.' },
  RATE_LIMITED: { status: 429, message: 'Too many requests. Wait a moment and try again.' },
  INTERNAL: { status: 500, message: 'Something went wrong on the server.' },
  STORAGE_FULL: { status: 507, message: 'The server has not enough free storage for this file.' },
  NOT_READY: { status: 503, message: 'The server is not ready.' },
  SERVER_DRAINING: { status: 503, message: 'This server is shutting down. Reconnect to continue on another server.' },
  MEDIA_UNAVAILABLE: { status: 503, message: 'Audio and video are not available right now. Try again in a moment.' },
  // The store or Redis is briefly unreachable or locked: nothing was changed; retrying is safe.
  STORE_UNAVAILABLE: { status: 503, message: 'The server cannot save or load this right now. Nothing was changed; try again in a moment.' },
  LIMIT_REACHED: { status: 409, message: 'A limit for this connection or room has been reached.' },
  // One answer for every unusable invite link (unknown, wrong, expired, ended, used on another device).
  INVITE_INVALID: { status: 404, message: 'This appointment link cannot be used. Contact your clinic for a new one.' },
  VERIFICATION_FAILED: { status: 422, message: 'The answer does not match our records.' },
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export interface ErrorBody {
  /** `current`: only with VERSION_CONFLICT, the annotation as it now is (PublicAnnotation). */
  error: { code: ErrorCode; message: string; details?: ErrorDetail[]; current?: unknown };
}

/** Field-level detail of a validation failure: which field, and why (never a value). */
export interface ErrorDetail {
  path: string;
  issue: string;
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(ERROR_CODES, value);
}
