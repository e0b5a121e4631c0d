// Measurements as DICOM SR (TID 1500 Measurement Report): written with the Cornerstone
// adapters, stored with STOW-RS, and read back into annotations when the study is reopened.
// Loaded on demand (dynamic import): the adapters are large and not needed for a first image.
import { adaptersSR } from '@cornerstonejs/adapters';
import { type RenderingEngine, metaData } from '@cornerstonejs/core';
import * as tools from '@cornerstonejs/tools';
import { data } from 'dcmjs';
import { type DicomJsonDataset, type DicomWebClient, Tag, str } from '../dicomweb';
import { MEASUREMENT_TOOLS } from './cornerstone';
import type { LoadedSeries, SeriesInfo } from './series';

const { MeasurementReport } = adaptersSR.Cornerstone3D;

type Naturalized = Record<string, unknown>;

/** DICOM JSON to dcmjs's naturalized form, without bulk data (not needed for an SR). */
function naturalize(ds: DicomJsonDataset): Naturalized {
  const copy: DicomJsonDataset = {};
  for (const [tag, el] of Object.entries(ds)) if (!el.BulkDataURI && tag !== Tag.PixelData) copy[tag] = el;
  return data.DicomMetaDictionary.naturalizeDataset(copy);
}

function metadataProvider(seriesByImageId: (id: string) => DicomJsonDataset | undefined) {
  return {
    get(type: string, imageId: string): unknown {
      if (type === 'instance') {
        const ds = seriesByImageId(imageId);
        return ds ? naturalize(ds) : metaData.get(type, imageId);
      }
      return metaData.get(type, imageId);
    },
  };
}

export async function saveMeasurements(
  client: DicomWebClient,
  _engine: RenderingEngine,
  seriesList: SeriesInfo[],
  getLoaded: (uid: string) => Promise<LoadedSeries>,
  study: DicomJsonDataset | undefined,
): Promise<number> {
  const loaded = await Promise.all(
    seriesList.filter((s) => !['SR', 'SEG', 'PR', 'KO'].includes(s.modality)).map((s) => getLoaded(s.seriesUID)),
  );
  const byImageId = (id: string) => {
    for (const s of loaded) {
      const ds = s.metadataByImageId.get(id);
      if (ds) return ds;
    }
    return undefined;
  };
  const toolState: Record<string, Record<string, { data: unknown[] }>> = {};
  let count = 0;
  for (const a of tools.annotation.state.getAllAnnotations()) {
    const toolName = a.metadata?.toolName;
    const imageId = a.metadata?.referencedImageId;
    // Measurements drawn on stack images; those drawn in MPR reference no single image.
    if (!toolName || !MEASUREMENT_TOOLS.includes(toolName) || !imageId || !byImageId(imageId)) continue;
    toolState[imageId] ??= {};
    toolState[imageId][toolName] ??= { data: [] };
    toolState[imageId][toolName].data.push(a);
    count++;
  }
  if (!count) throw new Error('there is no measurement on an image to save');
  const report = MeasurementReport.generateReport(toolState, metadataProvider(byImageId), {
    SeriesDescription: 'RadSight measurements',
    SeriesNumber: '9001',
    Manufacturer: 'RadSight',
    ManufacturerModelName: 'RadSight viewer',
  });
  const dataset = report.dataset as Naturalized;
  const buffer = data.datasetToDict(dataset).write();
  await client.store([buffer], str(study, Tag.StudyInstanceUID) || undefined);
  restored.add(String(dataset.SOPInstanceUID));
  return count;
}

// SR instances already turned into annotations, per image series.
const restored = new Set<string>();
let reports: Promise<{ sop: string; dataset: Naturalized }[]> | undefined;

function loadReports(client: DicomWebClient, seriesList: SeriesInfo[], getLoaded: (uid: string) => Promise<LoadedSeries>) {
  reports ??= (async () => {
    const out: { sop: string; dataset: Naturalized }[] = [];
    for (const s of seriesList.filter((x) => x.modality === 'SR')) {
      const sr = await getLoaded(s.seriesUID);
      for (const inst of sr.instances) {
        const template = (inst['0040A504']?.Value?.[0] as DicomJsonDataset | undefined)?.['0040DB00']?.Value?.[0];
        if (template !== undefined && String(template) !== '1500') continue;
        const sop = str(inst, Tag.SOPInstanceUID);
        const part10 = await client.retrieveInstance(s.studyUID, s.seriesUID, sop);
        const msg = data.DicomMessage.readFile(part10);
        out.push({ sop, dataset: data.DicomMetaDictionary.naturalizeDataset(msg.dict) });
      }
    }
    return out;
  })();
  return reports;
}

/** Restore the TID 1500 measurements that reference images of `series`; returns how many. */
export async function loadMeasurements(
  client: DicomWebClient,
  series: LoadedSeries,
  seriesList: SeriesInfo[],
  getLoaded: (uid: string) => Promise<LoadedSeries>,
): Promise<number> {
  const sopToImageId: Record<string, string> = {};
  for (const [imageId, inst] of series.metadataByImageId) {
    const frame = Number(/\/frames\/(\d+)$/.exec(imageId)?.[1] ?? 1);
    sopToImageId[`${str(inst, Tag.SOPInstanceUID)}:${frame}`] = imageId;
  }
  let n = 0;
  for (const { sop, dataset } of await loadReports(client, seriesList, getLoaded)) {
    const key = `${sop}|${series.seriesUID}`;
    if (restored.has(key) || restored.has(sop)) continue;
    restored.add(key);
    let state: Record<string, { annotation: tools.Types.Annotation }[]>;
    try {
      state = MeasurementReport.generateToolState(dataset, sopToImageId, metaData, {}) as typeof state;
    } catch (err) {
      console.warn('SR not readable as TID 1500', sop, err);
      continue;
    }
    for (const measurements of Object.values(state)) {
      for (const m of measurements) {
        const a = m.annotation;
        if (!a?.metadata?.referencedImageId || !series.metadataByImageId.has(a.metadata.referencedImageId)) continue;
        a.invalidated = true; // recompute statistics (mean, SD, area) from the pixels
        tools.annotation.state.addAnnotation(a, a.metadata.FrameOfReferenceUID ?? '');
        n++;
      }
    }
  }
  return n;
}
