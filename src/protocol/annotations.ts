// Wire contract of annotations: the strict schemas of every inbound annotation request (socket
// events and HTTP), the GeoJSON import format, and the public shapes of annotations and their
// versioned operations. Geometry is GeoJSON in image pixel coordinates of the material.
import { z } from 'zod';

/** Server-generated ids: 128 random bits, base64url (src/ids.ts). */
export const idSchema = z.string().regex(/^[A-Za-z0-9_-]{22}$/);
/**
 * A client-generated id for an idempotent write (a UUID or similar random string): a retry with
 * the same id returns the first result instead of writing twice.
 */
export const clientIdSchema = z.string().regex(/^[A-Za-z0-9_-]{8,64}$/, 'a random id of 8 to 64 characters A-Z a-z 0-9 _ -');
/** A per-case sequence number: 0 means "before the first". */
export const seqSchema = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);

export const ANNOTATION_KINDS = ['point', 'line', 'rectangle', 'polygon', 'freehand'] as const;
export type AnnotationKind = (typeof ANNOTATION_KINDS)[number];

/** Pixel coordinates are bounded so that no value can overflow a viewer or a later computation. */
export const COORDINATE_LIMIT = 1e7;
/** Positions in one geometry (all rings of a polygon together): a careful freehand outline fits. */
export const MAX_POSITIONS = 10_000;
export const LABEL_MAX = 200;
export const TEXT_MAX = 4000;
export const DEFAULT_ANNOTATION_COLOR = '#ffcc00';

// z.number() refuses NaN and the infinities, so the bounds also make every coordinate finite.
const coordinate = z.number().min(-COORDINATE_LIMIT).max(COORDINATE_LIMIT);
export const positionSchema = z.tuple([coordinate, coordinate]);
type Position = z.output<typeof positionSchema>;

const lineCoordinates = z.array(positionSchema).min(2).max(MAX_POSITIONS);
const ringSchema = z
  .array(positionSchema)
  .min(4)
  .max(MAX_POSITIONS)
  .refine((ring) => samePosition(ring[0]!, ring[ring.length - 1]!), 'a polygon ring must end at the position it starts from');
const polygonCoordinates = z
  .array(ringSchema)
  .min(1)
  .max(MAX_POSITIONS)
  .refine((rings) => countPositions(rings) <= MAX_POSITIONS, `at most ${MAX_POSITIONS} positions in one geometry`);

function samePosition(a: Position, b: Position): boolean {
  return a[0] === b[0] && a[1] === b[1];
}

function countPositions(rings: Position[][]): number {
  return rings.reduce((n, ring) => n + ring.length, 0);
}

export const geometrySchema = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('Point'), coordinates: positionSchema }),
  z.strictObject({ type: z.literal('LineString'), coordinates: lineCoordinates }),
  z.strictObject({ type: z.literal('Polygon'), coordinates: polygonCoordinates }),
]);
export type AnnotationGeometry = z.output<typeof geometrySchema>;

/**
 * Why `geometry` cannot carry an annotation of `kind`, or null when it can. A rectangle is one
 * closed ring of four corners (it may be rotated with the viewer, so axes are not checked).
 */
export function geometryMismatch(kind: AnnotationKind, geometry: AnnotationGeometry): string | null {
  switch (kind) {
    case 'point':
      return geometry.type === 'Point' ? null : 'a point annotation needs a Point geometry';
    case 'line':
      return geometry.type === 'LineString' ? null : 'a line annotation needs a LineString geometry';
    case 'rectangle':
      if (geometry.type !== 'Polygon') return 'a rectangle annotation needs a Polygon geometry';
      return geometry.coordinates.length === 1 && geometry.coordinates[0]!.length === 5 ? null : 'a rectangle is one ring of four corners (five positions, closed)';
    case 'polygon':
      return geometry.type === 'Polygon' ? null : 'a polygon annotation needs a Polygon geometry';
    case 'freehand':
      return geometry.type === 'LineString' || geometry.type === 'Polygon' ? null : 'a freehand annotation needs a LineString or Polygon geometry';
  }
}

/** '#rrggbb', stored and returned in lower case. */
export const colorSchema = z
  .string()
  .regex(/^#[0-9a-fA-F]{6}$/, "a colour '#rrggbb'")
  .transform((c) => c.toLowerCase());

const labelSchema = z.string().trim().max(LABEL_MAX);
const textSchema = z.string().trim().max(TEXT_MAX);

/** Label, colour and free text (a comment that may name the patient: sealed at rest). */
export const annotationPropertiesSchema = z.strictObject({
  label: labelSchema.default(''),
  color: colorSchema.default(DEFAULT_ANNOTATION_COLOR),
  text: textSchema.default(''),
});
export type AnnotationProperties = z.output<typeof annotationPropertiesSchema>;

/** An update names only the properties it changes; the others keep their current value. */
export const annotationPropertiesPatchSchema = z
  .strictObject({ label: labelSchema.optional(), color: colorSchema.optional(), text: textSchema.optional() })
  .refine((p) => p.label !== undefined || p.color !== undefined || p.text !== undefined, 'name at least one of label, color, text');

const baseVersionSchema = z.number().int().min(1).max(Number.MAX_SAFE_INTEGER);

export const createAnnotationSchema = z
  .strictObject({
    caseId: idSchema,
    materialId: idSchema,
    /** Only on a DICOM stack: the slice (display order, from 0) the annotation belongs to. */
    slice: z.number().int().min(0).max(100_000).optional(),
    clientId: clientIdSchema,
    kind: z.enum(ANNOTATION_KINDS),
    geometry: geometrySchema,
    properties: annotationPropertiesSchema.prefault({}),
  })
  .superRefine((v, ctx) => {
    const reason = geometryMismatch(v.kind, v.geometry);
    if (reason) ctx.addIssue({ code: 'custom', path: ['geometry'], message: reason });
  });
export type CreateAnnotationInput = z.output<typeof createAnnotationSchema>;

/** The kind never changes; a new geometry must still suit it (checked by the service). */
export const updateAnnotationSchema = z
  .strictObject({
    caseId: idSchema,
    annotationId: idSchema,
    baseVersion: baseVersionSchema,
    geometry: geometrySchema.optional(),
    properties: annotationPropertiesPatchSchema.optional(),
  })
  .refine((v) => v.geometry !== undefined || v.properties !== undefined, 'nothing to change: give geometry or properties');
export type UpdateAnnotationInput = z.output<typeof updateAnnotationSchema>;

export const deleteAnnotationSchema = z.strictObject({
  caseId: idSchema,
  annotationId: idSchema,
  baseVersion: baseVersionSchema,
});
export type DeleteAnnotationInput = z.output<typeof deleteAnnotationSchema>;

export const MAX_SYNC_OPS = 1000;

export const syncSchema = z.strictObject({
  caseId: idSchema,
  afterSeq: seqSchema,
  /** Ops per answer (default and maximum 1000); ask again from the last seq while seq < latestSeq. */
  limit: z.number().int().min(1).max(MAX_SYNC_OPS).optional(),
});

export const historySchema = z.strictObject({ caseId: idSchema, annotationId: idSchema });

export interface PublicAnnotation {
  id: string;
  caseId: string;
  materialId: string;
  /** The slice of a DICOM stack it is drawn on; null on slides and other images. */
  slice: number | null;
  kind: AnnotationKind;
  geometry: AnnotationGeometry;
  properties: AnnotationProperties;
  /** 1 at creation, +1 for each update or deletion: the `baseVersion` of the next change. */
  version: number;
  deleted: boolean;
  createdBy: string;
  createdAt: string;
  updatedBy: string;
  updatedAt: string;
}

export type AnnotationOpKind = 'create' | 'update' | 'delete';

/** One durable change, in the case's annotation sequence; `annotation` is the state it produced. */
export interface AnnotationOp {
  seq: number;
  annotationId: string;
  materialId: string;
  op: AnnotationOpKind;
  version: number;
  userId: string;
  at: string;
  annotation: PublicAnnotation;
}

// ---------------------------------------------------------------- GeoJSON (HTTP import/export)

export const MAX_IMPORT_FEATURES = 5000;
/** Bodies of the import route only; every other JSON route keeps the 64 KiB limit. */
export const IMPORT_BODY_LIMIT = '10mb';

const rgbChannel = z.number().int().min(0).max(255);
const rgbSchema = z.tuple([rgbChannel, rgbChannel, rgbChannel]);

// RFC 7946 lets GeoJSON objects carry members it does not define ("foreign members", bbox) and
// QuPath writes several (measurements, isLocked, ...): those are ignored, never refused. Every
// member that is read is validated as strictly as a socket event.
const importGeometrySchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('Point'), coordinates: positionSchema }),
  z.object({ type: z.literal('LineString'), coordinates: lineCoordinates }),
  z.object({ type: z.literal('Polygon'), coordinates: polygonCoordinates }),
  z.object({ type: z.literal('MultiPolygon'), coordinates: z.array(polygonCoordinates).min(1).max(MAX_IMPORT_FEATURES) }),
]);

const importPropertiesSchema = z.object({
  name: z.string().trim().max(LABEL_MAX).nullish(),
  classification: z
    .object({
      name: z.string().trim().max(LABEL_MAX).nullish(),
      color: rgbSchema.optional(),
      /** QuPath 0.2 wrote the colour as one packed (A)RGB integer. */
      colorRGB: z.number().int().min(-(2 ** 31)).max(2 ** 32 - 1).optional(),
    })
    .nullish(),
  color: z.union([colorSchema, rgbSchema]).optional(),
  kind: z.enum(ANNOTATION_KINDS).optional(),
  text: textSchema.nullish(),
  /** Our exports of a DICOM stack: the slice (display order, from 0) the annotation is on. */
  slice: z.number().int().min(0).max(100_000).nullish(),
});

export const importFeatureSchema = z.object({
  type: z.literal('Feature'),
  id: z.union([z.string().max(200), z.number()]).nullish(),
  geometry: importGeometrySchema,
  properties: importPropertiesSchema.nullish(),
});
export type ImportFeature = z.output<typeof importFeatureSchema>;

export const importFeatureCollectionSchema = z.object({
  type: z.literal('FeatureCollection'),
  features: z.array(importFeatureSchema).max(MAX_IMPORT_FEATURES),
});
/** The bare array of Features QuPath writes when "Export as FeatureCollection" is not ticked. */
export const importFeatureListSchema = z.array(importFeatureSchema).max(MAX_IMPORT_FEATURES);

export interface GeoJsonFeature {
  type: 'Feature';
  id: string;
  geometry: AnnotationGeometry;
  properties: {
    objectType: 'annotation';
    name: string;
    classification: { name: string; color: [number, number, number] };
    color: string;
    kind: AnnotationKind;
    text: string;
    version: number;
    /** Only on a DICOM stack: the slice (display order, from 0). */
    slice?: number;
  };
}

export interface GeoJsonFeatureCollection {
  type: 'FeatureCollection';
  features: GeoJsonFeature[];
}
