// AI results in the viewer (loaded on demand): SEG labelmap overlays, parametric-map heatmaps,
// finding boxes / points, and the findings sidebar with its overlay controls.
// main.ts calls initAi() once and onViewportShown() after a stack or MPR viewport got images.
import { Enums, type RenderingEngine, type StackViewport, type Types, utilities } from '@cornerstonejs/core';
import { type DicomJsonDataset, type DicomWebClient, Tag, str } from '../../dicomweb';
import { fetchModel } from '../../worklistApi';
import { closablePanel } from '../panel';
import type { LoadedSeries, SeriesInfo } from '../series';
import { AI_NOTICE, type Finding, decide, fetchFindings, fmtValue, renderFinding } from './findingsPanel';
import { type Heatmap, drawHeatmap, parseParametricMap } from './heatmap';
import { RunError, followJobs, isActive, jobText, requestRun, studyJobs, type JobView } from './runAi';
import { type AiSegmentation, applyStyle, createSegmentation, showInViewport, warmSegWorker } from './segmentation';
import { hook } from '../testHooks';
import { aiState } from './aiState';
import './ai.css';

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
  slots: () => AiSlot[];
  /** Show a series in the active viewport (back to a stack layout if needed). */
  showSeries: (seriesUID: string) => Promise<void>;
  /** Re-read the study's series (QIDO-RS) into `seriesList` and redraw the series panel. */
  refreshSeries: () => Promise<void>;
  errors: string[];
}

const PMAP_CLASS = '1.2.840.10008.5.1.4.1.1.30';
const AI_RE = /AI generated/i;

let host!: AiHost;

// While overlays load, measure how long the page goes without painting.
let watching = false;
function watchFrames(): void {
  if (watching) return;
  watching = true;
  let last = performance.now();
  const tick = (t: number) => {
    aiState.maxFrameGapMs = Math.max(aiState.maxFrameGapMs, t - last);
    last = t;
    if (aiState.busy > 0) requestAnimationFrame(tick);
    else watching = false;
  };
  requestAnimationFrame(tick);
}
// Long tasks (> 50 ms on the main thread), kept to find the longest one during each SEG load.
const longTasks = aiState.longTasks;
function observeLongTasks(): void {
  try {
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) longTasks.push({ start: Math.round(e.startTime), end: Math.round(e.startTime + e.duration) });
    }).observe({ type: 'longtask', buffered: true });
  } catch {
    /* no Long Tasks API (Firefox, Safari): the frame gap still says it */
  }
}
function longestTask(from: number, to: number): number {
  let max = 0;
  for (const t of longTasks) if (t.end > from && t.start < to) max = Math.max(max, t.end - t.start);
  return Math.round(max);
}

const segs = new Map<string, Promise<AiSegmentation | undefined>>();
/** When the first SEG of the current overlay load was asked for (the long-task window's start). */
let segLoadStart: number | undefined;
let segRegisteredAt = 0;
const heatmaps = new Map<string, Promise<Heatmap | undefined>>();
/** Parametric maps that go with the series shown, by SOP Instance UID; one of them is drawn at a
 * time (a segmentation has one map per label): the picked finding's, or the reader's choice. */
type MapChoice = { sop: string; series: LoadedSeries; inst: DicomJsonDataset; order: number };
const mapChoices = new Map<string, MapChoice>();
let activeMap: string | undefined;
let findings: Finding[] = [];
let findingsLoaded: Promise<void> = Promise.resolve();
let findingsList: HTMLElement;
let overlaysList: HTMLElement;

function error(what: string, err: unknown): void {
  const msg = `${what}: ${err instanceof Error ? err.message : String(err)}`;
  host.errors.push(msg);
  console.warn(msg, err);
}

/** The findings as the panel shows them (with the reader's accept / reject), for sign-off. */
export async function currentFindings(): Promise<Finding[]> {
  await findingsLoaded;
  return findings;
}

export function isAiSeries(s: SeriesInfo): boolean {
  return AI_RE.test(s.description);
}

export function initAi(h: AiHost): void {
  host = h;
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
  findingsList = document.createElement('div');
  findingsList.className = 'findings';
  const run = document.createElement('div');
  run.className = 'ai-run';
  runButton = document.createElement('button');
  runButton.type = 'button';
  runButton.id = 'ai-run';
  runButton.textContent = 'Run AI';
  runButton.title = "Run the installed models that match this study's series (POST /api/studies/{uid}/ai/run)";
  runButton.addEventListener('click', () => void runAi());
  runStatus = document.createElement('div');
  runStatus.className = 'ai-run-status';
  runStatus.setAttribute('role', 'status');
  jobsList = document.createElement('ul');
  jobsList.className = 'ai-jobs';
  run.append(runButton, runStatus, jobsList);
  const h3 = document.createElement('h3');
  h3.textContent = 'Overlays';
  overlaysList = document.createElement('div');
  overlaysList.className = 'overlays';
  panel.append(h2, notice, run, findingsList, h3, overlaysList);
  document.querySelector('.workspace')?.append(panel);
  findingsLoaded = loadFindings();
  void followRunning();
}

// ---------------------------------------------------------------- Run AI

let runButton: HTMLButtonElement;
let runStatus: HTMLElement;
let jobsList: HTMLElement;
let following = false;

function setRunMessage(text: string, kind: '' | 'error' | 'done' = ''): void {
  aiState.run.message = text;
  runStatus.textContent = text;
  runStatus.dataset.kind = kind;
}

function showJobs(jobs: JobView[]): void {
  aiState.run.jobs = jobs.map((j) => ({ id: j.id, model: j.model, state: j.state, error: j.error }));
  jobsList.replaceChildren(
    ...jobs.map((j) => {
      const li = document.createElement('li');
      li.className = `ai-job state-${j.state}`;
      li.dataset.jobId = String(j.id);
      li.dataset.state = j.state;
      li.textContent = jobText(j);
      return li;
    }),
  );
}

/** Follow `ids` (per study) to the end, then re-read series, findings and overlays. */
async function follow(byStudy: Map<string, number[]>): Promise<void> {
  following = true;
  runButton.disabled = true;
  try {
    const shown = new Map<string, JobView[]>();
    const update = () => showJobs([...shown.values()].flat());
    const ended = await Promise.all(
      [...byStudy].map(([uid, ids]) =>
        followJobs(uid, ids, (jobs) => {
          shown.set(uid, jobs);
          update();
          const n = [...shown.values()].flat();
          const running = n.filter((j) => j.state === 'running').length;
          setRunMessage(`AI running: ${running} running, ${n.filter((j) => j.state === 'queued').length} queued`);
        }),
      ),
    );
    const all = ended.flat();
    const failed = all.filter((j) => j.state === 'failed').length;
    setRunMessage('Loading the results…');
    await refreshResults();
    aiState.run.finished += 1;
    setRunMessage(
      failed ? `AI finished: ${all.length - failed} done, ${failed} failed` : `AI finished: ${all.length} job${all.length === 1 ? '' : 's'} done`,
      failed ? 'error' : 'done',
    );
  } catch (err) {
    setRunMessage(`Following the AI jobs failed: ${err instanceof Error ? err.message : String(err)}`, 'error');
    error('AI jobs', err);
  } finally {
    following = false;
    runButton.disabled = false;
  }
}

async function runAi(): Promise<void> {
  if (following) return;
  runButton.disabled = true;
  setRunMessage('Queuing…');
  const byStudy = new Map<string, number[]>();
  const refused: string[] = [];
  try {
    for (const uid of host.studyUIDs) {
      try {
        const jobs = await requestRun(uid);
        byStudy.set(uid, jobs.map((j) => j.id));
      } catch (err) {
        if (!(err instanceof RunError)) throw err;
        // 422: no installed model matches; 404: no AI engine / unknown study; 403: not allowed.
        refused.push(err.status === 404 && /Not Found/i.test(err.message) ? 'This server has no AI engine.' : err.message);
      }
    }
  } catch (err) {
    refused.push(err instanceof Error ? err.message : String(err));
  }
  if (!byStudy.size) {
    showJobs([]);
    setRunMessage(`AI not run: ${refused.join('; ')}`, 'error');
    runButton.disabled = false;
    return;
  }
  await follow(byStudy);
  if (refused.length) setRunMessage(`${aiState.run.message}; not run: ${refused.join('; ')}`, 'error');
}

/** Jobs already queued or running when the page opened (the arrival trigger): follow them too. */
async function followRunning(): Promise<void> {
  try {
    const byStudy = new Map<string, number[]>();
    for (const uid of host.studyUIDs) {
      const active = (await studyJobs(uid)).filter(isActive);
      if (active.length) byStudy.set(uid, active.map((j) => j.id));
    }
    if (byStudy.size && !following) await follow(byStudy);
  } catch {
    /* no jobs API on this server */
  }
}

/** New result series, findings and overlays after jobs ended, without a reload. */
async function refreshResults(): Promise<void> {
  await host.refreshSeries();
  findingsLoaded = loadFindings();
  await findingsLoaded;
  for (const slot of host.slots()) if (slot.series) await onViewportShown(slot.id);
}

async function loadFindings(): Promise<void> {
  try {
    const all: Finding[] = [];
    let api = false;
    for (const uid of host.studyUIDs) {
      const found = await fetchFindings(uid);
      if (found) {
        api = true;
        all.push(...found);
      }
    }
    findings = all;
    aiState.findingsApi = api;
    aiState.findings = all.length;
    renderFindings();
    renderOverlayControls(); // map names come from the findings that point to them
    redrawAll();
  } catch (err) {
    error('AI findings', err);
  }
}

function renderFindings(): void {
  if (!findings.length) {
    const p = document.createElement('p');
    p.className = 'muted';
    p.textContent = aiState.findingsApi ? 'No AI findings for this study.' : 'AI findings are not available on this server.';
    findingsList.replaceChildren(p);
    return;
  }
  findingsList.replaceChildren(
    ...findings.map((f) =>
      renderFinding(f, {
        jump: (x) => void jumpTo(x),
        modelCard: (x) => void showModelCard(x.model),
        decide: async (x, status) => {
          try {
            const updated = await decide(x.id, status);
            findings = findings.map((y) => (y.id === x.id ? { ...y, ...updated } : y));
            renderFindings();
            redrawAll();
          } catch (err) {
            error('decision', err);
          }
        },
      }),
    ),
  );
}

/** The model's card (GET /api/models/{name}: `model_card`, Markdown) in a dialog, as text. */
async function showModelCard(name: string): Promise<void> {
  const pre = document.createElement('pre');
  pre.className = 'model-card';
  pre.textContent = 'Loading…';
  closablePanel('model-card', `Model card: ${name}`, pre);
  try {
    const m = await fetchModel(name);
    pre.textContent =
      m.model_card ??
      [`${m.name} v${m.version} (${m.task})`, m.metadata?.description, m.metadata?.intended_use && `Intended use: ${m.metadata.intended_use}`, '(This package has no model card.)']
        .filter(Boolean)
        .join('\n\n');
  } catch (err) {
    pre.textContent = `The model card could not be loaded: ${err instanceof Error ? err.message : String(err)}`;
  }
}

async function jumpTo(f: Finding): Promise<void> {
  // The finding's own probability map (a segmentation label's) becomes the one drawn.
  if (f.pmap_sop_instance_uid) void selectMap(f.pmap_sop_instance_uid);
  const loc = f.location ?? {};
  const seriesUID = loc.series_instance_uid;
  let slot = host.slots().find((s) => s.series && (!seriesUID || s.series.seriesUID === seriesUID) && !s.orientation);
  if (!slot && seriesUID) {
    await host.showSeries(seriesUID);
    slot = host.slots().find((s) => s.series?.seriesUID === seriesUID);
  }
  if (!slot?.series) return;
  let index = -1;
  if (loc.sop_instance_uid) {
    const frame = loc.frame ?? 1;
    index = slot.series.imageIds.findIndex((id) => {
      const inst = slot.series!.metadataByImageId.get(id);
      return str(inst, Tag.SOPInstanceUID) === loc.sop_instance_uid && id.endsWith(`/frames/${frame}`);
    });
  }
  if (index < 0 && loc.slice_index !== undefined) index = loc.slice_index;
  if (index >= 0) await utilities.jumpToSlice(slot.csEl, { imageIndex: index });
}

// ---------------------------------------------------------------- overlays per viewport

const refSeries = (ds: DicomJsonDataset | undefined): string =>
  str((ds?.['00081115']?.Value?.[0] as DicomJsonDataset | undefined) ?? {}, Tag.SeriesInstanceUID);
const frameOfRef = (ds: DicomJsonDataset | undefined): string => str(ds, '00200052');

/** SEG and parametric-map instances that go with `source`. */
async function aiObjectsFor(source: LoadedSeries): Promise<{ kind: 'seg' | 'pmap'; series: LoadedSeries; inst: DicomJsonDataset }[]> {
  const out: { kind: 'seg' | 'pmap'; series: LoadedSeries; inst: DicomJsonDataset }[] = [];
  const sourceFor = frameOfRef(source.instances[0]);
  const candidates = host.seriesList.filter(
    (s) => s.seriesUID !== source.seriesUID && (s.modality === 'SEG' || isAiSeries(s) || s.instanceCount === 1) && !['SR', 'KO', 'PR'].includes(s.modality),
  );
  for (const c of candidates) {
    let series: LoadedSeries;
    try {
      series = await host.getLoaded(c.seriesUID);
    } catch {
      continue;
    }
    for (const inst of series.instances) {
      const cls = str(inst, Tag.SOPClassUID);
      const matches = refSeries(inst) === source.seriesUID || (!!sourceFor && frameOfRef(inst) === sourceFor);
      if (!matches) continue;
      if (cls.startsWith('1.2.840.10008.5.1.4.1.1.66.4') || cls.startsWith('1.2.840.10008.5.1.4.1.1.66.7')) out.push({ kind: 'seg', series, inst });
      else if (cls === PMAP_CLASS) out.push({ kind: 'pmap', series, inst });
    }
  }
  return out;
}

function getSeg(series: LoadedSeries, inst: DicomJsonDataset, source: LoadedSeries): Promise<AiSegmentation | undefined> {
  const sop = str(inst, Tag.SOPInstanceUID);
  const key = `${sop}|${source.seriesUID}`;
  let p = segs.get(key);
  if (!p) {
    p = (async () => {
      const t0 = performance.now();
      segLoadStart ??= t0;
      const part10 = await host.client.retrieveInstance(series.studyUID, series.seriesUID, sop);
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
      segRegisteredAt = performance.now();
      aiState.segLoadMs.push(Math.round(segRegisteredAt - t0));
      renderOverlayControls();
      return seg;
    })().catch((err) => {
      error('segmentation', err);
      return undefined;
    });
    segs.set(key, p);
  }
  return p;
}

function getHeatmap(series: LoadedSeries, inst: DicomJsonDataset): Promise<Heatmap | undefined> {
  const sop = str(inst, Tag.SOPInstanceUID);
  let p = heatmaps.get(sop);
  if (!p) {
    p = (async () => {
      const part10 = await host.client.retrieveInstance(series.studyUID, series.seriesUID, sop);
      const h = parseParametricMap(part10, { sop, seriesUID: series.seriesUID, label: series.description || 'Parametric map' });
      aiState.heatmaps += 1;
      renderOverlayControls();
      return h;
    })().catch((err) => {
      error('parametric map', err);
      return undefined;
    });
    heatmaps.set(sop, p);
  }
  return p;
}

const loadedSegs: AiSegmentation[] = [];
const loadedHeatmaps: Heatmap[] = [];

/** A map's name in the choice: the label of the finding that points to it, else its Content
 * Description, else its series'. */
function mapLabel(c: MapChoice): string {
  const f = findings.find((x) => x.pmap_sop_instance_uid === c.sop);
  if (f) return `${f.label} (${f.model})`;
  return str(c.inst, '00700081') || c.series.description || 'Parametric map';
}

function sortedChoices(): MapChoice[] {
  const num = (c: MapChoice) => Number(str(c.inst, '00200013')) || 0;
  return [...mapChoices.values()].sort((a, b) => a.order - b.order || num(a) - num(b));
}

/** Load (once) the map to draw: the chosen one, else the first offered. */
async function loadActiveMap(): Promise<Heatmap | undefined> {
  if (!activeMap || !mapChoices.has(activeMap)) {
    const firstChoice = sortedChoices()[0];
    if (!firstChoice) return undefined;
    activeMap = firstChoice.sop;
  }
  const c = mapChoices.get(activeMap)!;
  const previous = loadedHeatmaps.find((x) => x.sop === aiState.heatmapShown);
  const h = await getHeatmap(c.series, c.inst);
  if (h && !loadedHeatmaps.includes(h)) loadedHeatmaps.push(h);
  // The reader's display settings carry over to the next map.
  if (h && previous && previous !== h) Object.assign(h, { visible: previous.visible, opacity: previous.opacity });
  aiState.heatmapShown = h?.sop ?? '';
  aiState.heatmapChoices = sortedChoices().map((x) => ({ sop: x.sop, label: mapLabel(x) }));
  return h;
}

/** Draw the map `sop` (a finding's, or picked in the overlay panel) instead of the current one. */
async function selectMap(sop: string): Promise<void> {
  if (sop === activeMap && aiState.heatmapShown === sop) return;
  activeMap = sop;
  if (!mapChoices.has(sop)) return; // offered later, with its series: loadActiveMap takes it then
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
  const slot = host.slots().find((s) => s.id === slotId);
  const source = slot?.series;
  if (!slot || !source || source.notImage) return;
  ensureOverlayCanvas(slot);
  aiState.busy += 1;
  watchFrames();
  try {
    for (const o of await aiObjectsFor(source)) {
      if (o.kind === 'seg') {
        const seg = await getSeg(o.series, o.inst, source);
        if (!seg || !host.slots().includes(slot)) continue;
        if (!loadedSegs.includes(seg)) loadedSegs.push(seg);
        await showInViewport(seg, slot.id);
      } else {
        const sop = str(o.inst, Tag.SOPInstanceUID);
        if (!mapChoices.has(sop)) mapChoices.set(sop, { sop, series: o.series, inst: o.inst, order: mapChoices.size });
      }
    }
    await loadActiveMap();
    aiState.segmentations = loadedSegs.map((s) => ({ id: s.segmentationId, segments: s.segments.length, viewports: [...s.viewports] }));
    renderOverlayControls();
    host.engine().getViewport(slot.id)?.render();
    redraw(slot);
  } catch (err) {
    error('AI overlays', err);
  } finally {
    aiState.busy -= 1;
    const from = segLoadStart;
    if (aiState.busy === 0 && from !== undefined) {
      segLoadStart = undefined;
      // From the SEG request to its labelmap drawn; long-task entries arrive after the task.
      const registered = segRegisteredAt;
      setTimeout(() => {
        const now = performance.now();
        aiState.segLongestTaskSplit.push({ decode: longestTask(from, registered), draw: longestTask(registered, now) });
        aiState.segLongestTaskMs.push(longestTask(from, now));
      }, 300);
    }
  }
}

function ensureOverlayCanvas(slot: AiSlot): HTMLCanvasElement {
  let c = slot.el.querySelector<HTMLCanvasElement>('canvas.ai-overlay');
  if (c) return c;
  c = document.createElement('canvas');
  c.className = 'ai-overlay';
  slot.csEl.after(c);
  slot.csEl.addEventListener(Enums.Events.IMAGE_RENDERED, () => redraw(slot));
  return c;
}

function redrawAll(): void {
  for (const s of host.slots()) if (s.el.querySelector('canvas.ai-overlay')) redraw(s);
}

function redraw(slot: AiSlot): void {
  const canvas = slot.el.querySelector<HTMLCanvasElement>('canvas.ai-overlay');
  const vp = host.engine().getViewport(slot.id);
  if (!canvas || !vp) return;
  const w = slot.csEl.clientWidth;
  const h = slot.csEl.clientHeight;
  const dpr = window.devicePixelRatio || 1;
  Object.assign(canvas.style, { left: `${slot.csEl.offsetLeft}px`, top: `${slot.csEl.offsetTop}px`, width: `${w}px`, height: `${h}px` });
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  const ctx = canvas.getContext('2d')!;
  ctx.setTransform(1, 0, 0, 1, 0, 0);
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  const imageId = slot.orientation ? undefined : (vp as StackViewport).getCurrentImageId?.();
  let n = 0;
  for (const hm of loadedHeatmaps) if (hm.sop === aiState.heatmapShown && drawHeatmap(ctx, hm, vp, imageId)) n++;
  if (imageId && slot.series) n += drawFindingMarks(ctx, vp, imageId, slot.series);
  aiState.drawn[slot.id] = n;
}

function drawFindingMarks(ctx: CanvasRenderingContext2D, vp: Types.IViewport, imageId: string, series: LoadedSeries): number {
  const inst = series.metadataByImageId.get(imageId);
  const sop = str(inst, Tag.SOPInstanceUID);
  const frame = Number(/\/frames\/(\d+)$/.exec(imageId)?.[1] ?? 1);
  let n = 0;
  for (const f of findings) {
    const loc = f.location;
    if (!loc || loc.sop_instance_uid !== sop || (loc.frame ?? 1) !== frame || (!loc.bbox && !loc.point)) continue;
    const toCanvas = (x: number, y: number) => vp.worldToCanvas(utilities.imageToWorldCoords(imageId, [x, y]) as Types.Point3);
    const rejected = f.status === 'rejected';
    ctx.save();
    ctx.strokeStyle = rejected ? 'rgba(160,160,160,0.8)' : f.status === 'accepted' ? '#3ddc84' : '#ffb000';
    ctx.fillStyle = ctx.strokeStyle;
    ctx.lineWidth = 2;
    if (rejected) ctx.setLineDash([5, 4]);
    let anchor: Types.Point2;
    if (loc.bbox && loc.bbox.length >= 4) {
      const [x0, y0, x1, y1] = loc.bbox;
      const pts = [toCanvas(x0, y0), toCanvas(x1, y0), toCanvas(x1, y1), toCanvas(x0, y1)];
      ctx.beginPath();
      pts.forEach((p, i) => (i ? ctx.lineTo(p[0], p[1]) : ctx.moveTo(p[0], p[1])));
      ctx.closePath();
      ctx.stroke();
      anchor = pts.reduce((a, b) => (b[1] < a[1] ? b : a));
    } else {
      const [x, y] = loc.point!;
      anchor = toCanvas(x, y);
      ctx.beginPath();
      ctx.arc(anchor[0], anchor[1], 6, 0, Math.PI * 2);
      ctx.stroke();
    }
    ctx.font = '12px sans-serif';
    const prob = f.probability === null || f.probability === undefined ? '' : ` ${fmtValue(f.probability * 100)}%`;
    ctx.fillText(`${f.label}${prob}${rejected ? ' (rejected)' : ''}`, anchor[0], anchor[1] - 4);
    ctx.restore();
    n++;
  }
  return n;
}

// ---------------------------------------------------------------- overlay controls

function slider(label: string, min: number, max: number, step: number, value: number, data: string, onInput: (v: number) => void): HTMLElement {
  const wrap = document.createElement('label');
  wrap.className = 'ai-slider';
  wrap.textContent = label;
  const input = document.createElement('input');
  input.type = 'range';
  input.min = String(min);
  input.max = String(max);
  input.step = String(step);
  input.value = String(value);
  input.dataset.ai = data;
  input.addEventListener('input', () => onInput(Number(input.value)));
  wrap.append(input);
  return wrap;
}

function checkbox(label: string, checked: boolean, data: string, onChange: (v: boolean) => void, color?: number[]): HTMLElement {
  const wrap = document.createElement('label');
  wrap.className = 'ai-check';
  const input = document.createElement('input');
  input.type = 'checkbox';
  input.checked = checked;
  input.dataset.ai = data;
  input.addEventListener('change', () => onChange(input.checked));
  wrap.append(input);
  if (color) {
    const sw = document.createElement('span');
    sw.className = 'swatch';
    sw.style.background = `rgb(${color.join(',')})`;
    wrap.append(sw);
  }
  wrap.append(document.createTextNode(label));
  return wrap;
}

function renderAllViewports(): void {
  const e = host.engine();
  e.renderViewports(host.slots().map((s) => s.id).filter((id) => e.getViewport(id)));
}

function renderOverlayControls(): void {
  const blocks: HTMLElement[] = [];
  for (const seg of loadedSegs) {
    const box = document.createElement('div');
    box.className = 'ai-overlay-item seg';
    box.dataset.segmentationId = seg.segmentationId;
    const title = document.createElement('div');
    title.className = 'ai-overlay-title';
    title.textContent = seg.label;
    box.append(title);
    for (const s of seg.segments) {
      box.append(
        checkbox(s.label, s.visible, `segment-${s.index}`, (v) => {
          s.visible = v;
          applyStyle(seg);
          renderAllViewports();
        }, s.color),
      );
    }
    box.append(
      slider('Opacity', 0, 1, 0.05, seg.opacity, 'seg-opacity', (v) => {
        seg.opacity = v;
        applyStyle(seg);
        renderAllViewports();
      }),
    );
    blocks.push(box);
  }
  const h = loadedHeatmaps.find((x) => x.sop === aiState.heatmapShown);
  if (h) {
    const box = document.createElement('div');
    box.className = 'ai-overlay-item heatmap';
    const title = document.createElement('div');
    title.className = 'ai-overlay-title';
    const choices = sortedChoices();
    title.textContent = choices.length > 1 ? 'Probability map' : h.label;
    box.append(title);
    if (choices.length > 1) {
      // One map per segmentation label: the reader picks which (a finding's "Go to slice" does too).
      const select = document.createElement('select');
      select.dataset.ai = 'heatmap-choice';
      select.setAttribute('aria-label', 'Probability map shown');
      for (const c of choices) {
        const option = document.createElement('option');
        option.value = c.sop;
        option.textContent = mapLabel(c);
        option.selected = c.sop === h.sop;
        select.append(option);
      }
      select.addEventListener('change', () => void selectMap(select.value));
      box.append(select);
    }
    box.append(
      checkbox('Show heatmap', h.visible, 'heatmap-visible', (v) => {
        h.visible = v;
        redrawAll();
      }),
      slider('Opacity', 0, 1, 0.05, h.opacity, 'heatmap-opacity', (v) => {
        h.opacity = v;
        redrawAll();
      }),
      slider('Threshold', h.min, h.max, (h.max - h.min) / 100, h.threshold, 'heatmap-threshold', (v) => {
        h.threshold = v;
        redrawAll();
      }),
    );
    blocks.push(box);
  }
  overlaysList.replaceChildren(...blocks);
  if (!blocks.length) {
    const p = document.createElement('p');
    p.className = 'muted';
    p.textContent = 'No AI overlay for the series shown.';
    overlaysList.append(p);
  }
}
