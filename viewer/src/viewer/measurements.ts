// Measurements as DICOM SR (TID 1500 Measurement Report): written with the Cornerstone
// adapters, stored with STOW-RS, and read back into annotations when the study is reopened.
// Stack measurements reference their image (SCOORD, image pixels); those drawn in an MPR view
// that is not a plane of the acquired images (sagittal / coronal of an axial CT) reference no
// image and are saved as SCOORD3D (patient coordinates, the Frame of Reference): the adapter's
// NO_IMAGE_ID group, which makes the SR a Comprehensive 3D SR.
// Loaded on demand (dynamic import): the adapters are large and not needed for a first image.
import { NO_IMAGE_ID, adaptersSR } from '@cornerstonejs/adapters';
import { type RenderingEngine, type Types, cache, metaData, utilities } from '@cornerstonejs/core';
import * as tools from '@cornerstonejs/tools';
import { data } from 'dcmjs';
import { type DicomJsonDataset, type DicomWebClient, Tag, str } from '../dicomweb';
import { MEASUREMENT_TOOLS } from './cornerstone';
import type { LoadedSeries, SeriesInfo } from './series';
import { derivedKind } from './sopClasses';

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

/**
 * A measurement just drawn or moved is `invalidated`: its values (length, area, statistics) are
 * recomputed when the annotation layer next renders. Render and wait (a few frames at most), so
 * the report never carries the values of an earlier mouse position.
 */
async function settleMeasurements(engine: RenderingEngine): Promise<void> {
  const pending = () => tools.annotation.state.getAllAnnotations().some((a) => a.invalidated && MEASUREMENT_TOOLS.includes(a.metadata?.toolName ?? ''));
  for (let frame = 0; frame < 30 && pending(); frame++) {
    tools.utilities.triggerAnnotationRenderForViewportIds(engine.getViewports().map((v) => v.id));
    await new Promise((resolve) => requestAnimationFrame(resolve));
  }
}

export async function saveMeasurements(
  client: DicomWebClient,
  engine: RenderingEngine,
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
  await settleMeasurements(engine);
  const toolState: Record<string, Record<string, { data: unknown[] }>> = {};
  let count = 0;
  for (const a of tools.annotation.state.getAllAnnotations()) {
    const toolName = a.metadata?.toolName;
    if (!toolName || !MEASUREMENT_TOOLS.includes(toolName)) continue;
    const imageId = a.metadata?.referencedImageId;
    const measurement = imageId ? (byImageId(imageId) ? a : undefined) : inPatientCoordinates(a);
    if (!measurement) continue;
    const key = imageId ?? NO_IMAGE_ID;
    toolState[key] ??= {};
    toolState[key][toolName] ??= { data: [] };
    toolState[key][toolName].data.push(measurement);
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

/**
 * An MPR measurement as the adapter saves it in patient coordinates: it finds the volume (the
 * evidence it references) by `metadata.volumeId` and its values under `volumeId:<id>`, while the
 * tools key them by view (`volumeId:<id>?sliceIndex=…&viewPlaneNormal=…`; another MPR view that
 * shows the measurement has its own, possibly older, entry): the values of the view it was drawn
 * in go to the adapter. A shallow copy, the annotation state untouched.
 */
function inPatientCoordinates(a: tools.Types.Annotation): tools.Types.Annotation | undefined {
  const { volumeId, FrameOfReferenceUID, sliceIndex, viewPlaneNormal } = (a.metadata ?? {}) as {
    volumeId?: string;
    FrameOfReferenceUID?: string;
    sliceIndex?: number;
    viewPlaneNormal?: Types.Point3;
  };
  if (!volumeId || !FrameOfReferenceUID || !cache.getVolume(volumeId)) return undefined;
  const stats = (a.data.cachedStats ?? {}) as Record<string, unknown>;
  const drawnIn =
    typeof sliceIndex === 'number' && viewPlaneNormal
      ? utilities.getVolumeViewReferenceId({ volumeId, sliceIndex, viewPlaneNormal })
      : undefined;
  const own = drawnIn && drawnIn in stats ? drawnIn : Object.keys(stats).find((k) => k.startsWith(`volumeId:${volumeId}`));
  if (!own) return undefined; // not measured yet (statistics pending)
  const cachedStats = { ...stats, [`volumeId:${volumeId}`]: stats[own] } as typeof a.data.cachedStats;
  return { ...a, data: { ...a.data, cachedStats } };
}

// SR instances already turned into annotations, per image series.
const restored = new Set<string>();
let reports: Promise<{ sop: string; dataset: Naturalized }[]> | undefined;

function loadReports(client: DicomWebClient, srSeries: SeriesInfo[], getLoaded: (uid: string) => Promise<LoadedSeries>) {
  reports ??= (async () => {
    const out: { sop: string; dataset: Naturalized }[] = [];
    for (const s of srSeries) {
      const sr = await getLoaded(s.seriesUID);
      for (const inst of sr.instances) {
        if (derivedKind(inst) !== 'sr') continue;
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

/**
 * Restore the TID 1500 measurements that reference images of `series`, and those in patient
 * coordinates (SCOORD3D, from MPR) in its Frame of Reference: Cornerstone shows the latter in
 * any view whose plane holds them (the MPR view they were drawn in, at the same position).
 * `srSeries`: the study's series that hold structured reports (by SOP class).
 */
export async function loadMeasurements(
  client: DicomWebClient,
  series: LoadedSeries,
  srSeries: SeriesInfo[],
  getLoaded: (uid: string) => Promise<LoadedSeries>,
): Promise<{ restored: number; inPatientCoordinates: number }> {
  const frameOfReference = str(series.instances[0], Tag.FrameOfReferenceUID);
  const sopToImageId: Record<string, string> = {};
  for (const [imageId, inst] of series.metadataByImageId) {
    const frame = Number(/\/frames\/(\d+)$/.exec(imageId)?.[1] ?? 1);
    sopToImageId[`${str(inst, Tag.SOPInstanceUID)}:${frame}`] = imageId;
  }
  let n = 0;
  let in3d = 0;
  for (const { sop, dataset } of await loadReports(client, srSeries, getLoaded)) {
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
      for (const [i, m] of measurements.entries()) {
        const a = m.annotation;
        const meta = a?.metadata;
        if (!meta) continue;
        const imageId = meta.referencedImageId;
        if (imageId && !series.metadataByImageId.has(imageId)) continue;
        if (!imageId) {
          // Patient coordinates: once, for the first series shown in their Frame of Reference.
          const once = `${sop}|3d|${meta.toolName}|${i}`;
          if (meta.FrameOfReferenceUID !== frameOfReference || restored.has(once)) continue;
          restored.add(once);
          in3d++;
        }
        a.invalidated = true; // recompute statistics (mean, SD, area) from the pixels
        tools.annotation.state.addAnnotation(a, meta.FrameOfReferenceUID ?? '');
        n++;
      }
    }
  }
  return { restored: n, inPatientCoordinates: in3d };
}
