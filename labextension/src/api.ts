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
  /** A waiting step's correlation key, resolved; only the run route has it. */
  waiting_key?: string | null;
  /** The params its last attempt ran with (hidden and env values `***`); only the run route. */
  params?: Record<string, unknown> | null;
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

/** What a run row and a whole run share. */
interface IRunHead {
  id: string;
  workflow: string | null;
  status: RunStatus;
  created_at: string;
  started_at: string | null;
  ended_at: string | null;
  error: string | null;
  failed_block: string | null;
  /** For a child run (`run_workflow`): the run and block that started it. */
  parent_run_id?: string | null;
  parent_block_id?: string | null;
}

/** A durable run (a `RunDescription`). */
export interface IRun extends IRunHead {
  /** A `for_each` step's items are steps too (`block[i]`). */
  steps: IStep[];
  /** By `for_each` block id; only the run route has it. */
  progress?: Record<string, IProgress>;
  /** The child runs its `run_workflow` steps started; only the run route has them. */
  children?: IChildRun[];
  /** Each block's params as written (hidden ones `***`); only the run route has them. */
  templates?: Record<string, Record<string, unknown>>;
}

/** A row of the runs list: small (no input, outputs or steps; `error` cut short). */
export interface IRunRow extends IRunHead {
  parent_run_id: string | null;
  parent_block_id: string | null;
  /** A fork (`kit.fork`): how many steps it reused from the run it forked; 0 otherwise. */
  forked: number;
  /** A fork: the run it reused those steps from. */
  forked_from: string | null;
}

/** What the runs list filters on; empty fields do not filter. */
export interface IRunFilter {
  status?: RunStatus | null;
  workflow?: string;
  /** ISO 8601 times: created at or after `after`, before `before`. */
  after?: string;
  before?: string;
  limit?: number;
}

/** The database the server reads for this page (`GET info`): never a password. */
export interface IDbInfo {
  /** The URL with its password masked. */
  url: string;
  backend: string;
  namespace: string;
  schema_version: string;
  runs: Record<string, number>;
  live_workers: number;
  /** `kernel`: the active notebook's kernel told it; `server`: the server's own. */
  source: 'kernel' | 'server';
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
let kernelId: string | null = null;

/**
 * Read the runs of this kernel's database from now on (null: the server's own). The
 * server looks the database up by kernel id; the browser never sees its password.
 */
export function setKernel(id: string | null): void {
  kernelId = id;
}

/** The kernel whose database the routes read (see `setKernel`). */
export function currentKernel(): string | null {
  return kernelId;
}

/**
 * A run and where it lives: the kernel whose database holds it (null: the server's).
 * A run view keeps the kernel it was opened with, whichever notebook is active later.
 */
export interface IRunRef {
  id: string;
  kernel: string | null;
}

/** `run` of the database the routes read now (see `setKernel`). */
export function runHere(id: string): IRunRef {
  return { id, kernel: kernelId };
}

/** `path` under `thodare/api/` with `kernel` (when one is set) in its query. */
function routeUrl(path: string, kernel: string | null = kernelId): string {
  const url = URLExt.join(settings.baseUrl, 'thodare', 'api', path);
  if (!kernel) {
    return url;
  }
  return `${url}${url.includes('?') ? '&' : '?'}kernel=${encodeURIComponent(kernel)}`;
}

/** Call a route (of `kernel`'s database); a failed call throws an Error carrying the
 * server's message. */
async function call(
  path: string,
  init: RequestInit = {},
  kernel: string | null = kernelId
): Promise<Response> {
  const url = routeUrl(path, kernel);
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
    if (response.status === 404 && path.startsWith('runs?')) {
      message = 'The thodare server extension is not enabled in this Jupyter server.';
    }
    throw new Error(message);
  }
  return response;
}

/** Recent runs, newest first, as small rows, filtered by `filter`. */
export async function listRuns(filter: IRunFilter = {}): Promise<IRunRow[]> {
  const query: Record<string, string> = { limit: String(filter.limit ?? 50) };
  for (const key of ['status', 'workflow', 'after', 'before'] as const) {
    const value = filter[key];
    if (value) {
      query[key] = value;
    }
  }
  return (await call(`runs${URLExt.objectToQueryString(query)}`)).json();
}

/** Which database the routes read (URL with the password masked) and whose it is. */
export async function dbInfo(): Promise<IDbInfo> {
  return (await call('info')).json();
}

/** The URL of the change stream (server-sent events) of the database the routes read. */
export function eventsUrl(): string {
  return routeUrl('events');
}

/** Live workers on the database the server reads. */
export async function listWorkers(): Promise<IWorker[]> {
  return (await call('workers')).json();
}

/** A route of `run` (in its kernel's database). */
function callRun(run: IRunRef, path: string, init: RequestInit = {}): Promise<Response> {
  return call(`runs/${encodeURIComponent(run.id)}${path}`, init, run.kernel);
}

/** One run with its steps. */
export async function getRun(run: IRunRef): Promise<IRun> {
  return (await callRun(run, '')).json();
}

/** Cancel a run; resolves to its status afterwards. */
export async function cancelRun(run: IRunRef): Promise<RunStatus> {
  const out = await callRun(run, '/cancel', { method: 'POST' });
  return (await out.json()).status;
}

/** The run's DAG coloured by step status, as SVG markup. */
export async function runSvg(run: IRunRef): Promise<string> {
  return (await callRun(run, '/dag.svg')).text();
}

/**
 * Where an artifact of a run (a table, file or big output its steps reference) downloads:
 * a plain link, sent with the page's Jupyter login cookie. A table: `format` csv or parquet.
 */
export function artifactUrl(run: IRunRef, artifactId: string, format?: 'csv' | 'parquet'): string {
  const url = URLExt.join(
    settings.baseUrl,
    'thodare',
    'api',
    'runs',
    encodeURIComponent(run.id),
    'artifacts',
    encodeURIComponent(artifactId)
  );
  const query: Record<string, string> = {};
  if (format) {
    query.format = format;
  }
  if (run.kernel) {
    query.kernel = run.kernel;
  }
  return `${url}${URLExt.objectToQueryString(query)}`;
}

/** What answering a wait did: the signal stored and how many runs it woke. */
export interface ISent {
  signal_id: number;
  woke: number;
  by?: string;
  correlation_key?: string | null;
}

/** A log line of a step (masked). */
export interface ILogLine {
  at: string;
  stream: string;
  block_id: string;
  attempt: number;
  text: string;
}

/** What the run's step `block` printed or logged (its items' lines too). */
export async function stepLogs(run: IRunRef, block: string): Promise<ILogLine[]> {
  const query = URLExt.objectToQueryString({ block });
  return (await callRun(run, `/logs${query}`)).json();
}

/** Approve or reject the run's waiting `human_approval` step, as the Jupyter user. */
export async function approveStep(
  run: IRunRef,
  block: string,
  approved: boolean,
  comment: string
): Promise<ISent> {
  const body = JSON.stringify({ block, approved, comment: comment || null });
  return (await callRun(run, '/approve', { method: 'POST', body })).json();
}

/** Send the event the run's waiting `wait_for_event` step waits for, with this key. */
export async function sendStepEvent(
  run: IRunRef,
  block: string,
  correlationKey: string | null,
  payload: unknown
): Promise<ISent> {
  const body = JSON.stringify({ block, correlation_key: correlationKey, payload });
  return (await callRun(run, '/event', { method: 'POST', body })).json();
}
