"""A workflow JSON written for the seed (@thodare/engine) loads and runs here unchanged.

The document below is in the seed's exact form: camelCase ``sourceHandle``,
``enabled``/``position`` on blocks, ``metadata`` with name and description,
and a conditional branch: a ``transform`` whose output is ``{"result": true}``
or ``{"result": false}`` picks the ``"true"`` or ``"false"`` handle; the
untaken branch is skipped transitively. The slack blocks post to a real fake
Slack on loopback. ``to_json()`` gives the same document back: seed keys,
no nulls.
"""

import json

from durable_helpers import KitFactory

from thodare_jupyter import (
    Catalog,
    SerializedWorkflow,
    apply_operations,
    compile_workflow,
    resume_in_memory,
    run_in_memory,
)

SEED_JSON = """
{
  "version": "1.0.0",
  "metadata": {"name": "vip-router", "description": "Route VIP leads to their own channel"},
  "blocks": [
    {"id": "trg", "type": "trigger_webhook", "name": "Webhook",
     "position": {"x": 0.5, "y": 10.0}, "enabled": true, "params": {"path": "/leads"}},
    {"id": "classify", "type": "transform", "name": "Is VIP",
     "position": {"x": 200.0, "y": 10.0}, "enabled": true,
     "params": {"template": "{{trigger.vip}}"}},
    {"id": "vip_alert", "type": "slack", "name": "VIP alert", "enabled": true,
     "params": {"operation": "send", "channel": "#vip",
                "text": "VIP lead {{trigger.email}} (vip={{classify.result}})"}},
    {"id": "lead_note", "type": "slack", "enabled": true,
     "params": {"operation": "send", "channel": "#leads", "text": "New lead {{trigger.email}}"}},
    {"id": "audit", "type": "transform", "enabled": true,
     "params": {"template": {"posted": "{{lead_note.ts}}", "email": "{{trigger.email}}"}}}
  ],
  "connections": [
    {"source": "trg", "target": "classify"},
    {"source": "classify", "target": "vip_alert", "sourceHandle": "true"},
    {"source": "classify", "target": "lead_note", "sourceHandle": "false",
     "condition": "not a VIP"},
    {"source": "lead_note", "target": "audit"}
  ],
  "variables": {"team": "sales"}
}
"""


def test_seed_json_loads_with_its_camelcase_keys() -> None:
    wf = SerializedWorkflow.from_json(SEED_JSON)
    assert wf.name == "vip-router"
    assert [b.id for b in wf.blocks] == ["trg", "classify", "vip_alert", "lead_note", "audit"]
    handles = {(c.source, c.target): c.source_handle for c in wf.connections}
    assert handles == {
        ("trg", "classify"): None,
        ("classify", "vip_alert"): "true",
        ("classify", "lead_note"): "false",
        ("lead_note", "audit"): None,
    }
    assert wf.connections[2].condition == "not a VIP"
    assert wf.blocks[0].position is not None and wf.blocks[0].position.x == 0.5
    # It is a valid workflow for the builtin catalog as it stands.
    assert compile_workflow(wf, Catalog()) is wf


def test_to_json_round_trips_the_seed_keys_and_writes_no_nulls() -> None:
    wf = SerializedWorkflow.from_json(SEED_JSON)
    out = wf.to_json()

    assert json.loads(out) == json.loads(SEED_JSON)
    assert '"sourceHandle":"true"' in out
    assert "source_handle" not in out
    assert "null" not in out
    # Absent optional fields stay absent (no "sourceHandle": null, no "name": null).
    first_edge = json.loads(out)["connections"][0]
    assert first_edge == {"source": "trg", "target": "classify"}
    lead_note = json.loads(out)["blocks"][3]
    assert "name" not in lead_note and "position" not in lead_note
    # Stable: load what we wrote, write it again, same bytes.
    again = SerializedWorkflow.from_json(out)
    assert again == wf
    assert again.to_json() == out
    assert wf.to_dict() == json.loads(out)


def test_seed_defaults_are_filled_like_the_seed_does() -> None:
    # The seed's schema defaults `version`, `enabled` and `params`; a minimal document loads.
    minimal = '{"blocks": [{"id": "trg", "type": "trigger_webhook"}], "connections": []}'
    wf = SerializedWorkflow.from_json(minimal)
    assert json.loads(wf.to_json()) == {
        "version": "1.0.0",
        "blocks": [{"id": "trg", "type": "trigger_webhook", "enabled": True, "params": {}}],
        "connections": [],
    }


def test_the_true_branch_runs_and_the_false_branch_is_skipped_transitively(
    slack_server, slack_env
) -> None:
    run = run_in_memory(
        SEED_JSON, {"vip": True, "email": "ada@acme.io"}, env=slack_env
    )  # the JSON text, unchanged
    assert run.status == "completed", run.error
    assert run.outputs["classify"] == {"result": True}
    assert run.outputs["vip_alert"]["ok"] is True
    assert run.outputs["vip_alert"]["channel"] == "#vip"
    assert sorted(run.state.skipped) == ["audit", "lead_note"]
    assert "lead_note" not in run.outputs and "audit" not in run.outputs
    statuses = {s.block_id: s.status for s in run.steps}
    assert statuses == {
        "trg": "completed",
        "classify": "completed",
        "vip_alert": "completed",
        "lead_note": "skipped",
        "audit": "skipped",
    }

    assert len(slack_server.requests) == 1
    req = slack_server.requests[0]
    assert req["path"] == "/chat.postMessage"
    assert req["headers"]["Authorization"] == "Bearer xoxb-test"
    # An embedded boolean is written as JSON writes it (`true`), as in the seed.
    assert req["body"] == {"channel": "#vip", "text": "VIP lead ada@acme.io (vip=true)"}


def test_the_false_branch_runs_through_to_its_downstream_block(slack_server, slack_env) -> None:
    wf = SerializedWorkflow.from_json(SEED_JSON)
    run = run_in_memory(wf, {"vip": False, "email": "bob@acme.io"}, env=slack_env)
    assert run.status == "completed", run.error
    assert run.outputs["classify"] == {"result": False}
    assert run.state.skipped == ["vip_alert"]
    assert len(slack_server.requests) == 1
    assert slack_server.requests[0]["body"] == {"channel": "#leads", "text": "New lead bob@acme.io"}
    ts = run.outputs["lead_note"]["ts"]
    assert ts
    assert run.outputs["audit"] == {"result": {"posted": ts, "email": "bob@acme.io"}}
    # Running did not touch the document.
    assert json.loads(wf.to_json()) == json.loads(SEED_JSON)


def test_llm_edits_to_a_seed_workflow_keep_the_seed_keys() -> None:
    res = apply_operations(
        SEED_JSON,
        [
            {
                "operation_type": "add",
                "block_id": "vip_log",
                "type": "transform",
                "params": {"template": {"who": "{{trigger.email}}"}},
            },
            {
                "operation_type": "connect",
                "block_id": "classify",
                "target_block_id": "vip_log",
                "source_handle": "true",
            },
        ],
    )
    assert res.ok, res.summary
    out = json.loads(res.workflow.to_json())
    assert {"source": "classify", "target": "vip_log", "sourceHandle": "true"} in out["connections"]
    assert "source_handle" not in res.workflow.to_json()
    assert "null" not in res.workflow.to_json()
    # Everything that was there before is still there, unchanged.
    before = json.loads(SEED_JSON)
    assert out["blocks"][: len(before["blocks"])] == before["blocks"]
    assert out["connections"][: len(before["connections"])] == before["connections"]


# ── human_approval: the seed's outputs (approved, by, note) ───────────────────

APPROVAL_JSON = """
{
  "version": "1.0.0",
  "metadata": {"name": "discount-approval"},
  "blocks": [
    {"id": "trg", "type": "trigger_webhook", "enabled": true, "params": {"path": "/deals"}},
    {"id": "approve", "type": "human_approval", "enabled": true,
     "params": {"prompt": "Approve a {{trigger.pct}}% discount?", "timeoutHours": 24}},
    {"id": "record", "type": "transform", "enabled": true,
     "params": {"template": {"ok": "{{approve.approved}}", "who": "{{approve.by}}",
                            "why": "{{approve.note}}", "late": "{{approve.timedOut}}"}}}
  ],
  "connections": [
    {"source": "trg", "target": "approve"},
    {"source": "approve", "target": "record"}
  ]
}
"""


def test_a_seed_approval_workflow_reading_note_compiles() -> None:
    # The seed declares human_approval's outputs as approved, by and note.
    wf = SerializedWorkflow.from_json(APPROVAL_JSON)
    assert compile_workflow(wf, Catalog()) is wf


def test_a_seed_approval_workflow_runs_in_memory_with_the_seed_payload() -> None:
    paused = run_in_memory(APPROVAL_JSON, {"pct": 20}, env={})
    assert paused.status == "paused" and paused.pause is not None
    assert paused.pause.metadata["prompt"] == "Approve a 20% discount?"
    # The seed's resumer sends {approved, by, note}; `comment` says the same thing.
    done = resume_in_memory(paused, {"approved": True, "by": "ada", "note": "ok"})
    assert done.status == "completed", done.error
    assert done.outputs["approve"] == {
        "approved": True, "by": "ada", "note": "ok", "comment": "ok", "timedOut": False,
    }  # fmt: skip
    assert done.outputs["record"] == {
        "result": {"ok": True, "who": "ada", "why": "ok", "late": False}
    }
    late = resume_in_memory(paused, timed_out=True)
    assert late.outputs["approve"] == {
        "approved": None, "by": None, "note": None, "comment": None, "timedOut": True,
    }  # fmt: skip
    assert late.outputs["record"] == {
        "result": {"ok": None, "who": None, "why": None, "late": True}
    }


def test_a_seed_approval_workflow_runs_durably_after_kit_approve(any_kits: KitFactory) -> None:
    kit = any_kits().start()
    h = kit.run(kit.compile(APPROVAL_JSON), {"pct": 20})
    kit.approve(h.id, "approve", by="ada", comment="ok")
    out = h.result(timeout=30)
    assert out["approve"] == {
        "approved": True, "by": "ada", "note": "ok", "comment": "ok", "timedOut": False,
    }  # fmt: skip
    assert out["record"] == {"result": {"ok": True, "who": "ada", "why": "ok", "late": False}}


def test_a_timed_out_seed_approval_carries_every_key(any_kits: KitFactory) -> None:
    kit = any_kits().start()
    quick = json.loads(APPROVAL_JSON)
    quick["blocks"][1]["params"]["timeoutHours"] = 0.5 / 3600  # half a second
    out = kit.run(quick, {"pct": 5}).result(timeout=30)
    assert out["approve"] == {
        "approved": None, "by": None, "note": None, "comment": None, "timedOut": True,
    }  # fmt: skip
    assert out["record"] == {"result": {"ok": None, "who": None, "why": None, "late": True}}


def test_a_name_written_at_the_top_is_the_workflows_name() -> None:
    wf = SerializedWorkflow.model_validate(
        {"name": "two", "description": "d", "blocks": [], "connections": []}
    )
    assert (wf.name, wf.metadata and wf.metadata.description) == ("two", "d")
    assert json.loads(wf.to_json())["metadata"] == {"name": "two", "description": "d"}
    kept = SerializedWorkflow.from_json('{"name": "top", "metadata": {"name": "meta"}}')
    assert kept.name == "meta"  # the metadata says otherwise: it wins
