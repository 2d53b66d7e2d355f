"""What a proposal changes: the blocks added, changed and removed, and a JSON diff to read."""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from typing import Any

from ..connectors import Catalog
from ..patch import redact_for_llm
from ..templates import env_refs
from ..wire import SerializedWorkflow


@dataclass(frozen=True)
class WorkflowDiff:
    """Block ids by change, and a unified diff of the two workflows' JSON (hidden params out).

    ``env_refs``: the env names read by the added blocks and by the params that
    changed; when the new workflow runs, those values are used.
    """

    added: list[str]
    changed: list[str]
    removed: list[str]
    text: str
    env_refs: list[str]

    @property
    def empty(self) -> bool:
        """True when the two workflows are the same."""
        return not (self.added or self.changed or self.removed)


def _shape(data: dict[str, Any]) -> dict[str, Any]:
    """Each block's name, type, params and edges in and out (of a redacted workflow)."""
    edges: dict[str, list[str]] = {b["id"]: [] for b in data["blocks"]}
    for c in data["connections"]:
        tag = f"{c['source']}->{c['target']}:{c.get('sourceHandle') or ''}:{c.get('condition')}"
        for end in (c["source"], c["target"]):
            edges.setdefault(end, []).append(tag)
    return {
        b["id"]: {k: b.get(k) for k in ("type", "name", "enabled", "params")}
        | {"edges": sorted(edges.get(b["id"], []))}
        for b in data["blocks"]
    }


def workflow_diff(
    before: SerializedWorkflow, after: SerializedWorkflow, catalog: Catalog
) -> WorkflowDiff:
    """Compare two versions of a workflow (positions ignored; hidden params never shown)."""
    shown_before, shown_after = redact_for_llm(before, catalog), redact_for_llm(after, catalog)
    old, new = _shape(shown_before), _shape(shown_after)
    text = "".join(
        difflib.unified_diff(
            json.dumps(shown_before, indent=1).splitlines(keepends=True),
            json.dumps(shown_after, indent=1).splitlines(keepends=True),
            "before", "after", n=2,
        )
    )  # fmt: skip
    added = [b for b in new if b not in old]
    changed = [b for b in new if b in old and new[b] != old[b]]
    touched = [new[b]["params"] for b in added] + [
        {k: v for k, v in (new[b]["params"] or {}).items()
         if (old[b]["params"] or {}).get(k) != v}
        for b in changed
    ]  # fmt: skip
    return WorkflowDiff(
        added=added, changed=changed, removed=[b for b in old if b not in new], text=text,
        env_refs=sorted(env_refs(touched)),
    )  # fmt: skip
