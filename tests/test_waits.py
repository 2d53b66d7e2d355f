"""Waits answered, signals counted, params recorded as a step ran with them.

On SQLite and PostgreSQL: ``kit.signal`` returns the signal's id (an ``int``, as
before) saying how many runs waiting then it woke; ``thodare signal`` prints it;
the REST routes return ``{signal_id, woke}``, answer a waiting
``human_approval`` as the Jupyter user of the request and send a waiting
``wait_for_event``'s event with the correlation key the step resolved. A step
row keeps the params it ran with, masked: a hidden param and an env-sourced one
are ``***`` and their values never reach the database's bytes.
"""

from __future__ import annotations

import asyncio
import json
import pickle
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from durable_helpers import (
    KitFactory,
    block,
    chain_wf,
    database_text,
    event_wf,
    parked,
    q,
    wait_until,
)
from jupyter_server.auth import IdentityProvider, User
from pydantic import BaseModel
from tornado import web
from tornado.httpclient import HTTPClientError, HTTPResponse
from traitlets.config import Config
from typer.testing import CliRunner

from thodare_jupyter import Hidden, SignalSent, Wfkit, define_connector
from thodare_jupyter.cli import app
from thodare_jupyter.notebook.widgets import DagView
from thodare_jupyter.wire import SerializedWorkflow

pytest_plugins = ("pytest_jupyter.jupyter_server",)

Fetch = Callable[..., Awaitable[HTTPResponse]]
PAID = event_wf("paid", {"eventName": "order.paid", "correlationKey": "{{trigger.order}}"},
                {"amount": "{{wait.data.amount}}"})  # fmt: skip
APPROVAL = chain_wf(
    "needs-ok",
    block("approve", "human_approval", {"prompt": "Ship it?"}),
    block("after", "transform", {"template": {"ok": "{{approve.approved}}"}}),
)
TOKEN = "tok-live-" + "T" * 40
DSN = "postgresql://warehouse:pw-" + "D" * 30 + "@db/sales"
ENV = {"API_TOKEN": TOKEN, "WAREHOUSE": DSN, "REGION": "eu-west-1"}


def waiting(kit: Wfkit, wf: dict[str, Any], data: Any, block_id: str = "wait") -> str:
    """Start a run of ``wf`` and wait until it is parked at ``block_id``; its id."""
    h = kit.run(wf, data)
    wait_until(parked(kit.store.url, h.id, block_id), 20, f"run {h.id} to wait at {block_id}")
    return h.id


# ── kit.signal / kit.approve ──────────────────────────────────────────────────


def test_a_signal_says_how_many_waiting_runs_it_woke(any_kits: KitFactory) -> None:
    kit = any_kits().start()
    a, b1, b2 = (waiting(kit, PAID, {"order": o}) for o in ("A", "B", "B"))

    unkeyed = kit.signal("order.paid", {"amount": 0})  # keyed waits need a key
    assert isinstance(unkeyed, SignalSent) and unkeyed.woke == 0
    assert unkeyed.message() == (
        "Woke 0 runs waiting for 'order.paid' (no key: waits with a correlationKey need one); "
        f"stored as signal {unkeyed.id} for runs that reach the wait later."
    )
    one = kit.signal("order.paid", {"amount": 42}, correlation_key="A")
    assert isinstance(one, int) and one == one.id == unkeyed + 1  # still the id, as before
    assert (one.woke, repr(one)) == (1, f"SignalSent(id={one.id}, woke=1)")
    copied = pickle.loads(pickle.dumps(one))  # a result that crosses processes keeps it
    assert (copied, copied.woke, copied.correlation_key) == (one.id, 1, "A")
    assert json.dumps({"signal_id": one}) == f'{{"signal_id": {one.id}}}'
    assert kit.get_handle(a).result(15)["after"]["result"] == {"amount": 42}
    two = kit.signal("order.paid", {"amount": 7}, correlation_key="B")
    assert two.woke == 2 and "Woke 2 runs waiting for 'order.paid' (key 'B')" in two.message()
    for run_id in (b1, b2):
        assert kit.get_handle(run_id).result(15)["after"]["result"] == {"amount": 7}
    late = kit.signal("order.paid", {"amount": 1}, correlation_key="A")  # A has ended
    assert late.woke == 0

    first = kit.signal("tick", idempotency_key="k1")
    again = kit.signal("tick", idempotency_key="k1")
    assert (again.id, again.created, again.woke, first.created) == (first.id, False, 0, True)


def test_an_approval_wakes_its_run_once(any_kits: KitFactory) -> None:
    kit = any_kits().start()
    run_id = waiting(kit, APPROVAL, {}, "approve")
    ok = kit.approve(run_id, "approve", True, by="ada", comment="fine")
    assert ok.woke == 1
    out = kit.get_handle(run_id).result(15)
    assert (out["approve"]["by"], out["approve"]["comment"]) == ("ada", "fine")
    assert kit.approve(run_id, "approve", False).woke == 0  # ended: nothing waits


def test_the_cli_says_how_many_runs_a_signal_woke(any_kits: KitFactory, db_url: str) -> None:
    kit = any_kits().start()
    run_id = waiting(kit, PAID, {"order": "C-3"})
    cli = CliRunner()

    res = cli.invoke(app, ["signal", "order.paid", "--payload", '{"amount": 3}',
                           "--key", "C-3", "--db", db_url])  # fmt: skip
    assert res.exit_code == 0, res.output
    (sid,) = q(db_url, "SELECT max(id) FROM thodare_signals")[0]
    assert res.stdout.strip() == (
        f"Woke 1 run waiting for 'order.paid' (key 'C-3'); stored as signal {sid} for runs "
        "that reach the wait later."
    )
    assert kit.get_handle(run_id).result(15)["after"]["result"] == {"amount": 3}
    res = cli.invoke(app, ["signal", "order.paid", "--key", "nobody", "--db", db_url])
    assert res.stdout.startswith("Woke 0 runs waiting for 'order.paid' (key 'nobody');")


# ── resolved params, masked ───────────────────────────────────────────────────


class CallParams(BaseModel):
    label: str
    token: Hidden[str]
    dsn: str
    greeting: str
    count: int


def _call(p: CallParams) -> dict[str, Any]:
    return {"label": p.label, "count": p.count}


caller = define_connector(type="h2-call", params=CallParams, outputs=None, run=_call)
CALL = chain_wf("call", block("call", "h2-call", {
    "label": "{{trigger.who}}", "token": "{{env.API_TOKEN}}", "dsn": "{{env.WAREHOUSE}}",
    "greeting": "hello from {{env.REGION}}", "count": "{{trigger.n}}",
}))  # fmt: skip


def test_a_step_keeps_the_params_it_ran_with_masked(any_kits: KitFactory, db_url: str) -> None:
    kit = any_kits(env=ENV).start()
    kit.register(caller)
    handle = kit.run(CALL, {"who": "Ada", "n": 3})
    assert handle.result(15)["call"] == {"label": "Ada", "count": 3}

    (step,) = [s for s in handle.describe().steps if s.block_id == "call"]
    assert step.params == {"label": "Ada", "token": "***", "dsn": "***", "greeting": "***",
                           "count": 3}  # fmt: skip
    view = DagView(SerializedWorkflow.model_validate(CALL), kit, handle.id)
    view.selected = "call"  # the widget: the templates next to what the step ran with
    assert view.details["params"]["label"] == "{{trigger.who}}"
    assert view.details["params"]["token"] == "••••••"  # hidden: not even its template
    assert view.details["resolved"] == step.params
    assert view.details["attempt"] == 1 and view.details["started_at"] is not None
    kit.close()
    stored = database_text(db_url)
    for secret in (TOKEN, DSN, "pw-DDDD", "eu-west-1"):
        assert secret.encode() not in stored, f"the database holds {secret[:12]!r}"
    assert b'"label":"Ada"' in stored  # what is no secret is kept


# ── REST: approve and send-event on a run, signals counted ───────────────────


class Ada(IdentityProvider):
    """The token's user is Ada (a Jupyter user with a name, as JupyterHub gives one)."""

    def generate_anonymous_user(self, handler: web.RequestHandler) -> User:
        return User(username="ada", name="Ada Lovelace")


@pytest.fixture
def jp_server_config(db_url: str) -> Config:
    """Our extension alone, on the test's database, with Ada logged in."""
    return Config({
        "ServerApp": {"jpserver_extensions": {"thodare_jupyter.server": True},
                      "identity_provider_class": Ada},
        "ThodareServer": {"db_url": db_url},
    })  # fmt: skip


async def call(jp_fetch: Fetch, *parts: str, body: Any) -> Any:
    resp = await jp_fetch("thodare", "api", *parts, method="POST", body=json.dumps(body))
    return json.loads(resp.body)


async def refused(jp_fetch: Fetch, *parts: str, body: Any) -> tuple[int, str]:
    with pytest.raises(HTTPClientError) as info:
        await call(jp_fetch, *parts, body=body)
    assert info.value.response is not None
    return info.value.code, json.loads(info.value.response.body)["message"]


async def test_rest_approves_as_the_jupyter_user(jp_fetch: Fetch, any_kits: KitFactory) -> None:
    kit = any_kits().start()
    run_id = await asyncio.to_thread(waiting, kit, APPROVAL, {}, "approve")

    assert await refused(jp_fetch, "runs", run_id, "approve", body={"block": "approve"}) == (
        400, "approved: required, true or false.")  # fmt: skip
    assert await refused(jp_fetch, "runs", run_id, "approve",
                         body={"block": "approve", "approved": True, "by": "mallory"}) == (
        400, "by: unknown field (expected block, approved, comment).")  # fmt: skip
    not_waiting = f"Step 'after' of run {run_id} is not waiting for an approval"
    assert await refused(jp_fetch, "runs", run_id, "approve",
                         body={"block": "after", "approved": True}) == (
        409, f"{not_waiting} (no such step).")  # fmt: skip
    out = await call(jp_fetch, "runs", run_id, "approve",
                     body={"block": "approve", "approved": True, "comment": "ship"})  # fmt: skip
    assert (out["woke"], out["by"], out["approved"]) == (1, "Ada Lovelace", True)
    assert isinstance(out["signal_id"], int)
    result = await asyncio.to_thread(kit.get_handle(run_id).result, 15)
    assert (result["approve"]["by"], result["approve"]["comment"]) == ("Ada Lovelace", "ship")
    code, message = await refused(jp_fetch, "runs", run_id, "approve",
                                  body={"block": "approve", "approved": False})  # fmt: skip
    assert (code, message) == (409, f"Step 'approve' of run {run_id} is not waiting for an "
                                    "approval (it is completed).")  # fmt: skip


async def test_rest_sends_the_event_with_the_resolved_key(
    jp_fetch: Fetch, any_kits: KitFactory
) -> None:
    kit = any_kits().start()
    run_id = await asyncio.to_thread(waiting, kit, PAID, {"order": "A-1"})
    other = await asyncio.to_thread(waiting, kit, PAID, {"order": "B-2"})

    described = json.loads((await jp_fetch("thodare", "api", "runs", run_id)).body)
    (wait,) = [s for s in described["steps"] if s["block_id"] == "wait"]
    assert (wait["waiting_for"], wait["waiting_key"]) == ("order.paid", "A-1")
    assert wait["params"] == {"eventName": "order.paid", "correlationKey": "A-1"}
    assert described["templates"]["wait"]["correlationKey"] == "{{trigger.order}}"
    listed = json.loads((await jp_fetch("thodare", "api", "runs")).body)
    assert all("steps" not in r and "input" not in r for r in listed)  # the list stays small

    nope = {"block": "wait", "correlation_key": "nope", "payload": {}}
    wrong = await call(jp_fetch, "runs", run_id, "event", body=nope)
    assert (wrong["woke"], wrong["correlation_key"]) == (0, "nope")
    out = await call(
        jp_fetch, "runs", run_id, "event", body={"block": "wait", "payload": {"amount": 5}}
    )  # the step's key
    assert (out["woke"], out["event"], out["correlation_key"]) == (1, "order.paid", "A-1")
    result = await asyncio.to_thread(kit.get_handle(run_id).result, 15)
    assert result["after"]["result"] == {"amount": 5}
    assert kit.get_handle(other).status == "waiting"
    assert await refused(jp_fetch, "runs", run_id, "event", body={"block": "wait"}) == (
        409,
        f"Step 'wait' of run {run_id} is not waiting for an event (it is completed).",
    )

    sent = await call(jp_fetch, "signals", body={"event": "order.paid", "correlation_key": "B-2",
                                                 "payload": {"amount": 6}})  # fmt: skip
    assert sent["woke"] == 1 and sent["message"].startswith("Woke 1 run waiting for 'order.paid'")
    assert await asyncio.to_thread(kit.get_handle(other).result, 15)


@pytest.mark.parametrize("action", ["approve", "event"])
async def test_the_wait_routes_need_the_token_and_a_run(
    jp_fetch: Fetch, any_kits: KitFactory, action: str
) -> None:
    any_kits()  # the database exists and is migrated
    body = json.dumps({"block": "b", "approved": True} if action == "approve" else {"block": "b"})
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("thodare", "api", "runs", "x", action, method="POST", body=body,
                       headers={"Authorization": "token not-the-token"})  # fmt: skip
    assert info.value.code in (401, 403)
    assert await refused(jp_fetch, "runs", "nope", action, body=json.loads(body)) == (
        404, "No run 'nope' in this database.")  # fmt: skip
    no_block = {"approved": True} if action == "approve" else {}
    assert await refused(jp_fetch, "runs", "nope", action, body=no_block) == (
        400, "block: required, a non-empty string.")  # fmt: skip
