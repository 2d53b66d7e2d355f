"""Checks every ``{{ref}}`` of a workflow: it names a block, variable, input field or
``for_each`` item that exists, is upstream, declares the field read, and fits its param.

The codes (``unknown-block``, ``ref-not-upstream``, ``ref-unknown-field``, ...) are
listed in :mod:`.validation`; the declared types come from :mod:`.ref_types`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .connectors import Catalog, Connector
from .controls import ITEM_REFS
from .errors import listing, suggest
from .graph import Upstream, build_graph
from .ref_types import Missing, Typed, element, fits, mismatch, of_value, shape, walk
from .templates import NAMESPACES, iter_refs, ref_head, whole_ref
from .wire import SerializedBlock, SerializedWorkflow, ValidationIssue

WHEN = "when"
"""The ``field`` of a :class:`ValidationIssue` about a block's ``when`` (not a param)."""
FOR_EACH = "forEach"
"""The ``field`` of a :class:`ValidationIssue` about a block's ``forEach``."""
_LISTS = frozenset({"array", "table"})


def ids_by_name(workflow: SerializedWorkflow) -> dict[str, str]:
    """Block names → ids for enabled blocks (the first block with a name wins)."""
    out: dict[str, str] = {}
    for b in workflow.blocks:
        if b.enabled and b.name and b.name not in out:
            out[b.name] = b.id
    return out


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
                    issues.append(block_issue(block, key, read.code, error, at, read.choices))
                elif ref == whole and key == FOR_EACH and not in_params:
                    kinds = shape(read.type)
                    if not fits(kinds, _LISTS):
                        why = mismatch(ref, read.type, "for_each", _LISTS)
                        issues.append(block_issue(block, key, "ref-type-mismatch", why, value))
                elif ref == whole and in_params and conn is not None:
                    target = _param_type(conn, key)
                    if target is not None and not fits(shape(read.type), shape(target)):
                        why = mismatch(ref, read.type, key, shape(target))
                        shown = None if key in conn.hidden_params else value
                        issues.append(block_issue(block, key, "ref-type-mismatch", why, shown))
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


def block_issue(
    block: SerializedBlock,
    field: str | None,
    code: str,
    error: str,
    value: Any = None,
    choices: Iterable[str] = (),
) -> ValidationIssue:
    """A :class:`ValidationIssue` about ``block``'s ``field``."""
    return ValidationIssue(
        block_id=block.id,
        block_type=block.type,
        code=code,
        field=field,
        value=value,
        error=error,
        choices=sorted(choices) or None,
    )
