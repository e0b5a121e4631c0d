// What a viewport says in words: the four corners (patient and study, series, slice, window and
// zoom) and its message box ("Loading…", errors, "not an image").
import type { StackViewport } from '@cornerstonejs/core';
import { Tag, formatDate, formatName, str } from '../dicomweb';
import { type Slot, state } from './state';

function fmt(n: number | undefined, digits = 0): string {
  return n === undefined || !Number.isFinite(n) ? '' : n.toFixed(digits);
}

export function showMessage(slot: Slot, text: string, error = false): void {
  slot.msg.hidden = !text;
  slot.msg.textContent = text;
  slot.msg.classList.toggle('error', error);
}

/** Patient, ID, date and description of the first study, as the title and the corners show them. */
export function studyLines(): string[] {
  const ds = state.study;
  return [formatName(str(ds, Tag.PatientName)), str(ds, Tag.PatientID), formatDate(str(ds, Tag.StudyDate)), str(ds, Tag.StudyDescription)].filter(Boolean);
}

export function updateOverlay(slot: Slot): void {
  const s = slot.series;
  const vp = state.engine.getViewport(slot.id) as StackViewport | undefined;
  slot.ov.tl.textContent = studyLines().join('\n');
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
