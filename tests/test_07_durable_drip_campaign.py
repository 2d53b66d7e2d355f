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

import itertools
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from thodare_jupyter import Wfkit, create_wfkit

KitFactory = Callable[..., Wfkit]
EMAIL = "alice@example.com"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "runs.db"


@pytest.fixture
def kits(db: Path, slack_env: dict[str, str]) -> Iterator[KitFactory]:
    """Kits on the test's SQLite file, talking to the Slack fake; all stopped at teardown."""
    made: list[Wfkit] = []

    def make(**kw: Any) -> Wfkit:
        kit = create_wfkit(str(db), env=slack_env, poll_s=0.05, lease_s=2, **kw)
        made.append(kit)
        return kit

    yield make
    for kit in made:
        kit.stop()
        kit.store.dispose()


def q(db: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(db)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def wait_until(pred: Callable[[], bool], timeout: float = 10.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def parked_at(db: Path, run_id: str, block_id: str) -> Callable[[], bool]:
    def check() -> bool:
        run = q(db, "SELECT status FROM thodare_runs WHERE id = ?", run_id)[0][0]
        step = q(db, "SELECT status FROM thodare_steps WHERE run_id = ? AND block_id = ?",
                 run_id, block_id)  # fmt: skip
        return run == "waiting" and step == [("waiting",)]

    return check


def email(block_id: str, text: str) -> dict[str, Any]:
    params = {"operation": "send", "channel": "{{trigger.email}}", "text": text}
    return {"id": block_id, "type": "slack", "enabled": True, "params": params}


def drip_wf(wait_s: float) -> dict[str, Any]:
    ids = ["trg", "welcome", "wait1", "tip1", "wait2", "tip2", "convert", "final"]
    return {
        "version": "1.0.0",
        "metadata": {"name": "wf-drip"},
        "blocks": [
            {"id": "trg", "type": "trigger_webhook", "enabled": True, "params": {}},
            email("welcome", "welcome {{trigger.email}}"),
            {"id": "wait1", "type": "wait_duration", "enabled": True,
             "params": {"duration": wait_s, "unit": "s"}},
            email("tip1", "tip1 {{trigger.email}}"),
            {"id": "wait2", "type": "wait_duration", "enabled": True,
             "params": {"duration": wait_s, "unit": "s"}},
            email("tip2", "tip2 {{trigger.email}}"),
            {"id": "convert", "type": "wait_for_event", "enabled": True,
             "params": {"eventName": "subscription.created",
                        "correlationKey": "{{trigger.email}}"}},
            email("final", "final {{trigger.email}} plan={{convert.data.plan}}"),
        ],
        "connections": [{"source": a, "target": b} for a, b in itertools.pairwise(ids)],
    }  # fmt: skip


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
        wait_until(parked_at(db, h.id, "convert"), what="the run to reach the event wait")
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
    wait_until(parked_at(db, h.id, "wait1"), what="the run to park at wait1")
    k1.stop()
    assert len(slack_server.requests) == 1

    k2 = kits().start()
    wait_until(parked_at(db, h.id, "wait2"), what="the run to park at wait2")
    k2.stop()
    assert len(slack_server.requests) == 2

    k3 = kits().start()
    wait_until(parked_at(db, h.id, "convert"), what="the run to park at convert")
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
        wait_until(parked_at(db, a.id, "convert"), what="alice to reach the event wait")
        wait_until(parked_at(db, b.id, "convert"), what="bob to reach the event wait")
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
