"""Seed proof 06 (durable wait_for_event), on our SQLite durable runtime.

A run parks on ``wait_for_event`` and ``kit.signal`` wakes it; the signal's
payload reaches downstream blocks through ``{{wait.data.x}}`` (types kept).
Around it: correlation keys route a signal to the right run only (a keyed
wait ignores signals with another key or none; an unkeyed wait takes any); a
small ``timeoutHours`` wakes the run with ``{"data": None, "timedOut": True}``;
a signal's ``idempotency_key`` makes a resend a no-op; ``human_approval`` is
answered with ``kit.approve`` (approved / by / comment flow downstream) and a
rejection takes the other branch.

The seed sends its signal from a second openworkflow workflow; our signal is a
plain ``kit.signal`` call that stores the signal in the SQLite file.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from durable_helpers import (
    KitFactory,
    block,
    chain_wf,
    event_wf,
    parked,
    q,
    steps_of,
    wait_until,
    workflow,
)

from thodare_jupyter.errors import RunTimeout


def test_signal_wakes_the_run_and_its_payload_flows_downstream(kits: KitFactory, db: Path) -> None:
    wf = event_wf(
        "wf-wait-event-main",
        {"eventName": "approval-received"},
        {"ok": "{{wait.data.approved}}", "by": "{{wait.data.by}}", "n": "{{wait.data.n}}",
         "line": "approved by {{wait.data.by}}", "timedOut": "{{wait.timedOut}}"},
    )  # fmt: skip
    with kits() as kit:
        h = kit.run(wf, {})
        wait_until(parked(db, h.id), what="the run to park on its event")
        assert q(db, "SELECT wait_event, wait_key FROM thodare_steps WHERE run_id = ? "
                     "AND block_id = 'wait'", h.id) == [("approval-received", None)]  # fmt: skip
        time.sleep(0.2)  # parked means parked: nothing moves without the signal
        assert h.status == "waiting"

        sid = kit.signal("approval-received", {"approved": True, "by": "alice", "n": 3})
        out = h.result(timeout=15)

    assert out["after"]["result"] == {
        "ok": True, "by": "alice", "n": 3, "line": "approved by alice", "timedOut": False,
    }  # fmt: skip
    assert out["wait"] == {"data": {"approved": True, "by": "alice", "n": 3}, "timedOut": False}
    # the signal is stored, and this run consumed it once, at the wait block
    rows = q(db, "SELECT event, correlation_key, payload_json FROM thodare_signals WHERE id = ?",
             sid)  # fmt: skip
    assert rows[0][:2] == ("approval-received", None)
    assert json.loads(rows[0][2])["by"] == "alice"
    assert q(db, "SELECT run_id, block_id FROM thodare_signal_consumptions") == [(h.id, "wait")]


def test_correlation_keys_route_signals_to_the_right_run_only(kits: KitFactory, db: Path) -> None:
    keyed = event_wf(
        "wf-keyed",
        {"eventName": "order.paid", "correlationKey": "{{trigger.order}}"},
        {"order": "{{trigger.order}}", "amount": "{{wait.data.amount}}"},
    )
    unkeyed = event_wf("wf-unkeyed", {"eventName": "order.paid"},
                       {"amount": "{{wait.data.amount}}"})  # fmt: skip
    with kits() as kit:
        a = kit.run(keyed, {"order": "A-1"})
        b = kit.run(keyed, {"order": "B-2"})
        anyone = kit.run(unkeyed, {})
        for h in (a, b, anyone):
            wait_until(parked(db, h.id), what=f"run {h.id} to park")
        assert q(db, "SELECT wait_key FROM thodare_steps WHERE run_id = ?", a.id) == [("A-1",)]

        # a signal for B wakes B, and the unkeyed wait (it takes any), not A
        kit.signal("order.paid", {"amount": 20}, correlation_key="B-2")
        out_b = b.result(timeout=15)
        out_any = anyone.result(timeout=15)
        assert out_b["after"]["result"] == {"order": "B-2", "amount": 20}
        assert out_any["after"]["result"] == {"amount": 20}

        # a signal with no key does not wake a keyed wait, nor does another order's key
        kit.signal("order.paid", {"amount": 99})
        kit.signal("order.paid", {"amount": 98}, correlation_key="C-3")
        kit.signal("order.refunded", {"amount": 97}, correlation_key="A-1")
        time.sleep(0.5)
        assert a.status == "waiting"
        assert steps_of(db, a.id).get("after") is None

        kit.signal("order.paid", {"amount": 10}, correlation_key="A-1")
        out_a = a.result(timeout=15)
    assert out_a["after"]["result"] == {"order": "A-1", "amount": 10}


def test_timeout_hours_wakes_with_timed_out_true(kits: KitFactory, db: Path) -> None:
    wf = event_wf(
        "wf-timeout",
        {"eventName": "never_fires", "timeoutHours": 0.0003},  # ≈ 1.08 s
        {"reached": True, "td": "{{wait.timedOut}}", "data": "{{wait.data}}"},
    )
    with kits() as kit:
        h = kit.run(wf, {})
        wait_until(parked(db, h.id), what="the run to park")
        out = h.result(timeout=15)
    assert out["wait"] == {"data": None, "timedOut": True}
    assert out["after"]["result"] == {"reached": True, "td": True, "data": None}
    started, ended = q(db, "SELECT started_at, ended_at FROM thodare_steps WHERE run_id = ? "
                           "AND block_id = 'wait'", h.id)[0]  # fmt: skip
    assert ended - started >= 0.0003 * 3600 - 0.05  # not before its time
    assert q(db, "SELECT count(*) FROM thodare_signal_consumptions") == [(0,)]


def two_waits_wf() -> dict[str, Any]:
    """trigger → first (wait "tick") → second (wait "tick") → after."""
    return chain_wf(
        "wf-two-ticks",
        block("first", "wait_for_event", {"eventName": "tick"}),
        block("second", "wait_for_event", {"eventName": "tick"}),
        block("after", "transform", {"template": ["{{first.data.n}}", "{{second.data.n}}"]}),
    )


def test_signal_idempotency_key_dedupes(kits: KitFactory, db: Path) -> None:
    with kits() as kit:
        h = kit.run(two_waits_wf(), {})
        wait_until(parked(db, h.id, "first"), what="the first wait to park")

        s1 = kit.signal("tick", {"n": 1}, idempotency_key="webhook-delivery-1")
        wait_until(parked(db, h.id, "second"), what="the second wait to park")
        # the sender retries the same delivery: same signal id, no new row, nothing wakes
        s1_again = kit.signal("tick", {"n": 1}, idempotency_key="webhook-delivery-1")
        assert s1_again == s1
        assert q(db, "SELECT count(*) FROM thodare_signals") == [(1,)]
        time.sleep(0.5)
        assert h.status == "waiting"
        assert steps_of(db, h.id).get("second") == "waiting"

        s2 = kit.signal("tick", {"n": 2}, idempotency_key="webhook-delivery-2")
        assert s2 != s1
        out = h.result(timeout=15)
    assert out["after"]["result"] == [1, 2]
    assert sorted(q(db, "SELECT signal_id, block_id FROM thodare_signal_consumptions")) == [
        (s1, "first"),
        (s2, "second"),
    ]


def approval_wf() -> dict[str, Any]:
    """trigger → approve (human_approval) → decide (true: ship / false: notify_rejected)."""
    return workflow(
        "wf-approval",
        [
            block("approve", "human_approval", {"prompt": "Ship order {{trigger.order}}?"}),
            block("decide", "transform", {"template": "{{approve.approved}}"}),
            block("ship", "transform",
                  {"template": {"shipped": "{{trigger.order}}", "by": "{{approve.by}}",
                                "note": "{{approve.comment}}"}}),
            block("rejected", "transform",
                  {"template": {"rejected": "{{trigger.order}}", "by": "{{approve.by}}",
                                "why": "{{approve.comment}}"}}),
        ],
        [
            {"source": "trg", "target": "approve"},
            {"source": "approve", "target": "decide"},
            {"source": "decide", "target": "ship", "sourceHandle": "true"},
            {"source": "decide", "target": "rejected", "sourceHandle": "false"},
        ],
    )  # fmt: skip


def test_human_approval_approved_flows_downstream(kits: KitFactory, db: Path) -> None:
    with kits() as kit:
        h = kit.run(approval_wf(), {"order": "o-1"})
        wait_until(parked(db, h.id, "approve"), what="the approval to park")
        assert h.describe().steps[0].waiting_for == f"human_approval:{h.id}:approve"
        kit.approve(h.id, "approve", approved=True, by="carol", comment="lgtm")
        out = h.result(timeout=15)
    assert out["approve"] == {
        "approved": True, "by": "carol", "note": "lgtm", "comment": "lgtm", "timedOut": False,
    }  # fmt: skip
    assert out["ship"]["result"] == {"shipped": "o-1", "by": "carol", "note": "lgtm"}
    assert "rejected" not in out
    assert steps_of(db, h.id).get("rejected") == "skipped"


def test_human_approval_rejection_routes_to_the_other_branch(kits: KitFactory, db: Path) -> None:
    with kits() as kit:
        h = kit.run(approval_wf(), {"order": "o-2"})
        other = kit.run(approval_wf(), {"order": "o-3"})
        wait_until(parked(db, h.id, "approve"), what="the approval to park")
        wait_until(parked(db, other.id, "approve"), what="the other approval to park")
        kit.approve(h.id, "approve", approved=False, by="dave", comment="out of stock")
        out = h.result(timeout=15)
        # an answer is for one run's one block: the other run still waits
        assert other.status == "waiting"
    assert out["approve"]["approved"] is False
    assert out["rejected"]["result"] == {"rejected": "o-2", "by": "dave", "why": "out of stock"}
    assert "ship" not in out
    assert steps_of(db, h.id).get("ship") == "skipped"
    assert steps_of(db, other.id).get("approve") == "waiting"


def test_a_signal_sent_while_the_run_walks_to_its_wait_is_never_lost(
    any_kits: KitFactory,
) -> None:
    """A signal sent at once after the run starts races the walk to the wait: the
    step is recorded as waiting while the signal looks for waiting steps. Either
    the wait finds the signal or the signal wakes the parked run (PostgreSQL lost
    11 of 200 before sends and waits took the event's lock)."""
    kit = any_kits().start()
    wf = event_wf("wf-race", {"eventName": "go"}, {"got": "{{wait.data.n}}"})
    lost = 0
    for i in range(60):
        h = kit.run(wf)
        kit.signal("go", {"n": i})
        try:
            h.result(timeout=3)
        except RunTimeout:
            lost += 1
    assert lost == 0
