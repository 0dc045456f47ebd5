// Route plumbing shared by every domain: validate params, query and body against strict zod
// schemas before the handler runs, and turn the handler's promise into a response or an error.
import type { NextFunction, Request, RequestHandler, Response } from 'express';
import { z } from 'zod';
import { parseInput } from './validate';

const EMPTY = z.strictObject({});

export interface RouteSchemas<B extends z.ZodType, P extends z.ZodType, Q extends z.ZodType> {
  body?: B;
  params?: P;
  query?: Q;
}

export interface RouteInput<B, P, Q> {
  body: B;
  params: P;
  query: Q;
  req: Request;
  res: Response;
}

/**
 * Wraps a handler: parses body, params and query (each strict; absent schemas mean "must be
 * empty"), then sends the handler's result as JSON with the given status, or passes the error on.
 */
export function route<
  B extends z.ZodType = typeof EMPTY,
  P extends z.ZodType = typeof EMPTY,
  Q extends z.ZodType = typeof EMPTY,
>(
  schemas: RouteSchemas<B, P, Q>,
  handler: (input: RouteInput<z.output<B>, z.output<P>, z.output<Q>>) => Promise<unknown>,
  status = 200,
): RequestHandler {
  return (req: Request, res: Response, next: NextFunction) => {
    let input: RouteInput<z.output<B>, z.output<P>, z.output<Q>>;
    try {
      const hasBody = req.method !== 'GET' && req.method !== 'HEAD' && req.method !== 'DELETE';
      input = {
        body: (hasBody ? parseInput(schemas.body ?? EMPTY, req.body) : undefined) as z.output<B>,
        params: parseInput(schemas.params ?? EMPTY, { ...req.params }) as z.output<P>,
        query: parseInput(schemas.query ?? EMPTY, { ...(req.query as object) }) as z.output<Q>,
        req,
        res,
      };
    } catch (err) {
      next(err);
      return;
    }
    handler(input).then((result) => {
      if (res.headersSent) return;
      if (result === undefined) res.status(204).end();
      else res.status(status).json(result);
    }, next);
  };
}
