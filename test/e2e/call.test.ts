// End-to-end: audio and video in a case room between two people in Debian's Chromium (fake camera
// and microphone), through the real server and mediasoup worker: both join the call, turn on
// microphone and camera, and each sees the other's video playing; mute is shown to the other;
// the camera off removes the video; a screen share is shown large.
import type { Page } from 'playwright-core';
import { waitFor } from '../helpers/server';
import { startHarness, type Harness } from './clientHarness';

jest.setTimeout(120_000);

let harness: Harness;
let caseId: string;

beforeAll(async () => {
  harness = await startHarness();
  const { client } = await harness.account('clinician');
  caseId = (await client.post('/api/cases', { title: 'Call case' }).expect(201)).body.case.id;
});
afterAll(() => harness?.close());

/** Whether the tile of `name` shows a video that is really playing (frames decoded, time moving). */
async function playingVideoOf(page: Page, name: string): Promise<boolean> {
  return page.evaluate(async (who) => {
    const tile = [...document.querySelectorAll<HTMLElement>('.call-tile')].find((t) => t.querySelector('.call-name')?.textContent?.startsWith(who));
    const video = tile?.querySelector('video');
    if (!video || video.readyState < 2 || video.videoWidth === 0) return false;
    const before = video.currentTime;
    await new Promise((r) => setTimeout(r, 250));
    return video.currentTime > before && !video.paused;
  }, name);
}

async function joinCall(page: Page): Promise<void> {
  await page.goto(`/cases/${caseId}`);
  await page.getByRole('region', { name: 'Audio and video call' }).waitFor();
  await page.getByRole('button', { name: 'Join the call' }).click();
  await page.getByText('In the call (encrypted: DTLS/SRTP).').waitFor();
  await page.getByRole('button', { name: 'Microphone on' }).click();
  await page.getByRole('button', { name: 'Camera on' }).click();
  await page.getByRole('button', { name: 'Camera off' }).waitFor();
}

test('two people see and hear each other; mute, camera off and screen share reach the other side', async () => {
  const clinician = await harness.newPage();
  await harness.signIn(clinician, 'clinician');
  const pathologist = await harness.newPage();
  await harness.signIn(pathologist, 'pathologist');

  await joinCall(clinician);
  await joinCall(pathologist);

  await waitFor(() => playingVideoOf(clinician, 'Demo Pathologist'), 'the clinician sees the pathologist video playing', 30_000, 200);
  await waitFor(() => playingVideoOf(pathologist, 'Demo Clinician'), 'the pathologist sees the clinician video playing', 30_000, 200);
  // Audio arrives too: an <audio> element per remote microphone, playing.
  await waitFor(
    () => pathologist.evaluate(() => [...document.querySelectorAll('audio')].some((a) => a.srcObject && !a.paused && a.readyState >= 2)),
    'the pathologist plays the clinician microphone',
    20_000,
    200,
  );
  await clinician.screenshot({ path: '/tmp/client-call.png' });

  // Mute: the other side shows it.
  await clinician.getByRole('button', { name: 'Mute', exact: true }).click();
  const clinicianTile = pathologist.locator('.call-tile', { hasText: 'Demo Clinician' });
  await clinicianTile.getByText('muted').waitFor();
  await clinician.getByRole('button', { name: 'Unmute' }).click();
  await clinicianTile.getByText('muted').waitFor({ state: 'detached' });

  // Camera off: the tile falls back to initials.
  await clinician.getByRole('button', { name: 'Camera off' }).click();
  await waitFor(async () => (await clinicianTile.getAttribute('data-has-video')) === 'false', 'the clinician tile lost its video');

  // Screen share (Chromium's fake capture): shown large on the other side.
  await clinician.getByRole('button', { name: 'Share screen' }).click();
  await pathologist.getByText('Demo Clinician is sharing their screen').waitFor({ timeout: 30_000 });
  await waitFor(
    () => pathologist.evaluate(() => {
      const v = document.querySelector<HTMLVideoElement>('.call-stage video');
      return !!v && v.videoWidth > 0;
    }),
    'the shared screen plays on the stage',
    30_000,
    200,
  );
  await pathologist.screenshot({ path: '/tmp/client-call-screen.png' });

  // Leaving: the other side loses the tile.
  await clinician.getByRole('button', { name: 'Leave the call' }).click();
  await pathologist.locator('.call-tile', { hasText: 'Demo Clinician' }).waitFor({ state: 'detached' });
  harness.expectCleanPages();
});
