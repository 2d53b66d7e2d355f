"""Runs and their steps: every read and write of ``thodare_runs`` and ``thodare_steps``
but the workers' leases (:mod:`.worker_store`).

Writes that belong to a claimed run are fenced: they only land while the
writer still holds the run's lease, so a worker that lost its lease (crash
suspected, run taken over) cannot overwrite the new owner's work.
"""

from __future__ import annotations

import functools
import json
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa
import sqlalchemy.dialects.postgresql
import sqlalchemy.dialects.sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from ..errors import StoreRefused
from ..wire import TERMINAL_STATUSES
from .database import Database, retrying
from .lineage import cancel_children_in, wake_parent_in
from .records import RunRow, StepRow, StepWrite, db_text, dumps, run_of, run_row, step_row
from .schema import runs, signals, steps

_RUN_BY_KEY = sa.select(runs.c.id).where(
    runs.c.namespace == sa.bindparam("p_ns"), runs.c.idempotency_key == sa.bindparam("p_key")
)
_MAX_SIGNAL = sa.select(sa.func.coalesce(sa.func.max(signals.c.id), 0))
_GET_RUN = sa.select(runs).where(
    runs.c.id == sa.bindparam("p_run"), runs.c.namespace == sa.bindparam("p_ns")
)
_GET_STEPS = (
    sa.select(steps)
    .where(steps.c.run_id == sa.bindparam("p_run"))
    .order_by(sa.func.coalesce(steps.c.started_at, 0))
)


def _copy_steps(to_run: str, from_run: str, block_ids: Sequence[str]) -> sa.Insert:
    cols = ["block_id", "type", "status", "attempt", "output_json", "started_at", "ended_at"]
    src = sa.select(sa.literal(to_run), *(steps.c[n] for n in cols)).where(
        steps.c.run_id == from_run,
        steps.c.status == "completed",
        steps.c.block_id.in_(list(block_ids)),
    )
    return steps.insert().from_select(["run_id", *cols], src)


def _due(capable: sa.ColumnElement[bool]) -> list[sa.ColumnElement[bool]]:
    """Runs this worker may take now, as three conditions that each match one range
    of ``ix_thodare_runs_due``: new, woken, or whose lease ran out elsewhere."""
    mine = (runs.c.namespace == sa.bindparam("p_ns"), capable)
    return [
        sa.and_(*mine, runs.c.status == "pending"),
        sa.and_(*mine, runs.c.status == "waiting", runs.c.wake_at <= sa.bindparam("p_now")),
        sa.and_(
            *mine,
            runs.c.status == "running",
            runs.c.lease_expires_at < sa.bindparam("p_now"),
            runs.c.lease_owner != sa.bindparam("p_owner"),  # never what it walks
        ),
    ]


def _memo(is_sqlite: bool) -> sa.Label[Any]:
    """A run's ended steps as one JSON value ``[[block_id, status, output_json], …]``:
    the claim brings them in the same round trip. The items (``block[i]``) of a
    ``for_each`` step that completed are left out: its own row holds every output."""
    cols = (steps.c.block_id, steps.c.status, steps.c.output_json)
    agg = (sa.func.json_group_array(sa.func.json_array(*cols)) if is_sqlite
           else sa.func.json_agg(sa.func.json_build_array(*cols)))  # fmt: skip
    ended = sa.select(agg).where(  # an OR, not IN: a list in RETURNING stays unrendered
        steps.c.run_id == runs.c.id,
        sa.or_(steps.c.status == "completed", steps.c.status == "failed"),
        sa.text(_NOT_DONE_ITEM_SQLITE if is_sqlite else _NOT_DONE_ITEM_PG),
    )
    return ended.scalar_subquery().label("memo")


# Not an item row of a for_each step whose own row completed. Text, with every column
# qualified: SQLAlchemy renders columns unqualified in RETURNING, where the two
# thodare_steps of the EXISTS would be ambiguous.
_NOT_DONE_ITEM = (
    "NOT ({find}(thodare_steps.block_id, '[') > 0 AND EXISTS (SELECT 1 FROM thodare_steps AS "
    "each_step WHERE each_step.run_id = thodare_steps.run_id AND each_step.block_id = {step} "
    "AND each_step.status = 'completed'))"
)
_NOT_DONE_ITEM_SQLITE = _NOT_DONE_ITEM.format(
    find="instr", step="substr(thodare_steps.block_id, 1, instr(thodare_steps.block_id, '[') - 1)"
)
_NOT_DONE_ITEM_PG = _NOT_DONE_ITEM.format(
    find="strpos", step="split_part(thodare_steps.block_id, '[', 1)"
)


_TAKEN = dict(
    status="running", lease_owner=sa.bindparam("p_owner"),
    lease_expires_at=sa.bindparam("p_until"), wake_requested=False,
    updated_at=sa.bindparam("p_now"),
    started_at=sa.func.coalesce(runs.c.started_at, sa.bindparam("p_now")),
)  # fmt: skip


def _claim_statement(is_sqlite: bool, capable: sa.ColumnElement[bool]) -> Any:
    """One ``UPDATE … RETURNING`` of the due runs, oldest first, with their ended steps.

    PostgreSQL: ``FOR UPDATE SKIP LOCKED`` on one OR of the conditions (a bitmap
    OR of index ranges). SQLite (one writer at a time) cannot use an index for an
    OR across statuses: the conditions are a UNION ALL, each an index range.
    """
    if is_sqlite:
        each = sa.union_all(*(sa.select(runs.c.id, runs.c.created_at).where(d)
                              for d in _due(capable))).subquery("due")  # fmt: skip
        pick = sa.select(each.c.id).order_by(each.c.created_at)
    else:
        pick = sa.select(runs.c.id).where(sa.or_(*_due(capable))).order_by(runs.c.created_at)
        pick = pick.with_for_update(skip_locked=True)
    pick = pick.limit(sa.bindparam("p_limit"))
    # The picked ids are a MATERIALIZED CTE, run once: as a subquery PostgreSQL may run
    # it again for each row (a rescan), each time skipping the rows just locked, and so
    # take more than the limit. The outer WHERE repeats the conditions: when a concurrent
    # claim changed a picked row first, PostgreSQL rechecks them on its newest version.
    picked = pick.cte("picked")
    if not is_sqlite:
        picked = picked.prefix_with("MATERIALIZED")
    take = runs.update().where(runs.c.id == picked.c.id, sa.or_(*_due(capable)))
    take = take.values(**_TAKEN, claimed_from=runs.c.status)
    return take.returning(*runs.c, _memo(is_sqlite))


def _next_due(capable: sa.ColumnElement[bool]) -> sa.Select[Any]:
    """When the next run becomes due: the earliest of three index-ordered
    lookups (a pending run, a timer, another worker's lease), not a scan."""
    mine = (runs.c.namespace == sa.bindparam("p_ns"), capable)
    firsts = [
        sa.select(col).where(*mine, *where).order_by(col).limit(1).scalar_subquery()
        for col, where in (
            (runs.c.wake_at, (runs.c.status == "pending",)),
            (runs.c.wake_at, (runs.c.status == "waiting", runs.c.wake_at.is_not(None))),
            (runs.c.lease_expires_at, (runs.c.status == "running",
                                       runs.c.lease_owner != sa.bindparam("p_owner"))),
        )
    ]  # fmt: skip
    each = sa.union_all(*(sa.select(f.label("at")) for f in firsts)).subquery("firsts")
    return sa.select(sa.func.min(each.c.at))


def _capable(is_sqlite: bool) -> sa.ColumnElement[bool]:
    """A run whose every connector type is in ``p_types`` (a JSON list), or one from
    before runs recorded their needs."""
    if is_sqlite:
        need = sa.func.json_each(runs.c.needs).table_valued("value").alias("need")
        have = sa.func.json_each(sa.bindparam("p_types")).table_valued("value").alias("have")
        lacking = sa.exists().where(need.c.value.not_in(sa.select(have.c.value)))
        return sa.or_(runs.c.needs.is_(None), ~lacking)
    jsonb = sa.dialects.postgresql.JSONB
    have_all = sa.cast(runs.c.needs, jsonb).op("<@")(sa.cast(sa.bindparam("p_types"), jsonb))
    return sa.or_(runs.c.needs.is_(None), have_all)


@functools.lru_cache(maxsize=128)  # the many runs of one workflow: parsed once
def needs_of(workflow_json: str) -> str:
    """The connector types a run of this workflow needs: a sorted JSON list."""
    blocks = json.loads(workflow_json).get("blocks") or []
    return dumps(sorted({b["type"] for b in blocks if b.get("enabled", True)}))


_FINISH = (
    runs.update()
    .where(runs.c.id == sa.bindparam("p_run"))
    .values(
        status=sa.bindparam("p_status"), outputs_json=sa.bindparam("p_outputs"),
        error=sa.bindparam("p_error"), failed_block=sa.bindparam("p_failed"),
        ended_at=sa.bindparam("p_now"), updated_at=sa.bindparam("p_now"),
        lease_owner=None, lease_expires_at=None, wake_at=None,
    )
)  # fmt: skip
_LEASED = sa.exists().where(
    runs.c.id == sa.bindparam("p_run"),
    runs.c.lease_owner == sa.bindparam("p_owner"),
    runs.c.status == "running",
)
_FINISH = _FINISH.where(runs.c.lease_owner == sa.bindparam("p_owner"), runs.c.status == "running")
_STEP_COLS = ("run_id", "block_id", "type", "status", "attempt", "output_json", "error",
              "started_at", "ended_at")  # fmt: skip
_INSERT_RUN = runs.insert().values(
    {c.name: sa.bindparam(c.name) for c in runs.c if c.name != "signal_horizon"}
    | {"signal_horizon": _MAX_SIGNAL.scalar_subquery()}
)
_START_RUN = _INSERT_RUN.returning(runs.c.signal_horizon)  # the one value not known before


@functools.lru_cache(maxsize=64)
def _pg_finish(end_channel: str, n: int) -> Any:
    """PostgreSQL: a run's finish with its last ``n`` step rows and the announcement of
    its end on ``end_channel``, as one statement."""
    done = _FINISH.returning(runs.c.id).cte("done")
    finish = sa.select(sa.func.pg_notify(end_channel, done.c.id)).select_from(done)
    return finish.add_cte(_step_upsert(False, n).cte("ended")) if n else finish


@functools.lru_cache(maxsize=64)
def _step_upsert(is_sqlite: bool, n: int) -> Any:
    """Upsert ``n`` step rows in one statement that lands only while the writer holds
    the run's lease (the fence is in the statement). A start marker (status
    ``running``) counts an attempt; an end keeps the highest attempt seen."""
    rows = [
        sa.select(*(sa.cast(sa.bindparam(f"{c}{i}"), steps.c[c].type).label(c)
                    for c in _STEP_COLS))
        for i in range(n)
    ]  # fmt: skip
    src = (sa.union_all(*rows) if n > 1 else rows[0]).subquery("v")
    new = (sa.dialects.sqlite.insert if is_sqlite else sa.dialects.postgresql.insert)(steps)
    ins = new.from_select(list(_STEP_COLS), sa.select(*src.c).where(_LEASED))
    ex = ins.excluded
    attempt = sa.case(
        (ex.status == "running", steps.c.attempt + 1),
        (steps.c.attempt >= ex.attempt, steps.c.attempt),
        else_=ex.attempt,
    )
    set_ = {c: ex[c] for c in ("type", "status", "output_json", "error", "ended_at")}
    return ins.on_conflict_do_update(
        index_elements=[steps.c.run_id, steps.c.block_id], set_={**set_, "attempt": attempt}
    ).returning(steps.c.block_id, steps.c.attempt)


class LeaseLost(Exception):
    """This worker no longer owns the run (taken over, or canceled)."""


def check_lease(c: Connection, run_id: str, owner: str) -> None:
    """Raise :class:`LeaseLost` unless ``owner`` holds ``run_id``'s lease (in ``c``)."""
    if not c.execute(sa.select(_LEASED), {"p_run": run_id, "p_owner": owner}).scalar():
        raise LeaseLost(run_id)


def _attempt(op: Callable[[Connection], Any], c: Connection) -> tuple[bool, Any]:
    try:
        return True, op(c)
    except LeaseLost as e:
        return False, e


class RunStore:
    """Runs and steps of one database and namespace."""

    def __init__(self, db: Database) -> None:
        self.db = db
        capable = _capable(db.is_sqlite)
        self._claim = _claim_statement(db.is_sqlite, capable)
        any_due = sa.or_(*(sa.exists().where(d) for d in _due(capable)))  # each an index range
        self._any_due = sa.select(any_due) if db.is_sqlite else None
        self._next_due = _next_due(capable)
        self._insert_run: Any = _INSERT_RUN
        if not db.is_sqlite:  # the insert and the wake-up in one statement
            created = _INSERT_RUN.returning(runs.c.id).cte("created")
            wake = sa.select(sa.func.pg_notify(db.channel, db.origin))
            self._insert_run = wake.select_from(created)

    @retrying
    def create_run(
        self,
        workflow_name: str | None,
        workflow_json: str,
        input: Any,
        *,
        idempotency_key: str | None = None,
        deadline_at: float | None = None,
        run_id: str | None = None,
        reuse: tuple[str, Sequence[str]] | None = None,
    ) -> tuple[str, bool]:
        """Insert a pending run; with a known idempotency key, return the existing id.

        ``reuse=(run_id, block_ids)`` copies those blocks' completed steps from
        another run, in the same commit: the new run does not run them again.
        Returns ``(run_id, created)``.
        """
        new_id = run_id or uuid.uuid4().hex
        try:
            with self.db.write(single=idempotency_key is None and reuse is None) as c:
                if idempotency_key is not None:
                    found = self.run_by_key(c, idempotency_key)
                    if found:
                        return found, False
                self.insert_run(
                    c, new_id, workflow_name, workflow_json, input,
                    idempotency_key=idempotency_key, deadline_at=deadline_at,
                )  # fmt: skip
                if reuse is not None:
                    c.execute(_copy_steps(new_id, *reuse))
        except IntegrityError:  # our own retried insert landed, or a concurrent same-key one won
            with self.db.read() as c:
                if c.execute(_GET_RUN, {"p_run": new_id, "p_ns": self.db.namespace}).first():
                    return new_id, True
                found = self.run_by_key(c, idempotency_key) if idempotency_key else None
                if found is None:
                    raise
                return found, False
        return new_id, True

    @retrying
    def start_run(
        self,
        owner: str,
        lease_s: float,
        workflow_name: str | None,
        workflow_json: str,
        input: Any,
        *,
        run_id: str,
        deadline_at: float | None = None,
    ) -> RunRow:
        """Insert a run already claimed by worker ``owner`` (a kit starting a run its own
        worker walks at once): no claim round trip, no wake-up of other workers.
        A retried insert that had landed returns the stored run."""
        try:
            with self.db.write(single=True) as c:
                now = time.time()
                row = self._new_row(run_id, workflow_name, workflow_json, input, now,
                                    deadline_at=deadline_at)  # fmt: skip
                row.update(status="running", lease_owner=owner, lease_expires_at=now + lease_s,
                           started_at=now, claimed_from="pending", wake_at=None)  # fmt: skip
                row["signal_horizon"] = self.db.run(c, _START_RUN, row).rows[0][0]
            started = run_of(row)
        except IntegrityError:
            with self.db.read() as c:
                got = c.execute(_GET_RUN, {"p_run": run_id, "p_ns": self.db.namespace}).one()
            started = run_row(got)
        started.memo = []
        return started

    def _new_row(
        self,
        run_id: str,
        workflow_name: str | None,
        workflow_json: str,
        input: Any,
        now: float,
        *,
        idempotency_key: str | None = None,
        deadline_at: float | None = None,
    ) -> dict[str, Any]:
        """The values of a new pending run (all but ``signal_horizon``)."""
        row: dict[str, Any] = {c.name: None for c in runs.c if c.name != "signal_horizon"}
        row.update({
            "id": run_id, "namespace": self.db.namespace, "workflow_name": workflow_name,
            "workflow_json": workflow_json, "input_json": dumps(input),
            "status": "pending", "idempotency_key": idempotency_key, "created_at": now,
            "updated_at": now, "deadline_at": deadline_at, "wake_at": now,
            "needs": needs_of(workflow_json), "wake_requested": False,
        })  # fmt: skip
        return row

    def insert_run(
        self,
        c: Connection,
        run_id: str,
        workflow_name: str | None,
        workflow_json: str,
        input: Any,
        *,
        idempotency_key: str | None = None,
        deadline_at: float | None = None,
        parent: tuple[str, str] | None = None,
    ) -> None:
        """Insert a pending run inside the caller's write transaction (and wake workers);
        ``parent``: the ``(run id, block id)`` that starts it as a child run."""
        row = self._new_row(run_id, workflow_name, workflow_json, input, time.time(),
                            idempotency_key=idempotency_key, deadline_at=deadline_at)  # fmt: skip
        if parent is not None:
            row.update(parent_run_id=parent[0], parent_block_id=parent[1])
        c.execute(self._insert_run, row)

    def run_by_key(self, c: Connection, idempotency_key: str) -> str | None:
        """The id of the run created with ``idempotency_key``, in the caller's transaction."""
        return c.execute(
            _RUN_BY_KEY, {"p_ns": self.db.namespace, "p_key": idempotency_key}
        ).scalar()

    @retrying
    def get_run(self, run_id: str) -> RunRow | None:
        """One run, or None."""
        with self.db.read() as c:
            row = c.execute(_GET_RUN, {"p_run": run_id, "p_ns": self.db.namespace}).first()
        return run_row(row) if row else None

    @retrying
    def list_runs(self, status: str | None = None, limit: int = 50) -> list[RunRow]:
        """Newest runs first."""
        q = sa.select(runs).where(runs.c.namespace == self.db.namespace)
        if status:
            q = q.where(runs.c.status == status)
        with self.db.read() as c:
            rows = c.execute(q.order_by(runs.c.created_at.desc()).limit(limit)).all()
        return [run_row(r) for r in rows]

    @retrying
    def get_steps(self, run_id: str) -> list[StepRow]:
        """The steps of a run, in the order they started."""
        with self.db.read() as c:
            rows = c.execute(_GET_STEPS, {"p_run": run_id}).all()
        return [step_row(r) for r in rows]

    @retrying
    def claim(
        self, owner: str, limit: int, lease_s: float, types: Sequence[str], *, probe: bool = False
    ) -> list[RunRow]:
        """Take up to ``limit`` due runs (new, woken, or whose lease ran out) that need
        only connector ``types``, each with its ended steps (``RunRow.memo``) and the
        status it was claimed from, in one statement.

        ``probe``: on SQLite, look with a read first and take the write lock only
        when something is due (an idle worker's polls never block other writers).
        """
        if limit <= 0:
            return []
        args = {"p_ns": self.db.namespace, "p_owner": owner, "p_limit": limit,
                "p_types": dumps(sorted(types))}  # fmt: skip
        if probe and self._any_due is not None:
            with self.db.read() as c:
                if not c.execute(self._any_due, {**args, "p_now": time.time()}).scalar():
                    return []
        with self.db.write(lazy=True, single=True) as c:
            now = time.time()  # after BEGIN IMMEDIATE: never before a run created meanwhile
            args.update(p_now=now, p_until=now + lease_s)
            got = self.db.run(c, self._claim, args)
            return [run_of(dict(zip(got.columns, r, strict=True))) for r in got.rows]

    @retrying
    def next_due(self, owner: str, types: Sequence[str]) -> float | None:
        """When the next run this worker could take becomes due (a timer, a lease)."""
        args = {"p_ns": self.db.namespace, "p_owner": owner, "p_types": dumps(sorted(types))}
        with self.db.read() as c:
            return c.execute(self._next_due, args).scalar()

    @retrying
    def run_batch(
        self, ops: Sequence[Callable[[Connection], Any]], *, lazy: bool, single: bool = False
    ) -> list[tuple[bool, Any]]:
        """Group commit: run the ``*_in`` writes ``ops`` of any runs in one transaction
        (``single``: one op of one statement, see :meth:`one_statement`).

        Returns ``(True, result)`` or ``(False, LeaseLost)`` per op; a lost lease
        fails only its op. An op the database refuses (not a lost connection) is
        not allowed to spoil the others: the batch rolls back and each op runs
        alone, the refused one answering ``(False, StoreRefused)``.
        """
        try:
            with self.db.write(lazy=lazy, single=single) as c:
                return [_attempt(op, c) for op in ops]
        except (sa.exc.IntegrityError, sa.exc.DataError, sa.exc.ProgrammingError):
            if len(ops) == 1:
                raise
        out: list[tuple[bool, Any]] = []
        for op in ops:
            try:
                out.extend(self.run_batch([op], lazy=lazy))
            except StoreRefused as e:
                out.append((False, e))
        return out

    def one_statement(self, fn: Callable[..., Any], steps: Sequence[StepWrite]) -> bool:
        """True when the write ``fn`` (:meth:`write_steps_in`, :meth:`finish_in`) of
        ``steps`` is one statement: then its transaction can be that statement alone."""
        if len({w.block_id for w in steps}) < len(steps):  # a row changed twice: a statement each
            return False
        return fn == self.write_steps_in or (fn == self.finish_in and not self.db.is_sqlite)

    def write_steps_in(
        self, c: Connection, run_id: str, owner: str, *, steps: Sequence[StepWrite]
    ) -> dict[str, int]:
        """Write step rows in one fenced statement, in the caller's transaction;
        returns each block's attempt. Raises :class:`LeaseLost`."""
        if not steps:
            return {}
        if len({w.block_id for w in steps}) < len(steps):  # one row cannot change twice
            got: dict[str, int] = {}
            for w in steps:
                got.update(self.write_steps_in(c, run_id, owner, steps=[w]))
            return got
        params = self._step_params(run_id, owner, steps)
        rows = self.db.run(c, _step_upsert(self.db.is_sqlite, len(steps)), params).rows
        if not rows:
            raise LeaseLost(run_id)
        return {b: a for b, a in rows}

    def _step_params(self, run_id: str, owner: str, writes: Sequence[StepWrite]) -> dict[str, Any]:
        params: dict[str, Any] = {"p_run": run_id, "p_owner": owner}
        for i, w in enumerate(writes):
            ended = w.status != "running"
            params.update({
                f"run_id{i}": run_id, f"block_id{i}": w.block_id, f"type{i}": w.type,
                f"status{i}": w.status, f"attempt{i}": w.attempt,
                f"output_json{i}": (dumps(w.output)
                                    if w.status == "completed" or w.output is not None
                                    else None),
                f"error{i}": db_text(w.error), f"started_at{i}": w.at,
                f"ended_at{i}": w.at if ended else None,
            })  # fmt: skip
        return params

    def finish_in(
        self,
        c: Connection,
        run_id: str,
        owner: str,
        status: str,
        *,
        outputs: dict[str, Any] | None = None,
        error: str | None = None,
        failed_block: str | None = None,
        steps: Sequence[StepWrite] = (),
    ) -> None:
        """Mark a run completed or failed, with its last step rows (fenced); on
        PostgreSQL one statement that also announces the end (:mod:`.run_ends`)."""
        params = {
            "p_run": run_id, "p_owner": owner, "p_status": status, "p_error": db_text(error),
            "p_failed": failed_block, "p_now": time.time(),
            "p_outputs": dumps(outputs) if outputs is not None else None,
        }  # fmt: skip
        if self.db.is_sqlite or len({w.block_id for w in steps}) < len(steps):
            self.write_steps_in(c, run_id, owner, steps=steps)
            if not self.db.run(c, _FINISH, params).rowcount:
                raise LeaseLost(run_id)
            self.db.announce_end(c, run_id)
            return
        # PostgreSQL: the last steps, the finish and its announcement in one statement
        params.update(self._step_params(run_id, owner, steps))
        if not self.db.run(c, _pg_finish(self.db.end_channel, len(steps)), params).rows:
            raise LeaseLost(run_id)

    def park_in(
        self,
        c: Connection,
        run_id: str,
        owner: str,
        wake_at: float | None,
        *,
        steps: Sequence[StepWrite] = (),
    ) -> bool:
        """Release a run that waits (fenced), with its last step rows; a signal that
        raced in wakes it at once (then True)."""
        self.write_steps_in(c, run_id, owner, steps=steps)
        now = time.time()
        parked = c.execute(
            runs.update()
            .where(runs.c.id == run_id, runs.c.lease_owner == owner, runs.c.status == "running")
            .values(status="waiting", wake_requested=False, lease_owner=None,
                    lease_expires_at=None, updated_at=now,
                    wake_at=sa.case((runs.c.wake_requested, now), else_=wake_at))
            .returning(runs.c.wake_at)
        ).first()  # fmt: skip
        if parked is None:
            raise LeaseLost(run_id)
        if parked.wake_at == now:  # a signal came while it walked
            self.db.notify(c)
            return True
        return False

    def cancel_run(self, run_id: str) -> bool:
        """Cancel a run that has not ended, and its unfinished child runs; False when
        it had already ended."""
        return bool(self.cancel_tree(run_id))

    @retrying
    def cancel_tree(self, run_id: str) -> list[str]:
        """Cancel a run that has not ended and its unfinished descendants (child runs
        of ``run_workflow``), and wake its parent (its step then fails); the ids
        canceled, ``run_id`` first (none when it had already ended)."""
        with self.db.write() as c:
            now = time.time()
            res = c.execute(
                runs.update()
                .where(
                    runs.c.id == run_id,
                    runs.c.namespace == self.db.namespace,
                    runs.c.status.not_in(TERMINAL_STATUSES),
                )
                .values(
                    status="canceled",
                    ended_at=now,
                    updated_at=now,
                    lease_owner=None,
                    lease_expires_at=None,
                    wake_at=None,
                )
            )
            if not res.rowcount:
                return []
            self.db.announce_end(c, run_id)
            wake_parent_in(self.db, c, run_id, now)
            return [run_id, *cancel_children_in(self.db, c, run_id, now)]

    @retrying
    def step_waiting(
        self,
        run_id: str,
        owner: str,
        block_id: str,
        type_: str,
        *,
        event: str | None,
        key: str | None,
        wake_at: float | None,
    ) -> float | None:
        """Park a step on a timer and/or an event; the first recorded timer is kept on replay."""
        with self.db.write() as c:
            if event is not None:  # a signal sent meanwhile sees this step, or it sees it
                self.db.lock_event(c, event)
            now = time.time()
            check_lease(c, run_id, owner)
            row = c.execute(
                sa.select(steps.c.status, steps.c.wake_at, steps.c.started_at).where(
                    steps.c.run_id == run_id, steps.c.block_id == block_id
                )
            ).first()
            if row is not None and row.status == "waiting":
                return row.wake_at  # type: ignore[no-any-return]
            values = dict(
                type=type_, status="waiting", wait_event=event, wait_key=key, wake_at=wake_at
            )
            if row is None:
                c.execute(
                    steps.insert().values(
                        run_id=run_id, block_id=block_id, attempt=1, started_at=now, **values
                    )
                )
            else:
                c.execute(
                    steps.update()
                    .where(steps.c.run_id == run_id, steps.c.block_id == block_id)
                    .values(**values)
                )
            return wake_at
