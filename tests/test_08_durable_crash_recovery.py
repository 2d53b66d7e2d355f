"""Seed proof 08 (durable crash recovery), with REAL worker processes killed by SIGKILL.

A worker process walks a run of ``one → two → slow → four → five``; while the
slow step is in flight the worker is SIGKILLed (no cleanup, its lease stays
until it expires). A NEW worker process takes the run over after the lease
(1 s) and finishes it:

* steps that completed before the crash are not executed again (their outputs
  come back from ``thodare_steps``: one side-effect line each, stored output
  unchanged);
* the step in flight runs again with ``ctx.attempt == 2`` and the SAME
  ``ctx.idempotency_key`` (``"<run_id>:<block_id>"``), so an outside service can
  dedupe it; the ``attempt`` column agrees with the side-effect file;
* a run parked in a ``wait_duration`` when its worker dies keeps its original
  timer; a worker frozen past its lease (SIGSTOP) cannot write after the takeover.

The runs are started from the test process through a kit that never starts a
worker, so every step runs in a worker process. The seed's version toggled a
flag and restarted the worker in-process; here the crash is a real SIGKILL.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from durable_helpers import run_row, step_rows, wait_until
from durable_procs import (
    COUNT,
    WAIT_DURATION,
    Env,
    chain_workflow,
    crash_env,
    executions,
    read_effects,
)

from thodare_jupyter import define_workflow


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    with crash_env(tmp_path) as e:
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
    assert row["lease_owner"] is None
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
