// Schema validation at the edge: zod parse, and a failure becomes a typed VALIDATION_FAILED
// error naming the fields (never echoing their values).
import type { z } from 'zod';
import { ValidationError } from '../errors';

export function parseInput<S extends z.ZodType>(schema: S, value: unknown): z.output<S> {
  const result = schema.safeParse(value ?? {});
  if (result.success) return result.data;
  throw new ValidationError(
    result.error.issues.slice(0, 20).map((issue) => ({
      path: issue.path.join('.') || '(body)',
      issue:
        issue.code === 'unrecognized_keys'
          ? `unknown field(s): ${issue.keys.slice(0, 10).join(', ')}`.slice(0, 200)
          : issue.message.slice(0, 200),
    })),
  );
}
