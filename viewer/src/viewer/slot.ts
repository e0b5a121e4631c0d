// One viewport of the grid: its elements (Cornerstone element, corner text, message, slice
// slider), its listeners, and which one is active.
import { Enums, type StackViewport, utilities } from '@cornerstonejs/core';
import { imageDrawn } from './progress';
import { type Slot, dom, state } from './state';
import { updateOverlay } from './viewportText';

/** The drag type of a series dragged from the series panel. */
export const SERIES_DRAG_TYPE = 'application/x-radsight-series';

/** Viewport `i`'s elements and listeners; `onDropSeries` shows a series dropped on it. */
export function makeSlot(i: number, onDropSeries: (i: number, seriesUID: string) => void): Slot {
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
    const vp = state.engine.getViewport(slot.id);
    if (vp) void utilities.jumpToSlice(csEl, { imageIndex: Number(scroll.value) });
  });
  // Drag a series from the panel onto a viewport.
  el.addEventListener('dragover', (e) => {
    if (!e.dataTransfer?.types.includes(SERIES_DRAG_TYPE)) return;
    e.preventDefault();
    el.classList.add('drop-target');
  });
  el.addEventListener('dragleave', () => el.classList.remove('drop-target'));
  el.addEventListener('drop', (e) => {
    el.classList.remove('drop-target');
    const uid = e.dataTransfer?.getData(SERIES_DRAG_TYPE);
    if (!uid) return;
    e.preventDefault();
    setActive(i);
    onDropSeries(i, uid);
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
  csEl.addEventListener(Enums.Events.IMAGE_RENDERED, () => imageDrawn(slot));
  return slot;
}

/** Make viewport `i` the active one (keys and toolbar act on it); its series lit in the panel. */
export function setActive(i: number): void {
  state.active = i;
  state.slots.forEach((s, j) => s.el.classList.toggle('active', j === i));
  const uid = state.slots[i]?.series?.seriesUID;
  for (const item of dom.seriesPanel.querySelectorAll<HTMLElement>('.series-item')) {
    item.classList.toggle('active', item.dataset.seriesUid === uid);
  }
}

/** Cornerstone's CPU path (StackViewport._updateToDisplayImageCPU in 5.14) keeps drawing the
 * previous slice's window on a new slice but sets the viewport's reported window to the new
 * image's own, so the overlay showed a window that was not drawn and a W/L drag jumped from it.
 * Give the viewport back the window it draws. (WebGL stacks keep a window the reader chose.) */
function keepDrawnWindow(slot: Slot): void {
  const vp = state.engine.getViewport(slot.id) as StackViewport | undefined;
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
