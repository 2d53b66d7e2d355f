"""Seed proof 09: the guarantees of the LLM-facing surface.

- Hidden params (credentials) never land in the workflow from an op, are
  reported as "not exposed" without echoing the value, are never shown by
  ``redact_for_llm`` / ``Catalog.describe_for_llm``, and survive when the LLM
  edits other params of the block.
- User-only params are shown to the LLM but cannot be set by an op.
- A ref to an output a block does not declare gives a structured error that
  cites the available outputs.
- One bad op is skipped with a typed reason; the rest of the batch applies.
- An edge that would close a cycle is refused with ``cycle_introduced``.

The same guarantees hold for user-defined connectors (``Hidden[...]`` /
``UserOnly[...]``), not only for the builtins.
"""

from __future__ import annotations

import json
from typing import Any

from ops_helpers import EMPTY
from pydantic import BaseModel, Field

from thodare_jupyter import (
    Catalog,
    Hidden,
    SerializedWorkflow,
    UserOnly,
    apply_operations,
    define_connector,
    redact_for_llm,
    run_in_memory,
)

INJECTED = "xoxb-LLM-INJECTED-CREDENTIAL"
USER_TOKEN = "xoxb-USER-SECRET-777"


def _block(wf: SerializedWorkflow, block_id: str) -> Any:
    return next(b for b in wf.blocks if b.id == block_id)


def _user_slack_wf() -> SerializedWorkflow:
    """A workflow a person wrote, with the hidden token filled in."""
    return SerializedWorkflow.model_validate(
        {
            "blocks": [
                {"id": "trg", "type": "trigger_webhook", "params": {}},
                {
                    "id": "n",
                    "type": "slack",
                    "params": {
                        "operation": "send",
                        "channel": "#general",
                        "text": "hi",
                        "accessToken": USER_TOKEN,
                    },
                },
            ],
            "connections": [{"source": "trg", "target": "n"}],
        }
    )


# ── hidden params ──────────────────────────────────────────────────────────


def test_hidden_params_are_stripped_before_they_land_in_the_workflow(catalog) -> None:
    ops = [
        {"operation_type": "add", "block_id": "trg", "type": "trigger_webhook", "params": {}},
        {
            "operation_type": "add",
            "block_id": "n",
            "type": "slack",
            "params": {
                "operation": "send",
                "channel": "#general",
                "text": "hi",
                "accessToken": INJECTED,
            },
        },
    ]
    r = apply_operations(EMPTY, ops, catalog)
    slack = _block(r.workflow, "n")
    assert "accessToken" not in slack.params
    # The rest of the op applied.
    assert slack.params == {"operation": "send", "channel": "#general", "text": "hi"}
    assert r.skipped_items == []
    # A structured error so the LLM knows what happened.
    errs = [e for e in r.validation_errors if e.block_id == "n" and e.field == "accessToken"]
    assert len(errs) == 1
    assert "not exposed by block 'slack'" in errs[0].error
    assert errs[0].value is None  # the value is not echoed back
    assert r.ok is False
    # The smuggled value is nowhere in the result (workflow, errors, summary).
    assert INJECTED not in r.model_dump_json()


def test_hidden_param_survives_an_llm_edit_of_other_params(catalog) -> None:
    wf = _user_slack_wf()
    r = apply_operations(
        wf,
        [
            {
                "operation_type": "edit",
                "block_id": "n",
                "params": {"text": "new text", "channel": "#sales"},
            }
        ],
        catalog,
    )
    assert r.ok, r.summary
    params = _block(r.workflow, "n").params
    assert params["accessToken"] == USER_TOKEN
    assert params["text"] == "new text"
    assert params["channel"] == "#sales"
    # `update` (alias of edit) and a rename keep it as well.
    r2 = apply_operations(
        r.workflow,
        [
            {
                "operation_type": "update",
                "block_id": "n",
                "name": "Notify",
                "params": {"text": "again"},
            }
        ],
        catalog,
    )
    assert r2.ok, r2.summary
    assert _block(r2.workflow, "n").params["accessToken"] == USER_TOKEN
    assert _block(r2.workflow, "n").name == "Notify"


def test_an_op_cannot_overwrite_or_clear_an_existing_hidden_param(catalog) -> None:
    wf = _user_slack_wf()
    for value in (INJECTED, None, "", "{{env.ATTACKER_TOKEN}}", {"nested": INJECTED}):
        r = apply_operations(
            wf,
            [
                {
                    "operation_type": "edit",
                    "block_id": "n",
                    "params": {"accessToken": value, "text": "changed"},
                }
            ],
            catalog,
        )
        params = _block(r.workflow, "n").params
        assert params["accessToken"] == USER_TOKEN, value
        assert params["text"] == "changed"  # the rest of the op applied
        assert any(
            e.field == "accessToken" and "not exposed" in e.error for e in r.validation_errors
        )
        assert INJECTED not in r.summary
        assert INJECTED not in json.dumps([e.model_dump() for e in r.validation_errors])


def test_llm_feedback_never_reveals_a_hidden_param_already_in_the_workflow(catalog) -> None:
    """The summary and errors the LLM reads never carry the user's token or its name."""
    wf = _user_slack_wf()
    r = apply_operations(
        wf,
        [
            {"operation_type": "edit", "block_id": "n", "params": {"bogus": 1}},
            {"operation_type": "edit", "block_id": "ghost", "params": {"text": "x"}},
        ],
        catalog,
    )
    assert not r.ok
    feedback = r.summary + json.dumps([e.model_dump() for e in r.validation_errors])
    feedback += json.dumps([s.model_dump() for s in r.skipped_items])
    assert USER_TOKEN not in feedback
    assert "accessToken" not in feedback
    # The unknown field is named with what the LLM may set instead.
    bogus = next(e for e in r.validation_errors if e.field == "bogus")
    assert "not exposed by block 'slack'" in bogus.error
    assert "Allowed: channel, operation, text, threadTs" in bogus.error


def test_hidden_ref_problem_is_not_reported_to_the_llm_by_name(catalog) -> None:
    """A user's hidden param with a bad ref must not leak its name or value via LLM feedback."""
    wf = _user_slack_wf()
    _block(wf, "n").params["accessToken"] = "{{vault.slack_token_prod}}"
    r = apply_operations(
        wf, [{"operation_type": "edit", "block_id": "n", "params": {"text": "t"}}], catalog
    )
    feedback = r.summary + json.dumps([e.model_dump() for e in r.validation_errors])
    assert "accessToken" not in feedback
    assert "slack_token_prod" not in feedback
    assert _block(r.workflow, "n").params["accessToken"] == "{{vault.slack_token_prod}}"


def test_redact_for_llm_strips_hidden_params_and_leaves_the_workflow_alone(catalog) -> None:
    wf = _user_slack_wf()
    before = wf.to_json()
    shown = redact_for_llm(wf, catalog)
    text = json.dumps(shown)
    assert USER_TOKEN not in text
    assert "accessToken" not in text
    slack = next(b for b in shown["blocks"] if b["id"] == "n")
    assert slack["params"] == {"operation": "send", "channel": "#general", "text": "hi"}
    assert wf.to_json() == before  # not mutated
    assert _block(wf, "n").params["accessToken"] == USER_TOKEN


def test_catalog_describe_for_llm_never_shows_hidden_params(catalog) -> None:
    described = catalog.describe_for_llm()
    text = json.dumps(described)
    assert "accessToken" not in text
    by_type = {d["type"]: d for d in described}
    assert set(by_type) == set(catalog.types())
    assert set(by_type["slack"]["params"]) == {"operation", "channel", "text", "threadTs"}
    assert by_type["slack"]["outputs"] == ["ok", "ts", "channel"]
    assert by_type["http"]["outputs"] == ["status", "body", "headers"]
    # User-only params are shown, marked as such.
    approval = by_type["human_approval"]["params"]
    assert approval["resumeBaseUrl"].get("user_only") is True
    assert approval["prompt"]["required"] is True
    assert "user_only" not in approval["prompt"]


# ── user-only params ───────────────────────────────────────────────────────


def test_user_only_params_cannot_be_set_by_an_op(catalog) -> None:
    ops = [
        {"operation_type": "add", "block_id": "trg", "type": "trigger_webhook", "params": {}},
        {
            "operation_type": "add",
            "block_id": "ok",
            "type": "human_approval",
            "params": {"prompt": "Ship?", "resumeBaseUrl": "https://evil.example/steal"},
        },
        {"operation_type": "connect", "block_id": "trg", "target_block_id": "ok"},
    ]
    r = apply_operations(EMPTY, ops, catalog)
    assert _block(r.workflow, "ok").params == {"prompt": "Ship?"}
    errs = [e for e in r.validation_errors if e.field == "resumeBaseUrl"]
    assert len(errs) == 1
    assert "user only" in errs[0].error
    assert "evil.example" not in _block(r.workflow, "ok").model_dump_json()


def test_user_set_user_only_param_survives_llm_edits(catalog) -> None:
    wf = SerializedWorkflow.model_validate(
        {
            "blocks": [
                {"id": "trg", "type": "trigger_webhook", "params": {}},
                {
                    "id": "ok",
                    "type": "human_approval",
                    "params": {"prompt": "Ship?", "resumeBaseUrl": "https://ops.example.com/r"},
                },
            ],
            "connections": [{"source": "trg", "target": "ok"}],
        }
    )
    r = apply_operations(
        wf,
        [
            {
                "operation_type": "edit",
                "block_id": "ok",
                "params": {"prompt": "Ship now?", "resumeBaseUrl": "https://evil.example/steal"},
            }
        ],
        catalog,
    )
    params = _block(r.workflow, "ok").params
    assert params == {"prompt": "Ship now?", "resumeBaseUrl": "https://ops.example.com/r"}
    assert any(e.field == "resumeBaseUrl" for e in r.validation_errors)
    # User-only values are visible to the LLM (only hidden ones are redacted).
    shown = redact_for_llm(r.workflow, catalog)
    assert shown["blocks"][1]["params"]["resumeBaseUrl"] == "https://ops.example.com/r"


# ── user-defined connectors get the same guarantees ────────────────────────


class CrmParams(BaseModel):
    query: str
    api_key: Hidden[str] = Field(description="CRM-KEY-DESCRIPTION-DO-NOT-SHOW")
    region: UserOnly[str] = "eu"


class CrmOut(BaseModel):
    hits: int
    region: str
    key_ok: bool


def _crm_catalog() -> Catalog:
    def search(p: CrmParams) -> CrmOut:
        return CrmOut(hits=len(p.query), region=p.region, key_ok=p.api_key == "crm-user-key")

    return Catalog(
        define_connector(
            type="crm-search",
            params=CrmParams,
            outputs=CrmOut,
            run=search,
            description="Search the CRM",
        )
    )


def test_custom_connector_hidden_and_user_only_end_to_end() -> None:
    cat = _crm_catalog()
    described = next(d for d in cat.describe_for_llm() if d["type"] == "crm-search")
    assert "api_key" not in json.dumps(described)
    assert "CRM-KEY-DESCRIPTION-DO-NOT-SHOW" not in json.dumps(described)
    assert described["params"]["region"].get("user_only") is True
    assert described["params"]["query"]["required"] is True

    # A person wrote the key and the region.
    wf = SerializedWorkflow.model_validate(
        {
            "blocks": [
                {"id": "trg", "type": "trigger_webhook", "params": {}},
                {
                    "id": "crm",
                    "type": "crm-search",
                    "params": {"query": "a", "api_key": "crm-user-key", "region": "us"},
                },
            ],
            "connections": [{"source": "trg", "target": "crm"}],
        }
    )
    r = apply_operations(
        wf,
        [
            {
                "operation_type": "edit",
                "block_id": "crm",
                "params": {"query": "{{trigger.q}}", "api_key": "llm-key", "region": "cn"},
            }
        ],
        cat,
    )
    assert _block(r.workflow, "crm").params == {
        "query": "{{trigger.q}}",
        "api_key": "crm-user-key",
        "region": "us",
    }
    fields = {e.field: e.error for e in r.validation_errors}
    assert set(fields) == {"api_key", "region"}
    assert "not exposed by block 'crm-search'" in fields["api_key"]
    assert "Allowed: query" in fields["api_key"]
    assert "user only" in fields["region"]
    assert "crm-user-key" not in r.summary
    assert "api_key" not in redact_for_llm(r.workflow, cat)["blocks"][1]["params"]

    # The hidden value that survived the edit is what the step runs with.
    run = run_in_memory(r.workflow, {"q": "hello"}, catalog=cat, env={})
    assert run.status == "completed", run.error
    assert run.outputs["crm"] == {"hits": 5, "region": "us", "key_ok": True}


# ── refs ───────────────────────────────────────────────────────────────────


def test_ref_to_undeclared_output_cites_available_outputs(catalog) -> None:
    ops = [
        {"operation_type": "add", "block_id": "trg", "type": "trigger_webhook", "params": {}},
        {
            "operation_type": "add",
            "block_id": "fetch",
            "type": "http",
            "params": {"url": "https://example.com"},
        },
        # {{fetch.full_name}} does not exist: http declares status/body/headers.
        {
            "operation_type": "add",
            "block_id": "send",
            "type": "slack",
            "params": {"operation": "send", "channel": "#x", "text": "hi {{fetch.full_name}}"},
        },
        {"operation_type": "connect", "block_id": "trg", "target_block_id": "fetch"},
        {"operation_type": "connect", "block_id": "fetch", "target_block_id": "send"},
    ]
    r = apply_operations(EMPTY, ops, catalog)
    ref_errs = [
        e
        for e in r.validation_errors
        if e.block_id == "send" and e.field == "text" and "full_name" in e.error
    ]
    assert len(ref_errs) == 1
    err = ref_errs[0]
    assert err.block_type == "slack"
    assert "does not declare output 'full_name'" in err.error
    # Deliberate difference: sorted listing (seed: "status, body, headers").
    assert "Available: body, headers, status" in err.error
    assert err.value == "{{fetch.full_name}}"
    assert "full_name" in r.summary


def test_ref_to_undeclared_output_nested_in_a_dict_param(catalog) -> None:
    ops = [
        {"operation_type": "add", "block_id": "trg", "type": "trigger_webhook", "params": {}},
        {
            "operation_type": "add",
            "block_id": "t",
            "type": "transform",
            "params": {"template": {"x": 1}},
        },
        {
            "operation_type": "add",
            "block_id": "post",
            "type": "http",
            "params": {
                "url": "https://example.com",
                "method": "POST",
                "body": {"deep": ["ok", {"v": "{{t.nope}}"}]},
            },
        },
        {"operation_type": "connect", "block_id": "trg", "target_block_id": "t"},
        {"operation_type": "connect", "block_id": "t", "target_block_id": "post"},
    ]
    r = apply_operations(EMPTY, ops, catalog)
    err = next(e for e in r.validation_errors if e.block_id == "post")
    assert err.field == "body"
    assert "does not declare output 'nope'" in err.error
    assert "Available: result" in err.error


def test_refs_to_unknown_or_non_upstream_blocks_are_structured_errors(catalog) -> None:
    ops = [
        {"operation_type": "add", "block_id": "trg", "type": "trigger_webhook", "params": {}},
        {
            "operation_type": "add",
            "block_id": "a",
            "type": "transform",
            "params": {"template": "{{b.result}}"},
        },
        {
            "operation_type": "add",
            "block_id": "b",
            "type": "transform",
            "params": {"template": "{{ghost.result}}"},
        },
        {"operation_type": "connect", "block_id": "trg", "target_block_id": "a"},
        {"operation_type": "connect", "block_id": "trg", "target_block_id": "b"},
    ]
    r = apply_operations(EMPTY, ops, catalog)
    by_block: dict[str, str] = {}
    for e in r.validation_errors:
        by_block[e.block_id] = by_block.get(e.block_id, "") + e.error + "\n"
    assert "'a' references 'b' but b is not upstream" in by_block["a"]
    assert "Reference 'ghost' does not match any block" in by_block["b"]
    # Both params were refused, so both blocks now miss their template.
    assert _block(r.workflow, "a").params == {}
    assert "Required field 'template' is missing." in by_block["a"]


def test_untyped_outputs_accept_any_field(catalog) -> None:
    """trigger_webhook's output is untyped, so {{trg.anything}} is fine."""
    ops = [
        {"operation_type": "add", "block_id": "trg", "type": "trigger_webhook", "params": {}},
        {
            "operation_type": "add",
            "block_id": "t",
            "type": "transform",
            "params": {"template": "{{trg.whatever.deep}} {{trigger.x}}"},
        },
        {"operation_type": "connect", "block_id": "trg", "target_block_id": "t"},
    ]
    r = apply_operations(EMPTY, ops, catalog)
    assert r.ok, r.summary


# ── bad ops and cycles ─────────────────────────────────────────────────────


def test_a_single_bad_op_skips_with_a_typed_reason_and_the_batch_goes_on(catalog) -> None:
    ops = [
        {"operation_type": "add", "block_id": "trg", "type": "trigger_webhook", "params": {}},
        # unknown block type: must skip, not raise
        {"operation_type": "add", "block_id": "x", "type": "totally_made_up", "params": {}},
        # valid follow-up still applies
        {
            "operation_type": "add",
            "block_id": "fetch",
            "type": "http",
            "params": {"url": "https://example.com"},
        },
        {"operation_type": "connect", "block_id": "trg", "target_block_id": "fetch"},
    ]
    r = apply_operations(EMPTY, ops, catalog)
    assert len(r.skipped_items) == 1
    assert r.skipped_items[0].reason_code == "block_type_not_registered"
    assert r.skipped_items[0].block_id == "x"
    assert r.skipped_items[0].operation_type == "add"
    ids = {b.id for b in r.workflow.blocks}
    assert ids == {"trg", "fetch"}
    assert len(r.workflow.connections) == 1
    assert r.validation_errors == []
    assert r.ok is False  # a skip means not ok


def test_malformed_ops_are_skipped_not_raised(catalog) -> None:
    ops: list[Any] = [
        None,
        42,
        "add a block please",
        {"operation_type": "explode", "block_id": "a"},
        {"block_id": "no-type"},
        {"operation_type": "add", "block_id": "t"},  # missing type
        {"operation_type": "connect", "block_id": "t"},  # missing target
        {"operation_type": "add", "block_id": "t", "type": "transform", "params": {"template": 1}},
    ]
    r = apply_operations(EMPTY, ops, catalog)
    assert [b.id for b in r.workflow.blocks] == ["t"]
    assert len(r.skipped_items) == 7
    assert {s.reason_code for s in r.skipped_items} == {"invalid_operation"}
    assert all(s.reason for s in r.skipped_items)


def test_connecting_in_a_cycle_is_refused_with_a_typed_skip(catalog) -> None:
    ops = [
        {"operation_type": "add", "block_id": "a", "type": "transform", "params": {"template": {}}},
        {"operation_type": "add", "block_id": "b", "type": "transform", "params": {"template": {}}},
        {"operation_type": "connect", "block_id": "a", "target_block_id": "b"},
        # would cycle
        {"operation_type": "connect", "block_id": "b", "target_block_id": "a"},
    ]
    r = apply_operations(EMPTY, ops, catalog)
    skips = [s for s in r.skipped_items if s.reason_code == "cycle_introduced"]
    assert len(skips) == 1
    assert skips[0].block_id == "b"
    assert skips[0].operation_type == "connect"
    assert [(c.source, c.target) for c in r.workflow.connections] == [("a", "b")]


def test_longer_cycles_self_loops_and_disabled_blocks_are_refused(catalog) -> None:
    wf = SerializedWorkflow.model_validate(
        {
            "blocks": [
                {"id": "a", "type": "transform", "params": {"template": 1}},
                {"id": "b", "type": "transform", "params": {"template": 1}},
                {"id": "c", "type": "transform", "params": {"template": 1}, "enabled": False},
                {"id": "d", "type": "transform", "params": {"template": 1}},
            ],
            "connections": [{"source": "a", "target": "b"}, {"source": "b", "target": "c"}],
        }
    )
    ops = [
        {"operation_type": "connect", "block_id": "c", "target_block_id": "a"},  # via disabled c
        {"operation_type": "connect", "block_id": "d", "target_block_id": "d"},  # self loop
        {
            "operation_type": "connect",
            "block_id": "c",
            "target_block_id": "a",
            "source_handle": "error",
        },  # a handle does not make it acyclic
        {"operation_type": "connect", "block_id": "c", "target_block_id": "d"},  # fine
    ]
    r = apply_operations(wf, ops, catalog)
    assert [s.reason_code for s in r.skipped_items] == ["cycle_introduced"] * 3
    assert [(c.source, c.target) for c in r.workflow.connections] == [
        ("a", "b"),
        ("b", "c"),
        ("c", "d"),
    ]
    # The input is untouched.
    assert len(wf.connections) == 2
