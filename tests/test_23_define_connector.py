"""Seed proof 23 (dx-define-connector): one typed declaration makes a connector.

A pydantic params model (with ``Hidden``/``UserOnly`` markers) and an outputs
model drive everything: the param specs the catalog and the LLM see, the
visibility rules ``apply_operations`` enforces, which ``{{step.field}}`` refs
validate, and the params/outputs validation when the step runs. ``@connector``
takes the same models from annotations, and the catalog refuses conflicting or
unknown types with errors that say what to do.
"""

import asyncio
import json
from typing import Any, Literal

import pytest
from ops_helpers import EMPTY, add, connect
from pydantic import BaseModel, Field

from thodare_jupyter import (
    Catalog,
    Connector,
    ConnectorConflict,
    ConnectorDefinitionError,
    Hidden,
    OutputInvalid,
    ParamsInvalid,
    StepContext,
    UnknownConnector,
    UserOnly,
    apply_operations,
    connector,
    define_connector,
    define_workflow,
    redact_for_llm,
    run_in_memory,
)
from thodare_jupyter.wire import SerializedWorkflow

TRIGGER_OP = add("trg", "trigger_webhook")


# ── models shared by several tests (module level, as in a notebook) ─────────


class SlackTestParams(BaseModel):
    channel: str
    text: str = Field(description="Long-form message body")
    accessToken: Hidden[str]
    authMethod: UserOnly[Literal["oauth", "apikey"]]
    threadTs: str | None = None


class SlackTestOut(BaseModel):
    ok: bool
    ts: str


def _slack_test() -> Connector:
    return define_connector(
        type="slack-test",
        params=SlackTestParams,
        outputs=SlackTestOut,
        run=lambda p: {"ok": True, "ts": "1"},
        description="Post to Slack (test double).",
    )


class CountParams(BaseModel):
    count: int = Field(ge=0)


class Doubled(BaseModel):
    doubled: int


# ── 1. param specs reflect the model and the visibility markers ────────────


def test_param_specs_reflect_the_model_and_the_visibility_markers() -> None:
    slack = _slack_test()
    specs = slack.param_specs

    assert list(specs) == ["channel", "text", "accessToken", "authMethod", "threadTs"]
    ch = specs["channel"]
    assert (ch.json_type, ch.required, ch.visibility) == ("string", True, "user-or-llm")
    assert specs["text"].description == "Long-form message body"
    assert specs["accessToken"].visibility == "hidden"
    assert specs["accessToken"].required is True
    assert specs["authMethod"].visibility == "user-only"
    assert specs["authMethod"].json_type == "string"
    assert specs["authMethod"].schema["enum"] == ["oauth", "apikey"]
    # Optional[str] with a default: not required, still typed as a string.
    assert specs["threadTs"].required is False
    assert specs["threadTs"].json_type == "string"

    assert slack.output_fields == ("ok", "ts")
    assert slack.llm_settable == ("channel", "text", "threadTs")
    assert slack.hidden_params == frozenset({"accessToken"})


def test_describe_for_llm_drops_hidden_params_and_flags_user_only_ones() -> None:
    slack = _slack_test()
    seen = slack.describe_for_llm()

    assert seen["type"] == "slack-test"
    assert seen["kind"] == "compute"
    assert seen["description"] == "Post to Slack (test double)."
    assert "accessToken" not in seen["params"]
    assert "accessToken" not in json.dumps(seen)
    assert seen["params"]["authMethod"]["user_only"] is True
    assert seen["params"]["authMethod"]["enum"] == ["oauth", "apikey"]
    assert seen["params"]["channel"] == {"type": "string", "required": True}
    assert seen["params"]["text"]["description"] == "Long-form message body"
    assert seen["outputs"] == ["ok", "ts"]

    # The catalog view is the same per connector, and never shows hidden names either.
    cat = Catalog(slack)
    listed = {c["type"]: c for c in cat.describe_for_llm()}
    assert listed["slack-test"] == seen
    assert "accessToken" not in json.dumps(cat.describe_for_llm())


# ── 2. visibility is enforced through apply_operations ─────────────────────


def _add_slack_test_ops(params: dict[str, Any]) -> list[dict[str, Any]]:
    """trigger → n (slack-test with ``params``), as an LLM would send it."""
    return [TRIGGER_OP, add("n", "slack-test", **params), connect("trg", "n")]


def test_apply_operations_never_lands_a_hidden_param_nor_echoes_its_value() -> None:
    cat = Catalog(_slack_test())
    ops = _add_slack_test_ops({"channel": "#x", "text": "hi", "accessToken": "stolen-token-123"})
    res = apply_operations(EMPTY, ops, cat)

    node = next(b for b in res.workflow.blocks if b.id == "n")
    assert "accessToken" not in node.params
    assert node.params == {"channel": "#x", "text": "hi"}
    hidden_issues = [e for e in res.validation_errors if e.field == "accessToken"]
    assert len(hidden_issues) == 1
    assert "not exposed" in hidden_issues[0].error
    assert hidden_issues[0].value is None
    # The smuggled value appears nowhere in what goes back to the LLM.
    assert "stolen-token-123" not in res.model_dump_json()
    assert "stolen-token-123" not in res.summary
    assert res.ok is False


def test_apply_operations_refuses_a_user_only_param() -> None:
    cat = Catalog(_slack_test())
    ops = _add_slack_test_ops({"channel": "#x", "text": "hi", "authMethod": "apikey"})
    res = apply_operations(EMPTY, ops, cat)

    node = next(b for b in res.workflow.blocks if b.id == "n")
    assert "authMethod" not in node.params
    assert any(e.field == "authMethod" and "user only" in e.error for e in res.validation_errors)


def test_a_hidden_param_set_by_a_person_survives_an_llm_edit_and_is_redacted() -> None:
    cat = Catalog(_slack_test())
    wf = SerializedWorkflow.model_validate(
        {
            "blocks": [
                {"id": "trg", "type": "trigger_webhook", "params": {}},
                {
                    "id": "n",
                    "type": "slack-test",
                    "params": {
                        "channel": "#x",
                        "text": "hi",
                        "accessToken": "xoxb-real",
                        "authMethod": "oauth",
                    },
                },
            ],
            "connections": [{"source": "trg", "target": "n"}],
        }
    )
    res = apply_operations(
        wf,
        [{"operation_type": "edit", "block_id": "n", "params": {"text": "hello"}}],
        cat,
    )
    assert res.ok, res.summary
    node = next(b for b in res.workflow.blocks if b.id == "n")
    assert node.params["text"] == "hello"
    assert node.params["accessToken"] == "xoxb-real"
    assert node.params["authMethod"] == "oauth"
    # The input workflow is not mutated.
    assert wf.blocks[1].params["text"] == "hi"

    shown = redact_for_llm(res.workflow, cat)
    shown_node = next(b for b in shown["blocks"] if b["id"] == "n")
    assert "accessToken" not in shown_node["params"]
    assert "xoxb-real" not in json.dumps(shown)


# ── 3. declared outputs drive ref validation ───────────────────────────────


class FetchParams(BaseModel):
    url: str


class FetchOut(BaseModel):
    status: int
    body: dict[str, object]


class EchoParams(BaseModel):
    msg: str


class EchoOut(BaseModel):
    msg: str


def _fetch_and_echo() -> Catalog:
    fetch = define_connector(
        type="dx-fetch",
        params=FetchParams,
        outputs=FetchOut,
        run=lambda p: {"status": 200, "body": {}},
    )
    echo = define_connector(
        type="dx-echo", params=EchoParams, outputs=EchoOut, run=lambda p: {"msg": p.msg}
    )
    return Catalog(fetch, echo)


def _fetch_then_echo_ops(msg: str) -> list[dict[str, Any]]:
    """trigger → f (dx-fetch) → e (dx-echo with ``msg``)."""
    return [
        TRIGGER_OP,
        add("f", "dx-fetch", url="https://example"),
        add("e", "dx-echo", msg=msg),
        connect("trg", "f"),
        connect("f", "e"),
    ]


def test_declared_outputs_drive_ref_validation() -> None:
    cat = _fetch_and_echo()
    # {{f.full_name}} does not exist: dx-fetch declares only {status, body}.
    res = apply_operations(EMPTY, _fetch_then_echo_ops("hi {{f.full_name}}"), cat)

    ref_err = next(e for e in res.validation_errors if e.block_id == "e" and e.field == "msg")
    assert "does not declare output 'full_name'" in ref_err.error
    # Ours lists the available fields sorted (the seed listed them in declaration order).
    assert "Available: body, status" in ref_err.error
    # And the unresolvable ref was not applied.
    e_block = next(b for b in res.workflow.blocks if b.id == "e")
    assert "msg" not in e_block.params


def test_a_ref_to_a_declared_output_is_accepted() -> None:
    cat = _fetch_and_echo()
    res = apply_operations(EMPTY, _fetch_then_echo_ops("status {{f.status}}"), cat)
    assert res.ok, res.summary
    run = run_in_memory(res.workflow, {}, catalog=cat, env={})
    assert run.status == "completed", run.error
    assert run.outputs["e"] == {"msg": "status 200"}


def test_untyped_outputs_allow_refs_to_any_field_and_any_return_value() -> None:
    loose = define_connector(
        type="loose", params=EchoParams, outputs=None, run=lambda p: {"anything": p.msg}
    )
    nothing = define_connector(type="nothing", params=EchoParams, outputs=None, run=lambda p: None)
    echo = define_connector(
        type="dx-echo", params=EchoParams, outputs=EchoOut, run=lambda p: {"msg": p.msg}
    )
    cat = Catalog(loose, nothing, echo)
    assert loose.output_fields is None
    assert loose.describe_for_llm()["outputs"] == "any"

    wf = (
        define_workflow("untyped")
        .step("l", loose, {"msg": "yo"})
        .step("z", nothing, {"msg": "nil"})
        .step("e", echo, lambda r: {"msg": f"{r.l.anything}/{r.l.not_declared_anywhere}"})
        .build()
    )
    run = run_in_memory(wf, {}, catalog=cat, env={})
    assert run.status == "completed", run.error
    assert run.outputs["z"] is None
    # A missing field of an untyped output resolves to "" inside a string.
    assert run.outputs["e"] == {"msg": "yo/"}


# ── 4. run gets a validated params model; bad params fail at the boundary ───


def test_run_receives_a_validated_params_model_and_a_step_context() -> None:
    seen: list[tuple[object, object]] = []

    def run(params: CountParams, ctx: StepContext) -> Doubled:
        seen.append((params, ctx))
        return Doubled(doubled=params.count * 2)

    typed = define_connector(type="dx-typed", params=CountParams, outputs=Doubled, run=run)

    out = asyncio.run(typed.execute({"count": 5}, StepContext(run_id="r1", block_id="b1")))
    assert out == {"doubled": 10}
    params, ctx = seen[0]
    assert isinstance(params, CountParams)
    assert params.count == 5
    assert isinstance(ctx, StepContext)
    assert (ctx.run_id, ctx.block_id, ctx.attempt) == ("r1", "b1", 1)

    # Through a run: an untyped trigger value arrives as a string and is coerced by the model.
    # (A run input *declared* `str` into an int param is refused at build: tests/test_ref_types.)
    wf = define_workflow("typed").step("d", typed, lambda r: {"count": r.input.n}).build()
    run_ = run_in_memory(wf, {"n": "21"}, catalog=Catalog(typed), env={})
    assert run_.status == "completed", run_.error
    assert run_.outputs["d"] == {"doubled": 42}
    params2, ctx2 = seen[1]
    assert isinstance(params2, CountParams)
    assert params2.count == 21
    assert isinstance(ctx2, StepContext) and ctx2.block_id == "d"
    assert ctx2.run_id == run_.run_id


def test_bad_params_fail_at_the_connector_boundary_naming_block_field_and_type() -> None:
    calls: list[int] = []

    def run(params: CountParams) -> Doubled:
        calls.append(params.count)
        return Doubled(doubled=params.count * 2)

    typed = define_connector(type="dx-typed", params=CountParams, outputs=Doubled, run=run)

    with pytest.raises(ParamsInvalid) as ei:
        asyncio.run(typed.execute({"count": -1}, StepContext(run_id="x", block_id="dbl")))
    msg = str(ei.value)
    # The seed says "dx-typed ... params validation failed"; ours names block, type, field, type.
    assert "'dbl'" in msg and "dx-typed" in msg and "params invalid" in msg
    assert "count" in msg and "integer" in msg
    assert ei.value.block_id == "dbl"
    assert calls == []

    # In a run, a value that only turns bad at run time fails that step, not the process.
    class In(BaseModel):
        n: int

    wf = define_workflow("typed").input(In).step("d", typed, lambda r: {"count": r.input.n}).build()
    run_ = run_in_memory(wf, {"n": -4}, catalog=Catalog(typed), env={})
    assert run_.status == "failed"
    assert run_.failed_block == "d"
    assert run_.error is not None
    assert "count" in run_.error and "greater than or equal" in run_.error
    assert calls == []


def test_a_hidden_params_value_never_appears_in_params_invalid() -> None:
    class KeyParams(BaseModel):
        apiKey: Hidden[str] = Field(min_length=10)

    keyed = define_connector(type="keyed", params=KeyParams, outputs=None, run=lambda p: {})
    wf = define_workflow("k").step("k", keyed, {"apiKey": "{{env.API_KEY}}"}).build()
    run_ = run_in_memory(wf, {}, catalog=Catalog(keyed), env={"API_KEY": "s3cr3t!"})
    assert run_.status == "failed"
    assert run_.error is not None
    assert "apiKey" in run_.error
    assert "s3cr3t!" not in run_.error
    assert "s3cr3t!" not in run_.model_dump_json()


def test_outputs_are_validated_against_the_outputs_model() -> None:
    liar = define_connector(
        type="liar", params=CountParams, outputs=Doubled, run=lambda p: {"doubled": "many"}
    )
    with pytest.raises(OutputInvalid) as ei:
        asyncio.run(liar.execute({"count": 1}, StepContext(run_id="x", block_id="lie")))
    assert "'lie'" in str(ei.value) and "doubled" in str(ei.value)

    wf = define_workflow("liar").step("lie", liar, {"count": 1}).build()
    run_ = run_in_memory(wf, {}, catalog=Catalog(liar), env={})
    assert run_.status == "failed"
    assert run_.failed_block == "lie"
    assert "doubled" in (run_.error or "")


# ── 5. @connector takes its types from annotations ─────────────────────────


@connector("dx-double")
def double(params: CountParams) -> Doubled:
    """Double a count.

    More detail that is not part of the one-line description.
    """
    return Doubled(doubled=params.count * 2)


@connector("dx-adouble", description="Double, asynchronously.")
async def adouble(params: CountParams, ctx: StepContext) -> Doubled:
    await asyncio.sleep(0)
    assert isinstance(ctx, StepContext)
    return Doubled(doubled=params.count * 2)


def test_connector_decorator_takes_types_from_annotations_sync() -> None:
    assert isinstance(double, Connector)
    assert double.type == "dx-double"
    assert double.params is CountParams
    assert double.outputs is Doubled
    assert double.is_async is False
    assert double.kind == "compute"
    assert double.description == "Double a count."
    assert double.output_fields == ("doubled",)
    assert double.param_specs["count"].json_type == "integer"


def test_connector_decorator_takes_types_from_annotations_async() -> None:
    assert isinstance(adouble, Connector)
    assert adouble.params is CountParams
    assert adouble.outputs is Doubled
    assert adouble.is_async is True
    assert adouble.description == "Double, asynchronously."


def test_decorated_connectors_run_in_a_workflow() -> None:
    class In(BaseModel):
        n: int

    wf = (
        define_workflow("doubles")
        .input(In)
        .step("one", double, lambda r: {"count": r.input.n})
        .step("two", adouble, lambda r: {"count": r.one.doubled})
        .build()
    )
    run_ = run_in_memory(wf, {"n": 3}, catalog=Catalog(double, adouble), env={})
    assert run_.status == "completed", run_.error
    assert run_.outputs["one"] == {"doubled": 6}
    assert run_.outputs["two"] == {"doubled": 12}


def test_connector_decorator_without_return_annotation_is_untyped() -> None:
    @connector("dx-free")
    def free(params: CountParams):  # type: ignore[no-untyped-def]
        return {"whatever": params.count}

    assert free.outputs is None
    assert free.output_fields is None


def test_connector_decorator_needs_an_annotated_first_argument() -> None:
    with pytest.raises(ConnectorDefinitionError) as ei:

        @connector("dx-bare")
        def bare(params, ctx):  # type: ignore[no-untyped-def]
            return {}

    msg = str(ei.value)
    assert "bare" in msg
    assert "annotate the first argument" in msg


def test_connector_decorator_rejects_a_first_argument_that_is_not_a_model() -> None:
    with pytest.raises(ConnectorDefinitionError) as ei:

        @connector("dx-int")
        def takes_int(params: int) -> Doubled:
            return Doubled(doubled=params)

    assert "pydantic BaseModel" in str(ei.value)


def test_connector_decorator_unresolvable_annotation_is_a_definition_error() -> None:
    # A string annotation naming a model that is not in the function's globals
    # (a class defined inside a function under `from __future__ import annotations`,
    # or a typo) must give the same clear ConnectorDefinitionError, not a bare NameError.
    with pytest.raises(ConnectorDefinitionError) as ei:

        @connector("dx-ghost")
        def ghost(params: "GhostParams") -> Doubled:  # type: ignore[name-defined]  # noqa: F821
            return Doubled(doubled=0)

    assert "ghost" in str(ei.value)
    assert "GhostParams" in str(ei.value)


def test_connector_decorator_needs_a_type_name() -> None:
    with pytest.raises(ConnectorDefinitionError):
        connector("")


# ── 6. the catalog: conflicts and unknown types ────────────────────────────


def test_registering_two_different_connectors_under_one_type_raises() -> None:
    first = define_connector(
        type="dup", params=CountParams, outputs=Doubled, run=lambda p: {"doubled": 1}
    )
    second = define_connector(
        type="dup", params=CountParams, outputs=Doubled, run=lambda p: {"doubled": 2}
    )
    cat = Catalog(first)
    with pytest.raises(ConnectorConflict) as ei:
        cat.register(second)
    assert "'dup'" in str(ei.value)
    assert ei.value.type == "dup"
    assert cat.get("dup") is first  # the first one stays

    # Registering the very same connector again is harmless.
    cat.register(first)
    assert cat.get("dup") is first
    # Replacing on purpose is allowed.
    cat.register(second, replace=True)
    assert cat.get("dup") is second

    # Nor can a builtin be shadowed by accident.
    fake_http = define_connector(type="http", params=CountParams, outputs=None, run=lambda p: {})
    with pytest.raises(ConnectorConflict):
        Catalog(fake_http)


def test_catalog_get_of_an_unknown_type_lists_the_known_types() -> None:
    cat = Catalog(double)
    with pytest.raises(UnknownConnector) as ei:
        cat.get("dx-dubble")
    msg = str(ei.value)
    assert "'dx-dubble'" in msg
    for known in ("dx-double", "http", "slack", "transform", "trigger_webhook"):
        assert known in msg
    assert ei.value.type == "dx-dubble"
    assert ei.value.available == cat.types()
    assert cat.find("dx-dubble") is None
