"""``create_wfkit`` / ``Wfkit``: the one object a notebook or a service holds.

It owns a catalog of connectors, a store on SQLite or PostgreSQL, and
(after :meth:`Wfkit.start`) a background worker that runs what is due.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

import platformdirs

from .artifacts import ArtifactStore, default_artifacts_url
from .authoring.builder import WorkflowBuilder
from .authoring.spec import WorkflowSpec, workflow_from_spec
from .clock import instant
from .connectors import Catalog, Connector
from .durable.cron import check_cron, next_tick, zone
from .durable.definitions import Definitions, DefinitionVersion
from .durable.handle import RunHandle, RunList, WorkerInfo, describe_run, describe_worker
from .durable.lifecycle import Lifecycle
from .durable.prune import Pruner, PruneReport
from .durable.run_execution import first_steps
from .durable.schedules import DispatchReport, ScheduleInfo, Schedules
from .durable.signal_store import SignalSent
from .durable.store import Store
from .durable.worker import Worker, WorkerConfig
from .errors import (
    ForkBlockNotFound,
    KitClosed,
    ScheduleInvalid,
    SpecNotBuilt,
    WorkflowNotNamed,
)
from .graph import Upstream, build_graph
from .patch import apply_operations
from .redaction import safe_url
from .validation import compile_workflow, input_model_of, validate_input
from .wire import ApplyResult, RunStatus, SerializedWorkflow

log = logging.getLogger("thodare.kit")
FULL_RUN_ID = 32
"""Run ids are this long (UUID hex); a shorter one is resolved as a prefix."""


def default_db_url() -> str:
    """``THODARE_DB``, else a SQLite file in the user data dir."""
    url = os.environ.get("THODARE_DB")
    if url:
        return _db_url(url)
    path = Path(platformdirs.user_data_dir("thodare-jupyter")) / "runs.db"
    return f"sqlite:///{path}"


def _db_url(db: str) -> str:
    if "://" in db:
        return db
    return f"sqlite:///{Path(db).expanduser().resolve()}"  # a bare path means a SQLite file


class Wfkit:
    """Connectors + durable store + worker. Create it with :func:`create_wfkit`.

    Use it as a context manager (or call :meth:`stop`) so the worker hands
    its runs back on exit.
    """

    def __init__(
        self,
        store: Store,
        catalog: Catalog,
        env: Mapping[str, str] | None,
        config: WorkerConfig,
        artifacts: ArtifactStore | None = None,
    ) -> None:
        self.store = store
        self.artifacts = artifacts or ArtifactStore(
            default_artifacts_url(store.url, Path(platformdirs.user_data_dir("thodare-jupyter")))
        )
        """Where steps keep tables, files and outputs over 256 KiB (``artifacts=``)."""
        self.catalog = catalog
        self.env: Mapping[str, str] = env if env is not None else os.environ
        self.config = config
        self.lifecycle = Lifecycle()
        """The runtime's lifecycle events (``with_tracing`` subscribes to them)."""
        self.worker = Worker(
            store, catalog, self.env, config, lifecycle=self.lifecycle, artifacts=self.artifacts
        )
        self._schedules = Schedules(store, self.lifecycle)
        self._definitions = Definitions(store)
        self.workflows: dict[str, SerializedWorkflow] = {}
        """Workflows built by :meth:`workflow_from_spec`, by ``name@version``."""
        self._compiled: dict[tuple[Any, ...], bool] = {}  # workflows already checked (_checked)
        self._closed = False

    def __repr__(self) -> str:
        state = "running" if self.worker.running else "stopped"
        return f"<Wfkit {self.store.url} namespace={self.store.namespace} worker {state}>"

    # ── definitions ──

    def register(self, *connectors: Connector, replace: bool = False) -> Wfkit:
        """Make connectors available to workflows run by this kit."""
        self.catalog.register(*connectors, replace=replace)
        self.worker.connectors_changed()  # claims the runs that waited for these
        return self

    def compile(self, workflow: SerializedWorkflow | dict[str, Any] | str) -> SerializedWorkflow:
        """Check ``workflow`` against this kit's connectors; raises ``WorkflowInvalid``.

        A workflow loaded from JSON gets the input model read from its
        ``metadata.inputSchema`` (``input_model``), so its runs are validated too.
        """
        wf = (workflow if isinstance(workflow, SerializedWorkflow)
              else SerializedWorkflow.from_json(workflow) if isinstance(workflow, str)
              else SerializedWorkflow.model_validate(workflow))  # fmt: skip
        compiled = compile_workflow(wf, self.catalog)
        compiled._input_model = input_model_of(compiled)
        return compiled

    def _checked(
        self, workflow: SerializedWorkflow | dict[str, Any] | str
    ) -> tuple[SerializedWorkflow, str]:
        """:meth:`compile` and the workflow's JSON; the check is done once for the many
        runs of one workflow (same JSON, input model and connector objects)."""
        if not isinstance(workflow, SerializedWorkflow):
            wf = self.compile(workflow)
            return wf, wf.to_json()
        wf_json = workflow.to_json()
        model = workflow.input_model
        key = (wf_json, model, *(self.catalog.find(b.type) for b in workflow.blocks))
        if key not in self._compiled:
            self.compile(workflow)
            if len(self._compiled) >= 128:
                self._compiled.pop(next(iter(self._compiled)))
            self._compiled[key] = True
        if model is None:  # not built in Python: the model of its metadata's input schema
            workflow._input_model = input_model_of(workflow)
        return workflow, wf_json

    def workflow_from_spec(
        self, spec: WorkflowSpec, steps: Callable[[WorkflowBuilder], WorkflowBuilder]
    ) -> SerializedWorkflow:
        """Build, check and keep the workflow implementing ``spec`` (see :meth:`run_spec`)."""
        compiled = self.compile(workflow_from_spec(spec, steps))
        self.workflows[spec.runtime_name] = compiled
        return compiled

    def apply_operations(
        self, workflow: SerializedWorkflow | dict[str, Any] | str, ops: Iterable[Any]
    ) -> ApplyResult:
        """:func:`~thodare_jupyter.apply_operations` with this kit's connectors."""
        return apply_operations(workflow, ops, self.catalog)

    # ── lifecycle ──

    def start(self) -> Wfkit:
        """Start the background worker (a thread in this process)."""
        self._check_open("start")
        self.worker.start()
        return self

    def stop(self) -> None:
        """Stop the worker; runs in flight are handed back and resume on the next start."""
        self.worker.stop()

    def close(self) -> None:
        """Stop the worker and close the database connections (the kit is done)."""
        self.stop()
        self.store.dispose()
        self._closed = True

    def _check_open(self, what: str) -> None:
        if self._closed:
            raise KitClosed(what)

    def __enter__(self) -> Wfkit:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ── runs ──

    def run(
        self,
        workflow: SerializedWorkflow | dict[str, Any] | str,
        input: Any = None,
        *,
        idempotency_key: str | None = None,
        deadline: float | timedelta | datetime | None = None,
    ) -> RunHandle:
        """Start a durable run; the input is validated before any row is written.

        Args:
            workflow: A workflow (checked with :meth:`compile`).
            input: The run input (``{{trigger.x}}``).
            idempotency_key: A second call with the same key returns the first run.
            deadline: Seconds from now, a timedelta, or a datetime: the run fails
                if it has not finished by then.

        Returns:
            A :class:`RunHandle` (``result()``, ``describe()``, ``cancel()``).
        """
        self._check_open("run")
        wf, wf_json = self._checked(workflow)
        data = validate_input(wf.input_model, input, wf.name, self.artifacts)
        deadline_at = _deadline(deadline)
        run_id = uuid.uuid4().hex  # the id is chosen here: a retry keeps it
        needs = [b.type for b in wf.blocks if b.enabled]
        slot = None if idempotency_key is not None else self.worker.reserve(needs)
        if slot is not None:  # a free slot here: the run is inserted claimed, walked at once
            # no on_run_create to fire first: the walk may set up before the commit ends
            early = None if self.lifecycle.wants("on_run_create") else slot.hand
            with slot:  # (given back unless the run was handed over)
                row = self.store.runs.start_run(
                    self.worker.owner, self.worker.config.lease_s, wf.name, wf_json, data,
                    run_id=run_id, deadline_at=deadline_at,
                    first=first_steps(self.worker.plan(wf_json)), early=early,
                )  # fmt: skip
                self.lifecycle.run_created(run_id, wf.name, data, None, deadline_at, True)
                slot.hand(row)
            return RunHandle(self.store, run_id, self.worker, created=True, workflow=wf)
        self.lifecycle.run_creating(run_id, wf.name, data, idempotency_key, deadline_at)
        found, created = self.store.runs.create_run(
            wf.name, wf_json, data, idempotency_key=idempotency_key,
            deadline_at=deadline_at, run_id=run_id,
        )  # fmt: skip
        self.lifecycle.run_created(
            found, wf.name, data, idempotency_key, deadline_at, created, asked=run_id
        )
        run_id = found
        self.worker.wake()
        return RunHandle(self.store, run_id, self.worker, created=created, workflow=wf)

    def run_spec(
        self,
        spec: WorkflowSpec,
        input: Any = None,
        *,
        idempotency_key: str | None = None,
        deadline: float | timedelta | datetime | None = None,
    ) -> RunHandle:
        """Run the workflow built for ``spec``; the input is checked by the spec first.

        Raises:
            InputInvalid: The input does not match ``spec.input`` (no run row exists).
            SpecNotBuilt: No workflow was built for ``spec`` in this kit.
        """
        data = spec.validate_input(input, self.artifacts)
        wf = self.workflows.get(spec.runtime_name)
        if wf is None:
            raise SpecNotBuilt(spec.runtime_name, list(self.workflows))
        return self.run(wf, data, idempotency_key=idempotency_key, deadline=deadline)

    def fork(
        self,
        run_id: str,
        from_block: str,
        workflow: SerializedWorkflow | dict[str, Any] | str | None = None,
    ) -> RunHandle:
        """Re-run from ``from_block``: a new run reusing the recorded outputs upstream of it.

        The steps upstream of ``from_block`` that completed in run ``run_id``
        are copied into the new run and not executed again; ``from_block``
        and everything else runs. Pass ``workflow`` (the fixed definition) to
        run the rest with it: fix a step, re-run only what changed. The new
        run gets the old run's input.

        Raises:
            RunNotFound: No run ``run_id`` in this namespace.
            ForkBlockNotFound: ``from_block`` is not a block of the workflow.
        """
        self._check_open("fork")
        run_id = self.resolve_run_id(run_id)
        src = self.get_handle(run_id)._row()
        wf = self.compile(workflow if workflow is not None else src.workflow_json)
        g = build_graph(wf)
        if from_block not in g:
            raise ForkBlockNotFound(run_id, from_block, wf.name, list(g))
        data = validate_input(wf.input_model, src.input, wf.name, self.artifacts)
        new_id = uuid.uuid4().hex
        self.lifecycle.run_creating(new_id, wf.name, data)
        self.store.runs.create_run(
            wf.name, wf.to_json(), data, run_id=new_id,
            reuse=(run_id, sorted(Upstream(g).ancestors(from_block))),
        )  # fmt: skip
        self.lifecycle.run_created(new_id, wf.name, data)
        self.worker.wake()
        return self.get_handle(new_id)

    def get_handle(self, run_id: str) -> RunHandle:
        """A handle on an existing run (also one started by another process).

        ``run_id`` may be the start of the id (at least 4 characters, like the 8 the
        CLI and the panel show) when one run alone starts with it.

        Raises:
            RunIdTooShort, RunIdAmbiguous, RunNotFound: A shortened id that names no
                single run (a full id is checked when the handle is used).
        """
        return RunHandle(self.store, self.resolve_run_id(run_id), self.worker)

    def resolve_run_id(self, run_id: str) -> str:
        """The full id of the run ``run_id`` names: itself, or the one run whose id starts
        with it (see :meth:`get_handle`); a full-length id is returned unread."""
        return run_id if len(run_id) >= FULL_RUN_ID else self.store.runs.resolve_id(run_id)

    def output(self, run_id: str, block_id: str) -> Any:
        """One step's output loaded with its model's types (see :meth:`RunHandle.output`)."""
        return self.get_handle(run_id).output(block_id)

    def prune(self, older_than: float | timedelta) -> PruneReport:
        """Delete the finished runs (completed, failed, canceled) of this namespace that
        ended longer ago than ``older_than`` (seconds or a timedelta), their steps, and the
        artifacts no remaining run references.

        Runs still pending, running or waiting are never touched. The artifact store
        should belong to this database alone: artifacts are checked against its runs.
        """
        self._check_open("prune")
        seconds = older_than.total_seconds() if isinstance(older_than, timedelta) else older_than
        if seconds < 0:
            raise ValueError(f"older_than must not be negative, got {older_than!r}")
        return Pruner(self.store, self.artifacts).prune(float(seconds))

    def runs(self, status: RunStatus | None = None, limit: int = 50) -> RunList:
        """Recent runs, newest first (steps included); a notebook shows them as a table."""
        return RunList(
            describe_run(r, self.store.runs.get_steps(r.id))
            for r in self.store.runs.list_runs(status, limit)
        )

    def workers(self) -> list[WorkerInfo]:
        """Live workers on this database and namespace (kernels, ``thodare worker``s):
        their connector types, the runs they hold, their last heartbeat."""
        return [describe_worker(w, self.store.namespace) for w in self.store.workers.list_workers()]

    def cancel(self, run_id: str) -> bool:
        """Cancel a run (also a waiting one) and its unfinished child runs; False when it
        had already ended."""
        return self.get_handle(run_id).cancel()

    # ── schedules ──

    def schedule(
        self,
        workflow: SerializedWorkflow | dict[str, Any] | str,
        cron: str,
        input: Any = None,
        *,
        name: str | None = None,
        tz: str = "UTC",
        until: datetime | str | float | None = None,
        missed: str = "once",
    ) -> ScheduleInfo:
        """Run ``workflow`` on a cron schedule, stored in the database (survives restarts).

        Every worker on the database dispatches due ticks; each tick starts
        exactly one run (idempotency key ``cron:<name>:<tick>``). Scheduling
        the same ``name`` again replaces the schedule.

        Args:
            workflow: The workflow to run (checked with :meth:`compile`, pinned now).
            cron: ``minute hour day-of-month month day-of-week`` (``"0 9 * * mon-fri"``),
                a sixth field for seconds, or ``@hourly``/``@daily``/….
            input: The input of every run (validated now).
            name: The schedule's name (default: the workflow's name).
            tz: IANA time zone the cron fields are read in.
            until: No tick after this (datetime, ISO string or UNIX seconds).
            missed: After downtime, ``"once"`` runs the latest missed tick once;
                ``"skip"`` drops ticks more than a minute late. Never one run per
                missed tick.

        Raises:
            ScheduleInvalid: A bad cron field (named), time zone, ``until`` or ``missed``.
        """
        self._check_open("schedule")
        cron = check_cron(cron)
        zone(tz)
        if missed not in ("once", "skip"):
            raise ScheduleInvalid(
                "missed", missed, "use 'once' (run the latest missed tick once) or 'skip'."
            )
        until_at = _instant(until)
        if until_at is not None and next_tick(cron, tz, time.time()) > until_at:
            raise ScheduleInvalid("until", until, "comes before the next tick; nothing would run.")
        wf = self.compile(workflow)
        data = validate_input(wf.input_model, input, wf.name)
        info = self._schedules.save(
            name or wf.name or "schedule", wf, data, cron=cron, tz=tz, until_at=until_at,
            missed=missed,
        )  # fmt: skip
        self.worker.schedules_changed()
        return info

    def schedules(self) -> list[ScheduleInfo]:
        """Every schedule of this namespace (status, next tick, last run, last error)."""
        return self._schedules.list()

    def pause_schedule(self, name: str) -> ScheduleInfo:
        """Stop dispatching ``name`` until :meth:`resume_schedule`."""
        return self._schedules.set_active(name, False)

    def resume_schedule(self, name: str) -> ScheduleInfo:
        """Dispatch ``name`` again from its next tick (ticks missed while paused are not run)."""
        info = self._schedules.set_active(name, True)
        self.worker.schedules_changed()
        return info

    def unschedule(self, name: str) -> bool:
        """Delete schedule ``name`` (its runs stay); False when there was none."""
        return self._schedules.remove(name)

    # ── definition versions ──

    def save_version(
        self,
        workflow: SerializedWorkflow,
        *,
        source: str | None = None,
        origin: str = "cell",
        note: str | None = None,
    ) -> DefinitionVersion:
        """Keep ``workflow`` as the newest version of its name (no-op when unchanged).

        Args:
            workflow: A named workflow.
            source: The text it was written in (a ``%%workflow`` cell), to restore.
            origin: ``cell``, ``assistant`` or ``undo``.
            note: Why (the assistant request that made it).
        """
        self._check_open("save_version")
        if not workflow.name:
            raise WorkflowNotNamed()
        return self._definitions.save(
            workflow.name, workflow, source=source, origin=origin, note=note
        )

    def history(self, name: str) -> list[DefinitionVersion]:
        """Every stored version of workflow ``name``, newest first."""
        return self._definitions.history(name)

    def undo(self, name: str) -> DefinitionVersion:
        """Go back one version of ``name``: the newest is marked undone; the one before returned.

        Raises:
            NothingToUndo: There is no earlier live version.
        """
        return self._definitions.undo(name)

    def dispatch_schedules(self, now: datetime | float | None = None) -> DispatchReport:
        """Start the runs of due ticks now; the worker does this by itself.

        ``now`` pretends the clock says so (tests, catching up by hand).
        """
        report = self._schedules.dispatch_due(_instant(now))
        if report.fired:
            self.worker.wake()
        return report

    # ── signals ──

    def signal(
        self,
        event: str,
        payload: Any = None,
        *,
        correlation_key: str | None = None,
        idempotency_key: str | None = None,
    ) -> SignalSent:
        """Send an event to every run waiting for it, or reaching its wait later.

        The signal is stored. It wakes each ``wait_for_event`` on ``event``
        (with a matching ``correlationKey``, when the wait has one) in every
        run created before it, whether the run waits already or gets there
        later; each run consumes it once. Returns the signal's id, a
        :class:`SignalSent` (an ``int``) whose ``woke`` counts the runs that were
        waiting for it then (``message()`` says so in a sentence).
        """
        sent = self.store.signals.send_signal(event, payload, correlation_key, idempotency_key)
        self.worker.wake()
        return sent

    def approve(
        self,
        run_id: str,
        block_id: str,
        approved: bool = True,
        *,
        by: str | None = None,
        comment: str | None = None,
    ) -> SignalSent:
        """Answer a ``human_approval`` step (``woke`` is 1 when it was waiting).

        Its output becomes ``{approved, by, note, comment, timedOut: false}``;
        ``note`` (the seed's name) is ``comment``. ``run_id`` may be shortened
        (see :meth:`get_handle`).
        """
        return self.signal(
            f"human_approval:{self.resolve_run_id(run_id)}:{block_id}",
            {"approved": approved, "by": by, "comment": comment},
        )


def _instant(when: datetime | str | float | None) -> float | None:
    """UNIX seconds from a datetime (naive = local time), an ISO string or a number."""
    try:
        return instant(when)
    except ValueError:
        raise ScheduleInvalid("until", when, "is not an ISO date-time.") from None


def _deadline(deadline: float | timedelta | datetime | None) -> float | None:
    if deadline is None or isinstance(deadline, datetime | timedelta):
        return instant(deadline)
    return time.time() + float(deadline)


def create_wfkit(
    db: str | None = None,
    *,
    namespace: str | None = None,
    catalog: Catalog | None = None,
    env: Mapping[str, str] | None = None,
    concurrency: int = 8,
    lease_s: float = 30.0,
    poll_s: float = 1.0,
    listen: bool = True,
    sqlite_sync: str = "FULL",
    artifacts: str | os.PathLike[str] | ArtifactStore | None = None,
) -> Wfkit:
    """Open (and migrate) the database and return a kit; call ``start()`` to run work.

    Args:
        db: A SQLAlchemy URL (``sqlite:///runs.db``, ``postgresql+psycopg://…``) or
            a file path. Default: ``THODARE_DB``, else a SQLite file in the user data dir.
        namespace: Tenant name (``THODARE_NAMESPACE``, default ``"default"``).
        catalog: Connectors (builtins by default; add with :meth:`Wfkit.register`).
        env: Values for ``{{env.X}}`` (default: the process environment; never stored).
        concurrency: Runs the worker walks at once.
        lease_s: Seconds before a silent worker's runs are taken over.
        poll_s: Longest pause between looks at the database.
        listen: PostgreSQL: also wake on LISTEN/NOTIFY (instant pick-up of runs and
            signals from other processes); polling stays as the fallback.
        sqlite_sync: SQLite ``synchronous`` pragma (``FULL`` survives power loss;
            ``NORMAL`` is faster and survives process crashes).
        artifacts: Where ``Table``/``File`` outputs and outputs over 256 KiB of JSON
            are stored: a folder or any fsspec URL (``s3://bucket/prefix``). Default
            (``THODARE_ARTIFACTS``, else): a folder beside the SQLite file
            (``runs.db.artifacts``); for PostgreSQL a folder in the user data dir,
            which workers on other machines cannot read (the kit logs so once).

    Raises:
        BackendUnavailable: The database cannot be opened (the message says why).
    """
    url = _db_url(db) if db else default_db_url()
    ns = namespace or os.environ.get("THODARE_NAMESPACE") or "default"
    store = Store(url, ns, sqlite_sync=sqlite_sync)
    config = WorkerConfig(concurrency=concurrency, lease_s=lease_s, poll_s=poll_s, listen=listen)
    given = artifacts if artifacts is not None else os.environ.get("THODARE_ARTIFACTS") or None
    store_ = given if isinstance(given, ArtifactStore) else ArtifactStore(given) if given else None
    kit = Wfkit(store, catalog if catalog is not None else Catalog(), env, config, store_)
    if store_ is None and not store.is_sqlite:
        _machine_local(kit)
    return kit


_WARNED: set[str] = set()


def _machine_local(kit: Wfkit) -> None:
    """Say once per database that its default artifact store is a folder on this machine."""
    key = safe_url(kit.store.url)
    if key not in _WARNED:
        _WARNED.add(key)
        log.warning(
            "Artifacts (tables, files, big outputs) of %s go to %s, a folder on this machine: "
            "workers on other machines cannot read them. Pass create_wfkit(artifacts='s3://...') "
            "(any fsspec URL) or set THODARE_ARTIFACTS when workers run on several machines.",
            key, kit.artifacts.url,
        )  # fmt: skip
