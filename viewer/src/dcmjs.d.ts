// dcmjs ships no type declarations; the viewer uses a few of its functions.
declare module 'dcmjs' {
  export const data: {
    DicomMessage: { readFile(buffer: ArrayBuffer): { dict: unknown; meta: unknown } };
    DicomMetaDictionary: {
      naturalizeDataset(ds: unknown): Record<string, unknown>;
      nameMap: Record<string, { tag: string; vr: string; name: string }>;
      uid(): string;
    };
    datasetToDict(ds: unknown): { write(): ArrayBuffer };
  };
}
