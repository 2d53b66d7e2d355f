"""Seed proof 25 (dx-end-to-end), on SQLite and on PostgreSQL.

Zero to a typed durable workflow in under 30 lines: two typed connectors
(one calling a real HTTP API on loopback, one with a hidden token), a
builder workflow with typed refs, a kit, a durable run — and the outputs
thread through. The kit's lifecycle mistakes have clear errors: a run no
worker picks up says so and how to start one; a closed kit refuses work and
says to make a new one; a bad database URL is named with its password
masked; an unknown connector names ``kit.register``. Unlike the seed, a kit
accepts connectors after ``start()`` (a notebook defines them in later
cells), and the running worker uses them at once. ``kit.apply_operations``
is ``apply_operations`` with the kit's connectors.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from durable_helpers import KitFactory
from pydantic import BaseModel

from thodare_jupyter import (
    ApplyResult,
    BackendUnavailable,
    Hidden,
    RunTimeout,
    ThodareError,
    UnknownConnector,
    WorkflowInvalid,
    connector,
    create_wfkit,
    define_connector,
    define_workflow,
)
from thodare_jupyter.connectors.context import StepContext

if TYPE_CHECKING:
    from conftest import FakeServer


def zero_to_durable(db_url: str, api_url: str, sent: list[dict[str, Any]]) -> dict[str, Any]:
    """What a user writes: connectors, a workflow, a kit, a run."""

    class FetchParams(BaseModel):
        url: str
        email: str

    class Person(BaseModel):
        name: str
        company: str

    class FetchOut(BaseModel):
        body: Person

    @connector("fetch-user")
    async def fetch_user(p: FetchParams, ctx: StepContext) -> FetchOut:
        async with httpx.AsyncClient() as http:
            return FetchOut(body=(await http.post(p.url, json={"email": p.email})).json())

    class SlackParams(BaseModel):
        channel: str
        text: str
        token: Hidden[str] = "placeholder"

    @connector("slack-send")
    def slack_send(p: SlackParams):  # type: ignore[no-untyped-def]
        sent.append({"channel": p.channel, "text": p.text})
        return {"ok": True}

    class Lead(BaseModel):
        email: str

    wf = (define_workflow("dx-e2e-lead").input(Lead)
          .step("enrich", fetch_user, lambda r: {"url": api_url, "email": r.input.email})
          .step("notify", slack_send, lambda r: {"channel": "#sales", "text":
                f"Lead {r.enrich.body.name} at {r.enrich.body.company} ({r.input.email})"})
          .build())  # fmt: skip
    with create_wfkit(db_url, env={}, poll_s=0.05).register(fetch_user, slack_send) as kit:
        return kit.run(wf, {"email": "alice@x.com"}).result(timeout=30)


def test_zero_to_a_typed_durable_workflow_in_under_30_lines(
    db_url: str, api_server: FakeServer
) -> None:
    body = inspect.getsource(zero_to_durable).split('"""', 2)[2]
    lines = [ln for ln in body.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    assert len(lines) < 30, len(lines)

    api_server.reply = {"name": "Alice Example", "company": "Acme"}
    sent: list[dict[str, Any]] = []
    out = zero_to_durable(db_url, api_server.url, sent)

    assert [r["body"] for r in api_server.requests] == [{"email": "alice@x.com"}]
    assert sent == [{"channel": "#sales", "text": "Lead Alice Example at Acme (alice@x.com)"}]
    assert out["enrich"]["body"] == {"name": "Alice Example", "company": "Acme"}
    assert out["notify"] == {"ok": True}


# ── lifecycle errors ─────────────────────────────────────────────────────────


class Nothing(BaseModel):
    pass


class Done(BaseModel):
    done: bool


NOOP = define_connector(type="noop", params=Nothing, outputs=Done, run=lambda p: Done(done=True))


def one_step(type_: str = "noop") -> Any:
    return {
        "version": "1.0.0",
        "metadata": {"name": "one-step"},
        "blocks": [
            {"id": "trg", "type": "trigger_webhook", "params": {}},
            {"id": "n", "type": type_, "params": {}},
        ],
        "connections": [{"source": "trg", "target": "n"}],
    }


def test_a_run_no_worker_picks_up_says_how_to_start_one(any_kits: KitFactory) -> None:
    kit = any_kits().register(NOOP)
    handle = kit.run(one_step())
    with pytest.raises(RunTimeout) as ei:
        handle.result(timeout=0.3)
    assert ei.value.status == "pending"
    assert "No worker has picked it up" in str(ei.value) and "kit.start()" in str(ei.value)
    kit.start()  # the same handle then finishes
    assert handle.result(timeout=30)["n"] == {"done": True}


def test_a_closed_kit_refuses_work_and_says_what_to_do(any_kits: KitFactory) -> None:
    kit = any_kits().register(NOOP)
    kit.close()
    for call in (lambda: kit.run(one_step()), kit.start,
                 lambda: kit.schedule(one_step(), "@daily")):  # fmt: skip
        with pytest.raises(ThodareError, match=r"this kit is closed.*create_wfkit\(\)"):
            call()


def test_a_bad_database_url_is_named_with_its_password_masked() -> None:
    url = "postgresql+psycopg://ada:s3cret@127.0.0.1:1/nowhere?connect_timeout=2"
    with pytest.raises(BackendUnavailable) as ei:
        create_wfkit(url)
    assert "s3cret" not in str(ei.value)
    assert "ada:***@127.0.0.1:1/nowhere" in str(ei.value)


def test_an_unknown_connector_names_kit_register(any_kits: KitFactory) -> None:
    kit = any_kits()
    with pytest.raises(WorkflowInvalid) as ei:
        kit.compile(one_step("noop"))
    assert "'noop'" in str(ei.value) and "kit.register" in str(ei.value)
    with pytest.raises(UnknownConnector):
        kit.catalog.get("noop")
    assert kit.runs() == []


def test_connectors_registered_after_start_are_used_at_once(any_kits: KitFactory) -> None:
    kit = any_kits().start()  # a notebook: %load_ext started the worker, cells come later
    kit.register(NOOP)
    assert kit.run(one_step()).result(timeout=30)["n"] == {"done": True}


def test_kit_apply_operations_uses_the_kits_connectors(any_kits: KitFactory) -> None:
    kit = any_kits().register(NOOP)
    result = kit.apply_operations(
        {"version": "1.0.0", "blocks": [], "connections": []},
        [
            {"operation_type": "add", "block_id": "trg", "type": "trigger_webhook", "params": {}},
            {"operation_type": "add", "block_id": "n", "type": "noop", "params": {}},
            {"operation_type": "add", "block_id": "ghost", "type": "not-real", "params": {}},
            {"operation_type": "connect", "block_id": "trg", "target_block_id": "n"},
        ],
    )
    assert isinstance(result, ApplyResult)
    assert [s.reason_code for s in result.skipped_items] == ["block_type_not_registered"]
    assert [b.id for b in result.workflow.blocks] == ["trg", "n"]
    handle = kit.start().run(result.workflow)
    assert handle.result(timeout=30)["n"] == {"done": True}
