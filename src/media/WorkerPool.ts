// WorkerPool: the mediasoup workers of this node (one per core by default), each with one
// WebRtcServer, so that every WebRTC transport of a worker shares one UDP and one TCP port: a
// deployment opens a handful of ports rather than a range that runs out. Routers are placed on the
// least-loaded worker. A worker that dies is replaced on the same ports and announced (`died`) so
// that its rooms can move.
import { EventEmitter } from 'node:events';
import type { Logger } from '../observability/logger';
import { loadMediasoup, type Mediasoup } from './mediasoup';

type Worker = Mediasoup.types.Worker;
type WebRtcServer = Mediasoup.types.WebRtcServer;

export interface WorkerPoolOptions {
  workers: number;
  /** Interface the WebRtcServers listen on. */
  listenIp: string;
  /** Address put in ICE candidates (needed when listening on 0.0.0.0 or behind NAT). */
  announcedIp: string | undefined;
  /** First port; worker i listens on UDP and TCP port minPort + i. 0: any free port (tests). */
  minPort: number;
  maxPort: number;
  logLevel?: 'debug' | 'warn' | 'error' | 'none';
}

export interface PoolWorker {
  readonly index: number;
  readonly worker: Worker;
  readonly webRtcServer: WebRtcServer;
  /** Routers placed on this worker (the load measure). */
  routers: number;
}

interface WorkerPoolEvents {
  /** A worker died; it has been removed. Its routers are gone with it. */
  died: [PoolWorker];
}

export class WorkerPoolClosedError extends Error {
  override name = 'WorkerPoolClosedError';
}

export class WorkerPool extends EventEmitter<WorkerPoolEvents> {
  readonly #workers = new Map<number, PoolWorker>();
  readonly #replacing = new Set<Promise<void>>();
  #closed = false;
  deaths = 0;

  private constructor(
    private readonly options: WorkerPoolOptions,
    private readonly logger: Logger,
  ) {
    super();
  }

  static async create(options: WorkerPoolOptions, logger: Logger): Promise<WorkerPool> {
    if (options.minPort > 0 && options.minPort + options.workers - 1 > options.maxPort) {
      throw new Error(`RTC_MIN_PORT..RTC_MAX_PORT (${options.minPort}..${options.maxPort}) has fewer ports than the ${options.workers} mediasoup workers need`);
    }
    const pool = new WorkerPool(options, logger.child({ module: 'media.workers' }));
    try {
      for (let i = 0; i < options.workers; i++) await pool.#start(i);
    } catch (err) {
      await pool.close();
      throw err;
    }
    return pool;
  }

  async #start(index: number): Promise<void> {
    const mediasoup = loadMediasoup();
    const worker = await mediasoup.createWorker({ logLevel: this.options.logLevel ?? 'warn' });
    let webRtcServer: WebRtcServer;
    try {
      const port = this.options.minPort > 0 ? this.options.minPort + index : undefined;
      const base = { ip: this.options.listenIp, ...(this.options.announcedIp ? { announcedIp: this.options.announcedIp } : {}), ...(port ? { port } : {}) };
      webRtcServer = await worker.createWebRtcServer({ listenInfos: [{ protocol: 'udp', ...base }, { protocol: 'tcp', ...base }] });
    } catch (err) {
      worker.close();
      throw err;
    }
    const entry: PoolWorker = { index, worker, webRtcServer, routers: 0 };
    this.#workers.set(index, entry);
    worker.on('died', (error) => {
      this.deaths++;
      this.#workers.delete(index);
      this.logger.error({ workerIndex: index, pid: worker.pid, err: { message: error.message } }, 'mediasoup worker died');
      this.emit('died', entry);
      if (this.#closed) return;
      // Replace it on the same ports (the dead process released them).
      const replacing = this.#start(index).then(
        () => this.logger.info({ workerIndex: index }, 'mediasoup worker replaced'),
        (err: Error) => this.logger.error({ workerIndex: index, err: { message: err.message } }, 'mediasoup worker could not be replaced'),
      );
      this.#replacing.add(replacing);
      void replacing.finally(() => this.#replacing.delete(replacing));
    });
    this.logger.info({ workerIndex: index, pid: worker.pid }, 'mediasoup worker started');
  }

  /** The live worker with the fewest routers. */
  leastLoaded(): PoolWorker {
    if (this.#closed) throw new WorkerPoolClosedError('the worker pool is closed');
    let best: PoolWorker | undefined;
    for (const w of this.#workers.values()) if (!w.worker.closed && (!best || w.routers < best.routers)) best = w;
    if (!best) throw new WorkerPoolClosedError('no mediasoup worker is running');
    return best;
  }

  /** Waits until dead workers have been replaced (tests and shutdown). */
  async settled(): Promise<void> {
    while (this.#replacing.size > 0) await Promise.allSettled([...this.#replacing]);
  }

  get size(): number {
    return this.#workers.size;
  }

  get expected(): number {
    return this.options.workers;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** The live workers (benchmarks read their resource usage). */
  workers(): Worker[] {
    return [...this.#workers.values()].map((w) => w.worker);
  }

  pids(): number[] {
    return [...this.#workers.values()].map((w) => w.worker.pid);
  }

  /** Healthy: every worker the pool should run is running. */
  healthy(): boolean {
    return !this.#closed && this.#workers.size === this.options.workers;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.settled();
    for (const w of this.#workers.values()) w.worker.close();
    this.#workers.clear();
    this.removeAllListeners();
  }
}
