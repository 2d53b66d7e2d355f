"""Seed proof 12 (PostgreSQL drip campaign): multi-pause flows on a real PostgreSQL server.

signup → welcome → wait → tip1 → wait → tip2 → wait_for_event(convert) →
final, with the waits telescoped to fractions of a second. Every "email" is a
real POST to a loopback fake of the Slack Web API, so the fake's request log
counts the sends: exactly four, in order, each once, with the trigger's
address threaded through and the signal's plan in the last one. The signal is
sent by ANOTHER kit (the seed sent it from a second workflow). The same holds
when the kit is stopped and a new kit started at every pause (the signal
even arrives while no worker runs): memoised steps never fire twice. The
rows (read with psycopg in the test's schema) agree: four slack steps, each
completed on attempt 1, the waits completed once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from durable_helpers import block, chain_wf, wait_until
from durable_procs import pg_rows

from thodare_jupyter import Wfkit, create_wfkit

KitFactory = Callable[..., Wfkit]
EMAIL = "alice@example.com"


@pytest.fixture
def kits(pg_url: str, slack_env: dict[str, str]) -> Iterator[KitFactory]:
    """Kits on the test's schema talking to the Slack fake; closed at teardown."""
    made: list[Wfkit] = []

    def make(**kw: Any) -> Wfkit:
        kw = {"poll_s": 0.05, "lease_s": 2, "env": slack_env, **kw}
        kit = create_wfkit(pg_url, **kw)
        made.append(kit)
        return kit

    yield make
    for kit in made:
        kit.close()


def email(block_id: str, text: str) -> dict[str, Any]:
    params = {"operation": "send", "channel": "{{trigger.email}}", "text": text}
    return block(block_id, "slack", params)


def drip_wf(wait_s: float, *, keyed: bool = True) -> dict[str, Any]:
    convert = {"eventName": "subscription.created"}
    if keyed:
        convert["correlationKey"] = "{{trigger.email}}"
    return chain_wf(
        "wf-pg-drip",
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


def parked_at(url: str, run_id: str, block_id: str) -> Callable[[], bool]:
    """True once the run is waiting in the database with ``block_id`` parked."""

    def check() -> bool:
        rows = pg_rows(
            url,
            "SELECT r.status AS run, s.status AS step FROM thodare_runs r "
            "JOIN thodare_steps s ON s.run_id = r.id WHERE r.id = %s AND s.block_id = %s",
            run_id,
            block_id,
        )
        return rows == [{"run": "waiting", "step": "waiting"}]

    return check


def assert_rows(url: str, run_id: str) -> None:
    rows = pg_rows(
        url,
        "SELECT block_id, type, status, attempt FROM thodare_steps WHERE run_id = %s "
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
    run = pg_rows(url, "SELECT status, error FROM thodare_runs WHERE id = %s", run_id)
    assert run == [{"status": "completed", "error": None}]


def test_welcome_two_timers_two_tips_event_wait_final_all_durable_on_postgres(
    kits: KitFactory, pg_url: str, slack_server: Any
) -> None:
    # the seed's case: the event is emitted from elsewhere (here: a kit with no worker)
    with kits() as kit:
        t0 = time.monotonic()
        h = kit.run(drip_wf(0.5, keyed=False), {"email": EMAIL})
        wait_until(parked_at(pg_url, h.id, "convert"), 15, "the run to reach the event wait")
        assert time.monotonic() - t0 >= 1.0  # both timers were honoured
        assert [t for _, t in sent(slack_server)] == [t for _, t in EXPECTED[:3]]
        kits().signal("subscription.created", {"plan": "pro"})
        out = h.result(timeout=15)

    assert out["final"]["ok"] is True
    assert out["convert"] == {"data": {"plan": "pro"}, "timedOut": False}
    assert sent(slack_server) == EXPECTED
    assert_rows(pg_url, h.id)


def test_drip_campaign_survives_a_kit_restart_at_every_pause(
    kits: KitFactory, pg_url: str, slack_server: Any
) -> None:
    k1 = kits().start()
    h = k1.run(drip_wf(0.6), {"email": EMAIL})
    wait_until(parked_at(pg_url, h.id, "wait1"), 15, "the run to park at wait1")
    k1.close()
    assert len(slack_server.requests) == 1

    k2 = kits().start()
    wait_until(parked_at(pg_url, h.id, "wait2"), 15, "the run to park at wait2")
    k2.close()
    assert len(slack_server.requests) == 2

    k3 = kits().start()
    wait_until(parked_at(pg_url, h.id, "convert"), 15, "the run to park at convert")
    k3.close()
    assert len(slack_server.requests) == 3

    # the signal is sent while no worker runs anywhere: it is stored, not lost
    k4 = kits()
    k4.signal("subscription.created", {"plan": "pro"}, correlation_key=EMAIL)
    time.sleep(0.3)
    assert len(slack_server.requests) == 3
    assert pg_rows(pg_url, "SELECT wake_requested FROM thodare_runs") == [{"wake_requested": True}]
    with k4:
        out = k4.get_handle(h.id).result(timeout=15)

    assert out["final"]["ok"] is True
    assert out["convert"]["data"] == {"plan": "pro"}
    assert sent(slack_server) == EXPECTED
    assert_rows(pg_url, h.id)
    # a kit started later does not replay anything either
    with kits():
        time.sleep(0.3)
    assert len(slack_server.requests) == 4


def test_two_subscribers_each_get_their_own_four_emails(
    kits: KitFactory, pg_url: str, slack_server: Any
) -> None:
    other = "bob@example.com"
    with kits() as kit:
        a = kit.run(drip_wf(0.3), {"email": EMAIL})
        b = kit.run(drip_wf(0.3), {"email": other})
        wait_until(parked_at(pg_url, a.id, "convert"), 15, "alice to reach the event wait")
        wait_until(parked_at(pg_url, b.id, "convert"), 15, "bob to reach the event wait")
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
        assert_rows(pg_url, h.id)
