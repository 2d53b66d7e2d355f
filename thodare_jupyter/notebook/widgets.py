"""The DAG widget (anywidget): a workflow drawn left to right, coloured by a run's live status.

``DagView(workflow)`` draws a definition; ``DagView(workflow, kit, run_id)``
follows a run: a thread reads the run every ``POLL_S`` and pushes the step
statuses and timings to the front end (the nodes' colours, a table of steps) and
each ``for_each`` step's progress (``k/N`` items, how many failed).
Clicking a node shows its params (hidden ones masked) and, for a run, the
values they resolved to (hidden and env values masked), its attempts and
timing, its output or error and its logs (what its attempts printed or logged, masked,
as each attempt ended): a table stored by reference as its row and column
counts, column types and first rows; a file as its name, size and a download link
(the server extension's artifacts route). A waiting ``human_approval``
offers Approve/Reject with a comment (recorded as the Jupyter user the page
names, else :func:`kernel_user`); a waiting ``wait_for_event`` a payload form
with the resolved correlation key prefilled (the notice says how many runs the
event woke); a ``run_workflow`` step names its child run and the child's status; any
node offers "Re-run from here" (:meth:`Wfkit.fork`). Every display also carries
an ``image/svg+xml`` picture, so the DAG shows in nbconvert, on GitHub and under nbval.
"""

from __future__ import annotations

import dataclasses
import getpass
import json
import os
import threading
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from ..drawing.layout import layout
from ..drawing.palette import STATUS_STYLE
from ..drawing.progress import Progress, for_each_progress
from ..drawing.svg import render_svg, run_statuses, step_status
from ..durable.handle import RunDescription
from ..kit import Wfkit
from ..wire import TERMINAL_STATUSES, SerializedWorkflow

POLL_S = 0.2
"""How often a followed run is read (the widget changes within this of the worker)."""
MASK = "••••••"
LOG_LINES = 500
"""A node's details show at most this many of its step's last log lines."""


def kernel_user() -> str:
    """Who answers an approval when the page did not say: ``JUPYTERHUB_USER``, else the
    OS user the kernel runs as."""
    try:
        return os.environ.get("JUPYTERHUB_USER") or getpass.getuser()
    except OSError:  # no user name for this uid (a bare container)
        return "notebook"


class DagView(anywidget.AnyWidget):
    """A workflow's DAG; with ``kit`` and ``run_id``, the live view of that run."""

    _esm = Path(__file__).with_name("dag.js")
    _css = Path(__file__).with_name("dag.css")
    graph = traitlets.Dict().tag(sync=True)
    palette = traitlets.Dict(STATUS_STYLE).tag(sync=True)
    statuses = traitlets.Dict().tag(sync=True)
    progress = traitlets.Dict().tag(sync=True)
    """By block id of the ``for_each`` steps: ``{"ended", "total", "failed"}`` items."""
    selected = traitlets.Unicode("").tag(sync=True)
    details = traitlets.Dict().tag(sync=True)
    run = traitlets.Dict().tag(sync=True)
    notice = traitlets.Unicode("").tag(sync=True)
    picture = traitlets.Unicode("").tag(sync=True)
    """The static SVG of what the widget shows now: the front end keeps it in the output,
    so a saved notebook shows the run's last state where no widget runs."""

    def __init__(
        self, workflow: SerializedWorkflow, kit: Wfkit | None = None, run_id: str | None = None
    ) -> None:
        super().__init__(graph=layout(workflow).to_dict())
        self.workflow, self.kit, self.run_id = workflow, kit, run_id
        self._follower: threading.Thread | None = None
        self.observe(self._on_select, names="selected")
        self.on_msg(self._on_action)
        if kit is not None and run_id is not None:
            self.refresh()
            self._follow()

    def __repr__(self) -> str:
        what = f"run {self.run.get('status', '?')}" if self.run_id else "definition"
        name = self.workflow.name or "workflow"
        return f"<DagView {name}: {len(self.workflow.blocks)} blocks, {what}>"

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        """The widget view, its SVG picture (nbconvert, GitHub, nbval, a reopened
        notebook) and the stable repr; metadata ``thodare`` marks it as ours for the lab
        extension (``run_id``, None for a definition: what Reattach displays again)."""
        bundle = super()._repr_mimebundle_(**kwargs)
        data: dict[str, Any] = (bundle[0] if isinstance(bundle, tuple) else bundle) or {}
        data["image/svg+xml"] = self._picture()
        data["text/plain"] = repr(self)
        metadata = dict(bundle[1]) if isinstance(bundle, tuple) else {}
        metadata["thodare"] = {"run_id": self.run_id, "workflow": self.workflow.name}
        return data, metadata

    def _picture(self) -> str:
        progress = {k: Progress(**p) for k, p in self.progress.items()}
        return render_svg(self.workflow, self.statuses or None, progress=progress)

    # ── following a run ──

    def refresh(self) -> None:
        """Read the run once and push what changed to the front end."""
        if self.kit is None or self.run_id is None:
            return
        run = self.kit.get_handle(self.run_id).describe()
        steps: list[dict[str, Any]] = [
            {"block_id": s.block_id, "type": s.type, "status": step_status(run.status, s.status),
             "attempt": s.attempt,
             "started_at": s.started_at, "ended_at": s.ended_at, "error": s.error,
             "waiting_for": s.waiting_for}
            for s in run.steps
            if "[" not in s.block_id  # one row per item of a for_each step: shown as k/N
        ]  # fmt: skip
        summary = {"id": run.id, "status": run.status, "error": run.error,
                   "failed_block": run.failed_block, "steps": steps}  # fmt: skip
        statuses = run_statuses(
            self.workflow, run.status, {s["block_id"]: s["status"] for s in steps}
        )
        if summary != self.run:
            self.run = summary
        progress = {k: p.to_dict() for k, p in for_each_progress(self.workflow, run.steps).items()}
        if statuses != self.statuses or progress != self.progress or not self.picture:
            self.statuses, self.progress = statuses, progress
            self.picture = self._picture()  # drawn again only when what it shows changed
        if self.selected:
            self._on_select({"new": self.selected}, run)

    def _follow(self) -> None:
        def loop() -> None:
            stop = threading.Event()
            while not stop.wait(POLL_S):
                try:
                    self.refresh()
                except Exception:  # the kit was closed, the kernel is going away
                    return
                if self.run.get("status") in TERMINAL_STATUSES:
                    return

        self._follower = threading.Thread(target=loop, name="thodare-dag-follow", daemon=True)
        self._follower.start()

    # ── clicks and actions ──

    def _on_select(self, change: dict[str, Any], run: RunDescription | None = None) -> None:
        """Show the details of the block ``change["new"]`` names (``run``: the run as just
        read by :meth:`refresh`, else it is read here)."""
        block = next((b for b in self.workflow.blocks if b.id == change["new"]), None)
        if block is None:
            self.details = {}
            return
        hidden: frozenset[str] = frozenset()
        if self.kit is not None and (conn := self.kit.catalog.find(block.type)) is not None:
            hidden = conn.hidden_params
        params = {k: (MASK if k in hidden else v) for k, v in block.params.items()}
        details: dict[str, Any] = {"id": block.id, "type": block.type, "params": params}
        step = next((s for s in self.run.get("steps", []) if s["block_id"] == block.id), None)
        if step is not None and self.kit is not None and self.run_id is not None:
            run = run or self.kit.get_handle(self.run_id).describe()
            found = next((s for s in run.steps if s.block_id == block.id), None)
            output = json.loads(json.dumps(found.output, default=str)) if found else None
            details.update(status=step["status"], error=step["error"],
                           waiting_for=step["waiting_for"], output=output,
                           logs=self._logs(block.id))  # fmt: skip
            if found is not None:
                details.update(resolved=found.params, waiting_key=found.waiting_key,
                               attempt=found.attempt, started_at=found.started_at,
                               ended_at=found.ended_at)  # fmt: skip
            child = next((c for c in run.children if c.block_id == block.id), None)
            if child is not None:  # a run_workflow step: the child run it started
                details["child"] = dataclasses.asdict(child)
        self.details = details

    def _logs(self, block_id: str) -> list[dict[str, Any]]:
        """The step's last :data:`LOG_LINES` log lines (a ``for_each`` step's: its items',
        ``block_id`` ``each[i]``), as its attempts ended (masked)."""
        assert self.kit is not None and self.run_id is not None
        lines = self.kit.get_handle(self.run_id).logs(block_id)[-LOG_LINES:]
        return [{"block_id": ln.block_id, "attempt": ln.attempt, "stream": ln.stream,
                 "text": ln.text} for ln in lines]  # fmt: skip

    def _on_action(self, _widget: Any, content: dict[str, Any], _buffers: Any) -> None:
        if self.kit is None or self.run_id is None:
            return
        kind, block = content.get("kind"), str(content.get("block", ""))
        try:
            if kind == "approve":
                by = str(content.get("by") or "") or kernel_user()
                sent = self.kit.approve(self.run_id, block, bool(content.get("approved")),
                                        comment=content.get("comment") or None, by=by)  # fmt: skip
                done = "Approved" if content.get("approved") else "Rejected"
                late = "." if sent.woke else " (the step was not waiting)."
                self.notice = f"{done} {block} as {by}{late}"
            elif kind == "event":
                self.notice = self._send_event(block, content)
            elif kind == "fork":
                handle = self.kit.fork(self.run_id, block)
                self.run_id = handle.id
                self.notice = f"Re-running from {block}: run {handle.id}."
                self._follow()
        except Exception as e:  # shown in the widget: the user can fix and retry
            self.notice = f"{type(e).__name__}: {e}"
        self.refresh()

    def _send_event(self, block: str, content: dict[str, Any]) -> str:
        """Send the event ``block`` waits for (its key: as typed, else the step's resolved
        one); the notice: how many runs it woke."""
        assert self.kit is not None and self.run_id is not None
        step = next((s for s in self.kit.get_handle(self.run_id).describe().steps
                     if s.block_id == block), None)  # fmt: skip
        if step is None or step.status != "waiting" or not step.waiting_for:
            return f"{block} is not waiting for an event now."
        try:
            payload = json.loads(content.get("payload") or "null")
        except json.JSONDecodeError as e:
            return f"The payload is not JSON: {e.msg} at line {e.lineno}, column {e.colno}."
        key = content.get("key")
        key = step.waiting_key if key is None else (str(key) or None)
        sent = self.kit.signal(step.waiting_for, payload, correlation_key=key)
        runs = f"{sent.woke} run{'' if sent.woke == 1 else 's'}"
        return f"Sent {step.waiting_for!r}" + (f" (key {key!r})" if key else "") + f": woke {runs}."
