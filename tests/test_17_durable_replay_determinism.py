"""Seed proof 17 (durable quirk): non-determinism observed once stays observed across replay.

A step returns ``time.time()`` and ``random.random()``; a downstream step
consumes them. The worker process is SIGKILLed after the first step completed
(while a later step is in flight, or while the run is parked in a wait); a new
worker process replays the run. The downstream step sees the ORIGINAL values:
the first step is not executed again (its output comes from
``thodare_steps``), and its stored output is byte-for-byte unchanged.

The seed's own case (a clock step followed by a step that fails once and is
retried) is ported at the end, with an in-process worker and a retry policy.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from durable_helpers import run_row, step_rows, wait_until
from durable_procs import (
    EFFECTS_ENV,
    Env,
    crash_env,
    executions,
    stamp_workflow,
)
from pydantic import BaseModel

from thodare_jupyter import (
    Catalog,
    RetryPolicy,
    StepContext,
    create_wfkit,
    define_connector,
    define_workflow,
)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    with crash_env(tmp_path) as e:
        yield e


def _check_original_values_survived(
    e: Env, run_id: str, out: dict[str, object], stored_now: str
) -> None:
    original = json.loads(stored_now)
    assert original["attempt"] == 1
    # The downstream step consumed the values observed before the crash ...
    assert out["use"] == {"ts": original["ts"], "rnd": original["rnd"], "attempt": 1}
    assert out["now"] == original
    # ... because the clock step never ran again, and its stored row was not rewritten.
    assert len(executions(e.effects, run_id, "now")) == 1
    assert step_rows(e.db, run_id)["now"]["output_json"] == stored_now
    assert json.loads(run_row(e.db, run_id)["outputs_json"])["now"] == original


def test_time_and_random_are_memoised_across_a_worker_crash(env: Env) -> None:
    w1 = env.pool.start()
    h = env.kit.run(stamp_workflow(slow_seconds=60))
    wait_until(lambda: executions(env.effects, h.id, "slow"), 20, "the slow step to start")
    stored_now = step_rows(env.db, h.id)["now"]["output_json"]
    assert stored_now is not None

    env.pool.kill(w1)
    env.pool.start()
    out = h.result(timeout=30)

    _check_original_values_survived(env, h.id, out, stored_now)
    assert out["slow"]["attempt"] == 2  # the step in flight did run again
    assert len(executions(env.effects, h.id, "slow")) == 2


def test_time_and_random_are_memoised_when_the_worker_dies_during_a_wait(env: Env) -> None:
    w1 = env.pool.start()
    h = env.kit.run(stamp_workflow(slow_seconds=0, wait_ms=1500))
    wait_until(lambda: h.status == "waiting", 20, "the run to park")
    stored_now = step_rows(env.db, h.id)["now"]["output_json"]
    time.sleep(0.1)  # the clock moves on; a re-run of `now` would see a different time

    env.pool.kill(w1)
    env.pool.start()
    out = h.result(timeout=30)

    _check_original_values_survived(env, h.id, out, stored_now)
    assert len(executions(env.effects, h.id, "slow")) == 1  # finished before the crash


# ── the seed's case: a retry replays the run, the clock step stays memoised ──


class Ts(BaseModel):
    ts: float


class Ok(BaseModel):
    ok: bool


def test_seed_clock_observed_once_stays_observed_across_a_retry(tmp_path: Path) -> None:
    observed: list[float] = []
    flaky_calls: list[int] = []

    def now(_: BaseModel) -> Ts:
        ts = time.time()
        observed.append(ts)
        return Ts(ts=ts)

    def flake(_: BaseModel, ctx: StepContext) -> Ok:
        flaky_calls.append(ctx.attempt)
        if ctx.attempt == 1:
            raise RuntimeError("first-fail")
        return Ok(ok=True)

    class Empty(BaseModel):
        pass

    date_c = define_connector(type="date_block", params=Empty, outputs=Ts, run=now)
    flake_c = define_connector(
        type="flake_block",
        params=Empty,
        outputs=Ok,
        run=flake,
        retries=RetryPolicy(max_attempts=2, backoff_s=0.01),
    )
    wf = define_workflow("wf-determinism").step("now", date_c).step("fl", flake_c, needs=("now",))
    kit = create_wfkit(
        str(tmp_path / "runs.db"),
        catalog=Catalog(date_c, flake_c),
        env={EFFECTS_ENV: str(tmp_path / "effects.log")},
        lease_s=1,
        poll_s=0.05,
    )
    with kit:
        out = kit.run(wf.build()).result(timeout=20)
    kit.store.dispose()
    assert flaky_calls == [1, 2]
    assert len(observed) == 1  # the clock step ran once although `fl` failed once
    assert out["now"]["ts"] == observed[0]
    assert out["fl"] == {"ok": True}
