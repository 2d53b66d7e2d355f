"""How far each ``for_each`` step of a run got: items ended of all, and how many failed.

The DAG widget, its static SVG and the server's run route (the lab panel) all
show it as ``k/N`` with a failure count, read from the step rows: the step's
own row holds ``{"total": N}`` while its items run (its output once it ended),
and each item has a row ``block[i]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from ..wire import SerializedWorkflow


class _Step(Protocol):
    block_id: str
    status: str
    output: Any


@dataclass(frozen=True)
class Progress:
    """``ended`` items (completed or failed) of ``total``; ``failed`` of them failed."""

    ended: int
    total: int
    failed: int

    @property
    def label(self) -> str:
        """``"k/N"``, and ``" · f failed"`` when some failed."""
        return f"{self.ended}/{self.total}" + (f" · {self.failed} failed" if self.failed else "")

    def to_dict(self) -> dict[str, int]:
        """``{"ended", "total", "failed"}`` (JSON for the widget and the REST payload)."""
        return asdict(self)


def for_each_progress(workflow: SerializedWorkflow, steps: Sequence[_Step]) -> dict[str, Progress]:
    """The :class:`Progress` of each ``for_each`` step of ``workflow`` that started.

    ``steps``: the run's step rows (``handle.describe().steps``, the store's rows),
    items (``block[i]``) included.
    """
    each = {b.id for b in workflow.blocks if b.for_each}
    ended: dict[str, int] = dict.fromkeys(each, 0)
    failed: dict[str, int] = dict.fromkeys(each, 0)
    for s in steps:
        block, bracket, _ = s.block_id.partition("[")
        if bracket and block in each and s.status in ("completed", "failed"):
            ended[block] += 1
            failed[block] += s.status == "failed"
    out: dict[str, Progress] = {}
    for s in steps:
        if s.block_id in each and isinstance(s.output, dict):
            total = s.output.get("total", len(s.output.get("items") or ()))
            out[s.block_id] = Progress(ended[s.block_id], int(total), failed[s.block_id])
    return out
