// Which AI objects go with a series shown: segmentations and parametric maps (by SOP Class UID,
// sopClasses.ts) that reference it (ReferencedSeriesSequence) or share its Frame of Reference.
import { type DicomJsonDataset, Tag, str } from '../../dicomweb';
import type { LoadedSeries } from '../series';
import { derivedKind } from '../sopClasses';
import { ai } from './context';

export interface AiObject {
  kind: 'seg' | 'pmap';
  series: LoadedSeries;
  inst: DicomJsonDataset;
}

const refSeries = (ds: DicomJsonDataset | undefined): string =>
  str((ds?.['00081115']?.Value?.[0] as DicomJsonDataset | undefined) ?? {}, Tag.SeriesInstanceUID);
const frameOfRef = (ds: DicomJsonDataset | undefined): string => str(ds, Tag.FrameOfReferenceUID);

/** SEG and parametric-map instances that go with `source`. */
export async function aiObjectsFor(source: LoadedSeries): Promise<AiObject[]> {
  const out: AiObject[] = [];
  const sourceFor = frameOfRef(source.instances[0]);
  const derived = await ai.host.derivedSeries();
  const holds = (uid: string) => derived.get(uid)?.has('seg') || derived.get(uid)?.has('pmap');
  for (const c of ai.host.seriesList.filter((s) => s.seriesUID !== source.seriesUID && holds(s.seriesUID))) {
    let series: LoadedSeries;
    try {
      series = await ai.host.getLoaded(c.seriesUID);
    } catch {
      continue;
    }
    for (const inst of series.instances) {
      const kind = derivedKind(inst);
      if (kind !== 'seg' && kind !== 'pmap') continue;
      if (refSeries(inst) === source.seriesUID || (!!sourceFor && frameOfRef(inst) === sourceFor)) out.push({ kind, series, inst });
    }
  }
  return out;
}
