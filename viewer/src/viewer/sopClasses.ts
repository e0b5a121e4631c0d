// Which part of the viewer takes a DICOM object that is not an image, by its SOP Class UID, as
// OHIF's SOP class handlers do: segmentations and parametric maps are AI overlays (ai/), structured
// reports are measurements (measurements.ts). Never by SeriesDescription or instance counts.
import { type DicomJsonDataset, DicomWebError, type DicomWebClient, Tag, str } from '../dicomweb';

export const SopClass = {
  Segmentation: '1.2.840.10008.5.1.4.1.1.66.4',
  LabelMapSegmentation: '1.2.840.10008.5.1.4.1.1.66.7',
  ParametricMap: '1.2.840.10008.5.1.4.1.1.30',
  /** What the viewer's own "Save measurements" writes (dcmjs MeasurementReport). */
  EnhancedSR: '1.2.840.10008.5.1.4.1.1.88.22',
  ComprehensiveSR: '1.2.840.10008.5.1.4.1.1.88.33',
  /** What RadSight's AI results (radsight.ai.results.sr) and measurements drawn in MPR are. */
  Comprehensive3DSR: '1.2.840.10008.5.1.4.1.1.88.34',
} as const;

/** 'seg': a labelmap overlay; 'pmap': a heatmap overlay; 'sr': measurements (TID 1500). */
export type DerivedKind = 'seg' | 'pmap' | 'sr';

const KIND_BY_CLASS: Record<string, DerivedKind> = {
  [SopClass.Segmentation]: 'seg',
  [SopClass.LabelMapSegmentation]: 'seg',
  [SopClass.ParametricMap]: 'pmap',
  [SopClass.EnhancedSR]: 'sr',
  [SopClass.ComprehensiveSR]: 'sr',
  [SopClass.Comprehensive3DSR]: 'sr',
};

/** The handler of an instance's SOP class, if the viewer has one for it (undefined for images). */
export function derivedKind(inst: DicomJsonDataset | undefined): DerivedKind | undefined {
  return KIND_BY_CLASS[str(inst, Tag.SOPClassUID)];
}

/** Series (by Series Instance UID) -> the kinds of handled object they hold. */
export type DerivedSeries = Map<string, Set<DerivedKind>>;

/**
 * The studies' series that hold objects of a handled SOP class: one QIDO-RS instance search per
 * study, matched on those classes (a UID list, PS3.18 8.3.4.1). SOP Class UID is an instance
 * attribute, which a series search does not return. A server that refuses the match is asked for
 * every instance of the study instead; the classes are checked here in either case.
 */
export async function findDerivedSeries(client: DicomWebClient, studyUIDs: string[]): Promise<DerivedSeries> {
  const found: DerivedSeries = new Map();
  for (const study of studyUIDs) {
    for (const inst of await studyInstances(client, study)) {
      const kind = derivedKind(inst);
      const series = str(inst, Tag.SeriesInstanceUID);
      if (!kind || !series) continue;
      if (!found.has(series)) found.set(series, new Set());
      found.get(series)!.add(kind);
    }
  }
  return found;
}

async function studyInstances(client: DicomWebClient, study: string): Promise<DicomJsonDataset[]> {
  const path = `/studies/${study}/instances`;
  const fields = new URLSearchParams({ includefield: Tag.SeriesInstanceUID });
  try {
    return await client.getJson(path, new URLSearchParams([...fields, ['SOPClassUID', Object.keys(KIND_BY_CLASS).join(',')]]));
  } catch (err) {
    if (!(err instanceof DicomWebError) || err.status !== 400) throw err;
    return client.getJson(path, fields);
  }
}
