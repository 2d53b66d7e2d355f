"""Dynamic steps: ``for_each`` runs a connector once per item.

* The wire: block fields ``forEach`` (a ``{{ref}}`` to a list or a table) and
  ``concurrency``, absent when unset; ``{{item}}``, ``{{item.x}}`` and
  ``{{item_index}}`` in that block's params only (elsewhere: a located error).
* A step downstream refers to its ``items`` and ``failed`` (the connector's own
  outputs are each item's): YAML, the builder and the wire check that.
* Both executors: one call per item, at most ``concurrency`` in flight; a failing
  item is recorded in ``failed`` and the others go on; the output is
  ``{"items": [...], "failed": [{"index", "error"}]}``; ``when`` governs the
  whole step; ``timeout`` each item's call.
* Durable: each item is memoised as its own step row ``block[i]``; a run handed
  back in the middle runs only the unfinished items again (SQLite, PostgreSQL).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from typing import Any

import pytest
from durable_helpers import KitFactory, step_rows, wait_until
from pydantic import BaseModel

from thodare_jupyter import (
    Catalog,
    SerializedBlock,
    SerializedConnection,
    SerializedWorkflow,
    WorkflowInvalid,
    apply_operations,
    define_connector,
    define_workflow,
    run_in_memory,
)
from thodare_jupyter.authoring.workflow_yaml import workflow_from_yaml
from thodare_jupyter.data import Table
from thodare_jupyter.errors import BuildError, WorkflowYamlError


class Rows(BaseModel):
    n: int = 3


class RowsOut(BaseModel):
    rows: list[dict[str, Any]]


class Greet(BaseModel):
    name: str = ""
    index: int = 0
    fail: bool = False


class Greeting(BaseModel):
    text: str


class Calls:
    """Calls per key, and the most in flight at once (steps may run in threads)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count: Counter[str] = Counter()
        self.now = 0
        self.peak = 0

    def enter(self, key: str) -> None:
        with self.lock:
            self.count[key] += 1
            self.now += 1
            self.peak = max(self.peak, self.now)

    def leave(self) -> None:
        with self.lock:
            self.now -= 1


CALLS = Calls()
RELEASE = threading.Event()


def _rows(p: Rows) -> RowsOut:
    return RowsOut(rows=[{"name": f"n{i}", "fail": i % 4 == 3} for i in range(p.n)])


async def _greet(p: Greet) -> Greeting:
    CALLS.enter(p.name)
    try:
        await asyncio.sleep(0.02)
        if p.fail:
            raise ValueError(f"no greeting for {p.name}")
        return Greeting(text=f"Hi {p.name} #{p.index}")
    finally:
        CALLS.leave()


class Gated(BaseModel):
    run: str
    index: int


async def _gated(p: Gated) -> Greeting:
    CALLS.enter(f"{p.run}:{p.index}")
    if p.index % 10 == 5 and p.run.startswith("t"):
        raise ValueError(f"item {p.index} refused")
    if p.index >= 20:
        deadline = time.monotonic() + 20
        while not RELEASE.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
    return Greeting(text=f"item {p.index}")


async def _slow(p: Greet) -> Greeting:
    await asyncio.sleep(2 if p.index == 1 else 0)
    return Greeting(text=f"done {p.index}")


class TableOut(BaseModel):
    rows: Table


def _table(p: Rows) -> TableOut:
    import pandas as pd

    return TableOut(rows=pd.DataFrame({"name": [f"t{i}" for i in range(p.n)], "fail": False}))


TABLE = define_connector(type="fe_table", params=Rows, outputs=TableOut, run=_table)
ROWS = define_connector(type="fe_rows", params=Rows, outputs=RowsOut, run=_rows)
GREET = define_connector(type="fe_greet", params=Greet, outputs=Greeting, run=_greet)
GATED = define_connector(type="fe_gated", params=Gated, outputs=Greeting, run=_gated)
SLOW = define_connector(type="fe_slow", params=Greet, outputs=Greeting, run=_slow)


def _catalog() -> Catalog:
    return Catalog(ROWS, GREET, GATED, SLOW, TABLE)


def _wf(n: int = 6, **each: Any) -> SerializedWorkflow:
    greet: dict[str, Any] = {
        "id": "greet",
        "type": "fe_greet",
        "forEach": "{{query.rows}}",
        "params": {"name": "{{item.name}}", "index": "{{item_index}}", "fail": "{{item.fail}}"},
        **each,
    }
    return SerializedWorkflow.model_validate(
        {
            "blocks": [
                {"id": "start", "type": "trigger_webhook"},
                {"id": "query", "type": "fe_rows", "params": {"n": n}},
                greet,
            ],
            "connections": [
                {"source": "start", "target": "query"},
                {"source": "query", "target": "greet"},
            ],
        }
    )


# ── the wire ────────────────────────────────────────────────────────────────


def test_wire_fields_are_absent_when_unset_and_round_trip() -> None:
    plain = _wf()
    plain.blocks[2].for_each = None
    assert "forEach" not in plain.to_json() and "concurrency" not in plain.to_json()
    wf = _wf(concurrency=2)
    data = wf.to_dict()["blocks"][2]
    assert data["forEach"] == "{{query.rows}}" and data["concurrency"] == 2
    assert SerializedWorkflow.from_json(wf.to_json()).to_json() == wf.to_json()


def test_item_refs_outside_a_for_each_block_are_located_errors() -> None:
    wf = _wf()
    wf.blocks[1].params["n"] = "{{item_index}}"
    wf.blocks[2].when = "{{item.fail}}"
    with pytest.raises(WorkflowInvalid) as ei:
        run_in_memory(wf, catalog=_catalog())
    text = str(ei.value)
    assert "query" in text and "{{item_index}} is only known in the params of a for_each" in text
    assert "when" in text and "{{item}} is only known" in text


def test_bad_for_each_concurrency_and_bracket_ids_are_rejected() -> None:
    for extra, why in [
        ({"forEach": "query.rows"}, "for_each must be one {{reference}}"),
        ({"concurrency": 0}, "concurrency must be from 1 to 1000"),
        ({"id": "greet[0]"}, "cannot contain"),
    ]:
        wf = _wf(**extra)
        if "id" in extra:
            wf.connections[1].target = "greet[0]"
        with pytest.raises(WorkflowInvalid) as ei:
            run_in_memory(wf, catalog=_catalog())
        assert why in str(ei.value)


# ── authoring: YAML, builder, apply_operations ─────────────────────────────

YAML = """\
steps:
  query:
    uses: fe_rows
    with: {n: 5}
  greet:
    uses: fe_greet
    for_each: "{{query.rows}}"
    concurrency: 4
    with: {name: "{{item.name}}", index: "{{item_index}}", fail: "{{item.fail}}"}
"""


def test_yaml_and_builder_make_the_same_for_each_block() -> None:
    from_yaml = workflow_from_yaml("fe", YAML, _catalog())
    built = (
        define_workflow("fe")
        .step("query", ROWS, {"n": 5})
        .for_each(
            "greet",
            GREET,
            over=lambda r: r.query.rows,
            params=lambda item, r: {
                "name": item.name,
                "index": "{{item_index}}",
                "fail": item.fail,
            },
            concurrency=4,
        )
        .build()
    )
    assert from_yaml.to_json() == built.to_json()
    greet = next(b for b in built.blocks if b.id == "greet")
    assert (greet.for_each, greet.concurrency) == ("{{query.rows}}", 4)
    assert ("query", "greet") in {(c.source, c.target) for c in built.connections}
    out = run_in_memory(built, catalog=_catalog()).outputs["greet"]
    assert out["items"][4] == {"text": "Hi n4 #4"} and out["failed"][0]["index"] == 3


def test_yaml_item_outside_with_and_bad_concurrency_are_located() -> None:
    bad = YAML.replace("concurrency: 4", 'concurrency: 0\n    when: "{{item.fail}}"')
    with pytest.raises(WorkflowYamlError) as ei:
        workflow_from_yaml("fe", bad, _catalog())
    text = str(ei.value)
    assert "steps.greet.concurrency" in text and "from 1 to 1000" in text
    assert "steps.greet.when" in text and "{{item}} is only known" in text
    plain = YAML.replace('    for_each: "{{query.rows}}"\n', "")
    with pytest.raises(WorkflowYamlError) as ei:
        workflow_from_yaml("fe", plain, _catalog())
    assert "steps.greet.with" in str(ei.value) and "{{item}} is only known" in str(ei.value)


def test_steps_downstream_refer_to_items_and_failed_not_the_connectors_outputs() -> None:
    """A ``for_each`` step's outputs are ``items`` and ``failed`` (YAML, builder, wire)."""
    after = YAML + '  report:\n    uses: fe_greet\n    with: {name: "failed {{greet.failed}}"}\n'
    wf = workflow_from_yaml("fe", after, _catalog())
    text = run_in_memory(wf, catalog=_catalog()).outputs["report"]["text"]
    assert text.startswith("Hi failed [") and "no greeting for n3" in text, text
    with pytest.raises(WorkflowYamlError) as ei:
        workflow_from_yaml("fe", after.replace("greet.failed", "greet.text"), _catalog())
    assert "Block 'greet' (for_each of fe_greet) does not declare output 'text'" in str(ei.value)
    assert "Available: failed, items." in str(ei.value)  # listed once, no "(choices: …)"
    assert "(choices:" not in str(ei.value)
    built = (
        define_workflow("fe")
        .step("query", ROWS, params={"n": 5})
        .for_each(
            "greet",
            GREET,
            over=lambda r: r.query.rows,
            params=lambda item, r: {"name": item.name, "fail": item.fail},
        )
        .step("report", GREET, params=lambda r: {"name": f"failed {r.greet.failed}"})
        .build()
    )
    assert built.blocks[-1].params == {"name": "failed {{greet.failed}}"}
    with pytest.raises(BuildError, match=r"'greet' has no field 'text'.*Valid: failed, items"):
        define_workflow("fe").step("query", ROWS).for_each(
            "greet", GREET, over=lambda r: r.query.rows, params=lambda item, r: {"name": item.name}
        ).step("report", GREET, params=lambda r: {"name": r.greet.text}).build()
    wf.blocks[-1].params["name"] = "{{greet.text}}"
    with pytest.raises(
        WorkflowInvalid,
        match=r"\(for_each of fe_greet\) does not declare output 'text'. Available: failed, items",
    ):
        run_in_memory(wf, catalog=_catalog())


def test_builder_rejects_a_bad_over() -> None:
    with pytest.raises(BuildError) as ei:
        define_workflow("fe").step("q", ROWS).for_each("g", GREET, over="rows").build()
    assert "for_each must be one {{reference}}" in str(ei.value)


def test_apply_operations_sets_and_checks_for_each() -> None:
    base = define_workflow("p").step("query", ROWS).build()
    ops = [
        {
            "operation_type": "add",
            "block_id": "g",
            "type": "fe_greet",
            "forEach": "{{query.rows}}",
            "concurrency": 3,
            "params": {"name": "{{item.name}}"},
        },
        {"operation_type": "connect", "block_id": "query", "target_block_id": "g"},
    ]
    res = apply_operations(base, ops, _catalog())
    assert res.ok, res.summary
    g = next(b for b in res.workflow.blocks if b.id == "g")
    assert (g.for_each, g.concurrency) == ("{{query.rows}}", 3)
    assert res.workflow.to_dict()["blocks"][-1]["forEach"] == "{{query.rows}}"
    for field, value, why in [
        ("forEach", "rows", "one {{reference}}"),
        ("concurrency", 0, "from 1 to 1000"),
        ("concurrency", "many", "whole number"),
    ]:
        op = {"operation_type": "edit", "block_id": "g", field: value}
        bad = apply_operations(res.workflow, [op], _catalog())
        (skip,) = bad.skipped_items
        assert skip.reason_code == "invalid_step_control" and why in skip.reason
        assert skip.details == {"field": field}
    off = {"operation_type": "edit", "block_id": "g", "forEach": None, "concurrency": None}
    cleared = apply_operations(res.workflow, [off], _catalog()).workflow
    assert "forEach" not in cleared.to_json() and "concurrency" not in cleared.to_json()


# ── in memory ───────────────────────────────────────────────────────────────


def test_in_memory_runs_each_item_records_failures_and_keeps_order() -> None:
    run = run_in_memory(_wf(8), catalog=_catalog())
    assert run.status == "completed", run.error
    out = run.outputs["greet"]
    assert out["items"][0] == {"text": "Hi n0 #0"}
    assert out["items"][6] == {"text": "Hi n6 #6"}
    assert out["items"][3] is None and out["items"][7] is None
    assert [f["index"] for f in out["failed"]] == [3, 7]
    assert "no greeting for n3" in out["failed"][0]["error"]


def test_in_memory_concurrency_caps_items_in_flight() -> None:
    CALLS.peak = 0
    run = run_in_memory(_wf(12, concurrency=2), catalog=_catalog())
    assert run.status == "completed"
    assert CALLS.peak == 2
    CALLS.peak = 0
    run_in_memory(_wf(12), catalog=_catalog())  # default 8
    assert CALLS.peak == 8


def test_in_memory_falsy_when_skips_the_whole_step() -> None:
    run = run_in_memory(_wf(4, when="{{query.none}}"), catalog=_catalog(), validate=False)
    assert run.status == "completed" and "greet" in run.state.skipped


def test_in_memory_timeout_is_per_item_call() -> None:
    wf = _wf(3, timeout=0.5)
    wf.blocks[2].type = "fe_slow"
    wf.blocks[2].params = {"index": "{{item_index}}"}
    run = run_in_memory(wf, catalog=_catalog())
    out = run.outputs["greet"]
    assert out["items"][0] == {"text": "done 0"} and out["items"][2] == {"text": "done 2"}
    assert [f["index"] for f in out["failed"]] == [1]
    assert "timeout" in out["failed"][0]["error"]


def test_a_table_gives_one_item_per_row() -> None:
    wf = _wf(3)
    wf.blocks[1].type = "fe_table"
    run = run_in_memory(wf, catalog=_catalog())
    assert run.status == "completed", run.error
    assert run.outputs["greet"]["items"] == [{"text": f"Hi t{i} #{i}"} for i in range(3)]


def test_in_memory_not_a_list_fails_the_step() -> None:
    run = run_in_memory(_wf(3, forEach="{{query.rows.0}}"), catalog=_catalog())
    assert run.status == "failed" and run.failed_block == "greet"
    assert "not a list or a table" in (run.error or "")


# ── durable, SQLite and PostgreSQL ─────────────────────────────────────────


def test_durable_items_have_their_own_rows_and_the_step_aggregates(
    any_kits: KitFactory, db_url: str
) -> None:
    kit = any_kits(catalog=_catalog()).start()
    h = kit.run(_wf(8, concurrency=3))
    out = h.result(timeout=30)["greet"]
    assert out["items"][1] == {"text": "Hi n1 #1"} and out["items"][3] is None
    assert [f["index"] for f in out["failed"]] == [3, 7]
    rows = step_rows(db_url, h.id)
    assert rows["greet"]["status"] == "completed"
    assert rows["greet[0]"]["status"] == "completed" and rows["greet[3]"]["status"] == "failed"
    assert "no greeting for n3" in rows["greet[3]"]["error"]
    assert not any(k.startswith("greet[") for k in h.result(timeout=1))


def test_durable_for_each_over_a_table(any_kits: KitFactory) -> None:
    kit = any_kits(catalog=_catalog()).start()
    wf = _wf(4)
    wf.blocks[1].type = "fe_table"
    out = kit.run(wf).result(timeout=30)["greet"]
    assert out == {"items": [{"text": f"Hi t{i} #{i}"} for i in range(4)], "failed": []}


def _gated_wf(n: int) -> SerializedWorkflow:
    return SerializedWorkflow.model_validate(
        {
            "blocks": [
                {"id": "start", "type": "trigger_webhook"},
                {"id": "query", "type": "fe_rows", "params": {"n": n}},
                {
                    "id": "each",
                    "type": "fe_gated",
                    "forEach": "{{query.rows}}",
                    "concurrency": 4,
                    "params": {"run": "{{trigger.tag}}", "index": "{{item_index}}"},
                },
            ],
            "connections": [
                {"source": "start", "target": "query"},
                {"source": "query", "target": "each"},
            ],
        }
    )


def test_durable_handed_back_mid_items_runs_only_the_unfinished_ones(
    any_kits: KitFactory, db_url: str
) -> None:
    RELEASE.clear()
    tag = f"t{time.time_ns()}"
    first = any_kits(catalog=_catalog(), lease_s=2).start()
    h = first.run(_gated_wf(50), {"tag": tag})

    def done_items() -> int:
        rows = step_rows(db_url, h.id)
        ended = ("completed", "failed")
        return sum(1 for k, r in rows.items() if k.startswith("each[") and r["status"] in ended)

    wait_until(lambda: done_items() == 20, 20, "20 items to end")
    first.stop()  # a clean hand-back in the middle of the items
    assert step_rows(db_url, h.id)["each"]["status"] == "running"
    RELEASE.set()
    second = any_kits(catalog=_catalog(), lease_s=2).start()
    out = second.get_handle(h.id).result(timeout=30)["each"]
    assert [f["index"] for f in out["failed"]] == [5, 15, 25, 35, 45]
    assert "item 15 refused" in out["failed"][1]["error"]  # from the memo: not run again
    assert out["items"] == [None if i % 10 == 5 else {"text": f"item {i}"} for i in range(50)]
    runs = {i: CALLS.count[f"{tag}:{i}"] for i in range(50)}
    assert all(runs[i] == 1 for i in range(20)), runs  # memoised: not run again
    assert all(runs[i] in (1, 2) for i in range(20, 50)), runs
    assert sum(runs[i] for i in range(20, 24)) > 4  # the ones in flight ran again


def test_durable_statements_per_item_stay_near_one(any_kits: KitFactory) -> None:
    """Each write of item starts carries the held ends before it: at most about one
    statement an item (counted on every engine the store uses), 1,000 items."""
    import sqlalchemy as sa

    kit = any_kits(catalog=_catalog(), poll_s=1.0).start()
    assert kit.run(_wf(2)).result(timeout=30)["greet"]["items"][0]  # warm: caches, pools
    kinds: Counter[str] = Counter()

    def counted(conn: Any, cur: Any, statement: str, *_: Any) -> None:
        kinds[statement.split()[0].upper()] += 1

    for engine in kit.store.engines:
        sa.event.listen(engine, "before_cursor_execute", counted)
    try:
        out = kit.run(_wf(1000, concurrency=16)).result(timeout=120)["greet"]
    finally:
        for engine in kit.store.engines:
            sa.event.remove(engine, "before_cursor_execute", counted)
    assert len(out["items"]) == 1000 and len(out["failed"]) == 250
    per_item = sum(n for kind, n in kinds.items() if kind != "BEGIN") / 1000
    print(f"statements per item: {per_item:.3f} ({dict(kinds)})")
    assert per_item <= 1.2, kinds


def test_durable_item_starts_in_flight_share_a_commit(any_kits: KitFactory) -> None:
    """The starts of items queued while the run's last write commits go in one write:
    far fewer commits than items (one each before), the same items and rows."""
    import sqlalchemy as sa

    kit = any_kits(catalog=_catalog(), poll_s=1.0).start()
    assert kit.run(_wf(2)).result(timeout=30)["greet"]["items"][0]  # warm: caches, pools
    commits = Counter[str]()

    def counted(conn: Any) -> None:
        commits["commit"] += 1

    for engine in kit.store.engines:
        sa.event.listen(engine, "commit", counted)
    try:
        h = kit.run(_wf(400, concurrency=16))
        out = h.result(timeout=120)["greet"]
    finally:
        for engine in kit.store.engines:
            sa.event.remove(engine, "commit", counted)
    assert len(out["items"]) == 400 and len(out["failed"]) == 100
    assert out["items"][398] == {"text": "Hi n398 #398"}
    per_item = commits["commit"] / 400
    print(f"commits per item: {per_item:.3f}")
    assert per_item <= 0.5, commits
    steps = {s.block_id: s for s in h.describe().steps}
    assert steps["greet"].status == "completed"


def test_a_claim_after_the_items_brings_the_step_not_each_item(any_kits: KitFactory) -> None:
    """A run that waits after a completed for_each step is claimed (woken) with the
    step's row only, not a row per item; it then ends with the items' outputs."""
    wf = _wf(40)
    wf.blocks.append(SerializedBlock(id="done", type="wait_for_event",
                                     params={"eventName": "fe.done"}))  # fmt: skip
    wf.connections.append(SerializedConnection(source="greet", target="done"))
    first = any_kits(catalog=_catalog()).start()
    h = first.run(wf)
    wait_until(lambda: h.status == "waiting", 30, "the run to wait")
    first.stop()
    first.signal("fe.done")
    types = ["fe_rows", "fe_greet", "trigger_webhook", "wait_for_event"]
    (row,) = first.store.runs.claim("probe", 1, 0.2, types)  # its lease ends at once
    memo = {b: status for b, status, _ in row.memo or ()}
    assert memo == {"query": "completed", "greet": "completed"}
    before = sum(CALLS.count[f"n{i}"] for i in range(40))
    out = any_kits(catalog=_catalog()).start().get_handle(h.id).result(timeout=30)
    assert out["greet"]["items"][4] == {"text": "Hi n4 #4"}
    assert [f["index"] for f in out["greet"]["failed"]] == [3, 7, 11, 15, 19, 23, 27, 31, 35, 39]
    assert sum(CALLS.count[f"n{i}"] for i in range(40)) == before  # no item ran again


def test_dag_view_shows_k_of_n_for_a_for_each_step(any_kits: KitFactory, db_url: str) -> None:
    from thodare_jupyter.notebook.widgets import DagView

    RELEASE.clear()
    kit = any_kits(catalog=_catalog()).start()
    wf = _gated_wf(30)
    h = kit.run(wf, {"tag": f"v{time.time_ns()}"})

    def done_items() -> int:
        rows = step_rows(db_url, h.id)
        return sum(
            1 for k, r in rows.items() if k.startswith("each[") and r["status"] == "completed"
        )

    try:
        wait_until(lambda: done_items() == 20, 20, "20 items to complete")
        view = DagView(wf, kit, h.id)
        assert view.progress == {"each": {"ended": 20, "total": 30, "failed": 0}}
        assert not any("[" in s["block_id"] for s in view.run["steps"])  # items: k/N only
    finally:
        RELEASE.set()
    h.result(timeout=30)
    view.refresh()
    assert view.progress == {"each": {"ended": 30, "total": 30, "failed": 0}}
    assert view.statuses["each"] == "completed"


def test_progress_counts_failed_items_in_the_widget_and_its_svg(any_kits: KitFactory) -> None:
    """8 items, 2 failing: ``8/8 · 2 failed`` in the widget's progress and its static
    SVG (the type cut to leave it room); items are no steps in the widget's statuses."""
    from thodare_jupyter.drawing.progress import Progress, for_each_progress
    from thodare_jupyter.drawing.svg import render_svg
    from thodare_jupyter.notebook.widgets import DagView

    kit = any_kits(catalog=_catalog()).start()
    wf = _wf(8, concurrency=3)
    h = kit.run(wf)
    assert [f["index"] for f in h.result(timeout=30)["greet"]["failed"]] == [3, 7]
    assert for_each_progress(wf, h.describe().steps) == {"greet": Progress(8, 8, 2)}
    assert Progress(8, 8, 2).label == "8/8 · 2 failed" and Progress(3, 5, 0).label == "3/5"
    view = DagView(wf, kit, h.id)
    assert view.progress == {"greet": {"ended": 8, "total": 8, "failed": 2}}
    assert set(view.statuses) == {"start", "query", "greet"}
    svg = view._repr_mimebundle_()[0]["image/svg+xml"]
    assert '8/8<tspan fill="#b71c1c"> · 2 failed</tspan></text>' in svg
    assert ">fe_gre…</text>" in svg  # 22 characters fit the node's type line
    assert ">fe_greet</text>" in render_svg(
        wf, view.statuses, progress={"greet": Progress(3, 9, 0)}
    )
    long = render_svg(wf, view.statuses, progress={"greet": Progress(503, 1000, 12)})
    assert "503/1000<tspan" in long and "fe_" not in long.split("thodare-node-progress")[1]
    assert "thodare-node-progress" not in render_svg(wf, view.statuses)
