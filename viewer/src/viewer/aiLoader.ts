// The AI module (src/viewer/ai: SEG labelmaps, heatmaps, finding marks, findings panel), loaded
// on demand: after the first image (with the tools), or when the reading bar asks for findings.
import { type StackViewport, utilities } from '@cornerstonejs/core';
import { applyLayout, hasSeg, showInActive } from './layout';
import { refreshSeriesList } from './seriesPanel';
import { type AiOverlays, state } from './state';
import { derivedSeries, getLoaded } from './studySeries';
import { hook } from './testHooks';

export function loadAi(): Promise<AiOverlays> {
  state.ai ??= import('./ai').then((m) => {
    m.initAi({
      client: state.client,
      engine: () => state.engine,
      studyUIDs: state.studyUIDs,
      seriesList: state.seriesList,
      getLoaded,
      derivedSeries,
      slots: () => state.slots,
      showSeries: (uid) => showInActive(uid),
      refreshSeries: refreshSeriesForAi,
      errors: hook.errors,
    });
    for (const s of state.slots) if (s.series && state.engine.getViewport(s.id)) void m.onViewportShown(s.id);
    return m;
  });
  return state.ai;
}

/** After "Run AI" brought a SEG: stacks drawn on the CPU are shown again through WebGL, with the
 * reader's slice, window/level, inversion, zoom and pan kept. */
async function refreshSeriesForAi(): Promise<void> {
  await refreshSeriesList();
  if (state.layout.mpr || !state.cpuEngine || state.engine !== state.cpuEngine || !hasSeg()) return;
  const kept = state.slots.map((s) => {
    const vp = state.engine.getViewport(s.id) as StackViewport | undefined;
    if (!vp) return undefined;
    const { voiRange, invert } = vp.getProperties();
    return { index: vp.getSliceIndex(), voiRange, invert, zoom: vp.getZoom(), pan: vp.getPan() };
  });
  await applyLayout(state.layout);
  await Promise.all(
    state.slots.map(async (s, i) => {
      const k = kept[i];
      const vp = state.engine.getViewport(s.id) as StackViewport | undefined;
      if (!k || !vp) return;
      if (k.index) await utilities.jumpToSlice(s.csEl, { imageIndex: k.index });
      vp.setProperties({ voiRange: k.voiRange, invert: k.invert });
      vp.setZoom(k.zoom);
      vp.setPan(k.pan);
      vp.render();
    }),
  );
}
