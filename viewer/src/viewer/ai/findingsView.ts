// The findings list of the sidebar (GET /api/studies/{uid}/findings): one card per finding with
// accept / reject, "Go to slice" and the model card.
import { utilities } from '@cornerstonejs/core';
import { Tag, str } from '../../dicomweb';
import { fetchModel } from '../../worklistApi';
import { closablePanel } from '../panel';
import { aiState } from './aiState';
import { ai, error } from './context';
import { type Finding, decide, fetchFindings, renderFinding } from './findingsPanel';
import { redrawAll } from './overlayCanvas';
import { renderOverlayControls } from './overlayControls';

export async function loadFindings(): Promise<void> {
  try {
    const all: Finding[] = [];
    let api = false;
    for (const uid of ai.host.studyUIDs) {
      const found = await fetchFindings(uid);
      if (found) {
        api = true;
        all.push(...found);
      }
    }
    ai.findings = all;
    aiState.findingsApi = api;
    aiState.findings = all.length;
    renderFindings();
    renderOverlayControls(); // map names come from the findings that point to them
    redrawAll();
  } catch (err) {
    error('AI findings', err);
  }
}

function renderFindings(): void {
  if (!ai.findings.length) {
    const p = document.createElement('p');
    p.className = 'muted';
    p.textContent = aiState.findingsApi ? 'No AI findings for this study.' : 'AI findings are not available on this server.';
    ai.findingsList.replaceChildren(p);
    return;
  }
  ai.findingsList.replaceChildren(
    ...ai.findings.map((f) =>
      renderFinding(f, {
        jump: (x) => void jumpTo(x),
        modelCard: (x) => void showModelCard(x.model),
        decide: async (x, status) => {
          try {
            const updated = await decide(x.id, status);
            ai.findings = ai.findings.map((y) => (y.id === x.id ? { ...y, ...updated } : y));
            renderFindings();
            redrawAll();
          } catch (err) {
            error('decision', err);
          }
        },
      }),
    ),
  );
}

/** The model's card (GET /api/models/{name}: `model_card`, Markdown) in a dialog, as text. */
async function showModelCard(name: string): Promise<void> {
  const pre = document.createElement('pre');
  pre.className = 'model-card';
  pre.textContent = 'Loading…';
  closablePanel('model-card', `Model card: ${name}`, pre);
  try {
    const m = await fetchModel(name);
    pre.textContent =
      m.model_card ??
      [`${m.name} v${m.version} (${m.task})`, m.metadata?.description, m.metadata?.intended_use && `Intended use: ${m.metadata.intended_use}`, '(This package has no model card.)']
        .filter(Boolean)
        .join('\n\n');
  } catch (err) {
    pre.textContent = `The model card could not be loaded: ${err instanceof Error ? err.message : String(err)}`;
  }
}

async function jumpTo(f: Finding): Promise<void> {
  // The finding's own probability map (a segmentation label's) becomes the one drawn.
  if (f.pmap_sop_instance_uid) ai.pickMap(f.pmap_sop_instance_uid);
  const loc = f.location ?? {};
  const seriesUID = loc.series_instance_uid;
  let slot = ai.host.slots().find((s) => s.series && (!seriesUID || s.series.seriesUID === seriesUID) && !s.orientation);
  if (!slot && seriesUID) {
    await ai.host.showSeries(seriesUID);
    slot = ai.host.slots().find((s) => s.series?.seriesUID === seriesUID);
  }
  if (!slot?.series) return;
  let index = -1;
  if (loc.sop_instance_uid) {
    const frame = loc.frame ?? 1;
    index = slot.series.imageIds.findIndex((id) => {
      const inst = slot.series!.metadataByImageId.get(id);
      return str(inst, Tag.SOPInstanceUID) === loc.sop_instance_uid && id.endsWith(`/frames/${frame}`);
    });
  }
  if (index < 0 && loc.slice_index !== undefined) index = loc.slice_index;
  if (index >= 0) await utilities.jumpToSlice(slot.csEl, { imageIndex: index });
}
