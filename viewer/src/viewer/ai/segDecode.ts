// A DICOM SEG (BINARY bit-packed, FRACTIONAL, or LABELMAP, native transfer syntax) decoded into
// one 8-bit label slice per source image that has segment voxels: the Part 10 parse, the
// bit-unpacking and the frame -> source slice mapping (referenced SOP Instance + frame, else the
// frame's position along the slice normal). Runs in segWorker.ts, off the main thread; anything
// it does not handle throws SegUnsupported and the caller falls back to the Cornerstone adapter.
import { data } from 'dcmjs';

export interface SourceSlice {
  sop: string;
  frame: number;
  position: number[];
}

export interface SegSource {
  rows: number;
  columns: number;
  orientation: number[];
  slices: SourceSlice[];
}

export interface DecodedSegment {
  number: number;
  label: string;
  lab?: number[];
}

export interface DecodedSeg {
  rows: number;
  columns: number;
  segments: DecodedSegment[];
  /** Source slice indices that have voxels, in the order of their planes in `labels`. */
  sliceIndices: Int32Array;
  /** sliceIndices.length planes of rows * columns segment numbers (0 = background). */
  labels: Uint8Array;
  /** Frames whose source slice was not found; voxels where two segments overlap (last wins). */
  unmatchedFrames: number;
  overlapping: number;
}

export class SegUnsupported extends Error {}

type Ds = Record<string, unknown>;
const first = (v: unknown): Ds | undefined => (Array.isArray(v) ? (v[0] as Ds | undefined) : (v as Ds | undefined));
const nums = (v: unknown): number[] => (Array.isArray(v) ? v.map(Number) : v === undefined ? [] : [Number(v)]);

const NATIVE = new Set(['1.2.840.10008.1.2', '1.2.840.10008.1.2.1', '1.2.840.10008.1.2.2', '1.2.840.10008.1.2.1.99']);
const LABELMAP_SEG = '1.2.840.10008.5.1.4.1.1.66.7';

function cross(a: number[], b: number[]): number[] {
  return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
}
const dot = (a: number[], b: number[]) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];

export function decodeSeg(part10: ArrayBuffer, source: SegSource, tolerance = 1e-2): DecodedSeg {
  const { DicomMessage, DicomMetaDictionary } = data as unknown as {
    DicomMessage: { readFile(b: ArrayBuffer): { dict: Ds; meta: Ds } };
    DicomMetaDictionary: { naturalizeDataset(d: Ds): Ds };
  };
  const file = DicomMessage.readFile(part10);
  const ts = String(((file.meta['00020010'] as { Value?: unknown[] } | undefined)?.Value ?? [])[0] ?? '');
  if (!NATIVE.has(ts)) throw new SegUnsupported(`transfer syntax ${ts}`);
  const ds = DicomMetaDictionary.naturalizeDataset(file.dict);
  const rows = Number(ds.Rows);
  const columns = Number(ds.Columns);
  if (rows !== source.rows || columns !== source.columns) throw new SegUnsupported('SEG and source sizes differ');
  const bits = Number(ds.BitsAllocated);
  const type = String(ds.SegmentationType ?? '');
  const labelmap = ds.SOPClassUID === LABELMAP_SEG || type === 'LABELMAP';
  const perFrame = (Array.isArray(ds.PerFrameFunctionalGroupsSequence) ? ds.PerFrameFunctionalGroupsSequence : [ds.PerFrameFunctionalGroupsSequence]) as Ds[];
  const shared = first(ds.SharedFunctionalGroupsSequence) ?? {};
  const nFrames = Number(ds.NumberOfFrames) || perFrame.length || 1;
  const sliceLen = rows * columns;

  const sharedIop = nums(first(shared.PlaneOrientationSequence)?.ImageOrientationPatient);
  const normal = cross(source.orientation.slice(0, 3), source.orientation.slice(3, 6));
  const sameOrientation = (iop: number[]) => iop.length !== 6 || iop.every((v, i) => Math.abs(v - source.orientation[i]) < tolerance);
  if (!sameOrientation(sharedIop)) throw new SegUnsupported('SEG frames not in the source plane');

  // Source slice lookup: by SOP Instance (+ frame), else by distance along the normal.
  const bySop = new Map<string, number>();
  source.slices.forEach((s, i) => bySop.set(`${s.sop}|${s.frame}`, i));
  const depths = source.slices.map((s) => dot(s.position, normal));
  const spacing = depths.length > 1 ? Math.abs(depths[1] - depths[0]) || 1 : 1;

  const segments: DecodedSegment[] = ((Array.isArray(ds.SegmentSequence) ? ds.SegmentSequence : [ds.SegmentSequence]) as Ds[])
    .filter(Boolean)
    // A LABELMAP SEG may describe its background as segment 0: not a segment to draw.
    .filter((s) => Number(s.SegmentNumber) > 0)
    .map((s) => ({
      number: Number(s.SegmentNumber),
      label: String(s.SegmentLabel ?? `Segment ${s.SegmentNumber}`),
      lab: s.RecommendedDisplayCIELabValue ? nums(s.RecommendedDisplayCIELabValue) : undefined,
    }));
  if (segments.some((s) => s.number > 255)) throw new SegUnsupported('more than 255 segments');

  const pd = ds.PixelData as ArrayBuffer | ArrayBuffer[] | undefined;
  const buffer = Array.isArray(pd) ? pd[0] : pd;
  if (!buffer) throw new SegUnsupported('no pixel data');
  const bytes = new Uint8Array(buffer);
  const maxFractional = Number(ds.MaximumFractionalValue) || 255;

  // Which source slice each frame goes to, and which segment it is.
  const target = new Int32Array(nFrames).fill(-1);
  const segOfFrame = new Uint8Array(nFrames);
  let unmatchedFrames = 0;
  for (let f = 0; f < nFrames; f++) {
    const g = first(perFrame[f]) ?? {};
    const iop = nums(first(g.PlaneOrientationSequence)?.ImageOrientationPatient);
    if (!sameOrientation(iop)) throw new SegUnsupported('SEG frames not in the source plane');
    segOfFrame[f] = labelmap ? 0 : Number(first(g.SegmentIdentificationSequence)?.ReferencedSegmentNumber ?? 1);
    let idx = -1;
    const src = first(first(g.DerivationImageSequence)?.SourceImageSequence);
    if (src?.ReferencedSOPInstanceUID) {
      idx = bySop.get(`${src.ReferencedSOPInstanceUID}|${Number(src.ReferencedFrameNumber ?? 1)}`) ?? bySop.get(`${src.ReferencedSOPInstanceUID}|1`) ?? -1;
    }
    const ipp = nums(first(g.PlanePositionSequence)?.ImagePositionPatient);
    if (idx < 0 && ipp.length === 3) {
      const d = dot(ipp, normal);
      let best = Infinity;
      depths.forEach((x, i) => {
        if (Math.abs(x - d) < best) {
          best = Math.abs(x - d);
          idx = i;
        }
      });
      if (best > spacing * 0.5) idx = -1;
    }
    if (idx < 0) unmatchedFrames++;
    target[f] = idx;
  }

  // One plane per source slice that gets a frame.
  const planeOf = new Map<number, number>();
  for (const idx of target) if (idx >= 0 && !planeOf.has(idx)) planeOf.set(idx, planeOf.size);
  const sliceIndices = Int32Array.from([...planeOf.keys()]);
  const labels = new Uint8Array(sliceIndices.length * sliceLen);
  let overlapping = 0;
  for (let f = 0; f < nFrames; f++) {
    const idx = target[f];
    if (idx < 0) continue;
    const out = labels.subarray(planeOf.get(idx)! * sliceLen, (planeOf.get(idx)! + 1) * sliceLen);
    const seg = segOfFrame[f];
    if (bits === 1) {
      // Bit-packed across the whole Pixel Data, least significant bit first; frames are not
      // padded to a byte boundary.
      const startBit = f * sliceLen;
      for (let k = 0; k < sliceLen; k++) {
        const bit = startBit + k;
        if ((bytes[bit >> 3] >> (bit & 7)) & 1) {
          if (out[k] && out[k] !== seg) overlapping++;
          out[k] = seg;
        }
      }
    } else if (bits === 8) {
      const frame = bytes.subarray(f * sliceLen, (f + 1) * sliceLen);
      if (labelmap) {
        for (let k = 0; k < sliceLen; k++) if (frame[k]) out[k] = frame[k];
      } else {
        // FRACTIONAL: shown where the value is at least half the maximum.
        const half = maxFractional / 2;
        for (let k = 0; k < sliceLen; k++) {
          if (frame[k] >= half) {
            if (out[k] && out[k] !== seg) overlapping++;
            out[k] = seg;
          }
        }
      }
    } else {
      throw new SegUnsupported(`BitsAllocated ${bits}`);
    }
  }
  return { rows, columns, segments, sliceIndices, labels, unmatchedFrames, overlapping };
}
