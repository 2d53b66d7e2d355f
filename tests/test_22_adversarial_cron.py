"""Seed proof 22 (adversarial-cron), on SQLite and on PostgreSQL.

Thirty dispatchers (thirty kits, each with its own connections) racing on
one tick start each schedule's run exactly once. A schedule whose stored row
cannot start a run is reported with its error and does not stop the others.
A malformed cron expression, time zone, end or policy is refused when the
schedule is made, naming the field, and nothing is stored. After downtime
there is no catch-up storm: ``missed="once"`` runs the latest tick once,
``"skip"`` runs none. A clock set back fires nothing twice (the seed fires
again here; we store the next tick instead, so a rewind does no harm), and
the tick's idempotency key is the same for any second within the minute.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from durable_helpers import KitFactory
from pydantic import BaseModel

from thodare_jupyter import Catalog, InputInvalid, ScheduleInvalid, define_workflow
from thodare_jupyter.durable.cron import latest_tick, next_tick
from thodare_jupyter.durable.schedules import MISSED_GRACE_S, DispatchReport

TRANSFORM = Catalog().get("transform")


class Item(BaseModel):
    i: int


WF = (
    define_workflow("cron-red-team")
    .input(Item)
    .step("echo", TRANSFORM, lambda r: {"template": {"i": r.input.i}})
    .build()
)


def upcoming(cron: str = "* * * * *") -> float:
    """The next tick after now: every schedule made now is due then, none before."""
    return next_tick(cron, "UTC", time.time())


def stamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_thirty_concurrent_dispatchers_fire_each_schedule_once(any_kits: KitFactory) -> None:
    owner = any_kits()
    for i in range(10):
        owner.schedule(WF, "* * * * *", {"i": i}, name=f"s{i}")
    tick = upcoming()
    dispatchers = [any_kits() for _ in range(30)]
    barrier = threading.Barrier(len(dispatchers))
    reports: list[DispatchReport] = []
    errors: list[BaseException] = []

    def race(kit: object) -> None:
        try:
            barrier.wait(timeout=60)
            reports.append(kit.dispatch_schedules(tick + 1))  # type: ignore[attr-defined]
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=race, args=(k,)) for k in dispatchers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    fired = [name for r in reports for name, _ in r.fired]
    assert sorted(fired) == sorted(f"s{i}" for i in range(10))  # each once, in all
    runs = owner.runs(limit=100)
    assert len(runs) == 10
    assert sorted(r.idempotency_key or "" for r in runs) == sorted(
        f"cron:s{i}:{stamp(tick)}" for i in range(10)
    )
    assert sorted(r.input["i"] for r in runs) == list(range(10))


def test_a_broken_schedule_is_reported_and_the_rest_fire(any_kits: KitFactory) -> None:
    kit = any_kits()
    kit.schedule(WF, "* * * * *", {"i": 1}, name="broken")
    kit.schedule(WF, "* * * * *", {"i": 2}, name="ok")
    with kit.store.engine.begin() as c:  # e.g. a row written by hand or by a newer release
        c.execute(sa.text("UPDATE thodare_schedules SET workflow_json = :j WHERE name = 'broken'"),
                  {"j": '{"version": "1.0.0", "blocks": "not a list"}'})  # fmt: skip
    tick = upcoming()

    report = kit.dispatch_schedules(tick)
    assert [name for name, _ in report.fired] == ["ok"]
    [(name, error)] = report.failed
    assert name == "broken" and "blocks" in error
    by_name = {s.name: s for s in kit.schedules()}
    assert by_name["broken"].last_error == error
    assert by_name["broken"].status == "active"  # the next tick tries again
    assert by_name["broken"].next_at == datetime.fromtimestamp(tick + 60, UTC)
    assert [r.input for r in kit.runs()] == [{"i": 2}]


@pytest.mark.parametrize(
    ("kwargs", "field", "words"),
    [
        ({"cron": "totally bogus"}, "cron", "has 2 field(s)"),
        ({"cron": "* * * *"}, "cron", "write 5 (minute hour day-of-month month day-of-week)"),
        ({"cron": "61 * * * *"}, "cron", "the minute field '61'"),
        ({"cron": "* 24 * * *"}, "cron", "the hour field '24'"),
        ({"cron": "* * * * 9"}, "cron", "the day-of-week field '9'"),
        ({"cron": "*/0 * * * *"}, "cron", "the minute field '*/0'"),
        ({"cron": "0 0 30 2 *"}, "cron", "never matches"),
        ({"cron": "@sometimes"}, "cron", "unknown alias"),
        ({"cron": "* * * * *", "tz": "Mars/Olympus"}, "tz", "IANA"),
        ({"cron": "* * * * *", "until": "2020-01-01T00:00:00Z"}, "until", "before the next"),
        ({"cron": "* * * * *", "until": "next tuesday"}, "until", "ISO"),
        ({"cron": "* * * * *", "missed": "all"}, "missed", "'once'"),
    ],
)
def test_bad_schedules_are_refused_naming_the_field(
    kits: KitFactory, kwargs: dict[str, str], field: str, words: str
) -> None:
    kit = kits()
    with pytest.raises(ScheduleInvalid) as ei:
        kit.schedule(WF, input={"i": 0}, **kwargs)  # type: ignore[arg-type]
    assert ei.value.field == field
    assert words in str(ei.value)
    assert kit.schedules() == []


def test_an_invalid_input_is_refused_when_scheduling(kits: KitFactory) -> None:
    kit = kits()
    with pytest.raises(InputInvalid) as ei:
        kit.schedule(WF, "* * * * *", {"i": "seven"})
    assert ei.value.problems[0].startswith("i: Input should be a valid integer")
    assert kit.schedules() == []


def test_a_huge_step_only_matches_zero() -> None:
    t = datetime(2026, 1, 1, 10, 0, tzinfo=UTC).timestamp()
    assert next_tick("*/120 * * * *", "UTC", t) == t + 3600  # minute 0 of the next hour


@pytest.mark.parametrize("policy", ["once", "skip"])
def test_downtime_brings_no_catch_up_storm(any_kits: KitFactory, policy: str) -> None:
    kit = any_kits()
    kit.schedule(WF, "0 * * * *", {"i": 0}, name="hourly", missed=policy)
    back = upcoming("0 * * * *") + 5 * 3600 + 20 * 60  # 6 ticks missed, the last 20 min ago

    report = kit.dispatch_schedules(back)
    latest = latest_tick("0 * * * *", "UTC", back)
    assert back - latest == 20 * 60 > MISSED_GRACE_S
    if policy == "once":
        [(_, run_id)] = report.fired  # one run, for the latest tick
        assert kit.get_handle(run_id).describe().idempotency_key == f"cron:hourly:{stamp(latest)}"
    else:
        assert report.fired == [] and report.skipped_missed == ["hourly"]
    [info] = kit.schedules()
    assert info.next_at == datetime.fromtimestamp(latest + 3600, UTC)
    assert len(kit.runs()) == (1 if policy == "once" else 0)
    on_time = kit.dispatch_schedules(latest + 3600 + 5)
    assert len(on_time.fired) == 1  # back to one run per tick


def test_a_clock_set_back_fires_nothing_twice(any_kits: KitFactory) -> None:
    kit = any_kits()
    kit.schedule(WF, "* * * * *", {"i": 0}, name="s")
    later = upcoming() + 30 * 60
    assert len(kit.dispatch_schedules(later).fired) == 1
    assert kit.dispatch_schedules(later - 60).fired == []  # rewound a minute
    assert kit.dispatch_schedules(later - 3600).fired == []  # rewound an hour
    assert kit.dispatch_schedules(later + 10).fired == []  # the same minute again
    assert len(kit.dispatch_schedules(later + 60).fired) == 1  # the next minute, once
    assert len(kit.runs()) == 2


def test_the_tick_key_is_stable_across_seconds_in_the_minute(any_kits: KitFactory) -> None:
    kit = any_kits()
    kit.schedule(WF, "* * * * *", {"i": 0}, name="stable")
    tick = upcoming()
    first = kit.dispatch_schedules(tick + 7.123)
    second = kit.dispatch_schedules(tick + 41.999)
    assert len(first.fired) == 1 and second.fired == []
    [run] = kit.runs()
    assert run.idempotency_key == f"cron:stable:{stamp(tick)}"


def test_a_removed_and_remade_schedule_does_not_refire_a_tick(any_kits: KitFactory) -> None:
    kit = any_kits()
    kit.schedule(WF, "* * * * *", {"i": 0}, name="again")
    tick = upcoming()
    [(_, run_id)] = kit.dispatch_schedules(tick).fired
    kit.unschedule("again")
    kit.schedule(WF, "* * * * *", {"i": 0}, name="again")
    with kit.store.engine.begin() as c:  # pretend it was made before that tick
        c.execute(sa.text("UPDATE thodare_schedules SET next_at = :t"), {"t": tick})
    report = kit.dispatch_schedules(tick + 1)
    assert report.fired == [("again", run_id)]  # the tick's run, not a second one
    assert len(kit.runs()) == 1
