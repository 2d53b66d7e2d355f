"""The durable runtime's rows as Python values, and the JSON and text they are stored as."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str)


def dumps(value: Any) -> str:
    """Compact JSON for the database (one encoder for every call: ``json.dumps`` with
    options builds one a call)."""
    return _ENCODER.encode(value)


@dataclass
class RunRow:
    """A run as stored."""

    id: str
    namespace: str
    workflow_name: str | None
    workflow_json: str
    input: Any
    status: str
    idempotency_key: str | None
    created_at: float
    updated_at: float
    started_at: float | None
    ended_at: float | None
    deadline_at: float | None
    wake_at: float | None
    signal_horizon: int
    error: str | None
    failed_block: str | None
    outputs: dict[str, Any] | None
    lease_owner: str | None
    needs: list[str] | None
    claimed_from: str | None
    """For a claimed run: its status before the claim (pending, waiting or running)."""
    parent_run_id: str | None = None
    """For a child run (``run_workflow``): the run that started it."""
    parent_block_id: str | None = None
    """For a child run: the parent's block that started it."""
    forked_from: str | None = None
    """For a fork (``kit.fork``): the run whose steps it reused."""
    memo: list[tuple[str, str, Any]] | None = None
    """For a claimed run: ``(block_id, status, output)`` of its ended steps."""
    marked: tuple[str, ...] = ()
    """For a run inserted claimed: the steps whose start marker (attempt 1) its insert wrote."""
    committed: Future[None] | None = None
    """For a run handed to its worker before its insert committed (SQLite): done once
    the insert is durable (raises :class:`LeaseLost` if it was not); no step runs before."""


@dataclass(frozen=True)
class StepWrite:
    """One step row to write: a start marker (``running``) or an end
    (``completed``, ``failed``, ``skipped``)."""

    block_id: str
    type: str
    status: str
    attempt: int = 1
    output: Any = None
    error: str | None = None
    at: float = field(default_factory=time.time)
    """When the step started (a start marker) or ended."""
    params: Any = None
    """The params the attempt ran with, masked (:func:`~thodare_jupyter.redaction.masked_params`);
    ``None`` keeps those stored."""


@dataclass(frozen=True)
class ChildRunInfo:
    """A child run (``run_workflow``) as its parent lists it: the block that started it,
    its id, workflow and status."""

    block_id: str
    run_id: str
    workflow: str | None
    status: str


@dataclass
class WorkerRow:
    """A worker as it recorded itself: what it can run and when it was last alive."""

    id: str
    kind: str
    connector_types: list[str]
    concurrency: int
    lease_s: float
    started_at: float
    heartbeat_at: float
    runs_held: int


@dataclass
class StepRow:
    """A step as stored."""

    block_id: str
    type: str
    status: str
    attempt: int
    output: Any
    error: str | None
    started_at: float | None
    ended_at: float | None
    wait_event: str | None
    wait_key: str | None
    wake_at: float | None
    params: Any = None


def run_row(row: Any) -> RunRow:
    """A :class:`RunRow` from a ``thodare_runs`` row (with ``memo`` when the claim brought it)."""
    return run_of(row._mapping)


def run_of(m: Mapping[str, Any]) -> RunRow:
    """A :class:`RunRow` from a ``thodare_runs`` row's values by column name."""
    memo = m.get("memo")
    if isinstance(memo, str):
        memo = json.loads(memo)
    return RunRow(
        id=m["id"], namespace=m["namespace"], workflow_name=m["workflow_name"],
        workflow_json=m["workflow_json"], input=json.loads(m["input_json"]), status=m["status"],
        idempotency_key=m["idempotency_key"], created_at=m["created_at"],
        updated_at=m["updated_at"], started_at=m["started_at"], ended_at=m["ended_at"],
        deadline_at=m["deadline_at"], wake_at=m["wake_at"], signal_horizon=m["signal_horizon"],
        error=m["error"], failed_block=m["failed_block"],
        outputs=json.loads(m["outputs_json"]) if m["outputs_json"] else None,
        lease_owner=m["lease_owner"],
        needs=json.loads(m["needs"]) if m["needs"] else None, claimed_from=m["claimed_from"],
        parent_run_id=m.get("parent_run_id"), parent_block_id=m.get("parent_block_id"),
        forked_from=m.get("forked_from"),
        memo=None if "memo" not in m else [
            (b, st, json.loads(out) if out is not None else None) for b, st, out in memo or ()
        ],
    )  # fmt: skip


def step_row(row: Any) -> StepRow:
    """A :class:`StepRow` from a ``thodare_steps`` row."""
    m = row._mapping
    return StepRow(
        block_id=m["block_id"], type=m["type"], status=m["status"], attempt=m["attempt"],
        output=json.loads(m["output_json"]) if m["output_json"] is not None else None,
        error=m["error"], started_at=m["started_at"], ended_at=m["ended_at"],
        wait_event=m["wait_event"], wait_key=m["wait_key"], wake_at=m["wake_at"],
        params=json.loads(m["params_json"]) if m.get("params_json") is not None else None,
    )  # fmt: skip


def db_text(message: str | None) -> str | None:
    """A message as every database stores it: PostgreSQL text cannot hold a NUL byte."""
    return None if message is None else message.replace("\x00", "\\x00")


@dataclass(frozen=True)
class LogWrite:
    """The logs of one attempt of a step to store: ``(at, stream, text)`` lines, masked,
    and how many bytes were cut over the cap."""

    block_id: str
    attempt: int
    lines: list[tuple[float, str, str]]
    cut: int = 0
