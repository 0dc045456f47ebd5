// Loads mediasoup with its worker binary. mediasoup reads MEDIASOUP_WORKER_BIN once, when its
// module loads, so the variable must be set before the first require: when the environment does
// not name a binary, the path recorded by the set-up step (scripts/setup.mjs, which builds the
// worker from Debian libraries into a cache outside the checkout) is used.
import fs from 'node:fs';
import path from 'node:path';
import type * as Mediasoup from 'mediasoup';

export type { Mediasoup };
export type MsTypes = Mediasoup.types.Worker;

let loaded: typeof Mediasoup | null = null;

/** The worker binary: MEDIASOUP_WORKER_BIN, else the one the set-up step recorded. */
export function resolveWorkerBin(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env.MEDIASOUP_WORKER_BIN) return env.MEDIASOUP_WORKER_BIN;
  // node_modules/mediasoup/package.json -> node_modules/.mediasoup-worker-bin (wherever dist/ is).
  const recorded = path.join(path.dirname(require.resolve('mediasoup/package.json')), '..', '.mediasoup-worker-bin');
  try {
    const bin = fs.readFileSync(recorded, 'utf8').trim();
    return bin || undefined;
  } catch {
    return undefined;
  }
}

export function loadMediasoup(): typeof Mediasoup {
  if (loaded) return loaded;
  const bin = resolveWorkerBin();
  if (!bin || !fs.existsSync(bin)) {
    throw new Error('mediasoup worker binary not found: run `node scripts/setup.mjs` (it builds the worker) or set MEDIASOUP_WORKER_BIN');
  }
  process.env.MEDIASOUP_WORKER_BIN = bin;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  loaded = require('mediasoup') as typeof Mediasoup;
  return loaded;
}
