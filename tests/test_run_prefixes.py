"""Short run ids: the first characters of an id name the run when no other run starts
with them, on SQLite and PostgreSQL.

Runs are stored with chosen ids so two share a prefix. ``kit.get_handle``,
``kit.fork`` and ``kit.approve`` take the prefix; an ambiguous prefix is an error
listing the runs it starts, one under 4 characters is too short, and a prefix no run
has is :class:`RunNotFound`. The list rows are small (no input, outputs or steps) and
mark a fork (steps it copied) and filter by workflow, status and time.
"""

from __future__ import annotations

import json
import time

import pytest
from durable_helpers import KitFactory

from thodare_jupyter import (
    Catalog,
    RunIdAmbiguous,
    RunIdTooShort,
    RunNotFound,
    Wfkit,
    define_workflow,
)

TRANSFORM = Catalog().get("transform")
FLOW = (
    define_workflow("prefix-flow")
    .step("a", TRANSFORM, lambda r: {"template": {"n": 1}})
    .step("b", TRANSFORM, lambda r: {"template": {"after": r.a.result}})
    .build()
)  # fmt: skip
TWINS = ("abcd1111" + "0" * 24, "abcd2222" + "0" * 24)
ALONE = "99887766" + "f" * 24


def _stored(kit: Wfkit, run_id: str, name: str = "prefix-flow") -> str:
    wf = kit.compile(FLOW)
    kit.store.runs.create_run(name, wf.to_json(), {}, run_id=run_id)
    return run_id


def test_a_unique_prefix_names_its_run(any_kits: KitFactory) -> None:
    kit = any_kits()
    for rid in (*TWINS, ALONE):
        _stored(kit, rid)
    assert kit.get_handle("9988").id == ALONE
    assert kit.get_handle(ALONE[:8]).describe().id == ALONE
    assert kit.get_handle("abcd1").id == TWINS[0]
    assert kit.get_handle(ALONE).id == ALONE  # the full id as before
    assert kit.resolve_run_id("ABCD2222".lower()) == TWINS[1]


def test_an_ambiguous_prefix_lists_the_candidates(any_kits: KitFactory) -> None:
    kit = any_kits()
    for rid in TWINS:
        _stored(kit, rid)
    with pytest.raises(RunIdAmbiguous) as ei:
        kit.get_handle("abcd")
    assert sorted(ei.value.candidates) == sorted(TWINS)
    message = str(ei.value)
    assert TWINS[0] in message and TWINS[1] in message and "more characters" in message
    with pytest.raises(RunIdAmbiguous):
        kit.approve("abcd", "wait")


def test_too_short_and_unknown_prefixes(any_kits: KitFactory) -> None:
    kit = any_kits()
    _stored(kit, ALONE)
    with pytest.raises(RunIdTooShort, match="at least 4"):
        kit.get_handle("998")
    with pytest.raises(RunNotFound):
        kit.get_handle("1234")
    with pytest.raises(RunNotFound):
        kit.get_handle("99_%")  # LIKE wildcards are taken literally
    with pytest.raises(RunNotFound):
        kit.fork("0000", "b")


def test_fork_by_prefix_is_marked_in_the_small_list(any_kits: KitFactory) -> None:
    kit = any_kits().start()
    first = kit.run(FLOW, {})
    first.result(timeout=30)
    time.sleep(0.01)  # the fork is created after the steps it copies ended
    fork = kit.fork(first.id[:8], "b")
    fork.result(timeout=30)
    rows = {r["id"]: r for r in kit.store.runs.list_light(10)}
    assert rows[fork.id]["reused"] == 1 and rows[first.id]["reused"] == 0
    assert (rows[fork.id]["forked_from"], rows[first.id]["forked_from"]) == (first.id, None)
    assert set(rows[fork.id]) == {
        "id", "workflow_name", "status", "created_at", "started_at", "ended_at", "error",
        "failed_block", "parent_run_id", "parent_block_id", "forked_from", "reused",
    }  # fmt: skip
    assert len(json.dumps(list(rows.values()))) < 1000  # two rows: no inputs, no steps


def test_the_list_filters_by_workflow_status_and_time(any_kits: KitFactory) -> None:
    kit = any_kits()
    _stored(kit, TWINS[0], "one")
    cut = time.time()
    time.sleep(0.02)
    _stored(kit, TWINS[1], "two")
    runs = kit.store.runs
    assert [r["id"] for r in runs.list_light(10, workflow="two")] == [TWINS[1]]
    assert [r["id"] for r in runs.list_light(10, after=cut)] == [TWINS[1]]
    assert [r["id"] for r in runs.list_light(10, before=cut)] == [TWINS[0]]
    assert runs.list_light(10, status="completed") == []
    assert len(runs.list_light(10, status="pending")) == 2
