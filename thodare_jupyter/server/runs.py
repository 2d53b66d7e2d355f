"""Blocking reads and writes on the runs database, for the REST handlers.

One kit per server, created on first use (never started: the server runs no
workflow, it only reads runs, cancels them and stores signals).
"""

from __future__ import annotations

import threading
from typing import Any

from ..clock import to_iso
from ..drawing.progress import for_each_progress
from ..drawing.svg import render_svg, run_statuses
from ..durable.handle import StepDescription
from ..durable.info import database_info
from ..errors import RunNotFound
from ..kit import Wfkit, create_wfkit
from ..redaction import MASK
from ..wire import RunStatus, SerializedWorkflow
from .downloads import Download, Format, Found, NotInRun, download, find_ref
from .live import Watcher

MAX_LIST_ERROR = 300
"""A list row's error is cut to this many characters (the run route has all of it)."""


class NotWaiting(Exception):
    """The step named is not waiting for what was sent (an approval, an event): 409."""

    def __init__(self, run_id: str, block_id: str, status: str | None, what: str) -> None:
        now = "no such step" if status is None else f"it is {status}"
        super().__init__(f"Step {block_id!r} of run {run_id} is not waiting for {what} ({now}).")


class Runs:
    """The kit behind the routes: runs listed, described, canceled, drawn; signals sent."""

    def __init__(
        self, db_url: str | None, namespace: str | None, artifacts_url: str | None = None
    ) -> None:
        self._db_url, self._namespace, self._artifacts_url = db_url, namespace, artifacts_url
        self._kit: Wfkit | None = None
        self._watcher: Watcher | None = None
        self._lock = threading.Lock()

    @property
    def kit(self) -> Wfkit:
        """The kit, opened (and the database migrated) on first use."""
        with self._lock:
            if self._kit is None:
                self._kit = create_wfkit(
                    self._db_url, namespace=self._namespace, artifacts=self._artifacts_url
                )
            return self._kit

    @property
    def watcher(self) -> Watcher:
        """The database's change watcher, started on first use (by an event stream)."""
        kit = self.kit
        with self._lock:
            if self._watcher is None:
                self._watcher = Watcher(kit.store)
            return self._watcher

    def close(self) -> None:
        """Stop watching; release the database connections."""
        with self._lock:
            if self._watcher is not None:
                self._watcher.close()
                self._watcher = None
            if self._kit is not None:
                self._kit.close()
                self._kit = None

    def info(self) -> dict[str, Any]:
        """Which database this is (URL with the password masked), runs by status, workers."""
        return database_info(self.kit.store).to_dict()

    def recent(
        self,
        status: RunStatus | None,
        limit: int,
        workflow: str | None = None,
        after: float | None = None,
        before: float | None = None,
    ) -> list[dict[str, Any]]:
        """Recent runs, newest first, as small rows: no input, outputs or steps (the run
        route has them), the error cut short; ``forked``: how many steps a fork reused,
        ``forked_from``: the run it reused them from."""
        rows = self.kit.store.runs.list_light(
            limit, status=status, workflow=workflow, after=after, before=before
        )
        return [
            {"id": r["id"], "workflow": r["workflow_name"], "status": r["status"],
             "created_at": to_iso(r["created_at"]), "started_at": to_iso(r["started_at"]),
             "ended_at": to_iso(r["ended_at"]), "error": _cut(r["error"]),
             "failed_block": r["failed_block"], "parent_run_id": r["parent_run_id"],
             "parent_block_id": r["parent_block_id"], "forked": r["reused"],
             "forked_from": r["forked_from"]}
            for r in rows
        ]  # fmt: skip

    def resolve(self, run_id: str) -> str:
        """The full id a (shortened) run id names; raises RunIdAmbiguous, RunIdTooShort,
        RunNotFound."""
        return self.kit.resolve_run_id(run_id)

    def describe(self, run_id: str) -> dict[str, Any]:
        """One run with its steps (a ``for_each`` step's items too, ``block[i]``),
        ``progress``: ``{"ended", "total", "failed"}`` items by ``for_each`` block id, and
        ``templates``: each block's params as written (hidden ones masked).
        Raises :class:`RunNotFound`."""
        run_id = self.resolve(run_id)
        kit = self.kit
        handle = kit.get_handle(run_id)
        run = handle.describe()
        wf = SerializedWorkflow.from_json(handle.workflow_json)
        progress = for_each_progress(wf, run.steps)
        masked = {s.block_id: {k for k, v in (s.params or {}).items() if v == MASK}
                  for s in run.steps}  # fmt: skip
        templates = {}
        for b in wf.blocks:
            conn = kit.catalog.find(b.type)
            hidden = masked.get(b.id, set()) | (conn.hidden_params if conn else frozenset())
            templates[b.id] = {k: MASK if k in hidden else v for k, v in b.params.items()}
        return {
            **run.model_dump(mode="json"),
            "progress": {k: p.to_dict() for k, p in progress.items()},
            "templates": templates,
        }

    def logs(self, run_id: str, block_id: str | None) -> list[dict[str, Any]]:
        """The run's log lines (of one block), masked; raises :class:`RunNotFound`."""
        run_id = self.resolve(run_id)
        return [
            {"at": to_iso(ln.at), "stream": ln.stream, "block_id": ln.block_id,
             "attempt": ln.attempt, "text": ln.text}
            for ln in self.kit.get_handle(run_id).logs(block_id)
        ]  # fmt: skip

    def workers(self) -> list[dict[str, Any]]:
        """Live workers on this database and namespace."""
        return [w.model_dump(mode="json") for w in self.kit.workers()]

    def cancel(self, run_id: str) -> dict[str, Any]:
        """Cancel a run; ``canceled`` is False when it had already ended."""
        run_id = self.resolve(run_id)
        handle = self.kit.get_handle(run_id)
        handle.status  # noqa: B018 (raises RunNotFound for an unknown id)
        done = handle.cancel()
        return {"id": run_id, "canceled": done, "status": handle.status}

    def signal(self, event: str, payload: Any, correlation_key: str | None) -> dict[str, Any]:
        """Store a signal for every run waiting for ``event``: its id and the runs it woke."""
        sent = self.kit.signal(event, payload, correlation_key=correlation_key)
        return {"signal_id": sent.id, "woke": sent.woke, "message": sent.message()}

    def _waiting(self, run_id: str, block_id: str, approval: bool) -> StepDescription:
        """The step ``block_id`` of the run, waiting for an approval (or an event)."""
        found = next(
            (s for s in self.kit.get_handle(run_id).describe().steps if s.block_id == block_id),
            None,
        )
        what = "an approval" if approval else "an event"
        if (
            found is None
            or found.status != "waiting"
            or not found.waiting_for
            or (found.type == "human_approval") != approval
        ):
            raise NotWaiting(run_id, block_id, found.status if found else None, what)
        return found

    def approve(
        self, run_id: str, block_id: str, approved: bool, comment: str | None, by: str
    ) -> dict[str, Any]:
        """Answer the waiting ``human_approval`` step ``block_id`` as ``by``."""
        run_id = self.resolve(run_id)
        self._waiting(run_id, block_id, approval=True)
        sent = self.kit.approve(run_id, block_id, approved, by=by, comment=comment)
        return {"signal_id": sent.id, "woke": sent.woke, "by": by, "approved": approved}

    def send_event(
        self, run_id: str, block_id: str, payload: Any, correlation_key: str | None, keyed: bool
    ) -> dict[str, Any]:
        """Send the event the waiting ``wait_for_event`` step ``block_id`` waits for; its key
        is ``correlation_key`` when ``keyed``, else the one the step resolved."""
        run_id = self.resolve(run_id)
        step = self._waiting(run_id, block_id, approval=False)
        assert step.waiting_for is not None
        key = correlation_key if keyed else step.waiting_key
        sent = self.kit.signal(step.waiting_for, payload, correlation_key=key)
        return {"signal_id": sent.id, "woke": sent.woke, "event": step.waiting_for,
                "correlation_key": key, "message": sent.message()}  # fmt: skip

    def dag_svg(self, run_id: str) -> str:
        """The run's DAG, each block coloured by its step's status."""
        run_id = self.resolve(run_id)
        kit = self.kit
        row = kit.store.runs.get_run(run_id)
        if row is None:
            raise RunNotFound(run_id, kit.store.namespace)
        wf = SerializedWorkflow.from_json(row.workflow_json)
        rows = kit.store.runs.get_steps(run_id)
        statuses = run_statuses(wf, row.status, {s.block_id: s.status for s in rows})
        title = f"{wf.name or 'run'} · {row.status}"
        return render_svg(wf, statuses, title=title, progress=for_each_progress(wf, rows))

    def artifact(self, run_id: str, artifact_id: str) -> Found:
        """The reference to ``artifact_id`` in the run's step rows.

        Raises:
            RunNotFound: No such run in this namespace.
            NotInRun: None of the run's steps references that artifact.
        """
        run_id = self.resolve(run_id)
        store = self.kit.store.runs
        if store.get_run(run_id) is None:
            raise RunNotFound(run_id, self.kit.store.namespace)
        found = find_ref([(s.block_id, s.output) for s in store.get_steps(run_id)], artifact_id)
        if found is None:
            raise NotInRun(run_id, artifact_id)
        return found

    def download(self, found: Found, fmt: Format | None) -> Download:
        """The bytes of a referenced artifact from the kit's artifact store."""
        return download(self.kit.artifacts, found, fmt)


def _cut(error: str | None) -> str | None:
    """A list row's error: its first :data:`MAX_LIST_ERROR` characters."""
    return error if error is None or len(error) <= MAX_LIST_ERROR else error[:MAX_LIST_ERROR] + "…"
