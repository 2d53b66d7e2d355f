"""Pydantic models of the wire format: workflows, edit operations, results.

The JSON keys match the seed (`sourceHandle`, `operation_type`, ...) so a
workflow written for @thodare/engine loads here unchanged. No logic lives here.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, TypeAdapter, model_validator

WIRE_VERSION = "1.0.0"


class _Wire(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")


class Position(_Wire):
    """Where a block sits on a canvas."""

    x: int | float
    y: int | float


class StepRetries(_Wire):
    """A block's own retry policy: ``max`` attempts in all (the first included, so
    ``max: 1`` never retries), ``backoff`` seconds before the second attempt,
    doubling after each further failure (capped at 60 s)."""

    max: int
    backoff: float | None = None


class SerializedBlock(_Wire):
    """One step of a workflow: a connector type and its params.

    Step controls (absent when unset, so older JSON is unchanged): ``retries``
    overrides the connector's retry policy; ``when`` is a ``{{template}}``
    resolved when the step would run, and a falsy value skips the step and what
    needs it; ``timeout`` is the seconds one attempt may take; ``for_each``
    (``forEach`` in JSON) is a ``{{template}}`` giving a list (or a table: one
    item per row): the connector runs once per item, ``concurrency`` at a time
    (default 8), with ``{{item}}``/``{{item_index}}`` in its params.
    """

    id: str
    type: str
    name: str | None = None
    position: Position | None = None
    enabled: bool = True
    params: dict[str, Any] = Field(default_factory=dict)
    retries: StepRetries | None = None
    when: str | None = None
    timeout: float | None = None
    for_each: str | None = Field(default=None, alias="forEach")
    concurrency: int | None = None


class SerializedConnection(_Wire):
    """A directed edge; ``source_handle`` selects a branch (``sourceHandle`` in JSON)."""

    source: str
    target: str
    source_handle: str | None = Field(default=None, alias="sourceHandle")
    condition: str | None = None


class WorkflowMetadata(_Wire):
    """Name, description and (optionally) the JSON Schema of the run input."""

    name: str | None = None
    description: str | None = None
    input_schema: dict[str, Any] | None = Field(default=None, alias="inputSchema")


class SerializedWorkflow(_Wire):
    """A workflow document: blocks, connections, variables.

    ``input_model`` (not serialized) is the pydantic model runs are validated
    against, set by the builder; ``metadata.input_schema`` carries its JSON
    Schema in the document.
    """

    version: str = WIRE_VERSION
    metadata: WorkflowMetadata | None = None
    blocks: list[SerializedBlock] = Field(default_factory=list)
    connections: list[SerializedConnection] = Field(default_factory=list)
    variables: dict[str, Any] | None = None

    _input_model: type[BaseModel] | None = PrivateAttr(default=None)

    @model_validator(mode="before")
    @classmethod
    def _name_on_top(cls, data: Any) -> Any:
        """A ``name`` or ``description`` written at the top (``{"name": "x", "blocks":
        …}``) is the metadata's, unless the metadata says otherwise: not dropped."""
        if not isinstance(data, dict) or not ({"name", "description"} & data.keys()):
            return data
        data = dict(data)
        meta = data.get("metadata")
        meta = dict(meta) if isinstance(meta, dict) else {}
        for key in ("name", "description"):
            if key in data:
                meta.setdefault(key, data.pop(key))
        data["metadata"] = meta
        return data

    @property
    def name(self) -> str | None:
        """The workflow's name, if its metadata has one."""
        return self.metadata.name if self.metadata else None

    @property
    def input_model(self) -> type[BaseModel] | None:
        """The pydantic model of the run input, when the workflow was built in Python."""
        return self._input_model

    def to_json(self, *, indent: int | None = None) -> str:
        """Serialize with the seed's JSON keys; same workflow, same bytes."""
        return self.model_dump_json(by_alias=True, exclude_none=True, indent=indent)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready dict form (seed keys, no nulls)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)

    @classmethod
    def from_json(cls, data: str | bytes) -> SerializedWorkflow:
        """Load a workflow document (seed JSON accepted as is)."""
        return cls.model_validate_json(data)


# ── Edit operations (what the LLM emits) ───────────────────────────────────


class AddOp(_Wire):
    """Add a block of a registered type (with optional step controls)."""

    operation_type: Literal["add"]
    block_id: str
    type: str
    name: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    retries: Any = None
    when: Any = None
    timeout: Any = None
    for_each: Any = Field(default=None, alias="forEach")
    concurrency: Any = None


class EditBlockOp(_Wire):
    """Rename a block, merge new params into it, set its step controls (``update`` is
    an alias); a control sent as ``null`` is removed, one left out is kept."""

    operation_type: Literal["edit", "update"]
    block_id: str
    name: str | None = None
    params: dict[str, Any] | None = None
    retries: Any = None
    when: Any = None
    timeout: Any = None
    for_each: Any = Field(default=None, alias="forEach")
    concurrency: Any = None


class DeleteOp(_Wire):
    """Delete a block and every edge touching it (``remove`` is an alias)."""

    operation_type: Literal["delete", "remove"]
    block_id: str


class ConnectOp(_Wire):
    """Add an edge ``block_id → target_block_id``."""

    operation_type: Literal["connect"]
    block_id: str
    target_block_id: str
    source_handle: str | None = None
    condition: str | None = None


class DisconnectOp(_Wire):
    """Remove the edge ``block_id → target_block_id``."""

    operation_type: Literal["disconnect"]
    block_id: str
    target_block_id: str


EditOp = Annotated[
    AddOp | EditBlockOp | DeleteOp | ConnectOp | DisconnectOp,
    Field(discriminator="operation_type"),
]
EDIT_OP_ADAPTER: TypeAdapter[AddOp | EditBlockOp | DeleteOp | ConnectOp | DisconnectOp] = (
    TypeAdapter(EditOp)
)

SkipReason = Literal[
    "block_not_found",
    "block_already_exists",
    "block_type_not_registered",
    "invalid_block_id",
    "invalid_edge_source",
    "invalid_edge_target",
    "duplicate_connection",
    "edge_not_found",
    "cycle_introduced",
    "invalid_operation",
    "too_many_operations",
    "block_id_shadows_name",
    "env_ref_not_allowed",
    "invalid_step_control",
]


class SkippedItem(_Wire):
    """An op that was not applied, with a typed reason an LLM can act on."""

    reason_code: SkipReason
    operation_type: str
    block_id: str
    reason: str
    details: dict[str, Any] | None = None


class ValidationIssue(_Wire):
    """A problem with the resulting workflow (a dropped field, a bad ref, ...).

    ``code`` names the rule (``ref-type-mismatch``, ``unknown-param``, ...) and is
    stable; ``error`` is the sentence to act on; ``choices`` are the names that
    would have been valid (an unknown param, block, variable or field).
    """

    block_id: str
    block_type: str
    code: str
    field: str | None = None
    value: Any = None
    error: str
    choices: list[str] | None = None


class ApplyResult(_Wire):
    """What ``apply_operations`` returns; ``ok`` only with no skips and no issues."""

    ok: bool
    workflow: SerializedWorkflow
    validation_errors: list[ValidationIssue] = Field(default_factory=list)
    skipped_items: list[SkippedItem] = Field(default_factory=list)
    summary: str


# ── Pauses ─────────────────────────────────────────────────────────────────

PauseKind = Literal["duration", "event", "approval"]


class PauseInfo(_Wire):
    """Why and until when a run is parked at a wait block."""

    block_id: str
    kind: PauseKind
    resume_at: str | None = None
    resume_on_event: str | None = None
    correlation_key: str | None = None
    resume_token: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


# ── Run statuses ───────────────────────────────────────────────────────────

RunStatus = Literal["pending", "running", "waiting", "completed", "failed", "canceled"]
"""A durable run's status: ``pending`` (no worker has it), ``running`` (a worker holds
its lease), ``waiting`` (parked at a wait block), then one of the terminal three."""

RUN_STATUSES: tuple[RunStatus, ...] = get_args(RunStatus)
"""Every :data:`RunStatus`, in lifecycle order (for choices and validation)."""

TERMINAL_STATUSES: tuple[RunStatus, ...] = ("completed", "failed", "canceled")
"""The statuses a run never leaves."""
