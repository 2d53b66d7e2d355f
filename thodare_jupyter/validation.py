"""Checks a workflow against a catalog: structure, params, ``{{refs}}``, run input.

One set of rules serves ``apply_operations`` (as data for the LLM),
``compile_workflow`` (as :class:`WorkflowInvalid` for a person), the builder,
the ``%%workflow`` YAML and both executors. Every problem has a stable code:

* structure: ``duplicate-block-id``, ``invalid-block-id``, ``unknown-connector``,
  ``unknown-edge-block``, ``cycle``, ``invalid-for-each``, ``for-each-not-compute``,
  ``invalid-concurrency``;
* params: ``unknown-param``, ``invalid-param-value``, ``missing-param``;
* controls: ``control-not-applicable`` (``retries``/``timeout`` on a block that waits);
* refs (checked by :mod:`.ref_checks`): ``unknown-block``, ``ref-disabled-block``,
  ``ref-not-upstream``, ``unknown-variable``, ``invalid-ref``, ``item-outside-for-each``,
  ``ref-unknown-field``, ``ref-type-mismatch`` (types: :mod:`.ref_types`);
* raised only by the builder: ``invalid-retries``, ``invalid-timeout``,
  ``invalid-when``; reported only by ``apply_operations``: ``user-only-param``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from .connectors import Catalog, Connector
from .connectors.child import RUN_WORKFLOW
from .connectors.payload import dump_json
from .controls import parse_concurrency, parse_for_each
from .errors import InputInvalid, Issue, WorkflowInvalid, listing, suggest
from .graph import build_graph, find_cycle
from .input_schema import schema_model
from .ref_checks import FOR_EACH, block_issue, check_refs
from .templates import NAMESPACES, has_template, whole_ref
from .wire import SerializedBlock, SerializedWorkflow, ValidationIssue

if TYPE_CHECKING:
    from .artifacts import ArtifactStore

RESERVED_IDS = frozenset(NAMESPACES)
_BAD_ID_CHARS = frozenset(".{}[] \t\r\n")
MAX_DEPTH = 64
"""How many levels of lists/objects one param value (or op field) may nest."""
MAX_INT_DIGITS = 100
"""The most digits an integer in an op may have (larger ones travel as strings)."""
_INT_LIMIT = 10**MAX_INT_DIGITS


class NotJson(ValueError):
    """An op holds a value that is not a plain JSON value; the message names where and why."""


def kind(value: Any) -> str:
    """The type name of any value, for messages; never calls its ``__str__``/``__repr__``."""
    try:
        name = type(value).__name__
    except Exception:  # a metaclass can make even this raise
        name = ""
    return name[:40] if type(name) is str and name else "object"


def clip(text: str, limit: int = 60) -> str:
    """``text`` cut to ``limit`` characters (with an ellipsis), for messages."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def json_copy(value: Any, path: str, depth: int = MAX_DEPTH) -> Any:
    """A copy of ``value`` made of exact JSON types, or :class:`NotJson`.

    Allowed: ``None``, ``bool``, ``str``, ``int`` of at most :data:`MAX_INT_DIGITS` digits,
    finite ``float``, ``list`` and ``dict`` with ``str`` keys, nested at most ``depth`` levels.
    Subclasses (a ``str`` with its own ``__repr__``), tuples, sets, bytes and other objects are
    refused. Never calls ``str``/``repr`` on the value, so the message is always safe to build.
    """
    t = type(value)
    if value is None or t is bool or t is str:
        return value
    if t is int:
        if -_INT_LIMIT < value < _INT_LIMIT:
            return value
        raise NotJson(
            f"{path}: an integer of more than {MAX_INT_DIGITS} digits; send it as a string"
        )
    if t is float:
        if math.isfinite(value):
            return value
        raise NotJson(f"{path}: NaN and infinity are not JSON numbers; send a finite number")
    if t is not list and t is not dict:
        raise NotJson(
            f"{path}: a {kind(value)} is not a JSON value; send a string, number, "
            "boolean, null, list or object"
        )
    if depth <= 0:
        raise NotJson(f"{path}: nesting deeper than {MAX_DEPTH} levels; send a flatter value")
    if t is list:
        return [json_copy(v, f"{path}[{i}]", depth - 1) for i, v in enumerate(value)]
    out = {}
    for k, v in dict.items(value):
        if type(k) is not str:
            raise NotJson(f"{path}: object keys must be strings, got a {kind(k)} key")
        out[k] = json_copy(v, f"{path}.{clip(k, 40)}", depth - 1)
    return out


def block_id_problem(block_id: Any) -> str | None:
    """Why ``block_id`` cannot name a block (None when it can)."""
    if not isinstance(block_id, str) or not block_id:
        return "A block id must be a non-empty string."
    if block_id in RESERVED_IDS:
        return f"'{block_id}' is reserved for {{{{{block_id}.…}}}} references; pick another id."
    if any(c in _BAD_ID_CHARS for c in block_id):
        return (
            "A block id cannot contain '.', '{', '}', '[', ']' or white space (it must work in "
            "{{id.field}}; id[3] names item 3 of a for_each step)."
        )
    return None


def check_params(
    block: SerializedBlock, conn: Connector, *, names: Iterable[str] | None = None
) -> list[ValidationIssue]:
    """Unknown names, literal values of the wrong type, missing required params.

    ``names`` limits the type check to those params (all when None). Hidden
    params are not required here: a person or the env supplies them (an unknown
    name lists them too: their names are no secret, their values are never shown).
    """
    issues = []
    specs = conn.param_specs
    for key in block.params if names is None else names:
        value = block.params.get(key)
        if key not in specs:
            unknown = f"{conn.type} has no param '{key}'. Params: {listing(specs)}."
            issues.append(
                block_issue(
                    block, key, "unknown-param", unknown + suggest(key, specs), choices=specs
                )
            )
        elif not has_template(value):
            why = conn.check_param(key, value)
            if why:
                shown = None if key in conn.hidden_params else value
                issues.append(block_issue(block, key, "invalid-param-value", why, shown))
    for name, spec in specs.items():
        if spec.required and spec.visibility != "hidden" and block.params.get(name) in (None, ""):
            issues.append(
                block_issue(block, name, "missing-param", f"Required field '{name}' is missing.")
            )
    return issues


def check_controls(block: SerializedBlock, conn: Connector) -> list[ValidationIssue]:
    """``retries``/``timeout`` on a block that waits (``kind="wait"``), which would be
    ignored: a wait does not run and fail, and parks no worker to time out."""
    if conn.kind != "wait":
        return []
    child = conn.type == RUN_WORKFLOW
    instead = {
        "timeout": (
            "set timeouts on the child workflow's steps"
            if child
            else "bound the wait with its timeoutHours param"
            if "timeoutHours" in conn.param_specs
            else "its duration is how long it waits"
        ),
        "retries": (
            "give the child workflow's steps retries, or kit.fork the parent from this step"
            if child
            else "a wait does not fail, so there is nothing to retry"
        ),
    }
    return [
        block_issue(
            block,
            key,
            "control-not-applicable",
            f"{conn.type} waits rather than runs, so a step {key} does not apply; {why}.",
        )
        for key, why in instead.items()
        if getattr(block, key) is not None
    ]


def check_structure(workflow: SerializedWorkflow, catalog: Catalog) -> list[Issue]:
    """Problems no executor can run past: duplicate ids, ghost edges, unknown types, cycles."""
    issues = []
    ids = Counter(b.id for b in workflow.blocks)
    issues += [
        Issue(
            i,
            None,
            "duplicate-block-id",
            f"Block id '{i}' is used by {n} blocks; ids must be unique.",
        )
        for i, n in ids.items()
        if n > 1
    ]
    for b in workflow.blocks:
        why = block_id_problem(b.id)
        if why:
            issues.append(Issue(b.id, None, "invalid-block-id", f"Block '{b.id}': {why}"))
        if b.type not in catalog:
            why = (
                f"Block '{b.id}' uses connector type '{b.type}', which is not registered "
                f"(register it with kit.register). Known: {listing(catalog.types())}."
            )
            issues.append(Issue(b.id, None, "unknown-connector", why))
        issues += _for_each_problems(b, catalog)
    for c in workflow.connections:
        for end in (c.source, c.target):
            if end not in ids:
                why = (
                    f"Connection {c.source} → {c.target} names block '{end}', which does not exist."
                )
                issues.append(Issue(end, None, "unknown-edge-block", why))
    cycle = find_cycle(build_graph(workflow))
    if cycle:
        why = (
            f"The workflow has a cycle: {' → '.join([*cycle, cycle[0]])}; remove one of its "
            "edges (a connection, or the {{ref}} or `needs` that makes it)."
        )
        issues.append(Issue(cycle[0], None, "cycle", why))
    return issues


def _for_each_problems(b: SerializedBlock, catalog: Catalog) -> list[Issue]:
    out = []
    if b.for_each is not None:
        try:
            parse_for_each(b.for_each)
        except ValueError as e:
            out.append(Issue(b.id, FOR_EACH, "invalid-for-each", f"Block '{b.id}': {e}."))
        conn = catalog.find(b.type)
        if conn is not None and conn.kind != "compute":
            why = f"Block '{b.id}': for_each needs a compute step, not a {conn.kind} block."
            out.append(Issue(b.id, FOR_EACH, "for-each-not-compute", why))
    if b.concurrency is not None:
        try:
            parse_concurrency(b.concurrency)
        except ValueError as e:
            out.append(Issue(b.id, "concurrency", "invalid-concurrency", f"Block '{b.id}': {e}."))
    return out


def check_workflow(workflow: SerializedWorkflow, catalog: Catalog) -> list[Issue]:
    """Every problem with ``workflow``; ``str(issue)`` is a line a person can act on."""
    problems = check_structure(workflow, catalog)
    if problems:
        return problems
    issues = []
    for b in workflow.blocks:
        conn = catalog.find(b.type)
        if b.enabled and conn is not None and conn.kind != "trigger":
            issues += check_params(b, conn)
            issues += check_controls(b, conn)
    issues += check_refs(workflow, catalog)
    return [as_issue(i) for i in issues]


def as_issue(issue: ValidationIssue) -> Issue:
    """A :class:`ValidationIssue` as an :class:`Issue`; its line reads
    ``Block 'id' (type) param 'field': error``."""
    ref = whole_ref(issue.value)
    choices = tuple(issue.choices or ())
    return Issue(
        issue.block_id, issue.field, issue.code, issue.error, issue.block_type, ref, choices
    )


def compile_workflow(workflow: SerializedWorkflow, catalog: Catalog) -> SerializedWorkflow:
    """Return ``workflow`` when it can run; raise :class:`WorkflowInvalid` listing every problem."""
    problems = check_workflow(workflow, catalog)
    if problems:
        raise WorkflowInvalid(workflow.name, problems)
    return workflow


def validate_input(
    model: type[BaseModel] | None,
    data: Any,
    workflow: str | None,
    artifacts: ArtifactStore | None = None,
) -> Any:
    """Validate a run input against ``model``; the JSON-ready result, or :class:`InputInvalid`.

    ``Table`` and ``File`` values (a ``table``/``file`` input) are written to
    ``artifacts`` and the result holds their references; without a store they
    are an :class:`InputInvalid`.
    """
    if data is None:
        data = {}
    try:
        if isinstance(data, BaseModel):
            data = dump_json(data, artifacts)
        if model is None:
            return data
        return dump_json(model.model_validate(data), artifacts)
    except ValidationError as e:
        problems = [
            f"{'.'.join(str(p) for p in err['loc']) or '(input)'}: {err['msg']}"
            for err in e.errors()
        ]
        raise InputInvalid(workflow, problems) from None
    except ValueError as e:  # a table or file with nowhere to store it
        raise InputInvalid(workflow, [f"(input): {e}"]) from None


def input_model_of(workflow: SerializedWorkflow) -> type[BaseModel] | None:
    """The model ``workflow``'s run input is validated with.

    Its Python model when it was built in Python, else one read from
    ``metadata.inputSchema`` (a workflow loaded from JSON), else None (any input).
    """
    if workflow.input_model is not None:
        return workflow.input_model
    return schema_model(workflow.metadata.input_schema if workflow.metadata else None)
