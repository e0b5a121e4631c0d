// The viewport grid: 1x1, 1x2, 2x2 stacks or the three MPR views, each layout on the rendering
// engine it needs (CPU-drawn stacks where WebGL is software, WebGL for MPR and SEG labelmaps).
import { Enums, RenderingEngine, type Types } from '@cornerstonejs/core';
import { stopCine } from './cine';
import { useCpuRendering } from './cornerstone';
import { showSeries, showVolume } from './display';
import { adoptPreview } from './preview';
import type { LoadedSeries } from './series';
import { makeSlot, setActive } from './slot';
import { type Layout, dom, state } from './state';
import { bindTools, unbindViewport } from './toolBinding';
import { updateToolbar } from './toolbar';

export const MPR_LAYOUT: Layout = { rows: 1, cols: 3, mpr: true };
const ORIENTATIONS = [Enums.OrientationAxis.AXIAL, Enums.OrientationAxis.SAGITTAL, Enums.OrientationAxis.CORONAL];

/** A series dropped on viewport `i`: shown there (a stack layout again if MPR was shown). */
function dropSeries(i: number, seriesUID: string): void {
  if (state.layout.mpr) void applyLayout(state.stackLayout);
  void showSeries(state.slots[i] ?? state.slots[0], seriesUID);
}

/** Show `seriesUID` in the active viewport, back to the stack layout first if MPR is shown. */
export async function showInActive(seriesUID: string, wait = true): Promise<void> {
  if (state.layout.mpr) await applyLayout(state.stackLayout);
  const slot = state.slots[state.active];
  if (!slot) return;
  if (wait) await showSeries(slot, seriesUID);
  else void showSeries(slot, seriesUID);
}

export async function applyLayout(next: Layout, mprSeries?: LoadedSeries): Promise<void> {
  stopCine();
  const previous = state.slots.map((s) => s.series?.seriesUID).filter((u): u is string => !!u);
  for (const s of state.slots) {
    unbindViewport(s.id);
    if (state.engine.getViewport(s.id)) state.engine.disableElement(s.id);
  }
  const engine = engineFor(next.mpr);
  state.engine = engine;
  state.layout = next;
  if (!next.mpr) state.stackLayout = next;
  dom.grid.style.gridTemplateRows = `repeat(${next.rows}, 1fr)`;
  dom.grid.style.gridTemplateColumns = `repeat(${next.cols}, 1fr)`;
  const count = next.rows * next.cols;
  const slots = Array.from({ length: count }, (_, i) => makeSlot(i, dropSeries));
  state.slots = slots;
  dom.grid.replaceChildren(...slots.map((s) => s.el));
  if (slots[0]) adoptPreview(slots[0]);
  engine.setViewports(
    slots.map((s, i) => ({
      viewportId: s.id,
      element: s.csEl,
      type: next.mpr ? Enums.ViewportType.ORTHOGRAPHIC : Enums.ViewportType.STACK,
      defaultOptions: next.mpr ? { orientation: ORIENTATIONS[i], background: [0, 0, 0] as Types.Point3 } : { background: [0, 0, 0] as Types.Point3 },
    })),
  );
  bindTools();
  updateToolbar();
  setActive(Math.min(state.active, count - 1));
  if (next.mpr && mprSeries) {
    await showVolume(mprSeries, ORIENTATIONS);
    return;
  }
  // Keep what was shown; fill new viewports with the next series not yet shown.
  const queue = [...previous];
  for (const s of state.seriesList) if (!queue.includes(s.seriesUID)) queue.push(s.seriesUID);
  await Promise.all(slots.map((s, i) => (queue[i] ? showSeries(s, queue[i]) : Promise.resolve())));
}

/** The rendering engine for a layout; core's CPU switch set to match before its viewports are made. */
export function engineFor(mpr: boolean): RenderingEngine {
  if (!state.cpuStacks) return (state.gpuEngine ??= new RenderingEngine('radsight'));
  const cpu = !mpr && !hasSeg();
  useCpuRendering(cpu);
  if (cpu) return (state.cpuEngine ??= new RenderingEngine('radsight-cpu'));
  return (state.gpuEngine ??= new RenderingEngine('radsight'));
}

/** The study has a segmentation: its stacks are drawn through WebGL (labelmaps need it). */
export function hasSeg(): boolean {
  return state.seriesList.some((s) => s.modality === 'SEG');
}
