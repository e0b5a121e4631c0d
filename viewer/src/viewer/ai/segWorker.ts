// The SEG decoder's worker: Part 10 in (transferred), label planes out (transferred), so that
// parsing, bit-unpacking and frame mapping of a big SEG never hold the page's main thread.
import { type SegSource, SegUnsupported, decodeSeg } from './segDecode';

export type SegWorkerRequest = { id: number; part10: ArrayBuffer; source: SegSource; tolerance?: number };
export type SegWorkerReply =
  | { id: number; ok: true; result: import('./segDecode').DecodedSeg; ms: number }
  | { id: number; ok: false; unsupported: boolean; message: string; part10: ArrayBuffer };

// The page build's TypeScript lib is DOM, not WebWorker: the members used here.
const scope = self as unknown as {
  onmessage: ((e: MessageEvent<SegWorkerRequest>) => void) | null;
  postMessage(msg: SegWorkerReply, transfer?: Transferable[]): void;
};

scope.onmessage = (e) => {
  const { id, part10, source, tolerance } = e.data;
  const t0 = performance.now();
  try {
    const result = decodeSeg(part10, source, tolerance);
    scope.postMessage({ id, ok: true, result, ms: performance.now() - t0 }, [result.labels.buffer, result.sliceIndices.buffer]);
  } catch (err) {
    // The Part 10 goes back: the caller decodes it the other way.
    const message = err instanceof Error ? err.message : String(err);
    scope.postMessage({ id, ok: false, unsupported: err instanceof SegUnsupported, message, part10 }, [part10]);
  }
};
