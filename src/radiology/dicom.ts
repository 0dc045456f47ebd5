// DICOM Part 10 parsing (dcmjs), the facts the intake needs from a header, slice rendering to
// 8-bit PNG (rescale slope/intercept, VOI window, MONOCHROME1 inversion; sharp for JPEG
// Baseline frames and PNG encoding), and PS3.15 Annex E basic-profile de-identification of the
// header a viewer receives.
import { createHmac } from 'node:crypto';
import dcmjs from 'dcmjs';
import { NativeCodecs, Transcoder } from 'dcmjs-codecs';
import sharp from 'sharp';

const { DicomMessage, DicomMetaDictionary, DicomDict } = dcmjs.data;
// dcmjs reports odd values on the console, values included: those may be patient data.
dcmjs.log.setLevel('silent');

export const TS = {
  implicitLittle: '1.2.840.10008.1.2',
  explicitLittle: '1.2.840.10008.1.2.1',
  jpegBaseline: '1.2.840.10008.1.2.4.50',
} as const;

/**
 * Compressed syntaxes decoded for rendering by dcmjs-codecs (WebAssembly builds of libjpeg,
 * CharLS, OpenJPEG, OpenJPH); JPEG Baseline is decoded by sharp instead.
 */
export const DECODED_TRANSFER_SYNTAXES: readonly string[] = [
  '1.2.840.10008.1.2.5', // RLE Lossless
  '1.2.840.10008.1.2.4.57', // JPEG Lossless, process 14
  '1.2.840.10008.1.2.4.70', // JPEG Lossless, first-order prediction
  '1.2.840.10008.1.2.4.80', // JPEG-LS Lossless
  '1.2.840.10008.1.2.4.81', // JPEG-LS Near-Lossless
  '1.2.840.10008.1.2.4.90', // JPEG 2000 Lossless
  '1.2.840.10008.1.2.4.91', // JPEG 2000
  '1.2.840.10008.1.2.4.201', // HTJ2K Lossless
  '1.2.840.10008.1.2.4.202', // HTJ2K Lossless RPCL
  '1.2.840.10008.1.2.4.203', // HTJ2K
];

/** Transfer syntaxes accepted by every intake path: the ones this server can render. */
export const SUPPORTED_TRANSFER_SYNTAXES: readonly string[] = [TS.explicitLittle, TS.implicitLittle, TS.jpegBaseline, ...DECODED_TRANSFER_SYNTAXES];

let codecs: Promise<void> | null = null;

/**
 * The instance with its pixel data decoded to Explicit VR Little Endian when it is in one of the
 * DECODED_TRANSFER_SYNTAXES; otherwise unchanged. Throws DicomIntakeError when it cannot be decoded.
 */
export async function decodedForRendering(p: ParsedInstance, file: Buffer): Promise<ParsedInstance> {
  if (!DECODED_TRANSFER_SYNTAXES.includes(p.transferSyntaxUid)) return p;
  codecs ??= NativeCodecs.initializeAsync();
  await codecs;
  try {
    const transcoder = new Transcoder(toArrayBuffer(file));
    transcoder.transcode(TS.explicitLittle);
    return { ...p, transferSyntaxUid: TS.explicitLittle, dataset: transcoder.getElements() };
  } catch {
    throw new DicomIntakeError('MALFORMED', 'The compressed pixel data could not be decoded.');
  }
}

/** Storage SOP classes accepted (name for docs and material names). */
export const SUPPORTED_SOP_CLASSES: Readonly<Record<string, string>> = {
  '1.2.840.10008.5.1.4.1.1.1': 'CR Image',
  '1.2.840.10008.5.1.4.1.1.1.1': 'Digital X-Ray Image (for presentation)',
  '1.2.840.10008.5.1.4.1.1.1.1.1': 'Digital X-Ray Image (for processing)',
  '1.2.840.10008.5.1.4.1.1.1.2': 'Digital Mammography X-Ray Image (for presentation)',
  '1.2.840.10008.5.1.4.1.1.2': 'CT Image',
  '1.2.840.10008.5.1.4.1.1.4': 'MR Image',
  '1.2.840.10008.5.1.4.1.1.6.1': 'Ultrasound Image',
  '1.2.840.10008.5.1.4.1.1.7': 'Secondary Capture Image',
  '1.2.840.10008.5.1.4.1.1.20': 'Nuclear Medicine Image',
  '1.2.840.10008.5.1.4.1.1.128': 'PET Image',
  '1.2.840.10008.5.1.4.1.1.77.1.4': 'VL Photographic Image',
  '1.2.840.10008.5.1.4.1.1.77.1.6': 'VL Whole Slide Microscopy Image',
};

export const VL_WHOLE_SLIDE = '1.2.840.10008.5.1.4.1.1.77.1.6';

/** Why an instance was refused; each maps to a DIMSE status, a STOW-RS failure reason and an HTTP error. */
export type IntakeRefusal = 'MALFORMED' | 'UNSUPPORTED_TRANSFER_SYNTAX' | 'UNSUPPORTED_SOP_CLASS' | 'MISSING_ATTRIBUTE' | 'TOO_LARGE' | 'PATIENT_MISMATCH';

export class DicomIntakeError extends Error {
  override name = 'DicomIntakeError';
  constructor(
    readonly refusal: IntakeRefusal,
    /** Safe to show to the sender: never contains header values. */
    readonly reason: string,
  ) {
    super(reason);
  }
}

export interface PatientFromHeader {
  name: string | null;
  id: string | null;
  birthDate: string | null;
  sex: 'female' | 'male' | 'other' | 'unknown' | null;
}

export interface ParsedInstance {
  transferSyntaxUid: string;
  sopClassUid: string;
  sopInstanceUid: string;
  studyInstanceUid: string;
  seriesInstanceUid: string;
  accessionNumber: string | null;
  modality: string;
  seriesNumber: number | null;
  instanceNumber: number | null;
  slicePosition: number | null;
  rows: number;
  columns: number;
  frames: number;
  windowCenter: number | null;
  windowWidth: number | null;
  patient: PatientFromHeader;
  /** The naturalized dataset (dcmjs), pixel data included. */
  dataset: Record<string, unknown>;
}

const first = (v: unknown): unknown => (Array.isArray(v) ? v[0] : v);

function str(v: unknown): string | null {
  const x = first(v);
  if (x === undefined || x === null) return null;
  if (typeof x === 'object' && x !== null && 'Alphabetic' in x) return String((x as { Alphabetic: unknown }).Alphabetic ?? '').trim() || null;
  const s = String(x).trim();
  return s === '' ? null : s;
}

function num(v: unknown): number | null {
  const x = first(v);
  if (x === undefined || x === null || x === '') return null;
  const n = Number(x);
  return Number.isFinite(n) ? n : null;
}

const UID = /^[0-9]+(\.[0-9]+)*$/;

function requireUid(ds: Record<string, unknown>, keyword: string): string {
  const v = str(ds[keyword]);
  if (!v || v.length > 64 || !UID.test(v)) throw new DicomIntakeError('MISSING_ATTRIBUTE', `${keyword} is missing or not a valid UID.`);
  return v;
}

/** "DOE^JANE^^DR" -> "JANE DOE": the order a person reads. */
export function personName(pn: string): string {
  const [family = '', given = '', middle = '', prefix = '', suffix = ''] = pn.split('^');
  return [prefix, given, middle, family, suffix].map((p) => p.trim()).filter(Boolean).join(' ');
}

/** DICOM DA (YYYYMMDD) to ISO date, or null when it is not a real date. */
export function isoDate(da: string | null): string | null {
  if (!da || !/^\d{8}$/.test(da)) return null;
  const iso = `${da.slice(0, 4)}-${da.slice(4, 6)}-${da.slice(6, 8)}`;
  const d = new Date(`${iso}T00:00:00Z`);
  return Number.isNaN(d.getTime()) || d.toISOString().slice(0, 10) !== iso ? null : iso;
}

export function sexFrom(code: string | null): PatientFromHeader['sex'] {
  switch ((code ?? '').toUpperCase()) {
    case 'F':
      return 'female';
    case 'M':
      return 'male';
    case 'O':
      return 'other';
    case '':
      return null;
    default:
      return 'unknown';
  }
}

function toArrayBuffer(buf: Buffer): ArrayBuffer {
  return buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength) as ArrayBuffer;
}

/** Parses a Part 10 file and checks everything the intake relies on; throws DicomIntakeError. */
export function parseInstance(file: Buffer): ParsedInstance {
  if (file.length < 132 || file.toString('latin1', 128, 132) !== 'DICM') {
    throw new DicomIntakeError('MALFORMED', 'Not a DICOM Part 10 file (no DICM preamble).');
  }
  let meta: Record<string, unknown>;
  let ds: Record<string, unknown>;
  try {
    const parsed = DicomMessage.readFile(toArrayBuffer(file));
    meta = DicomMetaDictionary.naturalizeDataset(parsed.meta);
    ds = DicomMetaDictionary.naturalizeDataset(parsed.dict);
  } catch {
    throw new DicomIntakeError('MALFORMED', 'The DICOM file could not be parsed.');
  }
  const transferSyntaxUid = str(meta.TransferSyntaxUID);
  if (!transferSyntaxUid || !SUPPORTED_TRANSFER_SYNTAXES.includes(transferSyntaxUid)) {
    throw new DicomIntakeError('UNSUPPORTED_TRANSFER_SYNTAX', `Transfer syntax ${transferSyntaxUid ?? '(none)'} is not supported; send ${SUPPORTED_TRANSFER_SYNTAXES.join(', ')}.`);
  }
  const sopClassUid = requireUid(ds, 'SOPClassUID');
  if (!SUPPORTED_SOP_CLASSES[sopClassUid]) throw new DicomIntakeError('UNSUPPORTED_SOP_CLASS', `SOP class ${sopClassUid} is not supported.`);
  const rows = num(ds.Rows);
  const columns = num(ds.Columns);
  if (!rows || !columns || rows < 1 || columns < 1 || rows > 65535 || columns > 65535) throw new DicomIntakeError('MISSING_ATTRIBUTE', 'Rows and Columns are required.');
  if (ds.PixelData === undefined) throw new DicomIntakeError('MISSING_ATTRIBUTE', 'The instance has no pixel data.');
  const frames = Math.max(1, num(ds.NumberOfFrames) ?? 1);

  let slicePosition: number | null = null;
  const ipp = Array.isArray(ds.ImagePositionPatient) ? (ds.ImagePositionPatient as unknown[]).map(Number) : null;
  const iop = Array.isArray(ds.ImageOrientationPatient) ? (ds.ImageOrientationPatient as unknown[]).map(Number) : null;
  if (ipp?.length === 3 && iop?.length === 6 && [...ipp, ...iop].every(Number.isFinite)) {
    const [r0, r1, r2, c0, c1, c2] = iop as [number, number, number, number, number, number];
    const normal = [r1 * c2 - r2 * c1, r2 * c0 - r0 * c2, r0 * c1 - r1 * c0];
    slicePosition = ipp[0]! * normal[0]! + ipp[1]! * normal[1]! + ipp[2]! * normal[2]!;
  } else {
    slicePosition = num(ds.SliceLocation);
  }
  const wc = num(ds.WindowCenter);
  const ww = num(ds.WindowWidth);
  return {
    transferSyntaxUid,
    sopClassUid,
    sopInstanceUid: requireUid(ds, 'SOPInstanceUID'),
    studyInstanceUid: requireUid(ds, 'StudyInstanceUID'),
    seriesInstanceUid: requireUid(ds, 'SeriesInstanceUID'),
    accessionNumber: str(ds.AccessionNumber)?.slice(0, 64) ?? null,
    modality: (str(ds.Modality) ?? 'OT').slice(0, 16),
    seriesNumber: num(ds.SeriesNumber),
    instanceNumber: num(ds.InstanceNumber),
    slicePosition,
    rows,
    columns,
    frames,
    windowCenter: ww !== null && ww >= 1 ? wc : null,
    windowWidth: ww !== null && ww >= 1 ? ww : null,
    patient: {
      name: str(ds.PatientName) ? personName(str(ds.PatientName)!).slice(0, 200) || null : null,
      id: str(ds.PatientID)?.slice(0, 64) ?? null,
      birthDate: isoDate(str(ds.PatientBirthDate)),
      sex: sexFrom(str(ds.PatientSex)),
    },
    dataset: ds,
  };
}

/**
 * Writes a naturalized dataset as a Part 10 file (Explicit VR Little Endian unless the dataset's
 * pixel data is encapsulated in `transferSyntaxUid`). Used for DIMSE, whose library hands over
 * a parsed dataset rather than the bytes.
 */
export function writePart10(dataset: Record<string, unknown>, transferSyntaxUid: string): Buffer {
  const meta = {
    FileMetaInformationVersion: new Uint8Array([0, 1]).buffer,
    MediaStorageSOPClassUID: dataset.SOPClassUID,
    MediaStorageSOPInstanceUID: dataset.SOPInstanceUID,
    TransferSyntaxUID: transferSyntaxUid,
    ImplementationClassUID: '1.2.826.0.1.3680043.10.1541.1',
    ImplementationVersionName: 'CASECOLLAB1',
  };
  const dict = new DicomDict(DicomMetaDictionary.denaturalizeDataset(meta));
  dict.dict = DicomMetaDictionary.denaturalizeDataset(dataset);
  return Buffer.from(dict.write());
}

export interface WindowLevel {
  center: number;
  width: number;
}

/** PS3.3 C.11.2.1.2.1 linear VOI function to 0..255. */
function windowLut(center: number, width: number): (x: number) => number {
  const w = Math.max(1, width);
  const low = center - 0.5 - (w - 1) / 2;
  const high = center - 0.5 + (w - 1) / 2;
  return (x) => (x <= low ? 0 : x > high ? 255 : Math.round(((x - (center - 0.5)) / (w - 1) + 0.5) * 255));
}

export interface RenderedSlice {
  png: Buffer;
  /** The window actually applied (null for colour images). */
  window: WindowLevel | null;
}

/**
 * Renders one frame as an 8-bit PNG. Grayscale: modality LUT (slope/intercept), then the given
 * window, else the header's, else the frame's min..max. Colour frames are passed through.
 */
export async function renderFrame(p: ParsedInstance, frameIndex: number, requested: WindowLevel | null): Promise<RenderedSlice> {
  const ds = p.dataset;
  const { rows, columns } = p;
  const samples = num(ds.SamplesPerPixel) ?? 1;
  const photometric = (str(ds.PhotometricInterpretation) ?? 'MONOCHROME2').toUpperCase();
  const pixelData = ds.PixelData as ArrayBuffer[] | undefined;
  if (!Array.isArray(pixelData) || pixelData.length === 0) throw new DicomIntakeError('MISSING_ATTRIBUTE', 'The instance has no pixel data.');
  if (frameIndex < 0 || frameIndex >= p.frames) throw new RangeError('frame out of range');

  let values: ArrayLike<number>;
  let channels = samples;
  if (p.transferSyntaxUid === TS.jpegBaseline) {
    const fragment = pixelData[frameIndex] ?? (p.frames === 1 ? pixelData[0] : undefined);
    if (!fragment) throw new DicomIntakeError('MALFORMED', 'The frame is missing.');
    const decoded = await sharp(Buffer.from(fragment)).raw().toBuffer({ resolveWithObject: true });
    if (decoded.info.width !== columns || decoded.info.height !== rows) throw new DicomIntakeError('MALFORMED', 'The JPEG frame does not match Rows and Columns.');
    if (decoded.info.channels >= 3) return { png: await sharp(decoded.data, { raw: decoded.info }).png({ compressionLevel: 3 }).toBuffer(), window: null };
    values = decoded.data;
    channels = decoded.info.channels;
  } else {
    const bits = num(ds.BitsAllocated) ?? 16;
    const signed = (num(ds.PixelRepresentation) ?? 0) === 1;
    const all = Buffer.concat(pixelData.map((b) => Buffer.from(b)));
    const frameBytes = rows * columns * samples * (bits / 8);
    if (bits !== 8 && bits !== 16) throw new DicomIntakeError('MALFORMED', `BitsAllocated ${bits} is not supported.`);
    if (all.length < frameBytes * (frameIndex + 1)) throw new DicomIntakeError('MALFORMED', 'The pixel data is shorter than Rows x Columns.');
    const frame = Buffer.from(all.subarray(frameBytes * frameIndex, frameBytes * (frameIndex + 1)));
    if (samples === 3) {
      const planar = (num(ds.PlanarConfiguration) ?? 0) === 1;
      let rgb = frame;
      if (planar) {
        rgb = Buffer.alloc(frame.length);
        const n = rows * columns;
        for (let i = 0; i < n; i++) for (let c = 0; c < 3; c++) rgb[i * 3 + c] = frame[c * n + i]!;
      }
      return { png: await sharp(rgb, { raw: { width: columns, height: rows, channels: 3 } }).png({ compressionLevel: 3 }).toBuffer(), window: null };
    }
    const ab = toArrayBuffer(frame);
    values = bits === 8 ? new Uint8Array(ab) : signed ? new Int16Array(ab) : new Uint16Array(ab);
    // BitsStored < BitsAllocated with a signed representation: sign-extend from the high bit.
    const stored = num(ds.BitsStored) ?? bits;
    if (bits === 16 && stored < 16) {
      const mask = (1 << stored) - 1;
      const sign = 1 << (stored - 1);
      const raw = new Uint16Array(ab);
      const out = new Int32Array(raw.length);
      for (let i = 0; i < raw.length; i++) {
        const v = raw[i]! & mask;
        out[i] = signed && v & sign ? v - (1 << stored) : v;
      }
      values = out;
    }
  }
  if (channels !== 1) throw new DicomIntakeError('MALFORMED', 'Unsupported samples per pixel.');
  const slope = num(ds.RescaleSlope) ?? 1;
  const intercept = num(ds.RescaleIntercept) ?? 0;
  let window = requested ?? (p.windowCenter !== null && p.windowWidth !== null ? { center: p.windowCenter, width: p.windowWidth } : null);
  if (!window) {
    let min = Infinity;
    let max = -Infinity;
    for (let i = 0; i < values.length; i++) {
      const v = values[i]! * slope + intercept;
      if (v < min) min = v;
      if (v > max) max = v;
    }
    window = { center: (min + max) / 2, width: Math.max(1, max - min) };
  }
  const lut = windowLut(window.center, window.width);
  const invert = photometric === 'MONOCHROME1';
  const out = Buffer.alloc(rows * columns);
  for (let i = 0; i < out.length; i++) {
    const v = lut(values[i]! * slope + intercept);
    out[i] = invert ? 255 - v : v;
  }
  return { png: await sharp(out, { raw: { width: columns, height: rows, channels: 1 } }).png({ compressionLevel: 3 }).toBuffer(), window };
}

/** The tile grid of a tiled whole-slide instance (VL WSI, TILED_FULL), or null. */
export function tiledLayout(p: ParsedInstance): { across: number; down: number; width: number; height: number } | null {
  const ds = p.dataset;
  if (p.sopClassUid !== VL_WHOLE_SLIDE || p.frames < 2 || str(ds.DimensionOrganizationType)?.toUpperCase() !== 'TILED_FULL') return null;
  const width = num(ds.TotalPixelMatrixColumns);
  const height = num(ds.TotalPixelMatrixRows);
  if (!width || !height || width < 1 || height < 1) return null;
  const across = Math.ceil(width / p.columns);
  const down = Math.ceil(height / p.rows);
  // One focal plane and optical path come first in TILED_FULL order; more frames are further planes.
  if (across * down > p.frames) return null;
  return { across, down, width, height };
}

/**
 * Joins the tiles of a tiled whole-slide instance (JPEG Baseline frames) into one tiled TIFF at
 * `out`, with libvips streaming the grid (no whole-slide buffer in this process).
 */
export async function writeTiledSlide(p: ParsedInstance, out: string): Promise<{ width: number; height: number } | null> {
  const layout = tiledLayout(p);
  if (!layout || p.transferSyntaxUid !== TS.jpegBaseline) return null;
  const frames = (p.dataset.PixelData as ArrayBuffer[]).slice(0, layout.across * layout.down).map((f) => Buffer.from(f));
  if (frames.length !== layout.across * layout.down) return null;
  await sharp(frames, { join: { across: layout.across }, limitInputPixels: false })
    .extract({ left: 0, top: 0, width: layout.width, height: layout.height })
    .tiff({ tile: true, tileWidth: 256, tileHeight: 256, compression: 'jpeg', quality: 90, bigtiff: true })
    .toFile(out);
  return { width: layout.width, height: layout.height };
}

// ------------------------------------------------------------------ de-identification

/**
 * PS3.15 Annex E, Table E.1-1, Basic Application Level Confidentiality Profile: the action for
 * each attribute (X remove, Z empty, D dummy value, U replace UID). Private attributes are
 * removed; sequences are processed item by item; UIDs get a stable per-site pseudonym.
 */
const BASIC_PROFILE: Readonly<Record<string, 'X' | 'Z' | 'D' | 'U'>> = {
  AccessionNumber: 'Z',
  AcquisitionComments: 'X',
  AcquisitionContextSequence: 'X',
  AcquisitionDate: 'X',
  AcquisitionDateTime: 'X',
  AcquisitionDeviceProcessingDescription: 'X',
  AcquisitionTime: 'X',
  ActualHumanPerformersSequence: 'X',
  AdditionalPatientHistory: 'X',
  AdmissionID: 'X',
  AdmittingDate: 'X',
  AdmittingDiagnosesCodeSequence: 'X',
  AdmittingDiagnosesDescription: 'X',
  AdmittingTime: 'X',
  Allergies: 'X',
  Arbitrary: 'X',
  AuthorObserverSequence: 'X',
  BranchOfService: 'X',
  CommentsOnThePerformedProcedureStep: 'X',
  ConcatenationUID: 'U',
  ContentCreatorName: 'Z',
  ContentDate: 'Z',
  ContentTime: 'Z',
  ContributionDescription: 'X',
  CountryOfResidence: 'X',
  CurrentPatientLocation: 'X',
  CurveDate: 'X',
  CurveTime: 'X',
  DerivationDescription: 'X',
  DeviceSerialNumber: 'X',
  DeviceUID: 'U',
  DimensionOrganizationUID: 'U',
  DischargeDiagnosisDescription: 'X',
  EthnicGroup: 'X',
  FailedSOPInstanceUIDList: 'U',
  FillerOrderNumberImagingServiceRequest: 'Z',
  FrameOfReferenceUID: 'U',
  GraphicAnnotationSequence: 'X',
  IconImageSequence: 'X',
  ImageComments: 'X',
  InstanceCreationDate: 'X',
  InstanceCreationTime: 'X',
  InstanceCreatorUID: 'U',
  InstitutionAddress: 'X',
  InstitutionalDepartmentName: 'X',
  InstitutionName: 'X',
  InsurancePlanIdentification: 'X',
  IrradiationEventUID: 'U',
  IssuerOfAdmissionID: 'X',
  IssuerOfPatientID: 'X',
  MedicalAlerts: 'X',
  MedicalRecordLocator: 'X',
  MilitaryRank: 'X',
  ModifiedAttributesSequence: 'X',
  NameOfPhysiciansReadingStudy: 'X',
  NamesOfIntendedRecipientsOfResults: 'X',
  Occupation: 'X',
  OperatorsName: 'X',
  OriginalAttributesSequence: 'X',
  OtherPatientIDs: 'X',
  OtherPatientIDsSequence: 'X',
  OtherPatientNames: 'X',
  OverlayDate: 'X',
  OverlayTime: 'X',
  ParticipantSequence: 'X',
  PatientAddress: 'X',
  PatientAge: 'X',
  PatientBirthDate: 'Z',
  PatientBirthName: 'X',
  PatientBirthTime: 'X',
  PatientComments: 'X',
  PatientID: 'Z',
  PatientInsurancePlanCodeSequence: 'X',
  PatientMotherBirthName: 'X',
  PatientName: 'Z',
  PatientPrimaryLanguageCodeSequence: 'X',
  PatientReligiousPreference: 'X',
  PatientSex: 'Z',
  PatientSexNeutered: 'X',
  PatientSize: 'X',
  PatientState: 'X',
  PatientTelephoneNumbers: 'X',
  PatientTransportArrangements: 'X',
  PatientWeight: 'X',
  PerformedLocation: 'X',
  PerformedProcedureStepDescription: 'X',
  PerformedProcedureStepID: 'X',
  PerformedProcedureStepStartDate: 'X',
  PerformedProcedureStepStartTime: 'X',
  PerformingPhysicianIdentificationSequence: 'X',
  PerformingPhysicianName: 'X',
  PersonAddress: 'X',
  PersonName: 'D',
  PersonTelephoneNumbers: 'X',
  PhysiciansOfRecord: 'X',
  PhysiciansOfRecordIdentificationSequence: 'X',
  PhysiciansReadingStudyIdentificationSequence: 'X',
  PlacerOrderNumberImagingServiceRequest: 'Z',
  PregnancyStatus: 'X',
  ProtocolName: 'X',
  ReasonForStudy: 'X',
  ReferencedFrameOfReferenceUID: 'U',
  ReferencedImageSequence: 'X',
  ReferencedPatientAliasSequence: 'X',
  ReferencedPatientSequence: 'X',
  ReferencedPerformedProcedureStepSequence: 'X',
  ReferencedSOPInstanceUID: 'U',
  ReferencedStudySequence: 'X',
  ReferringPhysicianAddress: 'X',
  ReferringPhysicianIdentificationSequence: 'X',
  ReferringPhysicianName: 'Z',
  ReferringPhysicianTelephoneNumbers: 'X',
  RegionOfResidence: 'X',
  RelatedFrameOfReferenceUID: 'U',
  RequestAttributesSequence: 'X',
  RequestedContrastAgent: 'X',
  RequestedProcedureDescription: 'X',
  RequestedProcedureID: 'X',
  RequestedProcedureLocation: 'X',
  RequestingPhysician: 'X',
  RequestingService: 'X',
  ResponsibleOrganization: 'X',
  ResponsiblePerson: 'X',
  ResultsComments: 'X',
  ScheduledPerformingPhysicianName: 'X',
  ScheduledProcedureStepDescription: 'X',
  ScheduledProcedureStepEndDate: 'X',
  ScheduledProcedureStepStartDate: 'X',
  SeriesDate: 'X',
  SeriesDescription: 'X',
  SeriesInstanceUID: 'U',
  SeriesTime: 'X',
  SmokingStatus: 'X',
  SOPInstanceUID: 'U',
  SpecialNeeds: 'X',
  StationName: 'X',
  StorageMediaFileSetUID: 'U',
  StudyComments: 'X',
  StudyDate: 'Z',
  StudyDescription: 'X',
  StudyID: 'Z',
  StudyInstanceUID: 'U',
  StudyTime: 'Z',
  SynchronizationFrameOfReferenceUID: 'U',
  TextComments: 'X',
  TextString: 'X',
  TimezoneOffsetFromUTC: 'X',
  TopicAuthor: 'X',
  TopicKeywords: 'X',
  TopicSubject: 'X',
  TopicTitle: 'X',
  UID: 'U',
  VerifyingObserverIdentificationCodeSequence: 'X',
  VerifyingObserverName: 'D',
  VerifyingObserverSequence: 'X',
  VerifyingOrganization: 'X',
  VisitComments: 'X',
};

/** "2.25.<decimal>": a stable pseudonymous UID for `uid` under `key` (PS3.5 B.2 UUID-derived form). */
export function pseudonymousUid(key: Buffer, uid: string): string {
  const digest = createHmac('sha256', key).update(`uid:${uid}`).digest();
  return `2.25.${BigInt(`0x${digest.subarray(0, 16).toString('hex')}`).toString(10)}`;
}

const PRIVATE_OR_UNKNOWN = /^[0-9A-Fa-f]{8}$/;

function jsonValue(v: unknown, transform: (ds: Record<string, unknown>) => Record<string, unknown>): unknown {
  if (v instanceof ArrayBuffer || ArrayBuffer.isView(v)) return undefined;
  if (Array.isArray(v)) {
    const items = v.map((x) => (x && typeof x === 'object' && !(x instanceof ArrayBuffer) && !ArrayBuffer.isView(x) && !('Alphabetic' in x) ? transform(x as Record<string, unknown>) : jsonValue(x, transform)));
    if (items.some((x) => x === undefined)) return undefined;
    return items.length === 1 ? items[0] : items;
  }
  if (v && typeof v === 'object' && 'Alphabetic' in v) return String((v as { Alphabetic: unknown }).Alphabetic ?? '');
  if (typeof v === 'number' || typeof v === 'string' || typeof v === 'boolean' || v === null) return v;
  return undefined;
}

/**
 * The header as JSON for a viewer: no pixel data or other binary values. Without View Patient
 * Info the basic profile is applied first (and PatientIdentityRemoved / DeidentificationMethod set).
 */
export function viewerHeader(dataset: Record<string, unknown>, options: { deidentify: boolean; uidKey: Buffer }): Record<string, unknown> {
  const transform = (ds: Record<string, unknown>): Record<string, unknown> => {
    const out: Record<string, unknown> = {};
    for (const [keyword, value] of Object.entries(ds)) {
      if (keyword === '_vrMap' || keyword === '_meta' || keyword === 'PixelData') continue;
      if (options.deidentify) {
        // Private attributes and anything dcmjs could not name are removed.
        if (PRIVATE_OR_UNKNOWN.test(keyword)) continue;
        const action = BASIC_PROFILE[keyword];
        if (action === 'X') continue;
        if (action === 'Z') {
          out[keyword] = '';
          continue;
        }
        if (action === 'D') {
          out[keyword] = 'ANONYMOUS';
          continue;
        }
        if (action === 'U') {
          const uids = (Array.isArray(value) ? value : [value]).map((u) => pseudonymousUid(options.uidKey, String(u)));
          out[keyword] = uids.length === 1 ? uids[0] : uids;
          continue;
        }
      }
      const json = jsonValue(value, transform);
      if (json !== undefined) out[keyword] = json;
    }
    return out;
  };
  const header = transform(dataset);
  if (options.deidentify) {
    header.PatientIdentityRemoved = 'YES';
    header.DeidentificationMethod = 'PS3.15 Annex E Basic Application Level Confidentiality Profile (viewer without View Patient Info)';
  }
  return header;
}
