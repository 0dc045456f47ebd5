// Wire contract of cases and materials: request schemas (strict) and response shapes.
import { z } from 'zod';

export const CASE_STATUSES = ['open', 'in_review', 'reported', 'closed'] as const;
export type CaseStatus = (typeof CASE_STATUSES)[number];
export const SEXES = ['female', 'male', 'other', 'unknown'] as const;

export const patientSchema = z.strictObject({
  name: z.string().trim().min(1).max(200),
  dateOfBirth: z.iso.date(),
  medicalRecordNumber: z.string().trim().min(1).max(64),
  sex: z.enum(SEXES),
});
export type Patient = z.output<typeof patientSchema>;

export const createCaseSchema = z.strictObject({
  title: z.string().trim().min(1).max(200),
  clinicalQuestion: z.string().trim().max(4000).default(''),
  status: z.enum(CASE_STATUSES).default('open'),
  patient: patientSchema.optional(),
});

export const updateCaseSchema = z
  .strictObject({
    title: z.string().trim().min(1).max(200).optional(),
    clinicalQuestion: z.string().trim().max(4000).optional(),
    status: z.enum(CASE_STATUSES).optional(),
    patient: patientSchema.nullable().optional(),
  })
  .refine((v) => Object.keys(v).length > 0, 'nothing to change');

export const listCasesQuerySchema = z.strictObject({
  q: z.string().trim().max(100).optional(),
  status: z.enum(CASE_STATUSES).optional(),
  limit: z.coerce.number().int().min(1).max(200).default(50),
  offset: z.coerce.number().int().min(0).max(1_000_000).default(0),
});

export const caseIdParams = z.strictObject({ caseId: z.string().regex(/^[A-Za-z0-9_-]{22}$/) });
export const materialParams = z.strictObject({
  caseId: z.string().regex(/^[A-Za-z0-9_-]{22}$/),
  materialId: z.string().regex(/^[A-Za-z0-9_-]{22}$/),
});
export const tileParams = materialParams.extend({
  level: z.coerce.number().int().min(0).max(40),
  tile: z.string().regex(/^\d{1,6}_\d{1,6}\.(jpeg|png)$/),
});

export const uploadQuerySchema = z.strictObject({
  name: z
    .string()
    .trim()
    .min(1)
    .max(255)
    .regex(/^[^\\/\x00-\x1f]+$/, 'a file name without path separators or control characters'),
});

export interface PublicCase {
  id: string;
  siteId: string;
  /** Stable pseudonym shown instead of patient details to viewers without View Patient Info. */
  label: string;
  title: string;
  clinicalQuestion: string;
  status: CaseStatus;
  /** Present only for viewers with View Patient Info. */
  patient?: Patient | null;
  createdAt: string;
  updatedAt: string;
  createdBy: string | null;
}

export const MATERIAL_STATUSES = ['queued', 'converting', 'ready', 'failed'] as const;
export type MaterialStatus = (typeof MATERIAL_STATUSES)[number];

export interface PublicMaterial {
  id: string;
  caseId: string;
  name: string;
  mime: string;
  sizeBytes: number;
  status: MaterialStatus;
  /** 0-100: conversion progress (tiles written and encrypted over tiles expected). */
  progress: number;
  width: number | null;
  height: number | null;
  tileSize: number;
  error: string | null;
  createdAt: string;
  /** DeepZoom descriptor URL (authorised) once ready. */
  dziUrl: string | null;
}

export const siteIdParams = z.strictObject({ siteId: z.string().regex(/^[A-Za-z0-9_-]{22}$/) });
export const transferIdParams = z.strictObject({ transferId: z.string().regex(/^[A-Za-z0-9_-]{22}$/) });
export const sendTransferSchema = z.strictObject({
  toSiteId: z.string().regex(/^[A-Za-z0-9_-]{22}$/),
  note: z.string().trim().max(2000).default(''),
});
export const refuseTransferSchema = z.strictObject({ reason: z.string().trim().max(2000).default('') });

export interface PublicTransfer {
  id: string;
  fromSite: { id: string; name: string };
  toSite: { id: string; name: string };
  /** The sender's case id (meaningful to the sending site only). */
  caseId: string;
  title: string;
  note: string;
  status: 'pending' | 'accepted' | 'refused';
  receivedCaseId: string | null;
  createdAt: string;
  decidedAt: string | null;
}
