"""The wait blocks: ``wait_duration``, ``wait_for_event``, ``human_approval``.

Their ``run`` returns a :class:`PauseInfo` describing the wait; the in-memory
executor stops there, the durable runtime parks the run without holding a
worker. Both executors build the block's output with :func:`wait_output`, so
``{{wait.data.x}}`` means the same thing in either.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, Field

from ..clock import utc_iso
from ..wire import PauseInfo, PauseKind
from .connector import Connector, define_connector
from .context import StepContext
from .visibility import UserOnly

Unit = Literal[
    "ms", "s", "m", "h", "d", "w",
    "milliseconds", "seconds", "minutes", "hours", "days", "weeks",
]  # fmt: skip
_SECONDS = {
    "ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800,
    "milliseconds": 0.001, "seconds": 1, "minutes": 60, "hours": 3600,
    "days": 86400, "weeks": 604800,
}  # fmt: skip


def duration_seconds(duration: float, unit: str) -> float:
    """``duration`` in ``unit`` as seconds (``unit``: ms|s|m|h|d|w or the long names)."""
    return float(duration) * _SECONDS[unit]


class WaitDurationParams(BaseModel):
    duration: float = Field(ge=0, description="How long to wait, in `unit`s.")
    unit: Unit = Field(description="ms | s | m | h | d | w")


class WaitDurationOut(BaseModel):
    resumedAt: str


def _wait_duration(p: WaitDurationParams, ctx: StepContext) -> PauseInfo:
    secs = duration_seconds(p.duration, p.unit)
    return PauseInfo(
        block_id=ctx.block_id,
        kind="duration",
        resume_at=utc_iso(time.time() + secs),
        resume_token=uuid.uuid4().hex,
        metadata={"requested_ms": secs * 1000},
    )


class WaitForEventParams(BaseModel):
    eventName: str = Field(min_length=1, description="The event that wakes the run.")
    correlationKey: str | None = Field(
        default=None, description="Only a signal sent with this key wakes this run."
    )
    timeoutHours: float | None = Field(default=None, gt=0)


class WaitForEventOut(BaseModel):
    data: Any = None
    timedOut: bool = False


def _wait_for_event(p: WaitForEventParams, ctx: StepContext) -> PauseInfo:
    return PauseInfo(
        block_id=ctx.block_id,
        kind="event",
        resume_on_event=p.eventName,
        correlation_key=p.correlationKey or None,
        resume_at=utc_iso(time.time() + p.timeoutHours * 3600) if p.timeoutHours else None,
        resume_token=uuid.uuid4().hex,
    )


class HumanApprovalParams(BaseModel):
    prompt: str = Field(min_length=1, description="What the approver is asked.")
    timeoutHours: float = Field(default=168, gt=0)
    resumeBaseUrl: UserOnly[str | None] = None


class HumanApprovalOut(BaseModel):
    """A ``human_approval`` step's output: the seed's ``approved``, ``by`` and ``note``.

    ``note`` is the approver's free text, as in the seed; ``comment`` is the
    same text under the name :meth:`Wfkit.approve` takes, so an answer giving
    either fills both. ``approved`` is None when nobody answered (``timedOut``).
    """

    approved: bool | None = None
    by: str | None = None
    note: str | None = None
    comment: str | None = None
    timedOut: bool = False


def _human_approval(p: HumanApprovalParams, ctx: StepContext) -> PauseInfo:
    token = uuid.uuid4().hex
    meta: dict[str, Any] = {"prompt": p.prompt}
    if p.resumeBaseUrl:
        meta["resume_url"] = f"{p.resumeBaseUrl.rstrip('/')}/{token}"
    return PauseInfo(
        block_id=ctx.block_id,
        kind="approval",
        resume_on_event=f"human_approval:{ctx.run_id}:{ctx.block_id}",
        resume_at=utc_iso(time.time() + p.timeoutHours * 3600),
        resume_token=token,
        metadata=meta,
    )


def wait_output(kind: PauseKind, payload: Any, *, timed_out: bool = False) -> dict[str, Any]:
    """The output a wait block produces when it wakes.

    duration → ``{resumedAt}``; event → ``{data, timedOut}``; approval → the
    answer's fields (as in the seed) with every key of :class:`HumanApprovalOut`
    present: ``note`` and ``comment`` fill each other; a timeout keeps no answer.
    """
    if kind == "duration":
        return {"resumedAt": utc_iso()}
    if kind == "event":
        return {"data": None if timed_out else payload, "timedOut": timed_out}
    answer = payload if isinstance(payload, dict) and not timed_out else {}
    note, comment = answer.get("note"), answer.get("comment")
    return {
        **answer,
        "approved": answer.get("approved"),
        "by": answer.get("by"),
        "note": comment if note is None else note,
        "comment": note if comment is None else comment,
        "timedOut": timed_out,
    }


WAITS: tuple[Connector, ...] = (
    define_connector(
        type="wait_duration",
        name="Wait: duration",
        description="Durably pause for a fixed duration.",
        params=WaitDurationParams,
        outputs=WaitDurationOut,
        run=_wait_duration,
        kind="wait",
    ),
    define_connector(
        type="wait_for_event",
        name="Wait: for event",
        description="Park the run until a named event (signal) arrives, with optional timeout.",
        params=WaitForEventParams,
        outputs=WaitForEventOut,
        run=_wait_for_event,
        kind="wait",
    ),
    define_connector(
        type="human_approval",
        name="Human approval",
        description="Pause until a person approves or rejects.",
        params=HumanApprovalParams,
        outputs=HumanApprovalOut,
        run=_human_approval,
        kind="wait",
    ),
)
