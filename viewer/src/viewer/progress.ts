// The way to the first image and the first series' loading: the first frame asked for before the
// rendering engine exists, the first image drawn (the preview goes, the rest of the series and
// the tools follow), images loaded counted for the status line and the test hook.
import { Enums, cache, eventTarget, imageLoadPoolManager, imageLoader } from '@cornerstonejs/core';
import { Tag, str } from '../dicomweb';
import { decodeOnServer } from './cornerstone';
import { dropPreview, previewReady, useFrameOfPreview } from './preview';
import type { LoadedSeries } from './series';
import { type Slot, state } from './state';
import { describeError, setStatus } from './status';
import { getLoaded } from './studySeries';
import { hook, reportError } from './testHooks';
import { toolsNow } from './toolBinding';
import { showMessage } from './viewportText';

/** Count the first series' images as they load; show load errors in their viewport. */
export function watchLoading(): void {
  const { ids: firstSeriesIds, loaded: loadedIds } = state.firstSeries;
  eventTarget.addEventListener(Enums.Events.IMAGE_LOADED, ((evt: CustomEvent<{ image: { imageId: string } }>) => {
    const id = evt.detail.image.imageId;
    if (!firstSeriesIds.has(id) || loadedIds.has(id)) return;
    hook.marks.firstFrame ??= performance.now();
    loadedIds.add(id);
    hook.loadedImages = loadedIds.size;
    setStatus(loadedIds.size < firstSeriesIds.size ? `Loaded ${loadedIds.size} / ${firstSeriesIds.size}` : '');
    if (loadedIds.size === firstSeriesIds.size && hook.allLoadedMs === undefined) hook.allLoadedMs = performance.now();
  }) as EventListener);
  eventTarget.addEventListener(Enums.Events.IMAGE_LOAD_ERROR, ((evt: CustomEvent<{ imageId: string; error: unknown }>) => {
    const { imageId, error } = evt.detail;
    reportError(`${imageId}: ${describeError(error)}`);
    const slot = state.slots.find((s) => s.series?.imageIds.includes(imageId));
    if (slot) showMessage(slot, `This image could not be loaded or decoded: ${describeError(error)}`, true);
    if (slot === state.slots[0]) dropPreview();
  }) as EventListener);
}

/** Note the series whose loading the hook reports (`loadedImages`, `allLoadedMs`). */
export function noteFirstSeries(series: LoadedSeries): void {
  const { ids } = state.firstSeries;
  if (ids.size) return;
  for (const id of series.imageIds) ids.add(id);
  hook.expectedImages = series.imageIds.length;
}

/** Load the first viewport's first image into the cache now (`setStack` finds it there). */
export async function requestFirstFrame(): Promise<void> {
  const first = state.seriesList[0];
  if (!first) return;
  const series = await getLoaded(first.seriesUID);
  if (series.notImage || !series.imageIds.length) return;
  noteFirstSeries(series);
  // Greyscale only: the server's decoded colour frames may be RGB where the metadata says YBR.
  if (/^MONOCHROME/.test(str(series.instances[0], Tag.PhotometricInterpretation)) && state.params.get('firstFrame') !== 'stored') {
    decodeOnServer(series.imageIds[0]);
  }
  hook.marks.frameRequested = performance.now();
  await useFrameOfPreview(series.imageIds[0]);
  // A failure is reported by IMAGE_LOAD_ERROR and met again by setStack.
  imageLoader.loadAndCacheImage(series.imageIds[0]).catch(() => undefined);
}

/** Load (and cache) `imageIds` at prefetch priority; the tools' stackPrefetch finds them cached. */
function prefetch(imageIds: string[]): void {
  for (const imageId of imageIds) {
    if (cache.getImageLoadObject(imageId)) continue;
    imageLoadPoolManager.addRequest(
      () => imageLoader.loadAndCacheImage(imageId).then(() => undefined),
      Enums.RequestType.Prefetch,
      { imageId },
    );
  }
}

/** A viewport drew an image: the first time, the preview goes and the rest follows. */
export function imageDrawn(slot: Slot): void {
  if (hook.marks.firstImage !== undefined || !slot.series || slot.series.notImage) return;
  hook.marks.firstImage = performance.now();
  // Drawn by Cornerstone in this animation frame: the preview goes in the same one.
  dropPreview();
  // The hook's firstImageMs: on screen and interactive (tools bound).
  if (state.tools) {
    hook.firstImageMs = hook.marks.firstImage;
    previewReady();
  }
  // The first image is on screen: now the rest of the series (core's request pool, so it
  // does not wait for the tools), then the tools and the AI panel.
  else {
    prefetch(slot.series.imageIds);
    setTimeout(() => void toolsNow(), 0);
  }
}
