// The first image as entry.ts drew it before the Cornerstone part was loaded (a 2D-canvas
// preview), the frame's bytes it fetched, and the keys / wheel turns met meanwhile.
import { Enums, type StackViewport, eventTarget, metaData, utilities } from '@cornerstonejs/core';
import { PREVIEW_STATUS, handoff } from './previewHandoff';
import { type Slot, activeSlot, activeViewport, dom, state } from './state';
import { describeError, setStatus } from './status';
import { hook, reportError } from './testHooks';

/** Show the preview in the first viewport (same place, same size), under its overlays. */
export function adoptPreview(slot: Slot): void {
  if (handoff.done || !handoff.canvas) return;
  const host = handoff.canvas.parentElement;
  slot.el.append(handoff.canvas);
  if (host && host !== slot.el && host.classList.contains('preview-host')) host.remove();
}

/** Cornerstone shows the image (or cannot): the preview goes. */
export function dropPreview(): void {
  if (handoff.done) return;
  handoff.done = true;
  if (handoff.drawnAt !== undefined) hook.marks.preview = handoff.drawnAt;
  handoff.canvas?.remove();
  document.querySelector('.preview-host')?.remove();
  if (dom.loadStatus.textContent === PREVIEW_STATUS) setStatus(state.statusText);
}

/** Tools bound and the first image shown (or none to wait for): keys and wheel turns met
 * before are played now. */
export function previewReady(): void {
  if (handoff.ready) return;
  handoff.ready = true;
  void replay(handoff.queued.splice(0));
}

/** Keys are the viewer's own once the preview hands over (entry.ts keeps them until then). */
export function viewerTakesKeys(): boolean {
  return handoff.ready;
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
    reportError(`keys pressed while loading: ${describeError(err)}`);
  }
}

/**
 * The first frame's bytes, when entry.ts fetched them for its preview, go to the image loader
 * without a second request: the wadors loader first asks the metadata providers for the frame's
 * `compressedFrameData` (its "compressed frame registry") and decodes that instead of fetching.
 */
export async function useFrameOfPreview(imageId: string): Promise<void> {
  const frame = await handoff.frame;
  if (!frame) return;
  if (`wadors:${frame.url}` !== imageId) {
    dropPreview(); // another series comes first here (several studies): not that image
    return;
  }
  hook.marks.previewFrame = performance.now();
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
