/**
 * One run in the main area: its DAG coloured by step status, its steps (a `for_each`
 * step's items counted: `503/1000 · 2 failed`), and the
 * output of the step clicked (in the table or the DAG): tables as their columns and
 * first rows, files with a download link; links to its parent and child runs
 * (`run_workflow`), which `open` shows.
 */
import { IProgress, IRun, errorHeader, getRun, isTerminal, runSvg, stepStatus } from './api';
import { clock, h, svgNode, took } from './dom';
import { drawOutput } from './outputs';
import { PollingWidget } from './poller';

export class RunView extends PollingWidget {
  constructor(
    readonly runId: string,
    private readonly open: (runId: string) => void = () => undefined
  ) {
    super();
    this.addClass('thodare-run-view');
    this.node.dataset.runId = runId;
    this.node.append(this.head, this.error, this.dag, this.steps, this.output);
    this.dag.onclick = event => {
      const node = (event.target as Element).closest('g[data-block-id]');
      const id = node?.getAttribute('data-block-id');
      if (id && this.run?.steps.some(s => s.block_id === id)) {
        this.select(id);
      }
    };
  }

  protected get live(): boolean {
    return !this.run || !isTerminal(this.run.status);
  }

  protected async refresh(): Promise<void> {
    try {
      const [run, svg] = await Promise.all([getRun(this.runId), runSvg(this.runId)]);
      this.run = run;
      this.error.textContent = '';
      this.draw(run, svg);
    } catch (e) {
      this.error.textContent = (e as Error).message;
    }
  }

  private draw(run: IRun, svg: string): void {
    this.node.dataset.status = run.status;
    this.head.textContent = `${run.workflow ?? 'run'} · ${run.id} · ${run.status}`;
    if (run.error) {
      this.head.append(h('pre', 'thodare-error', errorHeader(run)));
    }
    this.drawLinks(run);
    if (svg !== this.svg) {
      this.svg = svg;
      this.dag.replaceChildren(svgNode(svg));
    }
    const table = h('table', 'thodare-steps');
    const head = table.createTHead().insertRow();
    for (const t of ['step', 'type', 'status', 'attempt', 'started', 'took', 'error']) {
      head.append(h('th', '', t));
    }
    const body = table.createTBody();
    for (const s of run.steps.filter(s => !s.block_id.includes('['))) {
      // a for_each step's items (`block[i]`) are counted on its row, not listed
      // an ended run's unfinished steps will not go on (as its DAG shows them)
      const status = stepStatus(run.status, s.status);
      const tr = body.insertRow();
      tr.dataset.blockId = s.block_id;
      tr.dataset.status = status;
      const shown = status === 'waiting' && s.waiting_for ? `waiting (${s.waiting_for})` : status;
      const cells = [s.block_id, s.type, shown, String(s.attempt), clock(s.started_at),
        took(s.started_at, s.ended_at)]; // prettier-ignore
      for (const text of cells) {
        tr.append(h('td', '', text));
      }
      const items = run.progress?.[s.block_id];
      if (items) {
        tr.cells[2].append(drawItems(items));
      }
      tr.append(h('td', 'thodare-step-error', s.error ?? ''));
      tr.dataset.selected = String(s.block_id === this.selected);
      tr.onclick = () => this.select(s.block_id);
    }
    this.steps.replaceChildren(table);
    this.drawOutput();
  }

  /** Buttons that open the run's parent and its child runs (`run_workflow`). */
  private drawLinks(run: IRun): void {
    const links: HTMLButtonElement[] = [];
    const link = (className: string, runId: string, text: string, status?: string) => {
      const button = h('button', `jp-Button thodare-run-link ${className}`, text);
      button.dataset.runId = runId;
      if (status) {
        button.dataset.status = status;
      }
      button.title = `Open run ${runId}`;
      button.onclick = () => this.open(runId);
      links.push(button);
    };
    if (run.parent_run_id) {
      const parent = run.parent_run_id;
      const text = `parent run ${parent.slice(0, 8)} (step ${run.parent_block_id})`;
      link('thodare-run-parent-link', parent, text);
    }
    for (const c of run.children ?? []) {
      const what = `${c.block_id} → ${c.workflow ?? '-'}`;
      const text = `child run ${c.run_id.slice(0, 8)} (${what}): ${c.status}`;
      link('thodare-run-child-link', c.run_id, text, c.status);
    }
    if (links.length) {
      const box = h('div', 'thodare-run-links');
      box.append(...links);
      this.head.append(box);
    }
  }

  /** Show the output of step `blockId`. */
  private select(blockId: string): void {
    this.selected = blockId;
    this.steps.querySelectorAll<HTMLTableRowElement>('tr[data-block-id]').forEach(tr => {
      tr.dataset.selected = String(tr.dataset.blockId === blockId);
    });
    this.drawOutput();
  }

  /** The selected step's output; redrawn only when it changed (a poll keeps the scroll). */
  private drawOutput(): void {
    const step = this.run?.steps.find(s => s.block_id === this.selected);
    const key = JSON.stringify([this.selected, step?.status, step?.output ?? null]);
    if (key === this.shownOutput) {
      return;
    }
    this.shownOutput = key;
    this.output.dataset.blockId = step?.block_id ?? '';
    if (!step) {
      this.output.replaceChildren(
        h('div', 'thodare-hint', 'Click a step (in the table or the DAG) to see its output.')
      );
      return;
    }
    const title = h('div', 'thodare-output-title', `${step.block_id} · output`);
    const none = step.output === undefined || step.output === null;
    this.output.replaceChildren(
      title,
      none
        ? h('div', 'thodare-hint', `No output (${step.status}).`)
        : drawOutput(step.output, this.runId)
    );
  }

  private run: IRun | undefined;
  private svg = '';
  private selected = '';
  private shownOutput = '';
  private readonly head = h('div', 'thodare-run-head');
  private readonly error = h('div', 'thodare-error');
  private readonly dag = h('div', 'thodare-run-dag');
  private readonly steps = h('div', 'thodare-run-steps');
  private readonly output = h('div', 'thodare-run-output');
}

/** " · 503/1000" items ended of all, then " · 2 failed" (in red) when some failed. */
function drawItems(p: IProgress): HTMLElement {
  const span = h('span', 'thodare-step-items', ` · ${p.ended}/${p.total}`);
  span.dataset.ended = String(p.ended);
  span.dataset.total = String(p.total);
  span.dataset.failed = String(p.failed);
  span.title = `${p.ended} of ${p.total} items ended, ${p.failed} failed`;
  if (p.failed) {
    span.append(h('span', 'thodare-step-failed', ` · ${p.failed} failed`));
  }
  return span;
}
