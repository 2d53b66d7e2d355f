/**
 * A step's output in the run view: JSON as it is, except tables and files stored by
 * reference (`{"$artifact": "sha256:…", "kind": "table" | "file" | "json", …}`, see
 * `thodare_jupyter/artifacts.py`): a table as its shape, its columns with their types
 * and its first rows; a file as its name, size and a download link (the server's
 * artifacts route, behind Jupyter's auth). All text goes in as text, never as HTML.
 */
import { IRunRef, artifactUrl } from './api';
import { h } from './dom';

/** An artifact reference, as a step row stores it. */
export interface IArtifactRef {
  $artifact: string;
  kind: 'table' | 'file' | 'json' | string;
  rows?: number;
  columns?: Record<string, string>;
  preview?: Record<string, unknown>[];
  name?: string | null;
  size?: number;
  media_type?: string;
  keys?: string[];
  length?: number;
}

/** Whether `value` is an artifact reference. */
export function isRef(value: unknown): value is IArtifactRef {
  return (
    value !== null &&
    typeof value === 'object' &&
    !Array.isArray(value) &&
    typeof (value as { $artifact?: unknown }).$artifact === 'string'
  );
}

/** "812 B", "12.4 KiB", "3.0 MiB". */
export function humanSize(bytes: number | undefined): string {
  if (typeof bytes !== 'number' || !isFinite(bytes)) {
    return '';
  }
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let n = bytes;
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return i === 0 ? `${n} B` : `${n.toFixed(n < 10 ? 1 : 0)} ${units[i]}`;
}

/** An Arrow type as people read it: "large_string" is a string. */
function typeName(type: string): string {
  return String(type).replace(/\blarge_(string|binary|list)\b/g, '$1');
}

function plural(n: number, word: string): string {
  return `${n.toLocaleString('en-US')} ${word}${n === 1 ? '' : 's'}`;
}

function link(href: string, text: string, title: string): HTMLAnchorElement {
  const a = h('a', 'thodare-download', text);
  a.href = href;
  a.download = '';
  a.title = title;
  return a;
}

function cell(value: unknown): HTMLTableCellElement {
  const td = h('td');
  if (value === null || value === undefined) {
    td.className = 'thodare-null';
    td.textContent = 'null';
  } else if (typeof value === 'object') {
    td.textContent = JSON.stringify(value);
  } else {
    td.textContent = String(value);
    if (typeof value === 'number') {
      td.className = 'thodare-num';
    }
  }
  td.title = td.textContent ?? '';
  return td;
}

function labelled(className: string, ref: IArtifactRef, label: string): HTMLDivElement {
  const box = h('div', `thodare-artifact ${className}`);
  box.dataset.artifact = ref.$artifact;
  if (label) {
    box.dataset.field = label;
  }
  return box;
}

function drawTable(ref: IArtifactRef, run: IRunRef, label: string): HTMLElement {
  const columns = Object.entries(ref.columns ?? {});
  const preview = Array.isArray(ref.preview) ? ref.preview : [];
  const rows = Number(ref.rows ?? preview.length);
  const box = labelled('thodare-table-ref', ref, label);
  const head = h('div', 'thodare-artifact-head');
  if (label) {
    head.append(h('span', 'thodare-artifact-label', label));
  }
  const shape = `${plural(rows, 'row')} × ${plural(columns.length, 'column')}`;
  head.append(
    h('span', 'thodare-table-shape', shape),
    link(artifactUrl(run, ref.$artifact, 'csv'), 'CSV', 'Download the whole table as CSV'),
    link(artifactUrl(run, ref.$artifact, 'parquet'), 'Parquet', 'Download it as Parquet')
  );
  const table = h('table', 'thodare-preview');
  const tr = table.createTHead().insertRow();
  for (const [name, type] of columns) {
    const th = h('th');
    th.title = `${name}: ${type}`;
    th.append(h('span', 'thodare-col-name', name), h('span', 'thodare-col-type', typeName(type)));
    tr.append(th);
  }
  const body = table.createTBody();
  for (const row of preview) {
    const r = body.insertRow();
    for (const [name] of columns) {
      r.append(cell(row ? row[name] : null));
    }
  }
  const wrap = h('div', 'thodare-table-wrap');
  wrap.append(table);
  box.append(head, wrap);
  if (preview.length < rows) {
    const note = `first ${preview.length} of ${plural(rows, 'row')}`;
    box.append(h('div', 'thodare-artifact-note', note));
  }
  return box;
}

function drawFile(ref: IArtifactRef, run: IRunRef, label: string): HTMLElement {
  const box = labelled('thodare-file-ref', ref, label);
  if (label) {
    box.append(h('span', 'thodare-artifact-label', label));
  }
  box.append(
    h('span', 'thodare-file-name', ref.name || '(unnamed file)'),
    h('span', 'thodare-file-size', humanSize(ref.size))
  );
  if (ref.media_type) {
    box.append(h('span', 'thodare-file-type', ref.media_type));
  }
  box.append(
    link(artifactUrl(run, ref.$artifact), 'Download', `Download ${ref.name || 'the file'}`)
  );
  return box;
}

function drawJsonRef(ref: IArtifactRef, run: IRunRef, label: string): HTMLElement {
  const box = labelled('thodare-json-ref', ref, label);
  if (label) {
    box.append(h('span', 'thodare-artifact-label', label));
  }
  const what =
    ref.length !== undefined
      ? `a list of ${ref.length}`
      : ref.keys
        ? `keys ${ref.keys.join(', ')}`
        : 'JSON';
  box.append(
    h('span', '', `${what} · ${humanSize(ref.size)} of JSON, stored apart`),
    link(artifactUrl(run, ref.$artifact), 'Download', 'Download the JSON')
  );
  return box;
}

/** A table, file or big JSON output stored by reference, drawn. */
export function drawRef(ref: IArtifactRef, run: IRunRef, label = ''): HTMLElement {
  if (ref.kind === 'table') {
    return drawTable(ref, run, label);
  }
  if (ref.kind === 'file') {
    return drawFile(ref, run, label);
  }
  return drawJsonRef(ref, run, label);
}

/** A step's output: its table and file fields drawn, the rest as JSON. */
export function drawOutput(output: unknown, run: IRunRef): HTMLElement {
  if (isRef(output)) {
    return drawRef(output, run);
  }
  const pre = (value: unknown) => h('pre', 'thodare-output-json', JSON.stringify(value, null, 2));
  if (
    output === null ||
    typeof output !== 'object' ||
    Array.isArray(output) ||
    !Object.values(output).some(isRef)
  ) {
    return pre(output);
  }
  const box = h('div', 'thodare-output');
  const rest: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(output)) {
    if (isRef(value)) {
      box.append(drawRef(value, run, key));
    } else {
      rest[key] = value;
    }
  }
  if (Object.keys(rest).length) {
    box.append(pre(rest));
  }
  return box;
}
