// MongoDB repository of radiology records (same contract as src/store/sqlite/radiology.ts).
// MongoDB has no cascading deletes: `deleteByCase` is called by the radiology service when a
// case goes, and readers tolerate a series whose material was deleted meanwhile.
import mongoose, { Schema, type Connection, type Model } from 'mongoose';
import type {
  CaseKeyKind,
  CaseKeyRecord,
  InstanceRecord,
  RadiologyDocumentRecord,
  RadiologyPatientRecord,
  RadiologyRepository,
  SeriesRecord,
} from '../../radiology/model';
import { DuplicateKeyError } from '../types';

const MAJORITY = { w: 'majority', j: true } as const;
const OPTIONS = { writeConcern: MAJORITY, versionKey: false, minimize: false, strictQuery: true, autoIndex: false, id: false } as const;
const { trusted } = mongoose;

const isDuplicate = (err: unknown) => typeof err === 'object' && err !== null && (err as { code?: unknown }).code === 11000;

type CaseKeyDoc = CaseKeyRecord;
type SeriesDoc = Omit<SeriesRecord, 'id'> & { _id: string };
type InstanceDoc = Omit<InstanceRecord, 'id'> & { _id: string };
type PatientDoc = RadiologyPatientRecord;
type DocumentDoc = Omit<RadiologyDocumentRecord, 'id'> & { _id: string };

const str = { type: String };
const num = { type: Number };

const caseKeySchema = new Schema<CaseKeyDoc>({ siteId: str, kind: str, keyHash: str, caseId: str, createdAt: str }, { ...OPTIONS, collection: 'radiology_case_keys' });
caseKeySchema.index({ siteId: 1, kind: 1, keyHash: 1 }, { unique: true });
caseKeySchema.index({ siteId: 1, caseId: 1 });

const seriesSchema = new Schema<SeriesDoc>(
  {
    _id: str,
    siteId: str,
    caseId: str,
    seriesKey: str,
    patientKey: str,
    modality: str,
    sopClassUid: str,
    seriesNumber: num,
    rows: num,
    columns: num,
    windowCenter: num,
    windowWidth: num,
    instanceCount: num,
    totalBytes: num,
    createdAt: str,
    updatedAt: str,
  },
  { ...OPTIONS, collection: 'radiology_series' },
);
seriesSchema.index({ siteId: 1, caseId: 1, seriesKey: 1 }, { unique: true });
seriesSchema.index({ siteId: 1, patientKey: 1 });

const instanceSchema = new Schema<InstanceDoc>(
  {
    _id: str,
    siteId: str,
    caseId: str,
    seriesId: str,
    sopKey: str,
    sopClassUid: str,
    transferSyntaxUid: str,
    instanceNumber: num,
    slicePosition: num,
    rows: num,
    columns: num,
    frames: num,
    sizeBytes: num,
    sha256: str,
    createdAt: str,
  },
  { ...OPTIONS, collection: 'radiology_instances' },
);
instanceSchema.index({ seriesId: 1, sopKey: 1 }, { unique: true });
instanceSchema.index({ siteId: 1, caseId: 1 });

const patientSchema = new Schema<PatientDoc>({ siteId: str, patientKey: str, patientSealed: str, updatedAt: str }, { ...OPTIONS, collection: 'radiology_patients' });
patientSchema.index({ siteId: 1, patientKey: 1 }, { unique: true });

const documentSchema = new Schema<DocumentDoc>(
  { _id: str, siteId: str, caseId: str, kind: str, messageKey: str, contentSealed: str, createdAt: str },
  { ...OPTIONS, collection: 'radiology_documents' },
);
documentSchema.index({ caseId: 1, messageKey: 1 }, { unique: true });

export interface RadiologyModels {
  radiologyCaseKeys: Model<CaseKeyDoc>;
  radiologySeries: Model<SeriesDoc>;
  radiologyInstances: Model<InstanceDoc>;
  radiologyPatients: Model<PatientDoc>;
  radiologyDocuments: Model<DocumentDoc>;
}

export function radiologyModels(conn: Connection): RadiologyModels {
  return {
    radiologyCaseKeys: conn.model<CaseKeyDoc>('RadiologyCaseKey', caseKeySchema, 'radiology_case_keys'),
    radiologySeries: conn.model<SeriesDoc>('RadiologySeries', seriesSchema, 'radiology_series'),
    radiologyInstances: conn.model<InstanceDoc>('RadiologyInstance', instanceSchema, 'radiology_instances'),
    radiologyPatients: conn.model<PatientDoc>('RadiologyPatient', patientSchema, 'radiology_patients'),
    radiologyDocuments: conn.model<DocumentDoc>('RadiologyDocument', documentSchema, 'radiology_documents'),
  };
}

const seriesFromDoc = ({ _id, ...rest }: SeriesDoc): SeriesRecord => ({ id: _id, ...rest, patientKey: rest.patientKey ?? null });
const instanceFromDoc = ({ _id, ...rest }: InstanceDoc): InstanceRecord => ({ id: _id, ...rest });
const strip = <T extends object>(doc: T & { _id?: unknown }): T => {
  const { _id: _ignored, ...rest } = doc;
  return rest as T;
};

export class MongoRadiology implements RadiologyRepository {
  constructor(private readonly m: RadiologyModels) {}

  async findCaseKey(siteId: string, kind: CaseKeyKind, keyHash: string): Promise<string | null> {
    const doc = await this.m.radiologyCaseKeys.findOne({ siteId, kind, keyHash }).lean<CaseKeyDoc>();
    return doc?.caseId ?? null;
  }

  async putCaseKey(r: CaseKeyRecord): Promise<boolean> {
    try {
      await this.m.radiologyCaseKeys.insertOne({ ...r });
      return true;
    } catch (err) {
      if (isDuplicate(err)) return false;
      throw err;
    }
  }

  async deleteCaseKey(siteId: string, kind: CaseKeyKind, keyHash: string): Promise<void> {
    await this.m.radiologyCaseKeys.deleteOne({ siteId, kind, keyHash });
  }

  async listCaseKeys(siteId: string, caseId: string): Promise<CaseKeyRecord[]> {
    const docs = await this.m.radiologyCaseKeys.find({ siteId, caseId }).sort({ createdAt: 1 }).lean<CaseKeyDoc[]>();
    return docs.map((d) => strip(d));
  }

  async findSeriesByKey(siteId: string, caseId: string, seriesKey: string): Promise<SeriesRecord | null> {
    const doc = await this.m.radiologySeries.findOne({ siteId, caseId, seriesKey }).lean<SeriesDoc>();
    return doc ? seriesFromDoc(doc) : null;
  }

  async findSeries(siteId: string, caseId: string, id: string): Promise<SeriesRecord | null> {
    const doc = await this.m.radiologySeries.findOne({ _id: id, siteId, caseId }).lean<SeriesDoc>();
    return doc ? seriesFromDoc(doc) : null;
  }

  async listSeriesByCase(siteId: string, caseId: string): Promise<SeriesRecord[]> {
    const docs = await this.m.radiologySeries.find({ siteId, caseId }).sort({ seriesNumber: 1, createdAt: 1 }).lean<SeriesDoc[]>();
    return docs.map(seriesFromDoc);
  }

  async listCaseIdsByPatient(siteId: string, patientKey: string): Promise<string[]> {
    const docs = await this.m.radiologySeries.find({ siteId, patientKey }).lean<SeriesDoc[]>();
    return [...new Set(docs.map((d) => d.caseId))];
  }

  async createSeries(r: SeriesRecord): Promise<void> {
    const { id, ...rest } = r;
    try {
      await this.m.radiologySeries.insertOne({ _id: id, ...rest });
    } catch (err) {
      if (isDuplicate(err)) throw new DuplicateKeyError('radiology_series.series_key');
      throw err;
    }
  }

  async addToSeries(siteId: string, id: string, bytes: number, updatedAt: string): Promise<void> {
    await this.m.radiologySeries.updateOne({ _id: id, siteId }, trusted({ $inc: { instanceCount: 1, totalBytes: bytes }, $set: { updatedAt } }));
  }

  async findInstanceByKey(siteId: string, seriesId: string, sopKey: string): Promise<InstanceRecord | null> {
    const doc = await this.m.radiologyInstances.findOne({ siteId, seriesId, sopKey }).lean<InstanceDoc>();
    return doc ? instanceFromDoc(doc) : null;
  }

  async createInstance(r: InstanceRecord): Promise<void> {
    const { id, ...rest } = r;
    try {
      await this.m.radiologyInstances.insertOne({ _id: id, ...rest });
    } catch (err) {
      if (isDuplicate(err)) throw new DuplicateKeyError('radiology_instances.sop_key');
      throw err;
    }
  }

  async listInstances(siteId: string, seriesId: string): Promise<InstanceRecord[]> {
    const docs = await this.m.radiologyInstances.find({ siteId, seriesId }).sort({ createdAt: 1, _id: 1 }).lean<InstanceDoc[]>();
    return docs.map(instanceFromDoc);
  }

  async getPatient(siteId: string, patientKey: string): Promise<RadiologyPatientRecord | null> {
    const doc = await this.m.radiologyPatients.findOne({ siteId, patientKey }).lean<PatientDoc>();
    return doc ? strip(doc) : null;
  }

  async putPatient(r: RadiologyPatientRecord): Promise<void> {
    await this.m.radiologyPatients.updateOne({ siteId: r.siteId, patientKey: r.patientKey }, { $set: { patientSealed: r.patientSealed, updatedAt: r.updatedAt } }, { upsert: true });
  }

  async purgePatients(siteId: string, before: string): Promise<number> {
    const res = await this.m.radiologyPatients.deleteMany({ siteId, updatedAt: trusted({ $lt: before }) });
    return res.deletedCount;
  }

  async addDocument(r: RadiologyDocumentRecord): Promise<boolean> {
    const { id, ...rest } = r;
    try {
      await this.m.radiologyDocuments.insertOne({ _id: id, ...rest });
      return true;
    } catch (err) {
      if (isDuplicate(err)) return false;
      throw err;
    }
  }

  async listDocuments(siteId: string, caseId: string): Promise<RadiologyDocumentRecord[]> {
    const docs = await this.m.radiologyDocuments.find({ siteId, caseId }).sort({ createdAt: 1, _id: 1 }).lean<DocumentDoc[]>();
    return docs.map(({ _id, ...rest }) => ({ id: _id, ...rest }));
  }

  async deleteByCase(siteId: string, caseId: string): Promise<void> {
    await this.m.radiologyInstances.deleteMany({ siteId, caseId });
    await this.m.radiologySeries.deleteMany({ siteId, caseId });
    await this.m.radiologyDocuments.deleteMany({ siteId, caseId });
    await this.m.radiologyCaseKeys.deleteMany({ siteId, caseId });
  }
}
