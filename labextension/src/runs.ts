/**
 * The runs list of the Workflows panel: which database it shows (the active notebook's
 * kernel's, or the server's), its runs filtered by status, workflow and time, forks and
 * child runs marked, each with Open (the run and its actions) and Cancel; redrawn when
 * the database changes (pushed, see `poller.ts`).
 */
import {
  IDbInfo,
  IRunFilter,
  IRunRow,
  IWorker,
  RUN_STATUSES,
  asRunStatus,
  cancelRun,
  currentKernel,
  dbInfo,
  errorHeader,
  isTerminal,
  listRuns,
  listWorkers,
  runHere,
  setKernel
} from './api';
import { clock, h } from './dom';
import { paint } from './palette';
import { PollingWidget, feed } from './poller';

/** The time filter's choices: a label and how far back (ms); `between` shows two dates. */
const SINCE: [string, string, number][] = [
  ['', 'any time', 0],
  ['hour', 'last hour', 3600e3],
  ['day', 'last day', 86400e3],
  ['week', 'last 7 days', 7 * 86400e3],
  ['between', 'between…', 0]
];

export class RunsView extends PollingWidget {
  constructor(private readonly open: (run: IRunRow) => void) {
    super();
    this.addClass('thodare-runs');
    const bar = h('div', 'thodare-runs-bar');
    this.status.append(new Option('all statuses', ''));
    for (const s of RUN_STATUSES) {
      this.status.append(new Option(s, s));
    }
    this.workflow.placeholder = 'workflow';
    this.workflow.type = 'search';
    this.workflow.setAttribute('list', 'thodare-workflow-names');
    this.names.id = 'thodare-workflow-names';
    for (const [value, label] of SINCE) {
      this.since.append(new Option(label, value));
    }
    this.after.type = this.before.type = 'datetime-local';
    this.after.title = 'created at or after';
    this.before.title = 'created before';
    this.between.append(this.after, h('span', '', '–'), this.before);
    this.between.hidden = true;
    for (const input of [this.status, this.since, this.after, this.before]) {
      input.onchange = () => {
        this.between.hidden = this.since.value !== 'between';
        this.poke();
      };
    }
    this.workflow.oninput = () => this.poke();
    bar.append(h('span', 'thodare-heading', 'Runs'), this.status, this.workflow, this.names,
      this.since, this.between); // prettier-ignore
    this.node.append(this.db, bar, this.workers, this.error, this.list);
  }

  /**
   * Show the runs of kernel `kernelId`'s database (null: the server's); the server looks
   * it up by the kernel id (no password reaches the page).
   */
  follow(kernelId: string | null): void {
    if (kernelId !== currentKernel()) {
      setKernel(kernelId);
      this.seen.clear(); // the workflow names suggested are the new database's
      feed.retarget();
      this.poke();
    }
  }

  /** The filter as chosen: status, workflow, and the time window as ISO times. */
  private filter(): IRunFilter {
    const filter: IRunFilter = {
      status: asRunStatus(this.status.value),
      workflow: this.workflow.value.trim()
    };
    const back = SINCE.find(([value]) => value === this.since.value)?.[2] ?? 0;
    if (back) {
      filter.after = new Date(Date.now() - back).toISOString();
    } else if (this.since.value === 'between') {
      const iso = (v: string) => (v ? new Date(v).toISOString() : undefined);
      filter.after = iso(this.after.value);
      filter.before = iso(this.before.value);
    }
    return filter;
  }

  protected async refresh(): Promise<void> {
    try {
      const [info, runs, workers] = await Promise.all([
        dbInfo(),
        listRuns(this.filter()),
        listWorkers()
      ]);
      this.renderDb(info);
      this.render(runs);
      this.renderWorkers(workers);
      this.error.textContent = '';
    } catch (e) {
      this.error.textContent = (e as Error).message;
    }
  }

  /** Which database is shown, and whose: the kernel's, or the server's own. */
  private renderDb(info: IDbInfo): void {
    const whose =
      info.source === 'kernel'
        ? "this notebook's kernel"
        : currentKernel()
          ? "the server's (this notebook's kernel has not run `%load_ext thodare_jupyter`)"
          : "the server's (c.ThodareServer.db_url, else THODARE_DB)";
    this.db.dataset.source = info.source;
    this.db.dataset.backend = info.backend;
    this.db.replaceChildren(
      h('span', 'thodare-db-backend', info.backend),
      h('code', 'thodare-db-url', info.url),
      h('span', 'thodare-db-whose', `namespace ${info.namespace} · ${whose}`)
    );
    const counts = Object.entries(info.runs)
      .filter(([, n]) => n)
      .map(([s, n]) => `${n} ${s}`);
    this.db.title = `schema ${info.schema_version} · runs: ${counts.join(', ') || 'none'}`;
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
  private render(runs: IRunRow[]): void {
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
      if (run.workflow) {
        this.seen.add(run.workflow);
      }
    });
    this.list.dataset.empty = runs.length ? 'false' : 'true';
    if (this.names.children.length !== this.seen.size) {
      this.names.replaceChildren(...[...this.seen].sort().map(w => new Option(w)));
    }
  }

  private row(run: IRunRow): HTMLLIElement {
    const row = h('li', 'thodare-run-row');
    row.dataset.runId = run.id;
    const name = h('span', 'thodare-run-workflow', run.workflow ?? '(unnamed)');
    const id = h('code', 'thodare-run-id', run.id.slice(0, 8));
    id.title = `${run.id} (commands and routes take these 8 characters)`;
    const status = h('span', 'thodare-run-status');
    const when = h('span', 'thodare-run-created', clock(run.created_at));
    when.title = `created ${run.created_at}`;
    const open = h('button', 'jp-Button thodare-run-open', 'Open');
    open.title = 'Show this run: its DAG, its steps and what it waits for';
    open.onclick = () => this.open(this.runs.get(run.id) ?? run);
    const cancel = h('button', 'jp-Button thodare-run-cancel', 'Cancel');
    cancel.title = 'Cancel this run (also while it waits)';
    cancel.onclick = async () => {
      cancel.disabled = true;
      try {
        await cancelRun(runHere(run.id));
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
    if (run.forked || run.forked_from) {
      // a fork (`kit.fork`): it reused the steps it copied from the run it forked
      row.classList.add('thodare-fork-run');
      const source = run.forked_from;
      const of = source ? ` of ${source.slice(0, 8)}` : '';
      const fork = h('span', 'thodare-run-fork', `↱ fork${of} · ${run.forked} reused`);
      fork.title = `A fork (kit.fork) of run ${source ?? '?'}: ${run.forked} step(s) reused`;
      if (source) {
        row.dataset.forkedFrom = source;
      }
      row.append(fork);
    }
    this.rows.set(run.id, row);
    return row;
  }

  private updateRow(row: HTMLLIElement, run: IRunRow): void {
    this.runs.set(run.id, run);
    row.dataset.status = run.status;
    const status = row.querySelector<HTMLElement>('.thodare-run-status')!;
    status.textContent = run.status;
    paint(status, run.status);
    row.title = run.error ? errorHeader(run) : run.id;
    const cancel = row.querySelector<HTMLButtonElement>('.thodare-run-cancel')!;
    cancel.hidden = isTerminal(run.status);
  }

  private readonly db = h('div', 'thodare-runs-db');
  private readonly status = h('select', 'thodare-status-filter');
  private readonly workflow = h('input', 'thodare-workflow-filter');
  private readonly names = h('datalist');
  private readonly since = h('select', 'thodare-since-filter');
  private readonly between = h('span', 'thodare-between');
  private readonly after = h('input', 'thodare-after');
  private readonly before = h('input', 'thodare-before');
  private readonly workers = h('div', 'thodare-workers');
  private readonly error = h('div', 'thodare-error thodare-runs-error');
  private readonly list = h('ul', 'thodare-run-list');
  private readonly rows = new Map<string, HTMLLIElement>();
  private readonly runs = new Map<string, IRunRow>();
  private readonly seen = new Set<string>();
}
