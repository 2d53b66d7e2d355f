"""Edit operations written the way an LLM sends them, for the apply_operations tests.

A module, not a test file: ``EMPTY`` (a workflow with no blocks), :func:`add` and
:func:`connect` (one operation each, as plain dicts).
"""

from __future__ import annotations

from typing import Any

EMPTY: dict[str, Any] = {"version": "1.0.0", "blocks": [], "connections": []}


def add(block_id: str, type_: str, **params: Any) -> dict[str, Any]:
    """An ``add`` operation for one block with ``params``."""
    return {"operation_type": "add", "block_id": block_id, "type": type_, "params": params}


def connect(src: str, dst: str) -> dict[str, Any]:
    """A ``connect`` operation from ``src`` to ``dst``."""
    return {"operation_type": "connect", "block_id": src, "target_block_id": dst}
