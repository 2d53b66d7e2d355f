"""Seed proof 14 (adversarial runtime): a connector's ``run`` is whatever the
integrator wrote, and the in-memory executor must not collapse on it.

Odd exceptions become a failed step with a readable message; ``None`` from an
untyped connector is recorded and resolves downstream to ``None`` / ``""``; a
typed connector returning ``None`` fails with an ``OutputInvalid`` message
naming the block; a compute connector returning a ``PauseInfo`` pauses (dev
only); a 100-block chain completes; the resolver never raises on missing paths
and never expands a template twice; a run-time params failure names the block,
field and expected type without ever echoing a hidden value.

Durable-only cases of the seed file (``__paused`` rejected by the durable
runtime, the 100-block chain timed on the durable runtime) are not ported here.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from pydantic import BaseModel

from thodare_jupyter import (
    Catalog,
    Hidden,
    OutputInvalid,
    PauseInfo,
    StepContext,
    define_connector,
    resume_in_memory,
    run_in_memory,
)


class NoParams(BaseModel):
    pass


class AnyValue(BaseModel):
    v: Any = None


def one_block(block_id: str, type_: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """trigger -> one block, in the seed's JSON shape."""
    return {
        "version": "1.0.0",
        "blocks": [
            {"id": "trg", "type": "trigger_webhook", "enabled": True, "params": {}},
            {"id": block_id, "type": type_, "enabled": True, "params": params or {}},
        ],
        "connections": [{"source": "trg", "target": block_id}],
    }


def raising(type_: str, exc_factory: Any, *, is_async: bool) -> Any:
    """A connector whose run raises ``exc_factory()``."""
    if is_async:

        async def arun(p: NoParams, ctx: StepContext) -> None:
            raise exc_factory()

        return define_connector(type=type_, params=NoParams, run=arun)

    def run(p: NoParams, ctx: StepContext) -> None:
        raise exc_factory()

    return define_connector(type=type_, params=NoParams, run=run)


def capture_connector(type_: str, seen: list[Any]) -> Any:
    """An untyped connector that records the ``v`` it received and echoes it."""

    def run(p: AnyValue) -> dict[str, Any]:
        seen.append(p.v)
        return {"result": p.v}

    return define_connector(type=type_, params=AnyValue, run=run)


# ── odd exceptions ───────────────────────────────────────────────────────────


class StrRaises(Exception):
    def __str__(self) -> str:
        raise RuntimeError("__str__ itself is broken")


class CustomBase(BaseException):
    """Not an Exception: a custom BaseException subclass (not KeyboardInterrupt/SystemExit)."""


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_exception_with_non_string_payload_gives_readable_failure(is_async: bool) -> None:
    # Seed: `throw "oh no"` (a non-Error). Python can only raise exceptions, so
    # the analogue is an exception carrying a non-string payload.
    cat = Catalog(raising("throws_odd", lambda: RuntimeError({"why": "oh no"}), is_async=is_async))
    run = run_in_memory(one_block("x", "throws_odd"), catalog=cat, env={})
    assert run.status == "failed"
    assert run.failed_block == "x"
    failed = [s for s in run.steps if s.status == "failed"]
    assert [s.block_id for s in failed] == ["x"]
    assert isinstance(failed[0].error, str)
    assert "oh no" in failed[0].error
    assert "RuntimeError" in failed[0].error
    assert run.error == failed[0].error


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_exception_with_no_message_still_gives_an_error_string(is_async: bool) -> None:
    # Seed: `throw null` must not NPE the executor. Python analogue: `raise ValueError()`.
    cat = Catalog(raising("throws_empty", ValueError, is_async=is_async))
    run = run_in_memory(one_block("x", "throws_empty"), catalog=cat, env={})
    assert run.status == "failed"
    assert run.failed_block == "x"
    assert isinstance(run.error, str) and run.error.strip()
    assert "ValueError" in run.error
    assert run.steps[-1].status == "failed" and run.steps[-1].error == run.error


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_exception_whose_str_raises_does_not_break_the_executor(is_async: bool) -> None:
    cat = Catalog(raising("throws_badstr", StrRaises, is_async=is_async))
    run = run_in_memory(one_block("x", "throws_badstr"), catalog=cat, env={})
    assert run.status == "failed"
    assert run.failed_block == "x"
    assert isinstance(run.error, str)
    assert "StrRaises" in run.error
    assert "__str__ itself is broken" not in run.error


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_custom_base_exception_subclass_fails_the_step(is_async: bool) -> None:
    # A custom BaseException (not KeyboardInterrupt / SystemExit, which rightly
    # propagate) is contained as a failed step, not an executor crash.
    cat = Catalog(raising("throws_base", lambda: CustomBase("rogue base"), is_async=is_async))
    run = run_in_memory(one_block("x", "throws_base"), catalog=cat, env={})
    assert run.status == "failed"
    assert run.failed_block == "x"
    assert run.error is not None
    assert "CustomBase" in run.error and "rogue base" in run.error


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_connector_raising_cancelled_error_fails_its_step(is_async: bool) -> None:
    # Nobody cancelled the run: a CancelledError leaking out of a connector's own
    # code (a library bug, a mis-scoped timeout) is that step's failure. It must
    # not escape run_in_memory as a CancelledError.
    cat = Catalog(raising("throws_cancel", asyncio.CancelledError, is_async=is_async))
    run = run_in_memory(one_block("x", "throws_cancel"), catalog=cat, env={})
    assert run.status == "failed"
    assert run.failed_block == "x"
    assert run.error is not None and "CancelledError" in run.error


def test_failure_in_one_branch_keeps_finished_sibling_output() -> None:
    cat = Catalog(raising("throws_empty", ValueError, is_async=False))
    wf = one_block("x", "throws_empty")
    wf["blocks"].append({"id": "ok", "type": "transform", "params": {"template": {"fine": True}}})
    wf["connections"].append({"source": "trg", "target": "ok"})
    run = run_in_memory(wf, catalog=cat, env={})
    assert run.status == "failed" and run.failed_block == "x"
    assert run.outputs["ok"] == {"result": {"fine": True}}


# ── None returns ─────────────────────────────────────────────────────────────


def test_untyped_connector_returning_none_is_recorded_and_resolves_downstream() -> None:
    seen: list[Any] = []

    def ret_none(p: NoParams) -> None:
        return None

    cat = Catalog(
        define_connector(type="ret_none", params=NoParams, outputs=None, run=ret_none),
        capture_connector("echo", seen),
    )
    wf = {
        "blocks": [
            {"id": "trg", "type": "trigger_webhook"},
            {"id": "u", "type": "ret_none"},
            {"id": "single", "type": "echo", "params": {"v": "{{u.foo}}"}},
            {"id": "embedded", "type": "echo", "params": {"v": "[{{u.foo}}]"}},
            {"id": "whole", "type": "echo", "params": {"v": "{{u}}"}},
        ],
        "connections": [
            {"source": "trg", "target": "u"},
            {"source": "u", "target": "single"},
            {"source": "single", "target": "embedded"},
            {"source": "embedded", "target": "whole"},
        ],
    }
    run = run_in_memory(wf, catalog=cat, env={})
    assert run.status == "completed", run.error
    assert "u" in run.outputs and run.outputs["u"] is None
    assert "u" in run.completed_block_ids
    # Our design differs from the seed here: a single-ref template resolving to
    # nothing is None (the seed stringifies JS `undefined` to "undefined"), and
    # embedded it is "" (as documented for the resolver).
    assert seen == [None, "[]", None]
    assert run.outputs["single"] == {"result": None}
    assert run.outputs["embedded"] == {"result": "[]"}


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_typed_connector_returning_none_fails_with_output_invalid(is_async: bool) -> None:
    class FooOut(BaseModel):
        foo: str

    if is_async:

        async def arun(p: NoParams) -> Any:
            return None

        conn = define_connector(type="typed_none", params=NoParams, outputs=FooOut, run=arun)
    else:

        def run_(p: NoParams) -> Any:
            return None

        conn = define_connector(type="typed_none", params=NoParams, outputs=FooOut, run=run_)

    run = run_in_memory(one_block("u", "typed_none"), catalog=Catalog(conn), env={})
    assert run.status == "failed"
    assert run.failed_block == "u"
    assert run.error is not None
    assert "'u'" in run.error and "typed_none" in run.error
    assert "returned invalid output" in run.error
    assert "u" not in run.outputs

    # The same failure, raised directly: it is an OutputInvalid carrying the facts.
    with pytest.raises(OutputInvalid) as info:
        asyncio.run(conn.execute({}, StepContext(run_id="r1", block_id="u")))
    assert info.value.block_id == "u"
    assert info.value.connector_type == "typed_none"
    assert str(info.value) == run.error


# ── PauseInfo from a compute connector ────────────────────────────────────────


def test_compute_connector_returning_pause_info_pauses_in_memory() -> None:
    # Intentional, dev-only: the in-memory executor honours a PauseInfo from any
    # connector (the durable runtime rejects it; that case is durable-only).
    calls: list[str] = []

    def rogue(p: NoParams, ctx: StepContext) -> PauseInfo:
        calls.append(ctx.block_id)
        return PauseInfo(block_id=ctx.block_id, kind="duration", resume_token="tok-test")

    seen: list[Any] = []
    cat = Catalog(
        define_connector(type="rogue_pause", params=NoParams, run=rogue),
        capture_connector("echo", seen),
    )
    wf = one_block("x", "rogue_pause")
    wf["blocks"].append({"id": "after", "type": "echo", "params": {"v": "{{x.answer}}"}})
    wf["connections"].append({"source": "x", "target": "after"})

    run = run_in_memory(wf, catalog=cat, env={})
    assert run.status == "paused"
    assert run.pause is not None
    assert run.pause.block_id == "x"
    assert run.pause.kind == "duration"
    assert run.pause.resume_token == "tok-test"
    assert run.completed_block_ids == ["trg"]
    assert seen == []

    # Its resume output is the payload as is (it is not a wait block).
    done = resume_in_memory(run, {"answer": 7}, env={})
    assert done.status == "completed", done.error
    assert done.outputs["x"] == {"answer": 7}
    assert seen == [7]
    assert calls == ["x"]  # the rogue step did not run again


# ── scale ──────────────────────────────────────────────────────────────────


def test_100_block_linear_chain_completes() -> None:
    blocks: list[dict[str, Any]] = [{"id": "trg", "type": "trigger_webhook"}]
    connections: list[dict[str, Any]] = []
    prev = "trg"
    for i in range(100):
        bid = f"t{i}"
        template: dict[str, Any] = {"i": i}
        if i:
            template["prev"] = f"{{{{t{i - 1}.result.i}}}}"
        blocks.append({"id": bid, "type": "transform", "params": {"template": template}})
        connections.append({"source": prev, "target": bid})
        prev = bid
    run = run_in_memory({"blocks": blocks, "connections": connections}, env={})
    assert run.status == "completed", run.error
    assert run.outputs["t99"] == {"result": {"i": 99, "prev": 98}}
    assert run.outputs["t0"] == {"result": {"i": 0}}
    assert run.completed_block_ids == ["trg", *(f"t{i}" for i in range(100))]


# ── template resolution ─────────────────────────────────────────────────────


def test_deeply_missing_path_resolves_to_none_not_an_error() -> None:
    seen: list[Any] = []
    cat = Catalog(capture_connector("echo", seen))
    refs = [
        "{{trigger.a.b.c.d.missing}}",  # nothing there at all
        "{{trigger.s.length.x}}",  # walks into a string
        "{{trigger.items.5.name}}",  # list index out of range
        "{{trigger.items.name}}",  # non-numeric key on a list
        "{{trigger.n.__class__}}",  # attribute-looking path on an int
        "<{{trigger.a.b.c.d.missing}}>",  # embedded: empty string
    ]
    blocks: list[dict[str, Any]] = [{"id": "trg", "type": "trigger_webhook"}]
    connections = []
    for i, ref in enumerate(refs):
        blocks.append({"id": f"e{i}", "type": "echo", "params": {"v": ref}})
        connections.append({"source": "trg" if i == 0 else f"e{i - 1}", "target": f"e{i}"})
    run = run_in_memory(
        {"blocks": blocks, "connections": connections},
        {"s": "text", "items": [{"name": "only"}], "n": 3},
        catalog=cat,
        env={},
    )
    assert run.status == "completed", run.error
    # Seed: String(undefined) == "undefined"; ours: None single-ref, "" embedded.
    assert seen == [None, None, None, None, None, "<>"]


def test_trigger_string_with_template_is_not_re_expanded() -> None:
    seen: list[Any] = []
    cat = Catalog(capture_connector("pass", seen))
    wf = one_block("p", "pass", {"v": "{{trigger.body}}"})
    wf["blocks"].append({"id": "q", "type": "pass", "params": {"v": "got: {{trigger.body}}"}})
    wf["connections"].append({"source": "p", "target": "q"})
    run = run_in_memory(wf, {"body": "{{env.SECRET}}"}, catalog=cat, env={"SECRET": "hunter2"})
    assert run.status == "completed", run.error
    assert seen == ["{{env.SECRET}}", "got: {{env.SECRET}}"]
    assert "hunter2" not in run.model_dump_json()


def test_whole_trigger_reference_resolves_to_the_intact_object() -> None:
    class ObjParam(BaseModel):
        v: dict[str, Any]

    def pass2(p: ObjParam) -> dict[str, Any]:
        return {"result": p.v}

    cat = Catalog(define_connector(type="pass2", params=ObjParam, run=pass2))
    payload = {"user": {"id": 42, "name": "Alice"}, "count": 7, "tags": ["a", None, 1.5]}
    run = run_in_memory(one_block("p", "pass2", {"v": "{{trigger}}"}), payload, catalog=cat, env={})
    assert run.status == "completed", run.error
    assert run.outputs["p"] == {"result": payload}
    assert run.outputs["trg"] == payload


# ── params that fail validation at run time ─────────────────────────────────

SECRET = "s3cr3t-hunter2-value"


class PinParams(BaseModel):
    label: str
    pin: Hidden[int]


class TokenParams(BaseModel):
    label: str
    token: Hidden[str]


def _ok(p: BaseModel) -> dict[str, Any]:
    return {"ok": True}


def _assert_params_failure(run: Any, block: str, field: str, expected: str) -> None:
    assert run.status == "failed"
    assert run.failed_block == block
    err = run.error
    assert err is not None
    assert f"'{block}'" in err
    assert field in err
    assert expected in err
    assert "params invalid" in err
    for text in (err, run.steps[-1].error or "", run.model_dump_json()):
        assert SECRET not in text
        assert "s3cr3t" not in text


def test_runtime_params_failure_names_block_field_type_and_hides_secret() -> None:
    # Hidden[int] fed a (string) secret from env through a template: validation
    # at run time fails, and the message must never contain the secret.
    cat = Catalog(define_connector(type="pinpad", params=PinParams, run=_ok))
    wf = one_block("pad", "pinpad", {"label": "door", "pin": "{{env.PIN}}"})
    run = run_in_memory(wf, catalog=cat, env={"PIN": SECRET})
    _assert_params_failure(run, "pad", "pin", "integer")


def test_hidden_str_given_wrong_typed_env_value_does_not_leak_it() -> None:
    # Hidden[str] given a non-string secret (an env mapping loaded from JSON):
    # the single-ref template keeps its type, so validation fails on `token`.
    cat = Catalog(define_connector(type="tokened", params=TokenParams, run=_ok))
    wf = one_block("tk", "tokened", {"label": "api", "token": "{{env.API_TOKEN}}"})
    env: dict[str, Any] = {"API_TOKEN": {"value": SECRET, "rotated": [SECRET]}}
    run = run_in_memory(wf, catalog=cat, env=env)
    _assert_params_failure(run, "tk", "token", "string")


def test_visible_param_failure_shows_the_bad_value() -> None:
    # Contrast: a visible param's bad value may be shown (it is not a secret).
    cat = Catalog(define_connector(type="pinpad", params=PinParams, run=_ok))
    wf = one_block("pad", "pinpad", {"label": "{{trigger.label}}", "pin": 1234})
    run = run_in_memory(wf, {"label": ["not", "a", "string"]}, catalog=cat, env={})
    assert run.status == "failed" and run.failed_block == "pad"
    assert run.error is not None
    assert "label" in run.error and "string" in run.error
    assert "not" in run.error
    assert json.loads(run.model_dump_json())["status"] == "failed"
