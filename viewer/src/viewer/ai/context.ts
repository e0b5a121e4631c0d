// The AI module's runtime state: one object shared by its parts (objects, overlays, controls,
// findings, Run AI), and what it asks of the viewer (AiHost, given by initAi).
import type { RenderingEngine } from '@cornerstonejs/core';
import type { DicomJsonDataset, DicomWebClient } from '../../dicomweb';
import type { LoadedSeries, SeriesInfo } from '../series';
import type { DerivedSeries } from '../sopClasses';
import type { Finding } from './findingsPanel';
import type { Heatmap } from './heatmap';
import type { AiSegmentation } from './segmentation';

export interface AiSlot {
  id: string;
  el: HTMLElement;
  csEl: HTMLDivElement;
  series?: LoadedSeries;
  orientation?: unknown;
}

export interface AiHost {
  client: DicomWebClient;
  engine: () => RenderingEngine;
  studyUIDs: string[];
  seriesList: SeriesInfo[];
  getLoaded: (uid: string) => Promise<LoadedSeries>;
  /** The series holding segmentations, parametric maps or SRs, by SOP class (sopClasses.ts). */
  derivedSeries: () => Promise<DerivedSeries>;
  slots: () => AiSlot[];
  /** Show a series in the active viewport (back to a stack layout if needed). */
  showSeries: (seriesUID: string) => Promise<void>;
  /** Re-read the study's series (QIDO-RS) into `seriesList` and redraw the series panel. */
  refreshSeries: () => Promise<void>;
  errors: string[];
}

/** A parametric map that goes with the series shown; one of them is drawn at a time (a
 * segmentation has one map per label): the picked finding's, or the reader's choice. */
export interface MapChoice {
  sop: string;
  series: LoadedSeries;
  inst: DicomJsonDataset;
  order: number;
}

export interface AiContext {
  host: AiHost;
  /** SEGs asked for, by `SOP Instance UID|source series`. */
  segs: Map<string, Promise<AiSegmentation | undefined>>;
  /** Parametric maps asked for, by SOP Instance UID. */
  heatmaps: Map<string, Promise<Heatmap | undefined>>;
  loadedSegs: AiSegmentation[];
  loadedHeatmaps: Heatmap[];
  /** When the first SEG of the current overlay load was asked for (the long-task window's start). */
  segLoadStart?: number;
  segRegisteredAt: number;
  /** Parametric maps offered for the series shown, by SOP Instance UID. */
  mapChoices: Map<string, MapChoice>;
  /** The map to draw (its SOP Instance UID), once picked. */
  activeMap?: string;
  /** Draw map `sop` instead of the current one (index.ts selectMap). */
  pickMap: (sop: string) => void;
  findings: Finding[];
  findingsLoaded: Promise<void>;
  /** The sidebar's findings list and overlay controls. */
  findingsList: HTMLElement;
  overlaysList: HTMLElement;
}

export const ai: AiContext = {
  host: undefined as unknown as AiHost, // set by initAi before anything else runs
  segs: new Map(),
  heatmaps: new Map(),
  loadedSegs: [],
  loadedHeatmaps: [],
  segRegisteredAt: 0,
  mapChoices: new Map(),
  pickMap: () => undefined,
  findings: [],
  findingsLoaded: Promise.resolve(),
  findingsList: document.createElement('div'),
  overlaysList: document.createElement('div'),
};

export function error(what: string, err: unknown): void {
  const msg = `${what}: ${err instanceof Error ? err.message : String(err)}`;
  ai.host.errors.push(msg);
  console.warn(msg, err);
}
