// The part of dcmjs (no bundled types) this project uses.
declare module 'dcmjs' {
  interface DicomDictInstance {
    meta: Record<string, unknown>;
    dict: Record<string, unknown>;
    write(options?: Record<string, unknown>): ArrayBuffer;
  }
  export const data: {
    DicomMessage: {
      readFile(buffer: ArrayBuffer, options?: Record<string, unknown>): DicomDictInstance;
    };
    DicomMetaDictionary: {
      naturalizeDataset(dict: Record<string, unknown>): Record<string, unknown>;
      denaturalizeDataset(dataset: Record<string, unknown>): Record<string, unknown>;
      uid(): string;
    };
    DicomDict: new (meta: Record<string, unknown>) => DicomDictInstance;
  };
  export const log: { setLevel(level: string): void };
  const dcmjs: { data: typeof data; log: typeof log };
  export default dcmjs;
}
