// Cine: the active viewport's slices in a loop, 15 per second.
import { utilities } from '@cornerstonejs/core';
import { activeViewport, state } from './state';
import { showCine } from './toolbar';

const FRAMES_PER_SECOND = 15;

export function stopCine(): void {
  if (state.cineTimer !== undefined) window.clearInterval(state.cineTimer);
  state.cineTimer = undefined;
  showCine(false);
}

export function toggleCine(): void {
  if (state.cineTimer !== undefined) return stopCine();
  state.cineTimer = window.setInterval(() => {
    const vp = activeViewport();
    if (vp) utilities.scroll(vp, { delta: 1, loop: true });
  }, 1000 / FRAMES_PER_SECOND);
  showCine(true);
}
