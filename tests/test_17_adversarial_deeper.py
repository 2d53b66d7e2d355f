"""Seed proof 17 (adversarial, deeper), in-memory part: questions whose answer was not obvious.

A reference whose head is both a block id and another block's name goes to
the id; an env value that looks like a template is not expanded again; a
10 KB block id survives ``apply_operations`` and a run; a wait block with no
outgoing edges pauses and completes after resume; deeply nested outputs
survive resolution (whole and embedded in a string); a 100-leaf fan-out
completes with no cross-talk.

Durable-only cases of the seed file (memoized non-determinism across replay,
the 100-leaf fan-out timed on the durable runtime) are not ported here.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel

from thodare_jupyter import (
    Catalog,
    apply_operations,
    define_connector,
    resume_in_memory,
    run_in_memory,
)


class NoParams(BaseModel):
    pass


class VOut(BaseModel):
    v: str


class XParam(BaseModel):
    x: Any = None


def test_name_vs_id_collision_id_wins() -> None:
    def from_id(p: NoParams) -> VOut:
        return VOut(v="from-id")

    def from_name(p: NoParams) -> VOut:
        return VOut(v="from-name")

    def echo(p: XParam) -> dict[str, Any]:
        return {"result": p.x}

    cat = Catalog(
        define_connector(type="stamp", params=NoParams, outputs=VOut, run=from_id),
        define_connector(type="stamp2", params=NoParams, outputs=VOut, run=from_name),
        define_connector(type="echo", params=XParam, run=echo),
    )
    wf = {
        "version": "1.0.0",
        "blocks": [
            {"id": "trg", "type": "trigger_webhook", "enabled": True, "params": {}},
            {"id": "enrich", "type": "stamp", "enabled": True, "params": {}},
            {"id": "shadow", "name": "enrich", "type": "stamp2", "enabled": True, "params": {}},
            {
                "id": "e",
                "type": "echo",
                "enabled": True,
                "params": {"x": "{{enrich.v}} / {{shadow.v}}"},
            },
            {"id": "single", "type": "echo", "enabled": True, "params": {"x": "{{enrich.v}}"}},
        ],
        "connections": [
            {"source": "trg", "target": "enrich"},
            {"source": "trg", "target": "shadow"},
            {"source": "enrich", "target": "e"},
            {"source": "shadow", "target": "e"},
            {"source": "enrich", "target": "single"},
            {"source": "shadow", "target": "single"},
        ],
    }
    run = run_in_memory(wf, catalog=cat, env={})  # validate=True: the ref is accepted
    assert run.status == "completed", run.error
    assert run.outputs["e"] == {"result": "from-id / from-name"}
    assert run.outputs["single"] == {"result": "from-id"}


def test_name_reference_resolves_when_no_id_matches() -> None:
    # Control for the collision test: the name path works on its own.
    def echo(p: XParam) -> dict[str, Any]:
        return {"result": p.x}

    cat = Catalog(define_connector(type="echo", params=XParam, run=echo))
    wf = {
        "blocks": [
            {"id": "trg", "type": "trigger_webhook"},
            {"id": "b1", "name": "Builder", "type": "transform", "params": {"template": "named"}},
            {"id": "e", "type": "echo", "params": {"x": "{{Builder.result}}"}},
        ],
        "connections": [{"source": "trg", "target": "b1"}, {"source": "b1", "target": "e"}],
    }
    run = run_in_memory(wf, catalog=cat, env={})
    assert run.status == "completed", run.error
    assert run.outputs["e"] == {"result": "named"}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("[{{env.MAYBE_TEMPLATE}}]", "[{{env.SECRET}}]"),
        ("{{env.MAYBE_TEMPLATE}}", "{{env.SECRET}}"),
        ("{{env.NESTED}}", "{{ env.SECRET }} and {{trigger.k}}"),
    ],
    ids=["embedded", "single", "spaced-and-mixed"],
)
def test_env_value_containing_template_is_not_re_expanded(template: str, expected: str) -> None:
    seen: list[Any] = []

    def echo(p: XParam) -> dict[str, Any]:
        seen.append(p.x)
        return {"result": p.x}

    cat = Catalog(define_connector(type="echo", params=XParam, run=echo))
    wf = {
        "version": "1.0.0",
        "blocks": [
            {"id": "trg", "type": "trigger_webhook", "enabled": True, "params": {}},
            {"id": "e", "type": "echo", "enabled": True, "params": {"x": template}},
        ],
        "connections": [{"source": "trg", "target": "e"}],
    }
    env = {
        "MAYBE_TEMPLATE": "{{env.SECRET}}",
        "NESTED": "{{ env.SECRET }} and {{trigger.k}}",
        "SECRET": "hunter2",
    }
    run = run_in_memory(wf, {"k": "kv"}, catalog=cat, env=env)
    assert run.status == "completed", run.error
    assert seen == [expected]
    assert run.outputs["e"] == {"result": expected}
    assert "hunter2" not in run.model_dump_json()


def test_10kb_block_id_preserved_through_apply_and_execute() -> None:
    long_id = "x" * 10_240
    empty = {"version": "1.0.0", "blocks": [], "connections": []}
    res = apply_operations(
        empty,
        [
            {
                "operation_type": "add",
                "block_id": long_id,
                "type": "transform",
                "params": {"template": {}},
            },
        ],
    )
    assert res.ok, res.summary
    assert len(res.workflow.blocks) == 1
    assert len(res.workflow.blocks[0].id) == 10_240
    assert res.workflow.blocks[0].id == long_id

    # Wire it up, with a downstream block that references the long id.
    res2 = apply_operations(
        res.workflow,
        [
            {"operation_type": "add", "block_id": "trg", "type": "trigger_webhook"},
            {
                "operation_type": "edit",
                "block_id": long_id,
                "params": {"template": {"k": "{{trigger.k}}"}},
            },
            {
                "operation_type": "add",
                "block_id": "after",
                "type": "transform",
                "params": {"template": {"got": f"{{{{{long_id}.result.k}}}}"}},
            },
            {"operation_type": "connect", "block_id": "trg", "target_block_id": long_id},
            {"operation_type": "connect", "block_id": long_id, "target_block_id": "after"},
        ],
    )
    assert res2.ok, res2.summary
    ids = [b.id for b in res2.workflow.blocks]
    assert long_id in ids
    # The JSON form round-trips the id untouched too.
    assert json.loads(res2.workflow.to_json())["blocks"][0]["id"] == long_id

    run = run_in_memory(res2.workflow, {"k": 7}, env={})
    assert run.status == "completed", run.error
    assert run.outputs[long_id] == {"result": {"k": 7}}
    assert run.outputs["after"] == {"result": {"got": 7}}
    assert long_id in run.completed_block_ids
    assert any(s.block_id == long_id and len(s.block_id) == 10_240 for s in run.steps)


def test_wait_block_with_no_outgoing_edges_pauses_then_completes_after_resume() -> None:
    wf = {
        "version": "1.0.0",
        "blocks": [
            {"id": "trg", "type": "trigger_webhook", "enabled": True, "params": {}},
            {"id": "w", "type": "wait_for_event", "enabled": True, "params": {"eventName": "x"}},
        ],
        "connections": [{"source": "trg", "target": "w"}],
    }
    run = run_in_memory(wf, env={})
    assert run.status == "paused"
    assert run.pause is not None and run.pause.block_id == "w"

    done = resume_in_memory(run, {"hello": "world"})
    assert done.status == "completed", done.error
    assert done.pause is None
    assert done.outputs["w"] == {"data": {"hello": "world"}, "timedOut": False}
    assert done.completed_block_ids == ["trg", "w"]


@pytest.mark.parametrize("depth", [50, 200])
def test_deeply_nested_return_value_is_preserved(depth: int) -> None:
    class TreeOut(BaseModel):
        tree: dict[str, Any]

    def deep(p: NoParams) -> TreeOut:
        cur: dict[str, Any] = {"leaf": 42}
        for _ in range(depth):
            cur = {"down": cur}
        return TreeOut(tree=cur)

    captured: dict[str, Any] = {}

    class VParam(BaseModel):
        v: Any = None

    def see(p: VParam, ctx: Any) -> dict[str, Any]:
        captured[ctx.block_id] = p.v
        return {"ok": True}

    cat = Catalog(
        define_connector(type="deep", params=NoParams, outputs=TreeOut, run=deep),
        define_connector(type="see", params=VParam, run=see),
    )
    wf = {
        "version": "1.0.0",
        "blocks": [
            {"id": "trg", "type": "trigger_webhook", "enabled": True, "params": {}},
            {"id": "d", "type": "deep", "enabled": True, "params": {}},
            {"id": "s", "type": "see", "enabled": True, "params": {"v": "{{d.tree}}"}},
            {"id": "s2", "type": "see", "enabled": True, "params": {"v": "<{{d.tree}}>"}},
        ],
        "connections": [
            {"source": "trg", "target": "d"},
            {"source": "d", "target": "s"},
            {"source": "d", "target": "s2"},
        ],
    }
    run = run_in_memory(wf, catalog=cat, env={})
    assert run.status == "completed", run.error

    cur = captured["s"]
    for _ in range(depth):
        cur = cur["down"]
    assert cur == {"leaf": 42}

    embedded = captured["s2"]
    assert isinstance(embedded, str) and embedded.startswith("<") and embedded.endswith(">")
    assert json.loads(embedded[1:-1]) == captured["s"]


def test_100_block_fan_out_completes() -> None:
    blocks: list[dict[str, Any]] = [
        {"id": "trg", "type": "trigger_webhook", "enabled": True, "params": {}},
    ]
    connections: list[dict[str, Any]] = []
    for i in range(100):
        blocks.append(
            {
                "id": f"leaf{i}",
                "type": "transform",
                "enabled": True,
                "params": {"template": {"i": i, "dept": "{{trigger.dept}}"}},
            }
        )
        connections.append({"source": "trg", "target": f"leaf{i}"})
    run = run_in_memory(
        {
            "version": "1.0.0",
            "metadata": {"name": "wf-fanout-100"},
            "blocks": blocks,
            "connections": connections,
        },
        {"dept": "ops"},
        env={},
    )
    assert run.status == "completed", run.error
    assert run.outputs["leaf99"] == {"result": {"i": 99, "dept": "ops"}}
    assert run.outputs["leaf0"]["result"]["i"] == 0
    assert run.outputs["leaf42"]["result"]["i"] == 42
    for i in range(100):
        assert run.outputs[f"leaf{i}"] == {"result": {"i": i, "dept": "ops"}}
    assert sorted(run.completed_block_ids) == sorted(["trg", *(f"leaf{i}" for i in range(100))])
