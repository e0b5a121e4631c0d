// A small DICOMweb (PS3.18) client: QIDO-RS, WADO-RS metadata and STOW-RS, nothing
// RadSight-specific, so the front end works against any DICOMweb server.
// Same-origin requests carry the login cookie; no credentials live in the page.

export type DicomJsonValue = string | number | { Alphabetic?: string } | DicomJsonDataset;
export interface DicomJsonElement {
  vr: string;
  Value?: DicomJsonValue[];
  BulkDataURI?: string;
  InlineBinary?: string;
}
export type DicomJsonDataset = Record<string, DicomJsonElement>;

export class DicomWebError extends Error {
  constructor(
    readonly status: number,
    readonly url: string,
    detail: string,
  ) {
    super(`${status} from ${url}${detail ? `: ${detail}` : ''}`);
  }
}

export interface DicomWebConfig {
  root: string; // e.g. "/dicomweb"
}

/** Where the DICOMweb service is: `window.RADSIGHT_CONFIG.dicomweb`, or `/dicomweb`. */
export function defaultConfig(): DicomWebConfig {
  const cfg = (window as unknown as { RADSIGHT_CONFIG?: { dicomweb?: string } }).RADSIGHT_CONFIG;
  return { root: (cfg?.dicomweb ?? '/dicomweb').replace(/\/$/, '') };
}

/** First value of an attribute as a string ('' when absent). PN gives its Alphabetic form. */
export function str(ds: DicomJsonDataset | undefined, tag: string): string {
  const v = ds?.[tag]?.Value?.[0];
  if (v === undefined || v === null) return '';
  if (typeof v === 'object') return (v as { Alphabetic?: string }).Alphabetic ?? '';
  return String(v);
}

export function strs(ds: DicomJsonDataset | undefined, tag: string): string[] {
  return (ds?.[tag]?.Value ?? []).map((v) =>
    typeof v === 'object' ? ((v as { Alphabetic?: string }).Alphabetic ?? '') : String(v),
  );
}

export function num(ds: DicomJsonDataset | undefined, tag: string): number | undefined {
  const v = ds?.[tag]?.Value?.[0];
  if (v === undefined || v === null || v === '') return undefined;
  const n = Number(v);
  return Number.isFinite(n) ? n : undefined;
}

export function nums(ds: DicomJsonDataset | undefined, tag: string): number[] {
  return (ds?.[tag]?.Value ?? []).map((v) => Number(v));
}

export const Tag = {
  SpecificCharacterSet: '00080005',
  SOPClassUID: '00080016',
  SOPInstanceUID: '00080018',
  StudyDate: '00080020',
  StudyTime: '00080030',
  AccessionNumber: '00080050',
  Modality: '00080060',
  ModalitiesInStudy: '00080061',
  StudyDescription: '00081030',
  SeriesDescription: '0008103E',
  PatientName: '00100010',
  PatientID: '00100020',
  PatientBirthDate: '00100030',
  PatientSex: '00100040',
  SliceThickness: '00180050',
  StudyInstanceUID: '0020000D',
  SeriesInstanceUID: '0020000E',
  SeriesNumber: '00200011',
  InstanceNumber: '00200013',
  ImagePositionPatient: '00200032',
  ImageOrientationPatient: '00200037',
  FrameOfReferenceUID: '00200052',
  SliceLocation: '00201041',
  NumberOfStudyRelatedSeries: '00201206',
  NumberOfStudyRelatedInstances: '00201208',
  NumberOfSeriesRelatedInstances: '00201209',
  PhotometricInterpretation: '00280004',
  NumberOfFrames: '00280008',
  Rows: '00280010',
  Columns: '00280011',
  PixelSpacing: '00280030',
  WindowCenter: '00281050',
  WindowWidth: '00281051',
  PixelData: '7FE00010',
} as const;

export interface StudyQuery {
  PatientName?: string;
  PatientID?: string;
  AccessionNumber?: string;
  StudyDate?: string; // YYYYMMDD or YYYYMMDD-YYYYMMDD
  ModalitiesInStudy?: string;
  StudyDescription?: string;
  StudyInstanceUID?: string;
  /** Server-side sort (dcm4chee's and RadSight's QIDO-RS extension): "-StudyDate,PatientName". */
  orderby?: string;
  limit: number;
  offset: number;
}

const STUDY_FIELDS = [
  Tag.StudyDescription,
  Tag.ModalitiesInStudy,
  Tag.NumberOfStudyRelatedSeries,
  Tag.NumberOfStudyRelatedInstances,
  Tag.PatientBirthDate,
  Tag.PatientSex,
];
const SERIES_FIELDS = [Tag.SeriesDescription, Tag.SeriesNumber, Tag.Modality, Tag.NumberOfSeriesRelatedInstances];

export class DicomWebClient {
  constructor(readonly config: DicomWebConfig = defaultConfig()) {}

  get root(): string {
    return this.config.root;
  }

  async getJson<T>(path: string, params?: URLSearchParams): Promise<T> {
    const url = `${this.root}${path}${params && [...params].length ? `?${params}` : ''}`;
    const { status, text } = (await takePrefetched(url)) ?? (await this.fetchText(url));
    if (status === 204) return [] as T;
    if (status === 401) {
      // The session expired: go through the login page and come back here.
      window.location.assign(`/login?next=${encodeURIComponent(location.pathname + location.search)}`);
    }
    if (status < 200 || status >= 300) throw new DicomWebError(status, url, text.slice(0, 200));
    return (text ? JSON.parse(text) : []) as T;
  }

  private async fetchText(url: string): Promise<{ status: number; text: string }> {
    const resp = await fetch(url, { headers: { Accept: 'application/dicom+json' }, credentials: 'same-origin' });
    return { status: resp.status, text: await resp.text() };
  }

  /** QIDO-RS study search; wildcards as the standard allows (`*`, `?`). */
  searchStudies(q: StudyQuery): Promise<DicomJsonDataset[]> {
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries(q)) {
      if (k === 'limit' || k === 'offset' || v === undefined || v === '') continue;
      p.set(k, String(v));
    }
    for (const f of STUDY_FIELDS) p.append('includefield', f);
    p.set('limit', String(q.limit));
    p.set('offset', String(q.offset));
    return this.getJson('/studies', p);
  }

  async getStudy(studyUID: string): Promise<DicomJsonDataset | undefined> {
    const p = new URLSearchParams({ StudyInstanceUID: studyUID });
    for (const f of STUDY_FIELDS) p.append('includefield', f);
    const found = await this.getJson<DicomJsonDataset[]>('/studies', p);
    return found[0];
  }

  searchSeries(studyUID: string): Promise<DicomJsonDataset[]> {
    const p = new URLSearchParams();
    for (const f of SERIES_FIELDS) p.append('includefield', f);
    return this.getJson(`/studies/${studyUID}/series`, p);
  }

  seriesMetadata(studyUID: string, seriesUID: string): Promise<DicomJsonDataset[]> {
    return this.getJson(`/studies/${studyUID}/series/${seriesUID}/metadata`);
  }

  seriesUrl(studyUID: string, seriesUID: string): string {
    return `${this.root}/studies/${studyUID}/series/${seriesUID}`;
  }

  thumbnailUrl(studyUID: string, seriesUID: string): string {
    return `${this.seriesUrl(studyUID, seriesUID)}/thumbnail`;
  }

  /** WADO-RS retrieve of one instance as a DICOM Part 10 file. */
  async retrieveInstance(studyUID: string, seriesUID: string, sopUID: string): Promise<ArrayBuffer> {
    const url = `${this.seriesUrl(studyUID, seriesUID)}/instances/${sopUID}`;
    const resp = await fetch(url, {
      headers: { Accept: 'multipart/related; type="application/dicom"; transfer-syntax=*' },
      credentials: 'same-origin',
    });
    if (!resp.ok) throw new DicomWebError(resp.status, url, (await resp.text()).slice(0, 200));
    const body = new Uint8Array(await resp.arrayBuffer());
    const ctype = resp.headers.get('Content-Type') ?? '';
    return ctype.startsWith('multipart/') ? firstPart(body, ctype) : body.buffer;
  }

  /** STOW-RS: store Part 10 files; returns the response dataset. */
  async store(files: ArrayBuffer[], studyUID?: string): Promise<DicomJsonDataset> {
    const boundary = `radsight-${crypto.randomUUID()}`;
    const enc = new TextEncoder();
    const parts: BlobPart[] = [];
    for (const f of files) {
      parts.push(enc.encode(`--${boundary}\r\nContent-Type: application/dicom\r\n\r\n`), new Uint8Array(f), enc.encode('\r\n'));
    }
    parts.push(enc.encode(`--${boundary}--\r\n`));
    const url = `${this.root}/studies${studyUID ? `/${studyUID}` : ''}`;
    const resp = await fetch(url, {
      method: 'POST',
      headers: {
        'Content-Type': `multipart/related; type="application/dicom"; boundary=${boundary}`,
        Accept: 'application/dicom+json',
      },
      body: new Blob(parts),
      credentials: 'same-origin',
    });
    const text = await resp.text();
    if (!resp.ok) throw new DicomWebError(resp.status, url, text.slice(0, 300));
    return text ? (JSON.parse(text) as DicomJsonDataset) : {};
  }
}

type Prefetched = Promise<{ status: number; text: string }>;

/** A response the page's inline script already asked for (viewer.html), taken once. */
async function takePrefetched(url: string): Promise<{ status: number; text: string } | undefined> {
  const store = (window as unknown as { __radsightPrefetch?: Record<string, Prefetched> }).__radsightPrefetch;
  const hit = store?.[url];
  if (!hit) return undefined;
  delete store[url];
  try {
    return await hit;
  } catch {
    return undefined; // a network error: ask again
  }
}

/** The body of the first part of a multipart/related response. */
export function firstPart(body: Uint8Array, contentType: string): ArrayBuffer {
  const m = /boundary="?([^";]+)"?/i.exec(contentType);
  if (!m) return body.slice().buffer;
  const enc = new TextEncoder();
  const delim = enc.encode(`--${m[1]}`);
  const start = indexOf(body, delim, 0);
  if (start < 0) return body.slice().buffer;
  const headerEnd = indexOf(body, enc.encode('\r\n\r\n'), start);
  const next = indexOf(body, enc.encode(`\r\n--${m[1]}`), headerEnd + 4);
  return body.slice(headerEnd + 4, next < 0 ? body.length : next).buffer;
}

function indexOf(hay: Uint8Array, needle: Uint8Array, from: number): number {
  outer: for (let i = from; i <= hay.length - needle.length; i++) {
    for (let j = 0; j < needle.length; j++) if (hay[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

/** DICOM DA (YYYYMMDD) to ISO-like display (YYYY-MM-DD). */
export function formatDate(da: string): string {
  return /^\d{8}$/.test(da) ? `${da.slice(0, 4)}-${da.slice(4, 6)}-${da.slice(6, 8)}` : da;
}

/** DICOM PN "Family^Given^Middle" to "Family, Given Middle". */
export function formatName(pn: string): string {
  const [family = '', given = '', middle = ''] = pn.split('^');
  const rest = [given, middle].filter(Boolean).join(' ');
  return rest ? `${family}, ${rest}` : family;
}
