"""The jupyter-server extension's REST routes, on a real server, kit and SQLite file.

pytest-jupyter starts a Jupyter server with ``thodare_jupyter.server`` enabled;
``THODARE_DB`` points both the server and the test's kit (a started worker, as
in a kernel) at one temp SQLite file. Every route is called through
``jp_fetch`` (which sends the server's token); without a valid token each is
refused. Waiting runs are canceled and woken through the routes for real.
Hostile input is refused with 400/404/413 naming the field, never a 500: odd
``limit`` and ``status`` values, run ids that cannot exist, deeply nested or
oversized signal bodies. The runs list leaves out inputs, outputs and steps (the
run route has them), so a list stays small however big runs get.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from durable_helpers import KitFactory, block, chain_wf, event_wf, parked, wait_until
from pydantic import BaseModel
from tornado.httpclient import HTTPClientError, HTTPResponse
from traitlets.config import Config

from thodare_jupyter import Catalog, Wfkit, define_connector
from thodare_jupyter.errors import RunCanceled
from thodare_jupyter.server.handlers import MAX_SIGNAL_BODY

pytest_plugins = ("pytest_jupyter.jupyter_server",)

Fetch = Callable[..., Awaitable[HTTPResponse]]
APPROVAL = chain_wf(
    "needs-ok",
    block("approve", "human_approval", {"prompt": "Ship it?"}),
    block("after", "transform", {"template": {"ok": "{{approve.approved}}"}}),
)
QUICK = chain_wf("quick", block("hello", "transform", {"template": {"text": "hi"}}))
ROUTES = [("GET", "runs"), ("GET", "runs/x"), ("POST", "runs/x/cancel"),
          ("GET", "runs/x/dag.svg"), ("GET", "runs/x/artifacts/sha256:" + "0" * 64),
          ("POST", "signals"), ("GET", "workers"), ("GET", "runs/x/logs")]  # fmt: skip


@pytest.fixture
def jp_server_config() -> Config:
    """Only our extension (not the terminals one the default config enables)."""
    return Config({"ServerApp": {"jpserver_extensions": {"thodare_jupyter.server": True}}})


@pytest.fixture
def kit(kits: KitFactory, db: Path, monkeypatch: pytest.MonkeyPatch) -> Wfkit:
    """A started kit on the temp SQLite file the server reads too (through ``THODARE_DB``)."""
    monkeypatch.setenv("THODARE_DB", str(db))
    return kits().start()


async def fetch_json(jp_fetch: Fetch, *parts: str, **kw: Any) -> Any:
    return json.loads((await jp_fetch("thodare", "api", *parts, **kw)).body)


async def error(jp_fetch: Fetch, *parts: str, **kw: Any) -> tuple[int, str]:
    """The status code and JSON ``message`` of a request that must fail."""
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("thodare", "api", *parts, **kw)
    assert info.value.response is not None
    return info.value.code, json.loads(info.value.response.body)["message"]


def post(body: Any) -> dict[str, Any]:
    return {"method": "POST", "body": body if isinstance(body, str) else json.dumps(body)}


async def parked_run(kit: Wfkit, wf: dict[str, Any], block_id: str, data: Any = None) -> str:
    h = kit.run(wf, data or {})
    await asyncio.to_thread(wait_until, parked(kit.store.url.split("///")[1], h.id, block_id),
                            what=f"run {h.id} to wait at {block_id}")  # fmt: skip
    return h.id


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_every_route_refuses_a_request_without_a_valid_token(
    jp_fetch: Fetch, kit: Wfkit, method: str, path: str
) -> None:
    body = "{}" if method == "POST" else None
    code, _ = await error(jp_fetch, *path.split("/"), method=method, body=body,
                          headers={"Authorization": "token not-the-token"})  # fmt: skip
    assert code in (401, 403)


async def test_runs_lists_the_kernels_runs_newest_first_with_filter_and_limit(
    jp_fetch: Fetch, kit: Wfkit
) -> None:
    done = kit.run(QUICK, {})
    await asyncio.to_thread(done.result, 15)
    waiting = await parked_run(kit, APPROVAL, "approve")

    runs = await fetch_json(jp_fetch, "runs")
    assert [(r["id"], r["workflow"], r["status"]) for r in runs] == [
        (waiting, "needs-ok", "waiting"), (done.id, "quick", "completed")]  # fmt: skip
    assert "steps" not in runs[1] and runs[1]["forked"] == 0
    only = await fetch_json(jp_fetch, "runs", params={"status": "waiting"})
    assert [r["id"] for r in only] == [waiting]
    assert [r["id"] for r in await fetch_json(jp_fetch, "runs", params={"limit": "1"})] == [waiting]

    one = await fetch_json(jp_fetch, "runs", waiting)
    assert one["status"] == "waiting"
    assert [(s["block_id"], s["status"], s["waiting_for"]) for s in one["steps"]] == [
        ("approve", "waiting", f"human_approval:{waiting}:approve")]  # fmt: skip


async def test_bad_query_values_are_400_naming_the_field(jp_fetch: Fetch, kit: Wfkit) -> None:
    code, msg = await error(jp_fetch, "runs", params={"status": "done"})
    assert (code, msg) == (400, "status: 'done' is not one of pending, running, waiting, "
                                "completed, failed, canceled.")  # fmt: skip
    for bad in ("0", "abc", "1001"):
        code, msg = await error(jp_fetch, "runs", params={"limit": bad})
        assert (code, msg) == (400, f"limit: {bad!r} is not a whole number from 1 to 1000.")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"limit": "\u00b2"}, "limit: '\u00b2' is not a whole number from 1 to 1000."),
        ({"limit": "\u0661\u0662"}, "limit: '\u0661\u0662' is not a whole number from 1 to 1000."),
        ({"limit": "1" * 5000}, "limit: '11111111111111111111111111111111…' (5000 characters) "
                                "is not a whole number from 1 to 1000."),
        ({"limit": "+5"}, "limit: '+5' is not a whole number from 1 to 1000."),
        ({"limit": "5_0"}, "limit: '5_0' is not a whole number from 1 to 1000."),
        ({"status": "x" * 5000}, "status: 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx…' (5000 characters) "
                                 "is not one of pending, running, waiting, completed, failed, "
                                 "canceled."),
    ],
)  # fmt: skip
async def test_hostile_query_values_are_400_naming_the_field(
    jp_fetch: Fetch, kit: Wfkit, params: dict[str, str], message: str
) -> None:
    assert await error(jp_fetch, "runs", params=params) == (400, message)


async def test_a_run_id_that_cannot_exist_is_404_with_a_short_message(
    jp_fetch: Fetch, kit: Wfkit
) -> None:
    for bad in ("x" * 5000, "a\x00b", "\u00e9" * 70):
        code, msg = await error(jp_fetch, "runs", bad)
        assert code == 404 and msg.startswith("No run ") and len(msg) < 120, msg
    code, msg = await error(jp_fetch, "runs", "x" * 5000, "cancel", **post(""))
    assert (code, msg) == (404, "No run 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx…' (5000 characters) "
                                "in this database.")  # fmt: skip


async def test_hostile_signal_bodies_are_400_or_413(jp_fetch: Fetch, kit: Wfkit) -> None:
    deep = '{"event": "e", "payload": ' + "[" * 100_000 + "]" * 100_000 + "}"
    big = json.dumps({"event": "e", "payload": "x" * MAX_SIGNAL_BODY})
    assert len(deep) < MAX_SIGNAL_BODY < len(big)
    cases = [
        (deep, 400, "body: nested more than 64 levels deep"),
        ('{"event": "e", "payload": NaN}', 400, "body: NaN is not allowed"),
        ('{"event": "e", "payload": "\\udfff"}', 400,
         "body: a string holds an unpaired surrogate escape (\\udfff); send valid Unicode."),
        ('{"event": "e", "payload": ' + "9" * 5000 + "}", 400,
         "body: an integer has 5000 digits; at most 4300 are allowed"),
        ("null", 400, "body: expected a JSON object."),
        ('"e"', 400, "body: expected a JSON object."),
        (big, 413, f"body: is {len(big)} bytes; at most {MAX_SIGNAL_BODY} are allowed "
         "(256 KiB); send less or store the data elsewhere and send a reference."),
        (json.dumps({"event": "e" * 513}), 400, "event: at most 512 characters (got 513)."),
        (json.dumps({"event": "e", "correlation_key": "k" * 513}), 400,
         "correlation_key: at most 512 characters (got 513)."),
        (json.dumps({"event": "e\x00"}), 400, "event: 'e\\x00' holds a control character."),
        (json.dumps({"event": "e", "x" * 5000: 1}), 400,
         "'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx…' (5000 characters): unknown field"),
    ]  # fmt: skip
    for body, status, message in cases:
        code, msg = await error(jp_fetch, "signals", **post(body))
        assert (code, msg[: len(message)]) == (status, message), msg[:200]
    ok = await fetch_json(jp_fetch, "signals", **post({"event": "e", "payload": [[[1]]]}))
    assert isinstance(ok["signal_id"], int)


async def test_the_runs_list_leaves_out_inputs_and_outputs(jp_fetch: Fetch, kit: Wfkit) -> None:
    big = "x" * 100_000
    wf = chain_wf("echoes", block("hello", "transform", {"template": {"text": "{{trigger.big}}"}}))
    done = kit.run(wf, {"big": big})
    await asyncio.to_thread(done.result, 15)

    resp = await jp_fetch("thodare", "api", "runs")
    assert len(resp.body) < 500  # one row: about 335 bytes
    (listed,) = json.loads(resp.body)
    assert sorted(listed) == [
        "created_at", "ended_at", "error", "failed_block", "forked", "forked_from", "id",
        "parent_block_id", "parent_run_id", "started_at", "status", "workflow"]  # fmt: skip
    assert (listed["id"], listed["status"], listed["workflow"]) == (done.id, "completed", "echoes")
    one = await fetch_json(jp_fetch, "runs", done.id)  # the run route keeps them
    assert one["input"] == {"big": big} and one["outputs"]["hello"]["result"] == {"text": big}
    steps = {s["block_id"]: s for s in one["steps"]}
    assert steps["hello"]["output"] == {"result": {"text": big}}


@pytest.mark.parametrize(("method", "suffix"), [("GET", ""), ("POST", "cancel"),
                                                ("GET", "dag.svg"), ("GET", "logs")])  # fmt: skip
async def test_an_unknown_run_id_is_404(
    jp_fetch: Fetch, kit: Wfkit, method: str, suffix: str
) -> None:
    parts = ["runs", "nope", suffix] if suffix else ["runs", "nope"]
    body = "" if method == "POST" else None
    assert await error(jp_fetch, *parts, method=method, body=body) == (
        404, "No run 'nope' in this database.")  # fmt: skip


async def test_cancel_stops_a_waiting_run(jp_fetch: Fetch, kit: Wfkit) -> None:
    run_id = await parked_run(kit, APPROVAL, "approve")

    out = await fetch_json(jp_fetch, "runs", run_id, "cancel", **post(""))
    assert out == {"id": run_id, "canceled": True, "status": "canceled"}
    with pytest.raises(RunCanceled):
        await asyncio.to_thread(kit.get_handle(run_id).result, 15)
    again = await fetch_json(jp_fetch, "runs", run_id, "cancel", **post(""))
    assert again == {"id": run_id, "canceled": False, "status": "canceled"}
    assert (await fetch_json(jp_fetch, "runs", run_id))["status"] == "canceled"


async def test_a_signal_wakes_the_run_waiting_for_it(jp_fetch: Fetch, kit: Wfkit) -> None:
    wf = event_wf("paid", {"eventName": "order.paid", "correlationKey": "{{trigger.order}}"},
                  {"amount": "{{wait.data.amount}}"})  # fmt: skip
    run_id = await parked_run(kit, wf, "wait", {"order": "A-1"})

    out = await fetch_json(jp_fetch, "signals", **post(
        {"event": "order.paid", "payload": {"amount": 42}, "correlation_key": "A-1"}))  # fmt: skip
    assert isinstance(out["signal_id"], int)
    result = await asyncio.to_thread(kit.get_handle(run_id).result, 15)
    assert result["after"]["result"] == {"amount": 42}
    assert (await fetch_json(jp_fetch, "runs", run_id))["status"] == "completed"


@pytest.mark.parametrize(("body", "message"), [
    ("{not json", "body: not JSON (Expecting property name enclosed in double quotes: "
                  "line 1 column 2 (char 1))."),
    ([1], "body: expected a JSON object."),
    ({"payload": {}}, "event: required, a non-empty string."),
    ({"event": " "}, "event: required, a non-empty string."),
    ({"event": "e", "correlation_key": 7}, "correlation_key: must be a string or null."),
    ({"event": "e", "corelation_key": "k"},
     "corelation_key: unknown field (expected event, payload, correlation_key)."),
])  # fmt: skip
async def test_a_bad_signal_is_400_naming_the_field(
    jp_fetch: Fetch, kit: Wfkit, body: Any, message: str
) -> None:
    assert await error(jp_fetch, "signals", **post(body)) == (400, message)


async def test_dag_svg_colours_each_block_by_its_step_status(jp_fetch: Fetch, kit: Wfkit) -> None:
    run_id = await parked_run(kit, APPROVAL, "approve")

    resp = await jp_fetch("thodare", "api", "runs", run_id, "dag.svg")
    assert resp.headers["Content-Type"] == "image/svg+xml; charset=UTF-8"
    svg = resp.body.decode()
    assert svg.startswith("<svg") and "needs-ok · waiting" in svg
    for block_id, status in [("trg", "completed"), ("approve", "waiting"), ("after", "pending")]:
        assert f'data-block-id="{block_id}" data-status="{status}"' in svg

    await jp_fetch("thodare", "api", "runs", run_id, "cancel", **post(""))
    svg = (await jp_fetch("thodare", "api", "runs", run_id, "dag.svg")).body.decode()
    assert 'data-block-id="approve" data-status="canceled"' in svg
    assert 'data-block-id="after" data-status="not run"' in svg  # never reached


class TestConfiguredDatabase:
    """``c.ThodareServer.db_url`` wins over ``THODARE_DB``."""

    @pytest.fixture
    def jp_server_config(self, db: Path) -> Config:
        return Config({"ServerApp": {"jpserver_extensions": {"thodare_jupyter.server": True}},
                       "ThodareServer": {"db_url": f"sqlite:///{db}"}})  # fmt: skip

    async def test_the_configured_url_is_read(
        self, jp_fetch: Fetch, kit: Wfkit, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("THODARE_DB", str(tmp_path / "elsewhere.db"))
        done = kit.run(QUICK, {})
        await asyncio.to_thread(done.result, 15)
        assert [r["id"] for r in await fetch_json(jp_fetch, "runs")] == [done.id]


class TestUnreachableDatabase:
    """A database that cannot be opened is a 503 saying why, not a crash."""

    @pytest.fixture
    def jp_server_config(self, tmp_path: Path) -> Config:
        blocker = tmp_path / "not-a-dir"
        blocker.write_text("a file where the database's folder should be")
        return Config({"ServerApp": {"jpserver_extensions": {"thodare_jupyter.server": True}},
                       "ThodareServer": {"db_url": f"sqlite:///{blocker}/runs.db"}})  # fmt: skip

    async def test_runs_is_503_naming_the_database(self, jp_fetch: Fetch, tmp_path: Path) -> None:
        code, msg = await error(jp_fetch, "runs")
        assert code == 503
        assert msg.startswith(f"Cannot use the database at sqlite:///{tmp_path}/not-a-dir/runs.db")


async def test_workers_lists_the_live_workers(jp_fetch: Fetch, kit: Wfkit) -> None:
    workers = await fetch_json(jp_fetch, "workers")
    assert [w["id"] for w in workers] == [kit.worker.owner]
    assert workers[0]["runs_held"] == 0 and "transform" in workers[0]["connector_types"]
    kit.stop()  # a clean stop forgets the worker at once
    assert await fetch_json(jp_fetch, "workers") == []


async def test_logs_of_a_run_and_of_one_block(jp_fetch: Fetch, kit: Wfkit) -> None:
    """``GET runs/{id}/logs[?block=]``: lines with time, stream, block and attempt."""
    from pydantic import BaseModel

    from thodare_jupyter import define_connector
    from thodare_jupyter.connectors import StepContext
    from thodare_jupyter.wire import SerializedWorkflow

    class Nothing(BaseModel):
        pass

    def talk(_: Nothing, ctx: StepContext) -> dict[str, Any]:
        print(f"hello from {ctx.block_id}")
        ctx.log("done")
        return {}

    kit.register(define_connector(type="route_talk", params=Nothing, run=talk))
    wf = chain_wf("talky", block("one", "route_talk", {}), block("two", "route_talk", {}))
    h = kit.run(SerializedWorkflow.model_validate(wf), {})
    await asyncio.to_thread(h.result, 15)
    lines = await fetch_json(jp_fetch, "runs", h.id, "logs")
    assert [(ln["block_id"], ln["attempt"], ln["stream"], ln["text"]) for ln in lines] == [
        ("one", 1, "stdout", "hello from one"), ("one", 1, "log", "done"),
        ("two", 1, "stdout", "hello from two"), ("two", 1, "log", "done"),
    ]  # fmt: skip
    assert all(ln["at"].endswith("Z") or "+" in ln["at"] for ln in lines)
    two = await fetch_json(jp_fetch, "runs", h.id, "logs", params={"block": "two"})
    assert [ln["text"] for ln in two] == ["hello from two", "done"]
    code, msg = await error(jp_fetch, "runs", h.id, "logs", params={"block": "b" * 10241})
    assert (code, msg) == (400, f"block: {'b' * 32!r}"[:-1] + "…' (10241 characters) is longer "
                                "than a block id can be.")  # fmt: skip


class Half(BaseModel):
    n: int


class Halved(BaseModel):
    half: int


def _halve(p: Half) -> Halved:
    if p.n % 2:
        raise ValueError(f"{p.n} is odd")
    return Halved(half=p.n // 2)


HALVE = define_connector(type="route_halve", params=Half, outputs=Halved, run=_halve)


async def test_the_run_route_and_svg_carry_for_each_progress(
    jp_fetch: Fetch, kits: KitFactory, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ``for_each`` step of 5 items (2 failing): ``progress`` in the run route,
    ``5/5 · 2 failed`` on its node in the DAG's SVG."""
    monkeypatch.setenv("THODARE_DB", str(db))
    kit = kits(catalog=Catalog(HALVE)).start()
    each = {**block("halve", "route_halve", {"n": "{{item}}"}), "forEach": "{{trigger.ns}}"}
    done = kit.run(chain_wf("halves", each), {"ns": [0, 1, 2, 3, 4]})
    await asyncio.to_thread(done.result, 15)

    one = await fetch_json(jp_fetch, "runs", done.id)
    assert one["progress"] == {"halve": {"ended": 5, "total": 5, "failed": 2}}
    svg = (await jp_fetch("thodare", "api", "runs", done.id, "dag.svg")).body.decode()
    assert '5/5<tspan fill="#b71c1c"> · 2 failed</tspan>' in svg
    quick = await fetch_json(jp_fetch, "runs", kit.run(QUICK).id)
    assert quick["progress"] == {}
