// Rate limits (rate-limiter-flexible): one limiter per purpose, keyed by client IP or user.
// In-memory per node by default; the Redis variant is chosen by the same factory when
// REDIS_URL is set (scale-out), so the limits hold across nodes.
import type { RequestHandler } from 'express';
import { RateLimiterMemory, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';
import { AppError } from '../errors';

export interface RateLimitSpec {
  /** Requests allowed per window. */
  points: number;
  /** Window length in seconds. */
  duration: number;
}

export type LimiterFactory = (name: string, spec: RateLimitSpec) => RateLimiterAbstract;

export const memoryLimiters: LimiterFactory = (name, spec) =>
  new RateLimiterMemory({ keyPrefix: name, points: spec.points, duration: spec.duration });

/** Consumes one point for `key`; throws RATE_LIMITED (with Retry-After set) when exhausted. */
export async function consume(limiter: RateLimiterAbstract, key: string, res?: { setHeader(n: string, v: string): void }): Promise<void> {
  try {
    await limiter.consume(key);
  } catch (rejection) {
    if (rejection instanceof RateLimiterRes) {
      res?.setHeader('Retry-After', String(Math.max(1, Math.ceil(rejection.msBeforeNext / 1000))));
      throw new AppError('RATE_LIMITED');
    }
    throw rejection;
  }
}

export function rateLimitByIp(limiter: RateLimiterAbstract): RequestHandler {
  return (req, res, next) => {
    consume(limiter, req.ip ?? 'unknown', res).then(() => next(), next);
  };
}
