"""``apply_operations``: the LLM-facing patch surface.

The LLM never writes whole workflows; it sends :data:`EditOp` lists. Each op
is checked on its own and applied or skipped with a typed reason; nothing
here raises on LLM input, and the input workflow is never mutated.

Guarantees: hidden params are never shown, accepted or dropped; user-only
params are never set by an op; no cycle is ever introduced; a param an op
sets whose ``{{ref}}`` does not resolve (exists, upstream, declared output)
at the end of the batch is not applied.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from .connectors import Catalog, Connector
from .errors import listing
from .graph import Upstream, build_graph, find_cycle, would_cycle
from .templates import has_template
from .validation import block_id_problem, check_params, check_refs
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
    def __init__(self, workflow: SerializedWorkflow, catalog: Catalog) -> None:
        self.wf = workflow
        self.catalog = catalog
        self.blocks = {b.id: b for b in workflow.blocks}
        self.graph: nx.DiGraph[str] = build_graph(workflow, include_disabled=True)
        self.pairs = Counter((c.source, c.target) for c in workflow.connections)
        self.skipped: list[SkippedItem] = []
        self.issues: list[ValidationIssue] = []
        # (block_id, param) -> value before this batch (or _ABSENT)
        self.touched: dict[tuple[str, str], Any] = {}
        self.changed: set[str] = set()  # blocks added or edited by this batch

    # ── bookkeeping ──
    def skip(self, code: SkipReason, op: str, block_id: Any, reason: str, **details: Any) -> None:
        self.skipped.append(
            SkippedItem(
                reason_code=code,
                operation_type=op,
                block_id=str(block_id)[:200],
                reason=reason,
                details=details or None,
            )
        )

    def issue(
        self, block: SerializedBlock, field: str | None, error: str, value: Any = None
    ) -> None:
        self.issues.append(
            ValidationIssue(
                block_id=block.id, block_type=block.type, field=field, value=value, error=error
            )
        )

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
                    f"Field '{key}' is not exposed by block '{conn.type}'. "
                    f"Allowed: {listing(allowed)}.",
                    None if spec else value,
                )
                continue
            if spec.visibility == "user-only":
                self.issue(
                    block,
                    key,
                    f"Field '{key}' of '{conn.type}' is set by the user only; "
                    "ask the user to set it.",
                )
                continue
            if not has_template(value):
                why = conn.check_param(key, value)
                if why:
                    self.issue(block, key, f"{why}. The field was not changed.", value)
                    continue
            self.touched.setdefault((block.id, key), block.params.get(key, _ABSENT))
            block.params[key] = value

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
        block = SerializedBlock(id=op.block_id, type=op.type, name=op.name)
        self.blocks[block.id] = block
        self.wf.blocks.append(block)
        self.graph.add_node(block.id)
        self.changed.add(block.id)
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
        self.changed.add(block.id)
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
        bad = [
            i
            for i in check_refs(self.wf, self.catalog, only=self.changed, upstream=up)
            if (i.block_id, i.field) in self.touched
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
                    block_id="*", block_type="*", error=f"Graph invalid: cycle {' → '.join(cycle)}."
                )
            )
        self.issues += [self.redact(i) for i in check_refs(self.wf, self.catalog, upstream=up)]
        for bid in sorted(self.changed & set(self.blocks)):
            block = self.blocks[bid]
            conn = self.catalog.find(block.type)
            if conn is not None:
                self.issues += check_params(block, conn, names=())


def _parse(raw: Any) -> AddOp | EditBlockOp | DeleteOp | ConnectOp | DisconnectOp | str:
    """An op model, or why it is malformed."""
    if isinstance(raw, AddOp | EditBlockOp | DeleteOp | ConnectOp | DisconnectOp):
        return raw
    if isinstance(raw, BaseModel):
        raw = raw.model_dump()
    try:
        return EDIT_OP_ADAPTER.validate_python(raw)
    except ValidationError as e:
        errs = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'op'}: {err['msg']}"
            for err in e.errors()[:3]
        )
        return (
            f"Malformed operation ({errs}). Each op needs operation_type "
            "(add|edit|delete|connect|disconnect) and its fields."
        )


def apply_operations(
    workflow: SerializedWorkflow | dict[str, Any] | str,
    ops: Iterable[Any],
    catalog: Catalog | None = None,
    *,
    max_ops: int = MAX_OPS,
) -> ApplyResult:
    """Apply LLM edit ops to a copy of ``workflow``; skip bad ops, never raise on them.

    Args:
        workflow: The workflow (model, dict or JSON); never mutated.
        ops: ``EditOp`` models or raw dicts, straight from the model's answer.
        catalog: The connectors the LLM may use (builtins by default).
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
    p = _Patcher(wf, catalog if catalog is not None else Catalog())
    ops = list(ops) if not isinstance(ops, list) else ops
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
        op = _parse(raw)
        if isinstance(op, str):
            bid = raw.get("block_id", "?") if isinstance(raw, dict) else "?"
            otype = raw.get("operation_type", "?") if isinstance(raw, dict) else "?"
            p.skip("invalid_operation", str(otype)[:40], bid, op)
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
        summary=summarize(len(ops), p.skipped, p.issues),
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
            lines.append(f"  • {e.block_id} ({e.block_type}){field}: {e.error}")
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
