// The viewer page's Cornerstone part: /viewer?StudyInstanceUIDs=<uid>[,<uid>...] (the URL form
// OHIF uses), imported by entry.ts once the first image's preview is drawn. It starts the page:
// the study's searches, Cornerstone, the first frame, the layout, the reading bar and the AI
// module; the modules it imports do the rest (README.md lists them).
import '../style.css';
import { Tag, formatName, str } from '../dicomweb';
import { loadAi } from './aiLoader';
import { ACTIONS, bindKeys } from './commands';
import { cpuStacksWanted, initCornerstone } from './cornerstone';
import { applyLayout, engineFor } from './layout';
import { dropPreview, previewReady } from './preview';
import { handoff } from './previewHandoff';
import { requestFirstFrame, watchLoading } from './progress';
import type { ReadingState } from './reading';
import { refreshSeriesList } from './seriesPanel';
import { dom, state } from './state';
import { describeError, setStatus, toast } from './status';
import { hook, reportError } from './testHooks';
import { onToolsArrived, toolsNow } from './toolBinding';
import { buildToolbar } from './toolbar';
import { studyLines } from './viewportText';

hook.loading = false;
hook.marks.script = performance.now();
if (handoff.drawnAt !== undefined) hook.marks.preview = handoff.drawnAt;

/** The reading workflow (claim, heartbeat, release, sign-off, priority, alerts), per study. */
function startReading(studyUID: string): void {
  const reading: ReadingState = { claim: 'none', holder: null, heartbeats: 0, signed: false, lastError: '' };
  hook.reading = reading;
  void import('./reading').then((m) => m.initReading({ studyUID, findings: async () => (await loadAi()).currentFindings(), toast }, reading));
}

async function start(): Promise<void> {
  buildToolbar(ACTIONS);
  bindKeys();
  watchLoading();
  if (state.studyUIDs.length) onToolsArrived(() => void loadAi());
  if (!state.studyUIDs.length) {
    setStatus('No study given: open one from the worklist.');
    previewReady();
    return;
  }
  // The searches go out first; Cornerstone initialises while they are on the wire.
  const studyFound = state.client.getStudy(state.studyUIDs[0]);
  const seriesFound = refreshSeriesList();
  studyFound.catch(() => undefined);
  seriesFound.catch(() => undefined);
  state.cpuStacks = cpuStacksWanted();
  initCornerstone(state.cpuStacks);
  hook.marks.loaderInit = performance.now();
  // The first frame is asked for (and the decode worker with its codec starts) before the
  // rendering engine is built: its fetch and decode overlap the engine's WebGL set-up. The
  // page's inline script has usually brought the series list and metadata already; if not,
  // the engine does not wait for them.
  const firstAsked = seriesFound.then(requestFirstFrame).catch(() => undefined);
  await Promise.race([firstAsked, new Promise((resolve) => setTimeout(resolve, 30))]);
  // A WebGL engine is built now, its set-up overlapping the requests; a CPU one (cheap) once the
  // series list says whether the study has a SEG.
  if (!state.cpuStacks) state.engine = engineFor(false);
  hook.marks.init = performance.now();
  try {
    const [ds] = await Promise.all([studyFound, seriesFound]);
    state.study = ds;
    hook.marks.series = performance.now();
    if (state.cpuStacks) state.engine = engineFor(false);
  } catch (err) {
    setStatus(`Could not load the study: ${describeError(err)}`);
    dropPreview();
    previewReady();
    reportError(describeError(err));
    return;
  }
  document.querySelector('#study-title')!.textContent = studyLines().join(' · ');
  document.title = `RadSight - ${formatName(str(state.study, Tag.PatientName)) || 'viewer'}`;
  if (!state.seriesList.length) setStatus('This study has no series.');
  if (state.studyUIDs.length === 1) startReading(state.studyUIDs[0]);
  await applyLayout(state.layout);
  // No image to wait for (a study of SRs only, a series that failed): the tools now.
  if (!state.slots.some((s) => s.series && !s.series.notImage && s.series.imageIds.length)) {
    dropPreview();
    void toolsNow().then(previewReady);
  }
  // and in any case (an image that never renders)
  else setTimeout(() => void toolsNow().then(previewReady), 5000);
  new ResizeObserver(() => state.engine.resize(true, true)).observe(dom.grid);
}

void start();
