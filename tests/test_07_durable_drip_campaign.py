"""Seed proof 07 (durable drip campaign), on our SQLite durable runtime.

signup → welcome → wait → tip1 → wait → tip2 → wait_for_event(convert) →
final, telescoped to about a second per wait. Every "email" is a real POST
to a loopback fake of the Slack Web API, so the fake's request log counts
the sends: exactly four, in order, each once, with the trigger's address
threaded through every block and the signal's plan in the last one. The
same holds when the kit is stopped and a new kit is started on the same
SQLite file at every pause (and the signal is sent while no worker runs):
memoised steps never fire twice.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any

import pytest
from durable_helpers import KitFactory, block, chain_wf, parked, q, wait_until

EMAIL = "alice@example.com"


@pytest.fixture
def kits(kits: KitFactory, slack_env: dict[str, str]) -> KitFactory:
    """The shared kits, talking to the Slack fake."""
    return functools.partial(kits, env=slack_env)


def email(block_id: str, text: str) -> dict[str, Any]:
    params = {"operation": "send", "channel": "{{trigger.email}}", "text": text}
    return block(block_id, "slack", params)


def drip_wf(wait_s: float) -> dict[str, Any]:
    return chain_wf(
        "wf-drip",
        email("welcome", "welcome {{trigger.email}}"),
        block("wait1", "wait_duration", {"duration": wait_s, "unit": "s"}),
        email("tip1", "tip1 {{trigger.email}}"),
        block("wait2", "wait_duration", {"duration": wait_s, "unit": "s"}),
        email("tip2", "tip2 {{trigger.email}}"),
        block("convert", "wait_for_event",
              {"eventName": "subscription.created", "correlationKey": "{{trigger.email}}"}),
        email("final", "final {{trigger.email}} plan={{convert.data.plan}}"),
    )  # fmt: skip


def sent(slack_server: Any) -> list[tuple[str, str]]:
    return [(r["body"]["channel"], r["body"]["text"]) for r in slack_server.requests]


EXPECTED = [
    (EMAIL, f"welcome {EMAIL}"),
    (EMAIL, f"tip1 {EMAIL}"),
    (EMAIL, f"tip2 {EMAIL}"),
    (EMAIL, f"final {EMAIL} plan=pro"),
]


def test_drip_campaign_sends_each_email_exactly_once(
    kits: KitFactory, db: Path, slack_server: Any
) -> None:
    with kits() as kit:
        h = kit.run(drip_wf(0.5), {"email": EMAIL})
        wait_until(parked(db, h.id, "convert"), what="the run to reach the event wait")
        assert [t for _, t in sent(slack_server)] == [
            f"welcome {EMAIL}",
            f"tip1 {EMAIL}",
            f"tip2 {EMAIL}",
        ]
        kit.signal("subscription.created", {"plan": "pro"}, correlation_key=EMAIL)
        out = h.result(timeout=15)

    assert out["final"]["ok"] is True
    assert sent(slack_server) == EXPECTED
    rows = q(db, "SELECT block_id, status, attempt FROM thodare_steps WHERE run_id = ? "
                 "AND type = 'slack' ORDER BY started_at", h.id)  # fmt: skip
    assert rows == [(b, "completed", 1) for b in ("welcome", "tip1", "tip2", "final")]


def test_drip_campaign_survives_a_restart_at_every_pause(
    kits: KitFactory, db: Path, slack_server: Any
) -> None:
    k1 = kits().start()
    h = k1.run(drip_wf(1.0), {"email": EMAIL})
    wait_until(parked(db, h.id, "wait1"), what="the run to park at wait1")
    k1.stop()
    assert len(slack_server.requests) == 1

    k2 = kits().start()
    wait_until(parked(db, h.id, "wait2"), what="the run to park at wait2")
    k2.stop()
    assert len(slack_server.requests) == 2

    k3 = kits().start()
    wait_until(parked(db, h.id, "convert"), what="the run to park at convert")
    k3.stop()
    assert len(slack_server.requests) == 3

    # the signal is sent while no worker runs anywhere: it is stored, not lost
    k4 = kits()
    k4.signal("subscription.created", {"plan": "pro"}, correlation_key=EMAIL)
    time.sleep(0.3)
    assert len(slack_server.requests) == 3
    with k4:
        out = k4.get_handle(h.id).result(timeout=15)

    assert out["final"]["ok"] is True
    assert out["convert"]["data"] == {"plan": "pro"}
    assert sent(slack_server) == EXPECTED
    rows = q(db, "SELECT block_id, status, attempt FROM thodare_steps WHERE run_id = ? "
                 "AND type = 'slack' ORDER BY started_at", h.id)  # fmt: skip
    assert rows == [(b, "completed", 1) for b in ("welcome", "tip1", "tip2", "final")]
    # a kit started later does not replay anything either
    with kits():
        time.sleep(0.3)
    assert len(slack_server.requests) == 4


def test_two_subscribers_each_get_their_own_four_emails(
    kits: KitFactory, db: Path, slack_server: Any
) -> None:
    other = "bob@example.com"
    with kits() as kit:
        a = kit.run(drip_wf(0.3), {"email": EMAIL})
        b = kit.run(drip_wf(0.3), {"email": other})
        wait_until(parked(db, a.id, "convert"), what="alice to reach the event wait")
        wait_until(parked(db, b.id, "convert"), what="bob to reach the event wait")
        kit.signal("subscription.created", {"plan": "pro"}, correlation_key=EMAIL)
        a.result(timeout=15)
        assert b.status == "waiting"  # bob has not converted yet
        kit.signal("subscription.created", {"plan": "team"}, correlation_key=other)
        b.result(timeout=15)

    by_channel: dict[str, list[str]] = {}
    for channel, text in sent(slack_server):
        by_channel.setdefault(channel, []).append(text)
    assert by_channel[EMAIL] == [t for _, t in EXPECTED]
    assert by_channel[other] == [f"welcome {other}", f"tip1 {other}", f"tip2 {other}",
                                 f"final {other} plan=team"]  # fmt: skip
    assert len(slack_server.requests) == 8
