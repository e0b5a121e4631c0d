// DICOM SEG (BINARY, FRACTIONAL or LABELMAP) as Cornerstone3D labelmap overlays: a worker
// (segWorker.ts / segDecode.ts) parses the Part 10 object, unpacks its frames and maps them to
// the source slices; the page copies whole planes into labelmap images (a few ms at a time).
// SEGs the worker does not read (compressed, frames off the source plane) go through the
// Cornerstone SEG adapter as before. The segmentation state API draws them on stack and volume
// (MPR) viewports with per-segment colour and visibility.
import { imageLoader, metaData } from '@cornerstonejs/core';
import * as tools from '@cornerstonejs/tools';
import { data } from 'dcmjs';
import type { DecodedSeg, SegSource } from './segDecode';
import type { SegWorkerReply, SegWorkerRequest } from './segWorker';

const Labelmap = tools.Enums.SegmentationRepresentations.Labelmap;
const { segmentation } = tools;

export interface Segment {
  index: number;
  label: string;
  color: [number, number, number];
  visible: boolean;
}

export interface AiSegmentation {
  segmentationId: string;
  sop: string;
  seriesUID: string;
  /** The displayed image series the labelmap images were made for. */
  sourceSeriesUID: string;
  label: string;
  segments: Segment[];
  opacity: number;
  viewports: Set<string>;
}

// Colours for segments without RecommendedDisplayCIELabValue.
const PALETTE: [number, number, number][] = [
  [255, 64, 64], [64, 200, 255], [255, 200, 0], [120, 255, 90], [220, 90, 255], [255, 140, 40],
];

function labToRgb(lab: number[] | undefined, i: number): [number, number, number] {
  const colors = (data as unknown as { Colors?: { dicomlab2RGB(v: number[]): number[] } }).Colors;
  if (!lab || lab.length !== 3 || !colors) return PALETTE[i % PALETTE.length];
  const rgb = colors.dicomlab2RGB(lab.map(Number));
  return rgb.map((v) => Math.max(0, Math.min(255, Math.round(v * 255)))) as [number, number, number];
}

type SegMeta = { SegmentNumber: number; SegmentLabel?: string; RecommendedDisplayCIELabValue?: number[] };

/** How the last SEG was decoded (test hook / measurements). */
export interface SegDecodeStats {
  path: 'worker' | 'adapter';
  /** Worker time (parse, unpack, map), off the main thread. */
  workerMs?: number;
  /** Main-thread time spent building labelmap images, in slices of at most ~8 ms. */
  buildMs?: number;
  fallback?: string;
}

// `?segWorker=0` in the page URL forces the adapter path (for before / after measurements).
const useWorker = new URLSearchParams(location.search).get('segWorker') !== '0';
let worker: Worker | undefined;
let nextId = 1;
const pending = new Map<number, (r: SegWorkerReply) => void>();

function segWorker(): Worker {
  if (!worker) {
    worker = new Worker(new URL('./segWorker.ts', import.meta.url), { type: 'module', name: 'radsight-seg' });
    worker.onmessage = (e: MessageEvent<SegWorkerReply>) => {
      pending.get(e.data.id)?.(e.data);
      pending.delete(e.data.id);
    };
  }
  return worker;
}

/** Start the decoder worker early (module fetch and compile off the critical path). */
export function warmSegWorker(): void {
  if (useWorker && typeof Worker !== 'undefined') segWorker();
}

function decodeInWorker(part10: ArrayBuffer, source: SegSource): Promise<SegWorkerReply> {
  const id = nextId++;
  return new Promise((resolve, reject) => {
    const w = segWorker();
    pending.set(id, resolve);
    w.onerror = (e) => reject(new Error(`SEG worker: ${e.message}`));
    w.postMessage({ id, part10, source } satisfies SegWorkerRequest, [part10]);
  });
}

/** The source series' geometry, as the worker needs it. */
function sourceGeometry(imageIds: string[]): SegSource {
  type Plane = { rows: number; columns: number; imageOrientationPatient: number[]; imagePositionPatient: number[] };
  const plane0 = metaData.get('imagePlaneModule', imageIds[0]) as Plane;
  return {
    rows: plane0.rows,
    columns: plane0.columns,
    orientation: [...plane0.imageOrientationPatient].map(Number),
    slices: imageIds.map((id) => ({
      sop: (metaData.get('generalImageModule', id) as { sopInstanceUID?: string } | undefined)?.sopInstanceUID ?? '',
      frame: Number(/\/frames\/(\d+)/.exec(id)?.[1] ?? 1),
      position: [...((metaData.get('imagePlaneModule', id) as Plane | undefined)?.imagePositionPatient ?? [0, 0, 0])].map(Number),
    })),
  };
}

const yieldToPage = (): Promise<void> => {
  const s = (globalThis as unknown as { scheduler?: { yield?: () => Promise<void> } }).scheduler;
  return s?.yield ? s.yield() : new Promise((r) => setTimeout(r, 0));
};

/** One labelmap image per source image, the decoded planes copied in whole, in slices of the
 * main thread of at most ~8 ms so that the page keeps painting. */
async function labelmapImages(sourceImageIds: string[], d: DecodedSeg): Promise<string[]> {
  const planeOf = new Map<number, number>();
  d.sliceIndices.forEach((src, plane) => planeOf.set(src, plane));
  const len = d.rows * d.columns;
  const out: string[] = [];
  let until = performance.now() + 8;
  for (let i = 0; i < sourceImageIds.length; i++) {
    const image = imageLoader.createAndCacheDerivedLabelmapImage(sourceImageIds[i]);
    const plane = planeOf.get(i);
    if (plane !== undefined) (image.getPixelData() as Uint8Array).set(d.labels.subarray(plane * len, (plane + 1) * len));
    out.push(image.imageId);
    if (performance.now() > until) {
      await yieldToPage();
      until = performance.now() + 8;
    }
  }
  return out;
}

type Decoded = { imageIds: string[]; segments: { number: number; label: string; lab?: number[] }[] };

/** The Cornerstone adapter on the main thread (any SEG it reads: compressed, other planes). */
async function decodeWithAdapter(part10: ArrayBuffer, sourceImageIds: string[]): Promise<Decoded> {
  const { adaptersSEG } = await import('@cornerstonejs/adapters');
  const result = await adaptersSEG.Cornerstone3D.Segmentation.createFromDICOMSegBuffer(sourceImageIds, part10, {
    metadataProvider: metaData,
    tolerance: 1e-2,
  });
  // Non-overlapping segments share one group of labelmap images; overlapping ones get more
  // groups. One representation per group would be needed to show overlaps; the first group
  // holds every segment that does not overlap another.
  const groups = result.labelMapImages as { imageId: string }[][];
  const imageIds = (Array.isArray(groups[0]) ? groups[0] : (groups as unknown as { imageId: string }[])).map((i) => i.imageId);
  const segments = (result.segMetadata.data as (SegMeta | undefined)[]).flatMap((s, i) =>
    !s || i === 0 ? [] : [{ number: s.SegmentNumber ?? i, label: s.SegmentLabel ?? `Segment ${i}`, lab: s.RecommendedDisplayCIELabValue }],
  );
  return { imageIds, segments };
}

/** Decode a SEG against the imageIds of its source series and register it (not yet shown):
 * in the worker (segWorker.ts) where it can, else with the adapter. */
export async function createSegmentation(
  part10: ArrayBuffer,
  sourceImageIds: string[],
  ids: { sop: string; seriesUID: string; sourceSeriesUID: string; label: string },
  stats?: (s: SegDecodeStats) => void,
): Promise<AiSegmentation> {
  let decoded: Decoded | undefined;
  let fallback: string | undefined;
  if (useWorker && typeof Worker !== 'undefined') {
    performance.mark('seg:decode-start');
    const reply = await decodeInWorker(part10, sourceGeometry(sourceImageIds));
    performance.mark('seg:worker-reply');
    if (reply.ok) {
      const t0 = performance.now();
      const imageIds = await labelmapImages(sourceImageIds, reply.result);
      decoded = { imageIds, segments: reply.result.segments };
      stats?.({ path: 'worker', workerMs: Math.round(reply.ms), buildMs: Math.round(performance.now() - t0) });
    } else {
      if (!reply.unsupported) console.warn(`SEG worker: ${reply.message}; decoding on the page`);
      fallback = reply.message;
      part10 = reply.part10;
    }
  }
  if (!decoded) {
    decoded = await decodeWithAdapter(part10, sourceImageIds);
    stats?.({ path: 'adapter', fallback });
  }
  const segments: Segment[] = decoded.segments.map((s, i) => ({
    index: s.number,
    label: s.label,
    color: labToRgb(s.lab, i),
    visible: true,
  }));
  const segmentationId = `seg:${ids.sop}:${ids.sourceSeriesUID}`;
  performance.mark('seg:images-built');
  segmentation.addSegmentations([
    {
      segmentationId,
      representation: { type: Labelmap, data: { imageIds: decoded.imageIds } },
      config: {
        label: ids.label,
        segments: Object.fromEntries(segments.map((s) => [s.index, { segmentIndex: s.index, label: s.label }])),
      },
    },
  ]);
  performance.mark('seg:registered');
  return { segmentationId, ...ids, segments, opacity: 0.5, viewports: new Set() };
}

/** Show `seg` in a viewport (stack or volume) with its colours, visibility and opacity. */
export async function showInViewport(seg: AiSegmentation, viewportId: string): Promise<void> {
  // Viewport ids are reused across layouts: ask the segmentation state, not a local record.
  const shown = segmentation.state.getSegmentationRepresentations(viewportId, { segmentationId: seg.segmentationId, type: Labelmap });
  if (!shown?.length) {
    performance.mark('seg:add-representation');
    await segmentation.addLabelmapRepresentationToViewport(viewportId, [{ segmentationId: seg.segmentationId }]);
    performance.mark('seg:representation-added');
  }
  seg.viewports.add(viewportId);
  applyStyle(seg, viewportId);
}

export function applyStyle(seg: AiSegmentation, viewportId?: string): void {
  for (const vp of viewportId ? [viewportId] : [...seg.viewports]) {
    for (const s of seg.segments) {
      segmentation.config.color.setSegmentIndexColor(vp, seg.segmentationId, s.index, [...s.color, 255]);
      segmentation.config.visibility.setSegmentIndexVisibility(vp, { segmentationId: seg.segmentationId, type: Labelmap }, s.index, s.visible);
    }
    segmentation.config.style.setStyle(
      { viewportId: vp, segmentationId: seg.segmentationId, type: Labelmap },
      { fillAlpha: seg.opacity, fillAlphaInactive: seg.opacity, outlineOpacity: Math.min(1, seg.opacity * 2), renderOutline: true },
    );
  }
}

/** Viewports that went away (a layout change) no longer hold the representation. */
export function forgetViewport(seg: AiSegmentation, viewportId: string): void {
  seg.viewports.delete(viewportId);
}
