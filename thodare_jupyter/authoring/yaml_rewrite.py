"""Write a changed workflow back into the YAML of its ``%%workflow`` cell, in place.

The text is edited with ruamel.yaml's round trip: comments, key order, quotes
and flow style of what did not change are kept. Steps are added, removed and
edited; ``with`` params are set or dropped one by one; ``needs`` lists only the
edges the refs do not already imply; ``retries``, ``when``, ``timeout``,
``for_each`` and ``concurrency`` follow the block (kept as written while they
mean the same). What YAML cannot
say (a branch handle or condition on an edge) is reported, never silently
dropped: the rewritten text is compiled again and must give the same workflow.
"""

from __future__ import annotations

import io
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from ..connectors import Catalog
from ..controls import parse_concurrency, parse_for_each, parse_retries, parse_timeout
from ..errors import WorkflowYamlError
from ..graph import descendants, digraph
from ..templates import iter_refs, ref_head
from ..wire import SerializedBlock, SerializedWorkflow
from .builder import TRIGGER_ID
from .cell_yaml import make_yaml
from .workflow_yaml import _plain, workflow_from_yaml


def _yaml() -> YAML:
    y = make_yaml()  # the cell's own reading: a date stays the text written
    y.preserve_quotes = True
    y.width = 4096  # never fold a long template
    y.indent(mapping=2, sequence=4, offset=2)
    return y


def _inferred(block: SerializedBlock, ids: dict[str, str]) -> set[str]:
    """The steps a block's refs name (by id or display name): edges YAML infers."""
    heads = {ref_head(r)[0] for r in iter_refs([block.params, block.when, block.for_each])}
    return {ids[h] for h in heads if h in ids}


def _sync_with(body: CommentedMap, params: dict[str, Any]) -> None:
    given = body.get("with")
    if not isinstance(given, CommentedMap):
        if params:
            body["with"] = CommentedMap(params)
        elif "with" in body:
            del body["with"]
        return
    for key in [k for k in given if k not in params]:
        del given[key]
    for key, value in params.items():
        if key not in given or _plain(given[key]) != value:
            given[key] = value
    if not given:
        del body["with"]


def _sync_controls(body: CommentedMap, block: SerializedBlock) -> None:
    """Step controls: kept as written when they mean the same."""
    parsers = (
        ("retries", parse_retries),
        ("timeout", parse_timeout),
        ("for_each", parse_for_each),
        ("concurrency", parse_concurrency),
    )
    for key, parse in parsers:
        want = getattr(block, key)
        if want is None:
            body.pop(key, None)
            continue
        try:
            same = key in body and parse(_plain(body[key])) == want
        except ValueError:
            same = False
        if not same:
            value = want.model_dump(exclude_none=True) if key == "retries" else want
            if isinstance(value, dict):
                value = CommentedMap(value)
                value.fa.set_flow_style()
            body[key] = value
    if block.when is None:
        body.pop("when", None)
    elif body.get("when") != block.when:
        body["when"] = block.when


def _sync_needs(body: CommentedMap, wanted: list[str]) -> None:
    old = body.get("needs")
    kept = [n for n in (old if isinstance(old, list) else [old] if old else []) if n in wanted]
    needs = kept + [n for n in wanted if n not in kept]
    if not needs:
        body.pop("needs", None)
    elif needs != kept or not isinstance(old, list) or list(old) != needs:
        seq = CommentedSeq(needs)
        seq.fa.set_flow_style()
        body["needs"] = seq


def rewrite_workflow_yaml(text: str, workflow: SerializedWorkflow) -> str:
    """The cell YAML ``text`` changed to describe ``workflow`` (comments kept)."""
    y = _yaml()
    doc = y.load(text)
    steps: CommentedMap = doc["steps"]
    blocks = [b for b in workflow.blocks if b.id != TRIGGER_ID]
    keep = {b.id for b in blocks}
    for sid in [s for s in steps if s not in keep]:
        del steps[sid]
    ids = {b.id: b.id for b in blocks} | {b.name: b.id for b in blocks if b.name}
    upstream: dict[str, list[str]] = {b.id: [] for b in blocks}
    for c in workflow.connections:
        if c.source != TRIGGER_ID and c.target in upstream:
            upstream[c.target].append(c.source)
    for b in blocks:
        body = steps.get(b.id)
        if not isinstance(body, CommentedMap):
            body = steps[b.id] = CommentedMap(uses=b.type)
        body["uses"] = b.type
        if b.name and b.name != b.id:
            body["name"] = b.name
        else:
            body.pop("name", None)
        _sync_with(body, b.params)
        _sync_controls(body, b)
        inferred = _inferred(b, ids)
        _sync_needs(body, [u for u in upstream[b.id] if u not in inferred])
    out = io.StringIO()
    y.dump(doc, out)
    return out.getvalue()


def _reach(wf: SerializedWorkflow) -> set[tuple[str, str]]:
    """Every (a, b) with a path a → … → b that does not start at the trigger."""
    edges = [(c.source, c.target) for c in wf.connections if c.source != TRIGGER_ID]
    g = digraph({n for e in edges for n in e}, edges)
    return {(a, b) for a in g for b in descendants(g, [a]) if b != a}


def yaml_problems(name: str, text: str, workflow: SerializedWorkflow, catalog: Catalog
                  ) -> list[str]:  # fmt: skip
    """Why ``workflow`` cannot be written into this cell's YAML (empty when it can)."""
    problems = [
        f"The connection {c.source} -> {c.target} has a branch handle or condition, which "
        "%%workflow YAML cannot express: connect without source_handle/condition."
        for c in workflow.connections
        if c.source_handle or c.condition
    ]
    if problems:
        return problems
    try:
        again = workflow_from_yaml(name, rewrite_workflow_yaml(text, workflow), catalog)
    except WorkflowYamlError as e:
        return [f"{p.field}: {p.message}" for p in e.problems]
    want = {b.id: b.model_dump(exclude={"position"}) for b in workflow.blocks if b.id != TRIGGER_ID}
    got = {b.id: b.model_dump(exclude={"position"}) for b in again.blocks if b.id != TRIGGER_ID}
    if want != got:
        return ["The blocks cannot be written as %%workflow YAML unchanged."]
    missing = _reach(workflow) - _reach(again)
    return [
        f"{a} -> {b} would be lost in %%workflow YAML: make {b} read an output of {a} "
        "or connect them directly."
        for a, b in sorted(missing)
    ]
