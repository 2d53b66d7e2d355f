"""Seed proof 18 (in-memory part): the meanest cases, the ones most likely to find a bug.

- ``__proto__`` arriving through ``json.loads`` (an own key, not a literal)
  is ignored in an op, dropped from params, and taints nothing;
- the ``EditOp`` schema refuses an unknown ``operation_type``: the pydantic
  adapter raises, and ``apply_operations`` skips it as ``invalid_operation``;
- two adds with one id in a batch: the first applies, the second is skipped;
- 20 concurrent in-memory runs of one workflow (``asyncio.gather``) do not
  lose updates to a counter shared by a connector, async or sync (with a lock);
- a resume payload holding a ``{{ }}`` string is used literally downstream,
  never expanded (no reading ``{{env.SECRET}}`` through a payload);
- a connector that mutates its params cannot change the workflow JSON, the
  next run, or the recorded output of the upstream block a param came from.

Not ported (durable runtime only): two durable workflows with the same name,
cancelling a paused durable run.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

import pytest
from ops_helpers import EMPTY
from pydantic import BaseModel, TypeAdapter, ValidationError

from thodare_jupyter import (
    Catalog,
    EditOp,
    InMemoryRun,
    PauseInfo,
    SerializedWorkflow,
    StepContext,
    apply_operations,
    arun_in_memory,
    define_connector,
    resume_in_memory,
    run_in_memory,
)
from thodare_jupyter.wire import EDIT_OP_ADAPTER, AddOp, SerializedBlock

# ── __proto__ through json.loads ───────────────────────────────────────────


def test_json_parsed_proto_key_in_an_op_is_ignored_and_taints_nothing(catalog: Catalog) -> None:
    evil = json.loads("""{
      "__proto__": { "polluted": "yes" },
      "operation_type": "add",
      "block_id": "n",
      "type": "trigger_webhook",
      "params": {}
    }""")
    assert "__proto__" in evil  # an own key, as JSON.parse would give
    r = apply_operations(EMPTY, [evil], catalog)
    assert r.ok, r.summary
    [n] = r.workflow.blocks
    assert (n.id, n.type, n.params) == ("n", "trigger_webhook", {})
    assert "polluted" not in r.workflow.to_json()
    assert "__proto__" not in r.workflow.to_json()
    # No class or fresh object picked anything up.
    assert not hasattr(n, "polluted")
    assert "polluted" not in AddOp.model_fields
    assert "polluted" not in SerializedBlock.model_fields
    assert not hasattr(AddOp(operation_type="add", block_id="z", type="t"), "polluted")
    # The caller's op dict was not changed.
    assert evil["__proto__"] == {"polluted": "yes"}


def test_json_parsed_proto_key_in_params_is_dropped_and_reported(catalog: Catalog) -> None:
    ops = json.loads("""[
      {"operation_type": "add", "block_id": "trg", "type": "trigger_webhook", "params": {}},
      {"operation_type": "add", "block_id": "n", "type": "slack",
       "params": {"operation": "send", "channel": "#x", "text": "hi",
                  "__proto__": {"polluted": "yes"}}},
      {"operation_type": "connect", "block_id": "trg", "target_block_id": "n"}
    ]""")
    r = apply_operations(EMPTY, ops, catalog)
    assert r.workflow.blocks[1].params == {"operation": "send", "channel": "#x", "text": "hi"}
    [issue] = r.validation_errors
    assert issue.field == "__proto__"
    assert "not exposed" in issue.error
    assert "polluted" not in r.workflow.to_json()


def test_json_document_with_proto_keys_loads_without_them_and_runs(catalog: Catalog) -> None:
    text = json.dumps(
        {
            "__proto__": {"polluted": "yes"},
            "version": "1.0.0",
            "blocks": [
                {
                    "__proto__": {"polluted": "yes"},
                    "id": "t",
                    "type": "transform",
                    "params": {"template": {"v": 1}},
                },
            ],
            "connections": [],
        }
    )
    wf = SerializedWorkflow.from_json(text)
    assert "polluted" not in wf.to_json()
    run = run_in_memory(text, catalog=catalog, env={})
    assert run.status == "completed", run.error
    assert run.outputs == {"t": {"result": {"v": 1}}}


# ── the EditOp schema boundary ─────────────────────────────────────────────


EXEC_OP = {"operation_type": "exec", "block_id": "x", "code": "rm -rf /"}


def test_edit_op_adapter_rejects_an_unknown_operation_type() -> None:
    with pytest.raises(ValidationError) as exc:
        EDIT_OP_ADAPTER.validate_python(EXEC_OP)
    assert "exec" in str(exc.value)
    # The public EditOp type behaves the same through a fresh adapter.
    with pytest.raises(ValidationError):
        TypeAdapter(EditOp).validate_python(EXEC_OP)
    with pytest.raises(ValidationError):
        EDIT_OP_ADAPTER.validate_json(json.dumps(EXEC_OP))


def test_apply_operations_skips_an_unknown_operation_type_as_invalid(catalog: Catalog) -> None:
    r = apply_operations(EMPTY, [EXEC_OP], catalog)
    [skip] = r.skipped_items
    assert skip.reason_code == "invalid_operation"
    assert skip.operation_type == "exec"
    assert skip.block_id == "x"
    assert "add|edit|delete|connect|disconnect" in skip.reason
    assert r.workflow.blocks == [] and r.workflow.connections == []
    assert not r.ok


@pytest.mark.parametrize(
    "bad",
    [
        None,
        "add a block please",
        42,
        ["operation_type", "add"],
        {},
        {"operation_type": None},
        {"operation_type": "add", "block_id": "x"},  # no type
        {"operation_type": "add", "block_id": 7, "type": "transform"},
        {"operation_type": "add", "block_id": "x", "type": "transform", "params": "nope"},
        {"operation_type": "connect", "block_id": "x"},  # no target
    ],
)
def test_malformed_ops_never_raise_and_are_skipped(catalog: Catalog, bad: Any) -> None:
    good = {
        "operation_type": "add",
        "block_id": "ok",
        "type": "transform",
        "params": {"template": 1},
    }
    r = apply_operations(EMPTY, [bad, good], catalog)
    assert [s.reason_code for s in r.skipped_items] == ["invalid_operation"]
    assert [b.id for b in r.workflow.blocks] == ["ok"]


def test_two_adds_with_one_id_in_a_batch_first_applies_second_skips(catalog: Catalog) -> None:
    ops = [
        {
            "operation_type": "add",
            "block_id": "x",
            "type": "transform",
            "params": {"template": {"v": 1}},
        },
        {
            "operation_type": "add",
            "block_id": "x",
            "type": "http",
            "params": {"url": "https://attacker"},
        },
    ]
    r = apply_operations(EMPTY, ops, catalog)
    [x] = r.workflow.blocks
    assert x.type == "transform" and x.params == {"template": {"v": 1}}
    assert [s.reason_code for s in r.skipped_items] == ["block_already_exists"]
    assert "attacker" not in r.workflow.to_json()


# ── concurrent runs sharing one connector ─────────────────────────────────


class _Empty(BaseModel):
    pass


class _Count(BaseModel):
    v: int
    run_id: str


def _incr_workflow() -> SerializedWorkflow:
    return SerializedWorkflow.model_validate(
        {
            "version": "1.0.0",
            "blocks": [
                {"id": "trg", "type": "trigger_webhook", "enabled": True, "params": {}},
                {"id": "i", "type": "incr", "enabled": True, "params": {}},
            ],
            "connections": [{"source": "trg", "target": "i"}],
        }
    )


async def _gather_runs(wf: SerializedWorkflow, cat: Catalog, n: int) -> list[InMemoryRun]:
    return list(
        await asyncio.gather(*(arun_in_memory(wf, {}, catalog=cat, env={}) for _ in range(n)))
    )


def _check_runs(runs: list[InMemoryRun], counter: int) -> None:
    assert all(r.status == "completed" for r in runs), [r.error for r in runs]
    values = sorted(r.outputs["i"]["v"] for r in runs)
    assert values == list(range(1, 21))  # 20 distinct values, none lost
    assert counter == 20
    # Each run saw its own context, not a neighbour's.
    assert all(r.outputs["i"]["run_id"] == r.run_id for r in runs)
    assert len({r.run_id for r in runs}) == 20


def test_20_concurrent_runs_do_not_lose_updates_async_connector() -> None:
    # The seed's way: the increment happens with no await in between, so on
    # one event loop it is atomic; the sleep makes the runs overlap.
    counter = 0
    in_flight = 0
    peak = 0

    async def incr(p: _Empty, ctx: StepContext) -> _Count:
        nonlocal counter, in_flight, peak
        counter += 1
        v = counter
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.005)
        in_flight -= 1
        return _Count(v=v, run_id=ctx.run_id)

    cat = Catalog(define_connector(type="incr", params=_Empty, outputs=_Count, run=incr))
    runs = asyncio.run(_gather_runs(_incr_workflow(), cat, 20))
    _check_runs(runs, counter)
    assert peak > 1  # they really overlapped


def test_20_concurrent_runs_do_not_lose_updates_sync_connector_with_lock() -> None:
    # A sync connector runs on a worker thread, so shared state needs a lock.
    counter = 0
    lock = threading.Lock()

    def incr(p: _Empty, ctx: StepContext) -> _Count:
        nonlocal counter
        with lock:
            counter += 1
            v = counter
        time.sleep(0.005)
        return _Count(v=v, run_id=ctx.run_id)

    cat = Catalog(define_connector(type="incr", params=_Empty, outputs=_Count, run=incr))
    runs = asyncio.run(_gather_runs(_incr_workflow(), cat, 20))
    _check_runs(runs, counter)


# ── resume payloads are never expanded ─────────────────────────────────────


class _SeeIn(BaseModel):
    v: Any = None
    s: str = ""


def _see_catalog() -> tuple[Catalog, list[dict[str, Any]]]:
    captured: list[dict[str, Any]] = []

    def see(p: _SeeIn) -> dict[str, Any]:
        captured.append(p.model_dump())
        return {}

    return Catalog(define_connector(type="see_b", params=_SeeIn, outputs=None, run=see)), captured


def _wait_then_see(wait_block: dict[str, Any], v: str, s: str) -> SerializedWorkflow:
    return SerializedWorkflow.model_validate(
        {
            "version": "1.0.0",
            "blocks": [
                {"id": "trg", "type": "trigger_webhook", "params": {}},
                wait_block,
                {"id": "s", "type": "see_b", "params": {"v": v, "s": s}},
            ],
            "connections": [
                {"source": "trg", "target": wait_block["id"]},
                {"source": wait_block["id"], "target": "s"},
            ],
        }
    )


ENV = {"SECRET": "leak"}
ATTACK = {"attack": "{{env.SECRET}}", "nested": {"deeper": ["{{trigger.x}}"]}}


def _assert_literal(captured: list[dict[str, Any]], run: InMemoryRun) -> None:
    assert run.status == "completed", run.error
    [got] = captured
    assert got["v"] == "{{env.SECRET}}"
    assert got["s"] == 'said {{env.SECRET}} / ["{{trigger.x}}"]'
    assert "leak" not in json.dumps(run.outputs)
    assert "leak" not in run.model_dump_json()


def test_human_approval_resume_payload_with_a_template_is_not_expanded() -> None:
    cat, captured = _see_catalog()
    # As in the seed, {{h.attack}} reads a key of the approval answer. attack
    # is not a declared output of human_approval, so strict validation would
    # refuse this workflow: validate=False runs it anyway, as the seed does.
    wf = _wait_then_see(
        {"id": "h", "type": "human_approval", "params": {"prompt": "?"}},
        v="{{h.attack}}",
        s="said {{h.attack}} / {{h.nested.deeper}}",
    )
    r1 = run_in_memory(wf, {"x": "from-trigger"}, catalog=cat, env=ENV, validate=False)
    assert r1.status == "paused" and r1.pause is not None and r1.pause.block_id == "h"
    r2 = resume_in_memory(r1, ATTACK, env=ENV)
    _assert_literal(captured, r2)
    assert r2.outputs["h"]["attack"] == "{{env.SECRET}}"


def test_wait_for_event_resume_payload_with_a_template_is_not_expanded() -> None:
    cat, captured = _see_catalog()
    wf = _wait_then_see(
        {"id": "w", "type": "wait_for_event", "params": {"eventName": "reply"}},
        v="{{w.data.attack}}",
        s="said {{w.data.attack}} / {{w.data.nested.deeper}}",
    )
    r1 = run_in_memory(wf, {"x": "from-trigger"}, catalog=cat, env=ENV)  # validated
    assert r1.status == "paused"
    r2 = resume_in_memory(r1, ATTACK, env=ENV)
    _assert_literal(captured, r2)
    assert r2.outputs["w"] == {"data": ATTACK, "timedOut": False}


def test_dev_pause_resume_payload_with_a_template_is_not_expanded() -> None:
    # A compute connector returning PauseInfo pauses in memory (dev only);
    # its resume output is the payload as is.
    def ask(p: _Empty, ctx: StepContext) -> PauseInfo:
        return PauseInfo(block_id=ctx.block_id, kind="event", resume_on_event="answer")

    cat, captured = _see_catalog()
    cat.register(define_connector(type="ask", params=_Empty, outputs=None, run=ask))
    wf = _wait_then_see(
        {"id": "p", "type": "ask", "params": {}},
        v="{{p.attack}}",
        s="said {{p.attack}} / {{p.nested.deeper}}",
    )
    r1 = run_in_memory(wf, {"x": "from-trigger"}, catalog=cat, env=ENV)
    assert r1.status == "paused"
    r2 = resume_in_memory(r1, ATTACK, env=ENV)
    _assert_literal(captured, r2)
    assert r2.outputs["p"] == ATTACK


# ── connectors that mutate their params ────────────────────────────────────


class _MutIn(BaseModel):
    x: str
    data: dict[str, Any]
    items: list[Any]
    anything: Any = None


def test_a_connector_mutating_its_params_cannot_change_the_workflow_json() -> None:
    seen: list[str] = []

    def mutate(p: _MutIn) -> dict[str, Any]:
        seen.append(p.model_dump_json())
        p.x = "MUTATED"
        p.data["inner"]["k"] = "EVIL"
        p.data["added"] = True
        p.items.append("EVIL")
        p.items[0]["k"] = "EVIL"
        p.anything["k"] = "EVIL"
        p.anything.setdefault("list", []).append("EVIL")
        del p.data["keep"]
        return {}

    cat = Catalog(define_connector(type="mut_b", params=_MutIn, outputs=None, run=mutate))
    doc: dict[str, Any] = {
        "version": "1.0.0",
        "blocks": [
            {"id": "trg", "type": "trigger_webhook", "enabled": True, "params": {}},
            {
                "id": "m",
                "type": "mut_b",
                "enabled": True,
                "params": {
                    "x": "original",
                    "data": {"inner": {"k": "v"}, "keep": 1},
                    "items": [{"k": "v"}],
                    "anything": {"k": "v"},
                },
            },
        ],
        "connections": [{"source": "trg", "target": "m"}],
    }
    doc_before = json.dumps(doc, sort_keys=True)
    wf = SerializedWorkflow.model_validate(doc)
    wf_before = wf.to_json()

    for _ in range(2):
        assert run_in_memory(wf, catalog=cat, env={}).status == "completed"
        assert run_in_memory(doc, catalog=cat, env={}).status == "completed"
        assert wf.to_json() == wf_before
        assert json.dumps(doc, sort_keys=True) == doc_before
    # Every run (including the later ones) received the original params.
    assert len(seen) == 4
    assert len(set(seen)) == 1
    assert "EVIL" not in seen[0] and "MUTATED" not in seen[0]


def test_a_connector_mutating_a_referenced_output_cannot_rewrite_the_upstream_output() -> None:
    # "{{a.result}}" as a whole param keeps the value's type: the connector gets
    # the upstream output's data. Mutating it must not change what block a
    # produced (its output, its step record) or what a sibling reading the
    # same output sees.
    class MutIn(BaseModel):
        data: Any = None

    class SeeIn(BaseModel):
        data: Any = None

    sibling_saw: list[Any] = []

    async def mutate(p: MutIn) -> dict[str, Any]:
        p.data["x"] = "EVIL"
        p.data["nested"].append("EVIL")
        return {"ok": True}

    async def see(p: SeeIn) -> dict[str, Any]:
        await asyncio.sleep(0.02)  # read after the mutator has run
        sibling_saw.append(p.data)
        return {"ok": True}

    cat = Catalog(
        define_connector(type="mut", params=MutIn, outputs=None, run=mutate),
        define_connector(type="see", params=SeeIn, outputs=None, run=see),
    )
    wf = SerializedWorkflow.model_validate(
        {
            "blocks": [
                {"id": "a", "type": "transform", "params": {"template": {"x": 1, "nested": []}}},
                {"id": "m", "type": "mut", "params": {"data": "{{a.result}}"}},
                {"id": "s", "type": "see", "params": {"data": "{{a.result}}"}},
            ],
            "connections": [{"source": "a", "target": "m"}, {"source": "a", "target": "s"}],
        }
    )
    run = run_in_memory(wf, catalog=cat, env={})
    assert run.status == "completed", run.error
    original = {"result": {"x": 1, "nested": []}}
    assert run.outputs["a"] == original
    record = next(s for s in run.steps if s.block_id == "a")
    assert record.output == original
    assert sibling_saw == [{"x": 1, "nested": []}]
