// The series panel: one thumbnail per series (WADO-RS rendered thumbnail), dragged onto a
// viewport or clicked to show it in the active one.
import type { SeriesInfo } from './series';
import { showInActive } from './layout';
import { SERIES_DRAG_TYPE, setActive } from './slot';
import { dom, state } from './state';
import { readSeriesList } from './studySeries';

// What AI results say of themselves in their SeriesDescription (radsight.ai.results.AI_LABEL):
// the panel repeats it as a badge. Which objects the AI overlays draw goes by SOP Class UID.
const AI_LABEL = /AI generated/i;

function seriesItem(s: SeriesInfo): HTMLElement {
  const item = document.createElement('div');
  item.className = 'series-item';
  item.dataset.seriesUid = s.seriesUID;
  item.draggable = true;
  item.tabIndex = 0;
  item.title = `${s.modality} ${s.description} — drag onto a viewport, or click`;
  const img = document.createElement('img');
  img.alt = `${s.modality} series ${s.number ?? ''}`;
  img.loading = 'lazy';
  img.draggable = false;
  img.src = state.client.thumbnailUrl(s.studyUID, s.seriesUID);
  img.addEventListener('error', () => {
    const ph = document.createElement('div');
    ph.className = 'thumb-missing';
    ph.textContent = s.modality || '?';
    img.replaceWith(ph);
  });
  const label = document.createElement('div');
  label.className = 'label';
  label.textContent = `${s.number ?? ''} ${s.modality} · ${s.instanceCount ?? '?'} im\n`;
  const desc = document.createElement('div');
  desc.className = 'label';
  desc.textContent = s.description || '(no description)';
  item.append(img, label, desc);
  if (AI_LABEL.test(s.description)) {
    item.classList.add('ai-series');
    const badge = document.createElement('div');
    badge.className = 'ai-badge';
    badge.textContent = 'AI generated - not for clinical use';
    item.append(badge);
  }
  item.addEventListener('dragstart', (e) => {
    e.dataTransfer?.setData(SERIES_DRAG_TYPE, s.seriesUID);
    e.dataTransfer?.setData('text/plain', s.seriesUID);
  });
  item.addEventListener('click', () => void showInActive(s.seriesUID, false));
  item.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') {
      e.stopPropagation();
      void showInActive(s.seriesUID, false);
    }
  });
  return item;
}

export function renderSeriesPanel(): void {
  dom.seriesPanel.replaceChildren(...state.seriesList.map(seriesItem));
  setActive(state.active);
}

/** Re-read the studies' series (QIDO-RS) and redraw the panel. */
export async function refreshSeriesList(): Promise<void> {
  await readSeriesList();
  renderSeriesPanel();
}
