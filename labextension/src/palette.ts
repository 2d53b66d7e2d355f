/**
 * Colours per run and step status: fill, stroke, text. The same table as
 * `thodare_jupyter/drawing/palette.py` (the DAG's SVG and the notebook widget
 * use that one; tests/test_dag_svg.py checks they agree). An unknown status is
 * drawn as `pending`.
 */
const PALETTE: Record<string, [string, string, string]> = {
  pending: ['#e0e0e0', '#9e9e9e', '#212121'],
  running: ['#90caf9', '#1e88e5', '#212121'],
  waiting: ['#ffcc80', '#fb8c00', '#212121'],
  paused: ['#ffcc80', '#fb8c00', '#212121'],
  completed: ['#a5d6a7', '#43a047', '#212121'],
  failed: ['#ef9a9a', '#e53935', '#212121'],
  skipped: ['#f5f5f5', '#bdbdbd', '#757575'],
  'not run': ['#ffffff', '#bdbdbd', '#757575'],
  canceled: ['#9e9e9e', '#616161', '#212121'],
  unchanged: ['#fafafa', '#9e9e9e', '#212121'],
  added: ['#e1bee7', '#8e24aa', '#212121'],
  changed: ['#fff59d', '#f9a825', '#212121'],
  removed: ['#ffcdd2', '#c62828', '#757575']
};

/** The colours of `status` (`pending`'s when it has none). */
function statusStyle(status: string): [string, string, string] {
  return PALETTE[status] ?? PALETTE.pending;
}

/** Mark `node` with a status swatch (CSS: `--thodare-fill`, `--thodare-stroke`). */
export function paint(node: HTMLElement, status: string): void {
  const [fill, stroke] = statusStyle(status);
  node.style.setProperty('--thodare-fill', fill);
  node.style.setProperty('--thodare-stroke', stroke);
}
