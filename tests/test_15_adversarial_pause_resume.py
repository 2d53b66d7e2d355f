"""Seed proof 15 (adversarial pause/resume), in-memory part: the edges of the pause primitive.

Resuming one snapshot twice runs the rest twice (no idempotency in memory, by
design); a wait right after the trigger pauses with only the trigger done; a
resume payload of an unexpected shape is handled without crashing; only a
paused run can be resumed (``NotPaused``); a paused run survives a JSON round
trip and resumes with its catalog; a timed-out event wait reads
``{"data": None, "timedOut": True}``.

Durable-only cases of the seed file (wait_for_event timing out on the durable
runtime, two workflows woken by one signal, a signal sent before any waiter
is parked) are not ported here.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from pydantic import BaseModel

from thodare_jupyter import (
    Catalog,
    InMemoryRun,
    NotPaused,
    WorkflowInvalid,
    define_connector,
    resume_in_memory,
    run_in_memory,
)


class NoParams(BaseModel):
    pass


class CountOut(BaseModel):
    count: int


class Incoming(BaseModel):
    incoming: Any = None


def approval_then(after_type: str, after_params: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "version": "1.0.0",
        "blocks": [
            {"id": "trg", "type": "trigger_webhook", "enabled": True, "params": {}},
            {"id": "wait", "type": "human_approval", "enabled": True, "params": {"prompt": "?"}},
            {"id": "after", "type": after_type, "enabled": True, "params": after_params or {}},
        ],
        "connections": [
            {"source": "trg", "target": "wait"},
            {"source": "wait", "target": "after"},
        ],
    }


def counting_catalog() -> tuple[Catalog, list[int]]:
    calls: list[int] = []
    counter = itertools.count(1)

    def count(p: NoParams) -> CountOut:
        n = next(counter)
        calls.append(n)
        return CountOut(count=n)

    return Catalog(
        define_connector(type="count_block", params=NoParams, outputs=CountOut, run=count)
    ), calls


def capture_catalog(seen: list[Any]) -> Catalog:
    def cap(p: Incoming) -> dict[str, Any]:
        seen.append(p.incoming)
        return {}

    return Catalog(define_connector(type="cap", params=Incoming, run=cap))


def test_resuming_the_same_snapshot_twice_runs_the_rest_twice() -> None:
    # Documented: the in-memory executor does not make a snapshot single-use;
    # idempotency is the durable runtime's job.
    cat, calls = counting_catalog()
    r1 = run_in_memory(approval_then("count_block"), catalog=cat, env={})
    assert r1.status == "paused"
    assert calls == []

    a = resume_in_memory(r1, {"approved": True})
    assert a.status == "completed", a.error
    assert calls == [1]
    b = resume_in_memory(r1, {"approved": True})
    assert b.status == "completed", b.error
    assert calls == [1, 2]

    assert a.outputs["after"] == {"count": 1}
    assert b.outputs["after"] == {"count": 2}
    # The snapshot itself is untouched by either resume.
    assert r1.status == "paused"
    assert "after" not in r1.outputs
    assert "wait" not in r1.completed_block_ids
    assert a is not r1 and b is not r1 and a is not b


def test_wait_at_first_executable_position_pauses_with_only_the_trigger_done() -> None:
    wf = {
        "version": "1.0.0",
        "blocks": [
            {"id": "trg", "type": "trigger_webhook", "enabled": True, "params": {}},
            {"id": "wait", "type": "wait_for_event", "enabled": True, "params": {"eventName": "x"}},
        ],
        "connections": [{"source": "trg", "target": "wait"}],
    }
    run = run_in_memory(wf, {}, env={})
    assert run.status == "paused"
    assert run.pause is not None
    assert run.pause.block_id == "wait"
    assert run.pause.kind == "event"
    assert run.pause.resume_on_event == "x"
    assert run.completed_block_ids == ["trg"]
    assert "wait" not in run.outputs
    assert [(s.block_id, s.status) for s in run.steps] == [("trg", "completed"), ("wait", "paused")]


@pytest.mark.parametrize(
    "payload",
    [42, "{{env.SECRET}}", ["a", 1], None, {"approved": "yes-ish", "extra": [1, {"k": None}]}],
    ids=["number", "template-string", "list", "none", "odd-dict"],
)
def test_unexpected_resume_payload_shape_for_an_approval(payload: Any) -> None:
    seen: list[Any] = []
    cat = capture_catalog(seen)
    r1 = run_in_memory(
        approval_then("cap", {"incoming": "{{wait}}"}), catalog=cat, env={"SECRET": "hunter2"}
    )
    assert r1.status == "paused"
    done = resume_in_memory(r1, payload)
    assert done.status == "completed", done.error
    # Our design differs from the seed's in-memory executor (which hands the raw
    # payload on, so {{h}} was 42): an approval's output is shaped like the
    # durable runtime's: the answer's fields plus every declared key (approved,
    # by, note, comment, timedOut); an answer that is not an object contributes
    # nothing (as spreading 42 does in the seed's durable walk).
    blank = {"approved": None, "by": None, "note": None, "comment": None}
    expected = {**blank, **(payload if isinstance(payload, dict) else {}), "timedOut": False}
    assert seen == [expected]
    assert done.outputs["wait"] == expected


@pytest.mark.parametrize("payload", [42, "{{env.SECRET}}", ["a", 1], {"x": {"y": 2}}])
def test_unexpected_resume_payload_shape_for_an_event_is_kept_raw(payload: Any) -> None:
    seen: list[Any] = []
    cat = capture_catalog(seen)
    wf = {
        "blocks": [
            {"id": "trg", "type": "trigger_webhook"},
            {"id": "w", "type": "wait_for_event", "params": {"eventName": "e"}},
            {"id": "c", "type": "cap", "params": {"incoming": "{{w.data}}"}},
        ],
        "connections": [{"source": "trg", "target": "w"}, {"source": "w", "target": "c"}],
    }
    r1 = run_in_memory(wf, catalog=cat, env={"SECRET": "hunter2"})
    done = resume_in_memory(r1, payload)
    assert done.status == "completed", done.error
    # The payload is never expanded as a template.
    assert seen == [payload]
    assert done.outputs["w"] == {"data": payload, "timedOut": False}


def test_resume_of_a_run_that_is_not_paused_raises_not_paused() -> None:
    cat, _ = counting_catalog()
    completed = run_in_memory(
        {
            "blocks": [
                {"id": "trg", "type": "trigger_webhook"},
                {"id": "c", "type": "count_block"},
            ],
            "connections": [{"source": "trg", "target": "c"}],
        },
        catalog=cat,
        env={},
    )
    assert completed.status == "completed"
    with pytest.raises(NotPaused) as info:
        resume_in_memory(completed, {"approved": True})
    assert info.value.status == "completed"
    assert "completed" in str(info.value)

    def boom(p: NoParams) -> None:
        raise RuntimeError("nope")

    failed = run_in_memory(
        {
            "blocks": [{"id": "trg", "type": "trigger_webhook"}, {"id": "b", "type": "boom"}],
            "connections": [{"source": "trg", "target": "b"}],
        },
        catalog=Catalog(define_connector(type="boom", params=NoParams, run=boom)),
        env={},
    )
    assert failed.status == "failed"
    with pytest.raises(NotPaused) as info:
        resume_in_memory(failed)
    assert info.value.status == "failed"

    # A run that was paused and has been resumed to completion cannot be resumed again.
    paused = run_in_memory(approval_then("count_block"), catalog=cat, env={})
    done = resume_in_memory(paused, {"approved": True})
    with pytest.raises(NotPaused):
        resume_in_memory(done, {"approved": True})


def test_paused_run_survives_a_json_round_trip_and_resumes_with_its_catalog() -> None:
    cat, calls = counting_catalog()
    wf = approval_then("count_block")
    wf["blocks"].append(
        {
            "id": "echo",
            "type": "transform",
            "params": {
                "template": {"who": "{{wait.by}}", "in": "{{trigger.k}}", "n": "{{after.count}}"}
            },
        }
    )
    wf["connections"].append({"source": "after", "target": "echo"})
    r1 = run_in_memory(wf, {"k": "v"}, catalog=cat, env={})
    assert r1.status == "paused"

    text = r1.model_dump_json()
    loaded = InMemoryRun.model_validate_json(text)
    assert loaded.status == "paused"
    assert loaded.pause == r1.pause
    assert loaded.completed_block_ids == ["trg"]

    # Without its catalog the loaded run cannot know the custom connector: a
    # clear WorkflowInvalid naming the type, and nothing runs.
    with pytest.raises(WorkflowInvalid) as info:
        resume_in_memory(loaded, {"approved": True}, env={})
    assert "count_block" in str(info.value)
    assert calls == []

    done = resume_in_memory(loaded, {"approved": True, "by": "ada"}, catalog=cat, env={})
    assert done.status == "completed", done.error
    assert calls == [1]
    assert done.outputs["wait"] == {
        "approved": True, "by": "ada", "note": None, "comment": None, "timedOut": False,
    }  # fmt: skip
    assert done.outputs["echo"] == {"result": {"who": "ada", "in": "v", "n": 1}}
    assert done.run_id == r1.run_id
    assert [s.block_id for s in done.steps] == ["trg", "wait", "wait", "after", "echo"]


def test_wait_for_event_resumed_with_timed_out() -> None:
    wf = {
        "blocks": [
            {"id": "trg", "type": "trigger_webhook"},
            {
                "id": "w",
                "type": "wait_for_event",
                "params": {"eventName": "never_fires", "timeoutHours": 0.0004},
            },
            {
                "id": "after",
                "type": "transform",
                "params": {
                    "template": {"reached": True, "td": "{{w.timedOut}}", "data": "{{w.data}}"}
                },
            },
        ],
        "connections": [{"source": "trg", "target": "w"}, {"source": "w", "target": "after"}],
    }
    r1 = run_in_memory(wf, env={})
    assert r1.status == "paused"
    assert r1.pause is not None and r1.pause.resume_at is not None

    for payload in (None, {"late": "signal"}):
        done = resume_in_memory(r1, payload, timed_out=True)
        assert done.status == "completed", done.error
        assert done.outputs["w"] == {"data": None, "timedOut": True}
        assert done.outputs["after"] == {"result": {"reached": True, "td": True, "data": None}}
