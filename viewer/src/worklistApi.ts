// The reading worklist's REST API (issue 6): the prioritised list, the reading workflow
// (claim / heartbeat / release / sign), order priority, alerts and turnaround figures.
// Every call is same-origin with the session cookie; errors carry the server's `detail`.

import type { Alert, ModelDetail, Me, OrderPriority, Priority, SignDecision, WorklistItem, WorklistPage } from './api/types';

// Re-exported under the names the pages have imported from here.
export type { Alert, AiSummary, ModelDetail, Me, OrderPriority, Priority, ReadStatus, WorklistItem, WorklistPage } from './api/types';

export interface WorklistQuery {
  status?: string;
  modality?: string;
  priority?: string;
  reader?: string;
  q?: string;
  limit: number;
  offset: number;
}

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly detail: string,
  ) {
    super(detail || `HTTP ${status}`);
  }
}

/** The server's explanation (FastAPI `detail`, a string or a list of validation errors). */
function detailOf(body: unknown, fallback: string): string {
  const d = (body as { detail?: unknown } | null)?.detail;
  if (typeof d === 'string') return d;
  if (d !== undefined) return JSON.stringify(d);
  return fallback;
}

export async function api<T>(method: string, path: string, body?: unknown): Promise<T> {
  const r = await fetch(path, {
    method,
    credentials: 'same-origin',
    headers: body === undefined ? { Accept: 'application/json' } : { Accept: 'application/json', 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  let parsed: unknown = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  if (!r.ok) throw new ApiError(r.status, detailOf(parsed, text.slice(0, 300) || `HTTP ${r.status}`));
  return parsed as T;
}

const study = (uid: string) => `/api/worklist/${encodeURIComponent(uid)}`;

export function fetchWorklist(q: WorklistQuery): Promise<WorklistPage> {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) if (v !== undefined && v !== '') p.set(k, String(v));
  return api<WorklistPage>('GET', `/api/worklist?${p}`);
}

export const worklistItem = (uid: string) => api<WorklistItem>('GET', study(uid));
export const claim = (uid: string) => api<WorklistItem>('POST', `${study(uid)}/claim`);
export const heartbeat = (uid: string) => api<WorklistItem>('POST', `${study(uid)}/heartbeat`);
export const release = (uid: string) => api<WorklistItem>('POST', `${study(uid)}/release`);
/** A finding id may be a string from the page (the server reads it as an integer). */
type SignInput = Omit<SignDecision, 'finding_id'> & { finding_id: SignDecision['finding_id'] | string };
export const sign = (uid: string, decisions: SignInput[]) => api<WorklistItem>('POST', `${study(uid)}/sign`, { decisions });
export const setOrderPriority = (uid: string, order_priority: OrderPriority | null) =>
  api<WorklistItem>('PUT', `${study(uid)}/order-priority`, { order_priority });

/** Release without waiting, when the page goes away (fetch keepalive outlives the page). */
export function releaseOnExit(uid: string): void {
  try {
    void fetch(`${study(uid)}/release`, { method: 'POST', credentials: 'same-origin', keepalive: true }).catch(() => undefined);
  } catch {
    navigator.sendBeacon?.(`${study(uid)}/release`);
  }
}

export const unacknowledgedAlerts = () => api<Alert[]>('GET', '/api/alerts?unacknowledged=true');

export const acknowledge = (id: Alert['id']) => api<Alert>('POST', `/api/alerts/${encodeURIComponent(String(id))}/ack`);

export const fetchModel = (name: string) => api<ModelDetail>('GET', `/api/models/${encodeURIComponent(name)}`);

let meP: Promise<Me | null> | undefined;
/** The logged-in user (cached for the page). */
export function me(): Promise<Me | null> {
  meP ??= fetch('/api/me', { credentials: 'same-origin' })
    .then((r) => (r.ok ? (r.json() as Promise<Me>) : null))
    .catch(() => null);
  return meP;
}

export const PRIORITY_LABEL: Record<Priority, string> = { critical: 'Critical', urgent: 'Urgent', routine: 'Routine' };

export function fmtTime(iso: string | null | undefined): string {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const today = new Date();
  const sameDay = d.toDateString() === today.toDateString();
  return sameDay ? d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }) : d.toLocaleString([], { dateStyle: 'short', timeStyle: 'short' });
}
