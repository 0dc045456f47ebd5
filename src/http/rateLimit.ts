// Rate limits (rate-limiter-flexible): one limiter per purpose, keyed by client IP or user.
// In-memory per node by default; the Redis variant is chosen by the same factory when
// REDIS_URL is set (scale-out), so the limits hold across nodes.
import type { RequestHandler } from 'express';
import { createClient, type RedisClientType } from 'redis';
import { RateLimiterMemory, RateLimiterRedis, RateLimiterRes, type RateLimiterAbstract } from 'rate-limiter-flexible';
import { AppError } from '../errors';
import type { Logger } from '../observability/logger';

export interface RateLimitSpec {
  /** Requests allowed per window. */
  points: number;
  /** Window length in seconds. */
  duration: number;
}

export type LimiterFactory = (name: string, spec: RateLimitSpec) => RateLimiterAbstract;

export const memoryLimiters: LimiterFactory = (name, spec) =>
  new RateLimiterMemory({ keyPrefix: name, points: spec.points, duration: spec.duration });

/**
 * Limiters whose counters live in Redis, so a budget is one for every node (a client that the
 * load balancer spreads over nodes gets no extra attempts). While Redis is unreachable each node
 * falls back to its own in-memory counters (the insurance limiter) rather than failing requests
 * or letting them through unlimited.
 */
export function redisLimiters(client: RedisClientType): LimiterFactory {
  return (name, spec) =>
    new RateLimiterRedis({
      storeClient: client,
      useRedisPackage: true,
      // Without this a command waits for a reconnect and every request would hang on it.
      rejectIfRedisNotReady: true,
      keyPrefix: `cc:rl:${name}`,
      points: spec.points,
      duration: spec.duration,
      insuranceLimiter: new RateLimiterMemory({ keyPrefix: `${name}-insurance`, points: spec.points, duration: spec.duration }),
    });
}

/** Connects the limiters' own Redis client (commands fail fast while disconnected). */
export async function connectRedisLimiters(url: string, logger: Logger): Promise<{ limiters: LimiterFactory; close(): Promise<void> }> {
  const client = createClient({ url, disableOfflineQueue: true, socket: { reconnectStrategy: (retries) => Math.min(50 + retries * 100, 2000) } }) as RedisClientType;
  client.on('error', (err: Error) => logger.warn({ role: 'rate-limits', err: { message: err.message } }, 'redis connection error'));
  await client.connect();
  return {
    limiters: redisLimiters(client),
    async close() {
      // A Redis that is away gets no QUIT (it would wait for an answer that never comes).
      if (!client.isReady) {
        if (client.isOpen) client.destroy();
        return;
      }
      const gaveUp = new Promise<never>((_resolve, reject) => setTimeout(() => reject(new Error('quit timed out')), 2000).unref());
      await Promise.race([client.quit(), gaveUp]).catch(() => client.destroy());
    },
  };
}

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
