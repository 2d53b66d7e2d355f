"""Seed proof 05 (durable wait_duration), on our SQLite durable runtime.

A ``wait_duration`` step parks the run: its status is ``waiting`` and it holds
no worker slot (with ``concurrency=1`` another run starts and completes while
the first one waits), then the run continues once the time has passed, never
before. The timer lives in the SQLite file: it survives ``kit.stop()`` and a
new kit started on the same file, and it counts from the first time the step
parked (a restart does not start the wait over).
"""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from durable_helpers import (
    KitFactory,
    block,
    chain_wf,
    duration_wf,
    q,
    run_row,
    step_rows,
    wait_until,
)

from thodare_jupyter import RunHandle


def wait_wf(name: str, duration: float, unit: str) -> dict[str, Any]:
    return duration_wf(name, duration, unit, {"resumed": True, "at": "{{wait.resumedAt}}"})


QUICK = chain_wf("wf-quick", block("t", "transform", {"template": {"q": 1}}))


def step_row(db: Path, run_id: str, block_id: str) -> dict[str, Any]:
    """The step's row as a dict ({} while it has none)."""
    return step_rows(db, run_id).get(block_id, {})


def park_then_stop(kits: KitFactory, db: Path, name: str) -> tuple[RunHandle, float]:
    """A kit runs a 1.5 s wait until it parks, then stops: the run and the step's wake_at."""
    first = kits()
    first.start()
    h = first.run(wait_wf(name, 1500, "ms"), {})
    wait_until(lambda: h.status == "waiting", what="the run to park")
    wake_at: float = step_row(db, h.id, "wait")["wake_at"]
    first.stop()
    return h, wake_at


def test_wait_parks_without_a_worker_slot_then_continues(kits: KitFactory, db: Path) -> None:
    with kits(concurrency=1) as kit:
        slow = kit.run(wait_wf("wf-wait-dur", 1, "seconds"), {})
        wait_until(lambda: slow.status == "waiting", what="the run to park")

        # parked in the database: no lease, a timer on the run and on the step
        parked = run_row(db, slow.id)
        assert parked["status"] == "waiting"
        assert parked["lease_owner"] is None and parked["lease_expires_at"] is None
        wstep = step_row(db, slow.id, "wait")
        assert wstep["status"] == "waiting" and wstep["type"] == "wait_duration"
        assert parked["wake_at"] == pytest.approx(wstep["wake_at"])
        # the timer is set when the step first runs (a moment before its row is written)
        assert wstep["wake_at"] >= parked["created_at"] + 1.0
        assert wstep["wake_at"] - wstep["started_at"] == pytest.approx(1.0, abs=0.25)
        assert step_row(db, slow.id, "after") == {}

        # the single worker slot is free: another run completes meanwhile
        out_quick = kit.run(QUICK, {}).result(timeout=10)
        assert out_quick["t"]["result"] == {"q": 1}
        assert slow.status == "waiting"

        out = slow.result(timeout=15)

    assert out["after"]["result"]["resumed"] is True
    wstep = step_row(db, slow.id, "wait")
    assert wstep["status"] == "completed"
    # it did not wake early: the step ended no sooner than its timer, 1 s after it parked
    assert wstep["ended_at"] >= wstep["wake_at"] >= parked["created_at"] + 1.0
    resumed = datetime.fromisoformat(out["wait"]["resumedAt"].replace("Z", "+00:00")).timestamp()
    assert resumed >= wstep["wake_at"]
    assert out["after"]["result"]["at"] == out["wait"]["resumedAt"]
    assert step_row(db, slow.id, "after")["started_at"] >= wstep["ended_at"]


def test_timer_survives_stop_and_a_new_kit_on_the_same_file(kits: KitFactory, db: Path) -> None:
    h, wake_at = park_then_stop(kits, db, "wf-wait-restart")

    # with no worker anywhere, nothing happens even once the timer is due
    while time.time() < wake_at + 0.3:
        time.sleep(0.05)
    assert run_row(db, h.id)["status"] == "waiting"
    assert step_row(db, h.id, "after") == {}

    second = kits()
    restarted_at = time.time()
    with second:
        out = second.get_handle(h.id).result(timeout=15)
    assert out["after"]["result"]["resumed"] is True
    wstep = step_row(db, h.id, "wait")
    # the timer counted from the first park: the new kit did not start a fresh 1.5 s wait
    assert wstep["wake_at"] == wake_at
    assert wstep["ended_at"] < restarted_at + 1.5
    assert wstep["ended_at"] >= wake_at
    # the step ran once: one attempt, one row per block
    assert wstep["attempt"] == 1
    assert q(db, "SELECT count(*) FROM thodare_steps WHERE run_id = ?", h.id) == [(2,)]


def test_restart_before_the_timer_is_due_still_waits_it_out(kits: KitFactory, db: Path) -> None:
    h, wake_at = park_then_stop(kits, db, "wf-wait-early-restart")
    assert time.time() < wake_at  # restarted well before the timer is due

    with kits() as second:
        out = second.get_handle(h.id).result(timeout=15)
    assert out["after"]["result"]["resumed"] is True
    wstep = step_row(db, h.id, "wait")
    assert wstep["wake_at"] == wake_at
    assert wstep["ended_at"] >= wake_at  # the restart did not wake it early
