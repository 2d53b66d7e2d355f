"""``apply_operations``: the LLM-facing patch surface.

The LLM never writes whole workflows; it sends :data:`EditOp` lists. Each op
is checked on its own and applied or skipped with a typed reason; nothing
here raises on LLM input, and the input workflow is never mutated.

Guarantees: hidden params are never shown, accepted or dropped; user-only
params are never set by an op; no cycle is ever introduced; a param an op
sets whose ``{{ref}}`` does not resolve (exists, upstream, declared output)
at the end of the batch is not applied, on disabled blocks too.

What an op may carry: plain JSON values only (see :func:`validation.json_copy`:
str keys, finite floats, ints of at most 100 digits, at most 64 levels deep);
an op holding anything else is skipped as ``invalid_operation``. An op may not
introduce an ``{{env.X}}`` the workflow does not read yet (``env_ref_not_allowed``)
unless X is in ``allow_env``, nor add a block whose id is the name of another
block that a ref reads by name (``block_id_shadows_name``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from .connectors import Catalog, Connector
from .controls import parse_concurrency, parse_for_each, parse_retries, parse_timeout
from .errors import listing
from .graph import Upstream, build_graph, find_cycle, would_cycle
from .ref_checks import WHEN, block_issue, check_refs
from .templates import env_refs, has_template, iter_refs, ref_head
from .validation import (
    MAX_DEPTH,
    NotJson,
    block_id_problem,
    check_controls,
    check_params,
    clip,
    json_copy,
    kind,
)
from .wire import (
    EDIT_OP_ADAPTER,
    AddOp,
    ApplyResult,
    ConnectOp,
    DeleteOp,
    DisconnectOp,
    EditBlockOp,
    SerializedBlock,
    SerializedConnection,
    SerializedWorkflow,
    SkippedItem,
    SkipReason,
    ValidationIssue,
)

if TYPE_CHECKING:
    import networkx as nx

MAX_OPS = 500
_ABSENT = object()
_REVERTED = object()


class _Patcher:
    def __init__(
        self, workflow: SerializedWorkflow, catalog: Catalog, allow_env: Collection[str]
    ) -> None:
        self.wf = workflow
        self.catalog = catalog
        self.allow_env = allow_env
        self.input_params = [dict(b.params) for b in workflow.blocks]  # values are replaced,
        self.input_whens = [b.when for b in workflow.blocks if b.when]
        self.when_before: dict[str, tuple[str | None, str]] = {}  # id -> (`when` before, op)
        self._env_ok: set[str] | None = None  # never edited in place: env refs read lazily
        self.blocks = {b.id: b for b in workflow.blocks}
        self.graph: nx.DiGraph[str] = build_graph(workflow, include_disabled=True)
        self.pairs = Counter((c.source, c.target) for c in workflow.connections)
        self.skipped: list[SkippedItem] = []
        self.issues: list[ValidationIssue] = []
        # (block_id, param) -> value before this batch (or _ABSENT)
        self.touched: dict[tuple[str, str], Any] = {}
        self.changed: set[str] = set()  # blocks added or edited by this batch

    # ── bookkeeping ──
    def skip(self, code: SkipReason, op: str, block_id: str, reason: str, **details: Any) -> None:
        self.skipped.append(
            SkippedItem(
                reason_code=code,
                operation_type=op,
                block_id=block_id[:200],
                reason=reason,
                details=details or None,
            )
        )

    def issue(
        self, block: SerializedBlock, field: str | None, code: str, error: str, value: Any = None
    ) -> None:
        self.issues.append(block_issue(block, field, code, error, value))

    def known(self) -> str:
        return listing(self.blocks)

    # ── params ──
    def accept_params(self, block: SerializedBlock, conn: Connector, raw: dict[str, Any]) -> None:
        """Set the params an LLM may set; drop (and report) the rest."""
        allowed = conn.llm_settable
        for key, value in raw.items():
            spec = conn.param_specs.get(key)
            if spec is None or spec.visibility == "hidden":
                self.issue(
                    block,
                    key,
                    "unknown-param",
                    f"Field '{key}' is not exposed by block '{conn.type}'. "
                    f"Allowed: {listing(allowed)}.",
                    None if spec else value,
                )
                continue
            if spec.visibility == "user-only":
                self.issue(
                    block,
                    key,
                    "user-only-param",
                    f"Field '{key}' of '{conn.type}' is set by the user only; "
                    "ask the user to set it.",
                )
                continue
            if not has_template(value):
                why = conn.check_param(key, value)
                if why:
                    self.issue(
                        block,
                        key,
                        "invalid-param-value",
                        f"{why}. The field was not changed.",
                        value,
                    )
                    continue
            self.touched.setdefault((block.id, key), block.params.get(key, _ABSENT))
            block.params[key] = value

    def new_env_ref(
        self, op: str, block_id: str, conn: Connector | None, raw: dict[str, Any]
    ) -> bool:
        """Skip the op (True) when a param it would set (``conn`` None: its ``when``)
        reads an env value not yet read."""
        settable = conn.llm_settable if conn is not None else tuple(raw)
        for key, value in raw.items():
            if key not in settable:
                continue  # dropped with an issue anyway
            reads = env_refs(value)
            if not reads:
                continue
            if self._env_ok is None:
                self._env_ok = (
                    env_refs(self.input_params) | env_refs(self.input_whens) | set(self.allow_env)
                )
            new = sorted(reads - self._env_ok)
            if new:
                name = clip(new[0], 80)
                self.skip(
                    "env_ref_not_allowed",
                    op,
                    block_id,
                    f"Block '{clip(block_id)}' param '{clip(key)}' would read "
                    f"{{{{env.{name}}}}}, which this workflow does not use; secrets are set by "
                    f"the user. Leave the param out or ask the user to allow env {name}.",
                    param=key,
                    env=new,
                )
                return True
        return False

    def read_controls(self, op: AddOp | EditBlockOp, block_id: str) -> dict[str, Any] | None:
        """The step controls ``op`` sets (None to remove), or None after skipping the op."""
        name = op.operation_type
        out: dict[str, Any] = {}
        parsers = {
            "retries": parse_retries,
            "timeout": parse_timeout,
            "for_each": parse_for_each,
            "concurrency": parse_concurrency,
        }
        for key in ("retries", "timeout", "when", "for_each", "concurrency"):
            if key not in op.model_fields_set:
                continue
            value = getattr(op, key)
            try:
                if value is None:
                    out[key] = None
                elif key == "when":
                    if not isinstance(value, str):
                        raise ValueError('must be a template string like "{{approve.approved}}"')
                    out[key] = value
                else:
                    out[key] = parsers[key](value)
            except ValueError as e:
                reason = f"Block '{clip(block_id)}' {key}: {e}. The operation was not applied."
                wire_key = "forEach" if key == "for_each" else key
                self.skip("invalid_step_control", name, block_id, reason, field=wire_key)
                return None
        when = out.get("when")
        if when and env_refs(when) and self.new_env_ref(name, block_id, None, {"when": when}):
            return None
        return out

    def set_controls(self, block: SerializedBlock, controls: dict[str, Any], op: str) -> None:
        for key, value in controls.items():
            if key == "when":
                self.when_before.setdefault(block.id, (block.when, op))
            setattr(block, key, value)

    def shadowed(self, block_id: str) -> str | None:
        """The block whose name ``block_id`` equals, when some ref reads that name."""
        owner = next(
            (b.id for b in self.wf.blocks if b.name == block_id and b.id != block_id), None
        )
        if owner is None:
            return None
        for b in self.wf.blocks:
            if any(ref_head(r)[0] == block_id for r in iter_refs(b.params)):
                return owner
        return None

    # ── ops ──
    def add(self, op: AddOp) -> None:
        if op.block_id in self.blocks:
            self.skip(
                "block_already_exists",
                "add",
                op.block_id,
                f"Block {op.block_id} already exists. Use 'edit' instead.",
            )
            return
        why = block_id_problem(op.block_id)
        if why:
            self.skip("invalid_block_id", "add", op.block_id, why)
            return
        conn = self.catalog.find(op.type)
        if conn is None:
            self.skip(
                "block_type_not_registered",
                "add",
                op.block_id,
                f"Block type '{op.type}' is not registered. Available: "
                f"{listing(self.catalog.types())}.",
            )
            return
        owner = self.shadowed(op.block_id)
        if owner is not None:
            self.skip(
                "block_id_shadows_name",
                "add",
                op.block_id,
                f"Block id '{op.block_id}' is the name of block '{owner}', and refs "
                f"{{{{{op.block_id}.…}}}} read '{owner}' by that name; a block with this id "
                "would take them over. Choose another id.",
            )
            return
        if self.new_env_ref("add", op.block_id, conn, op.params):
            return
        controls = self.read_controls(op, op.block_id)
        if controls is None:
            return
        block = SerializedBlock(id=op.block_id, type=op.type, name=op.name)
        self.blocks[block.id] = block
        self.wf.blocks.append(block)
        self.graph.add_node(block.id)
        self.changed.add(block.id)
        self.set_controls(block, controls, "add")
        self.accept_params(block, conn, op.params)

    def edit(self, op: EditBlockOp) -> None:
        block = self.blocks.get(op.block_id)
        if block is None:
            self.skip(
                "block_not_found",
                "edit",
                op.block_id,
                f"Block {op.block_id} does not exist. Use 'add' to create it first. "
                f"Blocks: {self.known()}.",
            )
            return
        conn = self.catalog.find(block.type)
        if conn is None:
            self.skip(
                "block_type_not_registered",
                "edit",
                op.block_id,
                f"Block type {block.type} is not registered.",
            )
            return
        if op.params and self.new_env_ref("edit", block.id, conn, op.params):
            return
        controls = self.read_controls(op, block.id)
        if controls is None:
            return
        self.changed.add(block.id)
        self.set_controls(block, controls, op.operation_type)
        if op.name is not None:
            block.name = op.name
        if op.params:
            self.accept_params(block, conn, op.params)

    def delete(self, op: DeleteOp) -> None:
        if op.block_id not in self.blocks:
            self.skip(
                "block_not_found",
                "delete",
                op.block_id,
                f"Block {op.block_id} does not exist. Blocks: {self.known()}.",
            )
            return
        block = self.blocks.pop(op.block_id)
        self.changed.discard(op.block_id)
        self.touched = {k: v for k, v in self.touched.items() if k[0] != op.block_id}
        self.when_before.pop(op.block_id, None)
        self.wf.blocks = [b for b in self.wf.blocks if b is not block]
        self.wf.connections = [
            c for c in self.wf.connections if op.block_id not in (c.source, c.target)
        ]
        for pair in [p for p in self.pairs if op.block_id in p]:
            del self.pairs[pair]
        self.graph.remove_node(op.block_id)

    def connect(self, op: ConnectOp) -> None:
        src, dst = op.block_id, op.target_block_id
        if src not in self.blocks:
            self.skip(
                "invalid_edge_source",
                "connect",
                src,
                f"Source block {src} does not exist. Blocks: {self.known()}.",
            )
            return
        if dst not in self.blocks:
            self.skip(
                "invalid_edge_target",
                "connect",
                src,
                f"Target block {dst} does not exist. Blocks: {self.known()}.",
                target_block_id=dst,
            )
            return
        if any(
            c.source == src and c.target == dst and c.source_handle == (op.source_handle or None)
            for c in self.wf.connections
        ):
            self.skip(
                "duplicate_connection",
                "connect",
                src,
                "That connection already exists.",
                target_block_id=dst,
            )
            return
        if would_cycle(self.graph, src, dst):
            self.skip(
                "cycle_introduced",
                "connect",
                src,
                f"Adding edge {src} → {dst} would create a cycle.",
                target_block_id=dst,
            )
            return
        self.wf.connections.append(
            SerializedConnection(
                source=src,
                target=dst,
                source_handle=op.source_handle or None,
                condition=op.condition or None,
            )
        )
        self.pairs[(src, dst)] += 1
        self.graph.add_edge(src, dst)

    def disconnect(self, op: DisconnectOp) -> None:
        src, dst = op.block_id, op.target_block_id
        idx = next(
            (i for i, c in enumerate(self.wf.connections) if c.source == src and c.target == dst),
            None,
        )
        if idx is None:
            self.skip(
                "edge_not_found",
                "disconnect",
                src,
                f"No edge from {src} to {dst}.",
                target_block_id=dst,
            )
            return
        del self.wf.connections[idx]
        self.pairs[(src, dst)] -= 1
        if self.pairs[(src, dst)] <= 0:
            del self.pairs[(src, dst)]
            self.graph.remove_edge(src, dst)

    def revert_whens(self, issues: list[ValidationIssue]) -> None:
        """A ``when`` an op set whose ref does not resolve: put the old one back, skip."""
        for i in issues:
            if i.block_id not in self.when_before:
                continue  # one skip per block
            block = self.blocks[i.block_id]
            block.when, op = self.when_before.pop(i.block_id)
            self.skip(
                "invalid_step_control",
                op,
                i.block_id,
                f"Block '{clip(i.block_id)}' when {i.value}: {i.error} The when was not changed.",
                field=WHEN,
            )

    def redact(self, issue: ValidationIssue) -> ValidationIssue:
        """Keep a hidden param's name and value out of what the LLM reads."""
        conn = self.catalog.find(issue.block_type)
        if conn is None or issue.field not in conn.hidden_params:
            return issue
        return issue.model_copy(
            update={
                "field": None,
                "value": None,
                "error": "A param set by the user has an invalid reference; ask the user to fix it",
            }
        )

    # ── end of batch ──
    def finish(self) -> None:
        """Revert op-set params whose refs do not resolve; report every remaining problem."""
        all_enabled = all(b.enabled for b in self.wf.blocks)
        enabled_graph = self.graph if all_enabled else build_graph(self.wf)
        up = Upstream(enabled_graph)
        found = check_refs(self.wf, self.catalog, only=self.changed, upstream=up, disabled=True)
        self.revert_whens([i for i in found if i.field == WHEN and i.block_id in self.when_before])
        bad = [
            i
            for i in found
            if (i.block_id, i.field) in self.touched
            and not (i.field == WHEN and i.block_id in self.when_before)
        ]
        for i in bad:
            i.error += " The field was not changed."
            if i.field is None:
                continue
            before = self.touched.pop((i.block_id, i.field), _REVERTED)  # one revert per field
            if before is _REVERTED:
                continue
            block = self.blocks[i.block_id]
            if before is _ABSENT:
                block.params.pop(i.field, None)
            else:
                block.params[i.field] = before
        self.issues += bad
        cycle = find_cycle(enabled_graph)
        if cycle:
            self.issues.append(
                ValidationIssue(
                    block_id="*",
                    block_type="*",
                    code="cycle",
                    error=f"Graph invalid: cycle {' → '.join(cycle)}.",
                )
            )
        self.issues += [
            self.redact(i) for i in check_refs(self.wf, self.catalog, upstream=up, disabled=True)
        ]
        for bid in sorted(self.changed & set(self.blocks)):
            block = self.blocks[bid]
            conn = self.catalog.find(block.type)
            if conn is not None:
                self.issues += check_params(block, conn, names=())
                self.issues += check_controls(block, conn)


Op = AddOp | EditBlockOp | DeleteOp | ConnectOp | DisconnectOp
_SHAPE = (
    "Each op is a JSON object with operation_type (add|edit|delete|connect|disconnect) "
    "and its fields."
)


def _read(raw: Any) -> Op | str:
    """An op model holding only plain JSON values, or why ``raw`` is not one."""
    if isinstance(raw, BaseModel):
        try:
            raw = dict(raw)  # its fields, shallow; the values are checked below
        except Exception:
            return f"A {kind(raw)} could not be read as an operation. {_SHAPE}"
    if not isinstance(raw, dict):
        return f"An operation must be a JSON object, got a {kind(raw)}. {_SHAPE}"
    clean: dict[str, Any] = {}
    try:
        for key, value in dict.items(raw):
            if type(key) is not str:
                raise NotJson(f"operation keys must be strings, got a {kind(key)} key")
            clean[key] = json_copy(value, clip(key), MAX_DEPTH + 1)  # +1: the params object
    except NotJson as e:
        return f"Malformed operation ({e})."
    try:
        return EDIT_OP_ADAPTER.validate_python(clean)
    except ValidationError as e:
        errs = "; ".join(
            f"{'.'.join(clip(str(p)) for p in err['loc']) or 'op'}: {err['msg']}"
            for err in e.errors()[:3]
        )
        return f"Malformed operation ({errs}). {_SHAPE}"


def _text_field(raw: Any, key: str, default: str) -> str:
    """``raw[key]`` when ``raw`` is a dict and that value is a plain str, else ``default``."""
    if isinstance(raw, dict):
        for k, v in dict.items(raw):
            if type(k) is str and k == key and type(v) is str:
                return v
    return default


def _as_list(ops: Any) -> list[Any] | None:
    """The ops as a list, or None when ``ops`` is not a list of ops (one object, text, ...)."""
    if isinstance(ops, list):
        return ops
    if isinstance(ops, dict | str | bytes | BaseModel) or not isinstance(ops, Iterable):
        return None
    try:
        return list(ops)
    except Exception:
        return None


def apply_operations(
    workflow: SerializedWorkflow | dict[str, Any] | str,
    ops: Iterable[Any],
    catalog: Catalog | None = None,
    *,
    allow_env: Collection[str] = (),
    max_ops: int = MAX_OPS,
) -> ApplyResult:
    """Apply LLM edit ops to a copy of ``workflow``; skip bad ops, never raise on them.

    Args:
        workflow: The workflow (model, dict or JSON); never mutated.
        ops: ``EditOp`` models or raw dicts, straight from the model's answer.
        catalog: The connectors the LLM may use (builtins by default).
        allow_env: Env names ops may read (``{{env.X}}``) although the workflow does not
            read them yet; any other new env ref skips its op as ``env_ref_not_allowed``.
        max_ops: Ops past this many are skipped as ``too_many_operations``.

    Returns:
        An :class:`ApplyResult`; ``ok`` only when nothing was skipped and no
        validation issue remains. ``summary`` is written for the LLM to read.
    """
    if isinstance(workflow, SerializedWorkflow):
        wf = SerializedWorkflow.model_validate_json(workflow.model_dump_json(by_alias=True))
        wf._input_model = workflow.input_model
    elif isinstance(workflow, str | bytes):
        wf = SerializedWorkflow.model_validate_json(workflow)
    else:
        wf = SerializedWorkflow.model_validate(workflow)
    p = _Patcher(wf, catalog if catalog is not None else Catalog(), allow_env)
    listed = _as_list(ops)
    if listed is None:
        p.skip(
            "invalid_operation",
            "*",
            "*",
            f"The operations must be a list of operation objects, got a {kind(ops)}. "
            "Send [{...}, {...}] (one object per op).",
        )
    ops = listed if listed is not None else []
    for i, raw in enumerate(ops):
        if i >= max_ops:
            p.skip(
                "too_many_operations",
                "*",
                "*",
                f"Only {max_ops} operations are applied per batch; {len(ops) - max_ops} "
                "were not. Send the rest in another batch.",
            )
            break
        op = _read(raw)
        if isinstance(op, str):
            otype = clip(_text_field(raw, "operation_type", "?"), 40)
            p.skip("invalid_operation", otype, _text_field(raw, "block_id", "?"), op)
        elif isinstance(op, AddOp):
            p.add(op)
        elif isinstance(op, EditBlockOp):
            p.edit(op)
        elif isinstance(op, DeleteOp):
            p.delete(op)
        elif isinstance(op, ConnectOp):
            p.connect(op)
        else:
            p.disconnect(op)
    p.finish()
    return ApplyResult(
        ok=not p.skipped and not p.issues,
        workflow=p.wf,
        validation_errors=p.issues,
        skipped_items=p.skipped,
        summary=summarize(len(ops) if listed is not None else 1, p.skipped, p.issues),
    )


def summarize(n_ops: int, skipped: list[SkippedItem], issues: list[ValidationIssue]) -> str:
    """The text the LLM reads back in the repair loop."""
    if not skipped and not issues:
        return f"Applied all {n_ops} operation(s) successfully."
    lines = [f"Applied {n_ops - len(skipped)} of {n_ops} operation(s)."]
    if skipped:
        lines.append(f"{len(skipped)} skipped:")
        lines += [
            f"  • [{s.reason_code}] {s.operation_type} {s.block_id}: {s.reason}" for s in skipped
        ]
    if issues:
        lines.append(f"{len(issues)} validation error(s):")
        for e in issues:
            field = f" field '{e.field}'" if e.field else ""
            lines.append(f"  • [{e.code}] {e.block_id} ({e.block_type}){field}: {e.error}")
    return "\n".join(lines)


def redact_for_llm(workflow: SerializedWorkflow, catalog: Catalog) -> dict[str, Any]:
    """The workflow as the LLM may see it: hidden params (names and values) removed."""
    data = workflow.to_dict()
    for block in data.get("blocks", []):
        conn = catalog.find(block.get("type", ""))
        if conn is not None and conn.hidden_params:
            block["params"] = {
                k: v for k, v in block.get("params", {}).items() if k not in conn.hidden_params
            }
    return data
