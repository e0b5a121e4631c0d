// The open studies' series: the list (QIDO-RS) and each series' metadata (WADO-RS), asked for once.
import { type LoadedSeries, type SeriesInfo, loadSeries, seriesInfo } from './series';
import { type DerivedSeries, findDerivedSeries } from './sopClasses';
import { state } from './state';

// Modalities listed after the images (they hold no image to show).
const NOT_IMAGES = ['SR', 'SEG', 'PR', 'KO', 'RTSTRUCT', 'DOC'];

/** Re-read the studies' series into `state.seriesList`: images first (by series number), then
 * SR / SEG / other objects. */
export async function readSeriesList(): Promise<void> {
  const all: SeriesInfo[] = [];
  for (const uid of state.studyUIDs) {
    const found = await state.client.searchSeries(uid);
    all.push(...found.map((ds) => seriesInfo(uid, ds)));
  }
  const rank = (s: SeriesInfo) => (NOT_IMAGES.includes(s.modality) ? 1 : 0);
  all.sort((a, b) => rank(a) - rank(b) || (a.number ?? 0) - (b.number ?? 0));
  state.seriesList.splice(0, state.seriesList.length, ...all);
  state.derived = undefined;
}

/** The series that hold segmentations, parametric maps or structured reports (by SOP class). */
export function derivedSeries(): Promise<DerivedSeries> {
  state.derived ??= findDerivedSeries(state.client, state.studyUIDs);
  return state.derived;
}

/** The series of the list holding objects of `kind`. */
export async function seriesHolding(kind: 'seg' | 'pmap' | 'sr'): Promise<SeriesInfo[]> {
  const derived = await derivedSeries();
  return state.seriesList.filter((s) => derived.get(s.seriesUID)?.has(kind));
}

/** A series' metadata, instances sorted, imageIds made (asked for once per series). */
export function getLoaded(seriesUID: string): Promise<LoadedSeries> {
  let p = state.loadedSeries.get(seriesUID);
  if (!p) {
    const info = state.seriesList.find((s) => s.seriesUID === seriesUID);
    if (!info) return Promise.reject(new Error(`series ${seriesUID} is not in this study`));
    p = loadSeries(state.client, info);
    state.loadedSeries.set(seriesUID, p);
  }
  return p;
}
