// The listening socket: HTTPS, and on the same port a plain-HTTP responder that redirects to
// HTTPS (a browser told http://host:8443 lands on the right page instead of a reset). The
// first byte of a connection tells them apart: 0x16 opens every TLS handshake.
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import type { RequestListener } from 'node:http';

export interface DualServer {
  /** The TCP listener; call listen() on it. */
  tcp: net.Server;
  https: https.Server;
  http: http.Server;
  /**
   * Stops accepting connections, lets in-flight requests finish (their connections then close
   * instead of being kept alive), closes idle connections at once, and destroys whatever is
   * left after `graceMs`.
   */
  drain(graceMs: number): Promise<void>;
}

const TLS_HANDSHAKE = 0x16;

export function createDualServer(tls: { cert: string; key: string }, app: RequestListener, publicUrl: string): DualServer {
  const httpsServer = https.createServer(
    { cert: tls.cert, key: tls.key, minVersion: 'TLSv1.2', honorCipherOrder: true },
    app,
  );
  httpsServer.headersTimeout = 20_000;
  httpsServer.requestTimeout = 0; // uploads may be long; idle sockets are bounded by keepAliveTimeout
  const target = new URL(publicUrl);
  const httpServer = http.createServer((req, res) => {
    const host = (req.headers.host ?? target.host).replace(/:\d+$/, '');
    const safeHost = /^[A-Za-z0-9.-]+$|^\[[0-9a-fA-F:]+\]$/.test(host) ? host : target.hostname;
    // With PORT=0 (tests) the configured URL has no real port: use the one this socket reached.
    const port = target.port === '0' ? `:${req.socket.localPort}` : target.port ? `:${target.port}` : '';
    const location = `https://${safeHost}${port}${(req.url ?? '/').startsWith('/') ? req.url : '/'}`;
    res.writeHead(308, { Location: location, 'Content-Type': 'text/plain', Connection: 'close' });
    res.end('HTTPS only: use ' + location + '\n');
  });
  // In-flight requests per connection, so draining can close idle keep-alive sockets at once.
  const inFlight = new Map<net.Socket, number>();
  let draining = false;
  const track = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const socket = req.socket as net.Socket;
    inFlight.set(socket, (inFlight.get(socket) ?? 0) + 1);
    if (draining) res.setHeader('Connection', 'close');
    res.once('close', () => {
      const left = (inFlight.get(socket) ?? 1) - 1;
      inFlight.set(socket, left);
      if (draining && left === 0) socket.destroy();
    });
  };
  httpsServer.prependListener('request', track);
  httpServer.prependListener('request', track);
  // Upgraded connections (WebSocket) are not requests in flight; they are closed by their owner.
  const tcp = net.createServer({ pauseOnConnect: false }, (socket) => {
    inFlight.set(socket, 0);
    socket.once('close', () => inFlight.delete(socket));
    socket.once('error', () => socket.destroy());
    socket.setTimeout(20_000, () => socket.destroy());
    socket.once('readable', () => {
      const first = socket.read(1) as Buffer | null;
      if (!first) {
        socket.destroy();
        return;
      }
      socket.unshift(first);
      socket.setTimeout(0);
      socket.removeAllListeners('error');
      (first[0] === TLS_HANDSHAKE ? httpsServer : httpServer).emit('connection', socket);
    });
  });
  const drain = (graceMs: number) =>
    new Promise<void>((resolve) => {
      draining = true;
      const force = setTimeout(() => {
        for (const socket of inFlight.keys()) socket.destroy();
      }, graceMs);
      force.unref();
      tcp.close(() => {
        clearTimeout(force);
        resolve();
      });
      for (const [socket, count] of inFlight) if (count === 0) socket.destroy();
    });
  return { tcp, https: httpsServer, http: httpServer, drain };
}
