// Zero-configuration start, as a user runs it: the compiled server in its own process, a fresh
// data directory, HTTPS with a generated certificate, plain HTTP redirected, the one-time demo
// credentials printed once, and a clean drain on SIGTERM.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { waitFor } from '../helpers/server';

const ROOT = path.resolve(__dirname, '../..');
const MAIN = path.join(ROOT, 'dist/main.js');

interface Node {
  child: ChildProcess;
  url: string;
  port: number;
  stdout: () => string;
  exited: Promise<number | null>;
}

const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
});

async function startNode(dataDir: string): Promise<Node> {
  const child = spawn(process.execPath, [MAIN], {
    env: { ...process.env, DATA_DIR: dataDir, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info', MEDIASOUP_WORKERS: '1', RTC_MIN_PORT: '0', MEDIASOUP_LISTEN_IP: '127.0.0.1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const match = await waitFor(() => /listening on (https:\/\/[\w.]+:(\d+))/.exec(out) ?? (child.exitCode !== null ? Promise.reject(new Error(out)) : null), 'the server prints its listening line', 20_000);
  return { child, url: match[1]!, port: Number(match[2]), stdout: () => out, exited };
}

function get(url: string, ca: string): Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const lib = url.startsWith('https') ? https : http;
    lib
      .get(url, { ca }, (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
      })
      .on('error', reject);
  });
}

let dataDir: string;
beforeAll(() => {
  if (!fs.existsSync(MAIN)) throw new Error('dist/main.js is missing: npm test builds it in its set-up step');
  dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'cc-start-'));
});

test('first start: HTTPS with a generated certificate, HSTS and CSP, plain HTTP redirected, demo credentials printed once', async () => {
  const node = await startNode(dataDir);
  try {
    const certPem = fs.readFileSync(path.join(dataDir, 'tls/cert.pem'), 'utf8');
    const cert = new X509Certificate(certPem);
    expect(cert.subjectAltName).toContain('DNS:localhost');
    expect(cert.subjectAltName).toContain('IP Address:127.0.0.1');
    expect((fs.statSync(path.join(dataDir, 'tls/key.pem')).mode & 0o777).toString(8)).toBe('600');
    expect(fs.existsSync(path.join(dataDir, 'case-collab.sqlite'))).toBe(true);

    const health = await get(`${node.url}/healthz`, certPem);
    expect(health.status).toBe(200);
    expect(health.headers['strict-transport-security']).toMatch(/max-age=31536000; includeSubDomains/);
    const csp = health.headers['content-security-policy'] as string;
    expect(csp).toContain("script-src 'self'");
    expect(csp).toContain("frame-ancestors 'none'");
    expect(csp).not.toContain('unsafe-inline');
    expect((await get(`${node.url}/readyz`, certPem)).body).toContain('"store":"sqlite"');

    const plain = await get(`http://127.0.0.1:${node.port}/api/me?x=1`, certPem);
    expect(plain.status).toBe(308);
    expect(plain.headers.location).toBe(`https://127.0.0.1:${node.port}/api/me?x=1`);

    const out = node.stdout();
    const creds = [...out.matchAll(/^\s+(site_admin|clinician|pathologist)\s+(\S+@demo\.local)\s+(\S+)$/gm)];
    expect(creds.map((m) => m[1]).sort()).toEqual(['clinician', 'pathologist', 'site_admin']);
    // The one-time passwords appear only in the banner, never in a structured log line.
    for (const line of out.split('\n').filter((l) => l.startsWith('{'))) {
      for (const m of creds) expect(line).not.toContain(m[3]);
    }
  } finally {
    node.child.kill('SIGTERM');
    expect(await node.exited).toBe(0);
  }
});

test('second start reuses the certificate and data, prints no credentials; SIGTERM drains and exits 0', async () => {
  const before = fs.readFileSync(path.join(dataDir, 'tls/cert.pem'), 'utf8');
  const node = await startNode(dataDir);
  try {
    expect(fs.readFileSync(path.join(dataDir, 'tls/cert.pem'), 'utf8')).toBe(before);
    expect(node.stdout()).not.toMatch(/One-time passwords/);
    expect((await get(`${node.url}/healthz`, before)).status).toBe(200);
  } finally {
    node.child.kill('SIGTERM');
    expect(await node.exited).toBe(0);
    expect(node.stdout()).toContain('"msg":"stopped"');
  }
});

test('a bad configuration value stops the process with a message naming it', () => {
  const res = spawnSync(process.execPath, [MAIN], { env: { ...process.env, DATA_DIR: dataDir, PORT: 'eighty' }, encoding: 'utf8' });
  expect(res.status).toBe(2);
  expect(res.stderr).toMatch(/invalid configuration:\n\s+PORT: /);
});
