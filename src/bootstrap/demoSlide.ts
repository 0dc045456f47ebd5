// The demo slide: a synthetic, slide-like image made by the server itself (pink stroma with
// purple nuclei, drawn once as a 1024 px SVG tile and repeated by libvips across a 20480 x 20480
// canvas), converted like any upload so a newcomer sees a real deep-zoom image at once.
import sharp from 'sharp';

export const DEMO_SLIDE_SIZE = 20480;

function nucleiTile(size: number, seed: number): string {
  let state = seed;
  const random = () => {
    state = (state * 16807) % 2147483647;
    return state / 2147483647;
  };
  const shapes: string[] = [];
  for (let i = 0; i < 60; i++) {
    // Faint eosin-pink fibres first, then nuclei on top.
    const x = random() * size;
    const y = random() * size;
    shapes.push(`<path d="M${x.toFixed(0)} ${y.toFixed(0)} q ${(random() * 200 - 100).toFixed(0)} ${(random() * 200 - 100).toFixed(0)} ${(random() * 300 - 150).toFixed(0)} ${(random() * 300 - 150).toFixed(0)}" stroke="rgb(226,150,185)" stroke-width="${(4 + random() * 8).toFixed(1)}" fill="none" stroke-opacity="0.6"/>`);
  }
  for (let i = 0; i < 320; i++) {
    const cx = random() * size;
    const cy = random() * size;
    const rx = 5 + random() * 12;
    const ry = 4 + random() * 9;
    const angle = random() * 180;
    const r = 80 + Math.floor(random() * 50);
    const g = 40 + Math.floor(random() * 35);
    const b = 130 + Math.floor(random() * 60);
    shapes.push(`<ellipse cx="${cx.toFixed(1)}" cy="${cy.toFixed(1)}" rx="${rx.toFixed(1)}" ry="${ry.toFixed(1)}" transform="rotate(${angle.toFixed(0)} ${cx.toFixed(1)} ${cy.toFixed(1)})" fill="rgb(${r},${g},${b})" fill-opacity="0.85"/>`);
  }
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${size}" height="${size}">${shapes.join('')}</svg>`;
}

/** The libvips pipeline of the demo slide (run in the conversion child process). */
export async function demoSlidePipeline(size = DEMO_SLIDE_SIZE): Promise<sharp.Sharp> {
  const tile = await sharp(Buffer.from(nucleiTile(1024, 20240611))).png().toBuffer();
  return sharp({ create: { width: size, height: size, channels: 3, background: { r: 242, g: 208, b: 224 } }, limitInputPixels: false }).composite([
    { input: tile, tile: true, blend: 'over' },
  ]);
}
