"""Cron schedules in the database, each tick dispatched once by whichever worker looks first.

A due schedule is handled in one short write transaction that holds its row
(PostgreSQL: ``FOR UPDATE SKIP LOCKED``; SQLite: ``BEGIN IMMEDIATE``): the
tick's run is inserted (idempotency key ``cron:<name>:<tick>``) and the next
tick stored in the same commit. However many workers race, a tick fires once;
a crash between the two cannot happen.

Missed ticks (every worker was down) are never replayed one by one: policy
``once`` runs the latest missed tick once, ``skip`` drops a tick that is more
than :data:`MISSED_GRACE_S` late. A clock set back fires nothing twice: the
next tick is stored, so nothing is due until the clock passes it again.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
import sqlalchemy.dialects.postgresql
import sqlalchemy.dialects.sqlite

from ..clock import utc, utc_iso
from ..errors import ScheduleNotFound, ThodareError
from ..validation import input_model_of, validate_input
from ..wire import SerializedWorkflow
from .cron import latest_tick, next_tick
from .database import Database, retrying
from .lifecycle import Lifecycle
from .records import dumps
from .schema import schedules
from .store import Store

_Made = list[tuple[Any, ...]]
"""The runs a tick made, each as ``Lifecycle.run_created`` takes it."""
MISSED_GRACE_S = 60.0
"""With ``missed="skip"``, a tick dispatched later than this is dropped."""

log = logging.getLogger("thodare.schedules")
_DUE = (
    sa.select(schedules)
    .where(
        schedules.c.namespace == sa.bindparam("p_ns"),
        schedules.c.status == "active",
        schedules.c.next_at <= sa.bindparam("p_now"),
    )
    .order_by(schedules.c.next_at)
    .limit(1)
)


@dataclass(frozen=True)
class ScheduleInfo:
    """A schedule as stored. ``status``: ``active``, ``paused`` or ``ended`` (past ``until``)."""

    name: str
    workflow_name: str | None
    cron: str
    tz: str
    input: Any
    missed: str
    status: str
    next_at: datetime | None
    until: datetime | None
    last_tick: datetime | None
    last_run_id: str | None
    last_error: str | None
    created_at: datetime


def _info(r: Any) -> ScheduleInfo:
    return ScheduleInfo(
        name=r.name, workflow_name=r.workflow_name, cron=r.cron, tz=r.tz,
        input=json.loads(r.input_json), missed=r.missed, status=r.status,
        next_at=utc(r.next_at), until=utc(r.until_at), last_tick=utc(r.last_tick_at),
        last_run_id=r.last_run_id, last_error=r.last_error,
        created_at=utc(time.time() if r.created_at is None else r.created_at),
    )  # fmt: skip


@dataclass
class DispatchReport:
    """What one dispatch pass did; ``next_at`` is the earliest next tick (UNIX seconds)."""

    fired: list[tuple[str, str]] = field(default_factory=list)
    """``(schedule, run id)`` of each tick that started a run."""
    failed: list[tuple[str, str]] = field(default_factory=list)
    """``(schedule, error)`` of each tick whose run could not be started (the rest went on)."""
    skipped_missed: list[str] = field(default_factory=list)
    ended: list[str] = field(default_factory=list)
    next_at: float | None = None


class Schedules:
    """The schedule rows of one store (database and namespace)."""

    def __init__(self, store: Store, lifecycle: Lifecycle | None = None) -> None:
        self.store = store
        self.lifecycle = lifecycle if lifecycle is not None else Lifecycle()
        """Fires ``on_run_create`` for each run a tick creates (after its commit)."""
        self.db: Database = store
        dialect = sa.dialects.sqlite if self.db.is_sqlite else sa.dialects.postgresql
        self._insert = dialect.insert(schedules)
        self._mine = (schedules.c.namespace == store.namespace,)

    @retrying
    def save(
        self,
        name: str,
        workflow: SerializedWorkflow,
        input: Any,
        *,
        cron: str,
        tz: str,
        until_at: float | None,
        missed: str,
    ) -> ScheduleInfo:
        """Create or replace schedule ``name``: active from now, last error cleared.

        The arguments are trusted: the kit checks them (see ``Wfkit.schedule``).
        """
        now = time.time()
        row = {
            "workflow_name": workflow.name, "workflow_json": workflow.to_json(),
            "input_json": dumps(input), "cron": cron, "tz": tz, "until_at": until_at,
            "missed": missed, "status": "active", "next_at": next_tick(cron, tz, now),
            "last_error": None, "updated_at": now,
        }  # fmt: skip
        stmt = self._insert.values(
            namespace=self.store.namespace, name=name, created_at=now, **row
        ).on_conflict_do_update(index_elements=[schedules.c.namespace, schedules.c.name], set_=row)
        with self.db.write() as c:
            c.execute(stmt)
        return self.get(name)

    @retrying
    def find(self, name: str) -> ScheduleInfo | None:
        """Schedule ``name``, or None."""
        with self.db.read() as c:
            q = sa.select(schedules).where(*self._mine, schedules.c.name == name)
            row = c.execute(q).first()
        return _info(row) if row else None

    def get(self, name: str) -> ScheduleInfo:
        """Schedule ``name``; raises :class:`ScheduleNotFound` naming the schedules that exist."""
        info = self.find(name)
        if info is None:
            raise ScheduleNotFound(name, [s.name for s in self.list()])
        return info

    @retrying
    def list(self) -> list[ScheduleInfo]:
        """Every schedule of the namespace, by name."""
        with self.db.read() as c:
            rows = c.execute(sa.select(schedules).where(*self._mine).order_by(schedules.c.name))
            return [_info(r) for r in rows]

    @retrying
    def set_active(self, name: str, active: bool) -> ScheduleInfo:
        """Pause, or resume from now on (ticks missed while paused are not run)."""
        info = self.get(name)
        now = time.time()
        values: dict[str, Any] = {"status": "paused", "updated_at": now}
        if active:
            nxt = next_tick(info.cron, info.tz, now)
            ended = info.until is not None and nxt > info.until.timestamp()
            values = {"status": "ended" if ended else "active", "next_at": nxt, "updated_at": now}
        with self.db.write() as c:
            c.execute(schedules.update().where(*self._mine, schedules.c.name == name), values)
        return self.get(name)

    @retrying
    def remove(self, name: str) -> bool:
        """Delete schedule ``name`` (its past runs stay); False when there was none."""
        with self.db.write() as c:
            q = schedules.delete().where(*self._mine, schedules.c.name == name)
            return bool(c.execute(q).rowcount)

    def dispatch_due(self, now: float | None = None) -> DispatchReport:
        """Start the run of every due tick (each once); ``now`` defaults to the clock."""
        report = DispatchReport()
        first = self._next_at()  # a read: the write lock only when a tick is due
        if first is None or first > (time.time() if now is None else now):
            report.next_at = first
            return report
        while (made := self._dispatch_one(time.time() if now is None else now, report)) is not None:
            for run in made:  # committed: now the lifecycle hears of them
                self.lifecycle.run_created(*run)
        report.next_at = self._next_at()
        return report

    @retrying
    def _next_at(self) -> float | None:
        q = sa.select(sa.func.min(schedules.c.next_at)).where(
            *self._mine, schedules.c.status == "active"
        )
        with self.db.read() as c:
            return c.execute(q).scalar()

    @retrying
    def _dispatch_one(self, now: float, report: DispatchReport) -> _Made | None:
        """Handle one due schedule; None when none was due, else the runs its tick
        made, as :meth:`Lifecycle.run_created` takes them."""
        due = _DUE if self.db.is_sqlite else _DUE.with_for_update(skip_locked=True)
        made: _Made = []
        with self.db.write() as c:
            row = c.execute(due, {"p_ns": self.store.namespace, "p_now": now}).first()
            if row is None:
                return None
            values = self._tick(c, row, now, report, made)
            values["updated_at"] = now
            c.execute(schedules.update().where(*self._mine, schedules.c.name == row.name), values)
        return made

    def _tick(
        self, c: sa.Connection, row: Any, now: float, report: DispatchReport, made: _Made
    ) -> dict[str, Any]:
        """Fire ``row``'s latest due tick (per its policy); the new values of the row."""
        until = row.until_at
        if until is not None and row.next_at > until:
            report.ended.append(row.name)
            return {"status": "ended", "next_at": None}
        tick = latest_tick(row.cron, row.tz, min(now, until) if until is not None else now)
        nxt = next_tick(row.cron, row.tz, now)
        values: dict[str, Any] = {"next_at": nxt}
        if until is not None and nxt > until:
            values.update(status="ended", next_at=None)
            report.ended.append(row.name)
        if row.missed == "skip" and now - tick > MISSED_GRACE_S:
            report.skipped_missed.append(row.name)
            return values
        stamp = utc_iso(tick, seconds=True)
        key = f"cron:{row.name}:{stamp}"
        try:
            wf = SerializedWorkflow.from_json(row.workflow_json)
            data = validate_input(input_model_of(wf), json.loads(row.input_json), wf.name)
        except (ThodareError, ValueError) as e:  # a broken row: report it, keep the others going
            log.warning("schedule %s: tick %s not started: %s", row.name, stamp, e)
            report.failed.append((row.name, str(e)))
            return {**values, "last_tick_at": tick, "last_error": str(e)}
        run_id = self.store.runs.run_by_key(c, key)
        created = run_id is None
        if run_id is None:
            run_id = uuid.uuid4().hex
            self.lifecycle.run_creating(run_id, wf.name, data, key)
            self.store.runs.insert_run(
                c, run_id, wf.name, row.workflow_json, data, idempotency_key=key
            )
        made.append((run_id, wf.name, data, key, None, created))
        report.fired.append((row.name, run_id))
        return {**values, "last_tick_at": tick, "last_run_id": run_id, "last_error": None}
