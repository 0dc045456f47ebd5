// A node in its own process (the real entry point, src/main.ts, through swcRegister.cjs), which a
// test can kill -9 and start again on the same port and data directory. Its structured log lines
// go to the run's log directory (scanned for secrets at the end); the one-time demo passwords it
// prints to the console, by design, are read from stdout and kept out of that directory.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { RUN_LOG_DIR, waitFor } from './server';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(port));
    });
  });
}

export interface DemoCredential {
  role: string;
  email: string;
  password: string;
}

export class ChildNode {
  #proc: ChildProcess | null = null;
  #starts = 0;
  demo: DemoCredential[] = [];

  constructor(
    readonly dataDir: string,
    readonly port: number,
    readonly env: Record<string, string> = {},
  ) {}

  get url(): string {
    return `https://127.0.0.1:${this.port}`;
  }

  get ca(): string {
    return fs.readFileSync(path.join(this.dataDir, 'tls', 'cert.pem'), 'utf8');
  }

  get pid(): number | undefined {
    return this.#proc?.pid;
  }

  async start(): Promise<void> {
    const root = path.resolve(__dirname, '..', '..');
    const logFile = path.join(RUN_LOG_DIR, `${process.pid}-child-${this.port}-${this.#starts++}.log`);
    const proc = spawn(process.execPath, ['-r', path.join(__dirname, 'swcRegister.cjs'), path.join(root, 'src', 'main.ts')], {
      cwd: root,
      env: {
        PATH: process.env.PATH ?? '',
        HOME: process.env.HOME ?? '/tmp',
        PORT: String(this.port),
        HOST: '127.0.0.1',
        PUBLIC_URL: this.url,
        DATA_DIR: this.dataDir,
        LOG_LEVEL: 'info',
        DEMO_SLIDE: 'false',
        RETENTION_PURGE_MINUTES: '0',
        MEDIASOUP_WORKERS: '0',
        SHUTDOWN_GRACE_SECONDS: '1',
        ...this.env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.#proc = proc;
    let listening = false;
    let out = '';
    const onLine = (line: string) => {
      if (line.startsWith('{')) {
        fs.appendFileSync(logFile, line + '\n');
        return;
      }
      const demo = /^\s+(site_admin|clinician|pathologist)\s+(\S+@\S+)\s+(\S+)\s*$/.exec(line);
      if (demo) this.demo.push({ role: demo[1]!, email: demo[2]!, password: demo[3]! });
      if (line.startsWith('listening on ')) listening = true;
    };
    let buffered = '';
    proc.stdout!.on('data', (chunk: Buffer) => {
      buffered += chunk.toString('utf8');
      const lines = buffered.split('\n');
      buffered = lines.pop()!;
      lines.forEach(onLine);
    });
    proc.stderr!.on('data', (chunk: Buffer) => (out += chunk.toString('utf8')));
    await waitFor(() => listening || proc.exitCode !== null, `node on ${this.port} listening`, 60_000, 50);
    if (!listening) throw new Error(`node exited with ${proc.exitCode}: ${out.slice(0, 2000)}`);
  }

  /** SIGKILL: no drain, no close, no flush; resolves once the process is gone. */
  async kill9(): Promise<void> {
    const proc = this.#proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((resolve) => proc.once('exit', resolve));
    proc.kill('SIGKILL');
    await exited;
    this.#proc = null;
  }

  async stop(): Promise<void> {
    const proc = this.#proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((resolve) => proc.once('exit', resolve));
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
    this.#proc = null;
  }
}
