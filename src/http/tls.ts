// TLS material: the configured certificate and key, or a self-signed pair generated into
// DATA_DIR/tls on first start (sha256, 2048-bit RSA, 1 year, SAN localhost + the public host)
// and reused afterwards.
import fs from 'node:fs';
import path from 'node:path';
import { generate } from 'selfsigned';

export interface TlsMaterial {
  cert: string;
  key: string;
  selfSigned: boolean;
  certFile: string;
}

export async function loadOrCreateTls(opts: {
  certFile?: string;
  keyFile?: string;
  dataDir: string;
  publicHost: string;
}): Promise<TlsMaterial> {
  if (opts.certFile || opts.keyFile) {
    if (!opts.certFile || !opts.keyFile) throw new Error('set both TLS_CERT_FILE and TLS_KEY_FILE, or neither');
    return { cert: fs.readFileSync(opts.certFile, 'utf8'), key: fs.readFileSync(opts.keyFile, 'utf8'), selfSigned: false, certFile: opts.certFile };
  }
  const dir = path.join(opts.dataDir, 'tls');
  const certFile = path.join(dir, 'cert.pem');
  const keyFile = path.join(dir, 'key.pem');
  if (fs.existsSync(certFile) && fs.existsSync(keyFile)) {
    return { cert: fs.readFileSync(certFile, 'utf8'), key: fs.readFileSync(keyFile, 'utf8'), selfSigned: true, certFile };
  }
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const altNames: { type: 2 | 7; value?: string; ip?: string }[] = [
    { type: 2, value: 'localhost' },
    { type: 7, ip: '127.0.0.1' },
    { type: 7, ip: '::1' },
  ];
  if (opts.publicHost !== 'localhost' && !altNames.some((a) => a.value === opts.publicHost || a.ip === opts.publicHost)) {
    altNames.push(/^[\d.]+$|:/.test(opts.publicHost) ? { type: 7, ip: opts.publicHost } : { type: 2, value: opts.publicHost });
  }
  const notAfterDate = new Date(Date.now() + 365 * 24 * 3600 * 1000);
  const pems = await generate([{ name: 'commonName', value: opts.publicHost }], {
    keySize: 2048,
    algorithm: 'sha256',
    notAfterDate,
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames },
    ],
  });
  fs.writeFileSync(keyFile, pems.private, { mode: 0o600 });
  fs.writeFileSync(certFile, pems.cert, { mode: 0o644 });
  return { cert: pems.cert, key: pems.private, selfSigned: true, certFile };
}
