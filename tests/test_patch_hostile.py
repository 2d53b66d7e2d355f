"""apply_operations against hostile model input: never raise, never mutate, say what to send.

Params must be JSON values (str keys, finite floats, ints of at most 100 digits, at most 64
levels deep); anything else skips the op as ``invalid_operation`` with a reason naming the
path. Edits of disabled blocks follow the same ``{{ref}}`` rules; an added id may not take over
a block name a ref uses; an op may not introduce an ``{{env.X}}`` the workflow does not read.
"""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import pytest
from ops_helpers import EMPTY, add, connect
from pydantic import BaseModel

from thodare_jupyter import ApplyResult, Catalog, SerializedWorkflow, apply_operations
from thodare_jupyter.templates import env_refs, extract_refs
from thodare_jupyter.wire import AddOp

CATALOG = Catalog()


class Boom:
    """A value whose every string form raises."""

    def __repr__(self) -> str:
        raise RuntimeError("repr exploded")

    def __str__(self) -> str:
        raise RuntimeError("str exploded")


class BoomStr(str):
    """A str whose repr/str raise and whose equality lies."""

    def __repr__(self) -> str:
        raise RuntimeError("repr exploded")

    def __str__(self) -> str:
        raise RuntimeError("str exploded")


def _deep(n: int, kind: str = "list") -> Any:
    v: Any = "leaf"
    for _ in range(n):
        v = [v] if kind == "list" else {"k": v}
    return v


def _cyclic() -> list[Any]:
    a: list[Any] = []
    a.append(a)
    return a


HUGE = 10**5000  # str() of this raises ValueError (int max str digits)

WF = SerializedWorkflow.model_validate(
    {
        "blocks": [
            {"id": "trg", "type": "trigger_webhook"},
            {
                "id": "enrich",
                "type": "http",
                "name": "Enrich",
                "params": {"url": "https://api.example/{{env.API_BASE}}"},
            },
            {
                "id": "notify",
                "type": "slack",
                "params": {
                    "operation": "send",
                    "channel": "#c",
                    "text": "hi {{Enrich.status}}",
                    "accessToken": "xoxb-user-secret",
                },
            },
            {
                "id": "parked",
                "type": "transform",
                "enabled": False,
                "params": {"template": "{{enrich.body}} {{env.PARKED_KEY}}"},
            },
            {"id": "off", "type": "transform", "enabled": False, "params": {"template": "x"}},
        ],
        "connections": [
            {"source": "trg", "target": "enrich"},
            {"source": "enrich", "target": "notify"},
            {"source": "enrich", "target": "parked"},
            {"source": "enrich", "target": "off"},
        ],
    }
)


def _apply(ops: Any, wf: Any = WF, **kw: Any) -> ApplyResult:
    before = wf.to_json() if isinstance(wf, SerializedWorkflow) else json.dumps(wf)
    res = apply_operations(wf, ops, CATALOG, **kw)
    after = wf.to_json() if isinstance(wf, SerializedWorkflow) else json.dumps(wf)
    assert after == before, "the input workflow was mutated"
    assert res.ok == (not res.skipped_items and not res.validation_errors)
    text = res.workflow.to_json()
    assert SerializedWorkflow.from_json(text).to_json() == text
    assert ApplyResult.model_validate_json(res.model_dump_json()).summary == res.summary
    assert "xoxb-user-secret" not in res.model_dump_json(exclude={"workflow"})
    return res


def _edit(bid: Any, **params: Any) -> dict[str, Any]:
    return {"operation_type": "edit", "block_id": bid, "params": params}


def _only_skip(res: ApplyResult, code: str) -> str:
    assert not res.ok
    assert [s.reason_code for s in res.skipped_items] == [code], res.summary
    return res.skipped_items[0].reason


# ── 1. hostile values never raise ──

HOSTILE_VALUES = {
    "huge-int": (HUGE, "digits"),
    "deep-list": (_deep(5000), "64 levels"),
    "deep-dict": (_deep(5000, "dict"), "64 levels"),
    "cyclic-list": (_cyclic(), "64 levels"),
    "raising-repr": (Boom(), "not a JSON value"),
    "raising-str-subclass": ([BoomStr("x")], "not a JSON value"),
    "set": ({1, 2}, "not a JSON value"),
    "bytes": (b"\x00\xff", "not a JSON value"),
    "nan": (float("nan"), "finite"),
    "inf": ([1.0, float("-inf")], "finite"),
    "tuple": ((1, 2), "not a JSON value"),
    "int-key": ({1: "a"}, "keys must be strings"),
    "huge-int-key": ({HUGE: "a"}, "keys must be strings"),
    "raising-key": ({Boom(): "a"}, "keys must be strings"),
    "deep-in-hidden-param": (_deep(3000), "64 levels"),
}


@pytest.mark.parametrize("case", HOSTILE_VALUES, ids=list(HOSTILE_VALUES))
def test_a_hostile_param_value_skips_the_op_with_a_reason_to_act_on(case: str) -> None:
    value, words = HOSTILE_VALUES[case]
    key = "accessToken" if case == "deep-in-hidden-param" else "text"
    for op in (_edit("notify", **{key: value}), add("n2", "transform", template=value)):
        res = _apply([op])
        reason = _only_skip(res, "invalid_operation")
        assert words in reason, reason
        assert "params." in reason and len(reason) < 400, reason
        assert res.workflow.to_json() == WF.to_json()


def test_a_huge_int_at_the_digit_bound_is_accepted_and_one_past_it_is_not() -> None:
    ok = _apply([_edit("enrich", body={"n": 10**100 - 1})])
    assert ok.ok, ok.summary
    res = _apply([_edit("enrich", body={"n": -(10**100)})])
    assert "params.body.n" in _only_skip(res, "invalid_operation")


def test_nesting_at_the_cap_is_accepted_and_one_deeper_is_not() -> None:
    assert _apply([_edit("enrich", body=_deep(64))]).ok
    res = _apply([_edit("enrich", body=_deep(65))])
    assert "nesting deeper than 64 levels" in _only_skip(res, "invalid_operation")


@pytest.mark.parametrize(
    "op",
    [
        None,
        42,
        HUGE,
        "add a block",
        ["operation_type", "add"],
        Boom(),
        b"bytes",
        {"operation_type": "add", "block_id": HUGE, "type": "http"},
        {"operation_type": "add", "block_id": Boom(), "type": "http"},
        {"operation_type": "add", "block_id": BoomStr("x"), "type": "http"},
        {"operation_type": "edit", "block_id": ["notify"], "params": {"text": "x"}},
        {"operation_type": Boom(), "block_id": "x"},
        {"operation_type": HUGE, "block_id": HUGE},
        {HUGE: 1, Boom(): 2},
        {"operation_type": "connect", "block_id": "trg", "target_block_id": _deep(3000)},
        {"operation_type": "add", "block_id": "n", "type": "transform", "params": _deep(3000)},
        {"operation_type": "add", "block_id": "n", "type": "transform", "name": Boom()},
        {"operation_type": "edit", "block_id": "enrich", "params": [1, 2]},
        AddOp.model_construct(operation_type="add", block_id="n", type="http", params=_deep(3000)),
        AddOp.model_construct(operation_type="add", block_id=Boom(), type="http", params={}),
    ],
    ids=lambda op: type(op).__name__,
)
def test_a_malformed_op_is_skipped_not_raised(op: Any) -> None:
    res = _apply([op, _edit("enrich", method="POST")])
    assert [s.reason_code for s in res.skipped_items] == ["invalid_operation"], res.summary
    assert res.workflow.blocks[1].params["method"] == "POST"  # the next op still applied
    assert all(len(s.block_id) <= 200 for s in res.skipped_items)


@pytest.mark.parametrize("ops", [None, 42, "ops", {"operation_type": "add"}, Boom()])
def test_ops_that_are_not_a_list_are_one_skip(ops: Any) -> None:
    res = _apply(ops)
    reason = _only_skip(res, "invalid_operation")
    assert "list of operation objects" in reason


def test_a_raising_iterable_of_ops_is_one_skip() -> None:
    def gen() -> Any:
        yield _edit("enrich", method="POST")
        raise RuntimeError("generator exploded")

    reason = _only_skip(_apply(gen()), "invalid_operation")
    assert "list of operation objects" in reason


def test_the_ops_list_itself_is_not_mutated() -> None:
    ops = [_edit("enrich", body={"a": [1, {"b": 2}]}), add("n2", "transform", template="t")]
    snapshot = copy.deepcopy(ops)
    _apply(ops)
    assert ops == snapshot


def test_a_brace_run_does_not_make_template_extraction_cubic() -> None:
    """``{{`` followed by thousands of spaces took minutes with the old regex."""
    text = "{{" + " " * 20_000 + "x"
    t0 = time.perf_counter()
    res = _apply([_edit("notify", text=text)])
    assert time.perf_counter() - t0 < 2
    assert res.ok, res.summary
    assert extract_refs(["{{ a.b }}", "{{  }}", "{{c}}x{{ d .e }}", "{{}}"]) == [
        "a.b",
        "",
        "c",
        "d .e",
    ]


def test_extract_refs_survives_deep_and_cyclic_values() -> None:
    assert extract_refs(_deep(5000, "dict") | {"z": "{{a.b}}"}) == ["a.b"]
    cyc = _cyclic()
    cyc.append("{{c.d}}")
    assert extract_refs(cyc) == ["c.d"]


class Foreign(BaseModel):
    operation_type: str = "edit"
    block_id: str = "enrich"
    params: dict[str, Any] = {"method": "PUT"}


def test_a_foreign_pydantic_model_is_read_like_a_dict() -> None:
    res = _apply([Foreign()])
    assert res.ok, res.summary
    assert res.workflow.blocks[1].params["method"] == "PUT"


# ── 2. disabled blocks follow the same ref rules ──


@pytest.mark.parametrize(
    ("template", "words"),
    [
        ("{{ghost.x}}", "does not match any block"),
        ("{{notify.ts}}", "not upstream"),
        ("{{enrich.nope}}", "does not declare output 'nope'"),
        ("{{off.result}}", "is disabled"),
    ],
)
def test_an_edit_of_a_disabled_block_is_held_to_the_ref_rules(template: str, words: str) -> None:
    res = _apply([_edit("parked", template=template)])
    assert not res.ok
    issue = next(i for i in res.validation_errors if i.block_id == "parked")
    assert words in issue.error and "was not changed" in issue.error, issue.error
    assert res.workflow.blocks[3].params == WF.blocks[3].params  # reverted


def test_a_disabled_block_may_read_its_enabled_upstream() -> None:
    res = _apply([_edit("parked", template="{{enrich.status}} {{trigger.x}}")])
    assert res.ok, res.summary
    assert res.workflow.blocks[3].params["template"] == "{{enrich.status}} {{trigger.x}}"


def test_a_disabled_block_left_dangling_by_a_delete_is_reported() -> None:
    wf = SerializedWorkflow.model_validate(
        {
            "blocks": [
                {"id": "trg", "type": "trigger_webhook"},
                {"id": "a", "type": "transform", "params": {"template": "x"}},
                {"id": "d", "type": "transform", "enabled": False,
                 "params": {"template": "{{a.result}}"}},
            ],
            "connections": [{"source": "trg", "target": "a"}, {"source": "a", "target": "d"}],
        }
    )  # fmt: skip
    res = _apply([{"operation_type": "delete", "block_id": "a"}], wf)
    assert not res.ok
    assert any(i.block_id == "d" and i.field == "template" for i in res.validation_errors)


def test_an_added_disabled_block_cannot_exist_through_add_so_refs_to_it_fail() -> None:
    res = _apply([add("n2", "transform", template="{{parked.result}}"), connect("enrich", "n2")])
    assert not res.ok
    assert any("disabled" in i.error for i in res.validation_errors if i.block_id == "n2")


# ── 3. a new id must not take over a name a ref uses ──


def test_an_added_id_equal_to_a_referenced_block_name_is_skipped() -> None:
    res = _apply([add("Enrich", "transform", template="x")])
    reason = _only_skip(res, "block_id_shadows_name")
    assert "'Enrich'" in reason and "'enrich'" in reason and "another id" in reason
    assert [b.id for b in res.workflow.blocks] == [b.id for b in WF.blocks]


def test_a_ref_by_name_added_earlier_in_the_batch_counts_too() -> None:
    wf = WF.model_copy(deep=True)
    wf.blocks[2].params["text"] = "plain"
    res = _apply(
        [_edit("notify", text="{{Enrich.status}}"), add("Enrich", "transform", template="x")], wf
    )
    _only_skip(res, "block_id_shadows_name")


def test_an_added_id_equal_to_an_unreferenced_name_is_fine() -> None:
    wf = WF.model_copy(deep=True)
    wf.blocks[2].params["text"] = "plain {{enrich.status}}"
    assert _apply([add("Enrich", "transform", template="x")], wf).ok


# ── 4. env refs ──


def test_an_op_introducing_a_new_env_ref_is_skipped_whole() -> None:
    res = _apply([_edit("notify", text="{{env.AWS_SECRET}}", channel="#other")])
    reason = _only_skip(res, "env_ref_not_allowed")
    assert reason == (
        "Block 'notify' param 'text' would read {{env.AWS_SECRET}}, which this workflow does "
        "not use; secrets are set by the user. Leave the param out or ask the user to allow "
        "env AWS_SECRET."
    )
    assert res.workflow.to_json() == WF.to_json()  # channel was not changed either


def test_an_added_block_with_a_new_env_ref_is_not_added() -> None:
    res = _apply([add("n2", "http", url="https://x", headers={"A": "Bearer {{ env.TOKEN }}"})])
    assert "{{env.TOKEN}}" in _only_skip(res, "env_ref_not_allowed")
    assert "n2" not in {b.id for b in res.workflow.blocks}


def test_env_refs_the_workflow_already_reads_stay_allowed() -> None:
    # API_BASE is read by an enabled block, PARKED_KEY only by a disabled one.
    res = _apply([_edit("notify", text="{{env.API_BASE}} {{env.PARKED_KEY}}")])
    assert res.ok, res.summary


def test_allow_env_lets_a_named_env_ref_through() -> None:
    res = _apply([_edit("notify", text="{{env.NEW_ONE}}")], allow_env={"NEW_ONE"})
    assert res.ok, res.summary
    res = _apply([_edit("notify", text="{{env.NEW_ONE}} {{env.OTHER}}")], allow_env=["NEW_ONE"])
    assert "env OTHER" in _only_skip(res, "env_ref_not_allowed")


def test_an_env_ref_in_a_dropped_hidden_param_is_only_dropped() -> None:
    res = _apply([_edit("notify", accessToken="{{env.STEAL}}", text="t")])
    assert not res.skipped_items
    assert res.workflow.blocks[2].params["text"] == "t"


def test_seed_ops_with_env_refs_need_allow_env() -> None:
    ops = [add("trg", "trigger_webhook"), add("h", "http", url="{{env.BASE}}/x"),
           connect("trg", "h")]  # fmt: skip
    assert not _apply(ops, EMPTY).ok
    assert _apply(ops, EMPTY, allow_env=("BASE",)).ok


def test_env_refs_reads_workflows_and_params() -> None:
    assert env_refs(WF) == {"API_BASE", "PARKED_KEY"}
    assert env_refs({"a": ["{{env.A}}", {"b": "x {{ env.B.c }} {{env}} {{trigger.env}}"}]}) == {
        "A",
        "B.c",
    }
    assert env_refs("{{env.Z}}") == {"Z"}
    assert env_refs(_deep(5000)) == set()
