// GeoJSON interchange with QuPath and similar tools: annotations out as a FeatureCollection
// (QuPath reads objectType, name and classification), and a FeatureCollection in as validated
// drafts of create operations. Pure functions: the service authorises, seals and stores.
import { ValidationError } from '../errors';
import { parseInput } from '../http/validate';
import {
  DEFAULT_ANNOTATION_COLOR,
  geometryMismatch,
  importFeatureCollectionSchema,
  importFeatureListSchema,
  MAX_IMPORT_FEATURES,
  type AnnotationGeometry,
  type AnnotationKind,
  type AnnotationProperties,
  type GeoJsonFeature,
  type GeoJsonFeatureCollection,
  type ImportFeature,
  type PublicAnnotation,
} from '../protocol/annotations';
import type { ErrorDetail } from '../protocol/errors';

/** One annotation to create, as read from a file. */
export interface ImportDraft {
  kind: AnnotationKind;
  geometry: AnnotationGeometry;
  properties: AnnotationProperties;
  /** The slice of a DICOM stack (our exports of a stack), or null. */
  slice: number | null;
  /** Where the feature was in the file, to name it in a refusal. */
  path: string;
}

export function hexToRgb(color: string): [number, number, number] {
  return [1, 3, 5].map((i) => Number.parseInt(color.slice(i, i + 2), 16)) as [number, number, number];
}

export function rgbToHex([r, g, b]: readonly [number, number, number]): string {
  return `#${[r, g, b].map((c) => c.toString(16).padStart(2, '0')).join('')}`;
}

export function toFeature(a: PublicAnnotation): GeoJsonFeature {
  const { label, color, text } = a.properties;
  return {
    type: 'Feature',
    id: a.id,
    geometry: a.geometry,
    properties: {
      objectType: 'annotation',
      name: label,
      classification: { name: label, color: hexToRgb(color) },
      color,
      kind: a.kind,
      text,
      version: a.version,
      ...(a.slice !== null ? { slice: a.slice } : {}),
    },
  };
}

export function toFeatureCollection(annotations: PublicAnnotation[]): GeoJsonFeatureCollection {
  return { type: 'FeatureCollection', features: annotations.filter((a) => !a.deleted).map(toFeature) };
}

const INFERRED_KIND: Record<AnnotationGeometry['type'], AnnotationKind> = { Point: 'point', LineString: 'line', Polygon: 'polygon' };

type ImportProperties = NonNullable<ImportFeature['properties']>;

/**
 * The object's own colour first (QuPath writes it only when it overrides the class colour), then
 * the class colour, as [r, g, b] or QuPath 0.2's packed integer.
 */
function importColor(p: ImportProperties): string {
  if (typeof p.color === 'string') return p.color;
  if (Array.isArray(p.color)) return rgbToHex(p.color);
  const c = p.classification;
  if (c?.color) return rgbToHex(c.color);
  if (c?.colorRGB !== undefined) {
    const packed = c.colorRGB >>> 0;
    return rgbToHex([(packed >>> 16) & 0xff, (packed >>> 8) & 0xff, packed & 0xff]);
  }
  return DEFAULT_ANNOTATION_COLOR;
}

/**
 * Validates a whole file and turns it into drafts, or throws VALIDATION_FAILED naming the
 * features at fault: nothing is stored for a file with any bad feature. The label is the
 * classification's name (else the object's name, else empty); the kind is the file's own
 * `kind` (our exports) when its geometry suits it, else inferred from the geometry type; a
 * MultiPolygon becomes one polygon annotation per polygon.
 */
export function parseImport(body: unknown): ImportDraft[] {
  // Chosen by shape rather than by a union, so a refusal names the feature, not "(body)".
  const list = Array.isArray(body);
  const features = list ? parseInput(importFeatureListSchema, body) : parseInput(importFeatureCollectionSchema, body).features;
  const prefix = list ? '' : 'features.';
  const drafts: ImportDraft[] = [];
  const issues: ErrorDetail[] = [];
  features.forEach((feature, index) => {
    const p: ImportProperties = feature.properties ?? {};
    const properties: AnnotationProperties = {
      label: p.classification?.name || p.name || '',
      color: importColor(p),
      text: p.text ?? '',
    };
    const g = feature.geometry;
    const parts: AnnotationGeometry[] = g.type === 'MultiPolygon' ? g.coordinates.map((coordinates) => ({ type: 'Polygon', coordinates })) : [g];
    for (const geometry of parts) {
      const kind = p.kind ?? INFERRED_KIND[geometry.type];
      const mismatch = geometryMismatch(kind, geometry);
      if (mismatch) issues.push({ path: `${prefix}${index}.properties.kind`, issue: mismatch });
      drafts.push({ kind, geometry, properties, slice: p.slice ?? null, path: `${prefix}${index}` });
    }
  });
  if (drafts.length > MAX_IMPORT_FEATURES) {
    issues.push({ path: '(body)', issue: `at most ${MAX_IMPORT_FEATURES} annotations per import (each polygon of a MultiPolygon counts)` });
  }
  if (issues.length > 0) throw new ValidationError(issues.slice(0, 20));
  return drafts;
}
