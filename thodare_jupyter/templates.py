"""``{{...}}`` references: extract them, classify them, resolve them.

The resolver follows the seed: one pass (a value that came from the trigger,
env or a resume payload is never expanded again); a param that is exactly one
template keeps the value's type; embedded values are written as JSON would
write them (``true``, ``2``, compact objects; missing or null → ``""``); a
block reference matches the block id first, then its name.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .wire import SerializedWorkflow

# The path is group(1).strip(). No lazy quantifier next to ``\s*``: ``{{`` followed by
# thousands of spaces made the old ``\{\{\s*([^{}]+?)\s*\}\}`` backtrack for minutes.
TEMPLATE = re.compile(r"\{\{([^{}]+)\}\}")
NAMESPACES = ("trigger", "env", "vars")
MISSING: Any = None


def iter_refs(value: Any) -> Iterator[str]:
    """Yield every reference path inside ``value`` (strings, lists, dicts), in order.

    Walks with its own stack, so any depth works, and never enters a container that is
    already on the path, so a list that contains itself ends.
    """
    if isinstance(value, str):
        if "{{" in value:
            for m in TEMPLATE.finditer(value):
                yield m.group(1).strip()
        return
    if not isinstance(value, list | tuple | dict):
        return
    stack: list[tuple[int, Iterator[Any]]] = [(0, iter((value,)))]
    path: set[int] = set()
    while stack:
        for v in stack[-1][1]:
            if isinstance(v, str):
                if "{{" in v:
                    for m in TEMPLATE.finditer(v):
                        yield m.group(1).strip()
            elif isinstance(v, list | tuple | dict) and id(v) not in path:
                path.add(id(v))
                stack.append((id(v), iter(v.values() if isinstance(v, dict) else v)))
                break
        else:
            path.discard(stack.pop()[0])


def extract_refs(value: Any) -> list[str]:
    """Every reference path inside ``value``, e.g. ``["enrich.name", "env.TOKEN"]``."""
    return list(iter_refs(value))


def env_refs(value: SerializedWorkflow | Any) -> set[str]:
    """The env names ``{{env.X}}`` refs read in a workflow (every block's params and
    ``when``) or a value."""
    if isinstance(value, SerializedWorkflow):
        value = [[b.params, b.when, b.for_each] for b in value.blocks]
    out = set()
    for ref in iter_refs(value):
        head, rest = ref_head(ref)
        if head == "env" and rest:
            out.add(".".join(rest))
    return out


def whole_ref(value: Any) -> str | None:
    """The ref of a string that is exactly one ``{{ref}}`` (white space around allowed):
    such a param keeps the referenced value's type. None for anything else."""
    if not isinstance(value, str) or "{{" not in value:
        return None
    m = TEMPLATE.fullmatch(value.strip())
    return m.group(1).strip() if m else None


def has_template(value: Any) -> bool:
    """True when ``value`` contains at least one ``{{...}}`` reference."""
    return next(iter_refs(value), None) is not None


def ref_head(ref: str) -> tuple[str, list[str]]:
    """Split ``a.b.c`` into ``("a", ["b", "c"])``."""
    head, *rest = ref.split(".")
    return head, rest


def is_block_ref(ref: str) -> bool:
    """True for ``<block>.field`` refs, false for trigger/env/vars refs."""
    head = ref.split(".", 1)[0]
    return head not in NAMESPACES


def navigate(obj: Any, path: list[str]) -> Any:
    """Walk dict keys and list indices; anything missing gives ``None``.

    Only mapping keys and sequence indices are followed, never attributes,
    so hostile paths (``__class__``, ``__proto__``) find nothing. A path that
    goes on into an artifact reference (``{{query.rows.name}}``, a column of a
    stored table) gives the reference with the rest in ``"$path"``: the step
    that receives it loads just that.
    """
    cur = obj
    for i, part in enumerate(path):
        if cur is None:
            return None
        if isinstance(cur, Mapping) and isinstance(cur.get("$artifact"), str):
            return {**cur, "$path": [*cur.get("$path", ()), *path[i:]]}
        if isinstance(cur, Mapping):
            cur = cur.get(part)
        elif isinstance(cur, list | tuple) and part.isdigit():
            idx = int(part)
            cur = cur[idx] if idx < len(cur) else None
        else:
            return None
    return cur


@dataclass
class Scope:
    """What references resolve against while a block's params are prepared."""

    outputs: Mapping[str, Any]
    trigger: Any = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    variables: Mapping[str, Any] = field(default_factory=dict)
    block_refs: Mapping[str, str] = field(default_factory=dict)
    """What a ref head names: block ids (to themselves) and block names (to ids)."""
    locals: Mapping[str, Any] = field(default_factory=dict)
    """Names bound for one block's params only (a ``for_each`` item: ``item``,
    ``item_index``); they come before block refs."""

    def lookup(self, ref: str) -> Any:
        """Resolve one reference path to its value (``None`` when missing)."""
        head, rest = ref_head(ref)
        if head in self.locals:
            return navigate(self.locals[head], rest)
        if head == "trigger":
            return navigate(self.trigger, rest)
        if head == "env":
            return self.env.get(".".join(rest)) if rest else None
        if head == "vars":
            return navigate(self.variables, rest)
        block_id = self.block_refs.get(head, head)
        if block_id not in self.outputs:
            return None
        return navigate(self.outputs[block_id], rest)


def stringify(value: Any) -> str:
    """Write a value into a string the way JSON (and the seed) would."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def resolve(value: Any, scope: Scope) -> Any:
    """Resolve every template in ``value`` in one pass; returns a new value."""
    if isinstance(value, str):
        if "{{" not in value:
            return value
        ref = whole_ref(value)
        if ref is not None:
            found = scope.lookup(ref)
            # a copy, so a connector that mutates its params cannot rewrite an upstream output
            return copy.deepcopy(found) if isinstance(found, dict | list) else found
        return TEMPLATE.sub(lambda m: stringify(scope.lookup(m.group(1).strip())), value)
    if isinstance(value, list | tuple):
        return [resolve(v, scope) for v in value]
    if isinstance(value, dict):
        return {k: resolve(v, scope) for k, v in value.items()}
    return value
