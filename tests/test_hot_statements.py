"""The hot statements (a run's start, a claim, step writes, a finish) go straight to the
driver's cursor (``Database.run``), and still behave as SQLAlchemy's path did: the
engine's ``before_cursor_execute`` listeners hear them, a refused statement raises
SQLAlchemy's error (a retried start finds its run; a bad batch op fails alone), and a
connection the server dropped is replaced by the retry (PostgreSQL)."""

from __future__ import annotations

import functools
import uuid
from typing import Any

import psycopg
import sqlalchemy as sa
from durable_helpers import pg_dsn

from thodare_jupyter.durable.records import StepWrite
from thodare_jupyter.durable.store import Store
from thodare_jupyter.errors import StoreRefused

WF = '{"blocks":[{"id":"a","type":"t"}]}'


def _step(store: Store, run_id: str, status: str = "completed", **kw: Any) -> Any:
    write = functools.partial(
        store.runs.write_steps_in, run_id=run_id, owner="w",
        steps=[StepWrite("a", "t", status, **kw)],
    )  # fmt: skip
    return store.runs.run_batch([write], lazy=False)


def test_listeners_hear_every_hot_statement(db_url: str) -> None:
    store = Store(db_url, f"h{uuid.uuid4().hex[:8]}")
    heard: list[str] = []

    def hear(conn: Any, cur: Any, statement: str, *_: Any) -> None:
        heard.append(" ".join(statement.split()[:3]).upper())

    for e in store.engines:
        sa.event.listen(e, "before_cursor_execute", hear)
    try:
        store.runs.start_run("w", 60.0, "wf", WF, {}, run_id="r1")
        assert heard == ["INSERT INTO THODARE_RUNS"]
        assert _step(store, "r1", output={"n": 1}) == [(True, {"a": 1})]
        assert heard[1:] == ["INSERT INTO THODARE_STEPS"]
        finish = functools.partial(store.runs.finish_in, run_id="r1", owner="w",
                                   status="completed", outputs={"a": {"n": 1}})  # fmt: skip
        assert store.runs.run_batch([finish], lazy=False) == [(True, None)]
        # PostgreSQL: the finish and the announcement of its end in one statement
        assert heard[2] == ("UPDATE THODARE_RUNS SET" if store.is_sqlite else "WITH DONE AS")
        del heard[:]
        store.runs.create_run("wf", WF, {"i": 1})
        del heard[:]
        (claimed,) = store.runs.claim("w2", 4, 30.0, ["t"])
        assert heard == ["WITH PICKED AS"] and claimed.input == {"i": 1}
        assert claimed.memo == [] and claimed.claimed_from == "pending"
        run = store.runs.get_run("r1")
        assert run is not None and (run.status, run.outputs) == ("completed", {"a": {"n": 1}})
    finally:
        for e in store.engines:
            sa.event.remove(e, "before_cursor_execute", hear)
        store.dispose()


def test_driver_errors_are_sqlalchemy_errors(db_url: str) -> None:
    store = Store(db_url, f"h{uuid.uuid4().hex[:8]}")
    try:
        first = store.runs.start_run("w", 60.0, "wf", WF, {"i": 1}, run_id="r1")
        # the same id again (a retry whose insert had landed): IntegrityError, the stored run
        again = store.runs.start_run("w", 60.0, "wf", WF, {"i": 2}, run_id="r1")
        assert (again.id, again.input, again.created_at) == ("r1", {"i": 1}, first.created_at)
        if not store.is_sqlite:  # an attempt out of its column's range: DataError, refused alone
            write = functools.partial(store.runs.write_steps_in, run_id="r1", owner="w")
            bad = functools.partial(write, steps=[StepWrite("b", "t", "failed", attempt=2**40)])
            good = functools.partial(write, steps=[StepWrite("a", "t", "completed", output=1)])
            (ok_bad, err), (ok_good, got) = store.runs.run_batch([bad, good], lazy=False)
            assert not ok_bad and isinstance(err, StoreRefused) and str(2**40) not in str(err)
            assert ok_good and got == {"a": 1}
    finally:
        store.dispose()


def test_a_dropped_postgresql_connection_is_replaced(pg_url: str) -> None:
    app = f"thodare_hot_{uuid.uuid4().hex[:8]}"
    store = Store(f"{pg_url}&application_name={app}", f"h{uuid.uuid4().hex[:8]}")
    try:
        store.runs.start_run("w", 60.0, "wf", WF, {}, run_id="r1")
        with psycopg.connect(pg_dsn(), autocommit=True) as admin:
            killed = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = %s", (app,),
            ).fetchone()  # fmt: skip
        assert killed is not None and killed[0] >= 1  # the pooled connections are dead
        assert _step(store, "r1", output={"n": 2}) == [(True, {"a": 1})]
        (step,) = store.runs.get_steps("r1")
        assert (step.status, step.output) == ("completed", {"n": 2})
    finally:
        store.dispose()
