"""Step logs (DESIGN §9): what a step prints, logs or writes with ``ctx.log`` is kept per attempt.

On SQLite and PostgreSQL, with a started kit as in a kernel:

* ``print`` (stdout), ``sys.stderr``, ``logging`` and ``ctx.log(...)``/``ctx.log.info`` of a
  step land in its attempt's logs; a retried step has the lines of both attempts, each
  with its attempt number; ``handle.logs(block)`` has one block's lines only. Once no
  step runs, the root logger holds no handler of ours (``logging.basicConfig`` works).
* Two sync steps (in the worker's threads, meeting at a barrier) and an async step (on
  the worker's loop) printing at the same time: each block's logs hold exactly its own
  lines.
* The notebook's own prints (the main thread) while a step prints go to the notebook's
  output, not into any step's logs; the step's prints do not reach the notebook.
* A secret a step prints (read through ``ctx.env``, or an env value named like a
  secret) is ``***`` in the stored rows (and the SQLite file), ``handle.logs()``,
  ``GET /thodare/api/runs/{id}/logs`` and ``thodare logs``.
* An attempt keeps 64 KiB; a line says how many bytes were cut.
* The lines an attempt wrote before it raised are kept (the run failed), and those of an
  attempt cut short by the block's ``timeout`` (then retried).
* ``thodare logs RUN STEP --follow`` prints lines as attempts end, until the run ends.
* A ``for_each`` step's logs are its items' lines (``each[i]``), in ``handle.logs`` and
  the widget.
* The DAG widget's node details carry the step's logs; ``prune`` deletes the logs of
  the runs it deletes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from durable_helpers import KitFactory, is_pg, q, sqlite_file, wait_until
from pydantic import BaseModel
from tornado.httpclient import HTTPResponse
from traitlets.config import Config
from typer.testing import CliRunner

from thodare_jupyter import (
    Catalog,
    RetryPolicy,
    RunFailed,
    StepContext,
    define_connector,
    define_workflow,
)
from thodare_jupyter.cli import app
from thodare_jupyter.errors import RunNotFound
from thodare_jupyter.step_logs import _HANDLER, MAX_BYTES

pytest_plugins = ("pytest_jupyter.jupyter_server",)

Fetch = Callable[..., Awaitable[HTTPResponse]]
TOKEN = 'sk-live-"quoted"/päss+word?=&' + "T" * 40
READ = "dsn-secret-value-from-ctx-env-" + "R" * 30
ENV = {"API_TOKEN": TOKEN, "WAREHOUSE": READ}


class Empty(BaseModel):
    pass


class Done(BaseModel):
    n: int = 0


def _chatty(_: Empty, ctx: StepContext) -> Done:
    print(f"print on attempt {ctx.attempt}")
    print(f"stderr on attempt {ctx.attempt}", file=sys.stderr)
    logging.getLogger("my.step").warning("logging on attempt %d", ctx.attempt)
    ctx.log("ctx.log on attempt %d", ctx.attempt)
    ctx.log.info("ctx.log.info on attempt %d", ctx.attempt)
    if ctx.attempt == 1:
        raise ConnectionError("flaked")
    return Done(n=ctx.attempt)


def _quiet_after(_: Empty, ctx: StepContext) -> Done:
    sys.stdout.write("after ")
    sys.stdout.write("ran\r\n")  # one line, written in parts, Windows-style
    return Done()


CHATTY = define_connector(
    type="log_chatty", params=Empty, outputs=Done, run=_chatty,
    retries=RetryPolicy(max_attempts=2, backoff_s=0.01),
)  # fmt: skip
AFTER = define_connector(type="log_after", params=Empty, outputs=Done, run=_quiet_after)


def test_print_stderr_logging_and_ctx_log_are_kept_per_attempt(any_kits: KitFactory) -> None:
    kit = any_kits(catalog=Catalog(CHATTY, AFTER)).start()
    wf = define_workflow("chatty").step("chat", CHATTY).step("after", AFTER, needs=("chat",))
    h = kit.run(wf.build())
    assert h.result(timeout=20)["chat"] == {"n": 2}

    chat = [(ln.block_id, ln.attempt, ln.stream, ln.text) for ln in h.logs("chat")]
    assert chat == [
        ("chat", a, stream, text)
        for a in (1, 2)
        for stream, text in [
            ("stdout", f"print on attempt {a}"),
            ("stderr", f"stderr on attempt {a}"),
            ("log", f"WARNING my.step: logging on attempt {a}"),
            ("log", f"ctx.log on attempt {a}"),
            ("log", f"INFO thodare.step: ctx.log.info on attempt {a}"),
        ]
    ]
    assert [(ln.block_id, ln.text) for ln in h.logs("after")] == [("after", "after ran")]
    # between runs the root logger has no handler of ours: logging.basicConfig still works
    assert _HANDLER not in logging.root.handlers
    every = h.logs()
    assert [ln.block_id for ln in every] == ["chat"] * 10 + ["after"]
    times = [ln.at for ln in every]
    assert times == sorted(times) and abs(times[0] - time.time()) < 60
    assert "chat#2 stdout: print on attempt 2" in str(every[5])


BARRIER = threading.Barrier(2, timeout=10)
LINES = 200


def _sync_printer(p: Empty, ctx: StepContext) -> Done:
    BARRIER.wait()  # both sync steps print at the same time, in two threads
    for i in range(LINES):
        print(f"{ctx.block_id} line {i}")
        if i % 20 == 0:
            time.sleep(0.001)
    return Done(n=LINES)


async def _async_printer(p: Empty, ctx: StepContext) -> Done:
    for i in range(LINES):
        print(f"{ctx.block_id} line {i}")
        logging.getLogger("async.step").warning(f"{ctx.block_id} log {i}")
        await asyncio.sleep(0)
    return Done(n=LINES)


SYNC_PRINTER = define_connector(type="log_sync", params=Empty, outputs=Done, run=_sync_printer)
ASYNC_PRINTER = define_connector(type="log_async", params=Empty, outputs=Done, run=_async_printer)


def test_concurrent_steps_logs_never_mix(any_kits: KitFactory) -> None:
    BARRIER.reset()
    kit = any_kits(catalog=Catalog(SYNC_PRINTER, ASYNC_PRINTER)).start()
    wf = (
        define_workflow("parallel")
        .step("left", SYNC_PRINTER)
        .step("right", SYNC_PRINTER)
        .step("loop", ASYNC_PRINTER)
        .build()
    )
    h = kit.run(wf)
    h.result(timeout=30)
    for block in ("left", "right"):
        assert [ln.text for ln in h.logs(block)] == [f"{block} line {i}" for i in range(LINES)]
    loop = [ln.text for ln in h.logs("loop")]
    assert loop == [
        text
        for i in range(LINES)
        for text in (f"loop line {i}", f"WARNING async.step: loop log {i}")
    ]
    assert len(h.logs()) == 4 * LINES


STEP_GO = threading.Event()
NOTEBOOK_DONE = threading.Event()


def _interleaved(_: Empty, ctx: StepContext) -> Done:
    STEP_GO.set()
    for i in range(50):
        print(f"step says {i}")
        time.sleep(0.001)
    NOTEBOOK_DONE.wait(10)
    print("step says bye")
    return Done()


INTERLEAVED = define_connector(type="log_inter", params=Empty, outputs=Done, run=_interleaved)


def test_the_notebooks_own_prints_during_a_run_are_not_captured(
    any_kits: KitFactory, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    STEP_GO.clear()
    NOTEBOOK_DONE.clear()
    kit = any_kits(catalog=Catalog(INTERLEAVED)).start()
    h = kit.run(define_workflow("inter").step("s", INTERLEAVED).build())
    assert STEP_GO.wait(10)
    for i in range(50):  # the notebook cell (main thread) prints while the step does
        print(f"notebook says {i}")
        logging.getLogger("notebook").warning(f"notebook logs {i}")
        time.sleep(0.001)
    NOTEBOOK_DONE.set()
    h.result(timeout=20)

    texts = [ln.text for ln in h.logs()]
    assert texts == [f"step says {i}" for i in range(50)] + ["step says bye"]
    out, err = capsys.readouterr()
    assert out.splitlines() == [f"notebook says {i}" for i in range(50)]
    assert "step says" not in out + err
    notebook = [r.getMessage() for r in caplog.records if r.name == "notebook"]
    assert notebook == [f"notebook logs {i}" for i in range(50)]  # other handlers still see them


def _leaky(_: Empty, ctx: StepContext) -> Done:
    print(f"connecting with {ctx.env['WAREHOUSE']}")
    print(f"token={TOKEN} json={json.dumps({'t': TOKEN})}")
    logging.getLogger("leaky").warning("url https://x/?t=%s", ctx.env["API_TOKEN"])
    return Done()


LEAKY = define_connector(type="log_leaky", params=Empty, outputs=Done, run=_leaky)


def _no_secret(text: str) -> None:
    for secret in (TOKEN, READ):
        assert secret not in text and secret[:12] not in text, text
        assert json.dumps(secret)[1:-1] not in text


async def test_a_printed_secret_is_masked_in_storage_and_every_read_path(
    any_kits: KitFactory, db_url: str, jp_fetch: Fetch, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("THODARE_DB", db_url)  # the server reads the same database
    kit = any_kits(catalog=Catalog(LEAKY), env=ENV).start()
    h = kit.run(define_workflow("leaky").step("leak", LEAKY).build())
    await asyncio.to_thread(h.result, 20)

    texts = [ln.text for ln in h.logs()]
    assert texts == [
        "connecting with ***",
        'token=*** json={"t": "***"}',
        "WARNING leaky: url https://x/?t=***",
    ]
    stored = q(db_url, "SELECT lines_json FROM thodare_step_logs")
    assert len(stored) == 1
    _no_secret(str(stored))
    if not is_pg(db_url):
        kit.close()  # the WAL folded in: the file itself holds no secret
        raw = b"".join(p.read_bytes() for p in Path(sqlite_file(db_url)).parent.glob("runs.db*"))
        _no_secret(raw.decode("utf-8", "replace"))

    resp = await jp_fetch("thodare", "api", "runs", h.id, "logs")
    lines = json.loads(resp.body)
    assert [(ln["block_id"], ln["attempt"], ln["stream"], ln["text"]) for ln in lines] == [
        ("leak", 1, "stdout", texts[0]), ("leak", 1, "stdout", texts[1]),
        ("leak", 1, "log", texts[2]),
    ]  # fmt: skip
    _no_secret(resp.body.decode())
    one = await jp_fetch("thodare", "api", "runs", h.id, "logs", params={"block": "nope"})
    assert json.loads(one.body) == []

    res = CliRunner().invoke(app, ["logs", h.id, "--db", db_url], env={"THODARE_NAMESPACE": None})
    assert res.exit_code == 0, res.output
    assert [line.split(" ", 1)[1] for line in res.output.splitlines()] == [
        f"leak#1 stdout: {texts[0]}", f"leak#1 stdout: {texts[1]}", f"leak#1 log: {texts[2]}"
    ]  # fmt: skip
    _no_secret(res.output)


@pytest.fixture
def jp_server_config() -> Config:
    """Only our extension (not the terminals one the default config enables)."""
    return Config({"ServerApp": {"jpserver_extensions": {"thodare_jupyter.server": True}}})


def _flood(_: Empty, ctx: StepContext) -> Done:
    line = "x" * 1023  # 1 KiB with its newline
    for _ in range(100):
        print(line)
    return Done()


FLOOD = define_connector(type="log_flood", params=Empty, outputs=Done, run=_flood)


def test_an_attempt_keeps_64_kib_and_says_how_much_was_cut(any_kits: KitFactory) -> None:
    kit = any_kits(catalog=Catalog(FLOOD)).start()
    h = kit.run(define_workflow("flood").step("f", FLOOD).build())
    h.result(timeout=20)
    lines = h.logs("f")
    kept = [ln for ln in lines if ln.stream == "stdout"]
    assert len(kept) == MAX_BYTES // 1024 == 64
    assert lines[-1].stream == "thodare"
    assert lines[-1].text == "[36864 more bytes cut: an attempt keeps 64 KiB]"
    stored = q(kit.store.url, "SELECT cut_bytes, length(lines_json) FROM thodare_step_logs")
    assert stored[0][0] == 36 * 1024 and stored[0][1] < MAX_BYTES + 64 * 64


def _crash(_: Empty, ctx: StepContext) -> Done:
    print("about to fail")
    logging.getLogger("crash").error("the service said no")
    raise ValueError("kaboom")


CRASH = define_connector(type="log_crash", params=Empty, outputs=Done, run=_crash)


def test_the_logs_of_a_failed_attempt_are_kept(any_kits: KitFactory) -> None:
    kit = any_kits(catalog=Catalog(CRASH)).start()
    h = kit.run(define_workflow("crash").step("c", CRASH).build())
    with pytest.raises(RunFailed, match="kaboom"):
        h.result(timeout=20)
    assert [(ln.attempt, ln.stream, ln.text) for ln in h.logs("c")] == [
        (1, "stdout", "about to fail"),
        (1, "log", "ERROR crash: the service said no"),
    ]


def test_a_quiet_run_has_no_log_rows_and_an_unknown_run_is_an_error(
    any_kits: KitFactory,
) -> None:
    kit = any_kits(catalog=Catalog(CHATTY, AFTER)).start()
    quiet = define_connector(type="log_quiet", params=Empty, outputs=Done, run=lambda _: Done())
    kit.register(quiet)
    h = kit.run(define_workflow("quiet").step("q", quiet).build())
    h.result(timeout=20)
    assert h.logs() == []
    assert q(kit.store.url, "SELECT count(*) FROM thodare_step_logs") == [(0,)]
    with pytest.raises(RunNotFound):
        kit.get_handle("no-such-run").logs()


SLOW_GO = threading.Event()


def _slow(_: Empty, ctx: StepContext) -> Done:
    print(f"{ctx.block_id} starts")
    if ctx.block_id == "second":
        SLOW_GO.wait(10)
    return Done()


SLOW = define_connector(type="log_slow", params=Empty, outputs=Done, run=_slow)


def test_cli_logs_follow_prints_lines_until_the_run_ends(any_kits: KitFactory) -> None:
    SLOW_GO.clear()
    kit = any_kits(catalog=Catalog(SLOW)).start()
    wf = define_workflow("slow").step("first", SLOW).step("second", SLOW, needs=("first",))
    h = kit.run(wf.build())
    # CliRunner swaps sys.stdout while it runs: the steps print before (first) and after
    # (second, which starts with the proxy installed around CliRunner's stream)
    wait_until(lambda: len(h.logs()) == 1, what="the first step's logs")
    threading.Timer(1.0, SLOW_GO.set).start()  # the run ends while the CLI follows it
    t0 = time.monotonic()
    res = CliRunner().invoke(
        app, ["logs", h.id, "--follow", "--interval", "0.1", "--db", kit.store.url],
        env={"THODARE_NAMESPACE": None},
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert time.monotonic() - t0 >= 0.9  # it waited for the run to end
    assert [line.split(" ", 1)[1] for line in res.output.splitlines()] == [
        "first#1 stdout: first starts", "second#1 stdout: second starts"
    ]  # fmt: skip
    assert h.status == "completed"
    one = CliRunner().invoke(app, ["logs", h.id, "second", "--db", kit.store.url])
    assert [line.split(" ", 1)[1] for line in one.output.splitlines()] == [
        "second#1 stdout: second starts"
    ]
    missing = CliRunner().invoke(app, ["logs", "nope", "--db", kit.store.url])
    assert missing.exit_code == 2 and "No run 'nope'" in missing.stderr


def test_the_dag_widget_shows_a_steps_logs_in_its_details(any_kits: KitFactory) -> None:
    from thodare_jupyter.notebook.widgets import DagView

    kit = any_kits(catalog=Catalog(CHATTY, AFTER)).start()
    wf = define_workflow("chatty").step("chat", CHATTY).step("after", AFTER, needs=("chat",))
    built = wf.build()
    h = kit.run(built)
    h.result(timeout=20)
    view = DagView(built, kit, h.id)
    view.selected = "chat"
    logs = view.details["logs"]
    assert [(ln["attempt"], ln["stream"]) for ln in logs][:2] == [(1, "stdout"), (1, "stderr")]
    assert len(logs) == 10 and logs[-1]["text"] == "INFO thodare.step: ctx.log.info on attempt 2"
    view.selected = "after"
    assert view.details["logs"] == [
        {"block_id": "after", "attempt": 1, "stream": "stdout", "text": "after ran"}
    ]


def test_prune_deletes_the_logs_of_the_runs_it_deletes(any_kits: KitFactory) -> None:
    kit = any_kits(catalog=Catalog(CHATTY, AFTER)).start()
    old = kit.run(define_workflow("old").step("a", AFTER).build())
    old.result(timeout=20)
    time.sleep(1.0)
    new = kit.run(define_workflow("new").step("b", AFTER).build())
    new.result(timeout=20)
    assert q(kit.store.url, "SELECT count(*) FROM thodare_step_logs") == [(2,)]
    cutoff = q(kit.store.url, "SELECT ended_at FROM thodare_runs WHERE id = ?", new.id)[0][0]
    assert kit.prune(time.time() - cutoff + 0.5).runs == 1  # ended over 0.5 s before the new
    assert q(kit.store.url, "SELECT run_id FROM thodare_step_logs") == [(new.id,)]
    assert [ln.text for ln in new.logs()] == ["after ran"]


async def _stuck(_: Empty, ctx: StepContext) -> Done:
    print(f"attempt {ctx.attempt} starts")
    if ctx.attempt == 1:
        await asyncio.sleep(30)
    return Done(n=ctx.attempt)


STUCK = define_connector(type="log_stuck", params=Empty, outputs=Done, run=_stuck)


def test_a_timed_out_attempt_keeps_its_lines(any_kits: KitFactory) -> None:
    kit = any_kits(catalog=Catalog(STUCK)).start()
    wf = define_workflow("stuck").step("s", STUCK, timeout=0.3, retries={"max": 2, "backoff": 0})
    h = kit.run(wf.build())
    assert h.result(timeout=20)["s"] == {"n": 2}
    assert [(ln.attempt, ln.text) for ln in h.logs("s")] == [
        (1, "attempt 1 starts"),
        (2, "attempt 2 starts"),
    ]


class Numbers(BaseModel):
    values: list[int] = [0, 1, 2]


class Item(BaseModel):
    n: int


def _numbers(_: Empty) -> Numbers:
    return Numbers()


def _shout(p: Item) -> Done:
    print(f"item {p.n} says hi")
    return Done(n=p.n)


NUMBERS = define_connector(type="log_numbers", params=Empty, outputs=Numbers, run=_numbers)
SHOUT = define_connector(type="log_shout", params=Item, outputs=Done, run=_shout)


def test_a_for_each_steps_logs_hold_its_items_lines(any_kits: KitFactory) -> None:
    """``logs("each")`` has every item's lines (``each[i]``); ``logs("each[1]")`` one
    item's; a block whose id starts the same (``e``) none of them; the widget shows them."""
    from thodare_jupyter.notebook.widgets import DagView

    kit = any_kits(catalog=Catalog(NUMBERS, SHOUT, AFTER)).start()
    wf = (
        define_workflow("shouts")
        .step("numbers", NUMBERS)
        .for_each(
            "each",
            SHOUT,
            over=lambda r: r.numbers.values,
            params=lambda item, r: {"n": item},
            concurrency=1,
        )
        .step("e", AFTER, needs=("each",))
        .build()
    )
    h = kit.run(wf)
    h.result(timeout=30)
    lines = h.logs("each")
    assert [(ln.block_id, ln.text) for ln in lines] == [
        (f"each[{i}]", f"item {i} says hi") for i in range(3)
    ]
    assert [ln.text for ln in h.logs("each[1]")] == ["item 1 says hi"]
    assert [ln.text for ln in h.logs("e")] == ["after ran"]
    view = DagView(wf, kit, h.id)
    view.selected = "each"
    assert [(ln["block_id"], ln["text"]) for ln in view.details["logs"]] == [
        (f"each[{i}]", f"item {i} says hi") for i in range(3)
    ]
