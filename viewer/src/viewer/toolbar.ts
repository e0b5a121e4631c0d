// The toolbar: one button per action (commands.ts lists them), the active tool and layout lit.
import { MPR_GROUP, STACK_GROUP, ToolName } from './cornerstone';
import { dom, state } from './state';

export interface Action {
  id: string;
  label: string;
  key?: string;
  run: () => void;
  title?: string;
}

const SEPARATE_BEFORE = new Set([`tool:${ToolName.Crosshairs}`, 'preset:Soft tissue', 'invert', 'layout:1x1', 'save']);

export function buildToolbar(actions: Action[]): void {
  dom.toolbar.replaceChildren();
  for (const a of actions) {
    if (SEPARATE_BEFORE.has(a.id)) {
      const sep = document.createElement('span');
      sep.className = 'sep';
      dom.toolbar.append(sep);
    }
    const b = document.createElement('button');
    b.type = 'button';
    b.dataset.action = a.id;
    b.textContent = a.label;
    b.title = (a.title ? `${a.title} ` : '') + (a.key ? `(${a.key === ' ' ? 'Space' : a.key.toUpperCase()})` : '');
    b.addEventListener('click', () => a.run());
    dom.toolbar.append(b);
  }
}

export function updateToolbar(): void {
  const { layout } = state;
  const group = state.tools?.tools.ToolGroupManager.getToolGroup(layout.mpr ? MPR_GROUP : STACK_GROUP);
  const primary = group?.getActivePrimaryMouseButtonTool() ?? ToolName.WindowLevel;
  for (const b of dom.toolbar.querySelectorAll<HTMLButtonElement>('button')) {
    const id = b.dataset.action ?? '';
    if (id.startsWith('tool:')) b.classList.toggle('active', id === `tool:${primary}`);
    if (id.startsWith('layout:')) b.classList.toggle('active', !layout.mpr && id === `layout:${layout.rows}x${layout.cols}`);
    if (id === 'mpr') b.classList.toggle('active', layout.mpr);
  }
}

/** Light the cine button while the loop plays. */
export function showCine(playing: boolean): void {
  document.querySelector('[data-action="cine"]')?.classList.toggle('active', playing);
}
