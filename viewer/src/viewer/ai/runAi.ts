// "Run AI": POST /api/studies/{uid}/ai/run, then the study's jobs (GET /api/studies/{uid}/jobs,
// polled) with their states until every job asked for is done or failed; the caller refreshes
// findings and overlays then. A 422 (no installed model matches) is shown as the server says it.
import type { Job } from '../../api/types';

export type JobView = Job;

export interface RunState {
  /** What the panel's status line says ('' before any run). */
  message: string;
  /** The jobs followed (the last run's, or those already in progress when the page opened). */
  jobs: { id: number; model: string; state: string; error: string }[];
  /** Runs whose jobs all ended (the findings and overlays were re-read after each). */
  finished: number;
}

const FINAL = new Set(['done', 'failed']);
const api = (studyUID: string, rest: string) => `/api/studies/${encodeURIComponent(studyUID)}/${rest}`;

async function detail(r: Response): Promise<string> {
  const text = await r.text();
  try {
    const d = (JSON.parse(text) as { detail?: unknown }).detail;
    if (typeof d === 'string') return d;
    if (d) return JSON.stringify(d);
  } catch {
    /* not JSON */
  }
  return text || `HTTP ${r.status}`;
}

export class RunError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

/** Queue the study's matching models (or `model`); the jobs queued (202). */
export async function requestRun(studyUID: string, model?: string): Promise<JobView[]> {
  const r = await fetch(api(studyUID, 'ai/run'), {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(model ? { model } : {}),
  });
  if (!r.ok) throw new RunError(r.status, await detail(r));
  return ((await r.json()) as { jobs: JobView[] }).jobs;
}

export async function studyJobs(studyUID: string): Promise<JobView[]> {
  const r = await fetch(api(studyUID, 'jobs'), { credentials: 'same-origin' });
  if (r.status === 404) return [];
  if (!r.ok) throw new RunError(r.status, await detail(r));
  return (await r.json()) as JobView[];
}

/** Poll the jobs `ids` of `studyUID` every `intervalMs` until all are done / failed. */
export async function followJobs(
  studyUID: string,
  ids: number[],
  onUpdate: (jobs: JobView[]) => void,
  intervalMs = 700,
): Promise<JobView[]> {
  const wanted = new Set(ids);
  for (;;) {
    const mine = (await studyJobs(studyUID)).filter((j) => wanted.has(j.id));
    onUpdate(mine);
    if (mine.length === wanted.size && mine.every((j) => FINAL.has(j.state))) return mine;
    await new Promise((res) => setTimeout(res, intervalMs));
  }
}

export function jobText(j: JobView): string {
  const what = `${j.model} v${j.version}`;
  if (j.state === 'failed') return `${what}: failed${j.error ? ` — ${j.error}` : ''}`;
  if (j.state === 'queued' && j.attempts > 0) return `${what}: queued (retry ${j.attempts}/${j.max_attempts})`;
  return `${what}: ${j.state}`;
}

export const isActive = (j: JobView): boolean => !FINAL.has(j.state);
