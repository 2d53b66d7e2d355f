"""Run handles: follow, describe, wait for and cancel one durable run, from any process."""

from __future__ import annotations

import html
import time
from collections import Counter
from typing import TYPE_CHECKING, Any, cast

from pydantic import BaseModel, Field

from ..clock import from_iso, to_iso
from ..connectors.child import RUN_WORKFLOW
from ..connectors.payload import typed_output
from ..errors import RunCanceled, RunFailed, RunNotFound, RunTimeout, StepOutputMissing
from ..step_logs import LogLine
from ..wire import TERMINAL_STATUSES, RunStatus, SerializedWorkflow
from .records import ChildRunInfo, RunRow, StepRow, WorkerRow
from .store import Store

if TYPE_CHECKING:
    from .worker import Worker


_RECHECK_S = 5.0
"""A handle waiting for an announced end reads the run at least this often anyway."""


class StepDescription(BaseModel):
    """One step of a durable run as stored."""

    block_id: str
    type: str
    status: str
    attempt: int
    started_at: str | None
    ended_at: str | None
    output: Any = None
    error: str | None = None
    waiting_for: str | None = None
    """The event a waiting step waits for."""
    waiting_key: str | None = None
    """Its correlation key, resolved (a waiting ``wait_for_event`` with one)."""
    params: dict[str, Any] | None = None
    """The params its last attempt ran with, resolved; hidden and env values ``***``."""


class RunDescription(BaseModel):
    """A durable run's status, timestamps and steps."""

    id: str
    workflow: str | None
    status: RunStatus
    created_at: str
    started_at: str | None
    ended_at: str | None
    error: str | None
    failed_block: str | None
    steps: list[StepDescription]
    outputs: dict[str, Any] | None = None
    input: Any = None
    idempotency_key: str | None = None
    missing_connectors: list[str] | None = None
    """For a pending run that live workers cannot take: the connector types it lacks
    (the fewest any live worker lacks). None while some live worker can, or none is alive."""
    parent_run_id: str | None = None
    """For a child run (``run_workflow``): the run that started it."""
    parent_block_id: str | None = None
    """For a child run: the parent's block that started it."""
    forked_from: str | None = None
    """For a fork (``kit.fork``): the run whose completed steps it reused."""
    children: list[ChildRunInfo] = Field(default_factory=list)
    """The child runs its ``run_workflow`` steps started (:meth:`RunHandle.describe` only)."""


class WorkerInfo(BaseModel):
    """A live worker: where it runs, what it can run, what it holds."""

    id: str
    kind: str
    namespace: str
    connector_types: list[str]
    concurrency: int
    runs_held: int
    started_at: str
    last_heartbeat: str


def describe_worker(row: WorkerRow, namespace: str) -> WorkerInfo:
    """A :class:`WorkerInfo` from its stored row."""
    return WorkerInfo(
        id=row.id, kind=row.kind, namespace=namespace, connector_types=row.connector_types,
        concurrency=row.concurrency, runs_held=row.runs_held,
        started_at=to_iso(row.started_at) or "", last_heartbeat=to_iso(row.heartbeat_at) or "",
    )  # fmt: skip


_COLOURS: dict[RunStatus, str] = {
    "completed": "#2e7d32", "failed": "#c62828", "running": "#1565c0",
    "waiting": "#b26a00", "pending": "#616161", "canceled": "#424242",
}  # fmt: skip


class RunList(list[RunDescription]):
    """Runs, newest first; a notebook shows them as a table."""

    def __repr__(self) -> str:
        counts = Counter(r.status for r in self)
        parts = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        return f"<{len(self)} run{'' if len(self) == 1 else 's'}: {parts or 'none'}>"

    def _repr_html_(self) -> str:
        if not self:
            return "<p>No runs yet.</p>"
        rows = []
        for r in self:
            took = ""
            if r.started_at and r.ended_at:
                took = f"{from_iso(r.ended_at) - from_iso(r.started_at):.2f}s"
            rows.append(
                f"<tr><td><code>{r.id[:12]}</code></td><td>{html.escape(r.workflow or '-')}</td>"
                f"<td style='color:{_COLOURS.get(r.status, '#616161')};font-weight:600'>"
                f"{r.status}</td><td>{r.created_at[:19].replace('T', ' ')}</td><td>{took}</td>"
                f"<td>{html.escape(r.failed_block or '')}</td>"
                f"<td>{html.escape((r.error or '')[:120])}</td></tr>"
            )
        titles = ("run", "workflow", "status", "created", "took", "failed at", "error")
        head = "".join(f"<th>{t}</th>" for t in titles)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def describe_run(row: RunRow, step_rows: list[StepRow]) -> RunDescription:
    """A :class:`RunDescription` from stored rows."""
    return RunDescription(
        id=row.id, workflow=row.workflow_name, status=row.status,
        created_at=to_iso(row.created_at), started_at=to_iso(row.started_at),
        ended_at=to_iso(row.ended_at), error=row.error, failed_block=row.failed_block,
        outputs=row.outputs, input=row.input, idempotency_key=row.idempotency_key,
        parent_run_id=row.parent_run_id, parent_block_id=row.parent_block_id,
        forked_from=row.forked_from,
        steps=[StepDescription(
            block_id=s.block_id, type=s.type, status=s.status, attempt=s.attempt,
            started_at=to_iso(s.started_at), ended_at=to_iso(s.ended_at), output=s.output,
            error=s.error, waiting_for=s.wait_event if s.status == "waiting" else None,
            waiting_key=s.wait_key if s.status == "waiting" else None, params=s.params,
        ) for s in step_rows],
    )  # fmt: skip


class RunHandle:
    """A durable run by id. Works in any process that can reach the database."""

    def __init__(
        self,
        store: Store,
        run_id: str,
        worker: Worker | None = None,
        poll_s: float = 0.05,
        *,
        created: bool = False,
        workflow: SerializedWorkflow | None = None,
    ) -> None:
        self.store, self.id, self._worker, self._poll_s = store, run_id, worker, poll_s
        self._created = created  # just created here: result() need not read it before a walk
        self._workflow = workflow  # its blocks' types: typed outputs without reading the run
        self._workflow_json: str | None = None

    def __repr__(self) -> str:
        return f"<RunHandle {self.id} {self.status}>"

    def _row(self) -> RunRow:
        row = self.store.runs.get_run(self.id)
        if self._worker is not None:
            self._worker.lifecycle.run_read(self.id, row)
        if row is None:
            raise RunNotFound(self.id, self.store.namespace)
        return row

    @property
    def status(self) -> RunStatus:
        """pending, running, waiting, completed, failed or canceled."""
        return cast(RunStatus, self._row().status)  # drop once RunRow.status is a RunStatus

    @property
    def workflow_json(self) -> str:
        """The workflow the run is pinned to (JSON), as last read (else read now)."""
        if self._workflow_json is None:
            self._workflow_json = self._row().workflow_json
        return self._workflow_json

    def describe(self) -> RunDescription:
        """Status, timestamps, every step's attempts, output and error; for a run no
        live worker can take, the connector types it lacks."""
        row = self._row()
        self._workflow_json = row.workflow_json
        desc = describe_run(row, self.store.runs.get_steps(self.id))
        if any(s.type == RUN_WORKFLOW for s in desc.steps):
            desc.children = self.store.children.children(self.id)
        if row.status == "pending":
            desc.missing_connectors = self._missing(row)
        return desc

    def _missing(self, row: RunRow) -> list[str] | None:
        needs = set(row.needs or ())
        lacks: list[set[str]] = [
            needs - set(w.connector_types) for w in self.store.workers.list_workers()
        ]
        if not lacks or any(not lack for lack in lacks):
            return None
        fewest = min(lacks, key=len)
        return sorted(fewest)

    def result(self, timeout: float | None = None) -> dict[str, Any]:
        """Wait for the run to end; its outputs by block id, with their models' types.

        Each output is a dict as stored, except that a ``Table`` field is a
        DataFrame (loaded from the artifact store, in the flavor it was written
        in), a ``File`` field bytes, and a field typed ``datetime``, ``Decimal``,
        ... that type (see :meth:`output`). No time cap by default: durable runs
        may wait for days.

        Raises:
            RunFailed: The run failed (``block_id`` and ``error`` say where and why).
            RunCanceled: The run was canceled.
            RunTimeout: ``timeout`` seconds passed first; the run goes on.
            ArtifactMissing: A table or file of an output is gone from the artifact
                store (the run itself completed; :meth:`describe` shows the references).
        """
        end = None if timeout is None else time.monotonic() + timeout
        delay = 0.005
        local = self._worker if self._worker is not None and self._worker.running else None
        ends = self.store.run_ends if local is None else None  # PostgreSQL: no polling
        while True:
            seen = local.ended_count if local is not None else 0
            heard = ends.mark(self.id) if ends is not None else None
            ended = local.outcome(self.id) if local is not None else None
            if ended is not None:  # this process walked it to its end: no read needed
                status, outputs, error, failed_block = ended
                break
            if self._created and local is not None:  # still pending: wait for a walk first
                self._created = False
                local.wait_walk_end(seen, 0.5 if end is None else min(0.5, timeout or 0.0), self.id)
                continue
            row = self._row()
            if row.status in TERMINAL_STATUSES:
                self._workflow_json = row.workflow_json
                status, outputs, error, failed_block = (
                    row.status,
                    row.outputs,
                    row.error,
                    row.failed_block,
                )
                break
            left = None if end is None else end - time.monotonic()
            if left is not None and left <= 0:
                missing = self._missing(row) if row.status == "pending" else None
                raise RunTimeout(self.id, timeout or 0.0, row.status, missing)
            if local is not None:  # woken when a walk here ends
                local.wait_walk_end(seen, min(0.5, left) if left is not None else 0.5, self.id)
            elif ends is not None and heard is not None:  # woken when the end is announced
                wait = min(_RECHECK_S, left) if left is not None else _RECHECK_S
                ends.wait(self.id, heard, wait)
            else:  # SQLite, another process: poll
                time.sleep(min(delay, left) if left is not None else delay)
                delay = min(self._poll_s, delay * 2)
        if status == "failed":
            raise RunFailed(self.id, failed_block, error or "unknown error")
        if status == "canceled":
            raise RunCanceled(self.id)
        return self._typed(outputs or {})

    def output(self, block_id: str) -> Any:
        """One step's output loaded into this process with its model's types.

        ``Table`` fields come back as DataFrames (pandas, or the polars/pyarrow
        flavor they were written in), ``File`` fields as bytes, ``datetime`` and
        ``Decimal`` fields as such; an output stored by reference (over 256 KiB
        of JSON) is loaded. Needs the kit's artifact store (handles from
        :meth:`Wfkit.get_handle` have it).

        Raises:
            StepOutputMissing: The step has not completed (yet) in this run.
            ArtifactMissing: An artifact it references is gone from the store.
        """
        self._workflow_json = self._row().workflow_json
        for step in self.store.runs.get_steps(self.id):
            if step.block_id == block_id and step.status == "completed":
                return self._typed({block_id: step.output})[block_id]
        steps = {s.block_id: s.status for s in self.store.runs.get_steps(self.id)}
        raise StepOutputMissing(self.id, block_id, steps.get(block_id), steps)

    def _typed(self, outputs: dict[str, Any]) -> dict[str, Any]:
        worker = self._worker
        if worker is None or not outputs:
            return outputs
        if self._workflow is None:  # a handle from get_handle: the run's pinned workflow
            pinned = self.workflow_json
            self._workflow = SerializedWorkflow.from_json(pinned)
        types = {b.id: b.type for b in self._workflow.blocks}
        catalog, store = worker.catalog, worker.artifacts
        return {
            bid: typed_output(catalog.find(types.get(bid, "")), out, store)
            for bid, out in outputs.items()
        }

    def logs(self, block_id: str | None = None) -> list[LogLine]:
        """What the run's steps (or block ``block_id``; a ``for_each`` block: its items,
        ``block_id[i]``) printed, logged or wrote with ``ctx.log``, line by line with
        time, stream, block and attempt; masked like errors and capped per attempt. An
        attempt's lines are stored when it ends.

        Raises:
            RunNotFound: No such run in this database and namespace.
        """
        lines = self.store.logs.lines(self.id, block_id)
        if not lines:
            self._row()  # an unknown run is an error, a quiet one an empty list
        return lines

    def cancel(self) -> bool:
        """Cancel the run (also while it waits) and its unfinished child runs (of
        ``run_workflow`` steps, recursively); False when it had already ended."""
        done = self.store.runs.cancel_tree(self.id)
        if self._worker is not None:
            for run_id in done:
                self._worker.lifecycle.run_canceled(run_id)
                self._worker.abort(run_id)
        return bool(done)
