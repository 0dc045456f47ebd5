// End-to-end: a patient's video follow-up in Debian's Chromium on a phone-size screen (fake camera
// and microphone) against the real server and mediasoup worker. The patient opens the invite link,
// consents, answers the question, passes the device check, waits (and reads the clinic's message),
// is admitted and sees the clinician's video playing while the clinician (a wrtc peer) receives the
// patient's audio and video; then the clinician ends it and the page says so.
import fs from 'node:fs';
import path from 'node:path';
import type { Page } from 'playwright-core';
import { FollowUpPeer } from '../helpers/followups';
import { cookieHeaderOf, recordSecret, waitFor } from '../helpers/server';
import { startHarness, type Harness } from './clientHarness';

jest.setTimeout(150_000);

const PHONE = { width: 390, height: 844 };
const SHOTS = path.join(__dirname, '..', '..', 'docs', 'screenshots');
const PATIENT = { name: 'Erik E2e-Patient', dateOfBirth: '1955-03-09', medicalRecordNumber: 'E2E-FU-1', sex: 'male' as const };

let harness: Harness;
let doctor: FollowUpPeer | null = null;

beforeAll(async () => {
  harness = await startHarness();
});
afterAll(async () => {
  await doctor?.close();
  await harness?.close();
});

async function playingVideo(page: Page, selector: string): Promise<boolean> {
  return page.evaluate(async (sel) => {
    const video = document.querySelector<HTMLVideoElement>(sel);
    if (!video || video.readyState < 2 || video.videoWidth === 0) return false;
    const before = video.currentTime;
    await new Promise((r) => setTimeout(r, 250));
    return video.currentTime > before && !video.paused;
  }, selector);
}

test('the patient flow: link, consent, question, device check, waiting room with a message, admission, a playing video, end', async () => {
  const { client } = await harness.account('clinician');
  const caseId = (await client.post('/api/cases', { title: 'E2E follow-up case', patient: PATIENT }).expect(201)).body.case.id as string;
  recordSecret(PATIENT.name, PATIENT.medicalRecordNumber);
  const now = harness.server.clock.now().getTime();
  const created = await client
    .post(`/api/cases/${caseId}/followups`, { startsAt: new Date(now - 60_000).toISOString(), endsAt: new Date(now + 3600_000).toISOString(), contactLabel: 'Mr E. (phone 0042)', verification: 'dateOfBirth' })
    .expect(201);
  const followUpId = created.body.followUp.id as string;
  const link = new URL(created.body.inviteUrl as string);
  recordSecret(link.hash.slice(3), link.hash.split('.')[1]);

  const page = await harness.newPage({ viewport: PHONE });
  await page.goto(`/followup.html${link.hash}`);
  // What happens and what is recorded, before anything else; the token is gone from the address bar.
  await page.getByRole('heading', { name: 'Before your video appointment' }).waitFor();
  expect(page.url()).not.toContain('#');
  await page.getByText(/It is not recorded/).waitFor();
  await page.getByRole('button', { name: 'I agree, continue' }).click();

  await page.getByRole('heading', { name: 'Please confirm who you are' }).waitFor();
  await page.getByLabel('Your date of birth').fill('1955-03-10');
  await page.getByRole('button', { name: 'Continue' }).click();
  await page.getByText('That does not match our records.').waitFor();
  await page.getByLabel('Your date of birth').fill(PATIENT.dateOfBirth);
  await page.getByRole('button', { name: 'Continue' }).click();

  await page.getByRole('heading', { name: 'Check your camera and microphone' }).waitFor();
  await page.getByText('Camera: working').waitFor();
  await page.getByText('Microphone: working').waitFor();
  await waitFor(() => playingVideo(page, '.fu-preview'), 'the camera preview plays', 15_000, 200);
  await page.getByRole('button', { name: 'Go to the waiting room' }).click();

  await page.getByRole('heading', { name: 'Waiting room' }).waitFor();
  await waitFor(async () => (await client.get(`/api/followups/${followUpId}`).expect(200)).body.followUp.state === 'waiting', 'the clinician sees the patient waiting');
  const waiting = (await client.get('/api/followups').expect(200)).body.followUps.find((f: { id: string }) => f.id === followUpId);
  expect(waiting.deviceCheck).toEqual({ camera: true, microphone: true });
  await client.post(`/api/followups/${followUpId}/messages`, { text: 'Running 5 minutes late' }).expect(200);
  await page.getByText('Running 5 minutes late').waitFor();
  await page.screenshot({ path: path.join(SHOTS, 'followup-waiting.png') });

  // The clinician joins the call with camera and microphone, then admits the patient.
  doctor = await FollowUpPeer.start(harness.server, cookieHeaderOf(client));
  expect((await doctor.raw('followup:join', { followUpId })).ok).toBe(true);
  await doctor.cmd('setRoom', { roomId: followUpId });
  await doctor.cmd('joinMedia');
  await doctor.cmd('produce', { source: 'mic' });
  await doctor.cmd('produce', { source: 'camera' });
  await client.post(`/api/followups/${followUpId}/admit`).expect(200);

  await waitFor(() => playingVideo(page, '.fu-remote video.fu-video'), 'the patient sees the clinician video playing', 40_000, 250);
  await waitFor(() => playingVideo(page, '.fu-self'), 'the patient sees their own camera', 20_000, 250);
  await doctor.waitForFlow('the clinician receives the patient audio and video', 2, undefined, 40_000);
  await page.getByRole('button', { name: 'Mute' }).waitFor();
  // Let the fake camera's frame settle so the picture is not mid-transition.
  await waitFor(() => playingVideo(page, '.fu-remote video.fu-video'), 'still playing', 10_000, 250);
  await page.screenshot({ path: path.join(SHOTS, 'followup-call.png') });
  expect(fs.statSync(path.join(SHOTS, 'followup-call.png')).size).toBeGreaterThan(10_000);

  // Nothing of the case is on the page.
  const text = await page.evaluate(() => document.body.innerText);
  for (const secret of [caseId, 'E2E follow-up case', PATIENT.name, PATIENT.dateOfBirth, 'Mr E.']) expect(text).not.toContain(secret);

  await client.post(`/api/followups/${followUpId}/end`).expect(200);
  await page.getByRole('heading', { name: 'Your appointment has ended' }).waitFor();
  harness.expectCleanPages();
});

test('the clinician schedules from the follow-up page, sees the patient arrive (visible and audible), messages, admits, calls and ends', async () => {
  const { client } = await harness.account('clinician');
  const caseId = (await client.post('/api/cases', { title: 'E2E waiting-list case' }).expect(201)).body.case.id as string;
  const clinician = await harness.newPage();
  // Counts the tones the page plays (an AudioContext per alert).
  await clinician.addInitScript(() => {
    const Original = window.AudioContext;
    (window as unknown as { chimes: number }).chimes = 0;
    window.AudioContext = class extends Original {
      constructor(...args: ConstructorParameters<typeof AudioContext>) {
        super(...args);
        (window as unknown as { chimes: number }).chimes++;
      }
    };
  });
  await harness.signIn(clinician, 'clinician', `/followups?case=${caseId}`);
  await clinician.getByRole('link', { name: 'Follow-ups' }).click();
  await clinician.getByRole('heading', { name: 'Schedule a video follow-up' }).waitFor();
  await clinician.getByLabel('Patient (as you will recognise them)').fill('Ms W. (phone 0077)');
  await clinician.getByRole('button', { name: 'Create the invite link' }).click();
  const link = await clinician.getByLabel('Invite link').inputValue();
  recordSecret(link.split('#t=')[1], link.split('.').at(-1));
  await clinician.getByRole('button', { name: 'Mark as sent' }).click();
  await clinician.getByText('marked as sent').waitFor();

  const patient = await harness.newPage({ viewport: PHONE });
  await patient.goto(`/followup.html${new URL(link).hash}`);
  await patient.getByRole('button', { name: 'I agree, continue' }).click();
  await patient.getByText('Camera: working').waitFor();
  await patient.getByRole('button', { name: 'Go to the waiting room' }).click();
  await patient.getByRole('heading', { name: 'Waiting room' }).waitFor();

  await clinician.getByText('Ms W. (phone 0077) is in the waiting room').waitFor();
  expect(await clinician.evaluate(() => (window as unknown as { chimes: number }).chimes)).toBeGreaterThanOrEqual(1);
  const row = clinician.locator('.fu-row.fu-state-waiting');
  await row.getByText(/camera ✓ · microphone ✓/).waitFor();
  await row.getByLabel('Message to Ms W. (phone 0077)').fill('Two more minutes, please');
  await row.getByRole('button', { name: 'Send' }).click();
  await patient.getByText('Two more minutes, please').waitFor();
  await clinician.screenshot({ path: path.join(SHOTS, 'followup-waiting-list.png') });

  await row.getByRole('button', { name: 'Admit Ms W. (phone 0077)' }).click();
  await clinician.getByRole('button', { name: 'Join the call' }).click();
  await clinician.getByRole('button', { name: 'Camera on' }).click();
  await waitFor(() => playingVideo(patient, '.fu-remote video.fu-video'), 'the patient sees the clinician video from the browser', 40_000, 250);
  await waitFor(
    () => clinician.evaluate(() => [...document.querySelectorAll<HTMLVideoElement>('.call-tile video')].some((v) => v.readyState >= 2 && v.videoWidth > 0 && !v.paused)),
    'the clinician sees the patient video',
    40_000,
    250,
  );
  await clinician.getByRole('button', { name: 'End follow-up' }).click();
  await patient.getByRole('heading', { name: 'Your appointment has ended' }).waitFor();
  harness.expectCleanPages();
});
