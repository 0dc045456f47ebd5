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
    const port = target.port ? `:${target.port}` : '';
    const location = `https://${safeHost}${port}${(req.url ?? '/').startsWith('/') ? req.url : '/'}`;
    res.writeHead(308, { Location: location, 'Content-Type': 'text/plain', Connection: 'close' });
    res.end('HTTPS only: use ' + location + '\n');
  });
  const tcp = net.createServer({ pauseOnConnect: false }, (socket) => {
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
  return { tcp, https: httpsServer, http: httpServer };
}
