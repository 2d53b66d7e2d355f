/**
 * The runs list of the Workflows panel: live, filtered by status, with Cancel and Open;
 * child runs (of `run_workflow` steps) are marked with the run that started them.
 */
import {
  IRun,
  IWorker,
  RUN_STATUSES,
  asRunStatus,
  cancelRun,
  errorHeader,
  isTerminal,
  listRuns,
  listWorkers
} from './api';
import { clock, h } from './dom';
import { PollingWidget } from './poller';
import { paint } from './palette';

export class RunsView extends PollingWidget {
  constructor(private readonly open: (run: IRun) => void) {
    super();
    this.addClass('thodare-runs');
    const bar = h('div', 'thodare-runs-bar');
    bar.append(h('span', 'thodare-heading', 'Runs'), this.filter);
    this.filter.append(new Option('all statuses', ''));
    for (const s of RUN_STATUSES) {
      this.filter.append(new Option(s, s));
    }
    this.filter.onchange = () => this.poke();
    this.node.append(bar, this.workers, this.error, this.list);
  }

  protected async refresh(): Promise<void> {
    try {
      const [runs, workers] = await Promise.all([
        listRuns(asRunStatus(this.filter.value)),
        listWorkers()
      ]);
      this.render(runs);
      this.renderWorkers(workers);
      this.error.textContent = '';
    } catch (e) {
      this.error.textContent = (e as Error).message;
    }
  }

  /** One chip per live worker: its kind, the runs it holds; its connectors on hover. */
  private renderWorkers(workers: IWorker[]): void {
    const label = workers.length
      ? `${workers.length} live worker${workers.length === 1 ? '' : 's'}:`
      : 'No live worker: runs wait until a kernel or `thodare worker` starts.';
    const chips = workers.map(w => {
      const chip = h(
        'span',
        'thodare-worker',
        `${w.kind} ${w.id.split(':').slice(0, 2).join(':')} · ${w.runs_held}/${w.concurrency}`
      );
      chip.title = `${w.id}\nconnectors: ${w.connector_types.join(', ')}`;
      return chip;
    });
    this.workers.replaceChildren(h('span', 'thodare-workers-label', label), ...chips);
  }

  /** Update the rows in place (keyed by run id) so clicks never land on a stale row. */
  private render(runs: IRun[]): void {
    const keep = new Set(runs.map(r => r.id));
    for (const [id, row] of this.rows) {
      if (!keep.has(id)) {
        row.remove();
        this.rows.delete(id);
      }
    }
    runs.forEach((run, i) => {
      const row = this.rows.get(run.id) ?? this.row(run);
      this.updateRow(row, run);
      if (this.list.children[i] !== row) {
        this.list.insertBefore(row, this.list.children[i] ?? null);
      }
    });
    this.list.dataset.empty = runs.length ? 'false' : 'true';
  }

  private row(run: IRun): HTMLLIElement {
    const row = h('li', 'thodare-run-row');
    row.dataset.runId = run.id;
    const name = h('span', 'thodare-run-workflow', run.workflow ?? '(unnamed)');
    const id = h('code', 'thodare-run-id', run.id.slice(0, 8));
    const status = h('span', 'thodare-run-status');
    const when = h('span', 'thodare-run-created', clock(run.created_at));
    const open = h('button', 'jp-Button thodare-run-open', 'Open');
    open.title = 'Show this run: its DAG and its steps';
    open.onclick = () => this.open(this.runs.get(run.id) ?? run);
    const cancel = h('button', 'jp-Button thodare-run-cancel', 'Cancel');
    cancel.title = 'Cancel this run (also while it waits)';
    cancel.onclick = async () => {
      cancel.disabled = true;
      try {
        await cancelRun(run.id);
        this.error.textContent = '';
      } catch (e) {
        this.error.textContent = (e as Error).message;
      }
      this.poke();
    };
    row.append(name, id, status, when, open, cancel);
    if (run.parent_run_id) {
      // a child run (`run_workflow`): marked, with the run that started it
      row.classList.add('thodare-child-run');
      row.dataset.parentRunId = run.parent_run_id;
      const parent = h(
        'span',
        'thodare-run-parent',
        `↳ child of ${run.parent_run_id.slice(0, 8)} (${run.parent_block_id ?? ''})`
      );
      parent.title = `Started by step ${run.parent_block_id} of run ${run.parent_run_id}`;
      row.append(parent);
    }
    this.rows.set(run.id, row);
    return row;
  }

  private updateRow(row: HTMLLIElement, run: IRun): void {
    this.runs.set(run.id, run);
    row.dataset.status = run.status;
    const status = row.querySelector<HTMLElement>('.thodare-run-status')!;
    status.textContent = run.status;
    paint(status, run.status);
    row.title = run.error ? errorHeader(run) : run.id;
    const cancel = row.querySelector<HTMLButtonElement>('.thodare-run-cancel')!;
    cancel.hidden = isTerminal(run.status);
  }

  private readonly filter = h('select', 'thodare-status-filter');
  private readonly workers = h('div', 'thodare-workers');
  private readonly error = h('div', 'thodare-error thodare-runs-error');
  private readonly list = h('ul', 'thodare-run-list');
  private readonly rows = new Map<string, HTMLLIElement>();
  private readonly runs = new Map<string, IRun>();
}
