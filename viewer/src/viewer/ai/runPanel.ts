// "Run AI" at the top of the findings panel: POST the study's run, then follow its jobs (and
// those already queued or running when the page opened) until every one has ended; then the
// results are read again (series, findings, overlays) without a reload.
import { aiState } from './aiState';
import { ai, error } from './context';
import { type JobView, RunError, followJobs, isActive, jobText, requestRun, studyJobs } from './runAi';

const panel = {
  button: document.createElement('button'),
  status: document.createElement('div'),
  jobs: document.createElement('ul'),
  following: false,
  /** Re-read series, findings and overlays once the jobs have ended. */
  refresh: async (): Promise<void> => undefined,
};

/** The Run AI block (button, status line, jobs); `refresh` re-reads the results after a run. */
export function runPanel(refresh: () => Promise<void>): HTMLElement {
  panel.refresh = refresh;
  const run = document.createElement('div');
  run.className = 'ai-run';
  const runButton = panel.button;
  runButton.type = 'button';
  runButton.id = 'ai-run';
  runButton.textContent = 'Run AI';
  runButton.title = "Run the installed models that match this study's series (POST /api/studies/{uid}/ai/run)";
  runButton.addEventListener('click', () => void runAi());
  panel.status.className = 'ai-run-status';
  panel.status.setAttribute('role', 'status');
  panel.jobs.className = 'ai-jobs';
  run.append(runButton, panel.status, panel.jobs);
  return run;
}

function setRunMessage(text: string, kind: '' | 'error' | 'done' = ''): void {
  aiState.run.message = text;
  panel.status.textContent = text;
  panel.status.dataset.kind = kind;
}

function showJobs(jobs: JobView[]): void {
  aiState.run.jobs = jobs.map((j) => ({ id: j.id, model: j.model, state: j.state, error: j.error }));
  panel.jobs.replaceChildren(
    ...jobs.map((j) => {
      const li = document.createElement('li');
      li.className = `ai-job state-${j.state}`;
      li.dataset.jobId = String(j.id);
      li.dataset.state = j.state;
      li.textContent = jobText(j);
      return li;
    }),
  );
}

/** Follow `ids` (per study) to the end, then re-read series, findings and overlays. */
async function follow(byStudy: Map<string, number[]>): Promise<void> {
  panel.following = true;
  panel.button.disabled = true;
  try {
    const shown = new Map<string, JobView[]>();
    const update = () => showJobs([...shown.values()].flat());
    const ended = await Promise.all(
      [...byStudy].map(([uid, ids]) =>
        followJobs(uid, ids, (jobs) => {
          shown.set(uid, jobs);
          update();
          const n = [...shown.values()].flat();
          const running = n.filter((j) => j.state === 'running').length;
          setRunMessage(`AI running: ${running} running, ${n.filter((j) => j.state === 'queued').length} queued`);
        }),
      ),
    );
    const all = ended.flat();
    const failed = all.filter((j) => j.state === 'failed').length;
    setRunMessage('Loading the results…');
    await panel.refresh();
    aiState.run.finished += 1;
    setRunMessage(
      failed ? `AI finished: ${all.length - failed} done, ${failed} failed` : `AI finished: ${all.length} job${all.length === 1 ? '' : 's'} done`,
      failed ? 'error' : 'done',
    );
  } catch (err) {
    setRunMessage(`Following the AI jobs failed: ${err instanceof Error ? err.message : String(err)}`, 'error');
    error('AI jobs', err);
  } finally {
    panel.following = false;
    panel.button.disabled = false;
  }
}

async function runAi(): Promise<void> {
  if (panel.following) return;
  panel.button.disabled = true;
  setRunMessage('Queuing…');
  const byStudy = new Map<string, number[]>();
  const refused: string[] = [];
  try {
    for (const uid of ai.host.studyUIDs) {
      try {
        const jobs = await requestRun(uid);
        byStudy.set(uid, jobs.map((j) => j.id));
      } catch (err) {
        if (!(err instanceof RunError)) throw err;
        // 422: no installed model matches; 404: no AI engine / unknown study; 403: not allowed.
        refused.push(err.status === 404 && /Not Found/i.test(err.message) ? 'This server has no AI engine.' : err.message);
      }
    }
  } catch (err) {
    refused.push(err instanceof Error ? err.message : String(err));
  }
  if (!byStudy.size) {
    showJobs([]);
    setRunMessage(`AI not run: ${refused.join('; ')}`, 'error');
    panel.button.disabled = false;
    return;
  }
  await follow(byStudy);
  if (refused.length) setRunMessage(`${aiState.run.message}; not run: ${refused.join('; ')}`, 'error');
}

/** Jobs already queued or running when the page opened (the arrival trigger): follow them too. */
export async function followRunning(): Promise<void> {
  try {
    const byStudy = new Map<string, number[]>();
    for (const uid of ai.host.studyUIDs) {
      const active = (await studyJobs(uid)).filter(isActive);
      if (active.length) byStudy.set(uid, active.map((j) => j.id));
    }
    if (byStudy.size && !panel.following) await follow(byStudy);
  } catch {
    /* no jobs API on this server */
  }
}
