/**
 * The server extension's REST routes (`/thodare/api/...`), behind Jupyter's auth.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** Every status a durable run can have (`thodare_jupyter.wire.RunStatus`), in lifecycle order. */
export const RUN_STATUSES = [
  'pending',
  'running',
  'waiting',
  'completed',
  'failed',
  'canceled'
] as const;

/** A durable run's status: declared once, as in `thodare_jupyter/wire.py`. */
export type RunStatus = (typeof RUN_STATUSES)[number];

/** The statuses a run never leaves (`TERMINAL_STATUSES` in `wire.py`). */
export const TERMINAL_STATUSES: readonly RunStatus[] = ['completed', 'failed', 'canceled'];

/** Whether `status` (a run's, or a step's) is one that never changes again. */
export function isTerminal(status: string): boolean {
  return (TERMINAL_STATUSES as readonly string[]).includes(status);
}

/** "block: error" when the run failed at a block, else the error alone (never ": error"). */
export function errorHeader(run: { failed_block: string | null; error: string | null }): string {
  return run.failed_block ? `${run.failed_block}: ${run.error ?? ''}` : (run.error ?? '');
}

/**
 * A step's status as shown (`step_status` in drawing/svg.py): once its run ended,
 * a step still running or waiting was cut off (`canceled`), a pending one `not run`.
 */
export function stepStatus(runStatus: string, stored: string): string {
  if (!isTerminal(runStatus) || isTerminal(stored) || stored === 'skipped') {
    return stored;
  }
  return stored === 'pending' ? 'not run' : 'canceled';
}

/** `value` as a run status, or null when it is not one (an empty filter). */
export function asRunStatus(value: string): RunStatus | null {
  return RUN_STATUSES.find(s => s === value) ?? null;
}

/** One step of a durable run, as `RunHandle.describe()` gives it. */
export interface IStep {
  block_id: string;
  type: string;
  status: string;
  attempt: number;
  started_at: string | null;
  ended_at: string | null;
  error: string | null;
  waiting_for: string | null;
  /** Its output as stored (tables and files as artifact references); only the run route has it. */
  output?: unknown;
}

/** A `for_each` step's items: how many ended (completed or failed) of all, how many failed. */
export interface IProgress {
  ended: number;
  total: number;
  failed: number;
}

/** A child run that a `run_workflow` step of a run started. */
export interface IChildRun {
  block_id: string;
  run_id: string;
  workflow: string | null;
  status: string;
}

/** A durable run (a `RunDescription`). */
export interface IRun {
  id: string;
  workflow: string | null;
  status: RunStatus;
  created_at: string;
  started_at: string | null;
  ended_at: string | null;
  error: string | null;
  failed_block: string | null;
  /** A `for_each` step's items are steps too (`block[i]`). */
  steps: IStep[];
  /** By `for_each` block id; only the run route has it. */
  progress?: Record<string, IProgress>;
  /** For a child run (`run_workflow`): the run and block that started it. */
  parent_run_id?: string | null;
  parent_block_id?: string | null;
  /** The child runs its `run_workflow` steps started; only the run route has them. */
  children?: IChildRun[];
}

/** A live worker (a kernel's, a `thodare worker`), as `kit.workers()` gives it. */
export interface IWorker {
  id: string;
  kind: string;
  connector_types: string[];
  concurrency: number;
  runs_held: number;
  last_heartbeat: string;
}

const settings = ServerConnection.makeSettings();

/** Call a route; a failed call throws an Error carrying the server's message. */
async function call(path: string, init: RequestInit = {}): Promise<Response> {
  const url = URLExt.join(settings.baseUrl, 'thodare', 'api', path);
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (error) {
    throw new ServerConnection.NetworkError(error as TypeError);
  }
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      message = (await response.json()).message || message;
    } catch {
      // not JSON: keep the status line
    }
    if (response.status === 404 && path === 'runs') {
      message = 'The thodare server extension is not enabled in this Jupyter server.';
    }
    throw new Error(message);
  }
  return response;
}

/** Recent runs, newest first (`status` filters; null: every status). */
export async function listRuns(status: RunStatus | null, limit = 50): Promise<IRun[]> {
  const query = URLExt.objectToQueryString(
    status ? { status, limit: String(limit) } : { limit: String(limit) }
  );
  return (await call(`runs${query}`)).json();
}

/** Live workers on the database the server reads. */
export async function listWorkers(): Promise<IWorker[]> {
  return (await call('workers')).json();
}

/** One run with its steps. */
export async function getRun(id: string): Promise<IRun> {
  return (await call(`runs/${encodeURIComponent(id)}`)).json();
}

/** Cancel a run; resolves to its status afterwards. */
export async function cancelRun(id: string): Promise<RunStatus> {
  const out = await call(`runs/${encodeURIComponent(id)}/cancel`, {
    method: 'POST'
  });
  return (await out.json()).status;
}

/** The run's DAG coloured by step status, as SVG markup. */
export async function runSvg(id: string): Promise<string> {
  return (await call(`runs/${encodeURIComponent(id)}/dag.svg`)).text();
}

/**
 * Where an artifact of a run (a table, file or big output its steps reference) downloads:
 * a plain link, sent with the page's Jupyter login cookie. A table: `format` csv or parquet.
 */
export function artifactUrl(runId: string, artifactId: string, format?: 'csv' | 'parquet'): string {
  const url = URLExt.join(
    settings.baseUrl,
    'thodare',
    'api',
    'runs',
    encodeURIComponent(runId),
    'artifacts',
    encodeURIComponent(artifactId)
  );
  return format ? `${url}?format=${format}` : url;
}
