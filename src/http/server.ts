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

/**
 * TLS 1.2 suites: ECDHE with AEAD only (Mozilla "intermediate" without DHE). Node's default list
 * also offers CBC suites, which testssl flags (LUCKY13); TLS 1.3 suites are all AEAD and stay.
 */
const TLS12_CIPHERS = [
  'TLS_AES_128_GCM_SHA256',
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

export function createDualServer(tls: { cert: string; key: string }, app: RequestListener, publicUrl: string): DualServer {
  const httpsServer = https.createServer(
    { cert: tls.cert, key: tls.key, minVersion: 'TLSv1.2', ciphers: TLS12_CIPHERS, honorCipherOrder: true, handshakeTimeout: 10_000 },
    app,
  );
  httpsServer.headersTimeout = 20_000;
  httpsServer.requestTimeout = 0; // uploads may be long; idle sockets are bounded by keepAliveTimeout
  // ...but a request whose body trickles in (slowloris on the body) would hold its connection for
  // ever: a connection silent both ways for 60 s is closed. Socket.IO pings every 25 s, uploads
  // stream continuously, so neither is affected (test/integration/fuzz-http.test.ts).
  httpsServer.timeout = 60_000;
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
  // In-flight requests per connection that carried a request (the raw socket for plain HTTP, the
  // TLS socket for HTTPS), so draining can close idle keep-alive connections at once while
  // requests in flight finish and upgraded connections (WebSocket) are left to their owner.
  const inFlight = new Map<net.Socket, number>();
  // Every accepted connection, destroyed when the grace period is over.
  const connections = new Set<net.Socket>();
  let draining = false;
  const track = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const socket = req.socket as net.Socket;
    if (!inFlight.has(socket)) socket.once('close', () => inFlight.delete(socket));
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
    connections.add(socket);
    socket.once('close', () => connections.delete(socket));
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
        for (const socket of connections) socket.destroy();
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
