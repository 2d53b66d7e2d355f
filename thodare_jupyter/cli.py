"""The ``thodare`` command: run a worker, list and inspect runs, send signals, cancel.

    thodare worker --db sqlite:///runs.db --import my_connectors [--import other.py]
    thodare info
    thodare runs [--status failed] [--workflow W] [--since 1h] [--limit 20]
    thodare runs show RUN_ID          (RUN_ID: the id or its first characters, 4 or more)
    thodare logs RUN_ID [STEP] [--follow]
    thodare signal order.paid --payload '{"id": 7}' [--key order-7] [--idempotency-key I]
    thodare cancel RUN_ID
    thodare schedules [pause|resume|remove NAME]
    thodare prune --older-than 7d

``--db`` defaults to ``THODARE_DB``, then a SQLite file in the user data dir;
``--namespace`` to ``THODARE_NAMESPACE``, then ``default``. Mistakes the user
can fix (a bad database URL, a module that does not import, invalid JSON, an
unknown run id) print one clear message and exit with code 2; ``cancel`` of a
run that had already ended exits with 1.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import os
import re
import signal as signals
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from types import FrameType, ModuleType
from typing import Annotated, Any, NoReturn

import typer

from .clock import from_iso, local_text
from .connectors import Connector
from .connectors.builtins import BUILTINS
from .connectors.waits import duration_seconds
from .drawing.svg import step_status
from .durable.handle import RunDescription, StepDescription
from .durable.info import database_info
from .errors import (
    BackendUnavailable,
    RunIdAmbiguous,
    RunIdTooShort,
    RunNotFound,
    ThodareError,
)
from .kit import Wfkit, create_wfkit
from .redaction import safe_url
from .wire import RUN_STATUSES, TERMINAL_STATUSES, RunStatus

ArtifactsOption = Annotated[
    str | None,
    typer.Option(
        "--artifacts",
        envvar="THODARE_ARTIFACTS",
        show_envvar=True,
        help="Artifact store URL for tables and files (s3://..., a folder); "
        "default: beside the SQLite file, or a folder on this machine.",
    ),
]
app = typer.Typer(
    help="Durable workflow runs: a worker, run listings, signals, cancel, schedules.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold secrets
)
runs_app = typer.Typer(help="List recent runs, or `runs show ID` for one run's steps.")
app.add_typer(runs_app, name="runs")
schedules_app = typer.Typer(help="List cron schedules; pause, resume or remove one.")
app.add_typer(schedules_app, name="schedules")


Db = Annotated[
    str | None,
    typer.Option(
        "--db", envvar="THODARE_DB", show_envvar=True,
        help="Database URL (sqlite:///runs.db, postgresql+psycopg://...) or a SQLite file path.",
    ),
]  # fmt: skip
RunId = Annotated[str, typer.Argument(help="The run's id, or its first characters (4 or more).")]
Namespace = Annotated[
    str | None,
    typer.Option(
        "--namespace", envvar="THODARE_NAMESPACE", show_envvar=True,
        help="Tenant namespace (default: 'default').",
    ),
]  # fmt: skip


# ── helpers ──


def _fail(message: str) -> NoReturn:
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(2)


@contextlib.contextmanager
def _open(db: str | None, namespace: str | None, **tuning: Any) -> Iterator[Wfkit]:
    """A kit on the database (its worker not started); closed on exit."""
    try:
        kit = create_wfkit(db, namespace=namespace, **tuning)
    except BackendUnavailable as e:
        _fail(str(e))
    try:
        yield kit
    finally:
        kit.close()


def _resolve(kit: Wfkit, run_id: str) -> str:
    """The full id of the run ``run_id`` (or its first characters) names, else exit 2."""
    try:
        return kit.resolve_run_id(run_id)
    except (RunIdTooShort, RunIdAmbiguous) as e:
        _fail(str(e))
    except RunNotFound:
        _fail(f"No run {run_id!r} in {_where(kit)}.")


def _where(kit: Wfkit) -> str:
    return f"namespace {kit.store.namespace!r} of {safe_url(kit.store.url)}"


def _describe(kit: Wfkit, run_id: str) -> RunDescription:
    try:
        return kit.get_handle(_resolve(kit, run_id)).describe()
    except RunNotFound:
        _fail(f"No run {run_id!r} in {_where(kit)}.")


def _at(epoch: float | None) -> str:
    """``2026-12-04 12:03:04 CET``: local time to the second with its zone, as the panel."""
    if epoch is None:
        return "-"
    return f"{local_text(epoch)} {datetime.fromtimestamp(epoch).astimezone().strftime('%Z')}"


def _when(iso: str | None) -> str:
    """:func:`_at` of an ISO 8601 time (as ``describe()`` gives it)."""
    return _at(from_iso(iso))


def _run_status(value: str | None) -> RunStatus | None:
    """``--status``: one of :data:`~thodare_jupyter.wire.RUN_STATUSES`, or a usage error."""
    for s in RUN_STATUSES:
        if value == s:
            return s
    if value is None:
        return None
    raise typer.BadParameter(f"{value!r} is not one of {', '.join(RUN_STATUSES)}.")


def _short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
        for row in [headers, *rows]
    )


def _import(target: str) -> ModuleType:
    """Import a module by dotted name, or a ``.py`` file by path."""
    path = Path(target)
    is_file = target.endswith(".py") or os.sep in target
    if is_file and not path.is_file():
        _fail(f"Cannot import {target!r}: no such file.")
    try:
        if not is_file:
            if os.getcwd() not in sys.path:
                sys.path.insert(0, os.getcwd())  # as `python -m` would
            return importlib.import_module(target)
        name = path.stem if path.stem not in sys.modules else f"_thodare_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ImportError("not a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # pydantic resolves annotations through sys.modules
        sys.path.insert(0, str(path.resolve().parent))  # so the file can import its siblings
        spec.loader.exec_module(module)
        return module
    except ImportError as e:
        _fail(f"Cannot import module {target!r}: {e}")
    except Exception as e:  # the module itself raised while importing
        _fail(f"Importing module {target!r} raised {type(e).__name__}: {e}")


def _serve(kit: Wfkit) -> None:
    """Run the kit's worker until SIGINT or SIGTERM; the caller stops it."""
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signals.signal(s, on_signal) for s in (signals.SIGINT, signals.SIGTERM)}
    try:
        kit.start()
        while not stop.wait(1.0):
            pass
    finally:
        for s, handler in previous.items():
            signals.signal(s, handler)


# ── commands ──


@app.command()
def worker(
    imports: Annotated[
        list[str] | None,
        typer.Option("--import", help="Module name or .py file whose Connector globals to serve."),
    ] = None,
    db: Db = None,
    namespace: Namespace = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Runs walked at once.")] = 8,
    lease: Annotated[float, typer.Option(min=0.1, help="Lease seconds per claimed run.")] = 30.0,
    poll: Annotated[float, typer.Option(min=0.001, help="Longest pause between polls.")] = 1.0,
    listen: Annotated[
        bool, typer.Option(help="PostgreSQL: wake on LISTEN/NOTIFY as well as polling.")
    ] = True,
    artifacts: ArtifactsOption = None,
) -> None:
    """Serve runs until SIGINT/SIGTERM, with the connectors found in the imported modules."""
    found: list[Connector] = []
    for target in imports or []:
        for value in vars(_import(target)).values():
            if isinstance(value, Connector) and all(value is not c for c in found):
                found.append(value)
    tuning = dict(concurrency=concurrency, lease_s=lease, poll_s=poll, listen=listen)
    with _open(db, namespace, artifacts=artifacts, **tuning) as kit:
        try:
            kit.register(*found)
        except ThodareError as e:
            _fail(str(e))
        own = sorted(c.type for c in found if all(c is not b for b in BUILTINS))
        typer.echo(
            f"thodare worker: serving {safe_url(kit.store.url)} "
            f"(namespace {kit.store.namespace!r}) with connectors {', '.join(own) or '(none)'} "
            f"+ {len(BUILTINS)} builtins; concurrency {concurrency}; artifacts in "
            f"{safe_url(kit.artifacts.url)}. Ctrl-C or SIGTERM to stop."
        )
        _serve(kit)
    typer.echo("thodare worker: stopped; runs in flight were handed back.")


@runs_app.callback(invoke_without_command=True)
def runs(
    ctx: typer.Context,
    status: Annotated[
        str | None,
        typer.Option(
            help="Only runs with this status.",
            metavar="[" + "|".join(RUN_STATUSES) + "]",
            callback=_run_status,
        ),
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="How many runs, newest first.")] = 20,
    workflow: Annotated[str | None, typer.Option(help="Only runs of this workflow.")] = None,
    since: Annotated[
        str | None, typer.Option(help="Only runs created in the last 30m, 12h, 7d...")
    ] = None,
    db: Db = None,
    namespace: Namespace = None,
) -> None:
    """Recent runs, newest first; ids shown by their first 8 characters (which every
    command taking a run id accepts)."""
    if ctx.invoked_subcommand is not None:
        ctx.obj = (db, namespace)  # `thodare runs --db X show ID` also works
        return
    after = time.time() - _age(since) if since else None
    with _open(db, namespace) as kit:
        found = kit.store.runs.list_light(
            limit, status=_run_status(status), workflow=workflow, after=after
        )
    if not found:
        typer.echo("No runs.")
        return
    heads = ["ID", "WORKFLOW", "STATUS", "CREATED", "ENDED", "FAILED BLOCK"]
    rows = [[r["id"][:8], r["workflow_name"] or "-", r["status"], _at(r["created_at"]),
             _at(r["ended_at"]), r["failed_block"] or "-"] for r in found]  # fmt: skip
    # children and forks are marked
    if any(r["parent_run_id"] or r["reused"] or r["forked_from"] for r in found):
        heads.append("FROM")
        for row, r in zip(rows, found, strict=True):
            row.append(_origin(r))
    typer.echo(_table(heads, rows))


def _origin(run: dict[str, Any]) -> str:
    """``child of <parent> (block)`` for a child run (``run_workflow``), ``fork of <run>
    (n steps reused)`` for a run ``kit.fork`` made, else ``-``."""
    if run["parent_run_id"] is not None:
        return f"child of {run['parent_run_id'][:8]} ({run['parent_block_id']})"
    if run["forked_from"] is not None or run["reused"]:
        source = f" of {run['forked_from'][:8]}" if run["forked_from"] else ""
        n = run["reused"]
        return f"fork{source} ({n} step{'' if n == 1 else 's'} reused)"
    return "-"


@runs_app.command("show")
def show(
    ctx: typer.Context,
    run_id: RunId,
    db: Db = None,
    namespace: Namespace = None,
) -> None:
    """One run: its header and every step."""
    outer_db, outer_ns = ctx.obj or (None, None)
    with _open(db or outer_db, namespace or outer_ns) as kit:
        run = _describe(kit, run_id)
    typer.echo(f"Run       {run.id}")
    typer.echo(f"Workflow  {run.workflow or '-'}")
    if run.parent_run_id:
        typer.echo(f"Parent    {run.parent_run_id} (block {run.parent_block_id})")
    if run.forked_from:
        typer.echo(f"Forked    from {run.forked_from}")
    typer.echo(f"Status    {run.status}")
    typer.echo(f"Created   {_when(run.created_at)}")
    typer.echo(f"Started   {_when(run.started_at)}")
    typer.echo(f"Ended     {_when(run.ended_at)}")
    if run.failed_block:
        typer.echo(f"Failed at {run.failed_block}")
    if run.error:
        typer.echo(f"Error     {run.error}")
    if run.missing_connectors:
        typer.echo(f"Waiting   for a worker with {', '.join(run.missing_connectors)} "
                   "(see `thodare workers`)")  # fmt: skip
    if not run.steps:
        typer.echo("\nNo steps yet.")
        return

    def detail(s: StepDescription) -> str:
        if s.error:
            return _short(s.error, 80)
        if s.waiting_for:
            return f"waiting for {s.waiting_for}"
        return _short(s.output) if s.status == "completed" else ""

    typer.echo("")
    typer.echo(_table(
        ["BLOCK", "TYPE", "STATUS", "ATTEMPT", "STARTED", "ENDED", "ERROR / OUTPUT"],
        [[s.block_id, s.type, step_status(run.status, s.status), str(s.attempt),
          _when(s.started_at), _when(s.ended_at), detail(s)] for s in run.steps],
    ))  # fmt: skip
    if run.children:
        typer.echo("\nChildren (`thodare runs show ID`)")
        typer.echo(_table(
            ["BLOCK", "RUN", "WORKFLOW", "STATUS"],
            [[c.block_id, c.run_id, c.workflow or "-", c.status] for c in run.children],
        ))  # fmt: skip


@app.command()
def info(db: Db = None, namespace: Namespace = None) -> None:
    """Which database this command uses (password masked), its schema, runs and workers."""
    with _open(db, namespace) as kit:
        about = database_info(kit.store)
    typer.echo(f"Database   {about.url}")
    typer.echo(f"Backend    {about.backend}")
    typer.echo(f"Namespace  {about.namespace}")
    typer.echo(f"Schema     {about.schema_version}")
    counts = ", ".join(f"{n} {s}" for s, n in about.runs.items() if n) or "none"
    typer.echo(f"Runs       {sum(about.runs.values())} ({counts})")
    typer.echo(f"Workers    {about.live_workers} live")


@app.command()
def workers(db: Db = None, namespace: Namespace = None) -> None:
    """Live workers: where they run, their connector types, the runs they hold."""
    with _open(db, namespace) as kit:
        found = kit.workers()
    if not found:
        typer.echo("No live workers. Start one with `thodare worker --import MODULE`.")
        return
    builtins = {c.type for c in BUILTINS}
    typer.echo(_table(
        ["WORKER", "KIND", "RUNS", "SLOTS", "LAST HEARTBEAT", "CONNECTORS (+ builtins)"],
        [[w.id, w.kind, str(w.runs_held), str(w.concurrency), _when(w.last_heartbeat),
          ", ".join(t for t in w.connector_types if t not in builtins) or "-"] for w in found],
    ))  # fmt: skip


@app.command()
def logs(
    run_id: RunId,
    step: Annotated[str | None, typer.Argument(help="Only this block's logs.")] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing new lines until the run ends.")
    ] = False,
    interval: Annotated[
        float, typer.Option(min=0.05, help="With --follow: seconds between looks.")
    ] = 1.0,
    db: Db = None,
    namespace: Namespace = None,
) -> None:
    """What a run's steps printed or logged: time, block#attempt, stream, text (masked).
    An attempt's lines appear when it ends."""
    with _open(db, namespace) as kit:
        run_id = _resolve(kit, run_id)
        status = _describe(kit, run_id).status
        seen = 0
        while True:
            rows = kit.store.logs.rows(run_id, step, after=seen)
            for _, line in rows:
                typer.echo(str(line))
            seen = rows[-1][0] if rows else seen
            if not follow or status in TERMINAL_STATUSES:
                break
            time.sleep(interval)
            status = kit.get_handle(run_id).status  # then one more look: the last lines


@app.command("signal")
def send_signal(
    event: Annotated[str, typer.Argument(help="Event name the waits listen for.")],
    payload: Annotated[
        str | None, typer.Option(help="JSON payload (the wait's output `data`).")
    ] = None,
    key: Annotated[str | None, typer.Option(help="Correlation key.")] = None,
    idempotency_key: Annotated[
        str | None, typer.Option(help="Sending twice with one key stores one signal.")
    ] = None,
    db: Db = None,
    namespace: Namespace = None,
) -> None:
    """Send an event to the runs waiting for it (or reaching the wait later)."""
    data: Any = None
    if payload is not None:
        try:
            data = json.loads(payload)
        except json.JSONDecodeError as e:
            line = payload.splitlines()[e.lineno - 1] if payload.strip() else ""
            _fail(
                f"--payload is not valid JSON: {e.msg} at line {e.lineno}, column {e.colno}:\n"
                f"  {line}\n  {' ' * (e.colno - 1)}^"
            )
    with _open(db, namespace) as kit:
        sent = kit.signal(event, data, correlation_key=key, idempotency_key=idempotency_key)
    typer.echo(sent.message())


@app.command()
def cancel(
    run_id: RunId,
    db: Db = None,
    namespace: Namespace = None,
) -> None:
    """Cancel a run (also a waiting one). Exits 1 when the run had already ended."""
    with _open(db, namespace) as kit:
        run_id = _resolve(kit, run_id)
        before = _describe(kit, run_id)
        if kit.cancel(run_id):
            typer.echo(f"Run {run_id} canceled (was {before.status}).")
            return
        now = kit.get_handle(run_id).status
    typer.echo(f"Run {run_id} had already ended ({now}); not canceled.")
    raise typer.Exit(1)


def _age(text: str) -> float:
    """``7d``, ``12h``, ``30m``, ``90s``, ``2w`` or plain seconds, as seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*", text)
    if m is None:
        raise typer.BadParameter(f"{text!r} is not an age: use 7d, 12h, 30m, 90s, 2w or seconds.")
    return duration_seconds(float(m[1]), m[2] or "s")


@app.command()
def prune(
    older_than: Annotated[
        str,
        typer.Option("--older-than", help="Age of the finished runs to delete: 7d, 12h, 30m..."),
    ],
    artifacts: ArtifactsOption = None,
    db: Db = None,
    namespace: Namespace = None,
) -> None:
    """Delete finished runs older than --older-than and the artifacts only they referenced."""
    seconds = _age(older_than)
    with _open(db, namespace, artifacts=artifacts) as kit:
        try:
            report = kit.prune(seconds)
        except ThodareError as e:
            _fail(str(e))
    typer.echo(
        f"Pruned {report.runs} run(s), {report.steps} step(s) and {report.artifacts} "
        f"artifact(s) older than {older_than}."
    )


def _stamp(when: datetime | None) -> str:
    return _at(when.timestamp() if when else None)


@schedules_app.callback(invoke_without_command=True)
def schedules(ctx: typer.Context, db: Db = None, namespace: Namespace = None) -> None:
    """Every schedule: cron, status, next tick, last run and last error."""
    if ctx.invoked_subcommand is not None:
        ctx.obj = (db, namespace)
        return
    with _open(db, namespace) as kit:
        found = kit.schedules()
    if not found:
        typer.echo("No schedules.")
        return
    typer.echo(_table(
        ["NAME", "WORKFLOW", "CRON", "TZ", "STATUS", "NEXT", "LAST RUN", "LAST ERROR"],
        [[s.name, s.workflow_name or "-", s.cron, s.tz, s.status, _stamp(s.next_at),
          s.last_run_id or "-", _short(s.last_error or "-", 50)] for s in found],
    ))  # fmt: skip


def _on_schedule(ctx: typer.Context, name: str, action: str) -> None:
    db, namespace = ctx.obj or (None, None)
    with _open(db, namespace) as kit:
        try:
            if action == "remove":
                if not kit.unschedule(name):
                    _fail(f"No schedule named {name!r}.")
                typer.echo(f"Schedule {name!r} removed (its runs stay).")
                return
            info = kit.pause_schedule(name) if action == "pause" else kit.resume_schedule(name)
        except ThodareError as e:
            _fail(str(e))
    nxt = f"; next tick {_stamp(info.next_at)}" if info.status == "active" else ""
    typer.echo(f"Schedule {name!r} {info.status}{nxt}.")


ScheduleName = Annotated[str, typer.Argument(help="The schedule's name.")]


@schedules_app.command("pause")
def pause_schedule(ctx: typer.Context, name: ScheduleName) -> None:
    """Stop dispatching a schedule until it is resumed."""
    _on_schedule(ctx, name, "pause")


@schedules_app.command("resume")
def resume_schedule(ctx: typer.Context, name: ScheduleName) -> None:
    """Dispatch a schedule again from its next tick (no catch-up)."""
    _on_schedule(ctx, name, "resume")


@schedules_app.command("remove")
def remove_schedule(ctx: typer.Context, name: ScheduleName) -> None:
    """Delete a schedule; the runs it started stay."""
    _on_schedule(ctx, name, "remove")


if __name__ == "__main__":  # pragma: no cover
    app()
