// The DICOM tag browser: the instance's WADO-RS metadata as a filterable table.
import { data } from 'dcmjs';
import type { DicomJsonDataset, DicomJsonValue } from '../dicomweb';
import { closablePanel } from './panel';

let keywords: Map<string, string> | undefined;

function keyword(tag: string): string {
  if (!keywords) {
    keywords = new Map();
    // dcmjs's name map: keyword -> { tag: "(0010,0010)", name: keyword, ... }.
    for (const entry of Object.values(data.DicomMetaDictionary.nameMap)) {
      const m = /^\(([0-9A-Fa-f]{4}),([0-9A-Fa-f]{4})\)$/.exec(entry.tag);
      if (m) keywords.set(`${m[1]}${m[2]}`.toUpperCase(), entry.name);
    }
  }
  return keywords.get(tag.toUpperCase()) ?? (parseInt(tag.slice(0, 4), 16) % 2 ? 'private' : '');
}

function valueText(v: DicomJsonValue): string {
  if (v && typeof v === 'object') return 'Alphabetic' in v ? String(v.Alphabetic ?? '') : '(item)';
  return String(v);
}

function rows(ds: DicomJsonDataset, depth: number, out: HTMLTableRowElement[]): void {
  for (const tag of Object.keys(ds).sort()) {
    const el = ds[tag];
    const tr = document.createElement('tr');
    const tagText = `${'  '.repeat(depth)}(${tag.slice(0, 4)},${tag.slice(4)})`;
    let value = '';
    if (el.BulkDataURI) value = `bulk data: ${el.BulkDataURI}`;
    else if (el.InlineBinary) value = `binary (${el.InlineBinary.length} base64 chars)`;
    else if (el.vr === 'SQ') value = `${el.Value?.length ?? 0} item(s)`;
    else value = (el.Value ?? []).map(valueText).join('\\');
    for (const [i, text] of [tagText, keyword(tag), el.vr, value].entries()) {
      const td = tr.insertCell();
      td.textContent = text;
      if (i === 0) td.style.whiteSpace = 'pre';
      if (i === 3) td.className = 'v';
    }
    out.push(tr);
    if (el.vr === 'SQ') for (const item of (el.Value ?? []) as DicomJsonDataset[]) rows(item, depth + 1, out);
  }
}

export function showTags(ds: DicomJsonDataset, title: string): void {
  const filter = document.createElement('input');
  filter.placeholder = 'Filter by tag, name or value';
  filter.setAttribute('aria-label', 'Filter tags');
  const table = document.createElement('table');
  table.className = 'tags';
  const head = table.createTHead().insertRow();
  for (const h of ['Tag', 'Name', 'VR', 'Value']) {
    const th = document.createElement('th');
    th.textContent = h;
    head.append(th);
  }
  const body = table.createTBody();
  const all: HTMLTableRowElement[] = [];
  rows(ds, 0, all);
  body.append(...all);
  filter.addEventListener('input', () => {
    const q = filter.value.toLowerCase();
    for (const tr of all) tr.hidden = !!q && !tr.textContent!.toLowerCase().includes(q);
  });
  closablePanel('tag-panel', `DICOM tags — ${title}`, filter, table);
  filter.focus();
}
