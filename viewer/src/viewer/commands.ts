// Every action of the viewer with its toolbar button and key (the help panel lists them), and
// the keyboard: keys, arrows, Page Up / Down, Home / End, Escape.
import type { StackViewport } from '@cornerstonejs/core';
import { Tag, str } from '../dicomweb';
import { toggleCine } from './cine';
import { PRIMARY_TOOLS, ToolName } from './cornerstone';
import { showHelp } from './help';
import { MPR_LAYOUT, applyLayout } from './layout';
import { viewerTakesKeys } from './preview';
import { refreshSeriesList } from './seriesPanel';
import { activeSlot, activeViewport, state } from './state';
import { describeError, toast } from './status';
import { getLoaded } from './studySeries';
import { hook, reportError } from './testHooks';
import { setPrimaryTool, toolsNow } from './toolBinding';
import type { Action } from './toolbar';
import { PRESETS, autoWindow, flip, invert, jumpTo, resetView, rotate, scrollBy, setWindow } from './viewActions';

async function toggleMpr(): Promise<void> {
  if (state.layout.mpr) {
    (await toolsNow()).setPrimaryTool(ToolName.WindowLevel);
    await applyLayout(state.stackLayout);
    return;
  }
  const series = activeSlot()?.series;
  if (!series?.isVolume) {
    toast('MPR needs a volumetric CT/MR series (parallel slices) in the active viewport.');
    return;
  }
  await applyLayout(MPR_LAYOUT, series);
}

async function save(): Promise<void> {
  try {
    const { saveMeasurements } = await import('./measurements');
    const n = await saveMeasurements(state.client, state.engine, state.seriesList, getLoaded, state.study);
    hook.savedReports += 1;
    toast(`Saved ${n} measurement${n === 1 ? '' : 's'} as DICOM SR`);
    await refreshSeriesList();
  } catch (err) {
    reportError(describeError(err));
    toast(`Saving failed: ${describeError(err)}`);
  }
}

function tags(): void {
  const slot = activeSlot();
  const s = slot?.series;
  if (!s) return;
  const imageId = (activeViewport() as StackViewport | undefined)?.getCurrentImageId?.();
  const inst = (imageId && s.metadataByImageId.get(imageId)) || s.instances[0];
  void import('./tags').then((m) => m.showTags(inst, `${s.modality} ${s.description} — instance ${str(inst, Tag.InstanceNumber)}`));
}

export const ACTIONS: Action[] = [
  ...PRIMARY_TOOLS.map((t) => ({
    id: `tool:${t.name}`,
    label: t.label,
    key: t.key,
    run: () => setPrimaryTool(t.name),
  })),
  {
    id: `tool:${ToolName.Crosshairs}`,
    label: 'Crosshairs',
    key: 'x',
    run: () => {
      if (!state.layout.mpr) return toast('Crosshairs work in MPR (M).');
      setPrimaryTool(ToolName.Crosshairs);
    },
  },
  ...PRESETS.map((p) => ({ id: `preset:${p.label}`, label: p.label, key: p.key, run: () => setWindow(p.ww, p.wc) })),
  { id: 'auto-window', label: 'Auto W/L', key: '0', run: autoWindow, title: 'The image’s own window (MR auto)' },
  { id: 'invert', label: 'Invert', key: 'i', run: invert },
  { id: 'rotate', label: 'Rotate', key: 'r', run: rotate },
  { id: 'flip-h', label: 'Flip H', key: 'h', run: () => flip(true) },
  { id: 'flip-v', label: 'Flip V', key: 'v', run: () => flip(false) },
  { id: 'reset', label: 'Reset', key: ' ', run: resetView },
  { id: 'cine', label: 'Cine', key: 'c', run: toggleCine },
  { id: 'layout:1x1', label: '1×1', run: () => void applyLayout({ rows: 1, cols: 1, mpr: false }) },
  { id: 'layout:1x2', label: '1×2', run: () => void applyLayout({ rows: 1, cols: 2, mpr: false }) },
  { id: 'layout:2x2', label: '2×2', run: () => void applyLayout({ rows: 2, cols: 2, mpr: false }) },
  { id: 'mpr', label: 'MPR', key: 'm', run: () => void toggleMpr() },
  { id: 'save', label: 'Save measurements', key: 's', run: () => void save() },
  { id: 'tags', label: 'Tags', key: 't', run: tags },
  { id: 'help', label: 'Help', key: '?', run: () => showHelp(ACTIONS) },
];

const KEY_MOVES: Record<string, () => void> = {
  ArrowUp: () => scrollBy(-1),
  ArrowDown: () => scrollBy(1),
  ArrowLeft: () => scrollBy(-1),
  ArrowRight: () => scrollBy(1),
  PageUp: () => scrollBy(-10),
  PageDown: () => scrollBy(10),
  Home: () => jumpTo('first'),
  End: () => jumpTo('last'),
  Escape: () => document.querySelector('.panel')?.remove(),
};

/** The viewer's keys, once it takes them (entry.ts keeps those pressed before and they are replayed). */
export function bindKeys(): void {
  document.addEventListener('keydown', (e) => {
    if (!viewerTakesKeys()) return;
    if (e.target instanceof HTMLInputElement && e.target.type !== 'range') return;
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const move = KEY_MOVES[e.key];
    const action = ACTIONS.find((a) => a.key === e.key.toLowerCase() || (a.key === '?' && e.key === 'F1'));
    if (move) move();
    else if (action) action.run();
    else return;
    e.preventDefault();
  });
}
