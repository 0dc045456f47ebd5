// Wire contract of patient video follow-ups: the clinician's HTTP requests and views, the
// patient's (narrow) HTTP requests and views, the socket events of both, and the consent text a
// patient agrees to (versioned: the version and a hash of the exact text are recorded).
import { z } from 'zod';

const id22 = z.string().regex(/^[A-Za-z0-9_-]{22}$/);

/** Where the patient is in the flow (docs/followups.md has the state diagram). */
export const PATIENT_STATES = ['invited', 'opened', 'consented', 'waiting', 'admitted', 'dropped', 'left', 'declined', 'ended'] as const;
export type PatientState = (typeof PATIENT_STATES)[number];

/** Verification questions the server can check against the encrypted patient record. */
export const VERIFICATIONS = ['dateOfBirth'] as const;
export type Verification = (typeof VERIFICATIONS)[number];

export const CONSENT = {
  version: 'followup-consent-2026-11-v1',
  title: 'Before your video appointment',
  paragraphs: [
    'This is a video appointment with your care team. Your camera and microphone are used only during the call; you can turn them off at any time.',
    'You first wait in a waiting room. A clinician lets you in when they are ready, and may send you a short message while you wait.',
    'The call is encrypted between your device and our server. It is not recorded: no audio, video or screen image is stored.',
    'What we record: that you agreed to this text (its version, the time, your device\'s network address and browser name), when you opened the link, waited, joined, left, and when the appointment ended. These records are kept to show the appointment took place as agreed.',
    'You see only the call. No medical records are shown on this page.',
    'The link works on one device. Do not share it. It stops working when the appointment ends.',
  ],
} as const;

// --- clinician (staff session) -------------------------------------------------------------

export const createFollowUpSchema = z
  .strictObject({
    startsAt: z.iso.datetime({ offset: true }),
    endsAt: z.iso.datetime({ offset: true }),
    /** How the clinician recognises the patient in the waiting list, e.g. "Mrs K. (mobile ...42)". */
    contactLabel: z.string().trim().min(1).max(80),
    verification: z.enum(VERIFICATIONS).nullable().default(null),
    /** Colleagues (user ids of the same site) who may see the waiting list and join the call. */
    colleagues: z.array(id22).max(10).default([]),
  })
  .refine((v) => Date.parse(v.endsAt) > Date.parse(v.startsAt), { message: 'endsAt must be after startsAt', path: ['endsAt'] })
  .refine((v) => Date.parse(v.endsAt) - Date.parse(v.startsAt) <= 12 * 3600 * 1000, { message: 'a window is at most 12 hours', path: ['endsAt'] });

export const followUpParams = z.strictObject({ followUpId: id22 });
export const caseFollowUpParams = z.strictObject({ caseId: id22 });
export const messageSchema = z.strictObject({ text: z.string().trim().min(1).max(200) });
export const inviteSentSchema = z.strictObject({ channel: z.enum(['sms', 'email', 'letter', 'phone', 'other']) });
export const addColleagueSchema = z.strictObject({ userId: id22 });
export const emptySchema = z.strictObject({});

/** What clinicians see of a follow-up (never the token, nor its hash). */
export interface PublicFollowUp {
  id: string;
  caseId: string;
  hostUserId: string;
  colleagues: string[];
  contactLabel: string;
  startsAt: string;
  endsAt: string;
  verification: Verification | null;
  state: PatientState;
  /** The patient's device passed the camera and microphone check (as reported by the page). */
  deviceCheck: { camera: boolean; microphone: boolean } | null;
  /** Since when the patient is waiting (null unless waiting). */
  waitingSince: string | null;
  inviteSentAt: string | null;
  consentedAt: string | null;
  admittedAt: string | null;
  endedAt: string | null;
  createdAt: string;
}

export interface CreatedFollowUp {
  followUp: PublicFollowUp;
  /** Shown once: the server keeps only a hash of the token it carries. */
  inviteUrl: string;
}

export type FollowUpAlertKind = 'arrived' | 'left' | 'dropped' | 'second_device' | 'verification_failed';

// --- patient (patient session) --------------------------------------------------------------

export const openInviteSchema = z.strictObject({
  /** "<followUpId>.<secret>" from the link's fragment. */
  token: z.string().min(10).max(128),
});
export const consentSchema = z.strictObject({ version: z.literal(CONSENT.version), accepted: z.literal(true) });
export const verifySchema = z.strictObject({ dateOfBirth: z.iso.date() });

/** Everything the patient's page is told: no case, no clinician list, no patient fields. */
export interface PatientView {
  followUpId: string;
  state: PatientState;
  startsAt: string;
  endsAt: string;
  consent: typeof CONSENT;
  consented: boolean;
  /** A question must be answered before waiting (its answer is checked, never shown). */
  verificationRequired: boolean;
  verified: boolean;
  messages: PatientMessage[];
  /** Minutes of inactivity after which the patient's session ends. */
  idleMinutes: number;
}

export interface PatientMessage {
  text: string;
  at: string;
}

export interface OpenInviteResponse extends PatientView {
  csrfToken: string;
}

// --- sockets --------------------------------------------------------------------------------

export const patientWaitSchema = z.strictObject({
  deviceCheck: z.strictObject({ camera: z.boolean(), microphone: z.boolean() }),
});
export const patientEmptySchema = z.strictObject({});
export const followUpRoomSchema = z.strictObject({ followUpId: id22 });

/** The only events a patient socket may send; every other event is refused (FORBIDDEN). */
export const PATIENT_SOCKET_EVENTS = ['followup:patient:wait', 'followup:patient:ping', 'followup:patient:join', 'followup:patient:leave'] as const;

/** Answer to followup:patient:join and followup:join: the media room to use with media:* events. */
export interface FollowUpJoinResult {
  roomId: string;
}

/** Events the server sends to a patient socket. */
export interface PatientServerEvents {
  'followup:state': (payload: { state: PatientState }) => void;
  'followup:message': (payload: PatientMessage) => void;
  'followup:ended': (payload: { reason: 'ended' | 'declined' | 'expired' | 'replaced' }) => void;
}

/** Events the server sends to clinicians (to every socket of each host and colleague). */
export interface ClinicianFollowUpEvents {
  'followup:changed': (payload: { followUp: PublicFollowUp }) => void;
  'followup:alert': (payload: { followUpId: string; kind: FollowUpAlertKind; contactLabel: string; at: string }) => void;
}
