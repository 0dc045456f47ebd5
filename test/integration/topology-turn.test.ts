// The coturn of docker-compose.yml, for real: Debian's turnserver started with the shipped
// deploy/coturn/turnserver.conf (certificate paths and ports moved to this test's) and the shared
// secret on its command line, as the compose file does. A TURN client written here speaks STUN
// over UDP: credentials made by the server's own turnCredentials() allocate a relay; a wrong or
// expired one is refused; and the relay refuses to reach loopback or private addresses (a TURN
// server must not become a way into the hospital's network) while a public peer is allowed.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { turnCredentials } from '../../src/media/turn';
import { waitFor } from '../helpers/server';

const ROOT = path.resolve(__dirname, '..', '..');
const SECRET = 'turn-test-secret-0123456789abcdef';
const REALM = 'turn.test.invalid';
const MAGIC = 0x2112a442;

let dir: string;
let turn: ChildProcess;
let port: number;

function freeUdpPort(): Promise<number> {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    s.bind(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
}

function freeTcpPort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

interface Attr {
  type: number;
  value: Buffer;
}

function attr(type: number, value: Buffer): Attr {
  return { type, value };
}

/** Encodes a STUN message; with `key`, appends MESSAGE-INTEGRITY (RFC 5389 15.4). */
function encode(method: number, attrs: Attr[], key?: Buffer): { bytes: Buffer; id: Buffer } {
  const id = randomBytes(12);
  const body = Buffer.concat(
    attrs.map((a) => {
      const pad = (4 - (a.value.length % 4)) % 4;
      const head = Buffer.alloc(4);
      head.writeUInt16BE(a.type, 0);
      head.writeUInt16BE(a.value.length, 2);
      return Buffer.concat([head, a.value, Buffer.alloc(pad)]);
    }),
  );
  const header = (length: number) => {
    const h = Buffer.alloc(20);
    h.writeUInt16BE(method, 0);
    h.writeUInt16BE(length, 2);
    h.writeUInt32BE(MAGIC, 4);
    id.copy(h, 8);
    return h;
  };
  if (!key) return { bytes: Buffer.concat([header(body.length), body]), id };
  const withoutMi = Buffer.concat([header(body.length + 24), body]);
  const mac = createHmac('sha1', key).update(withoutMi).digest();
  const mi = Buffer.alloc(4);
  mi.writeUInt16BE(0x0008, 0);
  mi.writeUInt16BE(20, 2);
  return { bytes: Buffer.concat([withoutMi, mi, mac]), id };
}

function decode(msg: Buffer): { type: number; attrs: Map<number, Buffer> } {
  const type = msg.readUInt16BE(0);
  const attrs = new Map<number, Buffer>();
  for (let off = 20; off + 4 <= msg.length; ) {
    const t = msg.readUInt16BE(off);
    const len = msg.readUInt16BE(off + 2);
    attrs.set(t, msg.subarray(off + 4, off + 4 + len));
    off += 4 + len + ((4 - (len % 4)) % 4);
  }
  return { type, attrs };
}

const errorCode = (attrs: Map<number, Buffer>) => {
  const v = attrs.get(0x0009);
  return v ? v[2]! * 100 + v[3]! : null;
};

/** One TURN client on its own UDP socket (a TURN allocation is per 5-tuple). */
class TurnClient {
  readonly socket = dgram.createSocket('udp4');
  nonce: Buffer | null = null;
  realm: Buffer | null = null;

  constructor(
    readonly username: string,
    readonly password: string,
  ) {}

  request(method: number, attrs: Attr[], authenticated: boolean, timeoutMs = 5000): Promise<{ type: number; attrs: Map<number, Buffer> }> {
    const key = createHash('md5').update(`${this.username}:${this.realm ?? ''}:${this.password}`).digest();
    const all = authenticated ? [...attrs, attr(0x0006, Buffer.from(this.username)), attr(0x0014, this.realm!), attr(0x0015, this.nonce!)] : attrs;
    const { bytes, id } = encode(method, all, authenticated ? key : undefined);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no answer from turnserver')), timeoutMs);
      const onMessage = (msg: Buffer) => {
        if (!msg.subarray(8, 20).equals(id)) return;
        clearTimeout(timer);
        this.socket.off('message', onMessage);
        resolve(decode(msg));
      };
      this.socket.on('message', onMessage);
      this.socket.send(bytes, port, '127.0.0.1');
    });
  }

  /** Allocate: the first try is answered 401 with the realm and a nonce, the second is signed. */
  async allocate(): Promise<number | null> {
    const transport = attr(0x0019, Buffer.from([17, 0, 0, 0]));
    const challenge = await this.request(0x0003, [transport], false);
    expect(errorCode(challenge.attrs)).toBe(401);
    this.realm = challenge.attrs.get(0x0014)!;
    this.nonce = challenge.attrs.get(0x0015)!;
    const answer = await this.request(0x0003, [transport], true);
    return answer.type === 0x0103 ? null : errorCode(answer.attrs);
  }

  /** CreatePermission for a peer address: null when granted, else the error code. */
  async permit(ip: string): Promise<number | null> {
    const value = Buffer.alloc(8);
    value.writeUInt16BE(0x01, 0);
    value.writeUInt16BE(40000 ^ (MAGIC >>> 16), 2);
    const parts = ip.split('.').map(Number);
    value.writeUInt32BE((((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) ^ MAGIC) >>> 0, 4);
    const answer = await this.request(0x0008, [attr(0x0012, value)], true);
    return answer.type === 0x0108 ? null : errorCode(answer.attrs);
  }

  close(): void {
    this.socket.close();
  }
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cc-turn-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', `/CN=${REALM}`, '-keyout', path.join(dir, 'turn.pem.key'), '-out', path.join(dir, 'turn.pem')], { stdio: 'ignore' });
  port = await freeUdpPort();
  const tlsPort = await freeTcpPort();
  const relay = 20000 + Math.floor(Math.random() * 20000);
  // The shipped file, with this test's certificate paths and ports; everything else unchanged.
  const conf = fs
    .readFileSync(path.join(ROOT, 'deploy', 'coturn', 'turnserver.conf'), 'utf8')
    .replace(/^listening-port=.*$/m, `listening-port=${port}`)
    .replace(/^tls-listening-port=.*$/m, `tls-listening-port=${tlsPort}`)
    .replace(/^cert=\/certs\//m, `cert=${dir}/`)
    .replace(/^pkey=\/certs\//m, `pkey=${dir}/`)
    .replace(/^min-port=.*$/m, `min-port=${relay}`)
    .replace(/^max-port=.*$/m, `max-port=${relay + 20}`);
  fs.writeFileSync(path.join(dir, 'turnserver.conf'), conf);
  // As docker-compose.yml runs it: the secret, realm and address on the command line.
  turn = spawn('turnserver', ['-c', path.join(dir, 'turnserver.conf'), `--static-auth-secret=${SECRET}`, `--realm=${REALM}`, '--listening-ip=127.0.0.1', '--relay-ip=127.0.0.1', '--pidfile', path.join(dir, 'turn.pid'), '--userdb', path.join(dir, 'turn.db')], { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  turn.stdout!.on('data', (c) => (output += c));
  turn.stderr!.on('data', (c) => (output += c));
  turn.on('exit', (code) => (output += `\nturnserver exited with ${code}`));
  await waitFor(async () => {
    const probe = new TurnClient('probe', 'probe');
    try {
      const answer = await probe.request(0x0001, [], false, 1000); // Binding request
      return answer.type === 0x0101;
    } catch {
      return false;
    } finally {
      probe.close();
    }
  }, `turnserver answers on ${port}`, 30_000, 200).catch((err: Error) => {
    throw new Error(`${err.message}; its output ends: ${output.slice(-600)}`);
  });
});

afterAll(async () => {
  if (turn && turn.exitCode === null) {
    const exited = new Promise((resolve) => turn.once('exit', resolve));
    turn.kill('SIGTERM');
    await exited;
  }
  fs.rmSync(dir, { recursive: true, force: true });
});

test("credentials from the server's turnCredentials() allocate a relay on the shipped coturn configuration", async () => {
  const [server] = turnCredentials({ urls: ['turn:turn.test.invalid:3478'], secret: SECRET, ttlSeconds: 600 }, 'user-1', new Date());
  const client = new TurnClient(server!.username!, server!.credential!);
  try {
    expect(await client.allocate()).toBeNull();
    // A public peer may be reached; loopback and private networks may not.
    expect(await client.permit('198.51.100.7')).toBeNull();
    expect(await client.permit('127.0.0.1')).toBe(403);
    expect(await client.permit('10.1.2.3')).toBe(403);
    expect(await client.permit('192.168.1.20')).toBe(403);
  } finally {
    client.close();
  }
});

test('a credential signed with another secret, or expired, is refused', async () => {
  const [forged] = turnCredentials({ urls: ['turn:x'], secret: 'not-the-secret', ttlSeconds: 600 }, 'user-2', new Date());
  const wrong = new TurnClient(forged!.username!, forged!.credential!);
  const [old] = turnCredentials({ urls: ['turn:x'], secret: SECRET, ttlSeconds: 600 }, 'user-3', new Date(Date.now() - 3600_000));
  const expired = new TurnClient(old!.username!, old!.credential!);
  try {
    expect(await wrong.allocate()).toBe(401);
    expect(await expired.allocate()).toBe(401);
  } finally {
    wrong.close();
    expired.close();
  }
});
