// The viewer page: /viewer?StudyInstanceUIDs=<uid>[,<uid>...] (the URL form OHIF uses).
// Series panel, layouts, stack viewports with tools and overlays, MPR, tag browser, help,
// and measurements saved to / restored from DICOM SR through STOW-RS.
import '../style.css';
import {
  Enums,
  RenderingEngine,
  type StackViewport,
  type Types,
  cache,
  eventTarget,
  imageLoadPoolManager,
  imageLoader,
  metaData,
  setVolumesForViewports,
  utilities,
  volumeLoader,
} from '@cornerstonejs/core';
import { type DicomJsonDataset, DicomWebClient, Tag, formatDate, formatName, str } from '../dicomweb';
import {
  MPR_GROUP,
  PRIMARY_TOOLS,
  STACK_GROUP,
  ToolName,
  type ToolsModule,
  cpuStacksWanted,
  decodeOnServer,
  initCornerstone,
  loadTools,
  useCpuRendering,
} from './cornerstone';
import { PREVIEW_STATUS, type PreviewHandoff } from './entry';
import { showHelp } from './help';
import { type LoadedSeries, type SeriesInfo, loadSeries, seriesInfo } from './series';

const client = new DicomWebClient();
const params = new URLSearchParams(location.search);
const studyUIDs = (params.get('StudyInstanceUIDs') ?? params.get('StudyInstanceUID') ?? '')
  .split(',')
  .map((s) => s.trim())
  .filter(Boolean);

const grid = document.querySelector<HTMLElement>('#grid')!;
const seriesPanel = document.querySelector<HTMLElement>('#series-panel')!;
const toolbar = document.querySelector<HTMLElement>('#toolbar')!;
const loadStatus = document.querySelector<HTMLElement>('#load-status')!;

interface Slot {
  id: string;
  el: HTMLDivElement;
  csEl: HTMLDivElement;
  ov: Record<'tl' | 'tr' | 'bl' | 'br', HTMLDivElement>;
  msg: HTMLDivElement;
  scroll: HTMLInputElement;
  series?: LoadedSeries;
  orientation?: Enums.OrientationAxis;
  /** The window drawn, as last set (see keepDrawnWindow). */
  voi?: { lower: number; upper: number };
}

type Layout = { rows: number; cols: number; mpr: boolean };

/** Test and benchmark hook: render state; tests assert on pixels, this only says when to look. */
interface ViewerState {
  studies: string[];
  series: SeriesInfo[];
  layout: Layout;
  firstImageMs?: number;
  allLoadedMs?: number;
  loadedImages: number;
  expectedImages: number;
  errors: string[];
  savedReports: number;
  restoredMeasurements: number;
  /** How the viewports shown are drawn: 'cpu' (canvas 2D, stacks only) or 'gpu' (WebGL). */
  renderer: 'cpu' | 'gpu';
  /** Milestones (ms since navigation start) on the way to the first image. */
  marks: Record<string, number>;
  viewports: () => unknown[];
  annotations: () => number;
  /** Each annotation's tool, world points (patient mm) and referenced image, if any. */
  annotationPoints: () => { tool: string; points: number[][]; imageId?: string }[];
  /** The reading workflow (claim / sign-off), when one study is open. */
  reading?: import('./reading').ReadingState;
}

// The engine of the viewports shown now, created in start() after Cornerstone's init. With
// CPU-drawn stacks (`cpuStacks`) stack layouts use `cpuEngine` (no WebGL at all), while MPR and
// stacks of a study with a DICOM SEG use `gpuEngine` (WebGL), built when first needed: volume
// viewports need WebGL, and the tools draw SEG labelmaps on stacks as WebGL actors only.
let engine!: RenderingEngine;
let cpuEngine: RenderingEngine | undefined;
let gpuEngine: RenderingEngine | undefined;
let cpuStacks = false;
const study: { ds?: DicomJsonDataset } = {};
const seriesList: SeriesInfo[] = [];
const loadedSeries = new Map<string, Promise<LoadedSeries>>();
let slots: Slot[] = [];
let active = 0;
let layout: Layout = { rows: 1, cols: 1, mpr: false };
let stackLayout: Layout = layout;
let cineTimer: number | undefined;
const loadedIds = new Set<string>();
const firstSeriesIds = new Set<string>();

const state: ViewerState = {
  studies: studyUIDs,
  series: seriesList,
  layout,
  loadedImages: 0,
  expectedImages: 0,
  errors: [],
  savedReports: 0,
  restoredMeasurements: 0,
  marks: { script: performance.now() },
  renderer: 'gpu',
  viewports: () =>
    slots.map((s) => {
      const vp = engine.getViewport(s.id);
      const props = (vp as StackViewport | undefined)?.getProperties?.() ?? {};
      return {
        id: s.id,
        seriesUID: s.series?.seriesUID,
        orientation: s.orientation,
        message: s.msg.hidden ? '' : s.msg.textContent,
        index: vp?.getSliceIndex?.() ?? 0,
        count: vp?.getNumberOfSlices?.() ?? 0,
        imageId: (vp as StackViewport | undefined)?.getCurrentImageId?.(),
        voi: props.voiRange,
        invert: props.invert ?? false,
        zoom: vp?.getZoom?.() ?? 1,
      };
    }),
  annotations: () => tools?.tools.annotation.state.getAllAnnotations().length ?? 0,
  annotationPoints: () =>
    (tools?.tools.annotation.state.getAllAnnotations() ?? []).map((a) => ({
      tool: a.metadata?.toolName ?? '',
      points: (a.data.handles?.points ?? []).map((p) => [...p]),
      imageId: a.metadata?.referencedImageId,
    })),
};
(window as unknown as { __radsight: ViewerState }).__radsight = state;

// The first image as entry.ts drew it before this module was loaded (a 2D-canvas preview), the
// frame's bytes it fetched, and the keys / wheel turns met meanwhile.
const preview: PreviewHandoff = (window as unknown as { __radsightPreview?: PreviewHandoff }).__radsightPreview ?? {
  frame: Promise.resolve(undefined),
  done: false,
  ready: false,
  queued: [],
};
if (preview.drawnAt !== undefined) state.marks.preview = preview.drawnAt;

/** Show the preview in the first viewport (same place, same size), under its overlays. */
function adoptPreview(slot: Slot): void {
  if (preview.done || !preview.canvas) return;
  const host = preview.canvas.parentElement;
  slot.el.append(preview.canvas);
  if (host && host !== slot.el && host.classList.contains('preview-host')) host.remove();
}

/** Cornerstone shows the image (or cannot): the preview goes. */
function dropPreview(): void {
  if (preview.done) return;
  preview.done = true;
  if (preview.drawnAt !== undefined) state.marks.preview = preview.drawnAt;
  preview.canvas?.remove();
  document.querySelector('.preview-host')?.remove();
  if (loadStatus.textContent === PREVIEW_STATUS) setStatus(statusText);
}

/** Tools bound and the first image shown (or none to wait for): keys and wheel turns met
 * before are played now. */
function previewReady(): void {
  if (preview.ready) return;
  preview.ready = true;
  void replay(preview.queued.splice(0));
}

/** In order, each slice change awaited (a window set while a slice loads is reset by it). */
async function replay(events: (KeyboardEvent | WheelEvent)[]): Promise<void> {
  try {
    for (const e of events) {
      const slot = activeSlot();
      const vp = activeViewport();
      if (e instanceof WheelEvent) {
        if (!slot || !vp) continue;
        const index = Math.max(0, Math.min(vp.getNumberOfSlices() - 1, vp.getSliceIndex() + Math.sign(e.deltaY)));
        // A stack's setImageIdIndex resolves once the slice is shown (jumpToSlice does not wait).
        const stack = vp as StackViewport;
        if (typeof stack.setImageIdIndex === 'function') await stack.setImageIdIndex(index);
        else await utilities.jumpToSlice(slot.csEl, { imageIndex: index });
      } else {
        document.dispatchEvent(new KeyboardEvent('keydown', { key: e.key, code: e.code, shiftKey: e.shiftKey, bubbles: true }));
      }
    }
  } catch (err) {
    state.errors.push(`keys pressed while loading: ${describeError(err)}`);
  }
}

// The tools module arrives after the first image (or on the first action that needs it).
let tools: ToolsModule | undefined;
function toolsNow(): Promise<ToolsModule> {
  return loadTools().then((t) => {
    if (!tools) {
      tools = t;
      state.marks.tools = performance.now();
      bindTools();
      if (state.marks.firstImage !== undefined) {
        state.firstImageMs ??= performance.now();
        previewReady();
      }
      if (studyUIDs.length) void ai();
    }
    return t;
  });
}

/** Put the current viewports in their tool group and start stack prefetch (once tools are here). */
function bindTools(): void {
  if (!tools) return;
  const t = tools.tools;
  const group = t.ToolGroupManager.getToolGroup(layout.mpr ? MPR_GROUP : STACK_GROUP)!;
  for (const s of slots) {
    if (!engine.getViewport(s.id)) continue;
    // Viewports enabled before tools.init() missed its ELEMENT_ENABLED listener (mouse events,
    // annotation layer): give them what it would have.
    if (!t.store.state.enabledElements.includes(s.csEl)) {
      t.store.addEnabledElement(new CustomEvent(Enums.Events.ELEMENT_ENABLED, { detail: { element: s.csEl, viewportId: s.id, renderingEngineId: engine.id } }) as never);
    }
    if (!group.getViewportIds().includes(s.id)) group.addViewport(s.id, engine.id);
    if (!layout.mpr && s.series && !s.series.notImage && s.series.imageIds.length) tools.tools.utilities.stackPrefetch.enable(s.csEl);
  }
  updateToolbar();
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

function setPrimaryTool(name: string): void {
  void toolsNow().then((t) => {
    t.setPrimaryTool(name);
    updateToolbar();
  });
}

function activeSlot(): Slot | undefined {
  return slots[active];
}

function activeViewport(): Types.IViewport | undefined {
  const s = activeSlot();
  return s ? engine.getViewport(s.id) : undefined;
}

let statusText = '';
function setStatus(text: string): void {
  statusText = text;
  // While the preview shows, the page says so (progress comes back when it goes).
  const previewShown = !preview.done && preview.canvas?.isConnected;
  loadStatus.textContent = previewShown && !text.startsWith('Could') ? PREVIEW_STATUS : text;
}

function toast(text: string): void {
  const el = document.createElement('div');
  el.className = 'toast';
  el.textContent = text;
  document.body.append(el);
  setTimeout(() => el.remove(), 3500);
}

// ---------------------------------------------------------------- layout and viewports

function makeSlot(i: number): Slot {
  const el = document.createElement('div');
  el.className = 'vp';
  el.dataset.viewport = String(i);
  const csEl = document.createElement('div');
  csEl.className = 'cs';
  csEl.addEventListener('contextmenu', (e) => e.preventDefault());
  const ov = {} as Slot['ov'];
  for (const k of ['tl', 'tr', 'bl', 'br'] as const) {
    ov[k] = document.createElement('div');
    ov[k].className = `ov ${k}`;
  }
  const msg = document.createElement('div');
  msg.className = 'msg';
  msg.hidden = true;
  const scroll = document.createElement('input');
  scroll.type = 'range';
  scroll.className = 'scroll';
  scroll.min = '0';
  scroll.max = '0';
  scroll.setAttribute('aria-label', 'Slice');
  el.append(csEl, ov.tl, ov.tr, ov.bl, ov.br, msg, scroll);
  const slot: Slot = { id: `vp-${i}`, el, csEl, ov, msg, scroll };
  el.addEventListener('pointerdown', () => setActive(i), true);
  scroll.addEventListener('input', () => {
    const vp = engine.getViewport(slot.id);
    if (vp) void utilities.jumpToSlice(csEl, { imageIndex: Number(scroll.value) });
  });
  // Drag a series from the panel onto a viewport.
  el.addEventListener('dragover', (e) => {
    if (!e.dataTransfer?.types.includes('application/x-radsight-series')) return;
    e.preventDefault();
    el.classList.add('drop-target');
  });
  el.addEventListener('dragleave', () => el.classList.remove('drop-target'));
  el.addEventListener('drop', (e) => {
    el.classList.remove('drop-target');
    const uid = e.dataTransfer?.getData('application/x-radsight-series');
    if (!uid) return;
    e.preventDefault();
    setActive(i);
    if (layout.mpr) void applyLayout(stackLayout);
    void showSeries(slots[i] ?? slots[0], uid);
  });
  for (const ev of [
    Enums.Events.IMAGE_RENDERED,
    Enums.Events.VOI_MODIFIED,
    Enums.Events.CAMERA_MODIFIED,
    Enums.Events.STACK_NEW_IMAGE,
    Enums.Events.VOLUME_NEW_IMAGE,
  ]) {
    csEl.addEventListener(ev, () => updateOverlay(slot));
  }
  csEl.addEventListener(Enums.Events.VOI_MODIFIED, (e) => {
    const range = (e as CustomEvent<{ range?: { lower: number; upper: number } }>).detail?.range;
    if (range) slot.voi = { lower: range.lower, upper: range.upper };
  });
  // Cornerstone fires this before it prepares the new image: look after it has.
  csEl.addEventListener(Enums.Events.STACK_NEW_IMAGE, () => queueMicrotask(() => keepDrawnWindow(slot)));
  csEl.addEventListener(Enums.Events.IMAGE_RENDERED, () => {
    if (state.marks.firstImage === undefined && slot.series && !slot.series.notImage) {
      state.marks.firstImage = performance.now();
      // Drawn by Cornerstone in this animation frame: the preview goes in the same one.
      dropPreview();
      // The hook's firstImageMs: on screen and interactive (tools bound).
      if (tools) {
        state.firstImageMs = state.marks.firstImage;
        previewReady();
      }
      // The first image is on screen: now the rest of the series (core's request pool, so it
      // does not wait for the tools), then the tools and the AI panel.
      else {
        prefetch(slot.series.imageIds);
        setTimeout(() => void toolsNow(), 0);
      }
    }
  });
  return slot;
}

function setActive(i: number): void {
  active = i;
  slots.forEach((s, j) => s.el.classList.toggle('active', j === i));
  const uid = activeSlot()?.series?.seriesUID;
  for (const item of seriesPanel.querySelectorAll<HTMLElement>('.series-item')) {
    item.classList.toggle('active', item.dataset.seriesUid === uid);
  }
}

async function applyLayout(next: Layout, mprSeries?: LoadedSeries): Promise<void> {
  stopCine();
  const previous = slots.map((s) => s.series?.seriesUID).filter((u): u is string => !!u);
  for (const s of slots) {
    tools?.tools.ToolGroupManager.getToolGroup(STACK_GROUP)?.removeViewports(engine.id, s.id);
    tools?.tools.ToolGroupManager.getToolGroup(MPR_GROUP)?.removeViewports(engine.id, s.id);
    if (engine.getViewport(s.id)) engine.disableElement(s.id);
  }
  engine = engineFor(next.mpr);
  state.renderer = engine === cpuEngine ? 'cpu' : 'gpu';
  layout = next;
  state.layout = next;
  if (!next.mpr) stackLayout = next;
  grid.style.gridTemplateRows = `repeat(${next.rows}, 1fr)`;
  grid.style.gridTemplateColumns = `repeat(${next.cols}, 1fr)`;
  const count = next.rows * next.cols;
  slots = Array.from({ length: count }, (_, i) => makeSlot(i));
  grid.replaceChildren(...slots.map((s) => s.el));
  if (slots[0]) adoptPreview(slots[0]);
  const orientations = [Enums.OrientationAxis.AXIAL, Enums.OrientationAxis.SAGITTAL, Enums.OrientationAxis.CORONAL];
  engine.setViewports(
    slots.map((s, i) => ({
      viewportId: s.id,
      element: s.csEl,
      type: next.mpr ? Enums.ViewportType.ORTHOGRAPHIC : Enums.ViewportType.STACK,
      defaultOptions: next.mpr ? { orientation: orientations[i], background: [0, 0, 0] as Types.Point3 } : { background: [0, 0, 0] as Types.Point3 },
    })),
  );
  bindTools();
  updateToolbar();
  setActive(Math.min(active, count - 1));
  if (next.mpr && mprSeries) {
    await showVolume(mprSeries, orientations);
    return;
  }
  // Keep what was shown; fill new viewports with the next series not yet shown.
  const queue = [...previous];
  for (const s of seriesList) if (!queue.includes(s.seriesUID)) queue.push(s.seriesUID);
  await Promise.all(slots.map((s, i) => (queue[i] ? showSeries(s, queue[i]) : Promise.resolve())));
}

/** The rendering engine for a layout; core's CPU switch set to match before its viewports are made. */
function engineFor(mpr: boolean): RenderingEngine {
  if (!cpuStacks) return (gpuEngine ??= new RenderingEngine('radsight'));
  const cpu = !mpr && !hasSeg();
  useCpuRendering(cpu);
  if (cpu) return (cpuEngine ??= new RenderingEngine('radsight-cpu'));
  return (gpuEngine ??= new RenderingEngine('radsight'));
}

function hasSeg(): boolean {
  return seriesList.some((s) => s.modality === 'SEG');
}

/** After "Run AI" brought a SEG: stacks drawn on the CPU are shown again through WebGL, with the
 * reader's slice, window/level, inversion, zoom and pan kept. */
async function refreshSeriesForAi(): Promise<void> {
  await refreshSeriesList();
  if (layout.mpr || !cpuEngine || engine !== cpuEngine || !hasSeg()) return;
  const kept = slots.map((s) => {
    const vp = engine.getViewport(s.id) as StackViewport | undefined;
    if (!vp) return undefined;
    const { voiRange, invert } = vp.getProperties();
    return { index: vp.getSliceIndex(), voiRange, invert, zoom: vp.getZoom(), pan: vp.getPan() };
  });
  await applyLayout(layout);
  await Promise.all(
    slots.map(async (s, i) => {
      const k = kept[i];
      const vp = engine.getViewport(s.id) as StackViewport | undefined;
      if (!k || !vp) return;
      if (k.index) await utilities.jumpToSlice(s.csEl, { imageIndex: k.index });
      vp.setProperties({ voiRange: k.voiRange, invert: k.invert });
      vp.setZoom(k.zoom);
      vp.setPan(k.pan);
      vp.render();
    }),
  );
}

function getLoaded(seriesUID: string): Promise<LoadedSeries> {
  let p = loadedSeries.get(seriesUID);
  if (!p) {
    const info = seriesList.find((s) => s.seriesUID === seriesUID);
    if (!info) return Promise.reject(new Error(`series ${seriesUID} is not in this study`));
    p = loadSeries(client, info);
    loadedSeries.set(seriesUID, p);
  }
  return p;
}

function showMessage(slot: Slot, text: string, error = false): void {
  slot.msg.hidden = !text;
  slot.msg.textContent = text;
  slot.msg.classList.toggle('error', error);
}

async function showSeries(slot: Slot, seriesUID: string): Promise<void> {
  showMessage(slot, 'Loading…');
  let series: LoadedSeries;
  try {
    series = await getLoaded(seriesUID);
    state.marks.metadata ??= performance.now();
  } catch (err) {
    dropPreview();
    showMessage(slot, `Could not load the series: ${(err as Error).message}`, true);
    state.errors.push(String(err));
    return;
  }
  if (!slots.includes(slot)) return; // the layout changed meanwhile
  slot.series = series;
  setActive(active);
  const vp = engine.getViewport(slot.id) as StackViewport | undefined;
  if (!vp) return;
  if (series.notImage || !series.imageIds.length) {
    if (slot === slots[0]) dropPreview();
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
    state.errors.push(describeError(err));
    return;
  }
  slot.scroll.max = String(series.imageIds.length - 1);
  slot.scroll.value = '0';
  slot.scroll.hidden = series.imageIds.length < 2;
  // Without tools yet: bindTools starts the prefetch once the first image is drawn.
  if (tools) tools.tools.utilities.stackPrefetch.enable(slot.csEl);
  updateOverlay(slot);
  aiViewportShown(slot);
  if (!seriesList.some((x) => x.modality === 'SR')) return;
  void import('./measurements')
    .then((m) => m.loadMeasurements(client, series, seriesList, getLoaded))
    .then(({ restored: n, inPatientCoordinates: mpr }) => {
      state.restoredMeasurements += n;
      if (n) {
        void toolsNow().then((t) => t.tools.utilities.triggerAnnotationRenderForViewportIds([slot.id]));
        const where = mpr ? ` (${mpr} drawn in MPR: shown in the MPR view they were drawn in, M)` : '';
        toast(`${n} saved measurement${n > 1 ? 's' : ''} restored${where}`);
      }
    })
    .catch((err) => state.errors.push(`restoring measurements: ${describeError(err)}`));
}

async function showVolume(series: LoadedSeries, orientations: Enums.OrientationAxis[]): Promise<void> {
  slots.forEach((s, i) => {
    s.series = series;
    s.orientation = orientations[i];
    showMessage(s, 'Loading volume…');
  });
  try {
    const volumeId = `cornerstoneStreamingImageVolume:${series.seriesUID}`;
    const volume = await volumeLoader.createAndCacheVolume(volumeId, { imageIds: series.imageIds });
    (volume as unknown as { load: () => void }).load();
    await setVolumesForViewports(engine, [{ volumeId }], slots.map((s) => s.id));
    for (const s of slots) {
      showMessage(s, '');
      s.scroll.hidden = true;
    }
    engine.renderViewports(slots.map((s) => s.id));
    for (const s of slots) aiViewportShown(s);
    await toolsNow();
    setPrimaryTool(ToolName.Crosshairs);
  } catch (err) {
    for (const s of slots) showMessage(s, `MPR failed: ${describeError(err)}`, true);
    state.errors.push(describeError(err));
  }
}

// AI results (SEG labelmaps, heatmaps, finding marks, findings panel): src/viewer/ai, loaded on demand.
// Imported after the first image (with the tools), or when the reading bar asks for findings.
let aiModule: Promise<typeof import('./ai')> | undefined;
function ai(): Promise<typeof import('./ai')> {
  aiModule ??= import('./ai').then((m) => {
    m.initAi({
      client,
      engine: () => engine,
      studyUIDs,
      seriesList,
      getLoaded,
      slots: () => slots,
      showSeries: async (uid) => {
        if (layout.mpr) await applyLayout(stackLayout);
        const slot = activeSlot();
        if (slot) await showSeries(slot, uid);
      },
      refreshSeries: refreshSeriesForAi,
      errors: state.errors,
    });
    for (const s of slots) if (s.series && engine.getViewport(s.id)) void m.onViewportShown(s.id);
    return m;
  });
  return aiModule;
}
function aiViewportShown(slot: Slot): void {
  void aiModule?.then((m) => m.onViewportShown(slot.id)).catch((err) => state.errors.push(`AI overlays: ${describeError(err)}`));
}

function describeError(err: unknown): string {
  if (err instanceof Error) return err.message;
  if (err && typeof err === 'object') {
    const e = err as { error?: { message?: string; status?: number }; message?: string };
    return e.error?.message ?? e.message ?? JSON.stringify(err).slice(0, 200);
  }
  return String(err);
}

// ---------------------------------------------------------------- overlay text

function fmt(n: number | undefined, digits = 0): string {
  return n === undefined || !Number.isFinite(n) ? '' : n.toFixed(digits);
}

function updateOverlay(slot: Slot): void {
  const s = slot.series;
  const vp = engine.getViewport(slot.id) as StackViewport | undefined;
  const ds = study.ds;
  slot.ov.tl.textContent = [
    formatName(str(ds, Tag.PatientName)),
    str(ds, Tag.PatientID),
    formatDate(str(ds, Tag.StudyDate)),
    str(ds, Tag.StudyDescription),
  ]
    .filter(Boolean)
    .join('\n');
  if (!s || !vp) {
    slot.ov.tr.textContent = slot.ov.bl.textContent = slot.ov.br.textContent = '';
    return;
  }
  const index = vp.getSliceIndex?.() ?? 0;
  const count = vp.getNumberOfSlices?.() ?? s.imageIds.length;
  slot.ov.tr.textContent = [
    s.number === undefined ? s.modality : `${s.modality}  Se ${s.number}`,
    s.description,
    slot.orientation ? String(slot.orientation).toUpperCase() : '',
  ]
    .filter(Boolean)
    .join('\n');
  if (s.notImage) {
    slot.ov.bl.textContent = slot.ov.br.textContent = '';
    return;
  }
  const imageId = slot.orientation ? undefined : vp.getCurrentImageId?.();
  const inst = imageId ? s.metadataByImageId.get(imageId) : undefined;
  const loc = str(inst, Tag.SliceLocation);
  const thick = str(inst, Tag.SliceThickness);
  slot.ov.bl.textContent = [
    `Im ${index + 1} / ${count}`,
    loc ? `Loc ${Number(loc).toFixed(1)} mm` : '',
    thick ? `Thk ${Number(thick).toFixed(1)} mm` : '',
    inst ? `${str(inst, Tag.Columns)} × ${str(inst, Tag.Rows)}` : '',
  ]
    .filter(Boolean)
    .join('\n');
  const voi = vp.getProperties?.()?.voiRange;
  const ww = voi ? voi.upper - voi.lower : undefined;
  const wc = voi ? (voi.upper + voi.lower) / 2 : undefined;
  slot.ov.br.textContent = [`W ${fmt(ww)}  L ${fmt(wc)}`, `Zoom ${fmt(vp.getZoom?.(), 2)}×`].join('\n');
  if (!slot.orientation && Number(slot.scroll.value) !== index) slot.scroll.value = String(index);
}

/** Cornerstone's CPU path (StackViewport._updateToDisplayImageCPU in 5.14) keeps drawing the
 * previous slice's window on a new slice but sets the viewport's reported window to the new
 * image's own, so the overlay showed a window that was not drawn and a W/L drag jumped from it.
 * Give the viewport back the window it draws. (WebGL stacks keep a window the reader chose.) */
function keepDrawnWindow(slot: Slot): void {
  const vp = engine.getViewport(slot.id) as StackViewport | undefined;
  const cpu = (vp as unknown as { useCPURendering?: boolean } | undefined)?.useCPURendering;
  if (!vp || !cpu || slot.orientation) return;
  const now = vp.getProperties().voiRange;
  if (!slot.voi) {
    if (now) slot.voi = { lower: now.lower, upper: now.upper };
    return;
  }
  if (!now || now.lower !== slot.voi.lower || now.upper !== slot.voi.upper) {
    vp.setProperties({ voiRange: { ...slot.voi } });
    vp.render();
  }
}

// ---------------------------------------------------------------- actions

const PRESETS: { label: string; ww: number; wc: number; key: string }[] = [
  { label: 'Soft tissue', ww: 400, wc: 40, key: '1' },
  { label: 'Lung', ww: 1500, wc: -600, key: '2' },
  { label: 'Bone', ww: 2000, wc: 300, key: '3' },
  { label: 'Brain', ww: 80, wc: 40, key: '4' },
];

function setWindow(ww: number, wc: number): void {
  const vp = activeViewport() as StackViewport | undefined;
  if (!vp) return;
  vp.setProperties({ voiRange: utilities.windowLevel.toLowHighRange(ww, wc) });
  vp.render();
}

function autoWindow(): void {
  // MR and other modalities: back to the image's own window (or its pixel range).
  const vp = activeViewport() as StackViewport | undefined;
  if (!vp) return;
  const invert = vp.getProperties()?.invert;
  vp.resetProperties();
  if (invert) vp.setProperties({ invert });
  vp.render();
}

function invert(): void {
  const vp = activeViewport() as StackViewport | undefined;
  if (!vp) return;
  vp.setProperties({ invert: !vp.getProperties()?.invert });
  vp.render();
}

function resetView(): void {
  const vp = activeViewport() as StackViewport | undefined;
  if (!vp) return;
  vp.resetCamera();
  vp.resetProperties();
  vp.setViewPresentation({ rotation: 0, flipHorizontal: false, flipVertical: false });
  vp.render();
}

function rotate(): void {
  const vp = activeViewport();
  if (!vp) return;
  vp.setViewPresentation({ rotation: ((vp.getRotation() ?? 0) + 90) % 360 });
  vp.render();
}

function flip(horizontal: boolean): void {
  const vp = activeViewport();
  if (!vp) return;
  const cam = vp.getCamera();
  vp.setCamera(horizontal ? { flipHorizontal: !cam.flipHorizontal } : { flipVertical: !cam.flipVertical });
  vp.render();
}

function scrollBy(delta: number): void {
  const vp = activeViewport();
  if (vp) utilities.scroll(vp, { delta });
}

function jumpTo(end: 'first' | 'last'): void {
  const slot = activeSlot();
  const vp = activeViewport();
  if (!slot || !vp) return;
  void utilities.jumpToSlice(slot.csEl, { imageIndex: end === 'first' ? 0 : vp.getNumberOfSlices() - 1 });
}

function stopCine(): void {
  if (cineTimer !== undefined) window.clearInterval(cineTimer);
  cineTimer = undefined;
  document.querySelector('[data-action="cine"]')?.classList.remove('active');
}

function toggleCine(): void {
  if (cineTimer !== undefined) return stopCine();
  cineTimer = window.setInterval(() => {
    const vp = activeViewport();
    if (vp) utilities.scroll(vp, { delta: 1, loop: true });
  }, 1000 / 15);
  document.querySelector('[data-action="cine"]')?.classList.add('active');
}

async function toggleMpr(): Promise<void> {
  if (layout.mpr) {
    (await toolsNow()).setPrimaryTool(ToolName.WindowLevel);
    await applyLayout(stackLayout);
    return;
  }
  const series = activeSlot()?.series;
  if (!series?.isVolume) {
    toast('MPR needs a volumetric CT/MR series (parallel slices) in the active viewport.');
    return;
  }
  await applyLayout({ rows: 1, cols: 3, mpr: true }, series);
}

async function save(): Promise<void> {
  try {
    const { saveMeasurements } = await import('./measurements');
    const n = await saveMeasurements(client, engine, seriesList, getLoaded, study.ds);
    state.savedReports += 1;
    toast(`Saved ${n} measurement${n === 1 ? '' : 's'} as DICOM SR`);
    await refreshSeriesList();
  } catch (err) {
    state.errors.push(describeError(err));
    toast(`Saving failed: ${describeError(err)}`);
  }
}

function tags(): void {
  const slot = activeSlot();
  const vp = activeViewport();
  const s = slot?.series;
  if (!s) return;
  const imageId = (vp as StackViewport | undefined)?.getCurrentImageId?.();
  const inst = (imageId && s.metadataByImageId.get(imageId)) || s.instances[0];
  void import('./tags').then((m) => m.showTags(inst, `${s.modality} ${s.description} — instance ${str(inst, Tag.InstanceNumber)}`));
}

type Action = { id: string; label: string; key?: string; run: () => void; title?: string };

const ACTIONS: Action[] = [
  ...PRIMARY_TOOLS.map((t) => ({
    id: `tool:${t.name}`,
    label: t.label,
    key: t.key,
    run: () => setPrimaryTool(t.name),
  })),
  {
    id: `tool:${ToolName.Crosshairs}`,
    label: 'Crosshairs',
    key: 'x',
    run: () => {
      if (!layout.mpr) return toast('Crosshairs work in MPR (M).');
      setPrimaryTool(ToolName.Crosshairs);
    },
  },
  ...PRESETS.map((p) => ({ id: `preset:${p.label}`, label: p.label, key: p.key, run: () => setWindow(p.ww, p.wc) })),
  { id: 'auto-window', label: 'Auto W/L', key: '0', run: autoWindow, title: 'The image’s own window (MR auto)' },
  { id: 'invert', label: 'Invert', key: 'i', run: invert },
  { id: 'rotate', label: 'Rotate', key: 'r', run: rotate },
  { id: 'flip-h', label: 'Flip H', key: 'h', run: () => flip(true) },
  { id: 'flip-v', label: 'Flip V', key: 'v', run: () => flip(false) },
  { id: 'reset', label: 'Reset', key: ' ', run: resetView },
  { id: 'cine', label: 'Cine', key: 'c', run: toggleCine },
  { id: 'layout:1x1', label: '1×1', run: () => void applyLayout({ rows: 1, cols: 1, mpr: false }) },
  { id: 'layout:1x2', label: '1×2', run: () => void applyLayout({ rows: 1, cols: 2, mpr: false }) },
  { id: 'layout:2x2', label: '2×2', run: () => void applyLayout({ rows: 2, cols: 2, mpr: false }) },
  { id: 'mpr', label: 'MPR', key: 'm', run: () => void toggleMpr() },
  { id: 'save', label: 'Save measurements', key: 's', run: () => void save() },
  { id: 'tags', label: 'Tags', key: 't', run: tags },
  { id: 'help', label: 'Help', key: '?', run: () => showHelp(ACTIONS) },
];

const SEPARATE_BEFORE = new Set([`tool:${ToolName.Crosshairs}`, 'preset:Soft tissue', 'invert', 'layout:1x1', 'save']);

function buildToolbar(): void {
  toolbar.replaceChildren();
  for (const a of ACTIONS) {
    if (SEPARATE_BEFORE.has(a.id)) {
      const sep = document.createElement('span');
      sep.className = 'sep';
      toolbar.append(sep);
    }
    const b = document.createElement('button');
    b.type = 'button';
    b.dataset.action = a.id;
    b.textContent = a.label;
    b.title = (a.title ? `${a.title} ` : '') + (a.key ? `(${a.key === ' ' ? 'Space' : a.key.toUpperCase()})` : '');
    b.addEventListener('click', () => a.run());
    toolbar.append(b);
  }
}

function updateToolbar(): void {
  const group = tools?.tools.ToolGroupManager.getToolGroup(layout.mpr ? MPR_GROUP : STACK_GROUP);
  const primary = group?.getActivePrimaryMouseButtonTool() ?? ToolName.WindowLevel;
  for (const b of toolbar.querySelectorAll<HTMLButtonElement>('button')) {
    const id = b.dataset.action ?? '';
    if (id.startsWith('tool:')) b.classList.toggle('active', id === `tool:${primary}`);
    if (id.startsWith('layout:')) b.classList.toggle('active', !layout.mpr && id === `layout:${layout.rows}x${layout.cols}`);
    if (id === 'mpr') b.classList.toggle('active', layout.mpr);
  }
}

document.addEventListener('keydown', (e) => {
  if (!preview.ready) return; // kept by entry.ts and played once the first image is interactive
  if (e.target instanceof HTMLInputElement && e.target.type !== 'range') return;
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  const keyMoves: Record<string, () => void> = {
    ArrowUp: () => scrollBy(-1),
    ArrowDown: () => scrollBy(1),
    ArrowLeft: () => scrollBy(-1),
    ArrowRight: () => scrollBy(1),
    PageUp: () => scrollBy(-10),
    PageDown: () => scrollBy(10),
    Home: () => jumpTo('first'),
    End: () => jumpTo('last'),
    Escape: () => document.querySelector('.panel')?.remove(),
  };
  const move = keyMoves[e.key];
  const action = ACTIONS.find((a) => a.key === e.key.toLowerCase() || (a.key === '?' && e.key === 'F1'));
  if (move) move();
  else if (action) action.run();
  else return;
  e.preventDefault();
});

// ---------------------------------------------------------------- series panel

function renderSeriesPanel(): void {
  seriesPanel.replaceChildren(
    ...seriesList.map((s) => {
      const item = document.createElement('div');
      item.className = 'series-item';
      item.dataset.seriesUid = s.seriesUID;
      item.draggable = true;
      item.tabIndex = 0;
      item.title = `${s.modality} ${s.description} — drag onto a viewport, or click`;
      const img = document.createElement('img');
      img.alt = `${s.modality} series ${s.number ?? ''}`;
      img.loading = 'lazy';
      img.draggable = false;
      img.src = client.thumbnailUrl(s.studyUID, s.seriesUID);
      img.addEventListener('error', () => {
        const ph = document.createElement('div');
        ph.className = 'thumb-missing';
        ph.textContent = s.modality || '?';
        img.replaceWith(ph);
      });
      const label = document.createElement('div');
      label.className = 'label';
      label.textContent = `${s.number ?? ''} ${s.modality} · ${s.instanceCount ?? '?'} im\n`;
      const desc = document.createElement('div');
      desc.className = 'label';
      desc.textContent = s.description || '(no description)';
      item.append(img, label, desc);
      if (/AI generated/i.test(s.description)) {
        item.classList.add('ai-series');
        const badge = document.createElement('div');
        badge.className = 'ai-badge';
        badge.textContent = 'AI generated - not for clinical use';
        item.append(badge);
      }
      item.addEventListener('dragstart', (e) => {
        e.dataTransfer?.setData('application/x-radsight-series', s.seriesUID);
        e.dataTransfer?.setData('text/plain', s.seriesUID);
      });
      const open = async () => {
        if (layout.mpr) await applyLayout(stackLayout);
        const slot = activeSlot();
        if (slot) void showSeries(slot, s.seriesUID);
      };
      item.addEventListener('click', () => void open());
      item.addEventListener('keydown', (e) => {
        if (e.key === 'Enter') {
          e.stopPropagation();
          void open();
        }
      });
      return item;
    }),
  );
  setActive(active);
}

async function refreshSeriesList(): Promise<void> {
  const all: SeriesInfo[] = [];
  for (const uid of studyUIDs) {
    const found = await client.searchSeries(uid);
    all.push(...found.map((ds) => seriesInfo(uid, ds)));
  }
  // Images first (by series number), then SR / SEG / other objects.
  const rank = (s: SeriesInfo) => (['SR', 'SEG', 'PR', 'KO', 'RTSTRUCT', 'DOC'].includes(s.modality) ? 1 : 0);
  all.sort((a, b) => rank(a) - rank(b) || (a.number ?? 0) - (b.number ?? 0));
  seriesList.splice(0, seriesList.length, ...all);
  renderSeriesPanel();
}

// ---------------------------------------------------------------- start

eventTarget.addEventListener(Enums.Events.IMAGE_LOADED, ((evt: CustomEvent<{ image: { imageId: string } }>) => {
  const id = evt.detail.image.imageId;
  if (!firstSeriesIds.has(id) || loadedIds.has(id)) return;
  state.marks.firstFrame ??= performance.now();
  loadedIds.add(id);
  state.loadedImages = loadedIds.size;
  setStatus(loadedIds.size < firstSeriesIds.size ? `Loaded ${loadedIds.size} / ${firstSeriesIds.size}` : '');
  if (loadedIds.size === firstSeriesIds.size && state.allLoadedMs === undefined) state.allLoadedMs = performance.now();
}) as EventListener);
eventTarget.addEventListener(Enums.Events.IMAGE_LOAD_ERROR, ((evt: CustomEvent<{ imageId: string; error: unknown }>) => {
  const { imageId, error } = evt.detail;
  state.errors.push(`${imageId}: ${describeError(error)}`);
  const slot = slots.find((s) => s.series?.imageIds.includes(imageId));
  if (slot) showMessage(slot, `This image could not be loaded or decoded: ${describeError(error)}`, true);
  if (slot === slots[0]) dropPreview();
}) as EventListener);

/** Note the series whose loading the hook reports (`loadedImages`, `allLoadedMs`). */
function noteFirstSeries(series: LoadedSeries): void {
  if (firstSeriesIds.size) return;
  for (const id of series.imageIds) firstSeriesIds.add(id);
  state.expectedImages = series.imageIds.length;
}

/** Load the first viewport's first image into the cache now (`setStack` finds it there). */
async function requestFirstFrame(): Promise<void> {
  const first = seriesList[0];
  if (!first) return;
  const series = await getLoaded(first.seriesUID);
  if (series.notImage || !series.imageIds.length) return;
  noteFirstSeries(series);
  // Greyscale only: the server's decoded colour frames may be RGB where the metadata says YBR.
  if (/^MONOCHROME/.test(str(series.instances[0], Tag.PhotometricInterpretation)) && params.get('firstFrame') !== 'stored') {
    decodeOnServer(series.imageIds[0]);
  }
  state.marks.frameRequested = performance.now();
  await useFrameOfPreview(series.imageIds[0]);
  // A failure is reported by IMAGE_LOAD_ERROR and met again by setStack.
  imageLoader.loadAndCacheImage(series.imageIds[0]).catch(() => undefined);
}

/**
 * The first frame's bytes, when entry.ts fetched them for its preview, go to the image loader
 * without a second request: the wadors loader first asks the metadata providers for the frame's
 * `compressedFrameData` (its "compressed frame registry") and decodes that instead of fetching.
 */
async function useFrameOfPreview(imageId: string): Promise<void> {
  const frame = await preview.frame;
  if (!frame) return;
  if (`wadors:${frame.url}` !== imageId) {
    dropPreview(); // another series comes first here (several studies): not that image
    return;
  }
  state.marks.previewFrame = performance.now();
  const provider = (type: string, query: string) =>
    type === 'compressedFrameData' && query === imageId
      ? { pixelData: frame.pixelData, transferSyntaxUid: frame.transferSyntax, frameNumber: 1 }
      : undefined;
  metaData.addProvider(provider as never, 10_000);
  // Once loaded the image lives in the cache; were it evicted, it is fetched like any other.
  eventTarget.addEventListener(Enums.Events.IMAGE_LOADED, function gone(evt: Event) {
    if ((evt as CustomEvent<{ image: { imageId: string } }>).detail.image.imageId !== imageId) return;
    metaData.removeProvider(provider as never);
    eventTarget.removeEventListener(Enums.Events.IMAGE_LOADED, gone);
  });
}

async function start(): Promise<void> {
  buildToolbar();
  if (!studyUIDs.length) {
    setStatus('No study given: open one from the worklist.');
    previewReady();
    return;
  }
  // The searches go out first; Cornerstone initialises while they are on the wire.
  const studyFound = client.getStudy(studyUIDs[0]);
  const seriesFound = refreshSeriesList();
  studyFound.catch(() => undefined);
  seriesFound.catch(() => undefined);
  cpuStacks = cpuStacksWanted();
  initCornerstone(cpuStacks);
  state.marks.loaderInit = performance.now();
  // The first frame is asked for (and the decode worker with its codec starts) before the
  // rendering engine is built: its fetch and decode overlap the engine's WebGL set-up. The
  // page's inline script has usually brought the series list and metadata already; if not,
  // the engine does not wait for them.
  const firstAsked = seriesFound.then(requestFirstFrame).catch(() => undefined);
  await Promise.race([firstAsked, new Promise((resolve) => setTimeout(resolve, 30))]);
  // A WebGL engine is built now, its set-up overlapping the requests; a CPU one (cheap) once the
  // series list says whether the study has a SEG.
  if (!cpuStacks) engine = engineFor(false);
  state.marks.init = performance.now();
  try {
    const [ds] = await Promise.all([studyFound, seriesFound]);
    study.ds = ds;
    state.marks.series = performance.now();
    if (cpuStacks) engine = engineFor(false);
  } catch (err) {
    setStatus(`Could not load the study: ${describeError(err)}`);
    dropPreview();
    previewReady();
    state.errors.push(describeError(err));
    return;
  }
  document.querySelector('#study-title')!.textContent = [
    formatName(str(study.ds, Tag.PatientName)),
    str(study.ds, Tag.PatientID),
    formatDate(str(study.ds, Tag.StudyDate)),
    str(study.ds, Tag.StudyDescription),
  ]
    .filter(Boolean)
    .join(' · ');
  document.title = `RadSight - ${formatName(str(study.ds, Tag.PatientName)) || 'viewer'}`;
  if (!seriesList.length) {
    setStatus('This study has no series.');
  }
  if (studyUIDs.length === 1) {
    // The reading workflow (claim, heartbeat, release, sign-off, priority, alerts) is per study.
    state.reading = { claim: 'none', holder: null, heartbeats: 0, signed: false, lastError: '' };
    const readingState = state.reading;
    void import('./reading').then((m) =>
      m.initReading(
        {
          studyUID: studyUIDs[0],
          findings: async () => (await ai()).currentFindings(),
          toast,
        },
        readingState,
      ),
    );
  }
  await applyLayout(layout);
  // No image to wait for (a study of SRs only, a series that failed): the tools now.
  if (!slots.some((s) => s.series && !s.series.notImage && s.series.imageIds.length)) {
    dropPreview();
    void toolsNow().then(previewReady);
  }
  // and in any case (an image that never renders)
  else setTimeout(() => void toolsNow().then(previewReady), 5000);
  new ResizeObserver(() => engine.resize(true, true)).observe(grid);
}

void start();
