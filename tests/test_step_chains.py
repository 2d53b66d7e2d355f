"""A run crosses threads once for a line of sync steps (``durable.step_chain``).

On SQLite and PostgreSQL, with a started kit:

* a sequential 3-step run of sync steps runs all three on one step thread; its rows
  hold each step's output, params and attempt 1;
* a chain beside a parallel branch: the run ends once both have, every row completed
  (whether the branch ends before the chain's last step or after it);
* a chained step that fails is retried by the walk (attempt 2), and the run completes;
* a run canceled while the head of a chain runs starts no further step of it;
* with several runs in flight (on SQLite they do not chain then) the runs complete;
  with a lifecycle listener (no chains) it hears every step start and end;
* a chained step whose params do not validate fails the run at that step, saying why;
* (SQLite) a run handed to the worker before its insert commits starts its first step,
  sync or async, only after the commit; if the commit fails, ``kit.run`` raises, no
  step runs, no row is left and the worker's slot is free again.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time

import pytest
import sqlalchemy as sa
from durable_helpers import KitFactory, q, wait_until
from pydantic import BaseModel

from thodare_jupyter import Catalog, RetryPolicy, RunFailed, define_connector, define_workflow
from thodare_jupyter.errors import BackendUnavailable


class N(BaseModel):
    n: int


THREADS: list[tuple[str, int]] = []


def _inc(p: N) -> N:
    THREADS.append((threading.current_thread().name, threading.get_ident()))
    return N(n=p.n + 1)


INC = define_connector(type="chain_inc", params=N, outputs=N, run=_inc)
FAILS_ONCE: dict[str, int] = {}


def _flaky(p: N) -> N:
    FAILS_ONCE[str(p.n)] = FAILS_ONCE.get(str(p.n), 0) + 1
    if FAILS_ONCE[str(p.n)] == 1:
        raise RuntimeError("first attempt fails")
    return N(n=p.n + 10)


FLAKY = define_connector(
    type="chain_flaky", params=N, outputs=N, run=_flaky,
    retries=RetryPolicy(max_attempts=2, backoff_s=0.01),
)  # fmt: skip
GATE = threading.Event()
AFTER_GATE: list[int] = []


def _gated(p: N) -> N:
    assert GATE.wait(20)
    return N(n=p.n)


def _after(p: N) -> N:
    AFTER_GATE.append(p.n)
    return N(n=p.n)


GATED = define_connector(type="chain_gated", params=N, outputs=N, run=_gated)
AFTER = define_connector(type="chain_after", params=N, outputs=N, run=_after)


def three(first: str = "chain_inc", second: str = "chain_inc"):  # type: ignore[no-untyped-def]
    connectors = {c.type: c for c in (INC, FLAKY, GATED, AFTER)}
    return (
        define_workflow("three").input(N)
        .step("s1", connectors[first], lambda r: {"n": r.input.n})
        .step("s2", connectors[second], lambda r: {"n": r.s1.n})
        .step("s3", INC, lambda r: {"n": r.s2.n})
        .build()
    )  # fmt: skip


CATALOG = Catalog(INC, FLAKY, GATED, AFTER)


def test_a_sequential_run_walks_its_sync_steps_on_one_thread(any_kits: KitFactory) -> None:
    kit = any_kits(catalog=CATALOG).start()
    THREADS.clear()
    h = kit.run(three(), {"n": 1})
    assert h.result(timeout=20) == {"__trigger__": {"n": 1}, "s1": {"n": 2}, "s2": {"n": 3},
                                        "s3": {"n": 4}}  # fmt: skip
    assert len(THREADS) == 3 and len(set(THREADS)) == 1, THREADS
    assert THREADS[0][0].startswith("thodare-step")
    rows = q(kit.store.url, "SELECT block_id, status, attempt, output_json, params_json FROM "
             "thodare_steps WHERE run_id = ? ORDER BY block_id", h.id)  # fmt: skip
    assert [(b, s, a, json.loads(o), json.loads(p)) for b, s, a, o, p in rows] == [
        ("s1", "completed", 1, {"n": 2}, {"n": 1}),
        ("s2", "completed", 1, {"n": 3}, {"n": 2}),
        ("s3", "completed", 1, {"n": 4}, {"n": 3}),
    ]


def test_a_chained_step_that_fails_is_retried_by_the_walk(any_kits: KitFactory) -> None:
    kit = any_kits(catalog=CATALOG).start()
    FAILS_ONCE.clear()
    h = kit.run(three(second="chain_flaky"), {"n": 100})
    assert h.result(timeout=20)["s3"] == {"n": 112}
    got = q(kit.store.url, "SELECT block_id, attempt FROM thodare_steps WHERE run_id = ? "
            "ORDER BY block_id", h.id)  # fmt: skip
    assert [tuple(r) for r in got] == [("s1", 1), ("s2", 2), ("s3", 1)]


def test_a_run_canceled_in_a_chain_starts_no_further_step(any_kits: KitFactory) -> None:
    kit = any_kits(catalog=CATALOG).start()
    GATE.clear()
    AFTER_GATE.clear()
    h = kit.run(three(first="chain_gated", second="chain_after"), {"n": 7})
    wait_until(lambda: h.status == "running", what="the run to start")
    h.cancel()
    GATE.set()
    wait_until(lambda: kit.worker.ended_count > 0 and not kit.worker._active, what="walk ends")
    assert h.status == "canceled"
    assert AFTER_GATE == []
    got = q(kit.store.url, "SELECT block_id FROM thodare_steps WHERE run_id = ?", h.id)
    assert [r[0] for r in got] == ["s1"]


def test_runs_in_flight_together_complete(any_kits: KitFactory) -> None:
    kit = any_kits(catalog=CATALOG).start()
    GATE.clear()
    held = kit.run(three(first="chain_gated"), {"n": 0})  # keeps the worker busy
    wait_until(lambda: held.status == "running", what="the first run starts")
    THREADS.clear()
    h = kit.run(three(), {"n": 1})
    assert h.result(timeout=20)["s3"] == {"n": 4}
    GATE.set()
    assert held.result(timeout=20)["s3"] == {"n": 2}
    assert len(THREADS) == 5  # the second run's three, then the first run's two


def test_a_lifecycle_listener_hears_every_step_of_a_sequential_run(any_kits: KitFactory) -> None:
    kit = any_kits(catalog=CATALOG).start()
    heard: list[tuple[str, str]] = []

    class Listener:
        def on_step_start(self, e):  # type: ignore[no-untyped-def]
            heard.append(("start", e.block_id))

        def on_step_end(self, e):  # type: ignore[no-untyped-def]
            heard.append((e.status, e.block_id))

    kit.lifecycle.subscribe(Listener())
    assert kit.run(three(), {"n": 1}).result(timeout=20)["s3"] == {"n": 4}
    assert heard == [(s, b) for b in ("s1", "s2", "s3") for s in ("start", "completed")]


def _loose(p: N) -> dict[str, int]:
    return {"m": p.n}


LOOSE = define_connector(type="chain_loose", params=N, run=_loose)


def test_a_chained_step_with_params_that_do_not_validate_fails_the_run_there(
    any_kits: KitFactory,
) -> None:
    kit = any_kits(catalog=Catalog(INC, LOOSE)).start()
    wf = (
        define_workflow("loose").input(N)
        .step("s1", LOOSE, lambda r: {"n": r.input.n})
        .step("s2", INC, lambda r: {"n": r.s1.n})  # s1 gives no n
        .build()
    )  # fmt: skip
    h = kit.run(wf, {"n": 1})
    with pytest.raises(RunFailed) as e:
        h.result(timeout=20)
    assert e.value.block_id == "s2" and "n" in str(e.value)
    assert h.status == "failed"


class NM(BaseModel):
    n: int
    m: int


class Nap(BaseModel):
    n: int
    s: float


def _nap(p: Nap) -> N:
    time.sleep(p.s)
    return N(n=p.n)


NAP = define_connector(type="chain_nap", params=Nap, outputs=N, run=_nap)


@pytest.mark.parametrize("a_s, c_s", [(0.0, 0.3), (0.3, 0.0)])
def test_a_chain_beside_a_parallel_branch_ends_the_run_once_both_ended(
    any_kits: KitFactory, a_s: float, c_s: float
) -> None:
    """``a → b`` chains on a thread while ``c`` runs beside it, ending after it
    (the walk ends the run) or before it (its end held, then written: the chain
    may end the run); either way every step's row is completed."""
    kit = any_kits(catalog=Catalog(INC, NAP)).start()
    wf = (
        define_workflow("beside").input(NM)
        .step("a", NAP, lambda r: {"n": r.input.n, "s": a_s})
        .step("b", INC, lambda r: {"n": r.a.n})
        .step("c", NAP, lambda r: {"n": r.input.m, "s": c_s})
        .build()
    )  # fmt: skip
    h = kit.run(wf, {"n": 2, "m": 20})
    got = h.result(timeout=20)
    assert (got["a"], got["b"], got["c"]) == ({"n": 2}, {"n": 3}, {"n": 20})
    rows = q(kit.store.url, "SELECT block_id, status FROM thodare_steps WHERE run_id = ? "
             "ORDER BY block_id", h.id)  # fmt: skip
    assert [tuple(r) for r in rows] == [("a", "completed"), ("b", "completed"),
                                        ("c", "completed")]  # fmt: skip
    assert h.status == "completed"


STARTED: list[float] = []


def _stamp(p: N) -> N:
    STARTED.append(time.monotonic())
    return N(n=p.n + 1)


async def _stamp_async(p: N) -> N:
    STARTED.append(time.monotonic())
    return N(n=p.n + 1)


STAMP = define_connector(type="chain_stamp", params=N, outputs=N, run=_stamp)
STAMP_ASYNC = define_connector(type="chain_stamp_async", params=N, outputs=N, run=_stamp_async)


def _one_step(conn):  # type: ignore[no-untyped-def]
    wf = define_workflow(f"one-{conn.type}").input(N)
    return wf.step("s", conn, lambda r: {"n": r.input.n}).build()


@pytest.mark.parametrize("conn", [STAMP, STAMP_ASYNC], ids=["sync", "async"])
def test_a_run_handed_over_before_its_insert_commits_starts_no_step_before_it(
    kits: KitFactory,
    conn,  # type: ignore[no-untyped-def]
) -> None:
    """SQLite: the kit hands its worker the run before the insert's commit (the walk
    sets up meanwhile); its first step, sync (on a chain's thread) or async (on the
    loop), starts only once the commit has returned."""
    kit = kits(catalog=Catalog(STAMP, STAMP_ASYNC)).start()
    done: list[float] = []

    def slow_commit(_conn):  # type: ignore[no-untyped-def]
        time.sleep(0.3)  # fires before the driver's commit: the commit ends after this
        done.append(time.monotonic())

    STARTED.clear()
    sa.event.listen(kit.store.engine, "commit", slow_commit)
    try:
        h = kit.run(_one_step(conn), {"n": 1})
    finally:
        sa.event.remove(kit.store.engine, "commit", slow_commit)
    assert h.result(timeout=20)["s"] == {"n": 2}
    assert len(STARTED) == 1 and STARTED[0] >= done[0], (STARTED, done)


@pytest.mark.parametrize("conn", [STAMP, STAMP_ASYNC], ids=["sync", "async"])
def test_a_run_whose_insert_does_not_commit_is_not_walked(
    kits: KitFactory,
    conn,  # type: ignore[no-untyped-def]
) -> None:
    """SQLite: the insert's commit fails after the run was handed over: ``kit.run``
    raises, no step runs, no row is left, and the worker's slot is free again."""
    kit = kits(catalog=Catalog(STAMP, STAMP_ASYNC), concurrency=1).start()

    def refuse(_conn):  # type: ignore[no-untyped-def]
        raise sa.exc.OperationalError("COMMIT", {}, sqlite3.OperationalError("disk I/O error"))

    STARTED.clear()
    sa.event.listen(kit.store.engine, "commit", refuse)
    try:
        with pytest.raises(BackendUnavailable):
            kit.run(_one_step(conn), {"n": 1})
    finally:
        sa.event.remove(kit.store.engine, "commit", refuse)
    wait_until(lambda: not kit.worker._active, what="the handed-over walk to stop")
    assert STARTED == []
    assert q(kit.store.url, "SELECT count(*) FROM thodare_runs")[0][0] == 0
    assert kit.run(_one_step(conn), {"n": 5}).result(timeout=20)["s"] == {"n": 6}
    assert len(STARTED) == 1
