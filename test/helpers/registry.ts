// The route and event registry the hostile-input and access-control suites are generated from:
// every HTTP route as express really mounted it (walking the router stack, with mount paths),
// and every socket event a connected socket really listens to on the server. A route or event
// added anywhere shows up here without anyone remembering to list it.
import type { Server } from 'socket.io';

export interface RegisteredRoute {
  method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** Full path template, e.g. /api/cases/:caseId */
  path: string;
  key: string;
}

interface Layer {
  rawPath?: string | string[];
  route?: { path: string | string[]; methods: Record<string, boolean> };
  handle: { stack?: Layer[] };
}

function join(prefix: string, part: string): string {
  if (part === '/' || part === '') return prefix || '/';
  return `${prefix.replace(/\/$/, '')}${part.startsWith('/') ? '' : '/'}${part}`;
}

/** Every (method, path) of an express app, depth first, deduplicated. */
export function listRoutes(app: unknown): RegisteredRoute[] {
  const router = (app as { router?: { stack: Layer[] }; _router?: { stack: Layer[] } }).router ?? (app as { _router: { stack: Layer[] } })._router;
  const out = new Map<string, RegisteredRoute>();
  const walk = (stack: Layer[], prefix: string) => {
    for (const layer of stack) {
      if (layer.route) {
        const paths = Array.isArray(layer.route.path) ? layer.route.path : [layer.route.path];
        for (const p of paths) {
          for (const [m, on] of Object.entries(layer.route.methods)) {
            if (!on || m === '_all') continue;
            const method = m.toUpperCase() as RegisteredRoute['method'];
            const path = join(prefix, p);
            out.set(`${method} ${path}`, { method, path, key: `${method} ${path}` });
          }
        }
      } else if (layer.handle?.stack) {
        const mount = Array.isArray(layer.rawPath) ? layer.rawPath[0]! : (layer.rawPath ?? '/');
        walk(layer.handle.stack, join(prefix, typeof mount === 'string' ? mount : '/'));
      }
    }
  };
  walk(router.stack, '');
  return [...out.values()];
}

/** Socket.IO's own reserved events, never sent by a client. */
const RESERVED = new Set(['disconnect', 'disconnecting', 'error', 'newListener', 'removeListener']);

/** Events a connected server-side socket listens to (take any socket that finished its handshake). */
export function listSocketEvents(io: Server): string[] {
  const socket = [...io.of('/').sockets.values()][0];
  if (!socket) throw new Error('listSocketEvents: connect a socket first');
  return socket
    .eventNames()
    .filter((e): e is string => typeof e === 'string' && !RESERVED.has(e))
    .sort();
}
