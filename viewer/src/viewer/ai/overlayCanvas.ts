// The AI overlay canvas over each viewport: the heatmap shown and the findings' boxes / points
// with label and probability (rejected ones dashed grey), drawn through worldToCanvas so they
// follow pan, zoom, rotation and flips.
import { Enums, type StackViewport, type Types, utilities } from '@cornerstonejs/core';
import { Tag, str } from '../../dicomweb';
import type { LoadedSeries } from '../series';
import { aiState } from './aiState';
import { type AiSlot, ai } from './context';
import { fmtValue } from './findingsPanel';
import { drawHeatmap } from './heatmap';

export function ensureOverlayCanvas(slot: AiSlot): HTMLCanvasElement {
  let c = slot.el.querySelector<HTMLCanvasElement>('canvas.ai-overlay');
  if (c) return c;
  c = document.createElement('canvas');
  c.className = 'ai-overlay';
  slot.csEl.after(c);
  slot.csEl.addEventListener(Enums.Events.IMAGE_RENDERED, () => redraw(slot));
  return c;
}

export function redrawAll(): void {
  for (const s of ai.host.slots()) if (s.el.querySelector('canvas.ai-overlay')) redraw(s);
}

export function redraw(slot: AiSlot): void {
  const canvas = slot.el.querySelector<HTMLCanvasElement>('canvas.ai-overlay');
  const vp = ai.host.engine().getViewport(slot.id);
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
  for (const hm of ai.loadedHeatmaps) if (hm.sop === aiState.heatmapShown && drawHeatmap(ctx, hm, vp, imageId)) n++;
  if (imageId && slot.series) n += drawFindingMarks(ctx, vp, imageId, slot.series);
  aiState.drawn[slot.id] = n;
}

function drawFindingMarks(ctx: CanvasRenderingContext2D, vp: Types.IViewport, imageId: string, series: LoadedSeries): number {
  const inst = series.metadataByImageId.get(imageId);
  const sop = str(inst, Tag.SOPInstanceUID);
  const frame = Number(/\/frames\/(\d+)$/.exec(imageId)?.[1] ?? 1);
  let n = 0;
  for (const f of ai.findings) {
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
