// The sidebar's overlay controls: per segmentation its segments (visibility, colour) and
// opacity; for the heatmap the map shown (one per label), visibility, opacity and threshold.
import { str } from '../../dicomweb';
import { aiState } from './aiState';
import { type MapChoice, ai } from './context';
import { redrawAll } from './overlayCanvas';
import { applyStyle } from './segmentation';

/** A map's name in the choice: the label of the finding that points to it, else its Content
 * Description, else its series'. */
export function mapLabel(c: MapChoice): string {
  const f = ai.findings.find((x) => x.pmap_sop_instance_uid === c.sop);
  if (f) return `${f.label} (${f.model})`;
  return str(c.inst, '00700081') || c.series.description || 'Parametric map';
}

export function sortedChoices(): MapChoice[] {
  const num = (c: MapChoice) => Number(str(c.inst, '00200013')) || 0;
  return [...ai.mapChoices.values()].sort((a, b) => a.order - b.order || num(a) - num(b));
}

function slider(label: string, min: number, max: number, step: number, value: number, data: string, onInput: (v: number) => void): HTMLElement {
  const wrap = document.createElement('label');
  wrap.className = 'ai-slider';
  wrap.textContent = label;
  const input = document.createElement('input');
  input.type = 'range';
  input.min = String(min);
  input.max = String(max);
  input.step = String(step);
  input.value = String(value);
  input.dataset.ai = data;
  input.addEventListener('input', () => onInput(Number(input.value)));
  wrap.append(input);
  return wrap;
}

function checkbox(label: string, checked: boolean, data: string, onChange: (v: boolean) => void, color?: number[]): HTMLElement {
  const wrap = document.createElement('label');
  wrap.className = 'ai-check';
  const input = document.createElement('input');
  input.type = 'checkbox';
  input.checked = checked;
  input.dataset.ai = data;
  input.addEventListener('change', () => onChange(input.checked));
  wrap.append(input);
  if (color) {
    const sw = document.createElement('span');
    sw.className = 'swatch';
    sw.style.background = `rgb(${color.join(',')})`;
    wrap.append(sw);
  }
  wrap.append(document.createTextNode(label));
  return wrap;
}

function renderAllViewports(): void {
  const e = ai.host.engine();
  e.renderViewports(ai.host.slots().map((s) => s.id).filter((id) => e.getViewport(id)));
}

export function renderOverlayControls(): void {
  const blocks: HTMLElement[] = [];
  for (const seg of ai.loadedSegs) {
    const box = document.createElement('div');
    box.className = 'ai-overlay-item seg';
    box.dataset.segmentationId = seg.segmentationId;
    const title = document.createElement('div');
    title.className = 'ai-overlay-title';
    title.textContent = seg.label;
    box.append(title);
    for (const s of seg.segments) {
      box.append(
        checkbox(s.label, s.visible, `segment-${s.index}`, (v) => {
          s.visible = v;
          applyStyle(seg);
          renderAllViewports();
        }, s.color),
      );
    }
    box.append(
      slider('Opacity', 0, 1, 0.05, seg.opacity, 'seg-opacity', (v) => {
        seg.opacity = v;
        applyStyle(seg);
        renderAllViewports();
      }),
    );
    blocks.push(box);
  }
  const h = ai.loadedHeatmaps.find((x) => x.sop === aiState.heatmapShown);
  if (h) {
    const box = document.createElement('div');
    box.className = 'ai-overlay-item heatmap';
    const title = document.createElement('div');
    title.className = 'ai-overlay-title';
    const choices = sortedChoices();
    title.textContent = choices.length > 1 ? 'Probability map' : h.label;
    box.append(title);
    if (choices.length > 1) {
      // One map per segmentation label: the reader picks which (a finding's "Go to slice" does too).
      const select = document.createElement('select');
      select.dataset.ai = 'heatmap-choice';
      select.setAttribute('aria-label', 'Probability map shown');
      for (const c of choices) {
        const option = document.createElement('option');
        option.value = c.sop;
        option.textContent = mapLabel(c);
        option.selected = c.sop === h.sop;
        select.append(option);
      }
      select.addEventListener('change', () => ai.pickMap(select.value));
      box.append(select);
    }
    box.append(
      checkbox('Show heatmap', h.visible, 'heatmap-visible', (v) => {
        h.visible = v;
        redrawAll();
      }),
      slider('Opacity', 0, 1, 0.05, h.opacity, 'heatmap-opacity', (v) => {
        h.opacity = v;
        redrawAll();
      }),
      slider('Threshold', h.min, h.max, (h.max - h.min) / 100, h.threshold, 'heatmap-threshold', (v) => {
        h.threshold = v;
        redrawAll();
      }),
    );
    blocks.push(box);
  }
  ai.overlaysList.replaceChildren(...blocks);
  if (!blocks.length) {
    const p = document.createElement('p');
    p.className = 'muted';
    p.textContent = 'No AI overlay for the series shown.';
    ai.overlaysList.append(p);
  }
}
