// `window.__radsight`: the one object the browser tests (tests/test_viewer_*.py,
// tests/test_worklist_browser.py) and the benchmark (bench/viewer.py) read. It says what was
// drawn and when (milestones, load counts, errors) so that they know when to look; they assert
// on pixels and the DOM. This module alone puts viewer state on `window`; the viewer's modules
// report to `hook` (marks, counts, errors) and it reads the rest from state.ts on demand.
// The page's first script imports it, so the object is there (empty, `loading`) before the
// Cornerstone part has run.
import type { StackViewport } from '@cornerstonejs/core';
import type { AiState } from './ai/aiState';
import type { ReadingState } from './reading';
import type { SeriesInfo } from './series';
import { type Layout, state } from './state';

export interface ViewportView {
  id: string;
  seriesUID?: string;
  orientation?: string;
  /** The viewport's message ('' when none shows): "Loading…", an error, "not an image". */
  message: string | null;
  index: number;
  count: number;
  imageId?: string;
  voi?: { lower: number; upper: number };
  invert: boolean;
  zoom: number;
}

export interface ViewerHook {
  /** True until the Cornerstone part (main.ts) has started. */
  loading: boolean;
  readonly studies: string[];
  readonly series: SeriesInfo[];
  readonly layout: Layout;
  /** How the viewports shown are drawn: 'cpu' (canvas 2D, stacks only) or 'gpu' (WebGL). */
  readonly renderer: 'cpu' | 'gpu';
  /** The first image drawn and interactive (tools bound), ms since navigation start. */
  firstImageMs?: number;
  /** Every image of the first series loaded, ms since navigation start. */
  allLoadedMs?: number;
  loadedImages: number;
  expectedImages: number;
  errors: string[];
  savedReports: number;
  restoredMeasurements: number;
  /** Milestones (ms since navigation start) on the way to the first image. */
  marks: Record<string, number>;
  viewports: () => ViewportView[];
  annotations: () => number;
  /** Each annotation's tool, world points (patient mm) and referenced image, if any. */
  annotationPoints: () => { tool: string; points: number[][]; imageId?: string }[];
  /** The reading workflow (claim / sign-off), when one study is open. */
  reading?: ReadingState;
  /** AI results loaded and drawn (src/viewer/ai). */
  ai?: AiState;
}

function viewports(): ViewportView[] {
  return state.slots.map((s) => {
    const vp = state.engine?.getViewport(s.id) as StackViewport | undefined;
    const props = vp?.getProperties?.() ?? {};
    return {
      id: s.id,
      seriesUID: s.series?.seriesUID,
      orientation: s.orientation,
      message: s.msg.hidden ? '' : s.msg.textContent,
      index: vp?.getSliceIndex?.() ?? 0,
      count: vp?.getNumberOfSlices?.() ?? 0,
      imageId: vp?.getCurrentImageId?.(),
      voi: props.voiRange,
      invert: props.invert ?? false,
      zoom: vp?.getZoom?.() ?? 1,
    };
  });
}

function annotations(): ReturnType<ViewerHook['annotationPoints']> {
  return (state.tools?.tools.annotation.state.getAllAnnotations() ?? []).map((a) => ({
    tool: a.metadata?.toolName ?? '',
    points: (a.data.handles?.points ?? []).map((p) => [...p]),
    imageId: a.metadata?.referencedImageId,
  }));
}

export const hook: ViewerHook = {
  loading: true,
  get studies() {
    return state.studyUIDs;
  },
  get series() {
    return state.seriesList;
  },
  get layout() {
    return state.layout;
  },
  get renderer() {
    return state.engine && state.engine === state.cpuEngine ? 'cpu' : 'gpu';
  },
  loadedImages: 0,
  expectedImages: 0,
  errors: [],
  savedReports: 0,
  restoredMeasurements: 0,
  marks: {},
  viewports,
  annotations: () => state.tools?.tools.annotation.state.getAllAnnotations().length ?? 0,
  annotationPoints: annotations,
};

(window as unknown as { __radsight: ViewerHook }).__radsight = hook;

/** Note a milestone now (the first time only). */
export function mark(name: string): void {
  hook.marks[name] ??= performance.now();
}

export function reportError(message: string): void {
  hook.errors.push(message);
}
