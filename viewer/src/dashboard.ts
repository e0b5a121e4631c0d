// The turnaround dashboard (/dashboard): GET /api/turnaround -> a box plot of arrival-to-sign
// minutes per priority (inline SVG: box = quartiles, line = median, whiskers = min / max, one dot
// per study) and a table of n / median / p90 for arrival-to-open, arrival-to-AI and
// arrival-to-sign. No chart library: a few SVG elements.
import './style.css';
import { createAlertBanner } from './alerts';
import { connectLive, debounce } from './live';
import type { Priority, Turnaround, TurnaroundStudy } from './api/types';
import { PRIORITY_LABEL, api, me } from './worklistApi';

const PRIORITIES: Priority[] = ['critical', 'urgent', 'routine'];
const COLOURS: Record<Priority, string> = { critical: '#e5484d', urgent: '#f5a524', routine: '#4aa3ff' };
const METRICS = [
  { key: 'arrival_to_open', label: 'Arrival to open' },
  { key: 'arrival_to_ai', label: 'Arrival to AI result' },
  { key: 'arrival_to_sign', label: 'Arrival to sign-off' },
] as const;

const statusEl = document.querySelector<HTMLElement>('#status')!;
const plotEl = document.querySelector<HTMLElement>('#plot')!;
const summaryEl = document.querySelector<HTMLTableElement>('#summary')!;
const noteEl = document.querySelector<HTMLElement>('#note')!;
const hook = { loaded: false, groups: 0, studies: 0, error: '' };
(window as unknown as { __radsight: typeof hook }).__radsight = hook;

/** Minutes of one metric for a row (null: not reached yet). */
const minutes = (row: TurnaroundStudy, m: (typeof METRICS)[number]): number | null => row.minutes[m.key];

/** Quantile by linear interpolation (numpy's default), of sorted values. */
export function quantile(sorted: number[], q: number): number {
  if (!sorted.length) return NaN;
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

const svgEl = <K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string | number>, text = '') => {
  const e = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text) e.textContent = text;
  return e;
};

const fmtMin = (v: number | null | undefined) =>
  v === null || v === undefined || !Number.isFinite(v) ? '–' : v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);

function niceMax(v: number): number {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function boxPlot(groups: { priority: Priority; values: number[] }[]): SVGSVGElement {
  const W = 760;
  const rowH = 70;
  const left = 110;
  const right = 30;
  const top = 16;
  const H = top + rowH * PRIORITIES.length + 40;
  const max = niceMax(Math.max(1, ...groups.flatMap((g) => g.values)));
  const x = (v: number) => left + (v / max) * (W - left - right);
  const svg = svgEl('svg', { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: 'img', id: 'turnaround-plot' });
  svg.append(svgEl('title', {}, 'Arrival-to-sign minutes by priority: box = quartiles, line = median, whiskers = range, dots = studies'));
  // Axis with 5 ticks.
  const axisY = top + rowH * PRIORITIES.length + 6;
  svg.append(svgEl('line', { x1: left, x2: W - right, y1: axisY, y2: axisY, stroke: '#555' }));
  for (let i = 0; i <= 5; i++) {
    const v = (max * i) / 5;
    svg.append(svgEl('line', { x1: x(v), x2: x(v), y1: top, y2: axisY + 4, stroke: '#2b303b' }));
    svg.append(svgEl('text', { x: x(v), y: axisY + 18, 'text-anchor': 'middle' }, fmtMin(v)));
  }
  svg.append(svgEl('text', { x: (left + W - right) / 2, y: axisY + 32, 'text-anchor': 'middle' }, 'minutes from arrival to sign-off'));
  PRIORITIES.forEach((p, i) => {
    const cy = top + rowH * i + rowH / 2;
    const g = svgEl('g', { class: 'group', 'data-priority': p });
    g.append(svgEl('text', { x: 8, y: cy + 4 }, PRIORITY_LABEL[p]));
    const values = (groups.find((x) => x.priority === p)?.values ?? []).slice().sort((a, b) => a - b);
    g.append(svgEl('text', { x: 8, y: cy + 18, class: 'n' }, `n = ${values.length}`));
    if (values.length) {
      const [q1, med, q3] = [0.25, 0.5, 0.75].map((q) => quantile(values, q));
      const c = COLOURS[p];
      g.append(svgEl('line', { x1: x(values[0]), x2: x(values[values.length - 1]), y1: cy, y2: cy, stroke: c, 'stroke-width': 1.5 }));
      for (const v of [values[0], values[values.length - 1]]) {
        g.append(svgEl('line', { x1: x(v), x2: x(v), y1: cy - 10, y2: cy + 10, stroke: c, 'stroke-width': 1.5 }));
      }
      // A box at least 8 px wide (one study, or all alike), centred on the median.
      const bw = Math.max(8, x(q3) - x(q1));
      const bx = bw > x(q3) - x(q1) ? x(med) - bw / 2 : x(q1);
      const box = svgEl('rect', {
        class: 'box',
        x: bx,
        y: cy - 18,
        width: bw,
        height: 36,
        fill: c,
        'fill-opacity': 0.35,
        stroke: c,
        'stroke-width': 2,
      });
      box.append(svgEl('title', {}, `${PRIORITY_LABEL[p]}: n ${values.length}, quartiles ${fmtMin(q1)} / ${fmtMin(med)} / ${fmtMin(q3)} min`));
      g.append(box);
      g.append(svgEl('line', { class: 'median', x1: x(med), x2: x(med), y1: cy - 18, y2: cy + 18, stroke: '#fff', 'stroke-width': 2.5 }));
      values.forEach((v, j) => {
        // Deterministic jitter so dots of equal value stay visible.
        const jy = cy + (((j * 37) % 21) - 10) * 1.2;
        g.append(svgEl('circle', { class: 'dot', cx: x(v), cy: jy, r: 2.5, fill: c, 'fill-opacity': 0.8 }));
      });
    } else {
      g.append(svgEl('text', { x: left + 6, y: cy + 4, class: 'empty' }, 'no signed studies'));
    }
    svg.append(g);
  });
  return svg;
}

function renderSummary(stats: Turnaround['summary']): void {
  const th = (textContent: string, span: Partial<HTMLTableCellElement> = {}) => Object.assign(document.createElement('th'), { textContent, ...span });
  const groups = document.createElement('tr');
  groups.append(th('Priority', { rowSpan: 2 }), ...METRICS.map((m) => th(m.label, { colSpan: 3 })));
  const head = document.createElement('tr');
  head.append(...METRICS.flatMap(() => [th('n'), th('median'), th('p90')]));
  const rows = PRIORITIES.map((p) => {
    const tr = document.createElement('tr');
    tr.dataset.priority = p;
    const cells = [PRIORITY_LABEL[p], ...METRICS.flatMap((m) => [String(stats[p][m.key].n), fmtMin(stats[p][m.key].median), fmtMin(stats[p][m.key].p90)])];
    tr.append(...cells.map((t) => Object.assign(document.createElement('td'), { textContent: t })));
    return tr;
  });
  const thead = document.createElement('thead');
  thead.append(groups, head);
  const tbody = document.createElement('tbody');
  tbody.append(...rows);
  summaryEl.replaceChildren(thead, tbody);
}

async function load(): Promise<void> {
  statusEl.textContent = 'Loading…';
  try {
    const body = await api<Turnaround>('GET', `/api/turnaround?${rangeParams()}`);
    const rows = body.studies;
    const sign = METRICS[2];
    const groups = PRIORITIES.map((p) => ({
      priority: p,
      values: rows.filter((r) => r.priority === p).map((r) => minutes(r, sign)).filter((v): v is number => v !== null && v >= 0),
    }));
    plotEl.replaceChildren(boxPlot(groups));
    renderSummary(body.summary);
    hook.groups = groups.filter((g) => g.values.length).length;
    hook.studies = rows.length;
    noteEl.textContent = `${rows.length} studies; ${groups.reduce((n, g) => n + g.values.length, 0)} signed off. Priority as the worklist gave it.`;
    statusEl.textContent = '';
  } catch (err) {
    hook.error = (err as Error).message;
    statusEl.textContent = `Turnaround figures unavailable: ${(err as Error).message}`;
  }
  hook.loaded = true;
}

const rangeForm = document.querySelector<HTMLFormElement>('#range')!;

/** Studies that arrived in [from 00:00, to + 1 day 00:00), local days; kept in the URL. */
function rangeParams(): URLSearchParams {
  const f = new FormData(rangeForm);
  const p = new URLSearchParams();
  const day = (k: string) => String(f.get(k) ?? '');
  if (day('since')) p.set('since', new Date(`${day('since')}T00:00`).toISOString());
  if (day('until')) p.set('until', new Date(new Date(`${day('until')}T00:00`).getTime() + 86_400_000).toISOString());
  return p;
}

const fromUrl = new URLSearchParams(location.search);
for (const k of ['since', 'until']) {
  const input = rangeForm.elements.namedItem(k) as HTMLInputElement;
  input.value = fromUrl.get(k) ?? '';
}
rangeForm.addEventListener('submit', (e) => {
  e.preventDefault();
  const p = new URLSearchParams();
  for (const [k, v] of new FormData(rangeForm)) if (String(v)) p.set(k, String(v));
  history.replaceState(null, '', p.size ? `${location.pathname}?${p}` : location.pathname);
  void load();
});

void me().then((u) => {
  if (u) document.querySelector('#user')!.textContent = u.username;
});
const banner = createAlertBanner(document.querySelector<HTMLElement>('#alerts')!);
const reload = debounce(() => void load(), 1000);
connectLive({
  onEvent: (e) => {
    banner.onEvent(e);
    if (e.type === 'status-changed') reload();
  },
  onResync: () => void banner.reload(),
});
void load();
