"""Seed proof 13: red-teaming the LLM-facing surface (``apply_operations``).

``apply_operations`` is the boundary between what a model emits and what a
workflow may contain. This proof feeds it what a misaligned or naive model
would really produce and shows that:

- prototype-pollution names (``__proto__``, ``__class__``, ``constructor``,
  ``prototype``) never become params, and as block ids they are plain ids:
  lookups by id stay exact, and ``{{ref}}`` paths never reach attributes;
- a hidden param named at the top level is dropped and reported without
  echoing its value, while a secret tucked inside a free-form field (http
  headers) reaches the connector, by design (documented below);
- an oversized batch stops at ``max_ops`` with ``too_many_operations``, and a
  mixed 50-op batch applies the good ops and skips the bad ones;
- self-loops and longer cycles are refused with ``cycle_introduced``;
- references to downstream or sibling blocks are flagged (not only unknown ones);
- references to a disabled block are flagged by compile; forced to run with
  ``validate=False`` a raw ref resolves to ``None`` and an embedded one to ``""``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from ops_helpers import EMPTY, add, connect
from pydantic import BaseModel

from thodare_jupyter import (
    Catalog,
    SerializedWorkflow,
    WorkflowInvalid,
    apply_operations,
    compile_workflow,
    define_connector,
    run_in_memory,
)

HOSTILE_NAMES = ("__proto__", "__class__", "constructor", "prototype")


# ── prototype-pollution names ──────────────────────────────────────────────


def test_prototype_pollution_param_names_never_become_params(catalog: Catalog) -> None:
    hostile = {
        "__proto__": {"isAdmin": True},
        "__class__": {"name": "evil"},
        "constructor": {"name": "evil"},
        "prototype": {"polluted": True},
    }
    ops = [
        add("trg", "trigger_webhook"),
        {
            "operation_type": "add",
            "block_id": "n",
            "type": "slack",
            "params": {"operation": "send", "channel": "#x", "text": "hi", **hostile},
        },
        connect("trg", "n"),
    ]
    r = apply_operations(EMPTY, ops, catalog)

    slack = next(b for b in r.workflow.blocks if b.id == "n")
    # Only the real params landed; the rest of the op still applied.
    assert slack.params == {"operation": "send", "channel": "#x", "text": "hi"}
    assert not r.skipped_items
    # Each hostile key is reported by name, with the allowed fields listed.
    by_field = {i.field: i for i in r.validation_errors if i.block_id == "n"}
    for name in HOSTILE_NAMES:
        assert name in by_field, r.summary
        assert "not exposed" in by_field[name].error
        assert "Allowed: channel, operation, text, threadTs" in by_field[name].error
    assert not r.ok
    # Nothing reached the persisted document, and the model class was not touched.
    doc = json.loads(r.workflow.to_json())
    assert doc["blocks"][1]["params"] == {"operation": "send", "channel": "#x", "text": "hi"}
    for leaked in ("isAdmin", "polluted", "evil"):
        assert leaked not in r.workflow.to_json()
    assert not hasattr(slack, "isAdmin")
    assert not hasattr(slack.params, "isAdmin")


def test_edit_op_cannot_add_prototype_pollution_params_either(catalog: Catalog) -> None:
    base = apply_operations(EMPTY, [add("t", "transform", template={"v": 1})], catalog).workflow
    r = apply_operations(
        base,
        [
            {
                "operation_type": "edit",
                "block_id": "t",
                "params": {name: {"polluted": True} for name in HOSTILE_NAMES},
            }
        ],
        catalog,
    )
    assert r.workflow.blocks[0].params == {"template": {"v": 1}}
    assert {i.field for i in r.validation_errors} == set(HOSTILE_NAMES)


@pytest.mark.parametrize("hostile_id", HOSTILE_NAMES)
def test_prototype_pollution_block_ids_are_plain_ids(catalog: Catalog, hostile_id: str) -> None:
    # In Python a dict has no prototype, so these ids are allowed (our design):
    # what matters is that lookups stay exact. The block is stored under its
    # id, is referenced like any other block, and nothing else answers to it.
    ops = [
        add(hostile_id, "transform", template={"who": hostile_id}),
        add("reader", "transform", template={"got": f"{{{{{hostile_id}.result}}}}"}),
        connect(hostile_id, "reader"),
    ]
    r = apply_operations(EMPTY, ops, catalog)
    assert r.ok, r.summary
    assert [b.id for b in r.workflow.blocks] == [hostile_id, "reader"]

    run = run_in_memory(r.workflow, catalog=catalog, env={})
    assert run.status == "completed", run.error
    assert run.outputs[hostile_id] == {"result": {"who": hostile_id}}
    assert run.outputs["reader"] == {"result": {"got": {"who": hostile_id}}}
    # No other id collides with the hostile one.
    assert set(run.outputs) == {hostile_id, "reader"}


def test_a_ref_to_a_hostile_id_that_no_block_has_is_flagged(catalog: Catalog) -> None:
    r = apply_operations(
        EMPTY,
        [
            add("trg", "trigger_webhook"),
            add("t", "transform", template="{{__proto__.result}}"),
            connect("trg", "t"),
        ],
        catalog,
    )
    issue = next(i for i in r.validation_errors if i.block_id == "t" and i.field == "template")
    assert "does not match any block id or name" in issue.error
    # The op's unresolvable param was not applied (our design: reverted at batch end).
    assert "template" not in r.workflow.blocks[1].params


def test_ref_paths_never_reach_python_attributes(catalog: Catalog) -> None:
    # An untyped connector allows refs to any field, so validation lets these
    # through; the resolver follows dict keys and list indices only.
    class P(BaseModel):
        pass

    def text_out(p: P) -> Any:
        return "a string, which has __class__, __len__ and upper as attributes"

    catalog.register(define_connector(type="text_out", params=P, outputs=None, run=text_out))
    wf = SerializedWorkflow.model_validate(
        {
            "blocks": [
                {"id": "trg", "type": "trigger_webhook"},
                {"id": "u", "type": "text_out"},
                {
                    "id": "probe",
                    "type": "transform",
                    "params": {
                        "template": {
                            "cls": "{{u.__class__}}",
                            "len": "{{u.__len__}}",
                            "upper": "{{u.upper}}",
                            "trig_cls": "{{trigger.__class__}}",
                            "env_cls": "{{env.__class__}}",
                            "embedded": "[{{u.__class__.__name__}}]",
                        }
                    },
                },
            ],
            "connections": [{"source": "trg", "target": "u"}, {"source": "u", "target": "probe"}],
        }
    )
    run = run_in_memory(wf, {"x": 1}, catalog=catalog, env={"HOME": "/root"})
    assert run.status == "completed", run.error
    assert run.outputs["probe"]["result"] == {
        "cls": None,
        "len": None,
        "upper": None,
        "trig_cls": None,
        "env_cls": None,
        "embedded": "[]",
    }


# ── hidden-param smuggling ─────────────────────────────────────────────────


def test_hidden_param_named_at_top_level_is_dropped_and_never_echoed(catalog: Catalog) -> None:
    secret = "xoxb-SMUGGLED-SECRET"
    ops = [
        add("trg", "trigger_webhook"),
        add("n", "slack", operation="send", channel="#x", text="hi", accessToken=secret),
        connect("trg", "n"),
    ]
    r = apply_operations(EMPTY, ops, catalog)
    slack = next(b for b in r.workflow.blocks if b.id == "n")
    assert "accessToken" not in slack.params
    issue = next(i for i in r.validation_errors if i.field == "accessToken")
    assert "not exposed" in issue.error
    assert issue.value is None
    # The value appears nowhere in what goes back to the LLM or is persisted.
    assert secret not in r.summary
    assert secret not in r.model_dump_json()
    # The same holds for an edit op.
    r2 = apply_operations(
        r.workflow,
        [{"operation_type": "edit", "block_id": "n", "params": {"accessToken": secret}}],
        catalog,
    )
    assert "accessToken" not in r2.workflow.blocks[1].params
    assert secret not in r2.model_dump_json()


def test_documented_secret_nested_in_a_free_form_field_reaches_the_tool(
    catalog: Catalog, api_server: Any
) -> None:
    # DOCUMENTED, by design: visibility protects top-level param NAMES only.
    # Free-form fields (http headers/body, a transform template) are passed
    # through as written -- that is how you send JSON that looks like JSON.
    # Putting secrets in free-form fields is the user's responsibility.
    ops = [
        add("trg", "trigger_webhook"),
        add(
            "ex",
            "http",
            url=f"{api_server.url}/exfil",
            method="POST",
            headers={"Authorization": "Bearer SECRET-LEAK"},
            body={"stolen": "data"},
        ),
        connect("trg", "ex"),
    ]
    r = apply_operations(EMPTY, ops, catalog)
    assert r.ok, r.summary
    run = run_in_memory(r.workflow, {}, catalog=catalog, env={})
    assert run.status == "completed", run.error
    [req] = api_server.requests
    assert req["method"] == "POST"
    assert req["path"] == "/exfil"
    assert req["headers"]["Authorization"] == "Bearer SECRET-LEAK"
    assert req["body"] == {"stolen": "data"}


# ── oversized and mixed batches ────────────────────────────────────────────


def test_ops_past_max_ops_are_skipped_as_too_many_operations(catalog: Catalog) -> None:
    ops = [add(f"b{i}", "transform", template={"i": i}) for i in range(15)]
    r = apply_operations(EMPTY, ops, catalog, max_ops=10)
    assert [b.id for b in r.workflow.blocks] == [f"b{i}" for i in range(10)]
    [skip] = r.skipped_items
    assert skip.reason_code == "too_many_operations"
    assert "10" in skip.reason and "5" in skip.reason
    assert not r.ok


def test_default_batch_limit_is_500(catalog: Catalog) -> None:
    ops = [add(f"b{i}", "transform", template={"i": i}) for i in range(501)]
    r = apply_operations(EMPTY, ops, catalog)
    assert len(r.workflow.blocks) == 500
    assert "b500" not in {b.id for b in r.workflow.blocks}
    assert [s.reason_code for s in r.skipped_items] == ["too_many_operations"]
    # Exactly at the limit is fine.
    assert apply_operations(EMPTY, ops[:500], catalog).ok


def test_a_50_op_mixed_batch_applies_the_good_ops_and_skips_the_bad(catalog: Catalog) -> None:
    ops = [add("trg", "trigger_webhook")]
    ops += [add(f"ok_{i}", "http", url=f"https://ok-{i}.example") for i in range(25)]
    ops += [add(f"bad_{i}", f"nonexistent_{i}") for i in range(25)]
    assert len(ops) == 51
    r = apply_operations(EMPTY, ops, catalog)

    assert len(r.skipped_items) == 25
    assert {s.reason_code for s in r.skipped_items} == {"block_type_not_registered"}
    assert {s.block_id for s in r.skipped_items} == {f"bad_{i}" for i in range(25)}
    ids = [b.id for b in r.workflow.blocks]
    assert ids == ["trg", *(f"ok_{i}" for i in range(25))]
    assert not any(i.startswith("bad_") for i in ids)
    assert "Applied 26 of 51" in r.summary


def test_mixed_batch_with_malformed_and_bad_ref_ops_still_applies_the_rest(
    catalog: Catalog,
) -> None:
    ops: list[Any] = [add("trg", "trigger_webhook")]
    for i in range(10):
        ops.append(add(f"ok_{i}", "transform", template={"n": i}))
        ops.append(connect("trg", f"ok_{i}"))
    ops += [
        "not an op",
        None,
        {"operation_type": "add"},
        {"operation_type": "connect", "block_id": "ok_0"},
        add("bad_ref", "transform", template="{{ghost.result}}"),
        connect("ok_0", "nowhere"),
        connect("nowhere", "ok_0"),
        {"operation_type": "delete", "block_id": "ghost"},
    ]
    r = apply_operations(EMPTY, ops, catalog)
    codes = [s.reason_code for s in r.skipped_items]
    assert codes == [
        "invalid_operation",
        "invalid_operation",
        "invalid_operation",
        "invalid_operation",
        "invalid_edge_target",
        "invalid_edge_source",
        "block_not_found",
    ]
    assert len(r.workflow.connections) == 10
    assert {f"ok_{i}" for i in range(10)} <= {b.id for b in r.workflow.blocks}
    # The block with the bad ref was added, but its unresolvable param was not applied.
    bad = next(b for b in r.workflow.blocks if b.id == "bad_ref")
    assert "template" not in bad.params
    assert any(i.block_id == "bad_ref" and "ghost" in i.error for i in r.validation_errors)


# ── cycles ─────────────────────────────────────────────────────────────────


def test_self_loop_is_refused_with_cycle_introduced(catalog: Catalog) -> None:
    ops = [add("loop", "transform", template={"x": 1}), connect("loop", "loop")]
    r = apply_operations(EMPTY, ops, catalog)
    [skip] = r.skipped_items
    assert skip.reason_code == "cycle_introduced"
    assert skip.block_id == "loop"
    assert r.workflow.connections == []


def test_three_block_cycle_is_refused_at_the_closing_edge(catalog: Catalog) -> None:
    ops = [
        add("a", "transform", template={}),
        add("b", "transform", template={}),
        add("c", "transform", template={}),
        connect("a", "b"),
        connect("b", "c"),
        connect("c", "a"),
    ]
    r = apply_operations(EMPTY, ops, catalog)
    [skip] = r.skipped_items
    assert skip.reason_code == "cycle_introduced"
    assert skip.block_id == "c"
    assert skip.details == {"target_block_id": "a"}
    assert [(c.source, c.target) for c in r.workflow.connections] == [("a", "b"), ("b", "c")]
    # What landed still compiles and runs.
    assert run_in_memory(r.workflow, catalog=catalog, env={}).status == "completed"


# ── refs that are not upstream ─────────────────────────────────────────────


def test_reference_to_a_downstream_block_is_flagged(catalog: Catalog) -> None:
    ops = [
        add("trg", "trigger_webhook"),
        add("enrich", "http", url="https://x.example"),
        add("notify", "slack", operation="send", channel="#x", text="hi {{enrich.body}}"),
        # Backwards: enrich is DOWNSTREAM of notify.
        connect("trg", "notify"),
        connect("notify", "enrich"),
    ]
    r = apply_operations(EMPTY, ops, catalog)
    issue = next(i for i in r.validation_errors if i.block_id == "notify" and i.field == "text")
    assert "not upstream" in issue.error
    assert "enrich" in issue.error
    assert not r.ok
    # Our design (beyond the seed): the bad-ref param is not applied at all.
    notify = next(b for b in r.workflow.blocks if b.id == "notify")
    assert "text" not in notify.params


def test_reference_to_a_sibling_block_is_flagged(catalog: Catalog) -> None:
    ops = [
        add("trg", "trigger_webhook"),
        add("left", "transform", template={"v": 1}),
        add("right", "transform", template="{{left.result}}"),
        connect("trg", "left"),
        connect("trg", "right"),
    ]
    r = apply_operations(EMPTY, ops, catalog)
    issue = next(i for i in r.validation_errors if i.block_id == "right")
    assert "not upstream" in issue.error


def test_compile_flags_downstream_and_sibling_refs_in_a_handwritten_workflow(
    catalog: Catalog,
) -> None:
    wf = SerializedWorkflow.model_validate(
        {
            "blocks": [
                {"id": "trg", "type": "trigger_webhook"},
                {"id": "left", "type": "transform", "params": {"template": "{{down.result}}"}},
                {"id": "right", "type": "transform", "params": {"template": "{{left.result}}"}},
                {"id": "down", "type": "transform", "params": {"template": 1}},
            ],
            "connections": [
                {"source": "trg", "target": "left"},
                {"source": "trg", "target": "right"},
                {"source": "left", "target": "down"},
            ],
        }
    )
    with pytest.raises(WorkflowInvalid) as exc:
        compile_workflow(wf, catalog)
    problems = exc.value.problems
    assert any("'left'" in p and "down is not upstream" in p for p in problems), problems
    assert any("'right'" in p and "left is not upstream" in p for p in problems), problems


# ── disabled blocks ────────────────────────────────────────────────────────


def _disabled_ref_workflow() -> SerializedWorkflow:
    return SerializedWorkflow.model_validate(
        {
            "version": "1.0.0",
            "blocks": [
                {"id": "trg", "type": "trigger_webhook", "enabled": True, "params": {}},
                # Disabled: never runs (so its unroutable URL is never called).
                {"id": "fetch", "type": "http", "enabled": False, "params": {"url": "https://x"}},
                {
                    "id": "notifyRaw",
                    "type": "transform",
                    "enabled": True,
                    "params": {"template": "{{fetch.body}}"},
                },
                {
                    "id": "notifyInterp",
                    "type": "transform",
                    "enabled": True,
                    "params": {"template": "got [{{fetch.body}}] back"},
                },
            ],
            "connections": [
                {"source": "trg", "target": "fetch"},
                {"source": "fetch", "target": "notifyRaw"},
                {"source": "fetch", "target": "notifyInterp"},
            ],
        }
    )


def test_compile_flags_refs_to_a_disabled_block(catalog: Catalog) -> None:
    wf = _disabled_ref_workflow()
    with pytest.raises(WorkflowInvalid) as exc:
        compile_workflow(wf, catalog)
    flagged = [p for p in exc.value.problems if "'fetch' is disabled" in p]
    assert len(flagged) == 2, exc.value.problems
    assert any("notifyRaw" in p for p in flagged)
    assert any("notifyInterp" in p for p in flagged)
    # run_in_memory validates the same way before anything runs.
    with pytest.raises(WorkflowInvalid):
        run_in_memory(wf, catalog=catalog, env={})


def test_disabled_block_refs_resolve_to_none_raw_and_empty_string_embedded(
    catalog: Catalog,
) -> None:
    run = run_in_memory(_disabled_ref_workflow(), {}, catalog=catalog, env={}, validate=False)
    assert run.status == "completed", run.error
    assert "fetch" not in run.outputs
    # A param that is exactly one template keeps the raw value: None when missing.
    assert run.outputs["notifyRaw"] == {"result": None}
    # An embedded template writes a missing value as "".
    assert run.outputs["notifyInterp"] == {"result": "got [] back"}
