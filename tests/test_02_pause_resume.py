"""Seed proof 02: pause and resume in memory.

A wait block stops the run and hands back a snapshot (``status == "paused"``,
``pause`` says where and why, completed blocks are recorded). Resuming with
the wake payload continues from the wait: completed steps are not run again,
and blocks after the wait see the payload through ``{{approve.approved}}``
with its type kept. Beyond the seed: each resume returns a new run (the
snapshot is unchanged and survives a JSON hop), timeouts, the wake output of
each wait kind, one-pass resolution of the payload, and ``NotPaused``.
"""

from __future__ import annotations

import re
import threading
from typing import Any

import pytest
from pydantic import BaseModel

from thodare_jupyter import (
    Catalog,
    InMemoryRun,
    NotPaused,
    PauseInfo,
    SerializedWorkflow,
    define_connector,
    resume_in_memory,
    run_in_memory,
)

RESUME_BASE = "https://wf.example.com/api/runs/resume"


def _approval_wf(before_type: str = "transform") -> SerializedWorkflow:
    before_params: dict[str, Any] = (
        {"template": {"stamp": "before"}} if before_type == "transform" else {"tag": "before"}
    )
    return SerializedWorkflow.model_validate(
        {
            "version": "1.0.0",
            "blocks": [
                {"id": "trg", "type": "trigger_webhook", "enabled": True, "params": {"path": "/x"}},
                {"id": "before", "type": before_type, "enabled": True, "params": before_params},
                # resumeBaseUrl is user-only: a person wrote it into the JSON.
                {
                    "id": "approve",
                    "type": "human_approval",
                    "enabled": True,
                    "params": {"prompt": "OK?", "resumeBaseUrl": RESUME_BASE},
                },
                # After the wait, a transform consumes the approval via {{approve.approved}}.
                {
                    "id": "after",
                    "type": "transform",
                    "enabled": True,
                    "params": {"template": {"ok": "{{approve.approved}}", "by": "{{approve.by}}"}},
                },
            ],
            "connections": [
                {"source": "trg", "target": "before"},
                {"source": "before", "target": "approve"},
                {"source": "approve", "target": "after"},
            ],
        }
    )


class CountParams(BaseModel):
    tag: str


class CountOut(BaseModel):
    tag: str
    n: int


def _counting_catalog() -> tuple[Catalog, list[str]]:
    calls: list[str] = []
    lock = threading.Lock()

    def run(p: CountParams) -> CountOut:
        with lock:
            calls.append(p.tag)
            return CountOut(tag=p.tag, n=len(calls))

    return Catalog(
        define_connector(type="count", params=CountParams, outputs=CountOut, run=run)
    ), calls


def test_stops_on_wait_returns_snapshot_then_resumes_with_payload(catalog) -> None:
    r1 = run_in_memory(_approval_wf(), {"hi": 1}, catalog=catalog, env={})

    assert r1.status == "paused"
    assert r1.error is None
    assert isinstance(r1.pause, PauseInfo)
    assert r1.pause.block_id == "approve"
    assert r1.pause.kind == "approval"
    # The seed put resumeUrl under metadata; ours is metadata["resume_url"].
    url = r1.pause.metadata["resume_url"]
    assert re.fullmatch(r"https://wf\.example\.com/api/runs/resume/[0-9a-f-]+", url)
    assert url.endswith("/" + str(r1.pause.resume_token))
    # Already-completed blocks are recorded so resume skips them.
    assert "trg" in r1.completed_block_ids
    assert "before" in r1.completed_block_ids
    assert "approve" not in r1.completed_block_ids
    assert "after" not in r1.outputs
    assert r1.outputs["before"] == {"result": {"stamp": "before"}}
    assert [s.status for s in r1.steps if s.block_id == "approve"] == ["paused"]

    r2 = resume_in_memory(r1, {"approved": True, "by": "alice"})
    assert r2.status == "completed", r2.error
    assert r2.run_id == r1.run_id
    # A single-template param keeps the value's type: True, not "true".
    assert r2.outputs["after"]["result"] == {"ok": True, "by": "alice"}
    assert r2.outputs["approve"]["approved"] is True
    assert r2.outputs["approve"]["by"] == "alice"
    assert r2.outputs["approve"]["timedOut"] is False
    assert r2.completed_block_ids == ["trg", "before", "approve", "after"]


def test_completed_steps_are_not_run_again_on_resume() -> None:
    cat, calls = _counting_catalog()
    r1 = run_in_memory(_approval_wf("count"), {}, catalog=cat, env={})
    assert r1.status == "paused"
    assert calls == ["before"]

    r2 = resume_in_memory(r1, {"approved": False, "by": "bob"})
    assert r2.status == "completed", r2.error
    assert calls == ["before"]  # not executed a second time
    assert r2.outputs["before"] == {"tag": "before", "n": 1}
    assert r2.outputs["after"]["result"] == {"ok": False, "by": "bob"}
    # The step records carry "before" exactly once.
    assert [s.block_id for s in r2.steps].count("before") == 1


def test_resume_returns_a_new_run_and_leaves_the_snapshot_untouched(catalog) -> None:
    r1 = run_in_memory(_approval_wf(), {}, catalog=catalog, env={})
    before = r1.model_dump_json()

    yes = resume_in_memory(r1, {"approved": True, "by": "ann"})
    no = resume_in_memory(r1, {"approved": False, "by": "ben"})

    assert r1.model_dump_json() == before
    assert r1.status == "paused"
    assert "after" not in r1.outputs
    assert yes is not r1 and no is not r1
    assert yes.outputs["after"]["result"] == {"ok": True, "by": "ann"}
    assert no.outputs["after"]["result"] == {"ok": False, "by": "ben"}


def test_snapshot_survives_a_json_round_trip() -> None:
    cat, calls = _counting_catalog()
    r1 = run_in_memory(_approval_wf("count"), {"who": "x"}, catalog=cat, env={})
    loaded = InMemoryRun.model_validate_json(r1.model_dump_json())
    assert loaded.status == "paused"
    assert loaded.pause == r1.pause

    r2 = resume_in_memory(loaded, {"approved": True, "by": "carol"}, catalog=cat, env={})
    assert r2.status == "completed", r2.error
    assert calls == ["before"]
    assert r2.outputs["after"]["result"] == {"ok": True, "by": "carol"}


def test_approval_timeout_resumes_with_timed_out(catalog) -> None:
    r1 = run_in_memory(_approval_wf(), {}, catalog=catalog, env={})
    r2 = resume_in_memory(r1, {"approved": True, "by": "late"}, timed_out=True)
    assert r2.status == "completed", r2.error
    # A timed-out approval carries no answer, even if a payload was passed.
    assert r2.outputs["approve"]["timedOut"] is True
    assert r2.outputs["approve"]["approved"] is None
    assert r2.outputs["after"]["result"] == {"ok": None, "by": None}


def _single_wait_wf(wait: dict[str, Any], template: dict[str, Any]) -> SerializedWorkflow:
    return SerializedWorkflow.model_validate(
        {
            "blocks": [
                {"id": "trg", "type": "trigger_webhook", "params": {}},
                {"id": "w", **wait},
                {"id": "after", "type": "transform", "params": {"template": template}},
            ],
            "connections": [{"source": "trg", "target": "w"}, {"source": "w", "target": "after"}],
        }
    )


def test_wait_for_event_wakes_with_data_and_timed_out_flag(catalog) -> None:
    wf = _single_wait_wf(
        {"type": "wait_for_event", "params": {"eventName": "lead.replied"}},
        {"seen": "{{w}}", "text": "got {{w.data.x}}"},
    )
    r1 = run_in_memory(wf, {}, catalog=catalog, env={})
    assert r1.status == "paused" and r1.pause is not None
    assert r1.pause.kind == "event"

    r2 = resume_in_memory(r1, {"x": 7})
    assert r2.status == "completed", r2.error
    assert r2.outputs["w"] == {"data": {"x": 7}, "timedOut": False}
    assert r2.outputs["after"]["result"] == {
        "seen": {"data": {"x": 7}, "timedOut": False},
        "text": "got 7",
    }

    r3 = resume_in_memory(r1, {"x": 7}, timed_out=True)
    assert r3.outputs["w"] == {"data": None, "timedOut": True}
    assert r3.outputs["after"]["result"]["text"] == "got "


def test_wait_duration_wakes_with_resumed_at(catalog) -> None:
    wf = _single_wait_wf(
        {"type": "wait_duration", "params": {"duration": 5, "unit": "m"}},
        {"at": "{{w.resumedAt}}"},
    )
    r1 = run_in_memory(wf, {}, catalog=catalog, env={})
    assert r1.status == "paused" and r1.pause is not None
    assert r1.pause.kind == "duration"
    r2 = resume_in_memory(r1)
    assert r2.status == "completed", r2.error
    assert set(r2.outputs["w"]) == {"resumedAt"}
    at = r2.outputs["w"]["resumedAt"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", at)
    assert r2.outputs["after"]["result"] == {"at": at}


def test_resume_payload_is_never_expanded_as_a_template(catalog) -> None:
    """One-pass resolution: a payload carrying {{env.X}} stays literal text."""
    r1 = run_in_memory(_approval_wf(), {}, catalog=catalog, env={"SECRET": "s3cr3t"})
    r2 = resume_in_memory(r1, {"approved": True, "by": "{{env.SECRET}}"})
    assert r2.status == "completed", r2.error
    assert r2.outputs["after"]["result"]["by"] == "{{env.SECRET}}"
    assert "s3cr3t" not in r2.model_dump_json()


def test_resuming_a_run_that_is_not_paused_raises_not_paused(catalog) -> None:
    wf = SerializedWorkflow.model_validate(
        {
            "blocks": [
                {"id": "trg", "type": "trigger_webhook", "params": {}},
                {"id": "t", "type": "transform", "params": {"template": 1}},
            ],
            "connections": [{"source": "trg", "target": "t"}],
        }
    )
    done = run_in_memory(wf, {}, catalog=catalog, env={})
    assert done.status == "completed"
    with pytest.raises(NotPaused):
        resume_in_memory(done, {"approved": True})

    r1 = run_in_memory(_approval_wf(), {}, catalog=catalog, env={})
    r2 = resume_in_memory(r1, {"approved": True})
    with pytest.raises(NotPaused):
        resume_in_memory(r2, {"approved": True})


def test_parallel_branch_runs_exactly_once_across_pause_and_resume() -> None:
    cat, calls = _counting_catalog()
    wf = SerializedWorkflow.model_validate(
        {
            "blocks": [
                {"id": "trg", "type": "trigger_webhook", "params": {}},
                {"id": "approve", "type": "human_approval", "params": {"prompt": "go?"}},
                {"id": "side", "type": "count", "params": {"tag": "side"}},
                {"id": "tail", "type": "count", "params": {"tag": "tail-{{approve.approved}}"}},
            ],
            "connections": [
                {"source": "trg", "target": "approve"},
                {"source": "trg", "target": "side"},
                {"source": "approve", "target": "tail"},
            ],
        }
    )
    r1 = run_in_memory(wf, {}, catalog=cat, env={})
    assert r1.status == "paused"
    r2 = resume_in_memory(r1, {"approved": True})
    assert r2.status == "completed", r2.error
    assert sorted(calls) == ["side", "tail-true"]
    assert set(r2.completed_block_ids) == {"trg", "approve", "side", "tail"}


class DevParams(BaseModel):
    note: str


def test_compute_connector_returning_pause_info_pauses_and_resumes_with_raw_payload() -> None:
    """Dev-only: a compute step that returns PauseInfo pauses; its output is the payload as is."""

    def ask(p: DevParams, ctx: Any) -> PauseInfo:
        return PauseInfo(
            block_id=ctx.block_id,
            kind="event",
            resume_on_event="dev.answer",
            metadata={"note": p.note},
        )

    cat = Catalog(define_connector(type="ask", params=DevParams, outputs=None, run=ask))
    wf = SerializedWorkflow.model_validate(
        {
            "blocks": [
                {"id": "trg", "type": "trigger_webhook", "params": {}},
                {"id": "ask", "type": "ask", "params": {"note": "{{trigger.q}}"}},
                {"id": "use", "type": "transform", "params": {"template": "{{ask.answer}}"}},
            ],
            "connections": [{"source": "trg", "target": "ask"}, {"source": "ask", "target": "use"}],
        }
    )
    r1 = run_in_memory(wf, {"q": "why?"}, catalog=cat, env={})
    assert r1.status == "paused" and r1.pause is not None
    assert r1.pause.block_id == "ask"
    assert r1.pause.metadata == {"note": "why?"}
    r2 = resume_in_memory(r1, {"answer": 42})
    assert r2.status == "completed", r2.error
    assert r2.outputs["ask"] == {"answer": 42}
    assert r2.outputs["use"] == {"result": 42}
