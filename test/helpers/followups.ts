// The follow-up tests drive the same real WebRTC peers as the media tests (test/helpers/media.ts,
// test/helpers/mediaPeer.cjs), started with a patient's cookie header and, for the test that
// nothing of the case reaches a patient, with every received event recorded.
export { MediaPeerProcess as FollowUpPeer } from './media';
