// What the AI module loaded and drew, and how long the page went without painting meanwhile:
// the AI part of the test hook (`window.__radsight.ai`, testHooks.ts).
import type { RunState } from './runAi';
import type { SegDecodeStats } from './segmentation';

/** What was loaded and drawn (`window.__radsight.ai`, testHooks.ts); tests assert on pixels and the DOM. */
export interface AiState {
  findings: number;
  findingsApi: boolean;
  segmentations: { id: string; segments: number; viewports: string[] }[];
  heatmaps: number;
  /** Parametric maps offered for the series shown (one per segmentation label), and the one drawn. */
  heatmapChoices: { sop: string; label: string }[];
  heatmapShown: string;
  drawn: Record<string, number>;
  busy: number;
  /** Per SEG: ms from the request to the labelmap registered. */
  segLoadMs: number[];
  /** The longest gap between animation frames while AI overlays loaded (a frozen page shows here). */
  maxFrameGapMs: number;
  /** Per overlay load with a SEG: the longest main-thread task (PerformanceObserver 'longtask')
   * from the SEG's request to its labelmap drawn (0: none over 50 ms). */
  segLongestTaskMs: number[];
  /** The same split: request -> labelmap registered (fetch, parse, unpack, labelmap images), and
   * registered -> drawn (segmentation state, first labelmap render). */
  segLongestTaskSplit: { decode: number; draw: number }[];
  /** Per SEG: worker or adapter, and the time each part took. */
  segDecode: SegDecodeStats[];
  /** "Run AI": the status line, the jobs followed, runs finished. */
  run: RunState;
  /** Main-thread tasks over 50 ms (PerformanceObserver 'longtask') since the AI module loaded. */
  longTasks: { start: number; end: number }[];
}

export const aiState: AiState = {
  findings: 0,
  findingsApi: false,
  segmentations: [],
  heatmaps: 0,
  heatmapChoices: [],
  heatmapShown: '',
  drawn: {},
  busy: 0,
  segLoadMs: [],
  maxFrameGapMs: 0,
  segLongestTaskMs: [],
  segLongestTaskSplit: [],
  segDecode: [],
  run: { message: '', jobs: [], finished: 0 },
  longTasks: [],
};

const frames = { watching: false };

/** While overlays load (`busy`), measure how long the page goes without painting. */
export function watchFrames(): void {
  if (frames.watching) return;
  frames.watching = true;
  let last = performance.now();
  const tick = (t: number) => {
    aiState.maxFrameGapMs = Math.max(aiState.maxFrameGapMs, t - last);
    last = t;
    if (aiState.busy > 0) requestAnimationFrame(tick);
    else frames.watching = false;
  };
  requestAnimationFrame(tick);
}

/** Keep the long tasks (> 50 ms on the main thread), to find the longest during each SEG load. */
export function observeLongTasks(): void {
  try {
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) aiState.longTasks.push({ start: Math.round(e.startTime), end: Math.round(e.startTime + e.duration) });
    }).observe({ type: 'longtask', buffered: true });
  } catch {
    /* no Long Tasks API (Firefox, Safari): the frame gap still says it */
  }
}

/** The longest task that overlapped `from`..`to` (ms since navigation start). */
export function longestTask(from: number, to: number): number {
  let max = 0;
  for (const t of aiState.longTasks) if (t.end > from && t.start < to) max = Math.max(max, t.end - t.start);
  return Math.round(max);
}
