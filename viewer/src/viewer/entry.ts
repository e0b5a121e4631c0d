// The viewer page's first script, kept small (no Cornerstone): it draws the study's first image
// on a plain 2D canvas in the first viewport's place while the Cornerstone part (main.ts, a
// separate chunk of about 3 MB that V8 needs 0.5-1 s to compile on a loaded 2-core machine) is
// fetched and started in parallel. preview.ts takes the frame's bytes from here (no second request),
// shows the same image with the same window in its viewport and then removes this preview.
// Greyscale only; a colour first image waits for Cornerstone. `?preview=0` turns it off (and
// `?firstFrame=stored`, which asks for the first frame as stored, not decoded by the server).
import '../style.css';
import { type DicomJsonDataset, Tag, firstPart, num, nums, str } from '../dicomweb';
import { sortInstances } from './order';
import { PREVIEW_STATUS, type PreviewFrame, handoff } from './previewHandoff';
// The test / benchmark hook (`window.__radsight`) stands from here on, `loading` until main.ts runs.
import './testHooks';

interface FirstSeries {
  root: string;
  study: string;
  series: string;
  metadata: string;
}

type Prefetched = Promise<{ status: number; text: string }>;
const EXPLICIT_LE = '1.2.840.10008.1.2.1';
const DECODED = `multipart/related; type="application/octet-stream"; transfer-syntax=${EXPLICIT_LE}`;

// What the page's inline script (viewer.html) started: a classic script, so it hands over
// through window globals (dicomweb.ts takes `__radsightPrefetch` responses by URL too).
const w = window as unknown as {
  __radsightFirstSeries?: Promise<FirstSeries | undefined>;
  __radsightPrefetch?: Record<string, Prefetched>;
};
const params = new URLSearchParams(location.search);

// The viewer's keys pressed before it is ready are kept and replayed (preview.ts), not lost.
const VIEWER_KEY = /^(.|Arrow\w+|Page\w+|Home|End|Escape|F1)$/u;
document.addEventListener(
  'keydown',
  (e) => {
    if (handoff.ready || e.ctrlKey || e.metaKey || e.altKey || !VIEWER_KEY.test(e.key)) return;
    if (e.target instanceof HTMLInputElement || e.target instanceof HTMLSelectElement) return;
    handoff.queued.push(e);
    e.preventDefault();
  },
  true,
);

if (params.get('preview') !== '0' && params.get('firstFrame') !== 'stored' && w.__radsightFirstSeries) {
  handoff.frame = firstFrame(w.__radsightFirstSeries).catch(() => undefined);
}
// The Cornerstone part is fetched and compiled meanwhile (modulepreload links in the page, see
// vite.config.ts); it is run once the preview is drawn (or has nothing to draw), so that its
// start-up (a long task) does not hold the drawing up; at most 1 s after this, for a slow frame.
void Promise.race([handoff.frame, new Promise((resolve) => setTimeout(resolve, 1000))]).then(() => import('./main'));

/** The first instance of the first series (its metadata as the page's inline script asked for it). */
async function firstInstance(found: Promise<FirstSeries | undefined>): Promise<{ first: FirstSeries; inst: DicomJsonDataset } | undefined> {
  const first = await found;
  const pending = first && w.__radsightPrefetch?.[first.metadata];
  if (!first || !pending) return undefined;
  // Only looked at: dicomweb.ts takes (and parses) the same response for main.ts.
  const { status, text } = await pending;
  if (status !== 200) return undefined;
  const instances = (JSON.parse(text) as DicomJsonDataset[]).filter((i) => num(i, Tag.Rows) !== undefined);
  if (!instances.length) return undefined;
  return { first, inst: sortInstances(instances)[0] };
}

async function firstFrame(found: Promise<FirstSeries | undefined>): Promise<PreviewFrame | undefined> {
  const hit = await firstInstance(found);
  if (!hit) return undefined;
  const { first, inst } = hit;
  // Greyscale, one sample per pixel, 8 or 16 bits: what the preview draws (and what the server
  // returns decoded without a colour-space question).
  if (!/^MONOCHROME[12]$/.test(str(inst, Tag.PhotometricInterpretation))) return undefined;
  if ((num(inst, '00280002') ?? 1) !== 1 || ![8, 16].includes(num(inst, '00280100') ?? 0)) return undefined;
  const base = new URL(first.root, location.href).href;
  const url = `${base}/studies/${first.study}/series/${first.series}/instances/${str(inst, Tag.SOPInstanceUID)}/frames/1`;
  const resp = await fetch(url, { headers: { Accept: DECODED }, credentials: 'same-origin' });
  const ctype = resp.headers.get('Content-Type') ?? '';
  if (!resp.ok) return undefined;
  const body = new Uint8Array(await resp.arrayBuffer());
  // The transfer syntax is said in the part's Content-Type (or the response's): only a frame
  // that is not (or not said to be) in another one is drawn.
  const head = ctype + new TextDecoder().decode(body.subarray(0, 512)).split('\r\n\r\n')[0];
  const syntax = /transfer-syntax="?([\d.]+)/i.exec(head)?.[1];
  if (syntax && syntax !== EXPLICIT_LE) return undefined;
  const pixelData = new Uint8Array(ctype.startsWith('multipart/') ? firstPart(body, ctype) : body.slice().buffer);
  const frame: PreviewFrame = { url, pixelData, transferSyntax: EXPLICIT_LE };
  if (!handoff.done) {
    try {
      draw(inst, pixelData);
    } catch {
      // A preview that cannot be drawn is no error: Cornerstone shows the image.
    }
  }
  return frame;
}

function values(ds: DicomJsonDataset, tag: string): number[] {
  return nums(ds, tag).filter((v) => Number.isFinite(v));
}

/**
 * Draws the frame as Cornerstone's stack viewport will show it at first: modality LUT (rescale
 * slope / intercept), the VOI window of the metadata (else the pixel range), MONOCHROME1
 * inverted, fitted to the viewport with the pixel aspect ratio kept and centred. Written by
 * hand on purpose: these ~40 lines are the point of this script, and every library that does it
 * (Cornerstone, dicom-image-loader) would bring its ~3 MB toolkit back into the first script.
 */
function draw(inst: DicomJsonDataset, bytes: Uint8Array): void {
  const rows = num(inst, Tag.Rows) ?? 0;
  const cols = num(inst, Tag.Columns) ?? 0;
  const bits = num(inst, '00280100') ?? 16;
  const stored = num(inst, '00280101') ?? bits;
  const signed = num(inst, '00280103') === 1;
  const n = rows * cols;
  if (!n || bytes.length < n * (bits / 8)) return;
  const slope = num(inst, '00281053') ?? 1;
  const intercept = num(inst, '00281052') ?? 0;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const shift = 32 - stored;
  const v = new Float32Array(n);
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < n; i++) {
    let raw = bits === 8 ? bytes[i] : view.getUint16(2 * i, true);
    raw = signed ? (raw << shift) >> shift : stored < 32 ? raw & ((1 << stored) - 1) : raw;
    const x = raw * slope + intercept;
    v[i] = x;
    if (x < min) min = x;
    if (x > max) max = x;
  }
  const wc = values(inst, Tag.WindowCenter)[0];
  const ww = values(inst, Tag.WindowWidth)[0];
  // Cornerstone's LINEAR window (utilities.windowLevel.toLowHighRange), else the pixel range.
  const [lower, upper] = ww !== undefined && wc !== undefined && ww > 0
    ? [wc - 0.5 - (ww - 1) / 2, wc - 0.5 + (ww - 1) / 2]
    : [min, max === min ? min + 1 : max];
  const invert = str(inst, Tag.PhotometricInterpretation) === 'MONOCHROME1';
  const img = new ImageData(cols, rows);
  const out = img.data;
  const k = 255 / (upper - lower);
  for (let i = 0, j = 0; i < n; i++, j += 4) {
    let g = (v[i] - lower) * k;
    g = g < 0 ? 0 : g > 255 ? 255 : g;
    if (invert) g = 255 - g;
    out[j] = out[j + 1] = out[j + 2] = g;
    out[j + 3] = 255;
  }
  const src = document.createElement('canvas');
  src.width = cols;
  src.height = rows;
  src.getContext('2d')!.putImageData(img, 0, 0);

  const canvas = document.createElement('canvas');
  canvas.className = 'radsight-preview';
  canvas.title = PREVIEW_STATUS;
  const host = place(canvas);
  const dpr = window.devicePixelRatio || 1;
  canvas.width = Math.max(1, Math.round(host.clientWidth * dpr));
  canvas.height = Math.max(1, Math.round(host.clientHeight * dpr));
  // Cornerstone's fit (cpuFallback getImageFitScale): the larger pixel spacing stretches its axis.
  const [rowSpacing, colSpacing] = values(inst, Tag.PixelSpacing).filter((s) => s > 0);
  const hRatio = rowSpacing && colSpacing && rowSpacing < colSpacing ? colSpacing / rowSpacing : 1;
  const vRatio = rowSpacing && colSpacing && rowSpacing >= colSpacing ? rowSpacing / colSpacing : 1;
  const scale = Math.min(canvas.width / cols / hRatio, canvas.height / rows / vRatio);
  const dw = cols * scale * hRatio;
  const dh = rows * scale * vRatio;
  const ctx = canvas.getContext('2d')!;
  ctx.fillStyle = '#000';
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(src, (canvas.width - dw) / 2, (canvas.height - dh) / 2, dw, dh);
  canvas.addEventListener('wheel', (e) => {
    e.preventDefault();
    if (!handoff.ready) handoff.queued.push(e);
  });
  handoff.canvas = canvas;
  handoff.drawnAt = performance.now();
  const status = document.querySelector('#load-status');
  if (status && !status.textContent) status.textContent = PREVIEW_STATUS;
}

/** The preview's place: the first viewport if main.ts has built it, else a stand-in of it. */
function place(canvas: HTMLCanvasElement): HTMLElement {
  const grid = document.querySelector<HTMLElement>('#grid')!;
  let host = grid.querySelector<HTMLElement>('.vp[data-viewport="0"]');
  if (!host) {
    host = document.createElement('div');
    host.className = 'vp active preview-host';
    grid.style.gridTemplateRows ||= '1fr';
    grid.style.gridTemplateColumns ||= '1fr';
    grid.append(host);
  }
  host.append(canvas);
  return host;
}
