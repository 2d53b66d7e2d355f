"""The one mapping from a status to its colours: the SVG, the widget, the panel use it.

Every :data:`~thodare_jupyter.wire.RunStatus` has an entry (a run and its steps share
those names), plus the statuses only a step has (``skipped``; ``not run``: a step a
finished run never reached), the in-memory ``paused`` (drawn as ``waiting``) and the
changes of an assistant proposal. ``labextension/src/palette.ts`` is the same table
for the panel (a test checks they agree).
"""

from __future__ import annotations

from typing import get_args

from ..wire import RunStatus

Style = tuple[str, str, str]
"""Fill, stroke and text colour."""

STATUS_STYLE: dict[str, Style] = {
    "pending": ("#e0e0e0", "#9e9e9e", "#212121"),
    "running": ("#90caf9", "#1e88e5", "#212121"),
    "waiting": ("#ffcc80", "#fb8c00", "#212121"),
    "paused": ("#ffcc80", "#fb8c00", "#212121"),
    "completed": ("#a5d6a7", "#43a047", "#212121"),
    "failed": ("#ef9a9a", "#e53935", "#212121"),
    "skipped": ("#f5f5f5", "#bdbdbd", "#757575"),
    "not run": ("#ffffff", "#bdbdbd", "#757575"),
    "canceled": ("#9e9e9e", "#616161", "#212121"),
    "unchanged": ("#fafafa", "#9e9e9e", "#212121"),
    "added": ("#e1bee7", "#8e24aa", "#212121"),
    "changed": ("#fff59d", "#f9a825", "#212121"),
    "removed": ("#ffcdd2", "#c62828", "#757575"),
}
"""Colours per status; an unknown status is drawn as ``pending``."""
DASHED = frozenset({"skipped", "not run", "removed"})
"""Statuses drawn with a dashed outline: nothing happened there."""

_missing = set(get_args(RunStatus)) - set(STATUS_STYLE)
assert not _missing, f"RunStatus values without colours: {sorted(_missing)}"


def style(status: str) -> Style:
    """The colours of ``status`` (``pending``'s when it has none)."""
    return STATUS_STYLE.get(status, STATUS_STYLE["pending"])
