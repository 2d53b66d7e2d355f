"""Seed proof 15 (adversarial pause/resume), durable part, on our SQLite runtime.

The in-memory half of the seed file lives in ``test_15_adversarial_pause_resume.py``.
Here: a ``wait_for_event`` with a tight timeout and no sender wakes with
``timedOut: true``; one signal wakes every RUN waiting for it (the seed's
fan-out), while one run consumes a signal once, so two waits on the same event
inside ONE run need two signals; and the emit race.

The emit race is where we deliberately do better than the seed: its signal
is dropped when no waiter is parked yet. Ours are stored, so a signal sent
after a run was created but before the run reaches its wait (still pending,
or busy in an earlier step) is not lost. A run created AFTER a signal does
not see it (the seed's "emit before" case still times out, as there).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from durable_helpers import (
    KitFactory,
    NoParams,
    block,
    chain_wf,
    event_wf,
    parked,
    q,
    run_status,
    steps_of,
    wait_until,
    workflow,
)

from thodare_jupyter import define_connector


def wait_then(name: str, wait_params: dict[str, Any], template: Any) -> dict[str, Any]:
    return event_wf(name, wait_params, template, wait_id="w")


def test_tight_timeout_and_no_sender_resumes_with_timed_out_true(kits: KitFactory) -> None:
    wf = wait_then("wf-timeout", {"eventName": "never_fires", "timeoutHours": 0.0004},
                   {"reached": True, "td": "{{w.timedOut}}"})  # fmt: skip
    with kits() as kit:
        out = kit.run(wf, {}).result(timeout=15)
    assert out["after"]["result"] == {"reached": True, "td": True}
    assert out["w"] == {"data": None, "timedOut": True}


def test_one_signal_wakes_every_run_waiting_for_it(kits: KitFactory, db: Path) -> None:
    def mk(label: str) -> dict[str, Any]:
        return wait_then(f"wf-fanout-{label}", {"eventName": "broadcast"},
                         {"from": label, "got": "{{w.data.payload}}"})  # fmt: skip

    with kits() as kit:
        ha, hb = kit.run(mk("A"), {}), kit.run(mk("B"), {})
        wait_until(parked(db, ha.id, "w"), what="A to park")
        wait_until(parked(db, hb.id, "w"), what="B to park")
        sid = kit.signal("broadcast", {"payload": "hello-all"})
        out_a, out_b = ha.result(timeout=15), hb.result(timeout=15)
    assert out_a["after"]["result"] == {"from": "A", "got": "hello-all"}
    assert out_b["after"]["result"] == {"from": "B", "got": "hello-all"}
    assert sorted(q(db, "SELECT signal_id, run_id FROM thodare_signal_consumptions")) == sorted(
        [(sid, ha.id), (sid, hb.id)]
    )


def test_two_waits_in_one_run_on_the_same_event_need_two_signals(
    kits: KitFactory, db: Path
) -> None:
    # Our documented semantics: each run consumes a signal once. Two parallel
    # waits on one event in ONE run are woken one signal each.
    wf = workflow(
        "wf-two-waiters",
        [
            block("w1", "wait_for_event", {"eventName": "broadcast"}),
            block("w2", "wait_for_event", {"eventName": "broadcast"}),
            block("join", "transform", {"template": ["{{w1.data.n}}", "{{w2.data.n}}"]}),
        ],
        [
            {"source": "trg", "target": "w1"}, {"source": "trg", "target": "w2"},
            {"source": "w1", "target": "join"}, {"source": "w2", "target": "join"},
        ],
    )  # fmt: skip
    with kits() as kit:
        h = kit.run(wf, {})
        wait_until(
            lambda: (
                run_status(db, h.id) == "waiting"
                and steps_of(db, h.id) == {"w1": "waiting", "w2": "waiting"}
            ),
            what="both waits to park",
        )
        s1 = kit.signal("broadcast", {"n": 1})
        wait_until(
            lambda: (
                run_status(db, h.id) == "waiting"
                and sorted(steps_of(db, h.id).values()) == ["completed", "waiting"]
            ),
            what="exactly one wait to take the first signal",
        )
        time.sleep(0.3)  # and it stays that way: the second wait does not get the same signal
        assert sorted(steps_of(db, h.id).values()) == ["completed", "waiting"]
        assert h.status == "waiting"

        s2 = kit.signal("broadcast", {"n": 2})
        out = h.result(timeout=15)
    assert sorted(out["join"]["result"]) == [1, 2]
    consumed = q(db, "SELECT signal_id, block_id FROM thodare_signal_consumptions")
    assert sorted(s for s, _ in consumed) == [s1, s2]
    assert sorted(b for _, b in consumed) == ["w1", "w2"]


def test_signal_sent_while_the_run_is_pending_is_not_lost(kits: KitFactory, db: Path) -> None:
    # The seed drops a signal nobody waits for yet; we store it (better than the seed).
    wf = wait_then("wf-early-pending", {"eventName": "early", "timeoutHours": 0.002},
                   {"x": "{{w.data.x}}", "td": "{{w.timedOut}}"})  # fmt: skip
    kit = kits()  # no worker yet: the run stays pending
    h = kit.run(wf, {})
    kit.signal("early", {"x": 1})
    assert run_status(db, h.id) == "pending"
    kit.start()
    out = h.result(timeout=15)
    assert out["after"]["result"] == {"x": 1, "td": False}


def test_signal_sent_before_the_run_reaches_its_wait_is_not_lost(
    kits: KitFactory, db: Path
) -> None:
    # The run is busy in an earlier step when the signal comes (the emit race).
    entered, release = threading.Event(), threading.Event()

    def gate(p: NoParams) -> dict[str, bool]:
        entered.set()
        if not release.wait(10):
            raise TimeoutError("gate was never released")
        return {"passed": True}

    gate_c = define_connector(type="gate", params=NoParams, outputs=None, run=gate)
    wf = chain_wf(
        "wf-emit-race",
        block("busy", "gate"),
        block("w", "wait_for_event", {"eventName": "race", "timeoutHours": 0.002}),
        block("after", "transform", {"template": {"x": "{{w.data.x}}", "td": "{{w.timedOut}}"}}),
    )
    with kits() as kit:
        kit.register(gate_c)
        h = kit.run(wf, {})
        assert entered.wait(10)
        assert steps_of(db, h.id) == {"busy": "running"}  # not at the wait yet
        kit.signal("race", {"x": 42})
        release.set()
        out = h.result(timeout=15)
    assert out["after"]["result"] == {"x": 42, "td": False}


def test_run_created_after_the_signal_does_not_see_it(kits: KitFactory, db: Path) -> None:
    # As in the seed: "emit before" the run exists is not delivered to it.
    wf = wait_then("wf-late", {"eventName": "tooEarly", "timeoutHours": 0.0003},
                   {"x": "{{w.data.x}}", "td": "{{w.timedOut}}"})  # fmt: skip
    with kits() as kit:
        kit.signal("tooEarly", {"x": 1})
        out = kit.run(wf, {}).result(timeout=15)
    assert out["after"]["result"] == {"x": None, "td": True}
    assert q(db, "SELECT count(*) FROM thodare_signal_consumptions") == [(0,)]


def test_run_created_after_a_signal_takes_the_next_one(kits: KitFactory, db: Path) -> None:
    wf = wait_then("wf-late-next", {"eventName": "tick"}, {"x": "{{w.data.x}}"})
    with kits() as kit:
        old = kit.signal("tick", {"x": "old"})
        h = kit.run(wf, {})
        wait_until(parked(db, h.id, "w"), what="the run to park")
        time.sleep(0.3)
        assert h.status == "waiting"  # the older signal is not for this run
        new = kit.signal("tick", {"x": "new"})
        out = h.result(timeout=15)
    assert out["after"]["result"] == {"x": "new"}
    assert q(db, "SELECT signal_id FROM thodare_signal_consumptions") == [(new,)]
    assert old != new
