"""Durable runtime: per-connector retries with exponential backoff, run deadlines, safe migrations.

* A connector declares its retries (``RetryPolicy(max_attempts=3, backoff_s=0.05)``):
  a step failing twice then succeeding completes on attempt 3, each try sees the
  same idempotency key, and the pause before each retry grows (0.05 s, then 0.1 s).
  A step failing every time fails the run after exactly 3 attempts with
  ``RunFailed`` naming the block and the error; nothing downstream runs. A
  connector without a policy gets one attempt.
* ``deadline=`` fails a run that has not finished in time ("deadline passed"):
  while it waits for an event, while a step runs, or when no worker was alive
  at the deadline (then no step runs at all). A run that finishes in time is
  not affected.
* Four processes calling ``create_wfkit`` on the same fresh SQLite file at the
  same moment all succeed (migrations are serialized) and the schema is at one
  revision.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from durable_helpers import KitFactory, db_conn, run_row, step_rows
from durable_procs import THIS, wait_ready_line
from pydantic import BaseModel

from thodare_jupyter import (
    Catalog,
    RetryPolicy,
    RunFailed,
    SerializedWorkflow,
    StepContext,
    Wfkit,
    define_connector,
    define_workflow,
)

POLICY = RetryPolicy(max_attempts=3, backoff_s=0.05)


class Empty(BaseModel):
    pass


class Tried(BaseModel):
    attempt: int


class Calls:
    """What the connectors saw, per block (they run in the worker's threads)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.log: list[tuple[str, int, str, float, str]] = []  # block, attempt, key, t, phase

    def add(self, ctx: StepContext, phase: str) -> None:
        with self.lock:
            self.log.append(
                (ctx.block_id, ctx.attempt, ctx.idempotency_key, time.monotonic(), phase)
            )

    def of(self, block: str) -> list[tuple[str, int, str, float, str]]:
        with self.lock:
            return [c for c in self.log if c[0] == block]


CALLS = Calls()


def _flaky(_: Empty, ctx: StepContext) -> Tried:
    CALLS.add(ctx, "start")
    if ctx.attempt < 3:
        CALLS.add(ctx, "fail")
        raise ConnectionError(f"upstream flaked on attempt {ctx.attempt}")
    return Tried(attempt=ctx.attempt)


def _broken(_: Empty, ctx: StepContext) -> Tried:
    CALLS.add(ctx, "start")
    raise ValueError("kaboom: the service said no")


def _once(_: Empty, ctx: StepContext) -> Tried:
    CALLS.add(ctx, "start")
    return Tried(attempt=ctx.attempt)


async def _sleepy(_: Empty, ctx: StepContext) -> Tried:
    CALLS.add(ctx, "start")
    await asyncio.sleep(5)
    CALLS.add(ctx, "end")
    return Tried(attempt=ctx.attempt)


FLAKY = define_connector(type="rt_flaky", params=Empty, outputs=Tried, run=_flaky, retries=POLICY)
BROKEN = define_connector(
    type="rt_broken", params=Empty, outputs=Tried, run=_broken, retries=POLICY
)
BROKEN_NO_RETRY = define_connector(type="rt_broken_once", params=Empty, outputs=Tried, run=_broken)
ONCE = define_connector(type="rt_once", params=Empty, outputs=Tried, run=_once)
SLEEPY = define_connector(type="rt_sleepy", params=Empty, outputs=Tried, run=_sleepy)
WAIT_FOR_EVENT = Catalog().get("wait_for_event")


@pytest.fixture
def make_kit(kits: KitFactory) -> Callable[[], Wfkit]:
    """Kits (lease 1 s) that know the ``rt_*`` connectors; CALLS starts empty."""

    def make() -> Wfkit:
        return kits(catalog=Catalog(FLAKY, BROKEN, BROKEN_NO_RETRY, ONCE, SLEEPY), lease_s=1)

    CALLS.log.clear()
    return make


# ── retries ─────────────────────────────────────────────────────────────────


def test_step_failing_twice_then_succeeding_completes_on_attempt_3_with_growing_backoff(
    make_kit: Callable[[], Wfkit],
) -> None:
    wf = define_workflow("retry-ok").step("flaky", FLAKY).step("after", ONCE, needs=("flaky",))
    with make_kit() as kit:
        h = kit.run(wf.build())
        out = h.result(timeout=20)

    assert out["flaky"] == {"attempt": 3}
    assert out["after"] == {"attempt": 1}
    calls = CALLS.of("flaky")
    assert [(c[1], c[4]) for c in calls] == [
        (1, "start"),
        (1, "fail"),
        (2, "start"),
        (2, "fail"),
        (3, "start"),
    ]
    assert {c[2] for c in calls} == {f"{h.id}:flaky"}  # one idempotency key for every try
    gap1 = calls[2][3] - calls[1][3]  # fail 1 -> start 2
    gap2 = calls[4][3] - calls[3][3]  # fail 2 -> start 3
    assert gap1 >= 0.05 - 0.005, gap1
    assert gap2 >= 0.10 - 0.005, gap2
    assert gap2 > gap1, (gap1, gap2)  # exponential: backoff_s * 2 ** (n - 1)
    assert gap2 < 2.0  # and not some other, much longer pause
    rows = step_rows(kit.store.url.removeprefix("sqlite:///"), h.id)
    assert (rows["flaky"]["status"], rows["flaky"]["attempt"]) == ("completed", 3)
    assert rows["flaky"]["error"] is None
    steps = {s.block_id: s for s in h.describe().steps}
    assert steps["flaky"].attempt == 3 and steps["flaky"].status == "completed"
    assert steps["after"].attempt == 1


def test_step_failing_every_time_fails_the_run_after_3_attempts(
    make_kit: Callable[[], Wfkit],
) -> None:
    wf = define_workflow("retry-fail").step("boom", BROKEN).step("after", ONCE, needs=("boom",))
    with make_kit() as kit:
        h = kit.run(wf.build())
        with pytest.raises(RunFailed) as ei:
            h.result(timeout=20)

    e = ei.value
    assert e.run_id == h.id
    assert e.block_id == "boom"
    assert "kaboom: the service said no" in e.error
    assert "boom" in str(e) and "kaboom" in str(e)
    assert [c[1] for c in CALLS.of("boom")] == [1, 2, 3]  # exactly max_attempts tries
    assert CALLS.of("after") == []  # nothing downstream ran
    db = kit.store.url.removeprefix("sqlite:///")
    row = run_row(db, h.id)
    assert (row["status"], row["failed_block"]) == ("failed", "boom")
    assert "kaboom" in row["error"]
    rows = step_rows(db, h.id)
    assert (rows["boom"]["status"], rows["boom"]["attempt"]) == ("failed", 3)
    assert "kaboom" in rows["boom"]["error"]
    assert "after" not in rows


def test_retries_are_per_connector_a_step_without_a_policy_gets_one_attempt(
    make_kit: Callable[[], Wfkit],
) -> None:
    wf = (
        define_workflow("no-retry")
        .step("flaky", FLAKY)
        .step("once", BROKEN_NO_RETRY, needs=("flaky",))
    )
    with make_kit() as kit:
        h = kit.run(wf.build())
        with pytest.raises(RunFailed) as ei:
            h.result(timeout=20)
    assert ei.value.block_id == "once"
    assert [c[1] for c in CALLS.of("flaky") if c[4] == "start"] == [1, 2, 3]
    assert [c[1] for c in CALLS.of("once")] == [1]


# ── deadlines ───────────────────────────────────────────────────────────────


def _event_wf(name: str) -> SerializedWorkflow:
    return (
        define_workflow(name)
        .step("first", ONCE)
        .step("wait", WAIT_FOR_EVENT, {"eventName": "never.sent"}, needs=("first",))
        .step("after", ONCE, needs=("wait",))
        .build()
    )


def test_deadline_fails_a_run_waiting_for_an_event(make_kit: Callable[[], Wfkit]) -> None:
    with make_kit() as kit:
        t0 = time.monotonic()
        h = kit.run(_event_wf("deadline-wait"), deadline=0.5)
        with pytest.raises(RunFailed) as ei:
            h.result(timeout=20)
        took = time.monotonic() - t0
        # A late signal does not bring it back.
        kit.signal("never.sent", {"late": True})
        time.sleep(0.3)
        assert h.status == "failed"

    assert "deadline" in ei.value.error.lower()
    assert 0.45 <= took < 5.0, took
    d = h.describe()
    assert d.status == "failed" and "deadline" in (d.error or "").lower()
    assert [c[0] for c in CALLS.log] == ["first"]  # `after` never ran


def test_deadline_fails_a_run_while_a_step_is_running(make_kit: Callable[[], Wfkit]) -> None:
    wf = define_workflow("deadline-step").step("slow", SLEEPY).step("after", ONCE, needs=("slow",))
    with make_kit() as kit:
        t0 = time.monotonic()
        h = kit.run(wf.build(), deadline=0.5)
        with pytest.raises(RunFailed) as ei:
            h.result(timeout=20)
        took = time.monotonic() - t0
    assert "deadline" in ei.value.error.lower()
    assert 0.45 <= took < 4.0, took
    assert [(c[0], c[4]) for c in CALLS.log] == [("slow", "start")]


def test_deadline_that_passed_while_no_worker_ran_fails_without_running_a_step(
    make_kit: Callable[[], Wfkit],
) -> None:
    kit = make_kit()  # not started yet
    h = kit.run(_event_wf("deadline-offline"), deadline=0.2)
    time.sleep(0.4)
    kit.start()
    with pytest.raises(RunFailed) as ei:
        h.result(timeout=20)
    kit.stop()
    assert "deadline" in ei.value.error.lower()
    assert CALLS.log == []


def test_a_run_that_finishes_before_its_deadline_completes(make_kit: Callable[[], Wfkit]) -> None:
    wf = define_workflow("deadline-ok").step("a", ONCE).step("b", ONCE, needs=("a",))
    with make_kit() as kit:
        h = kit.run(wf.build(), deadline=30)
        out = h.result(timeout=20)
    assert out["b"] == {"attempt": 1}


# ── migrations racing ───────────────────────────────────────────────────────


def test_four_processes_creating_the_kit_on_one_fresh_file_at_once_all_succeed(
    tmp_path: Path,
) -> None:
    db, go = tmp_path / "fresh.db", tmp_path / "go"
    assert not db.exists()
    procs: list[subprocess.Popen[bytes]] = []
    errs = [tmp_path / f"open-{i}.err" for i in range(4)]
    try:
        for err in errs:
            with open(err, "wb") as fh:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, str(THIS), "open", str(db), str(go)],
                        stdout=subprocess.PIPE,
                        stderr=fh,
                        stdin=subprocess.DEVNULL,
                    )
                )
        for p in procs:  # all imported and waiting
            wait_ready_line(p, 30, f"opener pid {p.pid}")
        go.touch()  # ... and off they go, within a millisecond of each other
        outs = [p.communicate(timeout=60)[0].decode() for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=10)
            if p.stdout is not None:
                p.stdout.close()

    logs = [e.read_text() for e in errs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], logs
    run_ids = [line.split()[1] for o in outs for line in o.splitlines() if line.startswith("run ")]
    assert len(set(run_ids)) == 4
    with db_conn(db) as c:
        versions = c.execute("SELECT version_num FROM thodare_alembic_version").fetchall()
        assert len(versions) == 1
        stored = {r[0] for r in c.execute("SELECT id FROM thodare_runs").fetchall()}
        tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert stored == set(run_ids)
    assert {
        "thodare_runs",
        "thodare_steps",
        "thodare_signals",
        "thodare_signal_consumptions",
    } <= tables
