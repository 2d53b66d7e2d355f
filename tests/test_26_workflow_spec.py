"""Seed proof 26 (dx-workflow-spec), the parts that need no database.

``define_workflow_spec`` declares a workflow's contract (name, version, input
and output models) without its steps; ``runtime_name`` is ``name@version``.
``workflow_from_spec`` gives it steps and yields a workflow named by the
runtime name that runs in memory. A bad input is refused with
``InputInvalid`` naming the field before any step runs, and two versions of
one spec are two distinct workflows with their own behaviour.
"""

import pytest
from pydantic import BaseModel, Field

from thodare_jupyter import (
    BuildError,
    Catalog,
    InputInvalid,
    WorkflowSpec,
    define_connector,
    define_workflow_spec,
    run_in_memory,
    workflow_from_spec,
)


class EchoParams(BaseModel):
    msg: str


class EchoOut(BaseModel):
    msg: str


class Counter:
    def __init__(self) -> None:
        self.calls = 0

    def run(self, p: EchoParams) -> EchoOut:
        self.calls += 1
        return EchoOut(msg=p.msg)


def _echo(type_: str = "spec-echo") -> tuple[Counter, Catalog]:
    counter = Counter()
    echo = define_connector(type=type_, params=EchoParams, outputs=EchoOut, run=counter.run)
    return counter, Catalog(echo)


class SendIn(BaseModel):
    to: str
    subject: str


class SendOut(BaseModel):
    delivered: bool


class MsgIn(BaseModel):
    msg: str


class ShortMsgIn(BaseModel):
    msg: str = Field(min_length=3)


def test_spec_exposes_name_version_input_output_and_runtime_name() -> None:
    spec = define_workflow_spec("send-email", "1", input=SendIn, output=SendOut)
    assert isinstance(spec, WorkflowSpec)
    assert spec.name == "send-email"
    assert spec.version == "1"
    assert spec.input is SendIn
    assert spec.output is SendOut
    assert spec.runtime_name == "send-email@1"

    # The models are there to inspect and use (a webhook router validates with them).
    assert SendIn.model_validate({"to": "x@y", "subject": "hi"}).to == "x@y"
    assert spec.validate_input({"to": "x@y", "subject": "hi"}) == {"to": "x@y", "subject": "hi"}
    with pytest.raises(InputInvalid) as ei:
        spec.validate_input({"to": "x@y"})
    assert "subject" in str(ei.value)
    assert "send-email@1" in str(ei.value)
    assert ei.value.workflow_name == "send-email@1"


def test_spec_needs_a_name_and_a_version() -> None:
    with pytest.raises(ValueError, match="name"):
        define_workflow_spec("", "1")
    with pytest.raises(ValueError, match="version"):
        define_workflow_spec("x", "")


def test_workflow_from_spec_is_named_by_the_runtime_name_and_runs_in_memory() -> None:
    counter, cat = _echo()
    echo = cat.get("spec-echo")
    spec = define_workflow_spec("echo-flow", "1", input=MsgIn)
    wf = workflow_from_spec(spec, lambda b: b.step("e", echo, lambda r: {"msg": r.input.msg}))

    assert wf.metadata is not None and wf.metadata.name == "echo-flow@1"
    assert wf.name == spec.runtime_name
    assert wf.input_model is MsgIn
    assert [b.id for b in wf.blocks] == ["__trigger__", "e"]
    assert wf.blocks[1].params == {"msg": "{{trigger.msg}}"}

    run = run_in_memory(wf, {"msg": "hello"}, catalog=cat, env={})
    assert run.status == "completed", run.error
    assert run.outputs["e"]["msg"] == "hello"
    assert counter.calls == 1


def test_a_spec_without_an_input_model_takes_any_input() -> None:
    counter, cat = _echo()
    spec = define_workflow_spec("loose", "0.1")
    wf = workflow_from_spec(
        spec, lambda b: b.step("e", cat.get("spec-echo"), lambda r: {"msg": r.input.anything})
    )
    assert wf.name == "loose@0.1"
    assert wf.input_model is None
    run = run_in_memory(wf, {"anything": "goes"}, catalog=cat, env={})
    assert run.status == "completed", run.error
    assert run.outputs["e"] == {"msg": "goes"}
    assert counter.calls == 1


def test_the_spec_input_model_checks_refs_at_build_time() -> None:
    _, cat = _echo()
    spec = define_workflow_spec("typo", "1", input=MsgIn)
    with pytest.raises(BuildError) as ei:
        workflow_from_spec(
            spec, lambda b: b.step("e", cat.get("spec-echo"), lambda r: {"msg": r.input.mgs})
        )
    assert "'mgs'" in str(ei.value) and "msg" in str(ei.value)
    assert "typo@1" in str(ei.value)


def test_bad_input_fails_validation_before_any_step_runs() -> None:
    counter, cat = _echo("vfail-echo")
    spec = define_workflow_spec("vfail-echo-flow", "1", input=ShortMsgIn)
    wf = workflow_from_spec(
        spec, lambda b: b.step("e", cat.get("vfail-echo"), lambda r: {"msg": r.input.msg})
    )

    for bad in ({"msg": "x"}, {"mesg": "hello"}, {"msg": 42}):
        with pytest.raises(InputInvalid) as ei:
            run_in_memory(wf, bad, catalog=cat, env={})
        err = ei.value
        assert err.workflow_name == "vfail-echo-flow@1"
        assert any(p.startswith("msg:") for p in err.problems), err.problems
        assert "no run was started" in str(err)
    # The seed's message was "runSpec input validation failed"; ours names the field.
    assert counter.calls == 0

    # The same input, made valid, runs the step exactly once.
    run = run_in_memory(wf, {"msg": "xyz"}, catalog=cat, env={})
    assert run.status == "completed", run.error
    assert counter.calls == 1


def test_two_versions_of_one_spec_coexist_with_different_outputs() -> None:
    counter, cat = _echo("ver-echo")
    echo = cat.get("ver-echo")
    v1 = define_workflow_spec("versioned", "1", input=MsgIn)
    v2 = define_workflow_spec("versioned", "2", input=MsgIn)
    assert v1 != v2
    assert v1.runtime_name != v2.runtime_name

    def impl(tag: str):  # type: ignore[no-untyped-def]
        return lambda b: b.step("e", echo, lambda r: {"msg": f"{tag}:{r.input.msg}"})

    wf1 = workflow_from_spec(v1, impl("v1"))
    wf2 = workflow_from_spec(v2, impl("v2"))
    assert (wf1.name, wf2.name) == ("versioned@1", "versioned@2")

    r1 = run_in_memory(wf1, {"msg": "x"}, catalog=cat, env={})
    r2 = run_in_memory(wf2, {"msg": "x"}, catalog=cat, env={})
    assert r1.outputs["e"]["msg"] == "v1:x"
    assert r2.outputs["e"]["msg"] == "v2:x"
    # Building v2 did not change v1: run v1 again.
    assert run_in_memory(wf1, {"msg": "y"}, catalog=cat, env={}).outputs["e"]["msg"] == "v1:y"
    assert counter.calls == 3
