// What the toolbar and keys do to the active viewport: window presets, invert, rotate, flip,
// reset, scrolling.
import { type StackViewport, utilities } from '@cornerstonejs/core';
import { activeSlot, activeViewport } from './state';

export const PRESETS: { label: string; ww: number; wc: number; key: string }[] = [
  { label: 'Soft tissue', ww: 400, wc: 40, key: '1' },
  { label: 'Lung', ww: 1500, wc: -600, key: '2' },
  { label: 'Bone', ww: 2000, wc: 300, key: '3' },
  { label: 'Brain', ww: 80, wc: 40, key: '4' },
];

function activeStack(): StackViewport | undefined {
  return activeViewport() as StackViewport | undefined;
}

export function setWindow(ww: number, wc: number): void {
  const vp = activeStack();
  if (!vp) return;
  vp.setProperties({ voiRange: utilities.windowLevel.toLowHighRange(ww, wc) });
  vp.render();
}

/** MR and other modalities: back to the image's own window (or its pixel range). */
export function autoWindow(): void {
  const vp = activeStack();
  if (!vp) return;
  const invert = vp.getProperties()?.invert;
  vp.resetProperties();
  if (invert) vp.setProperties({ invert });
  vp.render();
}

export function invert(): void {
  const vp = activeStack();
  if (!vp) return;
  vp.setProperties({ invert: !vp.getProperties()?.invert });
  vp.render();
}

export function resetView(): void {
  const vp = activeStack();
  if (!vp) return;
  vp.resetCamera();
  vp.resetProperties();
  vp.setViewPresentation({ rotation: 0, flipHorizontal: false, flipVertical: false });
  vp.render();
}

export function rotate(): void {
  const vp = activeViewport();
  if (!vp) return;
  vp.setViewPresentation({ rotation: ((vp.getRotation() ?? 0) + 90) % 360 });
  vp.render();
}

export function flip(horizontal: boolean): void {
  const vp = activeViewport();
  if (!vp) return;
  const cam = vp.getCamera();
  vp.setCamera(horizontal ? { flipHorizontal: !cam.flipHorizontal } : { flipVertical: !cam.flipVertical });
  vp.render();
}

export function scrollBy(delta: number): void {
  const vp = activeViewport();
  if (vp) utilities.scroll(vp, { delta });
}

export function jumpTo(end: 'first' | 'last'): void {
  const slot = activeSlot();
  const vp = activeViewport();
  if (!slot || !vp) return;
  void utilities.jumpToSlice(slot.csEl, { imageIndex: end === 'first' ? 0 : vp.getNumberOfSlices() - 1 });
}
