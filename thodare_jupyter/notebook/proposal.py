"""The proposal widget of ``%%assist``: what the assistant wants to change, Accept or Reject.

It shows the model's explanation, a warning for each env value the patch makes
a block read, its operations, the engine's summary, the DAG before and after
(added, changed and removed blocks coloured) and the JSON diff. Accept hands
the proposal to the session (the ``%%workflow`` cell is rewritten, compiled and
stored as a new version); Reject changes nothing.
Where no widget front end runs, the same content shows as static HTML.
"""

from __future__ import annotations

import html
import json
import threading
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from .session import Pending, Session, cell_source, proposal_view_data

REWRITE_WAIT_S = 10.0
"""How long Accept waits for the lab extension to say it rewrote the cell."""
WARNING_STYLE = "color:#8a4b00;background:#fff4e5;border-left:3px solid #ef6c00;padding:2px 6px"


class ProposalView(anywidget.AnyWidget):
    """One pending proposal with its Accept and Reject buttons."""

    _esm = Path(__file__).with_name("proposal.js")
    _css = Path(__file__).with_name("proposal.css")
    data = traitlets.Dict().tag(sync=True)
    state = traitlets.Unicode("pending").tag(sync=True)
    message = traitlets.Unicode("").tag(sync=True)
    new_source = traitlets.Unicode("").tag(sync=True)

    def __init__(self, pending: Pending, session: Session) -> None:
        super().__init__(data=proposal_view_data(pending))
        self.pending, self.session = pending, session
        if not pending.proposal.applied:
            self.state = "failed"
        elif pending.proposal.diff.empty:  # the model says nothing needs to change
            session.reject(pending.key)
            self.state, self.message = "empty", "Nothing to change."
        self.on_msg(self._on_action)

    def __repr__(self) -> str:
        p = self.pending.proposal
        how = "applies cleanly" if p.applied else "did not apply"
        return (f"<Proposal for {self.pending.name}: {len(p.ops)} operation(s), {how} after "
                f"{p.attempts} attempt(s); {self.state}>")  # fmt: skip

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        bundle = super()._repr_mimebundle_(**kwargs)
        data: dict[str, Any] = (bundle[0] if isinstance(bundle, tuple) else bundle) or {}
        data["text/html"] = static_html(self.data)
        data["text/plain"] = repr(self)
        return bundle

    def accept(self) -> None:
        """Accept: rewrite the cell, store a version (the result shows in ``message``)."""
        try:
            version = self.session.accept(self.pending.key)
        except Exception as e:  # shown in the widget; nothing was changed, the proposal is gone
            self.state, self.message = "failed", f"{type(e).__name__}: {e}"
            return
        name = self.pending.name
        head = f"Accepted as version {version.version} of {name}"
        undo = f"Undo with %workflow undo {name}."
        self.state = "accepted"
        if version.source is None:
            self.message = (
                f"{head}; {name} is rebound (it was not written in a %%workflow cell). {undo}"
            )
        elif not self.session.rewriters:
            self._copy_below(f"{head}; no JupyterLab panel is connected to rewrite the cell", undo)
        else:  # the front end answers once this handler returns: wait in a thread
            self.message = f"{head}; rewriting the %%workflow cell… {undo}"
            threading.Thread(target=self._await_rewrite, args=(head, undo), daemon=True).start()

    def _await_rewrite(self, head: str, undo: str) -> None:
        found = self.session.wait_rewritten(self.pending.name, REWRITE_WAIT_S)
        if found:
            self.message = f"{head}; the %%workflow cell was rewritten and run again. {undo}"
        else:
            why = "no front end answered" if found is None else "this notebook has no such cell"
            self._copy_below(f"{head}; {why}", undo)

    def _copy_below(self, head: str, undo: str) -> None:
        name = self.pending.name
        self.new_source = cell_source(name, self.session.sources[name])
        self.message = f"{head}: copy the new cell below into its %%workflow cell. {undo}"

    def reject(self) -> None:
        """Reject: nothing changes."""
        self.session.reject(self.pending.key)
        self.state, self.message = "rejected", "Rejected: nothing was changed."

    def _on_action(self, _widget: Any, content: dict[str, Any], _buffers: Any) -> None:
        if self.state != "pending":
            return
        if content.get("action") == "accept":
            self.accept()
        elif content.get("action") == "reject":
            self.reject()


def env_warning(name: str) -> str:
    """The warning shown for each env name a proposal's patch reads (proposal.js says it too)."""
    return f"reads env {name}: a secret value will be used when this runs"


def static_html(d: dict[str, Any]) -> str:
    """The proposal as plain HTML (nbconvert, GitHub): no buttons."""
    esc = html.escape
    ops = "".join(f"<li><code>{esc(json.dumps(op))}</code></li>" for op in d.get("ops", []))
    warnings = "".join(
        f'<div class="thodare-env-warning" style="{WARNING_STYLE}">⚠ {esc(env_warning(n))}</div>'
        for n in d.get("env_refs", [])
    )
    return (
        f'<div class="thodare-proposal-static"><p><b>{esc(d.get("workflow", ""))}</b>: '
        f"{esc(d.get('explanation', ''))}</p>{warnings}<ol>{ops}</ol>"
        f"<pre>{esc(d.get('summary', ''))}</pre>"
        f'<div style="display:flex;gap:8px">{d.get("svg_before", "")}{d.get("svg_after", "")}</div>'
        f"<details><summary>JSON diff</summary><pre>{esc(d.get('diff', ''))}</pre></details></div>"
    )
