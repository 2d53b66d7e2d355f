"""Seed proof 16: graph-shape red-team.

Graph building, topological order and connection rules look simple; these
cases probe where a graph-validity mistake would turn into runtime weirdness:

- a duplicate block id in a batch is skipped; the first block is kept;
- edges to or from a block that does not exist are skipped with a typed reason;
- fork-and-join: the join runs once, after both arms, and sees both outputs;
- a graph with no trigger and no edges runs every block as a root;
- with no run input, the trigger payload is ``{}`` (never None);
- disconnecting an edge that does not exist is skipped, the graph untouched;
- deleting a block removes its edges and nothing else;
- a workflow document with duplicate ids or ghost edges is refused by
  ``run_in_memory`` with :class:`WorkflowInvalid` listing each problem, and
  nothing runs (even with ``validate=False``: these are structural).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from ops_helpers import EMPTY, add, connect
from pydantic import BaseModel

from thodare_jupyter import (
    Catalog,
    SerializedWorkflow,
    WorkflowInvalid,
    apply_operations,
    define_connector,
    run_in_memory,
)


def test_duplicate_block_id_in_a_batch_is_skipped_and_the_first_kept(catalog: Catalog) -> None:
    ops = [
        add("x", "transform", template={"v": 1}),
        add("x", "http", url="https://attacker.example"),
    ]
    r = apply_operations(EMPTY, ops, catalog)
    [skip] = r.skipped_items
    assert skip.reason_code == "block_already_exists"
    assert skip.block_id == "x"
    assert "Use 'edit' instead" in skip.reason
    [x] = r.workflow.blocks
    assert x.type == "transform"
    assert x.params == {"template": {"v": 1}}
    assert "attacker" not in r.workflow.to_json()


def test_duplicate_of_an_existing_block_is_skipped_too(catalog: Catalog) -> None:
    base = apply_operations(EMPTY, [add("x", "transform", template={"v": 1})], catalog).workflow
    r = apply_operations(base, [add("x", "http", url="https://attacker.example")], catalog)
    assert [s.reason_code for s in r.skipped_items] == ["block_already_exists"]
    assert r.workflow == base


def test_edges_to_or_from_a_ghost_block_are_skipped(catalog: Catalog) -> None:
    ops = [
        add("real", "transform", template={}),
        connect("real", "ghost"),
        connect("ghost", "real"),
    ]
    r = apply_operations(EMPTY, ops, catalog)
    assert [s.reason_code for s in r.skipped_items] == [
        "invalid_edge_target",
        "invalid_edge_source",
    ]
    target_skip, source_skip = r.skipped_items
    assert "Target block ghost does not exist" in target_skip.reason
    assert "Source block ghost does not exist" in source_skip.reason
    assert "Blocks: real" in source_skip.reason
    assert r.workflow.connections == []


class _Empty(BaseModel):
    pass


class _V(BaseModel):
    v: int


class _JoinIn(BaseModel):
    aOut: dict[str, Any]
    bOut: dict[str, Any]


class _Ok(BaseModel):
    ok: bool


def test_fork_and_join_runs_both_arms_before_the_join(catalog: Catalog) -> None:
    #  trg → A ─┐
    #   └──→ B ─┴→ J
    events: list[str] = []
    seen: list[tuple[Any, Any]] = []

    async def stamp_a(p: _Empty) -> _V:
        events.append("A:start")
        await asyncio.sleep(0.05)  # the slow arm: J must still wait for it
        events.append("A:end")
        return _V(v=1)

    async def stamp_b(p: _Empty) -> _V:
        events.append("B:start")
        await asyncio.sleep(0.005)
        events.append("B:end")
        return _V(v=2)

    async def join(p: _JoinIn) -> _Ok:
        events.append("J:start")
        seen.append((p.aOut, p.bOut))
        return _Ok(ok=True)

    catalog.register(
        define_connector(type="stamp_a", params=_Empty, outputs=_V, run=stamp_a),
        define_connector(type="stamp_b", params=_Empty, outputs=_V, run=stamp_b),
        define_connector(type="join_block", params=_JoinIn, outputs=_Ok, run=join),
    )
    wf = SerializedWorkflow.model_validate(
        {
            "version": "1.0.0",
            "blocks": [
                {"id": "trg", "type": "trigger_webhook", "enabled": True, "params": {}},
                {"id": "A", "type": "stamp_a", "enabled": True, "params": {}},
                {"id": "B", "type": "stamp_b", "enabled": True, "params": {}},
                {
                    "id": "J",
                    "type": "join_block",
                    "enabled": True,
                    "params": {"aOut": "{{A}}", "bOut": "{{B}}"},
                },
            ],
            "connections": [
                {"source": "trg", "target": "A"},
                {"source": "trg", "target": "B"},
                {"source": "A", "target": "J"},
                {"source": "B", "target": "J"},
            ],
        }
    )
    run = run_in_memory(wf, {}, catalog=catalog, env={})
    assert run.status == "completed", run.error
    assert seen == [({"v": 1}, {"v": 2})]
    assert events.count("A:start") == events.count("B:start") == events.count("J:start") == 1
    assert events.index("J:start") > events.index("A:end")
    assert events.index("J:start") > events.index("B:end")
    # The arms ran side by side (B finished while A was still sleeping).
    assert events.index("B:end") < events.index("A:end")
    assert run.outputs["J"] == {"ok": True}
    assert run.completed_block_ids[-1] == "J"


def test_a_graph_with_no_trigger_and_no_edges_runs_every_block_as_a_root(
    catalog: Catalog,
) -> None:
    wf = SerializedWorkflow.model_validate(
        {
            "version": "1.0.0",
            "blocks": [
                {"id": b, "type": "transform", "enabled": True, "params": {"template": {"x": b}}}
                for b in ("a", "b", "c")
            ],
            "connections": [],
        }
    )
    run = run_in_memory(wf, catalog=catalog, env={})
    assert run.status == "completed", run.error
    assert run.outputs == {
        "a": {"result": {"x": "a"}},
        "b": {"result": {"x": "b"}},
        "c": {"result": {"x": "c"}},
    }


class _SeeIn(BaseModel):
    got: Any = None
    text: str = ""


class _SeeOut(BaseModel):
    isObj: bool
    got: Any = None
    text: str


def test_trigger_payload_defaults_to_an_empty_object(catalog: Catalog) -> None:
    def see(p: _SeeIn) -> _SeeOut:
        return _SeeOut(isObj=isinstance(p.got, dict), got=p.got, text=p.text)

    catalog.register(define_connector(type="see_trg", params=_SeeIn, outputs=_SeeOut, run=see))
    wf = SerializedWorkflow.model_validate(
        {
            "version": "1.0.0",
            "blocks": [
                {"id": "trg", "type": "trigger_webhook", "enabled": True, "params": {}},
                {
                    "id": "s",
                    "type": "see_trg",
                    "enabled": True,
                    "params": {"got": "{{trigger}}", "text": "input={{trigger}}"},
                },
            ],
            "connections": [{"source": "trg", "target": "s"}],
        }
    )
    for run in (
        run_in_memory(wf, catalog=catalog, env={}),  # input not given
        run_in_memory(wf, None, catalog=catalog, env={}),  # input explicitly None
    ):
        assert run.status == "completed", run.error
        assert run.outputs["s"] == {"isObj": True, "got": {}, "text": "input={}"}
        assert run.outputs["trg"] == {}


def test_disconnecting_an_edge_that_does_not_exist_changes_nothing(catalog: Catalog) -> None:
    ops = [
        add("a", "transform", template={}),
        add("b", "transform", template={}),
        connect("a", "b"),
        {"operation_type": "disconnect", "block_id": "b", "target_block_id": "a"},
    ]
    r = apply_operations(EMPTY, ops, catalog)
    [skip] = r.skipped_items
    assert skip.reason_code == "edge_not_found"
    assert skip.details == {"target_block_id": "a"}
    assert [(c.source, c.target) for c in r.workflow.connections] == [("a", "b")]
    assert [b.id for b in r.workflow.blocks] == ["a", "b"]


def test_delete_removes_the_block_and_its_edges_and_nothing_else(catalog: Catalog) -> None:
    ops = [
        add("a", "transform", template={}),
        add("b", "transform", template={}),
        add("c", "transform", template={}),
        connect("a", "b"),
        connect("b", "c"),
        connect("a", "c"),
    ]
    before = apply_operations(EMPTY, ops, catalog).workflow
    snapshot = before.to_json()
    r = apply_operations(before, [{"operation_type": "delete", "block_id": "b"}], catalog)
    assert r.ok, r.summary
    assert sorted(b.id for b in r.workflow.blocks) == ["a", "c"]
    assert [(c.source, c.target) for c in r.workflow.connections] == [("a", "c")]
    # The input workflow was not mutated.
    assert before.to_json() == snapshot
    # Deleting in the same batch as the adds behaves the same.
    r2 = apply_operations(EMPTY, [*ops, {"operation_type": "delete", "block_id": "b"}], catalog)
    assert r2.workflow == r.workflow


def test_delete_frees_the_id_for_reuse_without_resurrecting_old_edges(
    catalog: Catalog,
) -> None:
    ops = [
        add("a", "transform", template={}),
        add("b", "transform", template={}),
        connect("a", "b"),
        {"operation_type": "delete", "block_id": "b"},
        add("b", "transform", template={"new": True}),
    ]
    r = apply_operations(EMPTY, ops, catalog)
    assert r.ok, r.summary
    assert r.workflow.connections == []
    assert r.workflow.blocks[1].params == {"template": {"new": True}}
    # The a→b edge is gone, so connecting again is allowed (not a duplicate).
    r2 = apply_operations(r.workflow, [connect("a", "b")], catalog)
    assert r2.ok, r2.summary


# ── structurally broken documents given to run_in_memory ──────────────────


def _counting_catalog() -> tuple[Catalog, list[str]]:
    ran: list[str] = []

    class P(BaseModel):
        tag: str = ""

    def count(p: P) -> dict[str, Any]:
        ran.append(p.tag)
        return {"tag": p.tag}

    return Catalog(define_connector(type="count", params=P, outputs=None, run=count)), ran


def _doc(blocks: list[dict[str, Any]], connections: list[dict[str, Any]]) -> dict[str, Any]:
    return {"version": "1.0.0", "blocks": blocks, "connections": connections}


@pytest.mark.parametrize("validate", [True, False])
def test_run_in_memory_refuses_duplicate_ids(validate: bool) -> None:
    cat, ran = _counting_catalog()
    doc = _doc(
        [
            {"id": "x", "type": "count", "params": {"tag": "first"}},
            {"id": "x", "type": "count", "params": {"tag": "second"}},
        ],
        [],
    )
    with pytest.raises(WorkflowInvalid) as exc:
        run_in_memory(doc, catalog=cat, env={}, validate=validate)
    assert exc.value.problems == ["Block id 'x' is used by 2 blocks; ids must be unique."]
    assert ran == []


@pytest.mark.parametrize("validate", [True, False])
def test_run_in_memory_refuses_ghost_edges(validate: bool) -> None:
    cat, ran = _counting_catalog()
    doc = _doc(
        [{"id": "real", "type": "count"}],
        [{"source": "real", "target": "ghost"}, {"source": "phantom", "target": "real"}],
    )
    with pytest.raises(WorkflowInvalid) as exc:
        run_in_memory(doc, catalog=cat, env={}, validate=validate)
    problems = exc.value.problems
    assert len(problems) == 2, problems
    assert any("real → ghost" in p and "'ghost', which does not exist" in p for p in problems)
    assert any("phantom → real" in p and "'phantom', which does not exist" in p for p in problems)
    assert ran == []


def test_run_in_memory_lists_every_structural_problem_of_a_json_document() -> None:
    cat, ran = _counting_catalog()
    text = json.dumps(
        _doc(
            [
                {"id": "x", "type": "count"},
                {"id": "x", "type": "count"},
                {"id": "y", "type": "count"},
            ],
            [{"source": "x", "target": "y"}, {"source": "y", "target": "ghost"}],
        )
    )
    with pytest.raises(WorkflowInvalid) as exc:
        run_in_memory(text, catalog=cat, env={})
    msg = str(exc.value)
    assert "Block id 'x' is used by 2 blocks" in msg
    assert "'ghost', which does not exist" in msg
    assert "2 problem(s)" in msg
    assert ran == []


def test_fork_and_join_with_sync_connectors_does_not_serialize_the_arms(
    catalog: Catalog,
) -> None:
    # Sync connectors run in threads: the two arms overlap in time (no timing thresholds).
    def slow(p: _Empty) -> _V:
        time.sleep(0.2)
        return _V(v=7)

    def join(p: _JoinIn) -> _Ok:
        return _Ok(ok=p.aOut == p.bOut == {"v": 7})

    catalog.register(
        define_connector(type="slow", params=_Empty, outputs=_V, run=slow),
        define_connector(type="join_block", params=_JoinIn, outputs=_Ok, run=join),
    )
    wf = SerializedWorkflow.model_validate(
        {
            "blocks": [
                {"id": "A", "type": "slow"},
                {"id": "B", "type": "slow"},
                {"id": "J", "type": "join_block", "params": {"aOut": "{{A}}", "bOut": "{{B}}"}},
            ],
            "connections": [{"source": "A", "target": "J"}, {"source": "B", "target": "J"}],
        }
    )
    run = run_in_memory(wf, catalog=catalog, env={})
    assert run.status == "completed", run.error
    assert run.outputs["J"] == {"ok": True}
    arms = {s.block_id: s for s in run.steps if s.block_id in ("A", "B")}
    assert arms["B"].started_at is not None and arms["A"].ended_at is not None
    assert arms["A"].started_at is not None and arms["B"].ended_at is not None
    assert arms["B"].started_at < arms["A"].ended_at
    assert arms["A"].started_at < arms["B"].ended_at
