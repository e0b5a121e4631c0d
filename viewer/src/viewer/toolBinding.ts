// The tools module (toolsSetup.ts) arrives after the first image, or on the first action that
// needs it; here the viewports shown are put in its tool groups once it is there.
import { Enums } from '@cornerstonejs/core';
import { MPR_GROUP, STACK_GROUP } from './cornerstone';
import { previewReady } from './preview';
import { type ToolsModule, state } from './state';
import { hook } from './testHooks';
import { updateToolbar } from './toolbar';

/** The tools module, imported and initialised once. */
function loadTools(): Promise<ToolsModule> {
  state.toolsLoading ??= import('./toolsSetup').then((m) => {
    m.initTools();
    return m;
  });
  return state.toolsLoading;
}

const arrivalListeners: (() => void)[] = [];

/** Run `listener` once, when the tools first arrive (main.ts loads the AI module then). */
export function onToolsArrived(listener: () => void): void {
  arrivalListeners.push(listener);
}

export function toolsNow(): Promise<ToolsModule> {
  return loadTools().then((t) => {
    if (!state.tools) {
      state.tools = t;
      hook.marks.tools = performance.now();
      bindTools();
      if (hook.marks.firstImage !== undefined) {
        hook.firstImageMs ??= performance.now();
        previewReady();
      }
      for (const listener of arrivalListeners.splice(0)) listener();
    }
    return t;
  });
}

/** Put the current viewports in their tool group and start stack prefetch (once tools are here). */
export function bindTools(): void {
  const { tools, engine, layout } = state;
  if (!tools) return;
  const t = tools.tools;
  const group = t.ToolGroupManager.getToolGroup(layout.mpr ? MPR_GROUP : STACK_GROUP)!;
  for (const s of state.slots) {
    if (!engine.getViewport(s.id)) continue;
    // Viewports enabled before tools.init() missed its ELEMENT_ENABLED listener (mouse events,
    // annotation layer): give them what it would have.
    if (!t.store.state.enabledElements.includes(s.csEl)) {
      t.store.addEnabledElement(new CustomEvent(Enums.Events.ELEMENT_ENABLED, { detail: { element: s.csEl, viewportId: s.id, renderingEngineId: engine.id } }) as never);
    }
    if (!group.getViewportIds().includes(s.id)) group.addViewport(s.id, engine.id);
    if (!layout.mpr && s.series && !s.series.notImage && s.series.imageIds.length) t.utilities.stackPrefetch.enable(s.csEl);
  }
  updateToolbar();
}

/** Take viewport `id` out of both tool groups (before its element is disabled). */
export function unbindViewport(id: string): void {
  const groups = state.tools?.tools.ToolGroupManager;
  groups?.getToolGroup(STACK_GROUP)?.removeViewports(state.engine.id, id);
  groups?.getToolGroup(MPR_GROUP)?.removeViewports(state.engine.id, id);
}

export function setPrimaryTool(name: string): void {
  void toolsNow().then((t) => {
    t.setPrimaryTool(name);
    updateToolbar();
  });
}
