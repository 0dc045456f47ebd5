// Synthetic DICOM for the radiology tests: CT slices written with dcmjs (16-bit signed, rescale
// intercept -1024, a bright disc whose radius grows with the slice position so the order of
// slices is visible in the pixels), and helpers around Debian's dcmtk tools.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import dcmjs from 'dcmjs';
import { RUN_LOG_DIR } from './server';

const { DicomDict, DicomMetaDictionary } = dcmjs.data;
export const run = promisify(execFile);

export interface CtPatient {
  name: string;
  id: string;
  birthDate: string;
  sex: 'F' | 'M' | 'O';
}

export interface CtSeriesOptions {
  patient: CtPatient;
  accession?: string;
  studyUid?: string;
  seriesUid?: string;
  slices: number;
  size?: number;
  /** Shuffles InstanceNumber against position, so ordering by position is observable. */
  shuffleInstanceNumbers?: boolean;
  transferSyntaxUid?: string;
  sopClassUid?: string;
}

export const CT_IMAGE_STORAGE = '1.2.840.10008.5.1.4.1.1.2';

let counter = 0;
export function uid(): string {
  counter++;
  return `1.2.826.0.1.3680043.10.1541.9.${process.pid}.${Date.now()}.${counter}`;
}

/** The patient names and IDs of a test: added to the run's secrets, so the global log scan fails if any is logged. */
export function registerPatientSecrets(...values: string[]): void {
  fs.appendFileSync(path.join(RUN_LOG_DIR, `${process.pid}-radiology.secrets`), values.map((v) => `${v}\n`).join(''));
}

export interface CtSlice {
  file: Buffer;
  sopInstanceUid: string;
  instanceNumber: number;
  /** z of ImagePositionPatient. */
  z: number;
}

export function ctSeries(o: CtSeriesOptions): { studyUid: string; seriesUid: string; slices: CtSlice[] } {
  const studyUid = o.studyUid ?? uid();
  const seriesUid = o.seriesUid ?? uid();
  const size = o.size ?? 64;
  const slices: CtSlice[] = [];
  const numbers = Array.from({ length: o.slices }, (_, i) => i + 1);
  if (o.shuffleInstanceNumbers) numbers.reverse();
  for (let i = 0; i < o.slices; i++) {
    const z = -100 + i * 5;
    const px = new Int16Array(size * size);
    const radius = 4 + i * 3;
    for (let y = 0; y < size; y++)
      for (let x = 0; x < size; x++) {
        const inside = (x - size / 2) ** 2 + (y - size / 2) ** 2 <= radius ** 2;
        // Stored values: HU + 1024. Disc 400 HU (bone-ish), background -1000 HU (air); a ramp
        // in the left column makes window changes visible.
        px[y * size + x] = (inside ? 400 : x < 4 ? -200 + y * 20 : -1000) + 1024;
      }
    const sopInstanceUid = uid();
    const ds: Record<string, unknown> = {
      _vrMap: { PixelData: 'OW' },
      SOPClassUID: o.sopClassUid ?? CT_IMAGE_STORAGE,
      SOPInstanceUID: sopInstanceUid,
      StudyInstanceUID: studyUid,
      SeriesInstanceUID: seriesUid,
      FrameOfReferenceUID: `${studyUid}.1`,
      Modality: 'CT',
      StudyDate: '20261120',
      StudyDescription: `CT chest for ${o.patient.name}`,
      InstitutionName: 'Synthetic General Hospital',
      PatientName: o.patient.name,
      PatientID: o.patient.id,
      PatientBirthDate: o.patient.birthDate,
      PatientSex: o.patient.sex,
      AccessionNumber: o.accession ?? '',
      SeriesNumber: 2,
      InstanceNumber: numbers[i],
      ImagePositionPatient: [0, 0, z],
      ImageOrientationPatient: [1, 0, 0, 0, 1, 0],
      PixelSpacing: [0.7, 0.7],
      SliceThickness: 5,
      Rows: size,
      Columns: size,
      SamplesPerPixel: 1,
      PhotometricInterpretation: 'MONOCHROME2',
      BitsAllocated: 16,
      BitsStored: 16,
      HighBit: 15,
      PixelRepresentation: 0,
      RescaleIntercept: -1024,
      RescaleSlope: 1,
      WindowCenter: 40,
      WindowWidth: 400,
      PixelData: [px.buffer],
    };
    const meta = {
      FileMetaInformationVersion: new Uint8Array([0, 1]).buffer,
      MediaStorageSOPClassUID: ds.SOPClassUID,
      MediaStorageSOPInstanceUID: sopInstanceUid,
      TransferSyntaxUID: o.transferSyntaxUid ?? '1.2.840.10008.1.2.1',
      ImplementationClassUID: '1.2.826.0.1.3680043.10.1541.9',
    };
    const dict = new DicomDict(DicomMetaDictionary.denaturalizeDataset(meta));
    dict.dict = DicomMetaDictionary.denaturalizeDataset(ds);
    slices.push({ file: Buffer.from(dict.write()), sopInstanceUid, instanceNumber: numbers[i]!, z });
  }
  return { studyUid, seriesUid, slices };
}

export function writeFiles(dir: string, files: Buffer[]): string[] {
  fs.mkdirSync(dir, { recursive: true });
  return files.map((f, i) => {
    const p = path.join(dir, `slice${String(i).padStart(3, '0')}.dcm`);
    fs.writeFileSync(p, f);
    return p;
  });
}

/** PNG size and the mean grey of an 8-bit PNG, decoded with sharp. */
export async function pngStats(png: Buffer): Promise<{ width: number; height: number; mean: number; pixels: Buffer }> {
  const sharp = (await import('sharp')).default;
  const { data, info } = await sharp(png).greyscale().raw().toBuffer({ resolveWithObject: true });
  let sum = 0;
  for (const v of data) sum += v;
  return { width: info.width, height: info.height, mean: sum / data.length, pixels: data };
}

/** A VL Whole Slide Microscopy instance, TILED_FULL, JPEG Baseline tiles of 256 px in a grid. */
export async function wholeSlideInstance(o: { width: number; height: number; patient: CtPatient }): Promise<Buffer> {
  const sharp = (await import('sharp')).default;
  const tile = 256;
  const across = Math.ceil(o.width / tile);
  const down = Math.ceil(o.height / tile);
  const frames: ArrayBuffer[] = [];
  for (let r = 0; r < down; r++)
    for (let c = 0; c < across; c++) {
      const jpg = await sharp({ create: { width: tile, height: tile, channels: 3, background: { r: (40 * (r * across + c)) % 255, g: 120, b: 200 - ((30 * c) % 200) } } })
        .jpeg({ quality: 90 })
        .toBuffer();
      frames.push(jpg.buffer.slice(jpg.byteOffset, jpg.byteOffset + jpg.length) as ArrayBuffer);
    }
  const sopInstanceUid = uid();
  const ds: Record<string, unknown> = {
    _vrMap: { PixelData: 'OB' },
    SOPClassUID: '1.2.840.10008.5.1.4.1.1.77.1.6',
    SOPInstanceUID: sopInstanceUid,
    StudyInstanceUID: uid(),
    SeriesInstanceUID: uid(),
    Modality: 'SM',
    PatientName: o.patient.name,
    PatientID: o.patient.id,
    PatientBirthDate: o.patient.birthDate,
    PatientSex: o.patient.sex,
    Rows: tile,
    Columns: tile,
    NumberOfFrames: String(frames.length),
    TotalPixelMatrixColumns: o.width,
    TotalPixelMatrixRows: o.height,
    DimensionOrganizationType: 'TILED_FULL',
    SamplesPerPixel: 3,
    PhotometricInterpretation: 'YBR_FULL_422',
    PlanarConfiguration: 0,
    BitsAllocated: 8,
    BitsStored: 8,
    HighBit: 7,
    PixelRepresentation: 0,
    PixelData: frames,
  };
  const meta = {
    FileMetaInformationVersion: new Uint8Array([0, 1]).buffer,
    MediaStorageSOPClassUID: ds.SOPClassUID,
    MediaStorageSOPInstanceUID: sopInstanceUid,
    TransferSyntaxUID: '1.2.840.10008.1.2.4.50',
    ImplementationClassUID: '1.2.826.0.1.3680043.10.1541.9',
  };
  const dict = new DicomDict(DicomMetaDictionary.denaturalizeDataset(meta));
  dict.dict = DicomMetaDictionary.denaturalizeDataset(ds);
  return Buffer.from(dict.write({ fragmentMultiframe: false }));
}
