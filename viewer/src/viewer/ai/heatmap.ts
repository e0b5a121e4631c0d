// Parametric Maps (float probabilities / heatmaps) as a colour-mapped overlay: each frame is a
// plane in patient space; the frame on the viewport's plane is colour-mapped once (per
// threshold) into an offscreen canvas and drawn through the viewport's world-to-canvas
// transform, so pan, zoom, rotation and flips follow. No second volume is loaded: the map is
// decoded once (typed-array views, no per-voxel work until a frame is shown).
import { type Types, metaData } from '@cornerstonejs/core';
import { data } from 'dcmjs';

type V3 = [number, number, number];

export interface Heatmap {
  sop: string;
  seriesUID: string;
  label: string;
  rows: number;
  cols: number;
  frames: { position: V3; values: Float32Array }[];
  row: V3; // direction of increasing column
  col: V3; // direction of increasing row
  normal: V3;
  spacing: [number, number]; // [between rows, between columns]
  thickness: number;
  min: number;
  max: number;
  opacity: number;
  /** Values below this (in the map's units) are transparent. */
  threshold: number;
  visible: boolean;
  cache: Map<number, { threshold: number; canvas: HTMLCanvasElement }>;
}

const dot = (a: number[], b: number[]) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
const cross = (a: number[], b: number[]): V3 => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];

type Nat = Record<string, unknown>;
const first = (v: unknown): Nat | undefined => (Array.isArray(v) ? (v[0] as Nat) : (v as Nat | undefined));

function frameValues(ds: Nat, rows: number, cols: number, n: number): Float32Array[] {
  const per = rows * cols;
  const raw = (ds.FloatPixelData ?? ds.DoubleFloatPixelData ?? ds.PixelData) as ArrayBuffer | ArrayBuffer[] | undefined;
  if (!raw) throw new Error('the parametric map has no pixel data');
  const buffers = Array.isArray(raw) ? raw : [raw];
  const joined = buffers.length === 1 ? new Uint8Array(buffers[0]) : new Uint8Array(buffers.reduce((a, b) => a + b.byteLength, 0));
  if (buffers.length > 1) {
    let o = 0;
    for (const b of buffers) {
      joined.set(new Uint8Array(b), o);
      o += b.byteLength;
    }
  }
  const buf = joined.buffer.slice(joined.byteOffset, joined.byteOffset + joined.byteLength);
  let all: Float32Array;
  if (ds.FloatPixelData) all = new Float32Array(buf);
  else if (ds.DoubleFloatPixelData) all = Float32Array.from(new Float64Array(buf));
  else {
    // Integer maps: the Real World Value Mapping gives the values.
    const bits = Number(ds.BitsAllocated ?? 16);
    const signed = Number(ds.PixelRepresentation ?? 0) === 1;
    const ints = bits === 8 ? new Uint8Array(buf) : signed ? new Int16Array(buf) : new Uint16Array(buf);
    const rwvm = first(first((ds.SharedFunctionalGroupsSequence as Nat[] | undefined)?.[0] ?? ds.SharedFunctionalGroupsSequence)?.RealWorldValueMappingSequence);
    const slope = Number(rwvm?.RealWorldValueSlope ?? 1);
    const intercept = Number(rwvm?.RealWorldValueIntercept ?? 0);
    all = Float32Array.from(ints, (v) => v * slope + intercept);
  }
  return Array.from({ length: n }, (_, f) => all.subarray(f * per, (f + 1) * per));
}

export function parseParametricMap(part10: ArrayBuffer, ids: { sop: string; seriesUID: string; label: string }): Heatmap {
  const ds = data.DicomMetaDictionary.naturalizeDataset(data.DicomMessage.readFile(part10).dict) as Nat;
  const rows = Number(ds.Rows);
  const cols = Number(ds.Columns);
  const n = Number(ds.NumberOfFrames ?? 1);
  const shared = first(ds.SharedFunctionalGroupsSequence) ?? {};
  const perFrame = (Array.isArray(ds.PerFrameFunctionalGroupsSequence) ? ds.PerFrameFunctionalGroupsSequence : [ds.PerFrameFunctionalGroupsSequence]) as Nat[];
  const get = (f: number, seq: string, attr: string): number[] | undefined => {
    const v = first(first(perFrame[f])?.[seq])?.[attr] ?? first(shared[seq])?.[attr];
    return v === undefined ? undefined : (Array.isArray(v) ? v : [v]).map(Number);
  };
  const iop = get(0, 'PlaneOrientationSequence', 'ImageOrientationPatient') ?? [1, 0, 0, 0, 1, 0];
  const spacing = (get(0, 'PixelMeasuresSequence', 'PixelSpacing') ?? [1, 1]) as [number, number];
  const thickness = get(0, 'PixelMeasuresSequence', 'SliceThickness')?.[0] ?? get(0, 'PixelMeasuresSequence', 'SpacingBetweenSlices')?.[0] ?? 1;
  const row = iop.slice(0, 3) as V3;
  const col = iop.slice(3, 6) as V3;
  const values = frameValues(ds, rows, cols, n);
  let min = Infinity;
  let max = -Infinity;
  for (const v of values) {
    for (let i = 0; i < v.length; i++) {
      const x = v[i];
      if (x < min) min = x;
      if (x > max) max = x;
    }
  }
  if (!(max > min)) max = min + 1;
  return {
    ...ids,
    rows,
    cols,
    frames: values.map((v, f) => ({ position: (get(f, 'PlanePositionSequence', 'ImagePositionPatient') ?? [0, 0, 0]) as V3, values: v })),
    row,
    col,
    normal: cross(row, col),
    spacing,
    thickness,
    min,
    max,
    opacity: 0.5,
    threshold: min + (max - min) * 0.05,
    visible: true,
    cache: new Map(),
  };
}

// 'jet' colour map, 256 entries.
const JET = (() => {
  const lut = new Uint8ClampedArray(256 * 3);
  for (let i = 0; i < 256; i++) {
    const x = i / 255;
    const c = (o: number) => Math.max(0, Math.min(1, 1.5 - Math.abs(4 * x - o)));
    lut[i * 3] = c(3) * 255;
    lut[i * 3 + 1] = c(2) * 255;
    lut[i * 3 + 2] = c(1) * 255;
  }
  return lut;
})();

function frameCanvas(h: Heatmap, f: number): HTMLCanvasElement {
  const hit = h.cache.get(f);
  if (hit && hit.threshold === h.threshold) return hit.canvas;
  const canvas = hit?.canvas ?? document.createElement('canvas');
  canvas.width = h.cols;
  canvas.height = h.rows;
  const ctx = canvas.getContext('2d')!;
  const img = ctx.createImageData(h.cols, h.rows);
  const out = img.data;
  const v = h.frames[f].values;
  const scale = 255 / (h.max - h.min);
  for (let i = 0; i < v.length; i++) {
    const x = v[i];
    if (!(x >= h.threshold)) continue; // NaN and below threshold stay transparent
    const k = Math.max(0, Math.min(255, ((x - h.min) * scale) | 0)) * 3;
    const o = i * 4;
    out[o] = JET[k];
    out[o + 1] = JET[k + 1];
    out[o + 2] = JET[k + 2];
    out[o + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  h.cache.set(f, { threshold: h.threshold, canvas });
  return canvas;
}

/** The frame lying on the viewport's current plane, if any. */
function frameOnPlane(h: Heatmap, vp: Types.IViewport, imageId: string | undefined): number {
  let point: number[] | undefined;
  let normal: number[] | undefined;
  const plane = imageId ? (metaData.get('imagePlaneModule', imageId) as { imagePositionPatient?: number[]; rowCosines?: number[]; columnCosines?: number[] } | undefined) : undefined;
  if (plane?.imagePositionPatient && plane.rowCosines && plane.columnCosines) {
    point = plane.imagePositionPatient;
    normal = cross(plane.rowCosines, plane.columnCosines);
  } else {
    const cam = vp.getCamera();
    point = cam.focalPoint;
    normal = cam.viewPlaneNormal;
  }
  if (!point || !normal || Math.abs(dot(normal, h.normal)) < 0.99) return -1;
  let best = -1;
  let bestD = Math.max(h.thickness / 2, 0.01) + 1e-3;
  h.frames.forEach((fr, f) => {
    const d = Math.abs(dot(h.normal, [point[0] - fr.position[0], point[1] - fr.position[1], point[2] - fr.position[2]]));
    if (d < bestD) {
      bestD = d;
      best = f;
    }
  });
  return best;
}

/** Draw the heatmap frame on the viewport's plane into `ctx` (CSS-pixel coordinates). */
export function drawHeatmap(ctx: CanvasRenderingContext2D, h: Heatmap, vp: Types.IViewport, imageId: string | undefined): boolean {
  if (!h.visible) return false;
  const f = frameOnPlane(h, vp, imageId);
  if (f < 0) return false;
  const p = h.frames[f].position;
  const [dy, dx] = h.spacing;
  const at = (i: number, j: number) =>
    vp.worldToCanvas([
      p[0] + h.row[0] * dx * i + h.col[0] * dy * j,
      p[1] + h.row[1] * dx * i + h.col[1] * dy * j,
      p[2] + h.row[2] * dx * i + h.col[2] * dy * j,
    ] as Types.Point3);
  // Pixel (0, 0)'s centre is at p: the canvas's corner is half a pixel before it.
  const o = at(-0.5, -0.5);
  const a = at(0.5, -0.5);
  const b = at(-0.5, 0.5);
  ctx.save();
  ctx.globalAlpha = h.opacity;
  ctx.imageSmoothingEnabled = false;
  ctx.transform(a[0] - o[0], a[1] - o[1], b[0] - o[0], b[1] - o[1], o[0], o[1]);
  ctx.drawImage(frameCanvas(h, f), 0, 0);
  ctx.restore();
  return true;
}
