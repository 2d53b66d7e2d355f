"""PostgreSQL restarted under live runs: workers reconnect and no run is lost.

Two REAL worker processes walk 30 runs of ``one → slow → four`` (the slow
step sleeps 1-3.5 s); once every slow step is in flight, the server is
restarted (``pg_ctlcluster … restart``, a fast shutdown that drops every
connection). While it is down, the test process starts 5 more runs: each
``run()`` call rides out the outage and returns once the server is back.
Then:

* all 35 runs complete, with the right outputs;
* each step ran exactly once (the leases, 10 s, outlive the ~2-3 s outage, so
  nothing was taken over) and each slow step was in flight across the restart
  (started before it, its completion recorded after it);
* both worker processes are still alive, and their LISTEN connections came
  back (new server backends on the channel), so a run started afterwards is
  picked up at once.

The server is brought back up at the end even if the test fails. The test
uses its own schema fixture rather than conftest's ``pg_url``: that fixture
keeps one admin connection open for its teardown, and the restart kills it.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from durable_helpers import wait_until
from durable_procs import (
    COUNT,
    PG_BASE,
    SLOW,
    WorkerPool,
    bounce_pg,
    client_kit,
    ensure_pg_up,
    executions,
    pg_dsn,
    pg_listeners,
    pg_rows,
    pg_up,
    read_effects,
    wait_ready_line,
)
from pydantic import BaseModel

from thodare_jupyter import define_workflow


@pytest.fixture
def restartable_pg_url() -> Iterator[str]:
    """Like conftest's ``pg_url`` (fresh schema, dropped at the end), but safe across a restart:
    each admin step opens its own connection, and the server is brought back up first."""
    import psycopg

    if not pg_up():
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but PostgreSQL is unreachable at {PG_BASE}")
        pytest.skip(f"PostgreSQL not reachable at {PG_BASE}")
    schema = f"thodare_t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(pg_dsn(PG_BASE), autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{PG_BASE}?options=-csearch_path%3D{schema}"
    finally:
        ensure_pg_up()
        with psycopg.connect(pg_dsn(PG_BASE), autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


class Job(BaseModel):
    start: int
    secs: float


def restart_wf() -> Any:
    return (
        define_workflow("wf-pg-restart")
        .input(Job)
        .step("one", COUNT, lambda r: {"n": r.input.start})
        .step("slow", SLOW, lambda r: {"n": r.one.n, "seconds": r.input.secs})
        .step("four", COUNT, lambda r: {"n": r.slow.n})
        .build()
    )


@pytest.mark.timeout(90)
@pytest.mark.parametrize(
    ("kind", "slow_s"),
    [("restart", (1.0, 3.5)), ("stop-start", (0.5, 2.0)), ("immediate", (0.5, 2.0))],
    ids=["restart", "stop-start", "immediate"],
)
def test_postgres_restart_mid_run_loses_nothing(
    restartable_pg_url: str, tmp_path: Path, kind: str, slow_s: tuple[float, float]
) -> None:
    url, effects = restartable_pg_url, tmp_path / "effects.log"
    pool = WorkerPool(url, effects, tmp_path, lease_s=10, poll_s=0.1, concurrency=16)
    client = client_kit(url, effects)  # never started: every step runs in a worker process
    wf = restart_wf()
    late: list[Any] = []
    t_down: list[float] = []

    def start_during_outage() -> None:
        with contextlib.suppress(AssertionError):
            wait_until(lambda: not pg_up(0.5), 15, "the server to go down", interval=0.01)
            t_down.append(time.time())
        late.extend(client.run(wf, {"start": 100 + i, "secs": 0.1}) for i in range(5))

    def result(h: Any) -> dict[str, Any]:
        try:
            return h.result(timeout=30)  # type: ignore[no-any-return]
        except Exception as e:
            raise AssertionError(f"run {h.id}: {e!r}\n{pool.logs()}") from e

    creator = threading.Thread(target=start_during_outage)
    try:
        workers = [pool.start(wait_ready=False) for _ in range(2)]
        for w in workers:
            wait_ready_line(w, 30, f"worker pid {w.pid}")
        channel = client.store.channel
        listeners = wait_until(
            lambda: (p := pg_listeners(url, channel)) and len(p) == 2 and p, 10, "2 listeners"
        )
        lo, hi = slow_s
        handles = [
            client.run(wf, {"start": i, "secs": lo + (hi - lo) * (i % 6) / 5}) for i in range(30)
        ]
        wait_until(
            lambda: sum(f[1] == "slow" for f in read_effects(effects)) == 30,
            30,
            "every slow step to be in flight",
        )

        t_bounce = time.time()
        creator.start()
        bounce_pg(kind)
        t_back = time.time()
        creator.join(60)
        assert t_down, "the server never went down"
        assert len(late) == 5  # run() rode out the outage

        outs = [result(h) for h in handles + late]
        assert [o["four"]["n"] for o in outs] == [i + 3 for i in range(30)] + [
            103 + i for i in range(5)
        ]
        assert [w.poll() for w in workers] == [None, None], pool.logs()
        created = pg_rows(
            url, "SELECT created_at FROM thodare_runs WHERE id = ANY(%s)", [h.id for h in late]
        )
        assert len(created) == 5 and all(r["created_at"] > t_down[0] for r in created)
        rows = pg_rows(url, "SELECT * FROM thodare_steps")
        assert len(rows) == 35 * 3 and {r["status"] for r in rows} == {"completed"}
        slow_ends = [r["ended_at"] for r in rows if r["block_id"] == "slow"]
        # every slow step was in flight across the restart
        assert all(t > t_bounce for t in slow_ends), (t_bounce, sorted(slow_ends))
        # the attempt column agrees with the execution whose output was stored
        wrong = [
            (r["run_id"], r["block_id"], r["attempt"], json.loads(r["output_json"])["attempt"])
            for r in rows
            if r["attempt"] != json.loads(r["output_json"])["attempt"]
        ]
        assert wrong == [], f"{len(wrong)} steps: (run, block, column, output) {wrong[:3]}"
        reruns = sum(
            len(executions(effects, h.id, b)) - 1
            for h in handles + late
            for b in ("one", "slow", "four")
        )
        if kind != "immediate":
            # a clean shutdown loses no commit and the leases outlive the outage:
            # every step ran exactly once
            assert reruns == 0, pool.logs()
            assert {r["attempt"] for r in rows} == {1}
        # (immediate: unflushed asynchronous commits are lost in the crash, so a step may
        # run again; at-least-once, with every run complete, is the promise there)

        # the listeners came back on new server backends, and notifications flow again
        back = wait_until(
            lambda: (p := pg_listeners(url, channel)) and len(p) == 2 and p, 20, "2 new listeners"
        )
        assert not set(back) & set(listeners)
        t0 = time.monotonic()
        h = client.run(wf, {"start": 7, "secs": 0.0})
        assert result(h)["four"]["n"] == 10
        assert time.monotonic() - t0 < 5
        print(
            f"[pg {kind}] back after {t_back - t_bounce:.1f}s; runs done "
            f"{time.time() - t_back:.1f}s later; steps re-run: {reruns}; "
            f"new run {time.monotonic() - t0:.2f}s"
        )
    finally:
        pool.kill_all()
        if creator.is_alive():
            creator.join(60)
        client.close()
        ensure_pg_up()
