"""Benchmark (not a test): one ``for_each`` step over many items vs DBOS Transact's queue
fan-out of the same work, SQLite and PostgreSQL; and what a claim costs with the items recorded.

    .venv/bin/python bench/for_each.py [--items 10000] [--dbos-items 2000] [--db sqlite,postgresql]
                                       [--pg URL] [--each-concurrency 8] [--claims 20] [--no-dbos]

(a) fan-out, in this process, on a fresh database each:
    ours: a workflow of one step, ``for_each: "{{trigger.items}}"`` over ``--items`` items
    ``{"n": i}``, running the no-op connector ``bench-inc`` (``workloads.INC``: n + 1) with
    ``{"n": "{{item.n}}"}``, ``--each-concurrency`` (8, the default) items in flight; a kit
    in this process, ``kit.run`` then ``handle.result()``.
    DBOS: a ``@DBOS.workflow`` that enqueues ``--dbos-items`` calls of a ``@DBOS.step`` doing
    the same n + 1 on a queue (``DBOS.register_queue``, DBOS's defaults: no concurrency limit,
    polled every second) and awaits every handle; ``DBOS.start_workflow`` then
    ``get_result()``. By default 2,000 items, to keep the run near 2 minutes (DBOS takes
    about 10 minutes for 10,000 on the two databases): the figures are per item;
    ``--dbos-items 10000`` runs the same work as ours.
    Both: items/s from the start to the result; SQL counted through SQLAlchemy events
    (``harness.SqlCounter``) over that window: statements (BEGIN apart), commits, durable
    write commits, per item.
(b) claims with the items recorded (ours): a claim (``RunStore.claim``, the statement a
    worker sends to take a due run) of an unrelated pending 3-step run, ``--claims`` times:
    median ms and statements per claim, on the fresh database (before (a)) and after (a)
    left its ``--items`` + 1 step rows. Then the claim of a run with ``--items`` ended items
    when it wakes (a ``wait_for_event`` after its ``for_each``, signalled): ms, and the
    memo it brings (its ended step rows).

Databases: ``sqlite``: files in a temp dir (WAL + synchronous=FULL for both). ``postgresql``:
the server of ``--pg`` (default ``THODARE_TEST_PG`` or
``postgresql+psycopg://postgres@127.0.0.1:5432/test``, used only to create and drop
others): a fresh database ``thodare_each_<hex>`` with one schema per case for ours, one
database for DBOS, all dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from harness import (
    DEFAULT_PG,
    Server,
    SqlCount,
    SqlCounter,
    dbos_launched,
    dbos_missing,
    fmt,
    kit_engines,
    our_kit,
    print_table,
    ratio,
)
from workloads import INC, THREE

from thodare_jupyter import SerializedWorkflow

DBOS_QUEUE = "thodare_each"


def each_workflow(concurrency: int, wait: bool = False) -> SerializedWorkflow:
    """trigger → ``each`` (for_each over ``{{trigger.items}}``) [→ a wait for ``each.done``]."""
    blocks: list[dict[str, Any]] = [
        {"id": "start", "type": "trigger_webhook"},
        {"id": "each", "type": INC.type, "forEach": "{{trigger.items}}",
         "concurrency": concurrency, "params": {"n": "{{item.n}}"}},
    ]  # fmt: skip
    edges = [{"source": "start", "target": "each"}]
    if wait:
        blocks.append(
            {"id": "done", "type": "wait_for_event", "params": {"eventName": "each.done"}}
        )
        edges.append({"source": "each", "target": "done"})
    return SerializedWorkflow.model_validate(
        {"metadata": {"name": "bench-each"}, "blocks": blocks, "connections": edges}
    )


def items(n: int) -> dict[str, Any]:
    return {"items": [{"n": i} for i in range(n)]}


@dataclass
class FanOut:
    """One engine's fan-out of ``n`` items on one database."""

    n: int
    seconds: float
    sql: SqlCount

    @property
    def rate(self) -> float:
        return self.n / self.seconds


@dataclass
class Claims:
    """Claims of an unrelated run before and after the items, and of the items' run."""

    before_ms: list[float] = field(default_factory=list)
    after_ms: list[float] = field(default_factory=list)
    before_sql: float = 0.0  # statements per claim (BEGIN apart)
    after_sql: float = 0.0
    wake_ms: float | None = None  # the claim of the run with the items, when it wakes
    wake_sql: float | None = None
    memo_rows: int | None = None


# ── ours ──


def ours_fan_out(kit: Any, counter: SqlCounter, n: int, concurrency: int) -> FanOut:
    wf = each_workflow(concurrency)
    kit.run(wf, items(2)).result(timeout=60)  # warm: caches, pools
    c0 = counter.snapshot()
    start = time.perf_counter()
    out = kit.run(wf, items(n)).result(timeout=3600)["each"]
    seconds = time.perf_counter() - start
    c1 = counter.snapshot()
    assert out["failed"] == [] and len(out["items"]) == n
    assert out["items"][-1] == {"n": n}, out["items"][-1]
    return FanOut(n, seconds, (c1 - c0).per(n))


def claim_times(kit: Any, k: int) -> tuple[list[float], float]:
    """``k`` claims of a fresh pending 3-step run (each canceled after; one untimed
    first): ms each, and statements per claim (BEGIN apart)."""
    runs = kit.store.runs
    types = [INC.type, "trigger_webhook"]
    owner = f"bench-{uuid.uuid4().hex[:8]}"
    ms: list[float] = []
    statements = 0.0
    counter = SqlCounter(kit_engines(kit))
    try:
        for i in range(k + 1):
            run_id, _ = runs.create_run(THREE.name, THREE.to_json(), {"n": i})
            c0 = counter.snapshot()
            start = time.perf_counter()
            got = runs.claim(owner, 1, 30.0, types)
            if i:  # the first warms the statement cache and the pool
                ms.append((time.perf_counter() - start) * 1000)
                statements += (counter.snapshot() - c0).statements
            assert [r.id for r in got] == [run_id], (got, run_id)
            runs.cancel_run(run_id)
    finally:
        counter.detach()
    return ms, statements / k


def wake_claim(kit: Any, n: int, concurrency: int) -> tuple[float, float, int]:
    """A run with ``n`` ended items parks on a wait; signalled, it is claimed: (ms,
    statements, memo rows) of that claim."""
    h = kit.run(each_workflow(concurrency, wait=True), items(n))
    end = time.monotonic() + 3600
    while h.status != "waiting":
        if time.monotonic() > end or h.status in ("failed", "canceled"):
            raise RuntimeError(f"the items' run did not park: {h.status}")
        time.sleep(0.05)
    kit.stop()  # nobody else claims it: the bench does
    kit.signal("each.done")
    counter = SqlCounter(kit_engines(kit))
    try:
        start = time.perf_counter()
        got = kit.store.runs.claim("bench-wake", 1, 30.0, [INC.type, "trigger_webhook",
                                                          "wait_for_event"])  # fmt: skip
        ms = (time.perf_counter() - start) * 1000
        statements = counter.snapshot().statements
    finally:
        counter.detach()
    assert [r.id for r in got] == [h.id], got
    memo = len(got[0].memo or ())
    kit.store.runs.cancel_run(h.id)
    return ms, statements, memo


def run_ours(url: str, n: int, concurrency: int, k: int) -> tuple[FanOut, Claims]:
    claims = Claims()
    with our_kit(url, start=False) as kit:
        claims.before_ms, claims.before_sql = claim_times(kit, k)
        # SQLAlchemy's listener lists are not thread-safe: counters come and go while
        # no worker runs
        counter = SqlCounter(kit_engines(kit))
        kit.start()
        try:
            fan = ours_fan_out(kit, counter, n, concurrency)
        finally:
            kit.stop()
            counter.detach()
        claims.after_ms, claims.after_sql = claim_times(kit, k)
        kit.start()
        claims.wake_ms, claims.wake_sql, claims.memo_rows = wake_claim(kit, n, concurrency)
    return fan, claims


# ── DBOS ──

_DBOS_FNS: dict[str, Any] = {}


def dbos_fan_out_fn() -> Any:
    """``bench_fan_out(n)``: enqueue ``n`` ``bench_each_inc`` steps, await them all."""
    if "fan" not in _DBOS_FNS:
        from dbos import DBOS

        @DBOS.step(name="bench_each_inc")
        def inc(n: int) -> int:
            return n + 1

        @DBOS.workflow(name="bench_fan_out")
        def fan_out(n: int) -> list[int]:
            queue = DBOS.retrieve_queue(DBOS_QUEUE)
            handles = [queue.enqueue(inc, i) for i in range(n)]
            return [h.get_result() for h in handles]

        _DBOS_FNS["fan"] = fan_out
    return _DBOS_FNS["fan"]


def run_dbos(url: str, n: int, pragmas: tuple[str, str] | None) -> FanOut:
    from dbos import DBOS

    fan_out = dbos_fan_out_fn()
    counter = SqlCounter([sa.engine.Engine])  # before DBOS's threads (see run_ours)
    try:
        with dbos_launched(url, sqlite_pragmas=pragmas):
            DBOS.register_queue(DBOS_QUEUE)
            assert DBOS.start_workflow(fan_out, 2).get_result() == [1, 2]  # warm
            c0 = counter.snapshot()  # only DBOS uses SQLAlchemy meanwhile
            start = time.perf_counter()
            out = DBOS.start_workflow(fan_out, n).get_result()
            seconds = time.perf_counter() - start
            c1 = counter.snapshot()
    finally:
        counter.detach()
    assert len(out) == n and out[-1] == n
    return FanOut(n, seconds, (c1 - c0).per(n))


# ── report ──


@dataclass
class Case:
    label: str
    ours_url: Callable[[], str]
    dbos_url: Callable[[], str]
    pragmas: tuple[str, str] | None = None
    ours: FanOut | None = None
    dbos: FanOut | None = None
    claims: Claims | None = None
    measured: Callable[..., Any] = lambda _what, fn, *a: fn(*a)


def rows_for(c: Case) -> list[list[str]]:
    o, d = c.ours, c.dbos
    rows = [[f"{c.label}: items/s", fmt(o and o.rate), fmt(d and d.rate),
             ratio(o and o.rate, d and d.rate)],
            ["  seconds for all items", fmt(o and o.seconds, 2), fmt(d and d.seconds, 2),
             ratio(o and o.seconds, d and d.seconds)]]  # fmt: skip
    for label, attr in (("statements per item (BEGIN apart)", "statements"),
                        ("BEGIN per item", "begins"), ("commits per item", "commits"),
                        ("durable write commits per item", "write_commits")):  # fmt: skip
        ov = getattr(o.sql, attr) if o else None
        dv = getattr(d.sql, attr) if d else None
        rows.append([f"  {label}", fmt(ov, 3), fmt(dv, 3), ratio(ov, dv)])
    return rows


def claim_rows(c: Case, n: int) -> list[list[str]]:
    cl = c.claims
    if cl is None:
        return []
    b, a = statistics.median(cl.before_ms), statistics.median(cl.after_ms)
    return [
        [f"{c.label}: claim of an unrelated run, median ms", fmt(b, 2), fmt(a, 2), ratio(a, b)],
        ["  statements per claim (BEGIN apart)", fmt(cl.before_sql, 2), fmt(cl.after_sql, 2),
         ratio(cl.after_sql, cl.before_sql)],
        [f"  claim of the run with {n:,} items when it wakes, ms", "-", fmt(cl.wake_ms, 1), "-"],
        ["  ... its statements / memo rows brought", "-",
         f"{fmt(cl.wake_sql, 0)} / {cl.memo_rows:,}", "-"],
    ]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--items", type=int, default=10_000, help="items of the for_each step")
    ap.add_argument("--dbos-items", type=int, default=2_000, help="items DBOS fans out")
    ap.add_argument("--db", default="sqlite,postgresql", help="databases: sqlite, postgresql")
    ap.add_argument("--pg", default=DEFAULT_PG, help="a PostgreSQL database to connect to")
    ap.add_argument("--each-concurrency", type=int, default=8, help="our items in flight")
    ap.add_argument("--claims", type=int, default=20, help="claims timed before and after")
    ap.add_argument("--no-dbos", action="store_true", help="skip DBOS")
    args = ap.parse_args()
    dbs = [x.strip() for x in args.db.split(",") if x.strip()]
    dbos_error = dbos_missing(args.no_dbos)
    tmp = Path(tempfile.mkdtemp(prefix="thodare-each-"))
    cases: list[Case] = []
    if "sqlite" in dbs:
        cases.append(Case("SQLite WAL FULL", lambda: f"sqlite:///{tmp}/ours.db",
                          lambda: f"sqlite:///{tmp}/dbos.db", pragmas=("WAL", "FULL")))  # fmt: skip
    server: Server | None = None
    pg_info = ""
    if "postgresql" in dbs:
        try:
            server = Server(args.pg, prefix="thodare_each")
            pg_info = f", PostgreSQL {server.version()} ({server.settings()})"
            db = server.database()
            cases.append(Case("PostgreSQL", lambda: server.schema(db, "ours"),
                              lambda: server.database("dbos", create=False),
                              measured=server.measured))  # fmt: skip
        except Exception as e:
            print(f"PostgreSQL not measured: {type(e).__name__}: {e}")
    print(f"python {platform.python_version()}, sqlite {sqlite3.sqlite_version}{pg_info}, "
          f"{os.cpu_count()} cpus; {args.items:,} items (DBOS {args.dbos_items:,})",
          flush=True)  # fmt: skip
    started = time.monotonic()
    try:
        for case in cases:
            print(f"[{time.monotonic() - started:3.0f} s] {case.label}: ours", flush=True)
            case.ours, case.claims = case.measured("ours", lambda c=case: run_ours(
                c.ours_url(), args.items, args.each_concurrency, args.claims))  # fmt: skip
            if dbos_error is None:
                print(f"[{time.monotonic() - started:3.0f} s] {case.label}: DBOS", flush=True)
                try:
                    case.dbos = case.measured("DBOS", lambda c=case: run_dbos(
                        c.dbos_url(), args.dbos_items, c.pragmas))  # fmt: skip
                except Exception as e:  # say why, keep ours
                    dbos_error = f"{type(e).__name__}: {e}"
        print()
        print_table(["fan-out of one workflow", f"ours ({args.items:,})",
                     f"DBOS ({args.dbos_items:,})", "ours/DBOS"],
                    [r for c in cases for r in rows_for(c)])  # fmt: skip
        print()
        print_table(["claims (ours)", "fresh db", f"+ {args.items:,} items", "after/before"],
                    [r for c in cases for r in claim_rows(c, args.items)])  # fmt: skip
        print(
            f"\nours: one for_each step, {args.each_concurrency} items in flight, a kit in this "
            "process; DBOS: one workflow enqueuing a step per item on a queue (no limits, "
            "polled every 1 s), awaiting them all.\nitems/s: from starting the workflow to "
            "its result. SQL: SQLAlchemy events on each engine's connections over that "
            "window, / items.\nclaims: RunStore.claim of a pending 3-step run (the "
            "statement a worker sends to take one), median of "
            f"{args.claims}, on the fresh database and with the items' rows present."
        )
        if dbos_error is None and args.dbos_items != args.items:
            print(f"DBOS fanned out {args.dbos_items:,} items, ours {args.items:,}: the "
                  "figures are per item (--dbos-items sets DBOS's).")  # fmt: skip
        if dbos_error:
            print(f"\nDBOS not measured (or not fully): {dbos_error}")
        print(f"\ntotal {time.monotonic() - started:.0f} s")
    finally:
        if server is not None:
            server.drop_all()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
