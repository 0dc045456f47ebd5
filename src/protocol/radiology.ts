// Wire contract of radiology: stacks (DICOM series shown slice by slice), slice rendering
// parameters, HL7 documents, and the STOW-RS response shape (PS3.18 10.5.3, JSON).
import { z } from 'zod';

const id22 = z.string().regex(/^[A-Za-z0-9_-]{22}$/);

/** The mime of a material that is a DICOM series shown as a stack. */
export const DICOM_STACK_MIME = 'application/dicom';

export const stackParams = z.strictObject({ caseId: id22, materialId: id22 });
export const sliceParams = stackParams.extend({ index: z.coerce.number().int().min(0).max(100_000) });

/** Window centre and width in output units (Hounsfield units for CT); both or neither. */
export const sliceQuerySchema = z
  .strictObject({
    wc: z.coerce.number().finite().min(-1e6).max(1e6).optional(),
    ww: z.coerce.number().finite().min(1).max(1e6).optional(),
    frame: z.coerce.number().int().min(0).max(100_000).default(0),
  })
  .refine((q) => (q.wc === undefined) === (q.ww === undefined), 'give both wc and ww, or neither');

export interface PublicSlice {
  index: number;
  instanceNumber: number | null;
  slicePosition: number | null;
  frames: number;
}

export interface PublicStack {
  materialId: string;
  caseId: string;
  modality: string;
  sopClass: string;
  seriesNumber: number | null;
  rows: number;
  columns: number;
  /** The header's default window (VOI LUT), if any. */
  window: { center: number; width: number } | null;
  /** In display order: by position along the slice normal, then instance number. */
  slices: PublicSlice[];
  /** URL template of a rendered slice: replace {index}; add ?wc=&ww= to set the window. */
  sliceUrl: string;
}

export interface PublicRadiologyDocument {
  id: string;
  kind: 'order' | 'report';
  /** Order: procedure text; report: the report text (OBX values). */
  text: string;
  status: string | null;
  createdAt: string;
}
