"""Checks a workflow against a catalog: structure, params, ``{{refs}}``, run input.

One set of rules serves ``apply_operations`` (as data for the LLM),
``compile_workflow`` (as :class:`WorkflowInvalid` for a person), the builder,
the ``%%workflow`` YAML and both executors. Every problem has a stable code:

* structure: ``duplicate-block-id``, ``invalid-block-id``, ``unknown-connector``,
  ``unknown-edge-block``, ``cycle``, ``invalid-for-each``, ``for-each-not-compute``,
  ``invalid-concurrency``;
* params: ``unknown-param``, ``invalid-param-value``, ``missing-param``;
* controls: ``control-not-applicable`` (``retries``/``timeout`` on a block that waits);
* refs: ``unknown-block``, ``ref-disabled-block``, ``ref-not-upstream``,
  ``unknown-variable``, ``invalid-ref``, ``item-outside-for-each``,
  ``ref-unknown-field``, ``ref-type-mismatch`` (see :mod:`.ref_types`);
* raised only by the builder: ``invalid-retries``, ``invalid-timeout``,
  ``invalid-when``; reported only by ``apply_operations``: ``user-only-param``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from .connectors import Catalog, Connector
from .connectors.child import RUN_WORKFLOW
from .connectors.payload import dump_json
from .controls import ITEM_REFS, parse_concurrency, parse_for_each
from .errors import InputInvalid, Issue, WorkflowInvalid, listing, suggest
from .graph import Upstream, build_graph, find_cycle
from .input_schema import schema_model
from .ref_types import Missing, Typed, element, fits, mismatch, of_value, shape, walk
from .templates import NAMESPACES, has_template, iter_refs, ref_head, whole_ref
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
"""The ``field`` of a :class:`ValidationIssue` about a block's ``when`` (not a param)."""
FOR_EACH = "forEach"
"""The ``field`` of a :class:`ValidationIssue` about a block's ``forEach``."""
_LISTS = frozenset({"array", "table"})


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
                _issue(block, key, "unknown-param", unknown + suggest(key, specs), choices=specs)
            )
        elif not has_template(value):
            why = conn.check_param(key, value)
            if why:
                shown = None if key in conn.hidden_params else value
                issues.append(_issue(block, key, "invalid-param-value", why, shown))
    for name, spec in specs.items():
        if spec.required and spec.visibility != "hidden" and block.params.get(name) in (None, ""):
            issues.append(
                _issue(block, name, "missing-param", f"Required field '{name}' is missing.")
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
        _issue(
            block,
            key,
            "control-not-applicable",
            f"{conn.type} waits rather than runs, so a step {key} does not apply; {why}.",
        )
        for key, why in instead.items()
        if getattr(block, key) is not None
    ]


def check_refs(
    workflow: SerializedWorkflow,
    catalog: Catalog,
    *,
    only: Iterable[str] | None = None,
    upstream: Upstream | None = None,
    disabled: bool = False,
) -> list[ValidationIssue]:
    """Every ``{{ref}}`` must exist, be upstream, name a declared field and fit its param.

    A ref reads a field its source declares (the upstream connector's outputs
    model, the run input's model, a variable's value, a ``for_each`` item),
    down to its last part unless the type allows any key there. A param that is
    exactly one ref must be able to take what the ref's declared type holds
    (``ref-type-mismatch``); unknown types (``Any``, untyped outputs, an input
    without a model) always fit. A ``for_each`` must read a list or a table.

    The refs of a block's ``when`` are checked too; their issues have the
    field :data:`WHEN` (``"when"``).

    ``only`` limits the check to those block ids; ``upstream`` reuses a
    computed :class:`Upstream` of the enabled graph. With ``disabled`` the
    refs FROM disabled blocks are checked too, as if the block were enabled
    (upstream = its enabled predecessors and their ancestors); a ref TO a
    disabled block is always a problem, since that block produces no output.
    """
    up = upstream if upstream is not None else Upstream(build_graph(workflow))
    sources = _Sources(workflow, catalog)
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
                preds = _enabled_preds(workflow, sources.blocks)
            above = set(preds.get(block.id, ()))
            for p in preds.get(block.id, ()):
                above |= up.ancestors(p)
            is_up = above.__contains__
        else:
            continue
        issues += sources.check_block(block, is_up)
    return issues


class _Read:
    """What one ref reads: a problem (``code``, ``error``, the valid ``choices``), else
    its declared type."""

    __slots__ = ("choices", "code", "error", "type")

    def __init__(
        self,
        type: Typed | None = None,
        code: str | None = None,
        error: str | None = None,
        choices: Iterable[str] = (),
    ) -> None:
        self.type, self.code, self.error = type, code, error
        self.choices = sorted(choices)


class _Sources:
    """What the refs of one workflow read: its blocks, the run input, its variables."""

    def __init__(self, workflow: SerializedWorkflow, catalog: Catalog) -> None:
        self.blocks = {b.id: b for b in workflow.blocks}
        self.names = ids_by_name(workflow)
        self.catalog = catalog
        self.variables = workflow.variables or {}
        self.input = _input_type(workflow)

    def check_block(
        self, block: SerializedBlock, is_up: Callable[[str], bool]
    ) -> list[ValidationIssue]:
        """The issues of every ref in ``block``'s params, ``when`` and ``for_each``."""
        issues: list[ValidationIssue] = []
        conn = self.catalog.find(block.type)
        item: Typed | None = None
        if block.for_each:
            source = self.for_each_source(block, is_up)
            item = element(source.type) if source is not None else None
        fields = [
            *block.params.items(),
            *([(WHEN, block.when)] if block.when else []),
            *([(FOR_EACH, block.for_each)] if block.for_each else []),
        ]
        for key, value in fields:
            in_params = key not in (WHEN, FOR_EACH) or value is block.params.get(key)
            whole = whole_ref(value)
            for ref in iter_refs(value):
                read = self.read(ref, block, is_up, in_params, item)
                if read.code is not None:
                    error, at = read.error or "", f"{{{{{ref}}}}}"
                    issues.append(_issue(block, key, read.code, error, at, read.choices))
                elif ref == whole and key == FOR_EACH and not in_params:
                    kinds = shape(read.type)
                    if not fits(kinds, _LISTS):
                        why = mismatch(ref, read.type, "for_each", _LISTS)
                        issues.append(_issue(block, key, "ref-type-mismatch", why, value))
                elif ref == whole and in_params and conn is not None:
                    target = _param_type(conn, key)
                    if target is not None and not fits(shape(read.type), shape(target)):
                        why = mismatch(ref, read.type, key, shape(target))
                        shown = None if key in conn.hidden_params else value
                        issues.append(_issue(block, key, "ref-type-mismatch", why, shown))
        return issues

    def for_each_source(self, block: SerializedBlock, is_up: Callable[[str], bool]) -> _Read | None:
        """What a block's ``for_each`` reads (None when it is no single ref)."""
        ref = whole_ref(block.for_each)
        if ref is None:
            return None
        read = self.read(ref, block, is_up, False, None)
        return None if read.code is not None else read

    def read(
        self,
        ref: str,
        block: SerializedBlock,
        is_up: Callable[[str], bool],
        in_params: bool,
        item: Typed | None,
    ) -> _Read:
        """What ``ref`` (in a param when ``in_params``) of ``block`` reads."""
        head, rest = ref_head(ref)
        if head in ITEM_REFS:
            if not (block.for_each and in_params):
                why = (
                    f"{{{{{head}}}}} is only known in the params of a for_each step "
                    "(set for_each on this block, or read another value)."
                )
                return _Read(code="item-outside-for-each", error=why)
            if head == "item_index":
                return _Read(Typed.of({"type": "integer"}) if not rest else None)
            return self.field(item, rest, ref)
        if head == "trigger":
            return self.field(self.input, rest, ref)
        if head == "env":
            if rest:
                return _Read()
            return _Read(code="invalid-ref", error="Use {{env.NAME}} to read an env value.")
        if head == "vars":
            if not rest or rest[0] not in self.variables:
                name = ".".join(rest)
                why = (
                    f"Workflow variable '{name}' is not declared. "
                    f"Variables: {listing(self.variables)}.{suggest(name, self.variables)}"
                )
                return _Read(code="unknown-variable", error=why, choices=self.variables)
            return _Read(of_value(self.variables[rest[0]]) if len(rest) == 1 else None)
        target = self.blocks.get(head)
        if target is None or not target.enabled:
            if head in self.names:
                target = self.blocks[self.names[head]]
            elif target is not None:
                why = (
                    f"Block '{head}' is disabled, so it produces no output; "
                    "enable it or use another block."
                )
                return _Read(code="ref-disabled-block", error=why)
            else:
                known = self.readable(block)
                why = (
                    f"Reference '{head}' does not match any block id or name. "
                    f"Blocks: {listing(known)}.{suggest(head, [*known, *NAMESPACES])}"
                )
                return _Read(code="unknown-block", error=why, choices=[*known, *NAMESPACES])
        if not is_up(target.id):
            why = (
                f"Block '{block.id}' references '{target.id}' but {target.id} is not upstream "
                f"— connect them ({target.id} → … → {block.id})."
            )
            return _Read(code="ref-not-upstream", error=why)
        kind = f"for_each of {target.type}" if target.for_each else target.type
        return self.field(self.output_type(target), rest, ref, f"Block '{target.id}' ({kind})")

    def field(self, source: Typed | None, path: list[str], ref: str, owner: str = "") -> _Read:
        """The type at ``path`` in ``source``, or a ``ref-unknown-field`` problem.

        ``owner`` names the block whose output ``source`` is (``""``: the run
        input or a for_each item), for the message about a first part.
        """
        found = walk(source, path)
        if not isinstance(found, Missing):
            return _Read(found)
        choices = listing(found.choices)
        parts = ref.split(".")
        if found.depth == 0 and parts[0] == "trigger":
            why = f"The run input has no field '{found.field}'. Input fields: {choices}."
        elif found.depth == 0 and owner:
            why = f"{owner} does not declare output '{found.field}'. Available: {choices}."
        else:
            upto = ".".join(parts[: len(parts) - len(path) + found.depth])
            why = (
                f"{{{{{upto}}}}} has no field '{found.field}' (in {{{{{ref}}}}}). "
                f"Fields: {choices}."
            )
        return _Read(code="ref-unknown-field", error=why + found.hint(), choices=found.choices)

    def readable(self, block: SerializedBlock) -> list[str]:
        """The enabled blocks other than ``block`` and the trigger (read as ``{{trigger}}``)."""
        out = []
        for b in self.blocks.values():
            conn = self.catalog.find(b.type)
            if b.enabled and b.id != block.id and (conn is None or conn.kind != "trigger"):
                out.append(b.id)
        return out

    def output_type(self, block: SerializedBlock) -> Typed | None:
        """The declared type of ``block``'s output."""
        return output_type(self.catalog.find(block.type), for_each=bool(block.for_each))


def output_type(conn: Connector | None, *, for_each: bool = False) -> Typed | None:
    """The declared type of a step's output (None: unknown); a for_each step's is
    ``{items: [each output], failed: [{index, error}]}``."""
    schema = conn.output_schema if conn is not None else None
    if not for_each:
        return Typed.of(schema)
    each = {
        "type": "object",
        "properties": {"index": {"type": "integer"}, "error": {"type": "string"}},
    }
    return Typed.of(
        {
            "type": "object",
            "properties": {
                "items": {"type": "array", "items": schema or {}},
                "failed": {"type": "array", "items": each},
            },
            "$defs": (schema or {}).get("$defs", {}),
        }
    )


def _param_type(conn: Connector, key: str) -> Typed | None:
    props = conn.params_schema.get("properties", {})
    root = Typed.of(conn.params_schema)
    return root.at(props.get(key)) if root is not None else None


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


def _input_type(workflow: SerializedWorkflow) -> Typed | None:
    """The declared type of the run input: its JSON Schema, else its model's; None: any."""
    schema = workflow.metadata.input_schema if workflow.metadata else None
    if schema is None and workflow.input_model is not None:
        schema = workflow.input_model.model_json_schema()
    return Typed.of(schema)


def _issue(
    block: SerializedBlock,
    field: str | None,
    code: str,
    error: str,
    value: Any = None,
    choices: Iterable[str] = (),
) -> ValidationIssue:
    return ValidationIssue(
        block_id=block.id,
        block_type=block.type,
        code=code,
        field=field,
        value=value,
        error=error,
        choices=sorted(choices) or None,
    )


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
