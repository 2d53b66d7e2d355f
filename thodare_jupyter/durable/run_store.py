"""Runs and their steps: every read and write of ``thodare_runs`` and ``thodare_steps``
but the workers' leases (:mod:`.worker_store`).

Writes that belong to a claimed run are fenced: they only land while the
writer still holds the run's lease, so a worker that lost its lease (crash
suspected, run taken over) cannot overwrite the new owner's work.
"""

from __future__ import annotations

import functools
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from ..errors import (
    MIN_RUN_ID_PREFIX,
    RunIdAmbiguous,
    RunIdTooShort,
    RunNotFound,
    StoreRefused,
)
from ..wire import TERMINAL_STATUSES
from .database import Database, retrying
from .lineage import cancel_children_in, wake_parent_in
from .records import RunRow, StepRow, StepWrite, db_text, dumps, run_of, run_row, step_row
from .run_sql import (
    FINISH,
    GET_RUN,
    GET_STEPS,
    HEX,
    INSERT_RUN,
    LEASED,
    RUN_BY_KEY,
    START_RUN,
    STEP_COLS,
    capable_of,
    claim_statement,
    copy_steps,
    due_conditions,
    id_prefix_select,
    list_select,
    needs_of,
    next_due_select,
    pg_finish,
    pg_start_run,
    step_markers,
    step_upsert,
)
from .schema import runs, steps


class LeaseLost(Exception):
    """This worker no longer owns the run (taken over, or canceled)."""


def check_lease(c: Connection, run_id: str, owner: str) -> None:
    """Raise :class:`LeaseLost` unless ``owner`` holds ``run_id``'s lease (in ``c``)."""
    if not c.execute(sa.select(LEASED), {"p_run": run_id, "p_owner": owner}).scalar():
        raise LeaseLost(run_id)


def _attempt(op: Callable[[Connection], Any], c: Connection) -> tuple[bool, Any]:
    try:
        return True, op(c)
    except LeaseLost as e:
        return False, e


_NEW_ROW: dict[str, Any] = {c.name: None for c in runs.c if c.name != "signal_horizon"}


@functools.lru_cache(maxsize=64)
def _step_keys(i: int) -> tuple[str, ...]:
    """The parameter names of the ``i``-th step row of a statement (``run_id0``, ...)."""
    return tuple(f"{c}{i}" for c in STEP_COLS)


class RunStore:
    """Runs and steps of one database and namespace."""

    def __init__(self, db: Database) -> None:
        self.db = db
        capable = capable_of(db.is_sqlite)
        self._claim = claim_statement(db.is_sqlite, capable)
        any_due = sa.or_(
            *(sa.exists().where(d) for d in due_conditions(capable))
        )  # each an index range
        self._any_due = sa.select(any_due) if db.is_sqlite else None
        self._next_due = next_due_select(capable)
        self._insert_run: Any = INSERT_RUN
        if not db.is_sqlite:  # the insert and the wake-up in one statement
            created = INSERT_RUN.returning(runs.c.id).cte("created")
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
                    forked_from=reuse[0] if reuse is not None else None,
                )  # fmt: skip
                if reuse is not None:
                    c.execute(copy_steps(new_id, *reuse))
        except IntegrityError:  # our own retried insert landed, or a concurrent same-key one won
            with self.db.read() as c:
                if c.execute(GET_RUN, {"p_run": new_id, "p_ns": self.db.namespace}).first():
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
        first: Sequence[tuple[str, str]] = (),
        early: Callable[[RunRow], None] | None = None,
    ) -> RunRow:
        """Insert a run already claimed by worker ``owner`` (a kit starting a run its own
        worker walks at once): no claim round trip, no wake-up of other workers.
        ``first``: ``(block_id, type)`` of the steps the walk starts first; their start
        markers (attempt 1) go with the insert (``RunRow.marked``), so the walk does
        not write them. A retried insert that had landed returns the stored run.
        ``early``: on SQLite, called with the run before its commit waits for the
        disk, so the walk sets up meanwhile; :attr:`RunRow.committed` says when the
        commit is done (other writes of this process wait for it: it holds the file's
        writer lock)."""
        sqlite, n = self.db.is_sqlite, len(first)
        committed: Future[None] | None = Future() if sqlite and early is not None else None
        marked = tuple(b for b, _ in first)
        try:
            with self.db.write(single=not (sqlite and n)) as c:
                now = time.time()
                row = self._new_row(run_id, workflow_name, workflow_json, input, now,
                                    deadline_at=deadline_at)  # fmt: skip
                row.update(status="running", lease_owner=owner, lease_expires_at=now + lease_s,
                           started_at=now, claimed_from="pending", wake_at=None)  # fmt: skip
                marks = [StepWrite(b, t, "running", at=now) for b, t in first]
                args = {**row, **self._step_params(run_id, owner, marks)} if marks else row
                insert = START_RUN if sqlite else pg_start_run(n)
                row["signal_horizon"] = self.db.run(c, insert, args).rows[0][0]
                if sqlite and n:
                    self.db.run(c, step_markers(n), args)
                started = run_of(row)
                started.memo, started.marked = [], marked
                if early is not None and committed is not None:
                    started.committed = committed
                    early(started)
        except BaseException as e:
            if committed is not None:  # the walk handed the run stops at it
                committed.set_exception(LeaseLost(run_id))
            if committed is not None or not isinstance(e, IntegrityError):
                raise
            with self.db.read() as c:  # a retried insert had landed, its markers with it
                got = c.execute(GET_RUN, {"p_run": run_id, "p_ns": self.db.namespace}).one()
            started = run_row(got)
            started.memo, started.marked = [], marked
        if committed is not None:
            committed.set_result(None)
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
        row = dict(_NEW_ROW)
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
        forked_from: str | None = None,
    ) -> None:
        """Insert a pending run inside the caller's write transaction (and wake workers);
        ``parent``: the ``(run id, block id)`` that starts it as a child run;
        ``forked_from``: the run a fork reuses steps of."""
        row = self._new_row(run_id, workflow_name, workflow_json, input, time.time(),
                            idempotency_key=idempotency_key, deadline_at=deadline_at)  # fmt: skip
        row["forked_from"] = forked_from
        if parent is not None:
            row.update(parent_run_id=parent[0], parent_block_id=parent[1])
        self.db.run(c, self._insert_run, row)

    def run_by_key(self, c: Connection, idempotency_key: str) -> str | None:
        """The id of the run created with ``idempotency_key``, in the caller's transaction."""
        return c.execute(RUN_BY_KEY, {"p_ns": self.db.namespace, "p_key": idempotency_key}).scalar()

    @retrying
    def get_run(self, run_id: str) -> RunRow | None:
        """One run, or None."""
        with self.db.read() as c:
            row = c.execute(GET_RUN, {"p_run": run_id, "p_ns": self.db.namespace}).first()
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
    def resolve_id(self, prefix: str) -> str:
        """The id of the one run of the namespace whose id is or starts with ``prefix``.

        Raises:
            RunIdTooShort: ``prefix`` has fewer than 4 characters (and is no run's id).
            RunIdAmbiguous: Several runs start with it (the error lists them).
            RunNotFound: None does.
        """
        with self.db.read() as c:
            if c.execute(GET_RUN, {"p_run": prefix, "p_ns": self.db.namespace}).first():
                return prefix
            if len(prefix) < MIN_RUN_ID_PREFIX:
                raise RunIdTooShort(prefix)
            hexed = prefix.lower()  # run ids are lowercase UUID hex: anything else names none
            found = (
                c.execute(id_prefix_select(hexed), {"p_ns": self.db.namespace}).all()
                if HEX.fullmatch(hexed)
                else []
            )
        if not found:
            raise RunNotFound(prefix, self.db.namespace)
        if len(found) > 1:
            raise RunIdAmbiguous(prefix, self.db.namespace, [(r[0], r[1]) for r in found])
        return str(found[0][0])

    @retrying
    def list_light(
        self,
        limit: int = 50,
        *,
        status: str | None = None,
        workflow: str | None = None,
        after: float | None = None,
        before: float | None = None,
    ) -> list[dict[str, Any]]:
        """Newest runs first as small rows (no input, outputs or steps; ``reused``: the
        steps a fork copied), filtered by status, workflow name and creation time."""
        q = list_select(status, workflow, after, before)
        with self.db.read() as c:
            rows = c.execute(q, {"p_ns": self.db.namespace, "p_limit": limit}).all()
        return [dict(r._mapping) for r in rows]

    @retrying
    def get_steps(self, run_id: str) -> list[StepRow]:
        """The steps of a run, in the order they started."""
        with self.db.read() as c:
            rows = c.execute(GET_STEPS, {"p_run": run_id}).all()
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
        rows = self.db.run(c, step_upsert(self.db.is_sqlite, len(steps)), params).rows
        if not rows:
            raise LeaseLost(run_id)
        return {b: a for b, a in rows}

    def _step_params(self, run_id: str, owner: str, writes: Sequence[StepWrite]) -> dict[str, Any]:
        params: dict[str, Any] = {"p_run": run_id, "p_owner": owner}
        for i, w in enumerate(writes):
            ended = w.status != "running"
            values = (
                run_id, w.block_id, w.type, w.status, w.attempt,
                dumps(w.output) if w.status == "completed" or w.output is not None else None,
                db_text(w.error), w.at, w.at if ended else None,
                None if w.params is None else dumps(w.params),
            )  # fmt: skip
            params.update(zip(_step_keys(i), values, strict=True))
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
            if not self.db.run(c, FINISH, params).rowcount:
                raise LeaseLost(run_id)
            self.db.announce_end(c, run_id)
            return
        # PostgreSQL: the last steps, the finish and its announcement in one statement
        params.update(self._step_params(run_id, owner, steps))
        if not self.db.run(c, pg_finish(self.db.end_channel, len(steps)), params).rows:
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
        params: Any = None,
        take: Callable[[Connection], tuple[bool, Any]] | None = None,
    ) -> tuple[float | None, tuple[bool, Any]]:
        """Park a step on a timer and/or an event; the first recorded timer is kept on replay.
        ``params``: what it waits with, masked. ``take(c)``: take a signal sent already, in
        the same transaction (one commit; under the event's lock). Returns the step's
        timer and what ``take`` returned (``(False, None)`` without it)."""
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
            taken = (False, None) if take is None else take(c)
            if row is not None and row.status == "waiting":
                return row.wake_at, taken
            values = dict(
                type=type_, status="waiting", wait_event=event, wait_key=key, wake_at=wake_at,
                params_json=None if params is None else dumps(params),
            )  # fmt: skip
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
            return wake_at, taken
