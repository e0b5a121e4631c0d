// Cornerstone3D set-up: rendering and the DICOM image loader (decoding in web workers) first;
// the tools (window/level, pan, zoom, measurements, crosshairs: toolsSetup.ts, about a third of
// the start-up code) are imported once the first image is on screen.
import { init as coreInit } from '@cornerstonejs/core';
import { init as loaderInit } from '@cornerstonejs/dicom-image-loader';

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

export function initCornerstone(): void {
  coreInit();
  // Without cross-origin isolation the loader still works: it decodes in ordinary workers.
  loaderInit({ maxWebWorkers: Math.max(1, Math.min(navigator.hardwareConcurrency || 2, 4)) });
}

export type ToolsModule = typeof import('./toolsSetup');
let loading: Promise<ToolsModule> | undefined;

/** The tools module, imported and initialised once. */
export function loadTools(): Promise<ToolsModule> {
  loading ??= import('./toolsSetup').then((m) => {
    m.initTools();
    return m;
  });
  return loading;
}
