// Named application errors, each carrying one code of src/protocol/errors.ts. The HTTP error
// handler (and later the socket dispatcher) maps them to responses in one place.
import type { PublicAnnotation } from './protocol/annotations';
import { ERROR_CODES, type ErrorCode, type ErrorDetail } from './protocol/errors';

export class AppError extends Error {
  override name = 'AppError';
  readonly status: number;
  constructor(
    readonly code: ErrorCode,
    message?: string,
    readonly details?: ErrorDetail[],
    /** What a client needs to recover (see VersionConflictError); sent only for codes that define it. */
    readonly data?: Readonly<{ current?: unknown }>,
  ) {
    super(message ?? ERROR_CODES[code].message);
    this.status = ERROR_CODES[code].status;
  }
}

export class ValidationError extends AppError {
  override name = 'ValidationError';
  constructor(details: ErrorDetail[]) {
    super('VALIDATION_FAILED', undefined, details);
  }
}

export class ForbiddenError extends AppError {
  override name = 'ForbiddenError';
  constructor() {
    super('FORBIDDEN');
  }
}

export class NotFoundError extends AppError {
  override name = 'NotFoundError';
  constructor() {
    super('NOT_FOUND');
  }
}

/**
 * An update or deletion named a version that is no longer current: `current` is the annotation
 * as it now is, so the client can reapply its change without another round trip.
 */
export class VersionConflictError extends AppError {
  override name = 'VersionConflictError';
  constructor(readonly current: PublicAnnotation) {
    super('VERSION_CONFLICT', undefined, undefined, { current });
  }
}

export class PasswordPolicyError extends AppError {
  override name = 'PasswordPolicyError';
  constructor(reason: string) {
    super('PASSWORD_POLICY', `The password does not meet the site policy: ${reason}.`);
  }
}
