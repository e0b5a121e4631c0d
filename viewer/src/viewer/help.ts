// The help panel: every keyboard shortcut and mouse binding.
import { closablePanel } from './panel';

export const SHORTCUTS: [string, string][] = [
  ['Wheel, ↑ ↓ ← →', 'Previous / next image'],
  ['Page Up / Page Down', '10 images back / forward'],
  ['Home / End', 'First / last image'],
  ['Left drag', 'The selected tool (W/L by default)'],
  ['Middle drag', 'Pan'],
  ['Right drag', 'Zoom'],
  ['Drag a series thumbnail', 'Show it in the viewport you drop it on'],
  ['Esc', 'Close this panel'],
];

export function showHelp(actions: { label: string; key?: string }[]): void {
  const rows: [string, string][] = [
    ...actions.filter((a) => a.key).map((a): [string, string] => [a.key === ' ' ? 'Space' : a.key!.toUpperCase(), a.label]),
    ...SHORTCUTS,
  ];
  const table = document.createElement('table');
  for (const [key, what] of rows) {
    const tr = table.insertRow();
    const k = document.createElement('kbd');
    k.textContent = key;
    tr.insertCell().append(k);
    tr.insertCell().textContent = what;
  }
  closablePanel('help-panel', 'Keyboard shortcuts', table);
}
