// The study worklist: QIDO-RS search with server-side paging (limit/offset), filters on
// every searchable attribute, column sorting, open a study by click or Enter.
import './style.css';
import { DicomWebClient, type DicomJsonDataset, type StudyQuery, Tag, formatDate, formatName, num, str, strs } from './dicomweb';

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

export const COLUMNS: Column[] = [
  // Filled by the AI triage issue: the AI priority of the study (empty until then).
  { id: 'priority', label: 'AI priority', value: () => '' },
  // Filled by the reading-status issue: unread / in progress / reported.
  { id: 'status', label: 'Status', value: () => '' },
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
  filters: Omit<StudyQuery, 'limit' | 'offset'>;
  offset: number;
  limit: number;
  sort: { column: string; descending: boolean };
}

const client = new DicomWebClient();
const table = document.querySelector<HTMLTableElement>('#studies')!;
const form = document.querySelector<HTMLFormElement>('#filters')!;
const statusEl = document.querySelector<HTMLElement>('#status')!;
const pageInfo = document.querySelector<HTMLElement>('#page-info')!;
const prevBtn = document.querySelector<HTMLButtonElement>('#prev')!;
const nextBtn = document.querySelector<HTMLButtonElement>('#next')!;
const pageSize = document.querySelector<HTMLSelectElement>('#page-size')!;

const state: State = { filters: {}, offset: 0, limit: 50, sort: { column: 'StudyDate', descending: true } };
let rows: DicomJsonDataset[] = [];
let hasMore = false;
let requestSeq = 0;

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

function saveToUrl(): void {
  const p = new URLSearchParams();
  const f = new FormData(form);
  for (const [k, v] of f) if (String(v)) p.set(k, String(v));
  if (state.offset) p.set('offset', String(state.offset));
  if (state.limit !== 50) p.set('limit', String(state.limit));
  p.set('sort', `${state.sort.descending ? '-' : ''}${state.sort.column}`);
  history.replaceState(null, '', `${location.pathname}?${p}`);
}

function loadFromUrl(): void {
  const p = new URLSearchParams(location.search);
  for (const el of Array.from(form.elements) as HTMLInputElement[]) {
    if (el.name && p.has(el.name)) el.value = p.get(el.name) ?? '';
  }
  state.offset = Number(p.get('offset') ?? 0) || 0;
  state.limit = Number(p.get('limit') ?? 50) || 50;
  pageSize.value = String(state.limit);
  const sort = p.get('sort');
  if (sort) state.sort = { column: sort.replace(/^-/, ''), descending: sort.startsWith('-') };
  state.filters = readFilters();
}

async function search(): Promise<void> {
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

function render(): void {
  renderHeader();
  const body = table.tBodies[0];
  body.replaceChildren(
    ...sortRows().map((s) => {
      const tr = document.createElement('tr');
      const uid = str(s, Tag.StudyInstanceUID);
      tr.dataset.studyUid = uid;
      tr.tabIndex = 0;
      for (const c of COLUMNS) {
        const td = document.createElement('td');
        td.dataset.column = c.id;
        td.textContent = c.display ? c.display(s) : String(c.value(s));
        if (c.numeric) td.classList.add('num');
        tr.append(td);
      }
      tr.addEventListener('click', () => window.location.assign(viewerUrl(uid)));
      tr.addEventListener('keydown', (e) => {
        if (e.key === 'Enter') window.location.assign(viewerUrl(uid));
        else if (e.key === 'ArrowDown') (tr.nextElementSibling as HTMLElement | null)?.focus();
        else if (e.key === 'ArrowUp') (tr.previousElementSibling as HTMLElement | null)?.focus();
        else return;
        e.preventDefault();
      });
      return tr;
    }),
  );
  const page = Math.floor(state.offset / state.limit) + 1;
  pageInfo.textContent = rows.length
    ? `Page ${page}: studies ${state.offset + 1}–${state.offset + rows.length}`
    : `Page ${page}`;
  prevBtn.disabled = state.offset === 0;
  nextBtn.disabled = !hasMore;
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
    form.querySelector<HTMLInputElement>('input')?.focus();
  } else if (e.key === 'ArrowDown' && e.target instanceof HTMLInputElement) {
    (table.tBodies[0].rows[0] as HTMLElement | undefined)?.focus();
  }
});

fetch('/api/me', { credentials: 'same-origin' })
  .then((r) => (r.ok ? r.json() : null))
  .then((me: { username: string } | null) => {
    if (me) document.querySelector('#user')!.textContent = me.username;
  })
  .catch(() => undefined);

loadFromUrl();
void search();
