// What a viewport shows: a series as a stack (with its saved measurements restored), or the
// volume of one series in the three MPR viewports; the AI overlays follow each.
import { type Enums, type StackViewport, setVolumesForViewports, volumeLoader } from '@cornerstonejs/core';
import { ToolName } from './cornerstone';
import { dropPreview } from './preview';
import { noteFirstSeries } from './progress';
import type { LoadedSeries } from './series';
import { setActive } from './slot';
import { type Slot, state } from './state';
import { describeError, toast } from './status';
import { getLoaded, seriesHolding } from './studySeries';
import { hook, mark, reportError } from './testHooks';
import { setPrimaryTool, toolsNow } from './toolBinding';
import { showMessage, updateOverlay } from './viewportText';

/** Tell the AI module (when loaded) that `slot` shows images now: its overlays follow. */
export function aiViewportShown(slot: Slot): void {
  void state.ai?.then((m) => m.onViewportShown(slot.id)).catch((err) => reportError(`AI overlays: ${describeError(err)}`));
}

export async function showSeries(slot: Slot, seriesUID: string): Promise<void> {
  showMessage(slot, 'Loading…');
  let series: LoadedSeries;
  try {
    series = await getLoaded(seriesUID);
    mark('metadata');
  } catch (err) {
    dropPreview();
    showMessage(slot, `Could not load the series: ${(err as Error).message}`, true);
    reportError(String(err));
    return;
  }
  if (!state.slots.includes(slot)) return; // the layout changed meanwhile
  slot.series = series;
  setActive(state.active);
  const vp = state.engine.getViewport(slot.id) as StackViewport | undefined;
  if (!vp) return;
  if (series.notImage || !series.imageIds.length) {
    if (slot === state.slots[0]) dropPreview();
    showMessage(slot, series.notImage ?? 'This series has no image to display.');
    updateOverlay(slot);
    return;
  }
  noteFirstSeries(series);
  slot.voi = undefined; // a new series starts with its own window
  try {
    await vp.setStack(series.imageIds, 0);
    showMessage(slot, '');
    vp.render();
  } catch (err) {
    dropPreview();
    showMessage(slot, `Could not display this series: ${describeError(err)}`, true);
    reportError(describeError(err));
    return;
  }
  slot.scroll.max = String(series.imageIds.length - 1);
  slot.scroll.value = '0';
  slot.scroll.hidden = series.imageIds.length < 2;
  // Without tools yet: bindTools starts the prefetch once the first image is drawn.
  if (state.tools) state.tools.tools.utilities.stackPrefetch.enable(slot.csEl);
  updateOverlay(slot);
  aiViewportShown(slot);
  restoreMeasurements(slot, series);
}

/** The study's saved measurements (SR TID 1500) on the images of `series`, if it has any. */
function restoreMeasurements(slot: Slot, series: LoadedSeries): void {
  void seriesHolding('sr')
    .then(async (reports) => (reports.length ? (await import('./measurements')).loadMeasurements(state.client, series, reports, getLoaded) : undefined))
    .then((found) => {
      if (!found) return;
      const { restored: n, inPatientCoordinates: mpr } = found;
      hook.restoredMeasurements += n;
      if (n) {
        void toolsNow().then((t) => t.tools.utilities.triggerAnnotationRenderForViewportIds([slot.id]));
        const where = mpr ? ` (${mpr} drawn in MPR: shown in the MPR view they were drawn in, M)` : '';
        toast(`${n} saved measurement${n > 1 ? 's' : ''} restored${where}`);
      }
    })
    .catch((err) => reportError(`restoring measurements: ${describeError(err)}`));
}

export async function showVolume(series: LoadedSeries, orientations: Enums.OrientationAxis[]): Promise<void> {
  state.slots.forEach((s, i) => {
    s.series = series;
    s.orientation = orientations[i];
    showMessage(s, 'Loading volume…');
  });
  try {
    const volumeId = `cornerstoneStreamingImageVolume:${series.seriesUID}`;
    const volume = await volumeLoader.createAndCacheVolume(volumeId, { imageIds: series.imageIds });
    (volume as unknown as { load: () => void }).load();
    await setVolumesForViewports(state.engine, [{ volumeId }], state.slots.map((s) => s.id));
    for (const s of state.slots) {
      showMessage(s, '');
      s.scroll.hidden = true;
    }
    state.engine.renderViewports(state.slots.map((s) => s.id));
    for (const s of state.slots) aiViewportShown(s);
    await toolsNow();
    setPrimaryTool(ToolName.Crosshairs);
  } catch (err) {
    for (const s of state.slots) showMessage(s, `MPR failed: ${describeError(err)}`, true);
    reportError(describeError(err));
  }
}
