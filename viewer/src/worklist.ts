// The worklist page, two modes:
// - "Reading worklist" (default): GET /api/worklist, ordered by the server by priority, then
//   score, then arrival; priority badge with its explanation, reading status (locked when another
//   reader holds the study), filters for status / modality / priority / reader, paging; kept live
//   by the server's events (src/live.ts) and the critical-alert banner (src/alerts.ts).
// - "All studies" (?mode=all): QIDO-RS search with server-side paging (limit/offset), filters on
//   every searchable attribute, column sorting. Also what a plain DICOMweb server gets.
// Open a study by click or Enter in both.
import './style.css';
import { createAlertBanner } from './alerts';
import { DicomWebClient, type DicomJsonDataset, type StudyQuery, Tag, formatDate, formatName, num, str, strs } from './dicomweb';
import { type LiveEvent, connectLive, debounce } from './live';
import { ApiError, PRIORITY_LABEL, type WorklistItem, fetchWorklist, fmtTime, me } from './worklistApi';

/** One worklist column. AI priority and reading status columns slot in as more entries. */
export interface Column {
  id: string;
  label: string;
  value: (s: DicomJsonDataset) => string | number;
  display?: (s: DicomJsonDataset) => string;
  numeric?: boolean;
  /** QIDO-RS ``orderby`` keywords that sort the whole result set on the server by this column. */
  orderby?: string[];
}

/** "All studies" (QIDO-RS) columns; priority and reading status are the reading worklist's. */
export const COLUMNS: Column[] = [
  {
    id: 'PatientName',
    label: 'Patient name',
    orderby: ['PatientName'],
    value: (s) => str(s, Tag.PatientName),
    display: (s) => formatName(str(s, Tag.PatientName)),
  },
  { id: 'PatientID', label: 'Patient ID', value: (s) => str(s, Tag.PatientID), orderby: ['PatientID'] },
  {
    id: 'StudyDate',
    label: 'Date',
    orderby: ['StudyDate', 'StudyTime'],
    value: (s) => str(s, Tag.StudyDate) + str(s, Tag.StudyTime),
    display: (s) => formatDate(str(s, Tag.StudyDate)),
  },
  {
    id: 'ModalitiesInStudy',
    label: 'Modalities',
    value: (s) => strs(s, Tag.ModalitiesInStudy).join(', '),
    orderby: ['ModalitiesInStudy'],
  },
  {
    id: 'StudyDescription',
    label: 'Description',
    value: (s) => str(s, Tag.StudyDescription),
    orderby: ['StudyDescription'],
  },
  { id: 'AccessionNumber', label: 'Accession', value: (s) => str(s, Tag.AccessionNumber), orderby: ['AccessionNumber'] },
  {
    id: 'series',
    label: 'Series',
    value: (s) => num(s, Tag.NumberOfStudyRelatedSeries) ?? 0,
    numeric: true,
    orderby: ['NumberOfStudyRelatedSeries'],
  },
  {
    id: 'instances',
    label: 'Instances',
    value: (s) => num(s, Tag.NumberOfStudyRelatedInstances) ?? 0,
    numeric: true,
    orderby: ['NumberOfStudyRelatedInstances'],
  },
];

interface State {
  mode: 'reading' | 'all';
  filters: Omit<StudyQuery, 'limit' | 'offset'>;
  wlFilters: { q: string; priority: string; status: string; modality: string; reader: string };
  offset: number;
  limit: number;
  sort: { column: string; descending: boolean };
}

/** One reading-worklist column (ordered by the server: priority, score, arrival). */
interface WlColumn {
  id: string;
  label: string;
  cell: (td: HTMLTableCellElement, item: WorklistItem) => void;
  numeric?: boolean;
}

const client = new DicomWebClient();
const table = document.querySelector<HTMLTableElement>('#studies')!;
const form = document.querySelector<HTMLFormElement>('#filters')!;
const wlForm = document.querySelector<HTMLFormElement>('#wl-filters')!;
const statusEl = document.querySelector<HTMLElement>('#status')!;
const pageInfo = document.querySelector<HTMLElement>('#page-info')!;
const prevBtn = document.querySelector<HTMLButtonElement>('#prev')!;
const nextBtn = document.querySelector<HTMLButtonElement>('#next')!;
const pageSize = document.querySelector<HTMLSelectElement>('#page-size')!;
const liveEl = document.querySelector<HTMLElement>('#live')!;

const state: State = {
  mode: 'reading',
  filters: {},
  wlFilters: { q: '', priority: '', status: '', modality: '', reader: '' },
  offset: 0,
  limit: 50,
  sort: { column: 'StudyDate', descending: true },
};
let rows: DicomJsonDataset[] = [];
let items: WorklistItem[] = [];
let total = 0;
let hasMore = false;
let requestSeq = 0;
let username = '';

/** Test hook: when the list was last drawn and how the live connection is (tests assert on the DOM). */
const hook = {
  mode: state.mode,
  renders: 0,
  lastRenderAt: 0,
  live: { connected: false, events: 0, reconnects: 0, lastEventId: '' },
  alerts: 0,
};
(window as unknown as { __radsight: typeof hook }).__radsight = hook;

/** Free text becomes a QIDO wildcard match; `*`/`?` typed by the user are kept as typed. */
function wildcard(text: string): string {
  const t = text.trim();
  if (!t) return '';
  return /[*?]/.test(t) ? t : `*${t}*`;
}

function readFilters(): State['filters'] {
  const f = new FormData(form);
  const get = (k: string) => String(f.get(k) ?? '').trim();
  const from = get('StudyDateFrom').replaceAll('-', '');
  const to = get('StudyDateTo').replaceAll('-', '');
  return {
    PatientName: wildcard(get('PatientName')),
    PatientID: wildcard(get('PatientID')),
    AccessionNumber: wildcard(get('AccessionNumber')),
    StudyDate: from || to ? (from === to ? from : `${from}-${to}`) : '',
    ModalitiesInStudy: get('ModalitiesInStudy').toUpperCase(),
    StudyDescription: wildcard(get('StudyDescription')),
  };
}

function readWlFilters(): State['wlFilters'] {
  const f = new FormData(wlForm);
  const get = (k: string) => String(f.get(k) ?? '').trim();
  return { q: get('q'), priority: get('priority'), status: get('status'), modality: get('modality').toUpperCase(), reader: get('reader') };
}

function activeForm(): HTMLFormElement {
  return state.mode === 'reading' ? wlForm : form;
}

function saveToUrl(): void {
  const p = new URLSearchParams();
  if (state.mode === 'all') p.set('mode', 'all');
  for (const [k, v] of new FormData(activeForm())) if (String(v)) p.set(k, String(v));
  if (state.offset) p.set('offset', String(state.offset));
  if (state.limit !== 50) p.set('limit', String(state.limit));
  if (state.mode === 'all') p.set('sort', `${state.sort.descending ? '-' : ''}${state.sort.column}`);
  const qs = p.toString();
  history.replaceState(null, '', qs ? `${location.pathname}?${qs}` : location.pathname);
}

function loadFromUrl(): void {
  const p = new URLSearchParams(location.search);
  state.mode = p.get('mode') === 'all' ? 'all' : 'reading';
  hook.mode = state.mode;
  for (const el of Array.from(activeForm().elements) as HTMLInputElement[]) {
    if (el.name && p.has(el.name)) el.value = p.get(el.name) ?? '';
  }
  state.offset = Number(p.get('offset') ?? 0) || 0;
  state.limit = Number(p.get('limit') ?? 50) || 50;
  pageSize.value = String(state.limit);
  const sort = p.get('sort');
  if (sort) state.sort = { column: sort.replace(/^-/, ''), descending: sort.startsWith('-') };
  state.filters = readFilters();
  state.wlFilters = readWlFilters();
  showMode();
}

function showMode(): void {
  wlForm.hidden = state.mode !== 'reading';
  form.hidden = state.mode !== 'all';
  document.querySelector('#mode-reading')?.classList.toggle('active', state.mode === 'reading');
  document.querySelector('#mode-all')?.classList.toggle('active', state.mode === 'all');
  table.classList.toggle('reading', state.mode === 'reading');
  table.setAttribute('aria-label', state.mode === 'reading' ? 'Reading worklist' : 'Studies');
  document.title = state.mode === 'reading' ? 'RadSight - reading worklist' : 'RadSight - all studies';
}

function search(): Promise<void> {
  return state.mode === 'reading' ? searchWorklist() : searchStudies();
}

async function searchStudies(): Promise<void> {
  const seq = ++requestSeq;
  statusEl.textContent = 'Searching…';
  table.setAttribute('aria-busy', 'true');
  try {
    // One more than a page tells whether a next page exists (QIDO-RS gives no total).
    const found = await client.searchStudies({
      ...state.filters,
      orderby: orderbyParam(),
      limit: state.limit + 1,
      offset: state.offset,
    });
    if (seq !== requestSeq) return;
    hasMore = found.length > state.limit;
    rows = found.slice(0, state.limit);
    statusEl.textContent = rows.length ? '' : 'No studies match.';
  } catch (err) {
    if (seq !== requestSeq) return;
    rows = [];
    hasMore = false;
    statusEl.textContent = `Search failed: ${(err as Error).message}`;
  }
  table.setAttribute('aria-busy', 'false');
  saveToUrl();
  render();
}

/** The reading worklist's current page. `quiet`: a live refresh (no "Searching…", keeps focus). */
async function searchWorklist(quiet = false): Promise<void> {
  const seq = ++requestSeq;
  if (!quiet) {
    statusEl.textContent = 'Loading…';
    table.setAttribute('aria-busy', 'true');
  }
  try {
    const page = await fetchWorklist({ ...state.wlFilters, limit: state.limit, offset: state.offset });
    if (seq !== requestSeq) return;
    items = page.items;
    total = page.total;
    if (!items.length && state.offset > 0 && total > 0) {
      // The page emptied under us (studies read / filtered away): back to the last page.
      state.offset = Math.max(0, Math.floor((total - 1) / state.limit) * state.limit);
      void searchWorklist(quiet);
      return;
    }
    hasMore = state.offset + items.length < total;
    statusEl.textContent = items.length ? '' : 'No studies in the worklist match.';
  } catch (err) {
    if (seq !== requestSeq) return;
    if (err instanceof ApiError && err.status === 404 && !quiet) {
      // A server without the worklist API (a plain DICOMweb server): all studies instead.
      state.mode = 'all';
      hook.mode = 'all';
      showMode();
      document.querySelector<HTMLElement>('#mode-reading')!.hidden = true;
      void searchStudies();
      return;
    }
    if (!quiet) {
      items = [];
      hasMore = false;
    }
    statusEl.textContent = `Worklist failed: ${(err as Error).message}`;
  }
  table.setAttribute('aria-busy', 'false');
  saveToUrl();
  render();
}

function orderbyParam(): string | undefined {
  const col = COLUMNS.find((c) => c.id === state.sort.column);
  if (!col?.orderby) return undefined;
  return col.orderby.map((k) => (state.sort.descending ? '-' : '') + k).join(',');
}

function sortRows(): DicomJsonDataset[] {
  // The server sorts the whole result set (QIDO-RS ``orderby``); sorting the page again here
  // keeps the order right against DICOMweb servers that ignore the parameter.
  const col = COLUMNS.find((c) => c.id === state.sort.column);
  if (!col) return rows;
  const dir = state.sort.descending ? -1 : 1;
  return [...rows].sort((a, b) => {
    const va = col.value(a);
    const vb = col.value(b);
    if (typeof va === 'number' && typeof vb === 'number') return (va - vb) * dir;
    return String(va).localeCompare(String(vb), undefined, { numeric: true, sensitivity: 'base' }) * dir;
  });
}

function renderHeader(): void {
  const tr = table.tHead!.rows[0];
  if (state.mode === 'reading') {
    tr.replaceChildren(
      ...WL_COLUMNS.map((c) => {
        const th = document.createElement('th');
        th.dataset.column = c.id;
        th.scope = 'col';
        th.textContent = c.label;
        th.title = 'The worklist is ordered by priority, then score, then arrival';
        th.classList.add('fixed');
        return th;
      }),
    );
    return;
  }
  tr.replaceChildren(
    ...COLUMNS.map((c) => {
      const th = document.createElement('th');
      th.dataset.column = c.id;
      th.scope = 'col';
      th.tabIndex = 0;
      const active = state.sort.column === c.id;
      th.setAttribute('aria-sort', active ? (state.sort.descending ? 'descending' : 'ascending') : 'none');
      th.textContent = c.label + (active ? (state.sort.descending ? ' ▼' : ' ▲') : '');
      th.title = c.orderby ? 'Sort all studies' : 'Sort (within the page shown)';
      const toggle = () => {
        state.sort = { column: c.id, descending: active ? !state.sort.descending : false };
        if (c.orderby) {
          // Sorted by the server: start again from the first page of the new order.
          state.offset = 0;
          void search();
          return;
        }
        saveToUrl();
        render();
      };
      th.addEventListener('click', toggle);
      th.addEventListener('keydown', (e) => {
        if (e.key === 'Enter' || e.key === ' ') {
          e.preventDefault();
          toggle();
        }
      });
      return th;
    }),
  );
}

export function viewerUrl(studyUID: string): string {
  return `/viewer?StudyInstanceUIDs=${encodeURIComponent(studyUID)}`;
}

function span(cls: string, text: string): HTMLSpanElement {
  const e = document.createElement('span');
  e.className = cls;
  e.textContent = text;
  return e;
}

const person = (pn: string) => formatName(pn ?? '');

/** "Critical" badge + the reason (the visible explanation of the priority). */
function priorityCell(td: HTMLTableCellElement, it: WorklistItem): void {
  const level = it.priority ?? 'routine';
  const badge = span(`prio prio-${level}`, PRIORITY_LABEL[level] ?? level);
  badge.title = `score ${Number(it.score ?? 0).toFixed(2)}`;
  td.append(badge);
  if (it.order_priority) td.append(span(`order order-${it.order_priority.toLowerCase()}`, it.order_priority));
  if (it.alert && !it.alert.acknowledged_at) td.append(span('row-alert', '⚠'));
  // "Routine" alone says no more than the badge.
  if (it.reason && it.reason.toLowerCase() !== level) td.append(span('reason', it.reason));
  td.title = [it.reason, `score ${Number(it.score ?? 0).toFixed(2)}`].filter(Boolean).join(' · ');
}

/** unread / in progress — user (locked for others) / read by X at T. */
function statusCell(td: HTMLTableCellElement, it: WorklistItem): void {
  if (it.status === 'in_progress') {
    const mine = !!username && it.claimed_by === username;
    if (!mine) td.append(span('lock', 'locked'));
    td.append(span(`st st-progress${mine ? ' mine' : ' locked'}`, mine ? 'In progress — you' : `In progress — ${it.claimed_by ?? '?'}`));
    td.title = `Claimed by ${it.claimed_by ?? '?'} since ${fmtTime(it.claimed_at)}${mine ? '' : ': opens read-only'}`;
  } else if (it.status === 'read') {
    td.append(span('st st-read', `Read by ${it.signed_by ?? '?'}${it.signed_at ? ` at ${fmtTime(it.signed_at)}` : ''}`));
  } else {
    td.append(span('st st-unread', 'Unread'));
  }
}

const WL_COLUMNS: WlColumn[] = [
  { id: 'priority', label: 'Priority', cell: priorityCell },
  { id: 'status', label: 'Status', cell: statusCell },
  { id: 'PatientName', label: 'Patient name', cell: (td, it) => (td.textContent = person(it.PatientName)) },
  { id: 'PatientID', label: 'Patient ID', cell: (td, it) => (td.textContent = it.PatientID ?? '') },
  { id: 'StudyDate', label: 'Date', cell: (td, it) => (td.textContent = formatDate(it.StudyDate ?? '')) },
  { id: 'ModalitiesInStudy', label: 'Modalities', cell: (td, it) => (td.textContent = (it.ModalitiesInStudy ?? []).join(', ')) },
  { id: 'StudyDescription', label: 'Description', cell: (td, it) => (td.textContent = it.StudyDescription ?? '') },
  { id: 'AccessionNumber', label: 'Accession', cell: (td, it) => (td.textContent = it.AccessionNumber ?? '') },
  {
    id: 'arrived',
    label: 'Arrived',
    cell: (td, it) => {
      td.textContent = fmtTime(it.arrived_at);
      td.title = it.arrived_at ?? '';
    },
  },
  { id: 'instances', label: 'Instances', numeric: true, cell: (td, it) => (td.textContent = String(it.NumberOfStudyRelatedInstances ?? '')) },
];

function rowFor(uid: string, fill: (tr: HTMLTableRowElement) => void): HTMLTableRowElement {
  const tr = document.createElement('tr');
  tr.dataset.studyUid = uid;
  tr.tabIndex = 0;
  fill(tr);
  tr.addEventListener('click', () => window.location.assign(viewerUrl(uid)));
  tr.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') window.location.assign(viewerUrl(uid));
    else if (e.key === 'ArrowDown') (tr.nextElementSibling as HTMLElement | null)?.focus();
    else if (e.key === 'ArrowUp') (tr.previousElementSibling as HTMLElement | null)?.focus();
    else return;
    e.preventDefault();
  });
  return tr;
}

function worklistRow(it: WorklistItem): HTMLTableRowElement {
  return rowFor(it.StudyInstanceUID, (tr) => {
    tr.dataset.priority = it.priority;
    tr.dataset.status = it.status;
    tr.classList.add(`row-${it.priority}`);
    if (it.status === 'in_progress' && it.claimed_by !== username) tr.classList.add('locked');
    if (it.status === 'read') tr.classList.add('done');
    for (const c of WL_COLUMNS) {
      const td = document.createElement('td');
      td.dataset.column = c.id;
      c.cell(td, it);
      if (c.numeric) td.classList.add('num');
      tr.append(td);
    }
  });
}

function render(): void {
  renderHeader();
  const body = table.tBodies[0];
  // Keep keyboard focus on the same study across a live refresh.
  const focused = (document.activeElement as HTMLElement | null)?.closest('tr')?.dataset.studyUid;
  if (state.mode === 'reading') {
    body.replaceChildren(...items.map(worklistRow));
  } else {
    body.replaceChildren(
      ...sortRows().map((s) =>
        rowFor(str(s, Tag.StudyInstanceUID), (tr) => {
          for (const c of COLUMNS) {
            const td = document.createElement('td');
            td.dataset.column = c.id;
            td.textContent = c.display ? c.display(s) : String(c.value(s));
            if (c.numeric) td.classList.add('num');
            tr.append(td);
          }
        }),
      ),
    );
  }
  if (focused) body.querySelector<HTMLElement>(`tr[data-study-uid="${CSS.escape(focused)}"]`)?.focus();
  const page = Math.floor(state.offset / state.limit) + 1;
  const shown = state.mode === 'reading' ? items.length : rows.length;
  pageInfo.textContent = shown
    ? `Page ${page}: studies ${state.offset + 1}–${state.offset + shown}${state.mode === 'reading' ? ` of ${total}` : ''}`
    : `Page ${page}`;
  prevBtn.disabled = state.offset === 0;
  nextBtn.disabled = !hasMore;
  hook.renders += 1;
  hook.lastRenderAt = performance.now();
}

form.addEventListener('submit', (e) => {
  e.preventDefault();
  state.filters = readFilters();
  state.offset = 0;
  void search();
});
form.addEventListener('reset', () => {
  setTimeout(() => {
    state.filters = {};
    state.offset = 0;
    void search();
  });
});
wlForm.addEventListener('submit', (e) => {
  e.preventDefault();
  state.wlFilters = readWlFilters();
  state.offset = 0;
  void search();
});
wlForm.addEventListener('change', (e) => {
  // Selects apply at once; text fields on Enter (submit).
  if (!(e.target instanceof HTMLSelectElement)) return;
  state.wlFilters = readWlFilters();
  state.offset = 0;
  void search();
});
wlForm.addEventListener('reset', () => {
  setTimeout(() => {
    state.wlFilters = readWlFilters();
    state.offset = 0;
    void search();
  });
});
prevBtn.addEventListener('click', () => {
  state.offset = Math.max(0, state.offset - state.limit);
  void search();
});
nextBtn.addEventListener('click', () => {
  state.offset += state.limit;
  void search();
});
pageSize.addEventListener('change', () => {
  state.limit = Number(pageSize.value);
  state.offset = 0;
  void search();
});
document.addEventListener('keydown', (e) => {
  // "/" focuses the search, as in most list UIs; ArrowDown from the form enters the table.
  if (e.key === '/' && !(e.target instanceof HTMLInputElement)) {
    e.preventDefault();
    activeForm().querySelector<HTMLInputElement>('input')?.focus();
  } else if (e.key === 'ArrowDown' && e.target instanceof HTMLInputElement) {
    (table.tBodies[0].rows[0] as HTMLElement | undefined)?.focus();
  }
});

// ---------------------------------------------------------------- live updates and alerts

const banner = createAlertBanner(document.querySelector<HTMLElement>('#alerts')!, {
  describe: (uid) => items.find((i) => i.StudyInstanceUID === uid),
  onAcknowledged: () => refreshSoon(),
});

/** A burst of events (a study's instances arriving, a batch of AI results) is one re-read. */
const refreshSoon = debounce(() => {
  if (state.mode === 'reading') void searchWorklist(true);
}, 250);

function onLive(e: LiveEvent): void {
  banner.onEvent(e);
  hook.alerts = banner.count();
  if (state.mode !== 'reading') return;
  // A status change of a row on this page is drawn at once; the order is the server's, so any
  // event also re-reads the page (debounced): a new critical study moves to the top.
  const item = (e.data.item ?? (e.data.priority ? e.data : undefined)) as WorklistItem | undefined;
  if (item?.StudyInstanceUID) {
    const i = items.findIndex((x) => x.StudyInstanceUID === item.StudyInstanceUID);
    if (i >= 0) {
      items[i] = { ...items[i], ...item };
      const old = table.tBodies[0].querySelector(`tr[data-study-uid="${CSS.escape(item.StudyInstanceUID)}"]`);
      old?.replaceWith(worklistRow(items[i]));
    }
  }
  refreshSoon();
}

function startLive(): void {
  const live = connectLive({
    onEvent: onLive,
    onResync: () => {
      void banner.reload().then(() => (hook.alerts = banner.count()));
      refreshSoon();
    },
    onState: (s) => {
      hook.live = { ...s };
      liveEl.textContent = s.connected ? '● live' : '○ reconnecting…';
      liveEl.classList.toggle('on', s.connected);
    },
  });
  hook.live = live.state;
  // Back from the back-forward cache (e.g. from the viewer): events were not delivered meanwhile.
  window.addEventListener('pageshow', (e) => {
    if (!e.persisted) return;
    void banner.reload().then(() => (hook.alerts = banner.count()));
    if (state.mode === 'reading') void searchWorklist(true);
  });
}

void me().then((u) => {
  if (!u) return;
  username = u.username;
  document.querySelector('#user')!.textContent = u.username;
  if (state.mode === 'reading' && items.length) render(); // "you" vs locked
});

loadFromUrl();
void search().then(() => {
  // Live updates only where the server has the worklist API.
  if (state.mode === 'reading' || document.querySelector<HTMLElement>('#mode-reading')?.hidden === false) startLive();
});
