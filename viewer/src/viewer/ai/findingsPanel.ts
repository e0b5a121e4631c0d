// The findings sidebar: the study's AI findings from GET /api/studies/{uid}/findings, each with
// model name and version, label, probability, measurements, status, a link to its slice and
// accept / reject buttons (POST /api/findings/{id}/decision). Rejected findings stay listed.
import type { Finding } from '../../api/types';

export type { Finding };

export const AI_NOTICE = 'AI generated - not for clinical use';

export async function fetchFindings(studyUID: string): Promise<Finding[] | undefined> {
  const r = await fetch(`/api/studies/${encodeURIComponent(studyUID)}/findings`, { credentials: 'same-origin' });
  if (r.status === 404) return undefined; // no findings API on this server
  if (!r.ok) throw new Error(`findings: HTTP ${r.status}`);
  const body = (await r.json()) as Finding[] | { findings: Finding[] };
  return Array.isArray(body) ? body : body.findings;
}

export async function decide(id: Finding['id'], status: Finding['status']): Promise<Finding> {
  const r = await fetch(`/api/findings/${encodeURIComponent(String(id))}/decision`, {
    method: 'POST',
    credentials: 'same-origin',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ status }),
  });
  if (!r.ok) throw new Error(`decision: HTTP ${r.status} ${await r.text()}`);
  return (await r.json()) as Finding;
}

function el<K extends keyof HTMLElementTagNameMap>(tag: K, cls: string, text = ''): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text) e.textContent = text;
  return e;
}

export function fmtValue(v: number): string {
  return Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 1 ? v.toFixed(1) : v.toPrecision(2);
}

export function renderFinding(
  f: Finding,
  actions: { jump: (f: Finding) => void; decide: (f: Finding, s: Finding['status']) => Promise<void>; modelCard?: (f: Finding) => void },
): HTMLElement {
  const item = el('div', `finding status-${f.status}`);
  item.dataset.findingId = String(f.id);
  item.dataset.status = f.status;
  const title = el('div', 'finding-title');
  title.append(el('span', 'finding-label', f.label));
  if (f.probability !== null && f.probability !== undefined) {
    title.append(el('span', 'finding-prob', `${(f.probability * 100).toFixed(0)}%`));
  }
  if (f.positive) title.append(el('span', 'finding-positive', 'positive'));
  const model = el('div', 'finding-model', `${f.model} v${f.model_version} `);
  if (actions.modelCard) {
    const card = el('button', 'model-card-link', 'model card');
    card.type = 'button';
    card.title = `What ${f.model} is for, how it was trained and validated, its limits`;
    card.addEventListener('click', () => actions.modelCard?.(f));
    model.append(card);
  }
  item.append(title, model);
  if (f.measurements?.length) {
    const ul = el('ul', 'finding-measurements');
    for (const m of f.measurements) ul.append(el('li', '', `${m.name}: ${fmtValue(m.value)} ${m.unit}`));
    item.append(ul);
  }
  const when = f.decided_at ? new Date(f.decided_at).toLocaleString() : '';
  const statusText =
    f.status === 'pending' ? 'Pending review' : `${f.status === 'accepted' ? 'Accepted' : 'Rejected'} by ${f.decided_by || '?'}${when ? ` · ${when}` : ''}`;
  item.append(el('div', 'finding-status', statusText));
  const buttons = el('div', 'finding-actions');
  if (f.location && (f.location.sop_instance_uid || f.location.slice_index !== undefined)) {
    const jump = el('button', 'finding-jump', 'Go to slice');
    jump.type = 'button';
    jump.addEventListener('click', () => actions.jump(f));
    buttons.append(jump);
  }
  for (const [status, label] of [
    ['accepted', 'Accept'],
    ['rejected', 'Reject'],
    ['pending', 'Undo'],
  ] as const) {
    if (status === f.status || (status === 'pending' && f.status === 'pending')) continue;
    const b = el('button', `finding-${status === 'accepted' ? 'accept' : status === 'rejected' ? 'reject' : 'undo'}`, label);
    b.type = 'button';
    b.addEventListener('click', () => {
      b.disabled = true;
      void actions.decide(f, status).finally(() => (b.disabled = false));
    });
    buttons.append(b);
  }
  item.append(buttons);
  return item;
}
