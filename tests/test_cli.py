"""The ``thodare`` command on a real SQLite file.

``runs``, ``runs show``, ``signal`` and ``cancel`` are driven with typer's
CliRunner against runs that a kit in this process executes; what they print
is checked against the rows (read with ``sqlite3``). Mistakes a user can fix
(bad URL, unknown run, invalid JSON, a module that does not import) exit 2
with one clear line and no traceback. ``thodare worker`` runs as a real
subprocess: it serves a run created here, and SIGTERM stops it cleanly (exit
0, a run in flight handed back).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cli_connectors  # tests/ is on sys.path under pytest; the worker imports it by path
import pytest
from durable_helpers import KitFactory, q, wait_until
from pydantic import BaseModel
from typer.testing import CliRunner, Result

from thodare_jupyter import Catalog, Wfkit, create_wfkit, define_connector, define_workflow
from thodare_jupyter.cli import app

TESTS = Path(__file__).parent
THODARE = Path(sys.executable).with_name("thodare")  # the console script of this venv
TRANSFORM = Catalog().get("transform")
WAIT_EVENT = Catalog().get("wait_for_event")

runner = CliRunner()


def cli(*args: str, env: dict[str, str | None] | None = None) -> Result:
    # THODARE_DB / THODARE_NAMESPACE of the outer shell must not leak into a test
    base: dict[str, str | None] = {"THODARE_DB": None, "THODARE_NAMESPACE": None}
    return runner.invoke(app, list(args), env={**base, **(env or {})})


class Name(BaseModel):
    name: str


class BoomParams(BaseModel):
    why: str


def _boom(p: BoomParams) -> dict[str, Any]:
    raise RuntimeError(f"exploded: {p.why}")


BOOM = define_connector(type="cli-boom", params=BoomParams, run=_boom)

GREET = (
    define_workflow("greet").input(Name)
    .step("hello", TRANSFORM, lambda r: {"template": f"hello {r.input.name}"})
    .step("loud", TRANSFORM, lambda r: {"template": {"shout": f"{r.hello.result}!"}})
    .build()
)  # fmt: skip
BROKEN = (
    define_workflow("broken").input(Name)
    .step("first", TRANSFORM, lambda r: {"template": r.input.name})
    .step("bad", BOOM, lambda r: {"why": r.first.result})
    .build()
)  # fmt: skip
WAITER = (
    define_workflow("waiter").input(Name)
    .step("wait", WAIT_EVENT, lambda r: {"eventName": "paid", "correlationKey": r.input.name})
    .build()
)  # fmt: skip


@pytest.fixture
def kit(kits: KitFactory) -> Iterator[Wfkit]:
    """A kit with a running worker on the test's file: it executes the runs the CLI shows."""
    with kits().register(BOOM) as k:
        yield k


def assert_user_error(res: Result, *needles: str) -> None:
    """Exit code 2, the message on stderr, no Python traceback."""
    assert res.exit_code == 2, res.output
    assert isinstance(res.exception, SystemExit)
    assert "Traceback" not in res.output
    assert res.stderr.startswith("Error: ")
    for n in needles:
        assert n in res.stderr, res.stderr


# ── runs / runs show ───────────────────────────────────────────────────────


def test_runs_lists_runs_newest_first_and_filters_by_status(kit: Wfkit, db: Path) -> None:
    ok = kit.run(GREET, {"name": "ann"})
    ok.result(timeout=10)
    bad = kit.run(BROKEN, {"name": "bob"})
    wait_until(lambda: bad.status == "failed")

    res = cli("runs", "--db", str(db))
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0].split() == ["ID", "WORKFLOW", "STATUS", "CREATED", "ENDED", "FAILED", "BLOCK"]
    assert [ln.split()[:3] for ln in lines[1:]] == [
        [bad.id[:8], "broken", "failed"],
        [ok.id[:8], "greet", "completed"],
    ]
    assert lines[1].split()[-1] == "bad"  # the failed block column

    failed = cli("runs", "--status", "failed", "--db", f"sqlite:///{db}")
    assert failed.exit_code == 0
    assert bad.id[:8] in failed.stdout and ok.id[:8] not in failed.stdout
    latest = cli("runs", "--limit", "1", "--db", str(db))
    assert len(latest.stdout.splitlines()) == 2 and bad.id[:8] in latest.stdout
    assert cli("runs", "--status", "waiting", "--db", str(db)).stdout.strip() == "No runs."


def test_runs_show_prints_the_header_and_every_step(kit: Wfkit, db: Path) -> None:
    h = kit.run(GREET, {"name": "ann"})
    h.result(timeout=10)
    res = cli("runs", "show", h.id, "--db", str(db))
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert f"Run       {h.id}" in out and "Workflow  greet" in out and "Status    completed" in out
    rows = {ln.split()[0]: ln for ln in out.splitlines()[out.splitlines().index("") + 2 :]}
    stored = dict(q(db, "SELECT block_id, output_json FROM thodare_steps WHERE run_id=?", h.id))
    assert set(rows) == set(stored) >= {"hello", "loud"}
    assert rows["hello"].split()[1:4] == ["transform", "completed", "1"]
    assert rows["loud"].endswith(json.dumps(json.loads(stored["loud"]), ensure_ascii=False))
    assert '{"result": {"shout": "hello ann!"}}' in rows["loud"]


def test_runs_show_names_the_failed_block_and_its_error(kit: Wfkit, db: Path) -> None:
    h = kit.run(BROKEN, {"name": "bob"})
    wait_until(lambda: h.status == "failed")
    # the group's --db also reaches `show`
    res = cli("runs", "--db", str(db), "show", h.id)
    assert res.exit_code == 0, res.output
    assert "Failed at bad" in res.stdout
    assert "exploded: bob" in res.stdout
    bad_row = next(ln for ln in res.stdout.splitlines() if ln.startswith("bad "))
    assert "cli-boom" in bad_row and "failed" in bad_row and "exploded: bob" in bad_row


def test_runs_show_a_waiting_step_says_what_it_waits_for(kit: Wfkit, db: Path) -> None:
    h = kit.run(WAITER, {"name": "o-1"})
    wait_until(lambda: h.status == "waiting")
    res = cli("runs", "show", h.id, "--db", str(db))
    assert res.exit_code == 0
    assert "Status    waiting" in res.stdout
    assert "waiting for paid" in res.stdout


def test_global_config_comes_from_the_environment(kit: Wfkit, db: Path) -> None:
    h = kit.run(GREET, {"name": "env"})
    h.result(timeout=10)
    res = cli("runs", env={"THODARE_DB": f"sqlite:///{db}"})
    assert res.exit_code == 0 and h.id[:8] in res.stdout
    other = cli("runs", env={"THODARE_DB": f"sqlite:///{db}", "THODARE_NAMESPACE": "elsewhere"})
    assert other.exit_code == 0 and other.stdout.strip() == "No runs."
    assert cli("runs", "--namespace", "elsewhere", "--db", str(db)).stdout.strip() == "No runs."


# ── signal / cancel ────────────────────────────────────────────────────────


def test_signal_wakes_the_matching_wait_with_the_json_payload(kit: Wfkit, db: Path) -> None:
    mine = kit.run(WAITER, {"name": "o-1"})
    other = kit.run(WAITER, {"name": "o-2"})
    wait_until(lambda: mine.status == other.status == "waiting")

    payload = '{"amount": 12.5, "items": ["a", "b"]}'
    res = cli("signal", "paid", "--payload", payload, "--key", "o-1", "--db", str(db))
    assert res.exit_code == 0, res.output
    assert res.stdout.strip() == (
        "Woke 1 run waiting for 'paid' (key 'o-1'); stored as signal 1 for runs that reach "
        "the wait later."
    )
    assert mine.result(timeout=10)["wait"] == {"data": json.loads(payload), "timedOut": False}
    assert other.status == "waiting"  # another correlation key
    assert q(db, "SELECT event, correlation_key, payload_json FROM thodare_signals") == [
        ("paid", "o-1", json.dumps(json.loads(payload), separators=(",", ":")))
    ]


def test_signal_with_an_idempotency_key_is_stored_once(db: Path) -> None:
    first = cli("signal", "tick", "--idempotency-key", "k1", "--db", str(db))
    again = cli("signal", "tick", "--idempotency-key", "k1", "--db", str(db))
    assert first.exit_code == again.exit_code == 0
    assert first.stdout.strip() == (
        "Woke 0 runs waiting for 'tick' (no key: waits with a correlationKey need one); "
        "stored as signal 1 for runs that reach the wait later."
    )
    assert again.stdout.strip() == (
        "Signal 1 was already stored under this idempotency key; sent again, it woke no run."
    )
    assert q(db, "SELECT event, payload_json FROM thodare_signals") == [("tick", "null")]


def test_cancel_a_waiting_run_then_again(kit: Wfkit, db: Path) -> None:
    h = kit.run(WAITER, {"name": "o-9"})
    wait_until(lambda: h.status == "waiting")
    res = cli("cancel", h.id, "--db", str(db))
    assert res.exit_code == 0, res.output
    assert "canceled (was waiting)" in res.stdout
    assert q(db, "SELECT status FROM thodare_runs WHERE id=?", h.id) == [("canceled",)]
    again = cli("cancel", h.id, "--db", str(db))
    assert again.exit_code == 1
    assert "already ended (canceled)" in again.stdout


# ── mistakes a user can fix: exit 2, one message, no traceback ─────────────


def test_a_bad_database_url_exits_2(tmp_path: Path) -> None:
    assert_user_error(cli("runs", "--db", "nosuchdriver://x"), "nosuchdriver://x")
    assert_user_error(cli("signal", "e", "--db", "nosuchdriver://x"), "Cannot use the database")


def test_a_database_that_cannot_be_opened_exits_2(tmp_path: Path) -> None:
    assert_user_error(cli("runs", "--db", f"sqlite:///{tmp_path}"), "unable to open database")


def test_a_sqlite_file_in_a_directory_that_cannot_be_made_exits_2(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    assert_user_error(cli("runs", "--db", f"sqlite:///{blocker}/sub/runs.db"), str(blocker))


def test_a_postgres_url_exits_2_whether_or_not_the_driver_is_installed() -> None:
    # port 1 on loopback: refused when psycopg is installed; without it, the driver is missing
    assert_user_error(cli("runs", "--db", "postgresql+psycopg://u@127.0.0.1:1/x"), "127.0.0.1")


def test_a_database_password_is_never_printed() -> None:
    res = cli("runs", "--db", "nosuchdriver://alice:s3cret-pw@db.example/x")
    assert_user_error(res, "alice")
    assert "s3cret-pw" not in res.output


def test_an_unknown_run_id_exits_2(db: Path) -> None:
    for args in (["runs", "show", "nope"], ["cancel", "nope"]):
        assert_user_error(cli(*args, "--db", str(db)), "No run 'nope'", "namespace 'default'")


def test_invalid_json_payload_says_where(db: Path) -> None:
    res = cli("signal", "paid", "--payload", '{"a": 1,}', "--db", str(db))
    assert_user_error(res, "--payload is not valid JSON", "line 1, column 9")
    assert res.stderr.splitlines()[-1] == "  " + " " * 8 + "^"  # under the stray '}'
    assert not db.exists()  # rejected before the database is touched


def test_a_module_that_does_not_import_is_named(tmp_path: Path, db: Path) -> None:
    assert_user_error(
        cli("worker", "--import", "no_such_module_xyz", "--db", str(db)),
        "'no_such_module_xyz'", "No module named 'no_such_module_xyz'",
    )  # fmt: skip
    broken = tmp_path / "needs_missing.py"
    broken.write_text("import not_installed_dep_xyz\n")
    assert_user_error(
        cli("worker", "--import", str(broken), "--db", str(db)),
        str(broken), "No module named 'not_installed_dep_xyz'",
    )  # fmt: skip
    assert_user_error(
        cli("worker", "--import", str(tmp_path / "absent.py"), "--db", str(db)), "no such file"
    )
    raising = tmp_path / "raises.py"
    raising.write_text("raise ValueError('bad config')\n")
    assert_user_error(
        cli("worker", "--import", str(raising), "--db", str(db)), "ValueError: bad config"
    )


def test_two_modules_defining_one_connector_type_differently_exits_2(tmp_path: Path) -> None:
    src = (TESTS / "cli_connectors.py").read_text()
    (tmp_path / "copy_a.py").write_text(src)
    (tmp_path / "copy_b.py").write_text(src)
    res = cli("worker", "--import", str(tmp_path / "copy_a.py"), "--import",
              str(tmp_path / "copy_b.py"), "--db", str(tmp_path / "r.db"))  # fmt: skip
    assert_user_error(res, "'cli-greet'")


# ── the worker as a real process ───────────────────────────────────────────


@pytest.fixture
def procs() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=10)
        for stream in (p.stdout, p.stderr):
            if stream is not None:
                stream.close()


def _worker(
    procs: list[subprocess.Popen[str]], *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    assert THODARE.exists(), f"{THODARE} missing: run `pip install -e '.[dev]'`"
    clean = {k: v for k, v in os.environ.items() if not k.startswith("THODARE_")}
    p = subprocess.Popen(
        [str(THODARE), "worker", *args], cwd=cwd, env={**clean, **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    procs.append(p)
    return p


def test_worker_process_serves_a_run_and_stops_cleanly_on_sigterm(
    db: Path, procs: list[subprocess.Popen[str]]
) -> None:
    p = _worker(
        procs, "--db", f"sqlite:///{db}", "--import", "tests/cli_connectors.py", "--poll", "0.05",
        cwd=TESTS.parent,
    )  # fmt: skip
    assert p.stdout is not None
    banner = p.stdout.readline()  # printed before the worker serves
    assert "serving sqlite:///" in banner and "cli-greet" in banner and "cli-nap" in banner

    wf = (
        define_workflow("hello").input(Name)
        .step("greet", cli_connectors.greet, lambda r: {"name": r.input.name})
        .build()
    )  # fmt: skip
    # this kit never starts a worker: only the subprocess can run the step
    kit = create_wfkit(f"sqlite:///{db}", env={}).register(cli_connectors.greet)
    try:
        out = kit.run(wf, {"name": "ann"}).result(timeout=15)
    finally:
        kit.store.dispose()
    assert out["greet"] == {"text": "hello ann", "pid": p.pid}

    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=10) == 0
    rest = p.stdout.read()
    assert "stopped" in rest
    assert p.stderr is not None and "Traceback" not in p.stderr.read()


def test_sigterm_hands_a_run_in_flight_back(db: Path, procs: list[subprocess.Popen[str]]) -> None:
    # module-name import (cwd on sys.path, as `python -m`) and --db from THODARE_DB
    p = _worker(
        procs, "--import", "cli_connectors", "--poll", "0.05", "--lease", "30",
        cwd=TESTS, env={"THODARE_DB": f"sqlite:///{db}"},
    )  # fmt: skip
    assert p.stdout is not None and "cli-nap" in p.stdout.readline()
    nap = define_workflow("nap").step("nap", cli_connectors.nap, {"seconds": 60}).build()
    kit = create_wfkit(str(db), env={}).register(cli_connectors.nap)
    try:
        h = kit.run(nap)
        wait_until(lambda: q(db, "SELECT status FROM thodare_steps") == [("running",)])
        p.send_signal(signal.SIGTERM)
        assert p.wait(timeout=10) == 0  # well before the 60 s nap or the 30 s lease
        assert q(db, "SELECT status, lease_owner FROM thodare_runs WHERE id=?", h.id) == [
            ("pending", None)
        ]
    finally:
        kit.store.dispose()


def test_workers_lists_live_workers_and_runs_show_names_what_is_missing(
    kits: KitFactory, db: Path
) -> None:
    assert "No live workers" in cli("workers", "--db", str(db)).output
    serving = kits().register(BOOM).start()
    res = cli("workers", "--db", str(db))
    assert res.exit_code == 0, res.output
    assert serving.worker.owner in res.output
    assert "cli-boom" in res.output and "transform" not in res.output  # builtins summarised
    needs = define_connector(type="cli-nobody-has", params=Name, run=lambda p: {})
    creator = kits().register(needs)
    wf = define_workflow("orphan").step("x", needs, lambda r: {"name": "n"}).build()
    run_id = creator.run(wf, {}).id
    shown = cli("runs", "show", run_id, "--db", str(db)).output
    assert "Waiting   for a worker with cli-nobody-has (see `thodare workers`)" in shown


# ── info / short ids (a real `thodare` process) ─────────────────────────────


def thodare(*args: str, db: str) -> subprocess.CompletedProcess[str]:
    """The console script in a subprocess, on ``db``, without the shell's THODARE_ vars."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("THODARE_")}
    return subprocess.run([str(THODARE), *args], env={**clean, "THODARE_DB": db},
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def test_info_says_which_database_with_the_password_masked(kit: Wfkit, db: Path) -> None:
    kit.run(GREET, {"name": "ann"}).result(timeout=10)
    out = thodare("info", db=f"sqlite:///{db}")
    assert out.returncode == 0, out.stderr
    lines = dict(ln.split(None, 1) for ln in out.stdout.splitlines())
    assert lines["Database"] == f"sqlite:///{db}" and lines["Backend"] == "SQLite"
    assert lines["Namespace"] == "default" and lines["Schema"].isdigit()
    assert lines["Runs"] == "1 (1 completed)" and lines["Workers"] == "1 live"
    pg = thodare("info", db="postgresql+psycopg://ann:s3cret-pw@127.0.0.1:1/none")
    assert pg.returncode == 2 and "s3cret-pw" not in pg.stdout + pg.stderr
    assert "***" in pg.stderr and "Traceback" not in pg.stderr


def test_commands_take_the_8_characters_the_list_shows(kit: Wfkit, db: Path) -> None:
    h = kit.run(GREET, {"name": "ann"})
    h.result(timeout=10)
    url = f"sqlite:///{db}"
    listed = thodare("runs", db=url)
    short = listed.stdout.splitlines()[1].split()[0]
    assert short == h.id[:8]
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [A-Z+\-0-9]+", listed.stdout)  # with zone
    shown = thodare("runs", "show", short, db=url)
    assert shown.returncode == 0 and f"Run       {h.id}" in shown.stdout
    assert thodare("logs", short, db=url).returncode == 0
    ended = thodare("cancel", short, db=url)
    assert ended.returncode == 1 and f"Run {h.id} had already ended" in ended.stdout
    assert_refused(thodare("runs", "show", "ab", db=url), "too short", "at least 4")
    assert_refused(thodare("runs", "show", "ffff0000", db=url), "No run 'ffff0000'")


def test_an_ambiguous_prefix_lists_the_runs(kits: KitFactory, db: Path) -> None:
    kit = kits()
    wf = kit.compile(GREET)
    for rid in ("beef0001" + "0" * 24, "beef0002" + "0" * 24):
        kit.store.runs.create_run("greet", wf.to_json(), {"name": "x"}, run_id=rid)
    out = thodare("runs", "show", "beef", db=f"sqlite:///{db}")
    assert_refused(out, "ambiguous", "beef0001" + "0" * 24, "beef0002" + "0" * 24)
    assert thodare("runs", "show", "beef0002", db=f"sqlite:///{db}").returncode == 0


def assert_refused(out: subprocess.CompletedProcess[str], *needles: str) -> None:
    """Exit 2, one clear line on stderr, no traceback."""
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "Traceback" not in out.stderr
    for needle in needles:
        assert needle in out.stderr, out.stderr
