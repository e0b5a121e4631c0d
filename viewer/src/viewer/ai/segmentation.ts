// DICOM SEG (BINARY or LABELMAP) as Cornerstone3D labelmap overlays: the SEG adapter turns the
// Part 10 object into labelmap images aligned with the source images; the segmentation state
// API draws them on stack and volume (MPR) viewports with per-segment colour and visibility.
import { adaptersSEG } from '@cornerstonejs/adapters';
import { metaData } from '@cornerstonejs/core';
import * as tools from '@cornerstonejs/tools';
import { data } from 'dcmjs';

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

/** Decode a SEG against the imageIds of its source series and register it (not yet shown). */
export async function createSegmentation(
  part10: ArrayBuffer,
  sourceImageIds: string[],
  ids: { sop: string; seriesUID: string; sourceSeriesUID: string; label: string },
): Promise<AiSegmentation> {
  const result = await adaptersSEG.Cornerstone3D.Segmentation.createFromDICOMSegBuffer(sourceImageIds, part10, {
    metadataProvider: metaData,
    tolerance: 1e-2,
  });
  // Non-overlapping segments share one group of labelmap images; overlapping ones get more
  // groups. One representation per group would be needed to show overlaps; the first group
  // holds every segment that does not overlap another.
  const groups = result.labelMapImages as { imageId: string }[][];
  const imageIds = (Array.isArray(groups[0]) ? groups[0] : (groups as unknown as { imageId: string }[])).map((i) => i.imageId);
  const segments: Segment[] = [];
  (result.segMetadata.data as (SegMeta | undefined)[]).forEach((s, i) => {
    if (!s || i === 0) return;
    segments.push({
      index: s.SegmentNumber ?? i,
      label: s.SegmentLabel ?? `Segment ${i}`,
      color: labToRgb(s.RecommendedDisplayCIELabValue, segments.length),
      visible: true,
    });
  });
  const segmentationId = `seg:${ids.sop}:${ids.sourceSeriesUID}`;
  segmentation.addSegmentations([
    {
      segmentationId,
      representation: { type: Labelmap, data: { imageIds } },
      config: {
        label: ids.label,
        segments: Object.fromEntries(segments.map((s) => [s.index, { segmentIndex: s.index, label: s.label }])),
      },
    },
  ]);
  return { segmentationId, ...ids, segments, opacity: 0.5, viewports: new Set() };
}

/** Show `seg` in a viewport (stack or volume) with its colours, visibility and opacity. */
export async function showInViewport(seg: AiSegmentation, viewportId: string): Promise<void> {
  // Viewport ids are reused across layouts: ask the segmentation state, not a local record.
  const shown = segmentation.state.getSegmentationRepresentations(viewportId, { segmentationId: seg.segmentationId, type: Labelmap });
  if (!shown?.length) {
    await segmentation.addLabelmapRepresentationToViewport(viewportId, [{ segmentationId: seg.segmentationId }]);
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
