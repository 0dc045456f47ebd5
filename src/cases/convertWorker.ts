// Child process that builds one plaintext DeepZoom pyramid with libvips. Conversion runs out of
// the server process because libvips cannot be interrupted (a server must stop at once on
// SIGTERM) and because a hostile image that crashes a decoder must not take the server down.
// Protocol (IPC): receives one ConvertRequest; sends { type: 'size' }, then 'done' or 'error'.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import sharp from 'sharp';
import { demoSlidePipeline } from '../bootstrap/demoSlide';

const run = promisify(execFile);

export type ConvertSource = { kind: 'file'; path: string } | { kind: 'demo'; size: number };

export interface ConvertRequest {
  source: ConvertSource;
  outBase: string;
  tileSize: number;
  quality: number;
}

export type ConvertReply =
  | { type: 'size'; width: number; height: number }
  | { type: 'done' }
  | { type: 'error'; message: string; unreadable: boolean };

async function hasVipsCli(): Promise<boolean> {
  try {
    await run('vips', ['--version']);
    return true;
  } catch {
    return false;
  }
}

/** Debian's libvips-tools with OpenSlide reads SVS/NDPI slides that sharp's libvips cannot. */
async function openSlideLoader(file: string): Promise<boolean> {
  if (!(await hasVipsCli())) return false;
  try {
    const { stdout } = await run('vipsheader', ['-f', 'vips-loader', file]);
    return stdout.trim().startsWith('openslide');
  } catch {
    return false;
  }
}

async function convert(req: ConvertRequest, send: (reply: ConvertReply) => void): Promise<void> {
  const { source, outBase, tileSize, quality } = req;
  const tile = { size: tileSize, overlap: 0, layout: 'dz' as const };
  if (source.kind === 'demo') {
    send({ type: 'size', width: source.size, height: source.size });
    await (await demoSlidePipeline(source.size)).jpeg({ quality }).tile(tile).toFile(outBase);
    return;
  }
  if (await openSlideLoader(source.path)) {
    const width = Number((await run('vipsheader', ['-f', 'width', source.path])).stdout.trim());
    const height = Number((await run('vipsheader', ['-f', 'height', source.path])).stdout.trim());
    send({ type: 'size', width, height });
    await run('vips', ['dzsave', source.path, outBase, '--tile-size', String(tileSize), '--overlap', '0', '--suffix', `.jpeg[Q=${quality}]`]);
    return;
  }
  const input = () => sharp(source.path, { limitInputPixels: false, failOn: 'error' });
  let meta: sharp.Metadata;
  try {
    meta = await input().metadata();
  } catch {
    throw Object.assign(new Error('unreadable'), { unreadable: true });
  }
  if (!meta.width || !meta.height) throw Object.assign(new Error('no dimensions'), { unreadable: true });
  const rotated = meta.orientation !== undefined && meta.orientation >= 5;
  send({ type: 'size', width: rotated ? meta.height : meta.width, height: rotated ? meta.width : meta.height });
  await input().autoOrient().flatten({ background: '#ffffff' }).jpeg({ quality }).tile(tile).toFile(outBase);
}

if (process.send) {
  const send = (reply: ConvertReply) => process.send!(reply);
  process.once('message', (req: ConvertRequest) => {
    convert(req, send).then(
      () => {
        send({ type: 'done' });
        process.disconnect();
      },
      (err: Error & { unreadable?: boolean }) => {
        // libvips errors on a damaged file come from the decoder: report them as unreadable.
        send({ type: 'error', message: err.message.slice(0, 300), unreadable: true });
        process.disconnect();
      },
    );
  });
}
