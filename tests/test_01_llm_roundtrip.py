"""Seed proof 01: the LLM round trip (the original wfkit demo flow).

Round 1: the LLM sends six ops with two mistakes: a hallucinated block type
(skipped with ``block_type_not_registered``) and a reference to an output the
``http`` block does not declare (a structured validation error citing the
available outputs; the bad param is not applied). Round 2: a one-op fix-up
patch makes the workflow apply cleanly. Then the workflow runs for real
against loopback HTTP fakes (an enrichment API and Slack) and the refs
resolve: the Slack message carries the enriched name and the trigger email.
"""

from __future__ import annotations

from typing import Any

import pytest

from thodare_jupyter import SerializedWorkflow, WorkflowInvalid, apply_operations, run_in_memory


def _round1(enrich_url: str) -> list[dict[str, Any]]:
    return [
        {
            "operation_type": "add",
            "block_id": "trg",
            "type": "trigger_webhook",
            "name": "Webhook",
            "params": {"path": "/leads"},
        },
        {
            "operation_type": "add",
            "block_id": "enrich",
            "type": "http",
            "name": "Enrich Lead",
            "params": {
                "url": enrich_url,
                "method": "POST",
                "body": {"email": "{{trigger.body.email}}"},
            },
        },
        # hallucinated block type
        {
            "operation_type": "add",
            "block_id": "lookup",
            "type": "salesforce_lookup",
            "params": {"email": "{{trigger.body.email}}"},
        },
        # bad reference: http declares status/body/headers, not full_name
        {
            "operation_type": "add",
            "block_id": "notify",
            "type": "slack",
            "name": "Notify Sales",
            "params": {
                "operation": "send",
                "channel": "#sales",
                "text": "New lead: {{enrich.full_name}} ({{trigger.body.email}})",
            },
        },
        {"operation_type": "connect", "block_id": "trg", "target_block_id": "enrich"},
        {"operation_type": "connect", "block_id": "enrich", "target_block_id": "notify"},
    ]


FIX = [
    {
        "operation_type": "edit",
        "block_id": "notify",
        "params": {"text": "New lead: {{enrich.body.name}} ({{trigger.body.email}})"},
    }
]


def test_rejects_hallucinated_type_and_bad_ref_accepts_patch_then_executes(
    catalog, api_server, slack_server, slack_env
) -> None:
    empty = SerializedWorkflow.model_validate(
        {
            "version": "1.0.0",
            "metadata": {"name": "New Lead Notifier"},
            "blocks": [],
            "connections": [],
        }
    )
    empty_json = empty.to_json()

    r1 = apply_operations(empty, _round1(f"{api_server.url}/enrich"), catalog)

    # The input workflow is never mutated.
    assert empty.to_json() == empty_json
    assert r1.ok is False

    # The hallucinated block was skipped with the right reason code.
    assert len(r1.skipped_items) == 1
    skip = r1.skipped_items[0]
    assert skip.reason_code == "block_type_not_registered"
    assert skip.operation_type == "add"
    assert skip.block_id == "lookup"
    assert "salesforce_lookup" in skip.reason
    assert "http" in skip.reason  # the reason lists what is available
    assert "lookup" not in {b.id for b in r1.workflow.blocks}

    # The bad reference produced a structured validation error pointing at
    # the actual available outputs.
    ref_errs = [
        e for e in r1.validation_errors if e.block_id == "notify" and "full_name" in e.error
    ]
    assert len(ref_errs) == 1
    ref_err = ref_errs[0]
    assert ref_err.field == "text"
    assert ref_err.block_type == "slack"
    assert "does not declare output 'full_name'" in ref_err.error
    # Deliberate difference: our listing is sorted (the seed printed the
    # declaration order "status, body, headers").
    assert "Available: body, headers, status" in ref_err.error

    # Our design: a param an op set whose ref does not resolve is not applied.
    notify = next(b for b in r1.workflow.blocks if b.id == "notify")
    assert "text" not in notify.params
    assert notify.params["channel"] == "#sales"
    assert [(c.source, c.target) for c in r1.workflow.connections] == [
        ("trg", "enrich"),
        ("enrich", "notify"),
    ]

    # The summary the LLM reads back names both mistakes.
    assert "block_type_not_registered" in r1.summary
    assert "full_name" in r1.summary

    # Round 2: a one-op patch fixing the reference.
    r2 = apply_operations(r1.workflow, FIX, catalog)
    assert r2.ok is True, r2.summary
    assert r2.skipped_items == []
    assert r2.validation_errors == []
    assert "text" not in next(b for b in r1.workflow.blocks if b.id == "notify").params

    # Execute against real loopback fakes; refs must resolve.
    api_server.reply = {"name": "Alice Example", "company": "Acme Inc", "score": 87}
    run = run_in_memory(
        r2.workflow, {"body": {"email": "alice@example.com"}}, catalog=catalog, env=slack_env
    )
    assert run.status == "completed", run.error
    assert run.pause is None

    # The enrichment call got the trigger's email in its JSON body.
    assert len(api_server.requests) == 1
    assert api_server.requests[0]["method"] == "POST"
    assert api_server.requests[0]["path"] == "/enrich"
    assert api_server.requests[0]["body"] == {"email": "alice@example.com"}
    assert run.outputs["enrich"]["status"] == 200
    assert run.outputs["enrich"]["body"]["name"] == "Alice Example"

    # Slack got the resolved text (the seed read a mocked `_text`; we read
    # what the fake Slack API actually received).
    assert len(slack_server.requests) == 1
    posted = slack_server.requests[0]
    assert posted["path"] == "/chat.postMessage"
    assert posted["body"] == {
        "channel": "#sales",
        "text": "New lead: Alice Example (alice@example.com)",
    }
    assert posted["headers"]["Authorization"] == "Bearer xoxb-test"
    assert run.outputs["notify"]["ok"] is True
    assert run.outputs["notify"]["channel"] == "#sales"


def test_round1_workflow_does_not_run_until_fixed(catalog) -> None:
    """Without the fix-up the notify block lacks its required text: nothing runs."""
    r1 = apply_operations(
        {"blocks": [], "connections": []}, _round1("http://127.0.0.1:9/enrich"), catalog
    )
    missing = [e for e in r1.validation_errors if e.block_id == "notify" and e.field == "text"]
    assert any("Required field 'text'" in e.error for e in missing)
    with pytest.raises(WorkflowInvalid) as info:
        run_in_memory(r1.workflow, {"body": {"email": "a@b.c"}}, catalog=catalog, env={})
    assert "notify" in str(info.value)
    assert "'text'" in str(info.value)


def test_fix_up_patch_from_json_round_trips(catalog, api_server, slack_server, slack_env) -> None:
    """The workflow survives a JSON hop between rounds (as it would via the LLM/UI)."""
    r1 = apply_operations(
        {"blocks": [], "connections": []}, _round1(f"{api_server.url}/enrich"), catalog
    )
    r2 = apply_operations(r1.workflow.to_json(), FIX, catalog)
    assert r2.ok, r2.summary
    reloaded = SerializedWorkflow.from_json(r2.workflow.to_json())
    assert reloaded.to_json() == r2.workflow.to_json()
    api_server.reply = {"name": "Bob"}
    run = run_in_memory(reloaded, {"body": {"email": "bob@x.io"}}, catalog=catalog, env=slack_env)
    assert run.status == "completed", run.error
    assert slack_server.requests[0]["body"]["text"] == "New lead: Bob (bob@x.io)"
