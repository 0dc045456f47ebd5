// First start shows a real deep-zoom image: the demo case's synthetic 20480 x 20480 slide is
// converted in the background (with a progress percentage a client can watch) and served as
// tiles like any upload.
import sharp from 'sharp';
import { startTestServer, waitFor } from '../helpers/server';

test('the demo case has a synthetic slide of at least 20,000 x 20,000 pixels as an encrypted pyramid', async () => {
  const t = await startTestServer({ DEMO_SLIDE: 'true' });
  try {
    const { client } = await t.demoLogin('pathologist');
    const list = await client.get('/api/cases').expect(200);
    expect(list.body.cases).toHaveLength(1);
    const demo = list.body.cases[0];
    expect(demo.title).toMatch(/^Demo:/);
    const opened = await client.get(`/api/cases/${demo.id}`).expect(200);
    const materialId = opened.body.materials[0].id as string;

    const progress: number[] = [];
    const ready = await waitFor(
      async () => {
        const m = (await client.get(`/api/cases/${demo.id}/materials/${materialId}`).expect(200)).body.material;
        progress.push(m.progress);
        return m.status === 'ready' ? m : null;
      },
      'the demo slide finishes converting',
      150_000,
      500, // as a client would poll
    );
    expect(ready).toMatchObject({ width: 20480, height: 20480, status: 'ready', progress: 100 });
    // A real percentage: intermediate values were seen, never going backwards.
    expect(progress.some((p) => p > 0 && p < 100)).toBe(true);
    expect(progress).toEqual([...progress].sort((a, b) => a - b));

    const dzi = await client.get(ready.dziUrl).expect(200);
    expect(dzi.text).toContain('<Size Width="20480" Height="20480"/>');
    // Deepest level (ceil(log2 20480) = 15) holds 80 x 80 tiles; a middle one decodes as a 256 px JPEG.
    const tile = await client.get(`/api/cases/${demo.id}/materials/${materialId}/slide_files/15/40_40.jpeg`).expect(200);
    const stats = await sharp(tile.body as Buffer).stats();
    expect(await sharp(tile.body as Buffer).metadata()).toMatchObject({ width: 256, height: 256, format: 'jpeg' });
    // Slide-like: not a flat colour (nuclei on stroma).
    expect(stats.channels[0]!.stdev).toBeGreaterThan(5);
  } finally {
    await t.close();
  }
}, 180_000);
