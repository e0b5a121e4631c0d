// AI results in the viewer (loaded on demand): SEG labelmap overlays, parametric-map heatmaps,
// finding boxes / points, and the findings sidebar with its overlay controls. The viewer
// (aiLoader.ts) calls initAi() once and onViewportShown() after a stack or MPR viewport got images.
import { type DicomJsonDataset, Tag, str } from '../../dicomweb';
import type { LoadedSeries } from '../series';
import { hook } from '../testHooks';
import { aiState, longestTask, observeLongTasks, watchFrames } from './aiState';
import { type AiHost, ai, error } from './context';
import { AI_NOTICE, type Finding } from './findingsPanel';
import { loadFindings } from './findingsView';
import { type Heatmap, parseParametricMap } from './heatmap';
import { aiObjectsFor } from './objects';
import { ensureOverlayCanvas, redraw, redrawAll } from './overlayCanvas';
import { mapLabel, renderOverlayControls, sortedChoices } from './overlayControls';
import { followRunning, runPanel } from './runPanel';
import { type AiSegmentation, createSegmentation, showInViewport, warmSegWorker } from './segmentation';
import './ai.css';

export type { AiHost, AiSlot } from './context';

/** The findings as the panel shows them (with the reader's accept / reject), for sign-off. */
export async function currentFindings(): Promise<Finding[]> {
  await ai.findingsLoaded;
  return ai.findings;
}

export function initAi(h: AiHost): void {
  ai.host = h;
  ai.pickMap = (sop) => void selectMap(sop);
  hook.ai = aiState;
  observeLongTasks();
  warmSegWorker();
  const panel = document.createElement('aside');
  panel.id = 'ai-panel';
  panel.className = 'ai-panel';
  panel.setAttribute('aria-label', 'AI findings');
  const h2 = document.createElement('h2');
  h2.textContent = 'AI findings';
  const notice = document.createElement('div');
  notice.className = 'ai-notice';
  notice.textContent = AI_NOTICE;
  ai.findingsList.className = 'findings';
  const h3 = document.createElement('h3');
  h3.textContent = 'Overlays';
  ai.overlaysList.className = 'overlays';
  panel.append(h2, notice, runPanel(refreshResults), ai.findingsList, h3, ai.overlaysList);
  document.querySelector('.workspace')?.append(panel);
  ai.findingsLoaded = loadFindings();
  void followRunning();
}

/** New result series, findings and overlays after jobs ended, without a reload. */
async function refreshResults(): Promise<void> {
  await ai.host.refreshSeries();
  ai.findingsLoaded = loadFindings();
  await ai.findingsLoaded;
  for (const slot of ai.host.slots()) if (slot.series) await onViewportShown(slot.id);
}

function getSeg(series: LoadedSeries, inst: DicomJsonDataset, source: LoadedSeries): Promise<AiSegmentation | undefined> {
  const sop = str(inst, Tag.SOPInstanceUID);
  const key = `${sop}|${source.seriesUID}`;
  let p = ai.segs.get(key);
  if (!p) {
    p = (async () => {
      const t0 = performance.now();
      ai.segLoadStart ??= t0;
      const part10 = await ai.host.client.retrieveInstance(series.studyUID, series.seriesUID, sop);
      const seg = await createSegmentation(
        part10,
        source.imageIds,
        {
          sop,
          seriesUID: series.seriesUID,
          sourceSeriesUID: source.seriesUID,
          label: series.description || str(inst, '00620002') || 'Segmentation',
        },
        (st) => aiState.segDecode.push(st),
      );
      ai.segRegisteredAt = performance.now();
      aiState.segLoadMs.push(Math.round(ai.segRegisteredAt - t0));
      renderOverlayControls();
      return seg;
    })().catch((err) => {
      error('segmentation', err);
      return undefined;
    });
    ai.segs.set(key, p);
  }
  return p;
}

function getHeatmap(series: LoadedSeries, inst: DicomJsonDataset): Promise<Heatmap | undefined> {
  const sop = str(inst, Tag.SOPInstanceUID);
  let p = ai.heatmaps.get(sop);
  if (!p) {
    p = (async () => {
      const part10 = await ai.host.client.retrieveInstance(series.studyUID, series.seriesUID, sop);
      const h = parseParametricMap(part10, { sop, seriesUID: series.seriesUID, label: series.description || 'Parametric map' });
      aiState.heatmaps += 1;
      renderOverlayControls();
      return h;
    })().catch((err) => {
      error('parametric map', err);
      return undefined;
    });
    ai.heatmaps.set(sop, p);
  }
  return p;
}

/** Load (once) the map to draw: the chosen one, else the first offered. */
async function loadActiveMap(): Promise<Heatmap | undefined> {
  if (!ai.activeMap || !ai.mapChoices.has(ai.activeMap)) {
    const firstChoice = sortedChoices()[0];
    if (!firstChoice) return undefined;
    ai.activeMap = firstChoice.sop;
  }
  const c = ai.mapChoices.get(ai.activeMap)!;
  const previous = ai.loadedHeatmaps.find((x) => x.sop === aiState.heatmapShown);
  const h = await getHeatmap(c.series, c.inst);
  if (h && !ai.loadedHeatmaps.includes(h)) ai.loadedHeatmaps.push(h);
  // The reader's display settings carry over to the next map.
  if (h && previous && previous !== h) Object.assign(h, { visible: previous.visible, opacity: previous.opacity });
  aiState.heatmapShown = h?.sop ?? '';
  aiState.heatmapChoices = sortedChoices().map((x) => ({ sop: x.sop, label: mapLabel(x) }));
  return h;
}

/** Draw the map `sop` (a finding's, or picked in the overlay panel) instead of the current one. */
async function selectMap(sop: string): Promise<void> {
  if (sop === ai.activeMap && aiState.heatmapShown === sop) return;
  ai.activeMap = sop;
  if (!ai.mapChoices.has(sop)) return; // offered later, with its series: loadActiveMap takes it then
  aiState.busy += 1;
  try {
    await loadActiveMap();
    renderOverlayControls();
    redrawAll();
  } finally {
    aiState.busy -= 1;
  }
}

/** Called after a viewport shows `slot.series` (stack) or its volume (MPR). */
export async function onViewportShown(slotId: string): Promise<void> {
  const slot = ai.host.slots().find((s) => s.id === slotId);
  const source = slot?.series;
  if (!slot || !source || source.notImage) return;
  ensureOverlayCanvas(slot);
  aiState.busy += 1;
  watchFrames();
  try {
    for (const o of await aiObjectsFor(source)) {
      if (o.kind === 'seg') {
        const seg = await getSeg(o.series, o.inst, source);
        if (!seg || !ai.host.slots().includes(slot)) continue;
        if (!ai.loadedSegs.includes(seg)) ai.loadedSegs.push(seg);
        await showInViewport(seg, slot.id);
      } else {
        const sop = str(o.inst, Tag.SOPInstanceUID);
        if (!ai.mapChoices.has(sop)) ai.mapChoices.set(sop, { sop, series: o.series, inst: o.inst, order: ai.mapChoices.size });
      }
    }
    await loadActiveMap();
    aiState.segmentations = ai.loadedSegs.map((s) => ({ id: s.segmentationId, segments: s.segments.length, viewports: [...s.viewports] }));
    renderOverlayControls();
    ai.host.engine().getViewport(slot.id)?.render();
    redraw(slot);
  } catch (err) {
    error('AI overlays', err);
  } finally {
    aiState.busy -= 1;
    const from = ai.segLoadStart;
    if (aiState.busy === 0 && from !== undefined) {
      ai.segLoadStart = undefined;
      // From the SEG request to its labelmap drawn; long-task entries arrive after the task.
      const registered = ai.segRegisteredAt;
      setTimeout(() => {
        const now = performance.now();
        aiState.segLongestTaskSplit.push({ decode: longestTask(from, registered), draw: longestTask(registered, now) });
        aiState.segLongestTaskMs.push(longestTask(from, now));
      }, 300);
    }
  }
}
