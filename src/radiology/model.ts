// Radiology records as stored. Identifiers from DICOM and HL7 headers (Study Instance UID,
// accession number, patient ID, SOP Instance UID) are never stored in the clear: they are kept
// as keyed hashes (HMAC under a per-site data key) that are good for matching and nothing else;
// the values themselves live only inside the encrypted instance files and sealed records.

/** Which identifier a case key hashes: a study (Study Instance UID) or an order (accession number). */
export type CaseKeyKind = 'study' | 'accession';

export interface CaseKeyRecord {
  siteId: string;
  kind: CaseKeyKind;
  keyHash: string;
  caseId: string;
  createdAt: string;
}

/** One series = one material of mime DICOM_STACK_MIME; the series record carries the stack facts. */
export interface SeriesRecord {
  /** The material id. */
  id: string;
  siteId: string;
  caseId: string;
  seriesKey: string;
  /** Hash of the patient ID the study was received for (a second patient in one study is refused). */
  patientKey: string | null;
  modality: string;
  sopClassUid: string;
  seriesNumber: number | null;
  rows: number;
  columns: number;
  /** Default window from the header's VOI LUT (first value), in output units after rescale. */
  windowCenter: number | null;
  windowWidth: number | null;
  instanceCount: number;
  totalBytes: number;
  createdAt: string;
  updatedAt: string;
}

export interface InstanceRecord {
  id: string;
  siteId: string;
  caseId: string;
  seriesId: string;
  sopKey: string;
  sopClassUid: string;
  transferSyntaxUid: string;
  instanceNumber: number | null;
  /** Position along the slice normal (ImagePositionPatient . normal), for ordering. */
  slicePosition: number | null;
  rows: number;
  columns: number;
  frames: number;
  sizeBytes: number;
  sha256: string;
  createdAt: string;
}

/** A patient known from HL7 ADT (or a DICOM header), keyed by the hash of the patient ID. */
export interface RadiologyPatientRecord {
  siteId: string;
  patientKey: string;
  patientSealed: string;
  updatedAt: string;
}

export type DocumentKind = 'order' | 'report';

/** An HL7 order or report attached to a case; its text is sealed under the case key. */
export interface RadiologyDocumentRecord {
  id: string;
  siteId: string;
  caseId: string;
  kind: DocumentKind;
  /** Hash of the message control id, so a resent message is applied once. */
  messageKey: string;
  contentSealed: string;
  createdAt: string;
}

export interface RadiologyRepository {
  findCaseKey(siteId: string, kind: CaseKeyKind, keyHash: string): Promise<string | null>;
  /** Returns false when the key already exists (another intake claimed it first). */
  putCaseKey(record: CaseKeyRecord): Promise<boolean>;
  deleteCaseKey(siteId: string, kind: CaseKeyKind, keyHash: string): Promise<void>;
  /** Case keys of one case (to find every case of a patient, and for tests). */
  listCaseKeys(siteId: string, caseId: string): Promise<CaseKeyRecord[]>;

  findSeriesByKey(siteId: string, caseId: string, seriesKey: string): Promise<SeriesRecord | null>;
  findSeries(siteId: string, caseId: string, id: string): Promise<SeriesRecord | null>;
  listSeriesByCase(siteId: string, caseId: string): Promise<SeriesRecord[]>;
  /** Cases holding a series received for this patient. */
  listCaseIdsByPatient(siteId: string, patientKey: string): Promise<string[]>;
  createSeries(record: SeriesRecord): Promise<void>;
  /** Adds one instance to the series counters. */
  addToSeries(siteId: string, id: string, bytes: number, updatedAt: string): Promise<void>;

  findInstanceByKey(siteId: string, seriesId: string, sopKey: string): Promise<InstanceRecord | null>;
  /** Throws DuplicateKeyError when the SOP instance is already in the series. */
  createInstance(record: InstanceRecord): Promise<void>;
  listInstances(siteId: string, seriesId: string): Promise<InstanceRecord[]>;

  getPatient(siteId: string, patientKey: string): Promise<RadiologyPatientRecord | null>;
  putPatient(record: RadiologyPatientRecord): Promise<void>;
  /** Retention: registry entries of a site not updated since `before` (ISO); returns how many went. */
  purgePatients(siteId: string, before: string): Promise<number>;

  /** Returns false when a document with this message key already exists for the case. */
  addDocument(record: RadiologyDocumentRecord): Promise<boolean>;
  listDocuments(siteId: string, caseId: string): Promise<RadiologyDocumentRecord[]>;

  /** Everything of a case (the case itself is deleted by the case service). */
  deleteByCase(siteId: string, caseId: string): Promise<void>;
}
