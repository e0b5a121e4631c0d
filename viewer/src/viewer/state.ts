// The viewer page's runtime state: one object that the viewer's modules read and change, and the
// page elements they draw into. Light on purpose (types only from Cornerstone): the page's first
// script imports it through testHooks.ts.
import type { Enums, RenderingEngine, Types } from '@cornerstonejs/core';
import { type DicomJsonDataset, DicomWebClient } from '../dicomweb';
import type { LoadedSeries, SeriesInfo } from './series';
import type { DerivedSeries } from './sopClasses';

/** One viewport of the grid: its elements and what it shows. */
export interface Slot {
  id: string;
  el: HTMLDivElement;
  csEl: HTMLDivElement;
  ov: Record<'tl' | 'tr' | 'bl' | 'br', HTMLDivElement>;
  msg: HTMLDivElement;
  scroll: HTMLInputElement;
  series?: LoadedSeries;
  orientation?: Enums.OrientationAxis;
  /** The window drawn, as last set (see slot.ts keepDrawnWindow). */
  voi?: { lower: number; upper: number };
}

export interface Layout {
  rows: number;
  cols: number;
  mpr: boolean;
}

export type ToolsModule = typeof import('./toolsSetup');

/** What the viewer asks of the AI module (src/viewer/ai, loaded on demand). */
export interface AiOverlays {
  /** `slotId` shows images now: draw the AI objects that go with them. */
  onViewportShown(slotId: string): Promise<void>;
  /** The findings with the reader's accept / reject, for sign-off. */
  currentFindings(): Promise<{ id: number | string; status: 'pending' | 'accepted' | 'rejected'; label?: string }[]>;
}

export interface ViewerState {
  readonly params: URLSearchParams;
  /** The studies open: the URL's StudyInstanceUIDs (OHIF's form), or StudyInstanceUID. */
  readonly studyUIDs: string[];
  readonly client: DicomWebClient;
  /**
   * The engine of the viewports shown now (set by main.ts start() before any viewport exists).
   * With CPU-drawn stacks (`cpuStacks`) stack layouts use `cpuEngine` (no WebGL at all), while
   * MPR and stacks of a study with a DICOM SEG use `gpuEngine` (WebGL), built when first needed:
   * volume viewports need WebGL, and the tools draw SEG labelmaps on stacks as WebGL actors only.
   */
  engine: RenderingEngine;
  cpuEngine?: RenderingEngine;
  gpuEngine?: RenderingEngine;
  cpuStacks: boolean;
  /** The first study's QIDO-RS attributes (patient, date, description). */
  study?: DicomJsonDataset;
  /** The studies' series (QIDO-RS), images first; changed in place when re-read. */
  readonly seriesList: SeriesInfo[];
  /** The series holding segmentations, parametric maps or SRs (by SOP class), asked for once per series list. */
  derived?: Promise<DerivedSeries>;
  /** Series metadata (WADO-RS) asked for, by Series Instance UID. */
  readonly loadedSeries: Map<string, Promise<LoadedSeries>>;
  slots: Slot[];
  /** Index of the active viewport in `slots`. */
  active: number;
  layout: Layout;
  /** The last stack layout (MPR goes back to it). */
  stackLayout: Layout;
  /** The cine loop's interval, while it plays. */
  cineTimer?: number;
  /** The tools module, once imported (after the first image, or the first action needing it). */
  tools?: ToolsModule;
  toolsLoading?: Promise<ToolsModule>;
  /** The first series' imageIds (whose loading the status line counts), and those loaded. */
  readonly firstSeries: { ids: Set<string>; loaded: Set<string> };
  /** The AI module, once asked for (after the tools, or when the reading bar needs findings). */
  ai?: Promise<AiOverlays>;
  /** The load status as last set (the preview's notice may stand in its place). */
  statusText: string;
}

const params = new URLSearchParams(location.search);
const firstLayout: Layout = { rows: 1, cols: 1, mpr: false };

export const state: ViewerState = {
  params,
  studyUIDs: (params.get('StudyInstanceUIDs') ?? params.get('StudyInstanceUID') ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean),
  client: new DicomWebClient(),
  engine: undefined as unknown as RenderingEngine,
  cpuStacks: false,
  seriesList: [],
  loadedSeries: new Map(),
  slots: [],
  active: 0,
  layout: firstLayout,
  stackLayout: firstLayout,
  firstSeries: { ids: new Set(), loaded: new Set() },
  statusText: '',
};

/** The page's elements (viewer.html). */
export const dom = {
  grid: document.querySelector<HTMLElement>('#grid')!,
  seriesPanel: document.querySelector<HTMLElement>('#series-panel')!,
  toolbar: document.querySelector<HTMLElement>('#toolbar')!,
  loadStatus: document.querySelector<HTMLElement>('#load-status')!,
};

export function activeSlot(): Slot | undefined {
  return state.slots[state.active];
}

export function activeViewport(): Types.IViewport | undefined {
  const s = activeSlot();
  return s && state.engine ? state.engine.getViewport(s.id) : undefined;
}
