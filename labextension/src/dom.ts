/**
 * Inline SVG markup (from our server or kernel) as a DOM node, parsed, never as HTML.
 */
export function svgNode(markup: string): Element {
  const doc = new DOMParser().parseFromString(markup, 'image/svg+xml');
  const root = doc.documentElement;
  if (root.nodeName !== 'svg') {
    const p = document.createElement('p');
    p.className = 'thodare-error';
    p.textContent = 'This DAG could not be drawn.';
    return p;
  }
  return document.importNode(root, true);
}

/** A DOM element with a class and optional text. */
export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className = '',
  text?: string
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

/** "2026-12-04 12:03:04" (local time) from an ISO time, "" for none; the full ISO
 * time with its zone is the node's tooltip where it is shown. */
export function clock(iso: string | null): string {
  if (!iso) {
    return '';
  }
  const d = new Date(iso);
  const two = (n: number) => String(n).padStart(2, '0');
  const day = `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())}`;
  return `${day} ${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
}

/** Seconds between two ISO times ("1.25 s"), "" unless both are known. */
export function took(start: string | null, end: string | null): string {
  if (!start || !end) {
    return '';
  }
  const ms = new Date(end).getTime() - new Date(start).getTime();
  return `${(ms / 1000).toFixed(2)} s`;
}
