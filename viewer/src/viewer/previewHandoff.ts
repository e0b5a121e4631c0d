// What the page's first script (entry.ts) hands to the Cornerstone part (preview.ts) about the
// first image it drew on a 2D canvas: one module both import, so no window global carries it.

/** The first frame as the server decoded it (Explicit VR Little Endian), for the image loader. */
export interface PreviewFrame {
  /** The frame's WADO-RS URL (the imageId without its `wadors:` scheme). */
  url: string;
  pixelData: Uint8Array;
  transferSyntax: string;
}

export interface PreviewHandoff {
  frame: Promise<PreviewFrame | undefined>;
  /** The preview canvas, once drawn and until Cornerstone has drawn the same image. */
  canvas?: HTMLCanvasElement;
  /** Set once Cornerstone has drawn the first image: nothing more to preview. */
  done: boolean;
  /** Set once the viewer takes keys and wheel itself (tools bound). */
  ready: boolean;
  /** Keys and wheel turns met before `ready`, replayed by preview.ts. */
  queued: (KeyboardEvent | WheelEvent)[];
  /** When the preview was drawn (ms since navigation start). */
  drawnAt?: number;
}

export const PREVIEW_STATUS = 'Image shown; loading the viewer tools…';

export const handoff: PreviewHandoff = { frame: Promise.resolve(undefined), done: false, ready: false, queued: [] };
