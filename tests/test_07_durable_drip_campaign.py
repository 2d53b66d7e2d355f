"""Seed proof 07 (durable drip campaign), on SQLite and on PostgreSQL.

Every test takes conftest's ``db_url`` (through ``any_kits``) and runs twice:
on a SQLite file, then on a fresh PostgreSQL schema.

signup → welcome → wait → tip1 → wait → tip2 → wait_for_event(convert) →
final, with the waits telescoped to fractions of a second. Every "email" is a
real POST to a loopback fake of the Slack Web API, so the fake's request log
counts the sends: exactly four, in order, each once, with the trigger's
address threaded through every block and the signal's plan in the last one.
The signal comes from the running kit with a correlation key, or (the seed's
case: it was emitted by a second workflow) from ANOTHER kit with no key, once
both timers were honoured. The same holds when the kit is closed and a new kit
started on the same database at every pause (the signal even arrives while no
worker runs, and only marks the run to wake): memoised steps never fire twice,
nor does a kit started afterwards replay anything. Two subscribers each get
their own four emails. The rows (read straight from the database) agree: the
seven steps each completed on attempt 1, in order, and the run completed with
no error.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import pytest
from durable_helpers import KitFactory, block, chain_wf, dict_rows, parked, wait_until

EMAIL = "alice@example.com"


@pytest.fixture
def kits(any_kits: KitFactory, slack_env: dict[str, str]) -> KitFactory:
    """Kits on ``db_url`` (SQLite, then PostgreSQL), talking to the Slack fake."""
    return functools.partial(any_kits, env=slack_env)


def email(block_id: str, text: str) -> dict[str, Any]:
    params = {"operation": "send", "channel": "{{trigger.email}}", "text": text}
    return block(block_id, "slack", params)


def drip_wf(wait_s: float, *, keyed: bool = True) -> dict[str, Any]:
    convert = {"eventName": "subscription.created"}
    if keyed:
        convert["correlationKey"] = "{{trigger.email}}"
    return chain_wf(
        "wf-drip",
        email("welcome", "welcome {{trigger.email}}"),
        block("wait1", "wait_duration", {"duration": wait_s, "unit": "s"}),
        email("tip1", "tip1 {{trigger.email}}"),
        block("wait2", "wait_duration", {"duration": wait_s, "unit": "s"}),
        email("tip2", "tip2 {{trigger.email}}"),
        block("convert", "wait_for_event", convert),
        email("final", "final {{trigger.email}} plan={{convert.data.plan}}"),
    )


def sent(slack_server: Any) -> list[tuple[str, str]]:
    return [(r["body"]["channel"], r["body"]["text"]) for r in slack_server.requests]


EXPECTED = [
    (EMAIL, f"welcome {EMAIL}"),
    (EMAIL, f"tip1 {EMAIL}"),
    (EMAIL, f"tip2 {EMAIL}"),
    (EMAIL, f"final {EMAIL} plan=pro"),
]


def assert_rows(url: str, run_id: str) -> None:
    """Every step completed once, on attempt 1, in order; the run completed with no error."""
    rows = dict_rows(
        url,
        "SELECT block_id, type, status, attempt FROM thodare_steps WHERE run_id = ? "
        "ORDER BY started_at",
        run_id,
    )
    assert [(r["block_id"], r["type"], r["status"], r["attempt"]) for r in rows] == [
        ("welcome", "slack", "completed", 1),
        ("wait1", "wait_duration", "completed", 1),
        ("tip1", "slack", "completed", 1),
        ("wait2", "wait_duration", "completed", 1),
        ("tip2", "slack", "completed", 1),
        ("convert", "wait_for_event", "completed", 1),
        ("final", "slack", "completed", 1),
    ]
    # the four sends, alone: each completed once, on attempt 1
    slack = [(r["block_id"], r["status"], r["attempt"]) for r in rows if r["type"] == "slack"]
    assert slack == [(b, "completed", 1) for b in ("welcome", "tip1", "tip2", "final")]
    run = dict_rows(url, "SELECT status, error FROM thodare_runs WHERE id = ?", run_id)
    assert run == [{"status": "completed", "error": None}]


def test_drip_campaign_sends_each_email_exactly_once(
    kits: KitFactory, db_url: str, slack_server: Any
) -> None:
    with kits() as kit:
        h = kit.run(drip_wf(0.5), {"email": EMAIL})
        wait_until(parked(db_url, h.id, "convert"), 15, "the run to reach the event wait")
        assert [t for _, t in sent(slack_server)] == [
            f"welcome {EMAIL}",
            f"tip1 {EMAIL}",
            f"tip2 {EMAIL}",
        ]
        kit.signal("subscription.created", {"plan": "pro"}, correlation_key=EMAIL)
        out = h.result(timeout=15)

    assert out["final"]["ok"] is True
    assert sent(slack_server) == EXPECTED
    assert_rows(db_url, h.id)


def test_unkeyed_event_from_another_kit_completes_the_campaign_after_both_timers(
    kits: KitFactory, db_url: str, slack_server: Any
) -> None:
    # the seed's case: the event is emitted from elsewhere (here: a kit with no worker)
    with kits() as kit:
        t0 = time.monotonic()
        h = kit.run(drip_wf(0.5, keyed=False), {"email": EMAIL})
        wait_until(parked(db_url, h.id, "convert"), 15, "the run to reach the event wait")
        assert time.monotonic() - t0 >= 1.0  # both timers were honoured
        assert [t for _, t in sent(slack_server)] == [t for _, t in EXPECTED[:3]]
        kits().signal("subscription.created", {"plan": "pro"})
        out = h.result(timeout=15)

    assert out["final"]["ok"] is True
    assert out["convert"] == {"data": {"plan": "pro"}, "timedOut": False}
    assert sent(slack_server) == EXPECTED
    assert_rows(db_url, h.id)


def test_drip_campaign_survives_a_kit_restart_at_every_pause(
    kits: KitFactory, db_url: str, slack_server: Any
) -> None:
    k1 = kits().start()
    h = k1.run(drip_wf(0.6), {"email": EMAIL})
    wait_until(parked(db_url, h.id, "wait1"), 15, "the run to park at wait1")
    k1.close()
    assert len(slack_server.requests) == 1

    k2 = kits().start()
    wait_until(parked(db_url, h.id, "wait2"), 15, "the run to park at wait2")
    k2.close()
    assert len(slack_server.requests) == 2

    k3 = kits().start()
    wait_until(parked(db_url, h.id, "convert"), 15, "the run to park at convert")
    k3.close()
    assert len(slack_server.requests) == 3

    # the signal is sent while no worker runs anywhere: it is stored, not lost
    k4 = kits()
    k4.signal("subscription.created", {"plan": "pro"}, correlation_key=EMAIL)
    time.sleep(0.3)
    assert len(slack_server.requests) == 3
    assert dict_rows(db_url, "SELECT wake_requested FROM thodare_runs") == [
        {"wake_requested": True}  # SQLite's 1 == True
    ]
    with k4:
        out = k4.get_handle(h.id).result(timeout=15)

    assert out["final"]["ok"] is True
    assert out["convert"]["data"] == {"plan": "pro"}
    assert sent(slack_server) == EXPECTED
    assert_rows(db_url, h.id)
    # a kit started later does not replay anything either
    with kits():
        time.sleep(0.3)
    assert len(slack_server.requests) == 4


def test_two_subscribers_each_get_their_own_four_emails(
    kits: KitFactory, db_url: str, slack_server: Any
) -> None:
    other = "bob@example.com"
    with kits() as kit:
        a = kit.run(drip_wf(0.3), {"email": EMAIL})
        b = kit.run(drip_wf(0.3), {"email": other})
        wait_until(parked(db_url, a.id, "convert"), 15, "alice to reach the event wait")
        wait_until(parked(db_url, b.id, "convert"), 15, "bob to reach the event wait")
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
    for h in (a, b):
        assert_rows(db_url, h.id)
