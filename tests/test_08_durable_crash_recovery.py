"""Seed proof 08 (durable crash recovery), with REAL worker processes killed by SIGKILL.

Every test takes conftest's ``db_url`` and runs twice: on a SQLite file, then
on a fresh PostgreSQL schema (the worker processes of ``durable_procs`` take
either URL; the rows are read straight from the database).

A worker process walks a run of ``one → two → slow → four → five``; while the
slow step is in flight the worker is SIGKILLed (no cleanup, its lease stays
until it expires). A NEW worker process takes the run over after the lease
(1 s) and finishes it:

* steps that completed before the crash are not executed again (their outputs
  come back from ``thodare_steps``: one side-effect line each, stored output
  unchanged);
* the step in flight runs again with ``ctx.attempt == 2`` and the SAME
  ``ctx.idempotency_key`` (``"<run_id>:<block_id>"``), so an outside service can
  dedupe it; the ``attempt`` column agrees with the side-effect file, and so
  does a third attempt after a second kill in the same step;
* a run parked in a ``wait_duration`` when its worker dies keeps its original
  timer; a worker frozen past its lease (SIGSTOP) cannot write after the takeover.

The runs are started from the test process through a kit that never starts a
worker, so every step runs in a worker process. The seed's own case (it toggled
a flag and restarted the worker in-process; the cached first step is not run
again) is here too, with a kit stopped while step two is in flight.

Scale-out (PostgreSQL only): three worker processes share 300 runs of a
three-step workflow while one of them is SIGKILLed midway. Every run completes;
no step whose completion was committed ran again (every extra execution of a
step came from the killed worker); each stored output names the execution it
came from (its attempt and the pid of the process that ran it); the runs were
spread over at least two worker processes.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from durable_helpers import (
    NoParams,
    dict_rows,
    q,
    run_row,
    step_rows,
    wait_until,
)
from durable_procs import (
    COUNT,
    PID,
    WAIT_DURATION,
    Env,
    chain_workflow,
    crash_env,
    executions,
    read_effects,
    wait_ready_line,
)
from pydantic import BaseModel

from thodare_jupyter import connector, create_wfkit, define_workflow


@pytest.fixture
def env(db_url: str, tmp_path: Path) -> Iterator[Env]:
    """Worker processes on ``db_url`` and a client kit that never starts a worker."""
    with crash_env(tmp_path, db_url) as e:
        assert not e.kit.worker.running
        yield e


def _blocks_seen(e: Env, run_id: str) -> set[str]:
    return {f[1] for f in read_effects(e.effects) if f[0] == run_id}


def test_sigkilled_worker_run_finishes_in_a_new_process_without_rerunning_completed_steps(
    env: Env,
) -> None:
    w1 = env.pool.start()
    h = env.kit.run(chain_workflow(), {"start": 10})

    wait_until(lambda: {"one", "two", "slow"} <= _blocks_seen(env, h.id), 20, "slow step start")
    before = step_rows(env.db, h.id)
    # The database agrees: the first steps are done, the slow one is in flight, w1 holds it.
    assert {b: (r["status"], r["attempt"]) for b, r in before.items()} == {
        "one": ("completed", 1),
        "two": ("completed", 1),
        "slow": ("running", 1),
    }
    assert f":{w1.pid}:" in run_row(env.db, h.id)["lease_owner"]

    env.pool.kill(w1)
    assert w1.returncode == -signal.SIGKILL
    assert h.status == "running"  # nobody finished or released it: the lease must run out

    env.pool.start()
    out = h.result(timeout=30)

    assert {b: out[b]["n"] for b in ("one", "two", "slow", "four", "five")} == {
        "one": 11,
        "two": 12,
        "slow": 13,
        "four": 14,
        "five": 15,
    }
    assert out["slow"]["attempt"] == 2
    # Completed steps ran exactly once; the in-flight step ran twice with one key.
    lines = {b: executions(env.effects, h.id, b) for b in ("one", "two", "slow", "four", "five")}
    assert {b: len(v) for b, v in lines.items()} == {
        "one": 1,
        "two": 1,
        "slow": 2,
        "four": 1,
        "five": 1,
    }
    assert [f[2] for f in lines["slow"]] == ["1", "2"]
    assert {f[3] for f in lines["slow"]} == {f"{h.id}:slow"}
    for b in ("one", "two", "four", "five"):
        assert lines[b][0][2:] == ["1", f"{h.id}:{b}"]
    # The steps table agrees, and the outputs stored before the crash were not rewritten.
    after = step_rows(env.db, h.id)
    assert {b: (r["status"], r["attempt"]) for b, r in after.items()} == {
        "one": ("completed", 1),
        "two": ("completed", 1),
        "slow": ("completed", 2),
        "four": ("completed", 1),
        "five": ("completed", 1),
    }
    for b in ("one", "two"):
        assert after[b]["output_json"] == before[b]["output_json"]
        assert after[b]["ended_at"] == before[b]["ended_at"]
    d = h.describe()
    assert d.status == "completed"
    assert {s.block_id: s.attempt for s in d.steps} == {
        "one": 1,
        "two": 1,
        "slow": 2,
        "four": 1,
        "five": 1,
    }
    row = run_row(env.db, h.id)
    assert (row["status"], row["lease_owner"]) == ("completed", None)
    assert json.loads(row["outputs_json"])["five"]["n"] == 15


def test_killed_twice_in_the_same_step_the_third_attempt_keeps_the_key(env: Env) -> None:
    w = env.pool.start()
    h = env.kit.run(chain_workflow(slow_attempts=2), {"start": 0})
    for attempt in (1, 2):
        wait_until(
            lambda a=attempt: len(executions(env.effects, h.id, "slow")) >= a,
            20,
            f"slow attempt {attempt}",
        )
        env.pool.kill(w)
        w = env.pool.start()
    out = h.result(timeout=30)

    assert out["five"]["n"] == 5
    slow = executions(env.effects, h.id, "slow")
    assert [f[2] for f in slow] == ["1", "2", "3"]
    assert {f[3] for f in slow} == {f"{h.id}:slow"}
    for b in ("one", "two", "four", "five"):
        assert len(executions(env.effects, h.id, b)) == 1, b
    rows = step_rows(env.db, h.id)
    assert rows["slow"]["attempt"] == 3
    assert json.loads(rows["slow"]["output_json"])["attempt"] == 3


def test_run_parked_in_a_wait_keeps_its_timer_when_the_worker_dies(env: Env) -> None:
    wf = (
        define_workflow("dp-parked")
        .step("one", COUNT, {"n": 1})
        .step("pause", WAIT_DURATION, {"duration": 1500, "unit": "ms"}, needs=("one",))
        .step("two", COUNT, lambda r: {"n": r.one.n}, needs=("pause",))
        .build()
    )
    w1 = env.pool.start()
    h = env.kit.run(wf)
    wait_until(lambda: h.status == "waiting", 20, "the run to park")
    parked = step_rows(env.db, h.id)["pause"]
    assert parked["status"] == "waiting"
    assert run_row(env.db, h.id)["lease_owner"] is None  # parked: no worker holds it

    env.pool.kill(w1)
    env.pool.start()
    out = h.result(timeout=30)

    assert out["two"]["n"] == 3
    rows = step_rows(env.db, h.id)
    # The timer was not restarted by the new worker: it still ends where it was first set.
    assert rows["pause"]["wake_at"] == parked["wake_at"]
    assert rows["pause"]["ended_at"] >= parked["wake_at"]
    assert rows["pause"]["ended_at"] < parked["wake_at"] + 5
    assert len(executions(env.effects, h.id, "one")) == 1
    assert len(executions(env.effects, h.id, "two")) == 1


def test_worker_frozen_past_its_lease_cannot_write_after_the_takeover(env: Env) -> None:
    # Beyond the seed: a SIGSTOPped worker is a zombie, not a corpse. When it wakes
    # up after another worker took the run over, its writes are fenced off.
    w1 = env.pool.start()
    h = env.kit.run(chain_workflow(slow_seconds=2.0), {"start": 0})
    wait_until(lambda: "slow" in _blocks_seen(env, h.id), 20, "slow step start")
    os.kill(w1.pid, signal.SIGSTOP)
    try:
        env.pool.start()
        out = h.result(timeout=30)
        ended = step_rows(env.db, h.id)
    finally:
        os.kill(w1.pid, signal.SIGCONT)
    # Let the zombie's slow attempt 1 (2 s, started before the freeze) finish and try to write.
    time.sleep(2.5)
    assert w1.poll() is None  # still alive: it was fenced off, not crashed

    assert out["slow"]["attempt"] == 2
    assert step_rows(env.db, h.id) == ended  # nothing the zombie did landed
    row = run_row(env.db, h.id)
    assert row["status"] == "completed"
    assert json.loads(row["outputs_json"]) == out
    for b in ("one", "two", "four", "five"):
        assert len(executions(env.effects, h.id, b)) == 1, b  # the zombie did not walk on


# ── the seed's case: restart the worker in-process ──────────────────────────


class Stamp(BaseModel):
    stamp: str


def test_restarted_worker_replays_the_cached_first_step_and_reruns_the_second(
    db_url: str,
) -> None:
    # The seed failed step two, flipped a flag and restarted the worker. Here a
    # failed step fails the run (retries are the connector's RetryPolicy), so
    # the "crash" is a worker stopped while step two is in flight; a new kit on
    # the same database finishes the run.
    calls: Counter[str] = Counter()
    second_hangs = True

    @connector("first_block")
    def first(p: NoParams) -> Stamp:
        calls["first"] += 1
        return Stamp(stamp="first-done")

    @connector("second_block")
    async def second(p: NoParams) -> Stamp:
        calls["second"] += 1
        if second_hangs:
            await asyncio.sleep(60)
        return Stamp(stamp="second-done")

    wf = define_workflow("wf-crash").step("one", first).step("two", second, needs=("one",))
    kw: dict[str, Any] = {"env": {}, "poll_s": 0.05, "lease_s": 2}
    k1 = create_wfkit(db_url, **kw).register(first, second).start()
    try:
        h = k1.run(wf.build())
        wait_until(lambda: calls["second"] >= 1, 10, "step two to start")
        assert calls["first"] == 1
        k1.stop()  # the simulated crash: the walk is cut mid-step and handed back
        assert step_rows(db_url, h.id)["two"]["status"] == "running"
    finally:
        k1.close()

    second_hangs = False
    with create_wfkit(db_url, **kw).register(first, second) as k2:
        out = k2.get_handle(h.id).result(timeout=15)
    assert out["one"]["stamp"] == "first-done"
    assert out["two"]["stamp"] == "second-done"
    assert calls == {"first": 1, "second": 2}  # step one came from the database
    steps = step_rows(db_url, h.id)
    assert (steps["one"]["attempt"], steps["two"]["attempt"]) == (1, 2)


# ── three workers, 300 runs, one SIGKILL ────────────────────────────────────


RUNS = 300


class Start(BaseModel):
    start: int


def three_step_wf() -> Any:
    return (
        define_workflow("dp-three")
        .input(Start)
        .step("a", PID, lambda r: {"n": r.input.start, "seconds": 0.02})
        .step("b", PID, lambda r: {"n": r.a.n, "seconds": 0.02})
        .step("c", PID, lambda r: {"n": r.b.n, "seconds": 0.02})
        .build()
    )


def _count(url: str | Path, status: str) -> int:
    return int(q(url, "SELECT count(*) FROM thodare_runs WHERE status = ?", status)[0][0])


def _held_by(url: str | Path, pid: int) -> list[str]:
    rows = q(
        url,
        "SELECT id FROM thodare_runs WHERE status = 'running' AND lease_owner LIKE ?",
        f"%:{pid}:%",
    )
    return [r[0] for r in rows]


@pytest.mark.timeout(120)
def test_three_workers_share_300_runs_and_survive_a_sigkill(env: Env) -> None:
    # The runs exist before any worker does: the workers would otherwise finish most of
    # them while they are being created, and the kill would come too late.
    wf = three_step_wf()
    handles = [env.kit.run(wf, {"start": i}) for i in range(RUNS)]
    # Leases of 3 s: on a loaded 2-core machine a heartbeat can come more than the
    # usual 1 s late, and a run taken over then would rightly run a step again.
    env.pool.lease_s = 3.0
    workers = [env.pool.start(wait_ready=False) for _ in range(3)]
    for i, w in enumerate(workers):
        wait_ready_line(w, 30, f"worker {i} pid {w.pid}")
    pids = {w.pid for w in workers}

    wait_until(lambda: _count(env.db, "completed") >= RUNS // 3, 60, "a third of the runs")
    # the victim: the worker holding the most runs right now
    held: dict[int, list[str]] = {w.pid: _held_by(env.db, w.pid) for w in workers}
    victim = max(workers, key=lambda w: len(held[w.pid]))
    env.pool.kill(victim)
    orphans = _held_by(env.db, victim.pid)  # its leases stay until they run out
    done_at_kill = _count(env.db, "completed")
    assert orphans, "the victim held no run when it was killed"
    assert done_at_kill < RUNS, "the kill came too late to prove anything"

    wait_until(
        lambda: _count(env.db, "completed") == RUNS, 60, "every run to complete", interval=0.1
    )
    assert [w.poll() for w in workers if w is not victim] == [None, None]
    outs = [h.result(timeout=5) for h in handles]
    assert [o["c"]["n"] for o in outs] == [i + 3 for i in range(RUNS)]

    # every execution of every step, from the side-effect file
    execs: dict[tuple[str, str], list[tuple[int, int]]] = defaultdict(list)
    for run_id, block_id, attempt, key, pid in read_effects(env.effects):
        assert key == f"{run_id}:{block_id}"
        execs[(run_id, block_id)].append((int(attempt), int(pid)))
    rows = dict_rows(env.db, "SELECT run_id, block_id, status, attempt FROM thodare_steps")
    assert len(rows) == RUNS * 3
    assert {r["status"] for r in rows} == {"completed"}
    attempt_of = {(r["run_id"], r["block_id"]): r["attempt"] for r in rows}
    assert set(execs) == set(attempt_of)
    reran = 0
    for h, out in zip(handles, outs, strict=True):
        for b in ("a", "b", "c"):
            ex = execs[(h.id, b)]
            attempts = [a for a, _ in ex]
            assert len(set(attempts)) == len(attempts), (h.id, b, ex)  # never two at once
            # the stored output is the last execution's (its attempt and process)
            assert out[b]["attempt"] == attempt_of[(h.id, b)] == max(attempts), (h.id, b, ex)
            assert (out[b]["attempt"], out[b]["pid"]) == max(ex), (h.id, b, ex)
            # no completed step ran again: every execution but the last was cut by the kill
            assert all(pid == victim.pid for _, pid in sorted(ex)[:-1]), (h.id, b, ex)
            if len(ex) > 1:
                reran += 1
                assert h.id in orphans, (h.id, b, ex)
    by_pid = Counter(o["c"]["pid"] for o in outs)
    assert set(by_pid) <= pids
    assert len(by_pid) >= 2, by_pid
    print(
        f"[pg 3 workers x {RUNS} runs] killed pid {victim.pid} holding {len(orphans)} runs "
        f"after {done_at_kill} completions; steps re-executed: {reran}; "
        f"runs finished per pid: {dict(by_pid)}"
    )
