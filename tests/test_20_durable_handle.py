"""Seed proof 20 (durable handle), on our SQLite runtime.

A ``RunHandle`` describes its run at once (status, timestamps, each step with
its attempts), ``result()`` waits with no time cap by default (the seed's
"no 5-minute cap": a run that takes a couple of seconds just works), a short
``result(timeout=...)`` raises ``RunTimeout`` while the run goes on and
completes later, ``cancel()`` is reflected by ``describe()`` and the
downstream block never fires, and ``get_handle(id)`` reattaches by id: in
this process, and from ANOTHER process that opens the same SQLite file
(it waits for the result / describes the run and prints JSON), even one that
runs the rest of the run itself.

The seed's last case (``backend`` required by the TypeScript type system)
has no Python counterpart and is not ported.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from durable_helpers import (
    KitFactory,
    NoParams,
    block,
    chain_wf,
    duration_wf,
    event_wf,
    q,
    wait_until,
)

from thodare_jupyter import (
    RetryPolicy,
    RunCanceled,
    RunDescription,
    RunNotFound,
    RunTimeout,
    create_wfkit,
    define_connector,
)


def ts(iso: str | None) -> float:
    assert iso is not None
    return datetime.fromisoformat(iso).timestamp()


def trivial_wf(name: str, wait_ms: int = 1000) -> dict[str, Any]:
    return duration_wf(name, wait_ms, "ms", {"ok": True}, then_id="done")


def test_describe_at_once_then_result_with_no_time_cap(kits: KitFactory, db: Path) -> None:
    with kits() as kit:
        h = kit.run(trivial_wf("handle-1", 2000), {})
        assert len(h.id) == 32 and int(h.id, 16) >= 0

        d = h.describe()  # does not block
        assert isinstance(d, RunDescription)
        assert d.id == h.id and d.workflow == "handle-1"
        assert d.status in ("pending", "running", "waiting")
        assert d.ended_at is None and d.outputs is None

        t0 = time.monotonic()
        out = h.result()  # the default: no cap
        assert time.monotonic() - t0 > 1.0  # it really waited for the 2 s timer
        final = h.describe()

    assert out["done"]["result"] == {"ok": True}
    assert final.status == "completed"
    assert final.outputs == out
    assert final.error is None and final.failed_block is None
    # each step inside the run's lifetime (created ≤ started: see the test above)
    created, started, ended = ts(final.created_at), ts(final.started_at), ts(final.ended_at)
    assert started <= ended and created <= ended
    by_id = {s.block_id: s for s in final.steps}
    assert [s.block_id for s in final.steps] == ["wait", "done"]  # in the order they started
    assert by_id["wait"].type == "wait_duration" and by_id["wait"].status == "completed"
    assert by_id["done"].output == {"result": {"ok": True}}
    for s in final.steps:
        assert s.attempt == 1 and s.error is None and s.waiting_for is None
        assert started <= ts(s.started_at) <= ts(s.ended_at) <= ended
    assert ts(by_id["wait"].ended_at) - ts(by_id["wait"].started_at) >= 1.9


QUICK = chain_wf("quick", block("t", "transform", {"template": 1}))


def test_timestamps_are_ordered_for_a_run_claimed_at_once(tmp_path: Path) -> None:
    # A run created while a just-started worker is claiming must not look as
    # if it started before it was created.
    for i in range(8):
        with create_wfkit(str(tmp_path / f"r{i}.db"), env={}, poll_s=0.05, lease_s=2) as kit:
            h = kit.run(QUICK, {})
            h.result(timeout=10)
            d = h.describe()
        kit.store.dispose()
        created, started, ended = ts(d.created_at), ts(d.started_at), ts(d.ended_at)
        assert created <= started <= ended, (
            f"run {i}: created_at {d.created_at} > started_at {d.started_at}"
            if created > started
            else f"run {i}: started_at {d.started_at} > ended_at {d.ended_at}"
        )


def test_describe_shows_per_step_attempts_and_errors(kits: KitFactory, db: Path) -> None:
    tries: list[int] = []

    def flaky(p: NoParams, ctx: Any) -> dict[str, int]:
        tries.append(ctx.attempt)
        if ctx.attempt < 3:
            raise ConnectionError(f"flaky attempt {ctx.attempt}")
        return {"attempt": ctx.attempt}

    def broken(p: NoParams) -> dict[str, int]:
        raise ValueError("always broken")

    retry = RetryPolicy(max_attempts=3, backoff_s=0.01)
    flaky_c = define_connector(type="flaky", params=NoParams, outputs=None, run=flaky,
                               retries=retry)  # fmt: skip
    broken_c = define_connector(type="broken", params=NoParams, outputs=None, run=broken,
                                retries=retry)  # fmt: skip

    def wf(kind: str) -> dict[str, Any]:
        return chain_wf(f"wf-{kind}", block("step", kind))

    with kits() as kit:
        kit.register(flaky_c, broken_c)
        ok = kit.run(wf("flaky"), {})
        assert ok.result(timeout=15)["step"] == {"attempt": 3}
        bad = kit.run(wf("broken"), {})
        with pytest.raises(Exception) as ei:
            bad.result(timeout=15)
        d_ok, d_bad = ok.describe(), bad.describe()

    assert tries == [1, 2, 3]
    (s,) = d_ok.steps
    assert (s.block_id, s.type, s.status, s.attempt, s.error) == ("step", "flaky", "completed", 3,
                                                                  None)  # fmt: skip
    (b,) = d_bad.steps
    assert (b.status, b.attempt) == ("failed", 3)
    assert b.error is not None and "always broken" in b.error
    assert d_bad.status == "failed" and d_bad.failed_block == "step"
    assert d_bad.error is not None and "always broken" in d_bad.error
    assert type(ei.value).__name__ == "RunFailed"
    assert q(db, "SELECT attempt FROM thodare_steps WHERE run_id = ?", bad.id) == [(3,)]


def test_short_result_timeout_raises_and_the_run_goes_on(kits: KitFactory) -> None:
    with kits() as kit:
        h = kit.run(trivial_wf("handle-timeout", 2000), {})
        t0 = time.monotonic()
        with pytest.raises(RunTimeout) as ei:
            h.result(timeout=0.5)
        assert time.monotonic() - t0 < 1.9  # it gave up at its own timeout, not the run's end
        assert ei.value.run_id == h.id and ei.value.timeout == 0.5
        assert ei.value.status in ("pending", "running", "waiting")
        assert "0.5s" in str(ei.value) and "keeps going" in str(ei.value)
        # the run is alive: keep waiting and get it
        out = h.result()
    assert out["done"]["result"] == {"ok": True}


def test_cancel_is_reflected_by_describe_and_downstream_never_fires(kits: KitFactory) -> None:
    ran: list[int] = []

    def trap(p: NoParams) -> dict[str, bool]:
        ran.append(1)
        return {"ran": True}

    trap_c = define_connector(type="trap", params=NoParams, outputs=None, run=trap)
    wf = chain_wf(
        "handle-cancel",
        block("wait", "wait_for_event", {"eventName": "never_will_fire", "timeoutHours": 1}),
        block("trap", "trap"),
    )
    with kits() as kit:
        kit.register(trap_c)
        h = kit.run(wf, {})
        wait_until(lambda: h.status == "waiting", what="the run to park")
        d = h.describe()
        assert [(s.block_id, s.status, s.waiting_for) for s in d.steps] == [
            ("wait", "waiting", "never_will_fire")
        ]
        assert h.cancel() is True
        time.sleep(0.4)  # give the worker a beat
        d = h.describe()
        with pytest.raises(RunCanceled):
            h.result()
    assert d.status == "canceled" and d.ended_at is not None
    assert "trap" not in {s.block_id for s in d.steps}
    assert ran == []


def test_get_handle_reattaches_in_this_process(kits: KitFactory) -> None:
    with kits() as kit:
        h = kit.run(trivial_wf("handle-reattach"), {})
        again = kit.get_handle(h.id)
        assert again.id == h.id
        assert again.result(timeout=15)["done"]["result"] == {"ok": True}
        assert h.result(timeout=1) == again.result(timeout=1)
        with pytest.raises(RunNotFound) as ei:
            _ = kit.get_handle("0" * 32).status
        assert (ei.value.run_id, ei.value.namespace) == ("0" * 32, kit.store.namespace)
        assert isinstance(ei.value, LookupError) and not isinstance(ei.value, KeyError)


READER = textwrap.dedent(
    """
    import json, sys
    from thodare_jupyter import create_wfkit
    db, run_id, start = sys.argv[1], sys.argv[2], sys.argv[3] == "start"
    kit = create_wfkit(db, env={}, poll_s=0.05, lease_s=2)
    h = kit.get_handle(run_id)
    print(json.dumps({"attached": h.describe().model_dump(mode="json")}), flush=True)
    if start:
        kit.start()
    try:
        out = h.result(timeout=30)
        d = h.describe()
    finally:
        kit.stop()
    print(json.dumps({"outputs": out, "describe": d.model_dump(mode="json")}), flush=True)
    """
)


class OtherProcess:
    """A second Python process that opens the same SQLite file and reattaches by id."""

    def __init__(self, db: Path, run_id: str, *, start: bool) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", READER, str(db), run_id, "start" if start else "watch"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    def attached(self) -> dict[str, Any]:
        """What the other process saw when it attached (it then waits for the result)."""
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, self.finish_err()
        return json.loads(line)["attached"]  # type: ignore[no-any-return]

    def final(self) -> dict[str, Any]:
        out, err = self.proc.communicate(timeout=30)
        assert self.proc.returncode == 0, err
        return json.loads(out)  # type: ignore[no-any-return]

    def finish_err(self) -> str:
        self.proc.kill()
        return self.proc.communicate()[1]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def other_processes() -> Iterator[list[OtherProcess]]:
    made: list[OtherProcess] = []
    yield made
    for p in made:
        p.kill()


def go_wf(name: str) -> dict[str, Any]:
    return event_wf(name, {"eventName": "go"}, {"ok": True, "x": "{{wait.data.x}}"}, then_id="done")


def test_get_handle_from_another_process_waits_and_describes(
    kits: KitFactory, db: Path, other_processes: list[OtherProcess]
) -> None:
    with kits() as kit:  # this process runs the worker; the other one only watches
        h = kit.run(go_wf("handle-cross-process"), {})
        wait_until(lambda: h.status == "waiting", what="the run to park")
        other = OtherProcess(db, h.id, start=False)
        other_processes.append(other)
        seen = other.attached()
        assert seen["id"] == h.id and seen["status"] == "waiting"
        assert [(s["block_id"], s["status"], s["waiting_for"]) for s in seen["steps"]] == [
            ("wait", "waiting", "go")
        ]
        kit.signal("go", {"x": 7})  # the other process is blocked in result() until now
        got = other.final()
        mine = h.result(timeout=15)
        my_desc = h.describe()
    assert got["outputs"] == mine
    assert got["outputs"]["done"]["result"] == {"ok": True, "x": 7}
    d = got["describe"]
    assert (d["id"], d["status"], d["workflow"]) == (h.id, "completed", "handle-cross-process")
    assert d == my_desc.model_dump(mode="json")
    assert [(s["block_id"], s["status"], s["attempt"]) for s in d["steps"]] == [
        ("wait", "completed", 1), ("done", "completed", 1)
    ]  # fmt: skip


def test_another_process_can_finish_a_run_this_one_started(
    kits: KitFactory, db: Path, other_processes: list[OtherProcess]
) -> None:
    kit = kits()  # never started here: the other process runs the worker
    h = kit.run(trivial_wf("handle-other-worker", 300), {})
    assert h.status == "pending"
    other = OtherProcess(db, h.id, start=True)
    other_processes.append(other)
    assert other.attached()["status"] == "pending"
    got = other.final()
    assert got["describe"]["status"] == "completed"
    assert h.status == "completed"
    assert h.result(timeout=1) == got["outputs"]
