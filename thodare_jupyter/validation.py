"""Checks a workflow against a catalog: structure, params, ``{{refs}}``, run input.

One set of rules serves ``apply_operations`` (as data for the LLM),
``compile_workflow`` (as :class:`WorkflowInvalid` for a person) and both
executors.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from .connectors import Catalog, Connector
from .connectors.payload import dump_json
from .controls import EACH_OUTPUTS, ITEM_REFS, parse_concurrency, parse_for_each
from .errors import InputInvalid, WorkflowInvalid, listing
from .graph import Upstream, build_graph, find_cycle
from .input_schema import schema_model
from .templates import NAMESPACES, has_template, iter_refs, ref_head
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
WHEN = "when"
FOR_EACH = "forEach"
"""The ``field`` of a :class:`ValidationIssue` about a block's ``forEach``."""
"""The ``field`` of a :class:`ValidationIssue` about a block's ``when`` (not a param)."""


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


def ids_by_name(workflow: SerializedWorkflow) -> dict[str, str]:
    """Block names → ids for enabled blocks (the first block with a name wins)."""
    out: dict[str, str] = {}
    for b in workflow.blocks:
        if b.enabled and b.name and b.name not in out:
            out[b.name] = b.id
    return out


def check_params(
    block: SerializedBlock, conn: Connector, *, names: Iterable[str] | None = None
) -> list[ValidationIssue]:
    """Unknown names, literal values of the wrong type, missing required params.

    ``names`` limits the type check to those params (all when None). Hidden
    params are not required here: a person or the env supplies them.
    """
    issues = []
    specs = conn.param_specs
    for key in block.params if names is None else names:
        value = block.params.get(key)
        if key not in specs:
            issues.append(
                _issue(
                    block,
                    key,
                    f"{conn.type} has no param '{key}'. "
                    f"Params: {listing(n for n in specs if n not in conn.hidden_params)}.",
                )
            )
        elif not has_template(value):
            why = conn.check_param(key, value)
            if why:
                shown = None if key in conn.hidden_params else value
                issues.append(_issue(block, key, why, shown))
    for name, spec in specs.items():
        if spec.required and spec.visibility != "hidden" and block.params.get(name) in (None, ""):
            issues.append(_issue(block, name, f"Required field '{name}' is missing."))
    return issues


def check_refs(
    workflow: SerializedWorkflow,
    catalog: Catalog,
    *,
    only: Iterable[str] | None = None,
    upstream: Upstream | None = None,
    disabled: bool = False,
) -> list[ValidationIssue]:
    """Every ``{{ref}}`` must exist, be upstream and name a declared output.

    The refs of a block's ``when`` are checked too; their issues have the
    field :data:`WHEN` (``"when"``).

    ``only`` limits the check to those block ids; ``upstream`` reuses a
    computed :class:`Upstream` of the enabled graph. With ``disabled`` the
    refs FROM disabled blocks are checked too, as if the block were enabled
    (upstream = its enabled predecessors and their ancestors); a ref TO a
    disabled block is always a problem, since that block produces no output.
    """
    up = upstream if upstream is not None else Upstream(build_graph(workflow))
    blocks = {b.id: b for b in workflow.blocks}
    names = ids_by_name(workflow)
    input_fields = _input_fields(workflow)
    variables = workflow.variables or {}
    wanted = set(only) if only is not None else None
    preds: dict[str, set[str]] | None = None
    issues: list[ValidationIssue] = []
    for block in workflow.blocks:
        if wanted is not None and block.id not in wanted:
            continue
        is_up: Callable[[str], bool]
        if block.enabled:
            is_up = _upstream_of(up, block.id)
        elif disabled:
            if preds is None:
                preds = _enabled_preds(workflow, blocks)
            above = set(preds.get(block.id, ()))
            for p in preds.get(block.id, ()):
                above |= up.ancestors(p)
            is_up = above.__contains__
        else:
            continue
        fields = [
            *block.params.items(),
            *([(WHEN, block.when)] if block.when else []),
            *([(FOR_EACH, block.for_each)] if block.for_each else []),
        ]
        for key, value in fields:
            in_params = key not in (WHEN, FOR_EACH) or value is block.params.get(key)
            for ref in iter_refs(value):
                if ref_head(ref)[0] in ITEM_REFS and not (block.for_each and in_params):
                    why: str | None = (
                        f"{{{{{ref_head(ref)[0]}}}}} is only known in the params of a "
                        "for_each step (set for_each on this block, or read another value)."
                    )
                elif ref_head(ref)[0] in ITEM_REFS:
                    why = None
                else:
                    why = _ref_problem(
                        ref, block, blocks, names, is_up, catalog, input_fields, variables
                    )
                if why:
                    issues.append(_issue(block, key, why, f"{{{{{ref}}}}}"))
    return issues


def _upstream_of(up: Upstream, block_id: str) -> Callable[[str], bool]:
    return lambda candidate: up.is_upstream(candidate, block_id)


def _enabled_preds(
    workflow: SerializedWorkflow, blocks: Mapping[str, SerializedBlock]
) -> dict[str, set[str]]:
    """Target id → the enabled blocks with an edge into it."""
    out: dict[str, set[str]] = {}
    for c in workflow.connections:
        src = blocks.get(c.source)
        if src is not None and src.enabled:
            out.setdefault(c.target, set()).add(c.source)
    return out


def _ref_problem(
    ref: str,
    block: SerializedBlock,
    blocks: Mapping[str, SerializedBlock],
    names: Mapping[str, str],
    is_up: Callable[[str], bool],
    catalog: Catalog,
    input_fields: set[str] | None,
    variables: Mapping[str, Any],
) -> str | None:
    head, rest = ref_head(ref)
    if head == "trigger":
        if rest and input_fields is not None and rest[0] not in input_fields:
            return f"The run input has no field '{rest[0]}'. Input fields: {listing(input_fields)}."
        return None
    if head == "env":
        return None if rest else "Use {{env.NAME}} to read an env value."
    if head == "vars":
        if not rest or rest[0] not in variables:
            name = ".".join(rest)
            return f"Workflow variable '{name}' is not declared. Variables: {listing(variables)}."
        return None
    target = blocks.get(head)
    if target is None or not target.enabled:
        if head in names:
            target = blocks[names[head]]
        elif target is not None:
            return (
                f"Block '{head}' is disabled, so it produces no output; "
                "enable it or use another block."
            )
        else:
            known = [b.id for b in blocks.values() if b.enabled]
            return (
                f"Reference '{head}' does not match any block id or name. Blocks: {listing(known)}."
            )
    if not is_up(target.id):
        return (
            f"Block '{block.id}' references '{target.id}' but {target.id} is not upstream "
            f"— connect them ({target.id} → … → {block.id})."
        )
    conn = catalog.find(target.type)
    fields = conn.output_fields if conn is not None else None
    if target.for_each:
        fields = EACH_OUTPUTS
    if rest and fields is not None and rest[0] not in fields:
        return (
            f"Block '{target.id}' ({target.type}) does not declare output '{rest[0]}'. "
            f"Available: {listing(fields)}."
        )
    return None


def _input_fields(workflow: SerializedWorkflow) -> set[str] | None:
    schema = workflow.metadata.input_schema if workflow.metadata else None
    if not schema or "properties" not in schema:
        return None
    return set(schema["properties"])


def _issue(
    block: SerializedBlock, field: str | None, error: str, value: Any = None
) -> ValidationIssue:
    return ValidationIssue(
        block_id=block.id, block_type=block.type, field=field, value=value, error=error
    )


def check_structure(workflow: SerializedWorkflow, catalog: Catalog) -> list[str]:
    """Problems no executor can run past: duplicate ids, ghost edges, unknown types, cycles."""
    problems = []
    ids = Counter(b.id for b in workflow.blocks)
    problems += [
        f"Block id '{i}' is used by {n} blocks; ids must be unique."
        for i, n in ids.items()
        if n > 1
    ]
    for b in workflow.blocks:
        why = block_id_problem(b.id)
        if why:
            problems.append(f"Block '{b.id}': {why}")
        if b.type not in catalog:
            problems.append(
                f"Block '{b.id}' uses connector type '{b.type}', which is not registered "
                f"(register it with kit.register). Known: {listing(catalog.types())}."
            )
        problems += _for_each_problems(b, catalog)
    for c in workflow.connections:
        for end in (c.source, c.target):
            if end not in ids:
                problems.append(
                    f"Connection {c.source} → {c.target} names block '{end}', which does not exist."
                )
    cycle = find_cycle(build_graph(workflow))
    if cycle:
        problems.append(f"The workflow has a cycle: {' → '.join([*cycle, cycle[0]])}.")
    return problems


def _for_each_problems(b: SerializedBlock, catalog: Catalog) -> list[str]:
    out = []
    if b.for_each is not None:
        try:
            parse_for_each(b.for_each)
        except ValueError as e:
            out.append(f"Block '{b.id}': {e}.")
        conn = catalog.find(b.type)
        if conn is not None and conn.kind != "compute":
            out.append(f"Block '{b.id}': for_each needs a compute step, not a {conn.kind} block.")
    if b.concurrency is not None:
        try:
            parse_concurrency(b.concurrency)
        except ValueError as e:
            out.append(f"Block '{b.id}': {e}.")
    return out


def check_workflow(workflow: SerializedWorkflow, catalog: Catalog) -> list[str]:
    """Every problem with ``workflow``, as lines a person can act on."""
    problems = check_structure(workflow, catalog)
    if problems:
        return problems
    issues = []
    for b in workflow.blocks:
        conn = catalog.find(b.type)
        if b.enabled and conn is not None and conn.kind != "trigger":
            issues += check_params(b, conn)
    issues += check_refs(workflow, catalog)
    return [format_issue(i) for i in issues]


def format_issue(issue: ValidationIssue) -> str:
    """One line: ``block (type) field: error``."""
    field = f" param '{issue.field}'" if issue.field else ""
    return f"Block '{issue.block_id}' ({issue.block_type}){field}: {issue.error}"


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
