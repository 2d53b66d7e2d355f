"""The notebook's authoring session: workflows defined in cells, their versions, proposals.

One object holds what the magics, the proposal widget and the lab panel's comm
share: the YAML each ``%%workflow`` cell was written in, the assistant's
pending proposals, and the front ends that can rewrite a cell in place.
Accepting a proposal rewrites the cell's YAML (comments kept), compiles it as
re-running the cell would, stores it as a new version and binds it.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from ..assistant import Assistant, Proposal
from ..assistant.loop import Progress
from ..authoring.workflow_yaml import workflow_from_yaml
from ..authoring.yaml_rewrite import rewrite_workflow_yaml, yaml_problems
from ..drawing.svg import render_svg
from ..durable.definitions import DefinitionVersion
from ..errors import (
    NoRunsYet,
    ProposalAlreadyDecided,
    ProposalNotApplied,
    ProposalOutdated,
    RunNotFound,
    WorkflowNotDefined,
)
from ..kit import Wfkit
from ..wire import SerializedWorkflow

RewriteCell = Callable[[str, str], None]
"""Asks a front end to replace the source of cell ``%%workflow NAME``: ``(name, source)``."""


def python_name(name: str) -> str:
    """The identifier a workflow is bound to: ``lead-notifier`` → ``lead_notifier``."""
    ident = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in name)
    return ident if ident and not ident[0].isdigit() else f"wf_{ident}"


def cell_source(name: str, yaml_text: str) -> str:
    """The whole ``%%workflow`` cell for ``yaml_text``."""
    return f"%%workflow {name}\n{yaml_text.rstrip()}\n"


@dataclass
class Pending:
    """A proposal waiting for Accept or Reject."""

    key: str
    name: str
    proposal: Proposal


class Session:
    """Workflows of one kernel: define, propose, accept, reject, undo."""

    def __init__(self, kit: Wfkit, user_ns: dict[str, Any]) -> None:
        self.kit, self.user_ns = kit, user_ns
        self.sources: dict[str, str] = {}
        """The YAML of each workflow's latest ``%%workflow`` cell."""
        self.pending: dict[str, Pending] = {}
        self.rewriters: list[RewriteCell] = []
        """Front ends that can rewrite a cell (the lab extension's comm)."""
        self.assistant = Assistant(kit=kit)
        self._lock = threading.Lock()
        self._rewritten: dict[str, bool | None] = {}
        self._answered = threading.Condition(self._lock)

    # ── definitions ──

    def define(self, name: str, yaml_text: str) -> SerializedWorkflow:
        """Compile a ``%%workflow`` cell, bind it and keep it as a version (when new)."""
        wf = self.kit.compile(workflow_from_yaml(name, yaml_text, self.kit.catalog, first_line=2))
        self._bind(name, wf, yaml_text)
        self.kit.save_version(wf, source=yaml_text)
        return wf

    def get(self, name: str) -> SerializedWorkflow:
        """Workflow ``name``: from a ``%%workflow`` cell, or a variable of that name holding
        one (built in Python); a clear error when there is none."""
        wf = self.kit.workflows.get(name)
        if wf is None and isinstance(found := self.user_ns.get(python_name(name)),
                                     SerializedWorkflow):  # fmt: skip
            wf = found
        if wf is None:
            raise WorkflowNotDefined(name, list(self.kit.workflows))
        return wf

    def _bind(self, name: str, wf: SerializedWorkflow, yaml_text: str | None) -> None:
        with self._lock:
            self.kit.workflows[name] = wf
            self.user_ns[python_name(name)] = wf
            if yaml_text is not None:
                self.sources[name] = yaml_text

    # ── the assistant ──

    def propose(
        self,
        name: str,
        ask: str,
        *,
        run_id: str | None = None,
        progress: Progress | None = None,
        allow_env: Collection[str] | None = None,
    ) -> Pending:
        """Ask the assistant to change workflow ``name``; the proposal waits for a decision.

        ``run_id`` (or ``"last"``: the newest run of this workflow) shows the model
        that run's statuses, outputs and error. ``allow_env``: env names the patch
        may start reading (default: ``THODARE_LLM_ALLOW_ENV``).
        """
        wf = self.get(name)
        run = None
        if run_id == "last":
            last = next((r for r in self.kit.runs(limit=200) if r.workflow == wf.name), None)
            if last is None:
                raise NoRunsYet(name)
            run_id = last.id
        if run_id:
            run = self.kit.get_handle(run_id)
            if self.kit.store.runs.get_run(run_id) is None:
                raise RunNotFound(
                    run_id,
                    self.kit.store.namespace,
                    f"No run {run_id!r} in this kit: see %workflow runs {name}.",
                )
        source = self.sources.get(name)

        def check(after: SerializedWorkflow) -> list[str]:
            return yaml_problems(name, source, after, self.kit.catalog) if source else []

        proposal = self.assistant.propose(
            wf, ask, self.kit.catalog, run=run, check=check, progress=progress,
            allow_env=allow_env,
        )  # fmt: skip
        pending = Pending(uuid.uuid4().hex[:12], name, proposal)
        with self._lock:
            self.pending[pending.key] = pending
        return pending

    def accept(self, key: str) -> DefinitionVersion:
        """Apply a proposal: rewrite the cell, compile, store a version, bind.

        Raises:
            ProposalAlreadyDecided: Unknown or already decided proposal.
            ProposalNotApplied: The proposal's patch did not apply.
            ProposalOutdated: The workflow changed since the proposal was made.
        """
        with self._lock:
            pending = self.pending.pop(key, None)
        if pending is None:
            raise ProposalAlreadyDecided(key)
        p, name = pending.proposal, pending.name
        if not p.applied:
            raise ProposalNotApplied(key, p.summary)
        if self.get(name).to_json() != p.before.to_json():  # never overwrite newer work
            raise ProposalOutdated(name)
        source = self.sources.get(name)
        if source is not None:
            source = rewrite_workflow_yaml(source, p.workflow)
            wf = self.kit.compile(workflow_from_yaml(name, source, self.kit.catalog, first_line=2))
        else:
            wf = self.kit.compile(p.workflow)
        self._bind(name, wf, source)
        version = self.kit.save_version(wf, source=source, origin="assistant", note=p.ask)
        if source is not None:
            self._rewrite(name, source)
        return version

    def reject(self, key: str) -> None:
        """Drop a proposal; nothing changes."""
        with self._lock:
            self.pending.pop(key, None)

    # ── history ──

    def undo(self, name: str) -> DefinitionVersion:
        """Go back one version: bind it and rewrite its cell (when it was written in YAML)."""
        self.get(name)
        version = self.kit.undo(name)
        source = version.source
        wf = (
            workflow_from_yaml(name, source, self.kit.catalog, first_line=2)
            if source is not None
            else version.workflow
        )
        self._bind(name, self.kit.compile(wf), source)
        if source is not None:
            self._rewrite(name, source)
        return version

    def _rewrite(self, name: str, yaml_text: str) -> None:
        with self._lock:
            self._rewritten[name] = None
        for rewrite in list(self.rewriters):
            rewrite(name, cell_source(name, yaml_text))

    def cell_rewritten(self, name: str, found: bool) -> None:
        """A front end's answer to a rewrite: did it find the ``%%workflow NAME`` cell?"""
        with self._answered:
            self._rewritten[name] = found or bool(self._rewritten.get(name))
            self._answered.notify_all()

    def wait_rewritten(self, name: str, timeout: float) -> bool | None:
        """Whether a front end rewrote the cell of ``name`` (None: no answer in ``timeout``)."""
        with self._answered:
            self._answered.wait_for(lambda: self._rewritten.get(name) is not None, timeout)
            return self._rewritten.get(name)


def proposal_view_data(pending: Pending) -> dict[str, Any]:
    """A proposal as the widget and the lab panel show it (JSON-ready, secrets out).

    ``env_refs``: the env names the patch's added blocks and changed params read;
    each front end shows one warning line per name.
    """
    p, d = pending.proposal, pending.proposal.diff
    before = {b.id: "unchanged" for b in p.before.blocks} | dict.fromkeys(d.changed, "changed")
    before |= dict.fromkeys(d.removed, "removed")
    after = {b.id: "unchanged" for b in p.workflow.blocks} | dict.fromkeys(d.changed, "changed")
    after |= dict.fromkeys(d.added, "added")
    return {
        "key": pending.key, "workflow": pending.name, "ask": p.ask,
        "ops": p.ops, "explanation": p.explanation,
        "applied": p.applied, "summary": p.summary, "attempts": p.attempts, "diff": d.text,
        "svg_before": render_svg(p.before, before, title="before"),
        "svg_after": render_svg(p.workflow, after, title="after"),
        "changed": [*d.added, *d.changed, *d.removed], "env_refs": p.env_refs,
    }  # fmt: skip
