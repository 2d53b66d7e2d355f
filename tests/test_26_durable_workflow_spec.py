"""Seed proof 26 (dx-workflow-spec) on the durable runtime, SQLite and PostgreSQL.

``kit.workflow_from_spec`` builds, checks and keeps the workflow of a spec;
``kit.run_spec`` then needs only the spec (an API package holds no steps). A
bad input is refused with ``InputInvalid`` naming the field before any run
row exists; ``name@version`` keeps two versions apart in the database; a
spec no workflow implements gets an error that says what to call; an
idempotency key passed to ``run_spec`` returns the first run.
"""

from __future__ import annotations

import pytest
from durable_helpers import KitFactory
from pydantic import BaseModel, Field

from thodare_jupyter import (
    InputInvalid,
    ThodareError,
    define_connector,
    define_workflow_spec,
)


class Msg(BaseModel):
    msg: str


class ShortMsg(BaseModel):
    msg: str = Field(min_length=3)


ECHO = define_connector(type="spec-echo", params=Msg, outputs=Msg, run=lambda p: Msg(msg=p.msg))


def test_workflow_from_spec_then_run_spec_by_the_spec_alone(any_kits: KitFactory) -> None:
    spec = define_workflow_spec("echo-flow", "1", input=Msg)
    kit = any_kits().register(ECHO).start()
    wf = kit.workflow_from_spec(spec, lambda b: b.step("e", ECHO, lambda r: {"msg": r.input.msg}))
    assert wf.name == "echo-flow@1" and kit.workflows == {"echo-flow@1": wf}

    assert kit.run(wf, {"msg": "hello"}).result(timeout=30)["e"] == {"msg": "hello"}
    handle = kit.run_spec(spec, {"msg": "via-spec"})
    assert handle.result(timeout=30)["e"] == {"msg": "via-spec"}
    assert handle.describe().workflow == "echo-flow@1"


def test_bad_input_is_refused_before_a_run_row_exists(any_kits: KitFactory) -> None:
    spec = define_workflow_spec("vfail-flow", "1", input=ShortMsg)
    kit = any_kits().register(ECHO)
    kit.workflow_from_spec(spec, lambda b: b.step("e", ECHO, lambda r: {"msg": r.input.msg}))
    with pytest.raises(InputInvalid) as ei:
        kit.run_spec(spec, {"msg": "x"})
    assert ei.value.workflow_name == "vfail-flow@1"
    assert ei.value.problems == ["msg: String should have at least 3 characters"]
    assert kit.runs() == []


def test_two_versions_are_two_workflows_in_the_database(any_kits: KitFactory) -> None:
    v1 = define_workflow_spec("versioned", "1", input=Msg)
    v2 = define_workflow_spec("versioned", "2", input=Msg)
    kit = any_kits().register(ECHO).start()
    for spec, tag in ((v1, "v1"), (v2, "v2")):
        kit.workflow_from_spec(
            spec, lambda b, t=tag: b.step("e", ECHO, lambda r: {"msg": f"{t}:{r.input.msg}"})
        )
    r1, r2 = kit.run_spec(v1, {"msg": "x"}), kit.run_spec(v2, {"msg": "x"})
    assert r1.result(timeout=30)["e"] == {"msg": "v1:x"}
    assert r2.result(timeout=30)["e"] == {"msg": "v2:x"}
    assert sorted(r.workflow or "" for r in kit.runs()) == ["versioned@1", "versioned@2"]


def test_a_spec_nothing_implements_says_what_to_call(any_kits: KitFactory) -> None:
    kit = any_kits().register(ECHO)
    built = define_workflow_spec("built", "1", input=Msg)
    kit.workflow_from_spec(built, lambda b: b.step("e", ECHO, lambda r: {"msg": r.input.msg}))
    with pytest.raises(ThodareError) as ei:
        kit.run_spec(define_workflow_spec("lonely", "2", input=Msg), {"msg": "hi"})
    assert "'lonely@2'" in str(ei.value) and "built@1" in str(ei.value)
    assert "kit.workflow_from_spec(spec, steps)" in str(ei.value)
    assert kit.runs() == []


def test_run_spec_with_an_idempotency_key_returns_the_first_run(any_kits: KitFactory) -> None:
    spec = define_workflow_spec("idem", "1", input=Msg)
    kit = any_kits().register(ECHO)
    kit.workflow_from_spec(spec, lambda b: b.step("e", ECHO, lambda r: {"msg": r.input.msg}))
    first = kit.run_spec(spec, {"msg": "a"}, idempotency_key="evt-1")
    again = kit.run_spec(spec, {"msg": "a"}, idempotency_key="evt-1")
    assert first.id == again.id and len(kit.runs()) == 1
    assert kit.start().get_handle(first.id).result(timeout=30)["e"] == {"msg": "a"}
