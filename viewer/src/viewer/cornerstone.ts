// Cornerstone3D set-up: rendering, the DICOM image loader (decoding in web workers) and tools.
import { init as coreInit } from '@cornerstonejs/core';
import { init as loaderInit } from '@cornerstonejs/dicom-image-loader';
import * as tools from '@cornerstonejs/tools';

const { MouseBindings } = tools.Enums;

export const STACK_GROUP = 'radsight-stack';
export const MPR_GROUP = 'radsight-mpr';

/** Tools the left mouse button can take, with their shortcut keys. */
export const PRIMARY_TOOLS = [
  { name: tools.WindowLevelTool.toolName, label: 'W/L', key: 'w' },
  { name: tools.PanTool.toolName, label: 'Pan', key: 'p' },
  { name: tools.ZoomTool.toolName, label: 'Zoom', key: 'z' },
  { name: tools.LengthTool.toolName, label: 'Length', key: 'l' },
  { name: tools.AngleTool.toolName, label: 'Angle', key: 'a' },
  { name: tools.RectangleROITool.toolName, label: 'Rect ROI', key: 'b' },
  { name: tools.EllipticalROITool.toolName, label: 'Ellipse ROI', key: 'e' },
] as const;

export const MEASUREMENT_TOOLS = [
  tools.LengthTool.toolName,
  tools.AngleTool.toolName,
  tools.RectangleROITool.toolName,
  tools.EllipticalROITool.toolName,
];

export function initCornerstone(): void {
  coreInit();
  // Without cross-origin isolation the loader still works: it decodes in ordinary workers.
  loaderInit({ maxWebWorkers: Math.max(1, Math.min(navigator.hardwareConcurrency || 2, 4)) });
  tools.init();
  for (const T of [
    tools.WindowLevelTool,
    tools.PanTool,
    tools.ZoomTool,
    tools.StackScrollTool,
    tools.LengthTool,
    tools.AngleTool,
    tools.RectangleROITool,
    tools.EllipticalROITool,
    tools.CrosshairsTool,
  ]) {
    tools.addTool(T);
  }
  createGroup(STACK_GROUP);
  const mpr = createGroup(MPR_GROUP);
  mpr.addTool(tools.CrosshairsTool.toolName);
}

function createGroup(id: string): tools.Types.IToolGroup {
  const group = tools.ToolGroupManager.createToolGroup(id)!;
  for (const t of PRIMARY_TOOLS) group.addTool(t.name);
  group.addTool(tools.StackScrollTool.toolName);
  group.setToolActive(tools.WindowLevelTool.toolName, { bindings: [{ mouseButton: MouseBindings.Primary }] });
  group.setToolActive(tools.PanTool.toolName, { bindings: [{ mouseButton: MouseBindings.Auxiliary }] });
  group.setToolActive(tools.ZoomTool.toolName, { bindings: [{ mouseButton: MouseBindings.Secondary }] });
  group.setToolActive(tools.StackScrollTool.toolName, { bindings: [{ mouseButton: MouseBindings.Wheel }] });
  for (const m of MEASUREMENT_TOOLS) group.setToolPassive(m);
  return group;
}

/** Give the left mouse button to `toolName` in every tool group. */
export function setPrimaryTool(toolName: string): void {
  for (const id of [STACK_GROUP, MPR_GROUP]) {
    const group = tools.ToolGroupManager.getToolGroup(id);
    if (!group) continue;
    const current = group.getActivePrimaryMouseButtonTool();
    if (current === toolName) continue;
    if (current) {
      // Pan and zoom keep their other buttons; measurement tools stay passive (editable).
      if (current === tools.PanTool.toolName) {
        group.setToolActive(current, { bindings: [{ mouseButton: MouseBindings.Auxiliary }] });
      } else if (current === tools.ZoomTool.toolName) {
        group.setToolActive(current, { bindings: [{ mouseButton: MouseBindings.Secondary }] });
      } else {
        group.setToolPassive(current);
      }
    }
    const bindings: { mouseButton: number }[] = [{ mouseButton: MouseBindings.Primary }];
    if (toolName === tools.PanTool.toolName) bindings.push({ mouseButton: MouseBindings.Auxiliary });
    if (toolName === tools.ZoomTool.toolName) bindings.push({ mouseButton: MouseBindings.Secondary });
    group.setToolActive(toolName, { bindings });
  }
}
