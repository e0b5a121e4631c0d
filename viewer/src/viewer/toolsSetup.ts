// Cornerstone3D tools (loaded after the first image: toolBinding.ts): tool groups, mouse
// bindings, the primary tool.
import * as tools from '@cornerstonejs/tools';
import { MEASUREMENT_TOOLS, MPR_GROUP, PRIMARY_TOOLS, STACK_GROUP } from './cornerstone';

export { tools };
const { MouseBindings } = tools.Enums;

export function initTools(): void {
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
