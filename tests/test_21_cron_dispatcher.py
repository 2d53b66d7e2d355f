"""Seed proof 21 (cron-dispatcher), on SQLite and on PostgreSQL.

Cron expressions are read field by field (five fields, or six with seconds
last) in the schedule's time zone; ``kit.schedule`` stores the schedule in the
database. A dispatch pass starts one run per due tick with the idempotency key
``cron:<name>:<tick>``, so a second pass for the same tick starts nothing; a
schedule past its ``until`` never fires but stays listed as ``ended``. End to
end, a worker dispatches a real every-second schedule whose runs complete with
the schedule's input, and a schedule made by one kit is served by another
after a restart. ``thodare schedules`` lists, pauses, resumes and removes.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from durable_helpers import KitFactory, wait_until
from pydantic import BaseModel
from typer.testing import CliRunner

from thodare_jupyter import Catalog, Wfkit, define_workflow
from thodare_jupyter.cli import app
from thodare_jupyter.durable.cron import latest_tick, next_tick

TRANSFORM = Catalog().get("transform")


class Note(BaseModel):
    note: str


def target(name: str = "cron-target") -> object:
    """A workflow echoing its input's ``note`` (the schedule's payload)."""
    return (
        define_workflow(name)
        .input(Note)
        .step("echo", TRANSFORM, lambda r: {"template": {"payload": r.input.note}})
        .build()
    )


def utc(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()  # type: ignore[misc]


def future(cron: str, days: int = 9) -> float:
    """A tick of ``cron`` some days ahead: schedules made now are due by then."""
    return latest_tick(cron, "UTC", time.time() + days * 86400)


# ── cron evaluation ─────────────────────────────────────────────────────────


def test_every_minute_every_five_and_lists_and_ranges() -> None:
    t = utc(2026, 1, 1, 0, 0)
    assert next_tick("* * * * *", "UTC", t) == t + 60
    fives = [t]
    for _ in range(12):
        fives.append(next_tick("*/5 * * * *", "UTC", fives[-1]))
    assert [datetime.fromtimestamp(x, UTC).minute for x in fives[:12]] == list(range(0, 60, 5))
    ticks = [utc(2026, 5, 4, 8, 59)]  # Monday
    for _ in range(19):
        ticks.append(next_tick("0,30 9-17 * * 1-5", "UTC", ticks[-1]))
    hours = [(datetime.fromtimestamp(x, UTC).hour, datetime.fromtimestamp(x, UTC).minute)
             for x in ticks[1:]]  # fmt: skip
    assert hours[:3] == [(9, 0), (9, 30), (10, 0)]
    assert hours[17] == (17, 30)
    assert hours[18] == (9, 0)  # Tuesday


def test_monday_nine_matches_monday_not_sunday() -> None:
    monday, sunday = utc(2026, 5, 4, 9, 0), utc(2026, 5, 3, 9, 0)
    assert latest_tick("0 9 * * 1", "UTC", monday) == monday
    assert latest_tick("0 9 * * 1", "UTC", sunday) != sunday
    assert next_tick("0 9 * * 1", "UTC", sunday) == monday


def test_the_time_zone_moves_the_tick() -> None:
    winter = utc(2026, 1, 10, 0, 0)
    paris = next_tick("0 9 * * *", "Europe/Paris", winter)
    assert datetime.fromtimestamp(paris, UTC).hour == 8  # 09:00 CET is 08:00 UTC
    assert next_tick("0 9 * * *", "UTC", winter) == paris + 3600


def test_six_fields_tick_every_second() -> None:
    t = utc(2026, 1, 1, 0, 0)
    assert next_tick("* * * * * *", "UTC", t) == t + 1
    assert next_tick("* * * * * */10", "UTC", t + 1) == t + 10


# ── dispatch: once per tick, until ──────────────────────────────────────────


def test_each_due_schedule_fires_once_per_tick(any_kits: KitFactory) -> None:
    kit = any_kits()
    kit.schedule(target("w-a"), "* * * * *", {"note": "a"}, name="s1")
    kit.schedule(target("w-b"), "* * * * *", {"note": "b"}, name="s2")
    kit.schedule(target("w-leap"), "0 9 29 2 *", {"note": "leap"}, name="s3")  # 2028 first
    tuesday_noon = next_tick("0 12 * * 2", "UTC", time.time())

    first = kit.dispatch_schedules(tuesday_noon)
    assert sorted(name for name, _ in first.fired) == ["s1", "s2"]  # s3 is not due
    again = kit.dispatch_schedules(tuesday_noon + 30)  # the same minute
    assert again.fired == [] and again.failed == []

    runs = kit.runs()
    assert len(runs) == 2
    stamp = datetime.fromtimestamp(tuesday_noon, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    keys = {r.id: r.idempotency_key for r in runs}
    assert sorted(keys.values()) == [f"cron:s1:{stamp}", f"cron:s2:{stamp}"]
    by_name = {s.name: s for s in kit.schedules()}
    assert {by_name["s1"].last_run_id, by_name["s2"].last_run_id} == set(keys)
    assert by_name["s1"].next_at == datetime.fromtimestamp(tuesday_noon + 60, UTC)
    assert by_name["s3"].last_run_id is None


def test_a_schedule_past_its_until_never_fires_and_stays_listed(any_kits: KitFactory) -> None:
    # "short" ends while no worker runs; it drops its missed ticks (skip), then never fires
    kit = any_kits()
    soon = time.time() + 2 * 86400
    kit.schedule(target(), "* * * * *", {"note": "x"}, name="short", until=soon, missed="skip")
    kit.schedule(target(), "* * * * *", {"note": "y"}, name="long", until="2099-01-01T00:00:00Z")

    report = kit.dispatch_schedules(soon + 86400)
    assert [name for name, _ in report.fired] == ["long"]
    assert report.ended == ["short"]
    for hour in range(1, 4):  # "short" never comes back
        assert [name for name, _ in kit.dispatch_schedules(soon + 86400 + hour * 3600).fired] == [
            "long"
        ]
    statuses = {s.name: s.status for s in kit.schedules()}
    assert statuses == {"short": "ended", "long": "active"}
    runs = kit.runs()
    assert len(runs) == 4 and all(r.input == {"note": "y"} for r in runs)


def test_until_fires_the_last_tick_before_it_once(any_kits: KitFactory) -> None:
    kit = any_kits()
    until = future("0 * * * *", days=2) + 1800  # half past some hour
    kit.schedule(target(), "0 * * * *", {"note": "z"}, name="hourly", until=until)
    report = kit.dispatch_schedules(until + 5 * 3600)  # long after the end
    assert len(report.fired) == 1 and report.ended == ["hourly"]
    run = kit.store.runs.get_run(report.fired[0][1])
    stamp = datetime.fromtimestamp(until - 1800, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert run is not None and run.idempotency_key == f"cron:hourly:{stamp}"


# ── end to end ──────────────────────────────────────────────────────────────


def test_a_worker_dispatches_a_real_schedule_and_its_runs_complete(any_kits: KitFactory) -> None:
    kit = any_kits().start()
    info = kit.schedule(target(), "* * * * * *", {"note": "hello-from-cron"}, name="every-second")
    assert info.status == "active" and info.next_at is not None

    wait_until(lambda: len([r for r in kit.runs() if r.status == "completed"]) >= 2, 20)
    done = [r for r in kit.runs() if r.status == "completed"]
    assert all(r.outputs["echo"]["result"] == {"payload": "hello-from-cron"} for r in done)
    keys = [r.idempotency_key for r in done]
    assert len(set(keys)) == len(keys)  # one run per tick


def test_schedules_survive_a_restart(any_kits: KitFactory) -> None:
    first = any_kits()
    first.schedule(target(), "* * * * * *", {"note": "still here"}, name="durable")
    first.close()  # no worker ever ran in this kit

    second: Wfkit = any_kits().start()
    assert [s.name for s in second.schedules()] == ["durable"]
    wait_until(lambda: any(r.status == "completed" for r in second.runs()), 20)
    run = next(r for r in second.runs() if r.status == "completed")
    assert run.outputs["echo"]["result"] == {"payload": "still here"}


def test_pause_resume_and_replace(any_kits: KitFactory) -> None:
    kit = any_kits()
    kit.schedule(target(), "* * * * *", {"note": "v1"}, name="job")
    kit.pause_schedule("job")
    assert kit.dispatch_schedules(future("* * * * *")).fired == []

    resumed = kit.resume_schedule("job")
    assert resumed.status == "active"
    assert resumed.next_at is not None and resumed.next_at.timestamp() > time.time()

    kit.schedule(target(), "*/5 * * * *", {"note": "v2"}, name="job")  # same name: replaced
    [only] = kit.schedules()
    assert (only.cron, only.input) == ("*/5 * * * *", {"note": "v2"})
    fired = kit.dispatch_schedules(future("*/5 * * * *")).fired
    assert len(fired) == 1
    assert kit.get_handle(fired[0][1]).describe().status == "pending"
    assert kit.unschedule("job") is True and kit.unschedule("job") is False
    assert kit.schedules() == []


# ── the command ─────────────────────────────────────────────────────────────


def test_thodare_schedules_lists_pauses_resumes_removes(kits: KitFactory, db: object) -> None:
    kit = kits()
    kit.schedule(target(), "0 9 * * mon-fri", {"note": "n"}, name="weekday", tz="Europe/Paris")
    runner = CliRunner()

    def cli(*args: str) -> str:
        result = runner.invoke(app, [*args], env={"THODARE_DB": str(db), "THODARE_NAMESPACE": None})
        assert result.exit_code == 0, result.output
        return result.output

    listing = cli("schedules")
    assert "weekday" in listing and "0 9 * * mon-fri" in listing and "Europe/Paris" in listing
    assert "active" in listing
    assert "paused" in cli("schedules", "pause", "weekday")
    assert kit.schedules()[0].status == "paused"
    assert "active" in cli("schedules", "resume", "weekday")
    assert "removed" in cli("schedules", "remove", "weekday")
    assert cli("schedules").strip() == "No schedules."
    missing = runner.invoke(app, ["schedules", "pause", "nope"], env={"THODARE_DB": str(db)})
    assert missing.exit_code == 2 and "No schedule named 'nope'" in missing.output


@pytest.mark.parametrize("policy", ["once", "skip"])
def test_policy_is_stored(kits: KitFactory, policy: str) -> None:
    info = kits().schedule(target(), "@hourly", {"note": "p"}, missed=policy)
    assert info.missed == policy and info.cron == "@hourly"
