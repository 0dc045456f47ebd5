// Named application errors, each carrying one code of src/protocol/errors.ts. The HTTP error
// handler (and later the socket dispatcher) maps them to responses in one place.
import { ERROR_CODES, type ErrorCode, type ErrorDetail } from './protocol/errors';

export class AppError extends Error {
  override name = 'AppError';
  readonly status: number;
  constructor(
    readonly code: ErrorCode,
    message?: string,
    readonly details?: ErrorDetail[],
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

export class PasswordPolicyError extends AppError {
  override name = 'PasswordPolicyError';
  constructor(reason: string) {
    super('PASSWORD_POLICY', `The password does not meet the site policy: ${reason}.`);
  }
}
