"""``%%workflow NAME`` (YAML → a checked workflow bound to NAME); ``%workflow list|show|runs``."""

from __future__ import annotations

import html
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, cell_magic, line_magic, magics_class
from IPython.display import HTML

from ..authoring.workflow_yaml import workflow_from_yaml
from ..durable.handle import RunList
from ..errors import ThodareError, WorkflowYamlError
from ..kit import Wfkit
from ..wire import SerializedWorkflow

USAGE = "%workflow list | %workflow show NAME | %workflow runs [NAME]"


def python_name(name: str) -> str:
    """The identifier a workflow is bound to: ``lead-notifier`` → ``lead_notifier``."""
    ident = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in name)
    return ident if ident and not ident[0].isdigit() else f"wf_{ident}"


def located(cell: str, error: WorkflowYamlError) -> str:
    """The error's problems, each under the cell line it points at, with a caret."""
    lines = ["%%workflow", *cell.splitlines()]
    out = [f"{len(error.problems)} problem(s) in this %%workflow cell:"]
    for p in error.problems:
        out.append(f"\nline {p.line}, col {p.column}: {p.field}: {p.message}")
        if 1 <= p.line <= len(lines):
            out.append(f"  {lines[p.line - 1]}")
            out.append("  " + " " * max(0, p.column - 1) + "^")
        if p.choices:
            out.append(f"  choices: {', '.join(p.choices)}")
    return "\n".join(out)


@magics_class
class WorkflowMagics(Magics):
    """The workflow magics, bound to one kit."""

    def __init__(self, shell: Any, kit: Wfkit) -> None:
        super().__init__(shell)
        self.kit = kit

    @cell_magic
    def workflow(self, line: str, cell: str) -> Any:
        """Declare a workflow in YAML; it is checked, bound to NAME and drawn."""
        name = line.strip()
        if not name or " " in name:
            raise UsageError("Usage: %%workflow NAME, then the workflow's YAML (DESIGN §6).")
        try:
            wf = workflow_from_yaml(name, cell, self.kit.catalog, first_line=2)
            wf = self.kit.compile(wf)
        except WorkflowYamlError as e:
            raise UsageError(located(cell, e)) from None
        except ThodareError as e:
            raise UsageError(str(e)) from None
        self.kit.workflows[name] = wf
        self.shell.user_ns[python_name(name)] = wf  # type: ignore[union-attr]
        return wf

    @line_magic("workflow")  # type: ignore[arg-type]
    def workflow_line(self, line: str) -> Any:
        """``list`` the session's workflows, ``show NAME`` one, or ``runs [NAME]``."""
        verb, _, arg = line.strip().partition(" ")
        arg = arg.strip()
        if verb == "list":
            return self._list()
        if verb == "show" and arg:
            return self._get(arg)
        if verb == "runs":
            return self._runs(arg or None)
        raise UsageError(f"Usage: {USAGE}")

    def _get(self, name: str) -> SerializedWorkflow:
        wf = self.kit.workflows.get(name)
        if wf is None:
            known = ", ".join(sorted(self.kit.workflows)) or "none yet"
            raise UsageError(f"No workflow {name!r} in this session (defined: {known}).")
        return wf

    def _list(self) -> Any:
        rows = [
            (name, len(wf.blocks) - 1, ", ".join(b.type for b in wf.blocks[1:4]))
            for name, wf in sorted(self.kit.workflows.items())
        ]
        if not rows:
            print("No workflows yet: declare one with %%workflow NAME.")
            return None
        body = "".join(
            f"<tr><td>{html.escape(n)}</td><td>{k}</td><td>{html.escape(t)}</td></tr>"
            for n, k, t in rows
        )
        head = "<tr><th>workflow</th><th>steps</th><th>uses</th></tr>"
        return HTML(f"<table>{head}{body}</table>")  # type: ignore[no-untyped-call]

    def _runs(self, name: str | None) -> RunList:
        return RunList(r for r in self.kit.runs(limit=50) if name is None or r.workflow == name)
