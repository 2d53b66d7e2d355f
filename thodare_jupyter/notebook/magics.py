"""``%%workflow NAME`` (YAML → a checked workflow bound to NAME), ``%%assist NAME``, and
``%workflow list|show|runs|history|undo``."""

from __future__ import annotations

import html
import shlex
from dataclasses import replace
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.display import HTML

from ..assistant.loop import env_names
from ..durable.handle import RunList
from ..errors import AssistantError, ThodareError, WorkflowYamlError
from ..wire import SerializedWorkflow
from .session import Session

USAGE = (
    "%workflow list | %workflow show NAME | %workflow runs [NAME] | "
    "%workflow history NAME | %workflow undo NAME"
)
ASSIST_USAGE = (
    "Usage: %%assist NAME [--run RUN_ID|last] [--allow-env NAME,NAME], then your request in "
    "words. --allow-env lets the patch make blocks read those env values."
)


def located(cell: str, error: WorkflowYamlError) -> str:
    """The error's problems, each under the cell line it points at, with a caret."""
    lines = ["%%workflow", *cell.splitlines()]
    out = [f"{len(error.problems)} problem(s) in this %%workflow cell:"]
    for p in error.problems:
        out.append(f"\n{replace(p, choices=())}")  # the choices get a line of their own
        if 1 <= p.line <= len(lines):
            out.append(f"  {lines[p.line - 1]}")
            out.append("  " + " " * max(0, p.column - 1) + "^")
        if p.unlisted:
            out.append(f"  choices: {', '.join(p.choices)}")
    return "\n".join(out)


def _option(args: list[str], flag: str) -> str | None:
    """Remove ``flag VALUE`` from ``args``; the value, or None when the flag is absent."""
    if flag not in args:
        return None
    at = args.index(flag)
    if at + 1 >= len(args) or args[at + 1].startswith("--"):
        raise UsageError(f"{flag} needs a value. {ASSIST_USAGE}")
    value = args[at + 1]
    del args[at : at + 2]
    return value


def _table(head: list[str], rows: list[list[Any]]) -> Any:
    cells = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows
    )
    header = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    return HTML(f"<table><tr>{header}</tr>{cells}</table>")  # type: ignore[no-untyped-call]


@magics_class
class WorkflowMagics(Magics):
    """The workflow magics, bound to one notebook session."""

    def __init__(self, shell: Any, session: Session) -> None:
        super().__init__(shell)
        self.session = session
        self.kit = session.kit

    @cell_magic
    def workflow(self, line: str, cell: str) -> Any:
        """Declare a workflow in YAML; it is checked, bound to NAME, versioned and drawn."""
        name = line.strip()
        if not name or " " in name:
            raise UsageError("Usage: %%workflow NAME, then the workflow's YAML (DESIGN §6).")
        try:
            return self.session.define(name, cell)
        except WorkflowYamlError as e:
            raise UsageError(located(cell, e)) from None
        except ThodareError as e:
            raise UsageError(str(e)) from None

    @cell_magic
    def assist(self, line: str, cell: str) -> Any:
        """Ask the assistant to change workflow NAME; shows the proposal with Accept/Reject."""
        args = shlex.split(line)
        run_id, allow = _option(args, "--run"), _option(args, "--allow-env")
        if len(args) != 1 or not cell.strip():
            raise UsageError(ASSIST_USAGE)

        from .proposal import ProposalView  # anywidget: loaded on first use, not at %load_ext

        def progress(attempt: int, budget: int, what: str) -> None:
            print(f"{what} (attempt {attempt} of {budget})…", flush=True)

        try:
            pending = self.session.propose(
                args[0], cell.strip(), run_id=run_id, progress=progress,
                allow_env=env_names(allow) if allow is not None else None,
            )  # fmt: skip
        except AssistantError as e:
            raise UsageError(f"The assistant could not answer: {e}") from None
        except ThodareError as e:
            raise UsageError(str(e)) from None
        return ProposalView(pending, self.session)

    @line_magic("workflow")  # type: ignore[arg-type]
    def workflow_line(self, line: str) -> Any:
        """``list``, ``show NAME``, ``runs [NAME]``, ``history NAME`` or ``undo NAME``."""
        verb, _, arg = line.strip().partition(" ")
        arg = arg.strip()
        try:
            if verb == "list":
                return self._list()
            if verb == "show" and arg:
                return self.session.get(arg)
            if verb == "runs":
                return self._runs(arg or None)
            if verb == "history" and arg:
                return self._history(arg)
            if verb == "undo" and arg:
                return self._undo(arg)
        except ThodareError as e:
            raise UsageError(str(e)) from None
        raise UsageError(f"Usage: {USAGE}")

    def _list(self) -> Any:
        rows = [
            [name, len(wf.blocks) - 1, ", ".join(b.type for b in wf.blocks[1:4])]
            for name, wf in sorted(self.kit.workflows.items())
        ]
        if not rows:
            print("No workflows yet: declare one with %%workflow NAME.")
            return None
        return _table(["workflow", "steps", "uses"], rows)

    def _runs(self, name: str | None) -> RunList:
        return RunList(r for r in self.kit.runs(limit=50) if name is None or r.workflow == name)

    def _history(self, name: str) -> Any:
        versions = self.kit.history(name)
        if not versions:
            print(f"No versions of {name!r} yet: run its %%workflow cell.")
            return None
        rows = [
            [v.version, v.created_at.isoformat(timespec="seconds"), v.origin, v.note or "",
             len(v.workflow.blocks) - 1, "undone" if v.undone else ""]
            for v in versions
        ]  # fmt: skip
        return _table(["version", "saved", "by", "note", "steps", ""], rows)

    def _undo(self, name: str) -> SerializedWorkflow:
        version = self.session.undo(name)
        where = "JupyterLab is rewriting its cell" if self.session.rewriters else "re-bound"
        print(f"{name} is back at version {version.version} ({where}).")
        return self.session.get(name)
