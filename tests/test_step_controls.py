"""Step controls: a block's own ``retries``, ``when`` and ``timeout``.

* YAML (``retries: {max: 3, backoff: 2s}``, ``when: "{{a.ok}}"``, ``timeout: 30s``),
  the builder (``.step(..., retries=, when=, timeout=)``) and the wire (block fields
  ``retries``/``when``/``timeout``, absent when unset) make the same workflow.
* ``retries`` overrides the connector's policy (``max`` counts the first attempt),
  in memory and in the durable runtime on SQLite and PostgreSQL.
* A falsy ``when`` skips its step and what needs it (recorded ``skipped``), a truthy
  one runs it; its refs are checked like param refs and add edges.
* ``timeout``: an attempt past it fails with "took longer than its timeout of N s",
  is retried if attempts remain; an async step is cancelled, a sync one abandoned
  without holding up the run, other runs, or ``run_in_memory``.
* ``apply_operations`` sets the controls and skips bad ones with a reason.
* ``retries``/``timeout`` on a block that waits (``wait_*``, ``human_approval``,
  ``run_workflow``) would be ignored, so each is a located ``control-not-applicable``
  issue naming what to use instead, in YAML, the builder, ``apply_operations`` and
  ``compile_workflow``.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest
from durable_helpers import KitFactory, steps_of
from pydantic import BaseModel

from thodare_jupyter import (
    Catalog,
    RetryPolicy,
    RunFailed,
    SerializedWorkflow,
    StepContext,
    WorkflowInvalid,
    apply_operations,
    define_connector,
    define_workflow,
    run_in_memory,
)
from thodare_jupyter.authoring.workflow_yaml import workflow_from_yaml
from thodare_jupyter.errors import BuildError, WorkflowYamlError


class Empty(BaseModel):
    pass


class Flag(BaseModel):
    ok: bool = True


class Count(BaseModel):
    attempt: int


class Tries:
    """Attempts seen per key (steps run in threads)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seen: dict[str, list[int]] = {}

    def add(self, key: str, attempt: int) -> None:
        with self.lock:
            self.seen.setdefault(key, []).append(attempt)


TRIES = Tries()


def _flaky(p: Empty, ctx: StepContext) -> Count:
    TRIES.add(f"{ctx.run_id}:{ctx.block_id}", ctx.attempt)
    if ctx.attempt < 3:
        raise ConnectionError(f"flaked on attempt {ctx.attempt}")
    return Count(attempt=ctx.attempt)


def _flag(p: Flag) -> Flag:
    return Flag(ok=p.ok)


async def _slow_async(p: Empty, ctx: StepContext) -> Count:
    TRIES.add(f"{ctx.run_id}:{ctx.block_id}", ctx.attempt)
    if ctx.attempt == 1:
        await asyncio.sleep(5)
    return Count(attempt=ctx.attempt)


def _slow_sync(p: Empty, ctx: StepContext) -> Count:
    TRIES.add(f"{ctx.run_id}:{ctx.block_id}", ctx.attempt)
    time.sleep(3)
    return Count(attempt=ctx.attempt)


FLAKY = define_connector(type="sc_flaky", params=Empty, outputs=Count, run=_flaky)
FLAKY_POLICY = define_connector(
    type="sc_flaky_policy",
    params=Empty,
    outputs=Count,
    run=_flaky,
    retries=RetryPolicy(max_attempts=5, backoff_s=0.01),
)
FLAG = define_connector(type="sc_flag", params=Flag, outputs=Flag, run=_flag)
SLOW_ASYNC = define_connector(type="sc_slow_async", params=Empty, outputs=Count, run=_slow_async)
SLOW_SYNC = define_connector(type="sc_slow_sync", params=Empty, outputs=Count, run=_slow_sync)


def _catalog() -> Catalog:
    return Catalog(FLAKY, FLAKY_POLICY, FLAG, SLOW_ASYNC, SLOW_SYNC)


def _block(wf: SerializedWorkflow, block_id: str) -> Any:
    return next(b for b in wf.blocks if b.id == block_id)


def _edges(wf: SerializedWorkflow) -> set[tuple[str, str]]:
    return {(c.source, c.target) for c in wf.connections}


# ── authoring: YAML, builder, wire ──────────────────────────────────────────

YAML = """\
input: {go: bool}
steps:
  gate:
    uses: sc_flag
    with: {ok: "{{trigger.go}}"}
  call:
    uses: sc_flaky
    retries: {max: 3, backoff: 2s}
    when: "{{gate.ok}}"
    timeout: 2m
  after:
    uses: sc_flag
    needs: [call]
    timeout: 500ms
    retries: 2
"""


def test_yaml_step_controls_compile_to_block_fields_and_the_when_ref_adds_an_edge() -> None:
    wf = workflow_from_yaml("ctl", YAML, _catalog())
    call = _block(wf, "call")
    assert call.retries is not None and (call.retries.max, call.retries.backoff) == (3, 2.0)
    assert call.when == "{{gate.ok}}"
    assert call.timeout == 120.0
    after = _block(wf, "after")
    assert (after.timeout, after.retries.max, after.retries.backoff) == (0.5, 2, None)
    assert ("gate", "call") in _edges(wf)  # from the `when` ref alone
    assert _block(wf, "gate").when is None and _block(wf, "gate").retries is None


def test_yaml_bad_step_controls_are_located_errors() -> None:
    text = """\
steps:
  a:
    uses: sc_flag
  b:
    uses: sc_flag
    timeout: -3s
    retries: {max: 0}
    when: "{{nope.ok}}"
  c:
    uses: sc_flag
    timeout: soon
    when: "{{a.missing}}"
"""
    with pytest.raises(WorkflowYamlError) as ei:
        workflow_from_yaml("bad", text, _catalog())
    got = {(p.line, p.field): p.message for p in ei.value.problems}
    assert "duration like 30s" in got[(6, "steps.b.timeout")]
    assert "from 1 to 100" in got[(7, "steps.b.retries")]
    assert "Reference 'nope' does not match any block" in got[(8, "steps.b.when")]
    assert "duration like 30s" in got[(11, "steps.c.timeout")]
    assert "does not declare output 'missing'" in got[(12, "steps.c.when")]


def test_yaml_negative_timeout_and_unquoted_when_say_why() -> None:
    text = "steps:\n  a:\n    uses: sc_flag\n    timeout: -1\n    when: false\n"
    with pytest.raises(WorkflowYamlError) as ei:
        workflow_from_yaml("bad", text, _catalog())
    got = {p.field: p.message for p in ei.value.problems}
    assert got["steps.a.timeout"] == "timeout cannot be negative"
    assert "template string" in got["steps.a.when"]


def test_builder_step_controls_match_the_yaml() -> None:
    class In(BaseModel):
        go: bool

    wf = (
        define_workflow("ctl")
        .input(In)
        .step("gate", FLAG, lambda r: {"ok": r.input.go})
        .step(
            "call",
            FLAKY,
            retries={"max": 3, "backoff": "2s"},
            when=lambda r: r.gate.ok,
            timeout="2m",
        )
        .step("after", FLAG, needs=["call"], timeout=0.5, retries=2)
        .build()
    )
    yaml_wf = workflow_from_yaml("ctl", YAML, _catalog())
    assert [b.model_dump() for b in wf.blocks] == [b.model_dump() for b in yaml_wf.blocks]
    assert _edges(wf) == _edges(yaml_wf)


def test_builder_rejects_bad_controls_and_bad_when_refs() -> None:
    b = (
        define_workflow("bad")
        .step("gate", FLAG)
        .step("x", FLAG, retries=0, timeout=-1, when=lambda r: r.gate.nope)
    )
    with pytest.raises(BuildError) as ei:
        b.build()
    text = "\n".join(ei.value.problems)
    assert "retries.max must be from 1 to 100" in text
    assert "timeout cannot be negative" in text
    assert "no field 'nope'" in text


def test_wire_round_trip_and_absent_when_unset() -> None:
    wf = workflow_from_yaml("ctl", YAML, _catalog())
    data = wf.to_dict()
    call = next(b for b in data["blocks"] if b["id"] == "call")
    assert call["retries"] == {"max": 3, "backoff": 2.0}
    assert call["when"] == "{{gate.ok}}" and call["timeout"] == 120.0
    gate = next(b for b in data["blocks"] if b["id"] == "gate")
    assert not {"retries", "when", "timeout"} & gate.keys()
    assert "backoff" not in next(b for b in data["blocks"] if b["id"] == "after")["retries"]
    again = SerializedWorkflow.from_json(wf.to_json())
    assert again.to_json() == wf.to_json()
    plain = define_workflow("plain").step("a", FLAG).build().to_json()
    assert "retries" not in plain and "when" not in plain and "timeout" not in plain


def test_when_ref_to_a_block_not_upstream_is_invalid() -> None:
    wf = define_workflow("v").step("a", FLAG).step("b", FLAG).build()
    data = wf.to_dict()
    _b = next(b for b in data["blocks"] if b["id"] == "b")
    _b["when"] = "{{a.ok}}"
    with pytest.raises(WorkflowInvalid) as ei:
        run_in_memory(data, catalog=_catalog())
    assert any("'b' references 'a' but a is not upstream" in p for p in ei.value.problems)
    _b["when"] = "{{ghost.ok}}"
    with pytest.raises(WorkflowInvalid) as ei:
        run_in_memory(data, catalog=_catalog())
    assert any("'ghost' does not match any block" in p for p in ei.value.problems)


# ── controls on a block that waits ─────────────────────────────────────────

WAIT_YAML = """\
steps:
  pause:
    uses: wait_duration
    with: {duration: 1, unit: s}
    timeout: 30s
  ask:
    uses: human_approval
    with: {prompt: ok?}
    retries: 3
  child:
    uses: run_workflow
    with: {workflow: other}
    timeout: 1m
    retries: 2
"""


def test_yaml_refuses_timeout_and_retries_on_a_wait_at_their_place() -> None:
    with pytest.raises(WorkflowYamlError) as ei:
        workflow_from_yaml("waits", WAIT_YAML, Catalog())
    got = {(p.line, p.field): p.message for p in ei.value.problems}
    assert set(got) == {
        (5, "steps.pause.timeout"),
        (9, "steps.ask.retries"),
        (13, "steps.child.timeout"),
        (14, "steps.child.retries"),
    }
    assert got[(5, "steps.pause.timeout")] == (
        "wait_duration waits rather than runs, so a step timeout does not apply; "
        "its duration is how long it waits."
    )
    assert "a wait does not fail, so there is nothing to retry" in got[(9, "steps.ask.retries")]
    assert "timeouts on the child workflow's steps" in got[(13, "steps.child.timeout")]
    assert "kit.fork the parent from this step" in got[(14, "steps.child.retries")]
    event = "steps:\n  e:\n    uses: wait_for_event\n    with: {eventName: go}\n    timeout: 1h\n"
    with pytest.raises(WorkflowYamlError) as ei:
        workflow_from_yaml("waits", event, Catalog())
    (p,) = ei.value.problems
    assert (p.line, p.column, p.field) == (5, 14, "steps.e.timeout")
    assert p.message.endswith("bound the wait with its timeoutHours param.")


def test_builder_refuses_timeout_and_retries_on_a_wait() -> None:
    (pause,) = [c for c in Catalog() if c.type == "wait_duration"]
    b = define_workflow("w").step("p", pause, {"duration": 1, "unit": "s"}, retries=2)
    with pytest.raises(BuildError) as ei:
        b.build()
    (issue,) = ei.value.issues
    assert (issue.block, issue.field, issue.code) == ("p", "retries", "control-not-applicable")
    assert "test_step_controls.py" in issue.message  # the line of the .step call


def test_apply_operations_and_compile_report_a_control_on_a_wait() -> None:
    op = {
        "operation_type": "add",
        "block_id": "hold",
        "type": "wait_for_event",
        "params": {"eventName": "go"},
        "timeout": "2h",
    }
    res = apply_operations(_base(), [op], Catalog(FLAG))
    assert not res.ok
    (issue,) = res.validation_errors
    assert (issue.block_id, issue.field, issue.code) == (
        "hold",
        "timeout",
        "control-not-applicable",
    )
    assert "timeoutHours" in issue.error
    with pytest.raises(WorkflowInvalid) as ei:
        run_in_memory(res.workflow, catalog=Catalog(FLAG))
    assert [i.code for i in ei.value.issues] == ["control-not-applicable"]


# ── in memory ───────────────────────────────────────────────────────────────


def _when_wf(go_key: str = "go") -> SerializedWorkflow:
    return (
        define_workflow("when")
        .step("gate", FLAG, {"ok": "{{trigger." + go_key + "}}"})
        .step("guarded", FLAG, when="{{gate.ok}}")
        .step("downstream", FLAG, needs=["guarded"])
        .step("sibling", FLAG, needs=["gate"])
        .build()
    )


@pytest.mark.parametrize("falsy", [False, 0, "", [], {}, None])
def test_in_memory_falsy_when_skips_the_step_and_what_needs_it(falsy: Any) -> None:
    wf = _when_wf()
    _block(wf, "gate").params = {"ok": True}
    _block(wf, "guarded").when = "{{trigger.flag}}"
    wf.connections = [c for c in wf.connections if c.target != "guarded"]
    wf.connections.append(type(wf.connections[0])(source="__trigger__", target="guarded"))
    run = run_in_memory(wf, {"flag": falsy}, catalog=_catalog())
    assert run.status == "completed"
    status = {s.block_id: s.status for s in run.steps}
    assert status["guarded"] == "skipped" and status["downstream"] == "skipped"
    assert status["sibling"] == "completed"
    assert set(run.outputs) == {"__trigger__", "gate", "sibling"}


@pytest.mark.parametrize("truthy", [True, 1, "false", [0], {"a": 1}])
def test_in_memory_truthy_when_runs_the_step(truthy: Any) -> None:
    wf = _when_wf()
    _block(wf, "gate").params = {"ok": True}
    _block(wf, "guarded").when = "{{trigger.flag}}"
    run = run_in_memory(wf, {"flag": truthy}, catalog=_catalog())
    assert {s.block_id: s.status for s in run.steps}["downstream"] == "completed"


def test_in_memory_when_from_an_upstream_output() -> None:
    off = run_in_memory(_when_wf(), {"go": False}, catalog=_catalog())
    on = run_in_memory(_when_wf(), {"go": True}, catalog=_catalog())
    assert "guarded" not in off.outputs and "downstream" not in off.outputs
    assert on.outputs["downstream"] == {"ok": True}


def test_in_memory_retries_of_the_block() -> None:
    ok = define_workflow("r").step("f", FLAKY, retries={"max": 3, "backoff": 0}).build()
    run = run_in_memory(ok, catalog=_catalog())
    assert run.status == "completed" and run.outputs["f"] == {"attempt": 3}
    assert TRIES.seen[f"{run.run_id}:f"] == [1, 2, 3]
    short = define_workflow("r").step("f", FLAKY, retries=2).build()
    run = run_in_memory(short, catalog=_catalog())
    assert run.status == "failed" and "flaked on attempt 2" in (run.error or "")
    none = define_workflow("r").step("f", FLAKY).build()  # no retries in memory without it
    run = run_in_memory(none, catalog=_catalog())
    assert run.status == "failed" and TRIES.seen[f"{run.run_id}:f"] == [1]


def test_in_memory_async_timeout_is_cancelled_and_retried() -> None:
    wf = define_workflow("t").step("s", SLOW_ASYNC, timeout=0.2, retries={"max": 2, "backoff": 0})
    t0 = time.monotonic()
    run = run_in_memory(wf.build(), catalog=_catalog())
    assert time.monotonic() - t0 < 2.0
    assert run.status == "completed" and run.outputs["s"] == {"attempt": 2}
    once = define_workflow("t").step("s", SLOW_ASYNC, timeout=0.2).build()
    run = run_in_memory(once, catalog=_catalog())
    assert run.status == "failed"
    assert run.error == (
        "Block 's' (sc_slow_async) took longer than its timeout of 0.2 s; "
        "raise `timeout` or make the step faster."
    )


def test_in_memory_sync_timeout_does_not_wait_for_the_thread() -> None:
    wf = define_workflow("t").step("s", SLOW_SYNC, timeout="300ms").step("n", FLAG).build()
    t0 = time.monotonic()
    run = run_in_memory(wf, catalog=_catalog())
    assert time.monotonic() - t0 < 2.0  # the 3 s thread is left behind
    assert run.status == "failed" and run.failed_block == "s"
    assert "took longer than its timeout of 0.3 s" in (run.error or "")


# ── durable, SQLite and PostgreSQL ─────────────────────────────────────────


def test_durable_block_retries_override_the_connector(any_kits: KitFactory) -> None:
    kit = any_kits(catalog=_catalog()).start()
    more = define_workflow("r").step("f", FLAKY, retries={"max": 3, "backoff": 0.01}).build()
    fewer = define_workflow("r2").step("f", FLAKY_POLICY, retries=1).build()
    h1, h2 = kit.run(more), kit.run(fewer)
    assert h1.result(timeout=20)["f"] == {"attempt": 3}
    with pytest.raises(RunFailed) as ei:
        h2.result(timeout=20)
    assert "flaked on attempt 1" in ei.value.error
    assert TRIES.seen[f"{h1.id}:f"] == [1, 2, 3]
    assert TRIES.seen[f"{h2.id}:f"] == [1]  # the connector's 5 attempts overridden
    steps = {s.block_id: s for s in h1.describe().steps}
    assert (steps["f"].status, steps["f"].attempt) == ("completed", 3)


def test_durable_falsy_when_skips_and_records_skipped(any_kits: KitFactory, db_url: str) -> None:
    kit = any_kits(catalog=_catalog()).start()
    off, on = kit.run(_when_wf(), {"go": False}), kit.run(_when_wf(), {"go": True})
    out_off, out_on = off.result(timeout=20), on.result(timeout=20)
    assert "guarded" not in out_off and "downstream" not in out_off
    assert out_off["sibling"] == {"ok": True}
    assert out_on["downstream"] == {"ok": True}
    rows = steps_of(db_url, off.id)
    assert rows["guarded"] == "skipped" and rows["downstream"] == "skipped"
    assert rows["sibling"] == "completed"
    described = {s.block_id: s.status for s in off.describe().steps}
    assert described["guarded"] == "skipped"
    assert steps_of(db_url, on.id)["guarded"] == "completed"


def test_durable_async_timeout_fails_with_the_limit_then_retries(any_kits: KitFactory) -> None:
    kit = any_kits(catalog=_catalog()).start()
    once = kit.run(define_workflow("t").step("s", SLOW_ASYNC, timeout=0.2).build())
    with pytest.raises(RunFailed) as ei:
        once.result(timeout=20)
    assert ei.value.block_id == "s"
    assert "Block 's' (sc_slow_async) took longer than its timeout of 0.2 s" in ei.value.error
    retried = define_workflow("t2").step("s", SLOW_ASYNC, timeout=0.2, retries=2).build()
    h = kit.run(retried)
    assert h.result(timeout=20)["s"] == {"attempt": 2}
    assert TRIES.seen[f"{h.id}:s"] == [1, 2]


def test_durable_sync_timeout_does_not_block_other_runs(any_kits: KitFactory) -> None:
    kit = any_kits(catalog=_catalog()).start()
    stuck = kit.run(define_workflow("t").step("s", SLOW_SYNC, timeout=0.3).build())
    t0 = time.monotonic()
    quick = [kit.run(define_workflow("q").step("a", FLAG).build()) for _ in range(3)]
    for h in quick:
        assert h.result(timeout=20)["a"] == {"ok": True}
    with pytest.raises(RunFailed) as ei:
        stuck.result(timeout=20)
    assert time.monotonic() - t0 < 2.5  # well before the 3 s thread ends
    assert "took longer than its timeout of 0.3 s" in ei.value.error


# ── apply_operations ────────────────────────────────────────────────────────


def _base() -> SerializedWorkflow:
    return define_workflow("p").step("gate", FLAG).build()


def test_apply_operations_sets_step_controls() -> None:
    ops = [
        {
            "operation_type": "add",
            "block_id": "x",
            "type": "sc_flag",
            "retries": {"max": 3, "backoff": "2s"},
            "when": "{{gate.ok}}",
            "timeout": "30s",
        },
        {"operation_type": "connect", "block_id": "gate", "target_block_id": "x"},
    ]
    res = apply_operations(_base(), ops, _catalog())
    assert res.ok, res.summary
    x = _block(res.workflow, "x")
    assert (x.retries.max, x.retries.backoff, x.when, x.timeout) == (3, 2.0, "{{gate.ok}}", 30.0)
    edit = [{"operation_type": "edit", "block_id": "x", "timeout": None, "retries": 1}]
    res2 = apply_operations(res.workflow, edit, _catalog())
    x2 = _block(res2.workflow, "x")
    assert res2.ok and x2.timeout is None and x2.retries.max == 1 and x2.when == "{{gate.ok}}"
    assert x.timeout == 30.0  # the input was not mutated


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("timeout", -5, "timeout cannot be negative"),
        ("timeout", 0, "more than 0 seconds"),
        ("timeout", "soon", "duration like 30s"),
        ("retries", {"max": 0}, "from 1 to 100"),
        ("retries", {"max": 2, "jitter": 1}, "no field 'jitter'"),
        ("when", True, "template string"),
    ],
)
def test_apply_operations_skips_bad_step_controls(field: str, value: Any, why: str) -> None:
    op = {"operation_type": "add", "block_id": "x", "type": "sc_flag", field: value}
    res = apply_operations(_base(), [op], _catalog())
    assert not res.ok
    (skip,) = res.skipped_items
    assert skip.reason_code == "invalid_step_control" and skip.block_id == "x"
    assert why in skip.reason and skip.details == {"field": field}
    assert all(b.id != "x" for b in res.workflow.blocks)


def test_apply_operations_bad_when_ref_is_skipped_and_reverted() -> None:
    wf = _base()
    wf.blocks.append(type(wf.blocks[0])(id="x", type="sc_flag", when="{{gate.ok}}"))
    ops = [
        {"operation_type": "edit", "block_id": "x", "when": "{{ghost.ok}}"},
        {"operation_type": "edit", "block_id": "gate", "when": "{{x.ok}}"},
    ]
    res = apply_operations(wf, ops, _catalog())
    reasons = {s.block_id: s for s in res.skipped_items}
    assert reasons["x"].reason_code == "invalid_step_control"
    assert "'ghost' does not match any block" in reasons["x"].reason
    assert reasons["x"].details == {"field": "when"}
    assert "not upstream" in reasons["gate"].reason
    assert _block(res.workflow, "x").when == "{{gate.ok}}"  # put back
    assert _block(res.workflow, "gate").when is None
    assert reasons["x"].operation_type == "edit"
    add = {"operation_type": "add", "block_id": "y", "type": "sc_flag", "when": "{{ghost.ok}}"}
    res = apply_operations(wf, [add], _catalog())
    assert [(s.operation_type, s.block_id) for s in res.skipped_items] == [("add", "y")]
    assert _block(res.workflow, "y").when is None


def test_env_read_by_a_when_is_an_env_the_workflow_reads() -> None:
    from thodare_jupyter.templates import env_refs

    wf = _base()
    _block(wf, "gate").when = "{{env.FEATURE_ON}}"
    assert env_refs(wf) == {"FEATURE_ON"}
    op = {"operation_type": "edit", "block_id": "gate", "params": {"ok": "{{env.FEATURE_ON}}"}}
    assert apply_operations(wf, [op], _catalog()).skipped_items == []


def test_apply_operations_refuses_a_new_env_ref_in_when() -> None:
    op = {"operation_type": "add", "block_id": "x", "type": "sc_flag", "when": "{{env.SECRET}}"}
    res = apply_operations(_base(), [op], _catalog())
    assert [s.reason_code for s in res.skipped_items] == ["env_ref_not_allowed"]


def test_accepted_ops_with_step_controls_rewrite_the_cell_yaml() -> None:
    from thodare_jupyter.authoring.yaml_rewrite import rewrite_workflow_yaml, yaml_problems

    cat = _catalog()
    wf = workflow_from_yaml("ctl", YAML, cat)
    ops = [
        {"operation_type": "edit", "block_id": "call", "timeout": "45s", "when": None},
        {"operation_type": "edit", "block_id": "after", "when": "{{gate.ok}}", "retries": None},
    ]
    res = apply_operations(wf, ops, cat)
    assert res.ok, res.summary
    assert yaml_problems("ctl", YAML, res.workflow, cat) == []
    text = rewrite_workflow_yaml(YAML, res.workflow)
    assert "retries: {max: 3, backoff: 2s}" in text  # unchanged: kept as written
    again = workflow_from_yaml("ctl", text, cat)
    call, after = _block(again, "call"), _block(again, "after")
    assert (call.timeout, call.when, call.retries.max) == (45.0, None, 3)
    assert (after.when, after.retries, after.timeout) == ("{{gate.ok}}", None, 0.5)
    assert ("gate", "after") in _edges(again)
