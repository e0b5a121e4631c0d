// Cornerstone3D set-up: rendering and the DICOM image loader (decoding in web workers) first;
// the tools (window/level, pan, zoom, measurements, crosshairs: toolsSetup.ts, about a third of
// the start-up code) are imported once the first image is on screen (toolBinding.ts).
import { init as coreInit, getRenderingCapabilities, getWebWorkerManager, setUseCPURendering } from '@cornerstonejs/core';
import { decodeImageFrame, init as loaderInit } from '@cornerstonejs/dicom-image-loader';

export const STACK_GROUP = 'radsight-stack';
export const MPR_GROUP = 'radsight-mpr';

// Tool names as the tools package registers them (`SomeTool.toolName`).
export const ToolName = {
  WindowLevel: 'WindowLevel',
  Pan: 'Pan',
  Zoom: 'Zoom',
  StackScroll: 'StackScroll',
  Length: 'Length',
  Angle: 'Angle',
  RectangleROI: 'RectangleROI',
  EllipticalROI: 'EllipticalROI',
  Crosshairs: 'Crosshairs',
} as const;

/** Tools the left mouse button can take, with their shortcut keys. */
export const PRIMARY_TOOLS = [
  { name: ToolName.WindowLevel, label: 'W/L', key: 'w' },
  { name: ToolName.Pan, label: 'Pan', key: 'p' },
  { name: ToolName.Zoom, label: 'Zoom', key: 'z' },
  { name: ToolName.Length, label: 'Length', key: 'l' },
  { name: ToolName.Angle, label: 'Angle', key: 'a' },
  { name: ToolName.RectangleROI, label: 'Rect ROI', key: 'b' },
  { name: ToolName.EllipticalROI, label: 'Ellipse ROI', key: 'e' },
] as const;

export const MEASUREMENT_TOOLS: string[] = [ToolName.Length, ToolName.Angle, ToolName.RectangleROI, ToolName.EllipticalROI];

// Frames asked for decoded by the server (Explicit VR Little Endian) instead of as stored.
const decodedByServer = new Set<string>();
const DECODED = 'multipart/related; type="application/octet-stream"; transfer-syntax=1.2.840.10008.1.2.1';

/**
 * Ask for `imageId`'s frame decoded by the server. Used for the first image only: decoding it in
 * the browser first needs the decode worker to fetch and compile the codec's WebAssembly (about
 * 1 s for JPEG 2000 on a loaded 2-core machine, measured), while the server decodes one frame in
 * milliseconds; the rest of the series comes as stored (smaller), once the codec is warm.
 */
export function decodeOnServer(imageId: string): void {
  decodedByServer.add(imageId);
}

/**
 * Stack viewports drawn on the CPU (canvas 2D) rather than WebGL: `?render=cpu|gpu` in the URL,
 * else where WebGL is absent or a software rasteriser (SwiftShader, llvmpipe: core's
 * `softwareRasterizer`). There a GPU rendering engine builds a pool of WebGL contexts and every
 * draw is rasterised by the CPU anyway, then copied to the page's canvas; the CPU path draws the
 * frame straight into it. MPR (volume viewports) always needs WebGL: `useCpuRendering(false)`
 * before building it.
 */
export function cpuStacksWanted(): boolean {
  const forced = new URLSearchParams(location.search).get('render');
  if (forced === 'cpu' || forced === 'gpu') return forced === 'cpu';
  const caps = getRenderingCapabilities();
  return !caps.webgl || caps.softwareRasterizer;
}

/** Core's global switch, read when a rendering engine or viewport is created. */
export function useCpuRendering(cpu: boolean): void {
  setUseCPURendering(cpu, false);
}

// Uncompressed transfer syntaxes: "decoding" is a copy and the modality rescale.
const RAW = new Set(['1.2.840.10008.1.2', '1.2.840.10008.1.2.1']);

/**
 * The first frame's decode task runs on the page when the frame is uncompressed (the first
 * greyscale frame comes decoded by the server): a copy and the modality rescale, a few ms for a
 * 512x512 CT, where the decode worker, started with the loader, is still fetching and compiling
 * its 200 kB script (0.3 s of the first image on a loaded 2-core machine, measured). Every other
 * task goes to the workers. `?firstFrame=worker` turns this off, for comparisons.
 */
function decodeFirstFrameOnPage(): void {
  const manager = getWebWorkerManager();
  const executeTask = manager.executeTask.bind(manager);
  let first = true;
  manager.executeTask = ((workerName: string, methodName: string, args?: Record<string, unknown>, opts?: never) => {
    if (first && workerName === 'dicomImageLoader' && methodName === 'decodeTask' && args) {
      first = false;
      const { imageFrame, transferSyntax, pixelData, decodeConfig, options } = args;
      if (RAW.has(String(transferSyntax))) {
        return Promise.resolve().then(() => decodeImageFrame(imageFrame, transferSyntax, pixelData, decodeConfig, options, undefined));
      }
    }
    return executeTask(workerName, methodName, args, opts);
  }) as typeof manager.executeTask;
}

export function initCornerstone(cpuStacks: boolean): void {
  coreInit({ rendering: { useCPURendering: cpuStacks } } as Parameters<typeof coreInit>[0]);
  // Without cross-origin isolation the loader still works: it decodes in ordinary workers.
  loaderInit({
    maxWebWorkers: Math.max(1, Math.min(navigator.hardwareConcurrency || 2, 4)),
    // The loader's own Accept (any transfer syntax), except for the frames above.
    beforeSend: (_xhr, imageId) => (decodedByServer.has(imageId) ? { Accept: DECODED } : undefined),
  });
  if (new URLSearchParams(location.search).get('firstFrame') !== 'worker') decodeFirstFrameOnPage();
}
