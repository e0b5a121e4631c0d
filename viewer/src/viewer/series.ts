// A series as the viewer shows it: its instances' WADO-RS metadata, the Cornerstone imageIds
// (one per frame, `wadors:` scheme) in display order, and whether it can be shown at all.
import { wadors } from '@cornerstonejs/dicom-image-loader';
import { type DicomJsonDataset, DicomWebClient, Tag, num, nums, str } from '../dicomweb';
import { sortInstances } from './order';

export { sortInstances };

export interface SeriesInfo {
  studyUID: string;
  seriesUID: string;
  modality: string;
  description: string;
  number: number | undefined;
  instanceCount: number | undefined;
}

export interface LoadedSeries extends SeriesInfo {
  instances: DicomJsonDataset[];
  imageIds: string[];
  /** Set when the series holds no displayable image: says what it is instead. */
  notImage?: string;
  /** A stack of parallel single-frame slices that MPR can reconstruct. */
  isVolume: boolean;
  metadataByImageId: Map<string, DicomJsonDataset>;
}

export function seriesInfo(studyUID: string, ds: DicomJsonDataset): SeriesInfo {
  return {
    studyUID,
    seriesUID: str(ds, Tag.SeriesInstanceUID),
    modality: str(ds, Tag.Modality),
    description: str(ds, Tag.SeriesDescription),
    number: num(ds, Tag.SeriesNumber),
    instanceCount: num(ds, Tag.NumberOfSeriesRelatedInstances),
  };
}

// SOP classes that carry no image, by UID prefix, with what to tell the user.
const NON_IMAGE_CLASSES: [string, string][] = [
  ['1.2.840.10008.5.1.4.1.1.88.59', 'a Key Object Selection document'],
  ['1.2.840.10008.5.1.4.1.1.88.', 'a Structured Report (SR)'],
  ['1.2.840.10008.5.1.4.1.1.66.4', 'a Segmentation (SEG); overlay display comes with the AI results'],
  ['1.2.840.10008.5.1.4.1.1.66', 'a registration / fiducials / surface object'],
  ['1.2.840.10008.5.1.4.1.1.11.', 'a Presentation State'],
  ['1.2.840.10008.5.1.4.1.1.481.', 'an RT object (structure set, plan or dose)'],
  ['1.2.840.10008.5.1.4.1.1.104.', 'an encapsulated document (PDF/CDA)'],
  ['1.2.840.10008.5.1.4.1.1.9.', 'a waveform (ECG or other)'],
  ['1.2.840.10008.5.1.4.1.1.30', 'a parametric map'],
];
const MODALITY_NAMES: Record<string, string> = {
  SR: 'a Structured Report (SR)',
  SEG: 'a Segmentation (SEG)',
  PR: 'a Presentation State',
  KO: 'a Key Object Selection document',
  RTSTRUCT: 'an RT Structure Set',
  RTPLAN: 'an RT Plan',
  DOC: 'an encapsulated document',
  ECG: 'a waveform (ECG)',
};

export function describeNonImage(modality: string, instances: DicomJsonDataset[]): string | undefined {
  const sopClass = str(instances[0], Tag.SOPClassUID);
  const hit = NON_IMAGE_CLASSES.find(([prefix]) => sopClass.startsWith(prefix));
  const what = hit?.[1] ?? MODALITY_NAMES[modality];
  if (what) return `This series is ${what}: it has no image to display.`;
  if (instances.length && instances.every((i) => num(i, Tag.Rows) === undefined)) {
    return `This series (${modality || 'unknown modality'}) has no pixel data to display.`;
  }
  return undefined;
}

function isVolume(modality: string, instances: DicomJsonDataset[]): boolean {
  if (instances.length < 3 || !['CT', 'MR', 'PT', 'NM'].includes(modality)) return false;
  const iop0 = nums(instances[0], Tag.ImageOrientationPatient).join('\\');
  return instances.every(
    (i) =>
      (num(i, Tag.NumberOfFrames) ?? 1) === 1 &&
      nums(i, Tag.ImagePositionPatient).length === 3 &&
      nums(i, Tag.ImageOrientationPatient).join('\\') === iop0 &&
      num(i, Tag.Rows) === num(instances[0], Tag.Rows),
  );
}

// Pixel spacings of 0 (seen in real radiographs, e.g. WG04 RG1) would make every geometry NaN:
// such an image is shown uncalibrated instead.
const SPACING_TAGS = ['00280030', '00181164'];

function sanitize(inst: DicomJsonDataset): DicomJsonDataset {
  const bad = SPACING_TAGS.filter((t) => {
    const v = nums(inst, t);
    return inst[t] && (v.length < 2 || v.some((x) => !Number.isFinite(x) || x <= 0));
  });
  if (!bad.length) return inst;
  const copy = { ...inst };
  for (const t of bad) delete copy[t];
  return copy;
}

export async function loadSeries(client: DicomWebClient, info: SeriesInfo): Promise<LoadedSeries> {
  const instances = sortInstances(await client.seriesMetadata(info.studyUID, info.seriesUID));
  const modality = info.modality || str(instances[0], Tag.Modality);
  const notImage = describeNonImage(modality, instances);
  const imageIds: string[] = [];
  const metadataByImageId = new Map<string, DicomJsonDataset>();
  if (!notImage) {
    const base = `wadors:${new URL(client.root, location.href).href}`;
    for (const inst of instances) {
      if (num(inst, Tag.Rows) === undefined) continue;
      const sop = str(inst, Tag.SOPInstanceUID);
      const frames = num(inst, Tag.NumberOfFrames) ?? 1;
      const prefix = `${base}/studies/${info.studyUID}/series/${info.seriesUID}/instances/${sop}/frames/`;
      // The loader derives per-frame metadata of a multi-frame instance from frame 1's entry.
      wadors.metaDataManager.add(`${prefix}1`, sanitize(inst) as never);
      for (let f = 1; f <= frames; f++) {
        imageIds.push(`${prefix}${f}`);
        metadataByImageId.set(`${prefix}${f}`, inst);
      }
    }
  }
  return {
    ...info,
    modality,
    instances,
    imageIds,
    notImage,
    isVolume: !notImage && isVolume(modality, instances),
    metadataByImageId,
  };
}
