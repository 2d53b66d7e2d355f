"""Seed proof 18 (adversarial meanest), durable part: cancel, on our SQLite runtime.

The in-memory cases of the seed file live in ``test_18_adversarial_meanest.py``.
Here: canceling a parked run means the blocks after its wait never run, not
even when its timer comes due or its event arrives; its status is
``canceled`` and ``result()`` raises ``RunCanceled``. Canceling a run that is
busy in a slow step stops it: the step's coroutine is canceled, its result is
never recorded, and nothing after it runs. Canceling a finished run returns
False and changes nothing. A cancel from another process (on the same file)
works too.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from durable_helpers import (
    KitFactory,
    NoParams,
    block,
    chain_wf,
    q,
    steps_of,
    wait_until,
)
from pydantic import BaseModel

from thodare_jupyter import RunCanceled, define_connector


class Trap:
    """A connector that counts how often it runs (it should not)."""

    def __init__(self) -> None:
        self.calls = 0
        self.connector = define_connector(type="trap", params=NoParams, outputs=None,
                                          run=self._run)  # fmt: skip

    def _run(self, p: NoParams) -> dict[str, int]:
        self.calls += 1
        return {"calls": self.calls}


def wait_then_trap(wait_params: dict[str, Any]) -> dict[str, Any]:
    return chain_wf("wf-cancel", block("w", "wait_for_event", wait_params), block("down", "trap"))


def test_cancel_a_waiting_run_and_its_downstream_never_runs(kits: KitFactory, db: Path) -> None:
    trap = Trap()
    # the wait would time out after ≈1.1 s; the cancel must outlive that timer
    wf = wait_then_trap({"eventName": "never_will_fire", "timeoutHours": 0.0003})
    with kits() as kit:
        kit.register(trap.connector)
        h = kit.run(wf, {})
        wait_until(lambda: h.status == "waiting", what="the run to park")
        assert h.cancel() is True
        assert h.status == "canceled"
        with pytest.raises(RunCanceled) as ei:
            h.result(timeout=5)
        assert ei.value.run_id == h.id

        # its event arrives and its timer comes due: still nothing runs
        kit.signal("never_will_fire", {"late": True})
        time.sleep(0.0003 * 3600 + 0.5)
        assert h.status == "canceled"
    assert trap.calls == 0
    assert "down" not in steps_of(db, h.id)
    assert q(db, "SELECT status, lease_owner, ended_at IS NOT NULL FROM thodare_runs "
                 "WHERE id = ?", h.id) == [("canceled", None, 1)]  # fmt: skip
    assert q(db, "SELECT count(*) FROM thodare_signal_consumptions") == [(0,)]
    d = h.describe()
    assert d.status == "canceled" and d.ended_at is not None


def test_kit_cancel_of_a_waiting_run(kits: KitFactory, db: Path) -> None:
    trap = Trap()
    with kits() as kit:
        kit.register(trap.connector)
        h = kit.run(wait_then_trap({"eventName": "go"}), {})
        wait_until(lambda: h.status == "waiting", what="the run to park")
        assert kit.cancel(h.id) is True
        kit.signal("go", {})
        with pytest.raises(RunCanceled):
            h.result(timeout=5)
        time.sleep(0.3)
    assert trap.calls == 0
    assert [r.status for r in kit.runs()] == ["canceled"]


class Slow(BaseModel):
    seconds: float


def test_cancel_a_running_run_stops_its_slow_step(kits: KitFactory, db: Path) -> None:
    trap = Trap()
    events: list[str] = []
    entered = threading.Event()

    async def slow(p: Slow) -> dict[str, bool]:
        events.append("start")
        entered.set()
        try:
            await asyncio.sleep(p.seconds)
        except asyncio.CancelledError:
            events.append("cancelled")
            raise
        events.append("finished")
        return {"done": True}

    slow_c = define_connector(type="slow", params=Slow, outputs=None, run=slow)
    wf = chain_wf("wf-cancel-running", block("work", "slow", {"seconds": 2}), block("down", "trap"))
    with kits() as kit:
        kit.register(slow_c, trap.connector)
        h = kit.run(wf, {})
        assert entered.wait(10)
        assert h.status == "running"
        assert kit.cancel(h.id) is True
        with pytest.raises(RunCanceled):
            h.result(timeout=5)
        time.sleep(2.5)  # past the moment the slow step would have finished
        assert h.status == "canceled"
    assert trap.calls == 0
    # the step was stopped, not left to run out in the background
    assert events == ["start", "cancelled"]
    steps = steps_of(db, h.id)
    assert "down" not in steps
    assert steps["work"] != "completed"
    assert q(db, "SELECT output_json FROM thodare_steps WHERE run_id = ? AND block_id = 'work'",
             h.id) == [(None,)]  # fmt: skip


def test_cancel_of_a_finished_run_returns_false(kits: KitFactory, db: Path) -> None:
    wf = {
        "version": "1.0.0",
        "metadata": {"name": "wf-done"},
        "blocks": [
            {"id": "trg", "type": "trigger_webhook", "enabled": True, "params": {}},
            {"id": "t", "type": "transform", "enabled": True, "params": {"template": {"v": 1}}},
        ],
        "connections": [{"source": "trg", "target": "t"}],
    }  # fmt: skip
    with kits() as kit:
        h = kit.run(wf, {})
        out = h.result(timeout=10)
        before = q(db, "SELECT status, ended_at, outputs_json FROM thodare_runs WHERE id = ?", h.id)
        assert h.cancel() is False
        assert kit.cancel(h.id) is False
        assert h.status == "completed"
        assert h.result(timeout=1) == out
    assert q(db, "SELECT status, ended_at, outputs_json FROM thodare_runs WHERE id = ?",
             h.id) == before  # fmt: skip
    # a canceled run, too, has ended: a second cancel is False
    with kits() as kit:
        kit.register(Trap().connector)
        h2 = kit.run(wait_then_trap({"eventName": "x"}), {})
        assert h2.cancel() is True
        assert h2.cancel() is False


def test_cancel_from_another_process(kits: KitFactory, db: Path) -> None:
    trap = Trap()
    with kits() as kit:
        kit.register(trap.connector)
        h = kit.run(wait_then_trap({"eventName": "go"}), {})
        wait_until(lambda: h.status == "waiting", what="the run to park")
        script = textwrap.dedent(
            """
            import json, sys
            from thodare_jupyter import create_wfkit
            kit = create_wfkit(sys.argv[1], env={}, poll_s=0.05, lease_s=2)
            print(json.dumps({"first": kit.cancel(sys.argv[2]), "again": kit.cancel(sys.argv[2])}))
            """
        )
        proc = subprocess.run(
            [sys.executable, "-c", script, str(db), h.id],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout) == {"first": True, "again": False}
        with pytest.raises(RunCanceled):
            h.result(timeout=5)
        kit.signal("go", {})
        time.sleep(0.3)
    assert trap.calls == 0
