"""A workflow loaded from JSON checks its run input against ``metadata.inputSchema``.

A builder-made workflow validates its input with its pydantic model; a
workflow that arrives as JSON (a seed document, a dict, ``from_json``) carries
only the JSON Schema. ``kit.run``, ``kit.schedule``, ``kit.fork`` and the
webhook router reject a bad input with :class:`InputInvalid` (400
``validation_failed`` through a webhook) before any row exists, naming the
field and the expected type as the builder path does; a good input is stored
as validated (defaults filled, values coerced) and runs. The schema is read
for the subset the builder and ``%%workflow`` write (types, required,
properties, items, enum, anyOf with null, defaults, nested objects through
``$defs``/``$ref``); unknown keywords are ignored, and a hostile schema (huge,
self-referencing, nonsense) never crashes or hangs a run.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import date
from typing import Any, Literal

import pytest
from durable_helpers import KitFactory
from pydantic import BaseModel, Field

from thodare_jupyter import InputInvalid, SerializedWorkflow, define_workflow
from thodare_jupyter.input_schema import schema_model
from thodare_jupyter.integrations.webhooks import WebhookRequest, create_webhook_router
from thodare_jupyter.validation import validate_input

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"email": {"type": "string"}, "n": {"type": "integer"}},
    "required": ["email"],
}


def seed_doc(schema: dict[str, Any] | None = SCHEMA, name: str = "schema-lead") -> dict[str, Any]:
    """A seed-style workflow document: a trigger and a transform reading the input."""
    meta: dict[str, Any] = {"name": name}
    if schema is not None:
        meta["inputSchema"] = schema
    return {
        "version": "1.0.0",
        "metadata": meta,
        "blocks": [
            {"id": "trg", "type": "trigger_webhook", "enabled": True, "params": {"path": "/x"}},
            {"id": "say", "type": "transform", "enabled": True,
             "params": {"template": {"to": "{{trigger.email}}", "n": "{{trigger.n}}"}}},
        ],
        "connections": [{"source": "trg", "target": "say"}],
    }  # fmt: skip


FORMS = {
    "json text": lambda: json.dumps(seed_doc()),
    "dict": seed_doc,
    "from_json": lambda: SerializedWorkflow.from_json(json.dumps(seed_doc())),
}


def problems(exc: pytest.ExceptionInfo[InputInvalid]) -> list[str]:
    return exc.value.problems


# ── kit.run, on SQLite and PostgreSQL ────────────────────────────────────────


@pytest.mark.parametrize("form", sorted(FORMS))
def test_run_rejects_a_missing_required_field_before_any_row(
    any_kits: KitFactory, form: str
) -> None:
    kit = any_kits()
    with pytest.raises(InputInvalid) as e:
        kit.run(FORMS[form](), {})
    assert problems(e) == ["email: Field required"]
    assert "schema-lead" in str(e.value)
    assert kit.runs() == []


def test_run_rejects_a_wrong_type_naming_the_field_and_type(any_kits: KitFactory) -> None:
    kit = any_kits()
    with pytest.raises(InputInvalid) as e:
        kit.run(seed_doc(), {"email": 1})
    assert problems(e) == ["email: Input should be a valid string"]
    with pytest.raises(InputInvalid) as e:
        kit.run(seed_doc(), {"email": "a@b.io", "n": "many"})
    assert problems(e) == [
        "n: Input should be a valid integer, unable to parse string as an integer"
    ]
    with pytest.raises(InputInvalid) as e:
        kit.run(seed_doc(), ["not", "an", "object"])
    assert problems(e)[0].startswith("(input): Input should be")
    assert kit.runs() == []
    assert kit.store.runs.list_runs(None, 10) == []  # straight from the runs table


def test_a_valid_input_is_stored_as_validated_and_runs(any_kits: KitFactory) -> None:
    kit = any_kits().start()
    h = kit.run(json.dumps(seed_doc()), {"email": "ada@example.com", "n": "3", "extra": True})
    assert h.result(timeout=30)["say"] == {"result": {"to": "ada@example.com", "n": 3}}
    # Coerced ("3" → 3); a key the schema does not name is kept (JSON Schema allows it).
    assert h.describe().input == {"email": "ada@example.com", "n": 3, "extra": True}
    # An optional field without a default stays absent (not stored as null).
    h2 = kit.run(seed_doc(), {"email": "bob@example.com"})
    h2.result(timeout=30)
    assert h2.describe().input == {"email": "bob@example.com"}


def test_a_workflow_without_a_schema_takes_any_input(any_kits: KitFactory) -> None:
    kit = any_kits().start()
    h = kit.run(seed_doc(None), {"email": 1})
    assert h.result(timeout=30)["say"] == {"result": {"to": 1, "n": None}}


# ── kit.schedule and kit.fork ─────────────────────────────────────────────────


def test_schedule_rejects_a_bad_input_before_storing_the_schedule(any_kits: KitFactory) -> None:
    kit = any_kits()
    with pytest.raises(InputInvalid) as e:
        kit.schedule(seed_doc(), "* * * * *", {"email": 1}, name="nightly")
    assert problems(e) == ["email: Input should be a valid string"]
    assert kit.schedules() == []
    info = kit.schedule(seed_doc(), "* * * * *", {"email": "ada@example.com"}, name="nightly")
    assert info.name == "nightly"
    report = kit.dispatch_schedules(time.time() + 61)
    assert len(report.fired) == 1
    assert kit.get_handle(report.fired[0][1]).describe().input == {"email": "ada@example.com"}


def test_fork_onto_a_workflow_whose_schema_the_old_input_fails(any_kits: KitFactory) -> None:
    kit = any_kits().start()
    old = kit.run(seed_doc(None), {"n": 2})
    old.result(timeout=30)
    stricter = seed_doc()  # now `email` is required
    with pytest.raises(InputInvalid) as e:
        kit.fork(old.id, "say", workflow=stricter)
    assert problems(e) == ["email: Field required"]
    assert len(kit.runs()) == 1
    # A schema the old input satisfies forks and runs.
    relaxed = seed_doc({**SCHEMA, "required": []})
    new = kit.fork(old.id, "say", workflow=relaxed)
    assert new.result(timeout=30)["say"] == {"result": {"to": None, "n": 2}}


# ── webhooks ──────────────────────────────────────────────────────────────────


def test_webhook_to_a_json_workflow_answers_400_and_creates_no_run(any_kits: KitFactory) -> None:
    kit = any_kits().start()
    router = create_webhook_router(kit).register("/leads", json.loads(json.dumps(seed_doc())))

    def post(body: Any) -> Any:
        return asyncio.run(router.handle(WebhookRequest("POST", "/leads", body=body)))

    bad = post({"email": 1})
    assert (bad.status, bad.body["error"]) == (400, "validation_failed")
    assert bad.body["issues"] == [{"path": ["email"], "message": "Input should be a valid string"}]
    assert post({}).body["issues"] == [{"path": ["email"], "message": "Field required"}]
    assert kit.runs() == []
    ok = post({"email": "ada@example.com"})
    assert ok.status == 202, ok.body
    out = kit.get_handle(ok.body["runId"]).result(timeout=30)
    assert out["say"] == {"result": {"to": "ada@example.com", "n": None}}


# ── the schema reader (no database) ──────────────────────────────────────────


def check(schema: dict[str, Any], data: Any) -> Any:
    """Validate ``data`` with the model read from ``schema`` (what kit.run does)."""
    return validate_input(schema_model(schema), data, "t")


def fails(schema: dict[str, Any], data: Any) -> list[str]:
    with pytest.raises(InputInvalid) as e:
        check(schema, data)
    return e.value.problems


class Address(BaseModel):
    city: str
    zip: str | None = None


class Lead(BaseModel):
    email: str
    tags: list[str] = []
    tier: Literal["gold", "silver"] = "silver"
    score: float | None = None
    age: int = Field(default=0, ge=0)
    home: Address
    others: list[Address] = []
    since: date | None = None
    meta: dict[str, int] = {}


LEAD_SCHEMA = Lead.model_json_schema()

BAD_LEADS: list[Any] = [
    {},
    {"email": 1, "home": {}},
    {"email": "a", "home": {"city": 2}, "tags": "x", "tier": "bronze"},
    {"email": "a", "home": {"city": "x"}, "others": [{"zip": 1}], "age": -1},
    {"email": "a", "home": {"city": "x"}, "score": "high", "since": "yesterday"},
    {"email": "a", "home": {"city": "x"}, "meta": {"a": "one"}},
    "not an object",
]


@pytest.mark.parametrize("data", BAD_LEADS)
def test_a_builder_schema_reads_back_with_the_builder_messages(data: Any) -> None:
    with pytest.raises(InputInvalid) as builder:
        validate_input(Lead, data, "t")
    assert fails(LEAD_SCHEMA, data) == builder.value.problems


def test_a_builder_schema_fills_defaults_and_coerces_like_the_model() -> None:
    data = {"email": "a@b.io", "home": {"city": "Oslo"}, "age": "7", "since": "2024-05-01"}
    assert check(LEAD_SCHEMA, data) == validate_input(Lead, data, "t")
    assert check(LEAD_SCHEMA, data) == {
        "email": "a@b.io", "tags": [], "tier": "silver", "score": None, "age": 7,
        "home": {"city": "Oslo", "zip": None}, "others": [], "since": "2024-05-01", "meta": {},
    }  # fmt: skip


def test_a_yaml_input_schema_reads_back() -> None:
    # What `%%workflow` writes for `input: {email: str, n: int, ok: bool, tags: list}`.
    wf = define_workflow("y").input(_yaml_model()).build()
    schema = wf.to_dict()["metadata"]["inputSchema"]
    assert check(schema, {"email": "a", "n": 1, "ok": True, "tags": []})["n"] == 1
    assert fails(schema, {"email": "a", "n": 1, "ok": "perhaps", "tags": []}) == [
        "ok: Input should be a valid boolean, unable to interpret input"
    ]


def _yaml_model() -> type[BaseModel]:
    class In(BaseModel):
        email: str
        n: int
        ok: bool
        tags: list[Any]

    return In


def test_types_enums_unions_arrays_and_closed_objects() -> None:
    schema = {
        "type": "object",
        "properties": {
            "kind": {"enum": ["a", "b", 3]},
            "when": {"type": ["string", "null"]},
            "ids": {"type": "array", "items": {"type": "integer"}, "minItems": 1},
            "flag": {"const": True},
            "either": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
            "box": {"type": "object", "properties": {"v": {"type": "number"}},
                    "required": ["v"], "additionalProperties": False},
            "nothing": {"type": "null"},
        },
        "required": ["kind", "ids"],
    }  # fmt: skip
    ok = {"kind": 3, "when": None, "ids": [1, "2"], "flag": True, "either": "x", "box": {"v": 1}}
    assert check(schema, ok) == {**ok, "ids": [1, 2], "box": {"v": 1.0}}
    got = fails(schema, {"kind": "c", "ids": [], "box": {"v": 1, "w": 2}, "nothing": 0})
    assert got[0].startswith("kind: Input should be 'a', 'b' or 3")
    assert got[1].startswith("ids: List should have at least 1 item")
    assert got[2] == "box.w: Extra inputs are not permitted"
    assert got[3] == "nothing: Input should be None"


def test_odd_property_names_keep_their_keys() -> None:
    schema = {
        "type": "object",
        "properties": {
            "first name": {"type": "string"}, "model_json": {"type": "integer"},
            "copy": {"type": "boolean"}, "_private": {"type": "string"}, "f0": {"type": "string"},
        },
        "required": ["first name", "copy"],
    }  # fmt: skip
    data = {"first name": "Ada", "model_json": 1, "copy": True, "_private": "p", "f0": "z"}
    assert check(schema, data) == data
    assert fails(schema, {"copy": 1.5}) == [
        "first name: Field required",
        "copy: Input should be a valid boolean",
    ]


def test_unknown_keywords_and_nonsense_are_ignored() -> None:
    schema = {
        "type": "object", "x-vendor": {"anything": 1}, "if": {}, "then": 3,
        "properties": {
            "a": {"type": "quaternion"}, "b": True, "c": {"$ref": "https://evil.example/s.json"},
            "d": {"type": "string", "format": "no-such-format", "pattern": "(?<=unsupported"},
            "e": {"$ref": "#/$defs/Missing"}, "f": {"enum": [{"a": 1}, [1]]},
        },
        "required": ["a", 7, "ghost"],
    }  # fmt: skip
    data = {"a": [{"z": 1}], "b": 1, "c": [1], "d": "x", "e": None, "f": {}, "ghost": 0}
    assert check(schema, data)["ghost"] == 0
    assert fails(schema, {"a": 1}) == ["ghost: Field required"]
    for junk in ({}, {"type": 5}, {"properties": []}, {"required": "x"}, {"$defs": 1}):
        assert check(junk, {"k": 1}) == {"k": 1}


def test_a_self_referencing_schema_is_read_to_a_bounded_depth() -> None:
    class Node(BaseModel):
        name: str
        children: list[Node] = []

    schema = Node.model_json_schema()
    tree = {"name": "root", "children": [{"name": "kid", "children": [{"name": "leaf"}]}]}
    assert check(schema, tree)["children"][0]["name"] == "kid"
    assert fails(schema, {"children": []}) == ["name: Field required"]
    assert fails(schema, {"name": "r", "children": [{"name": 1}]}) == [
        "children.0.name: Input should be a valid string"
    ]
    loops: list[dict[str, Any]] = [
        {"$ref": "#"},
        {"$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}, "$ref": "#/$defs/a"},
        {"type": "object", "properties": {"x": {"$ref": "#"}, "y": {"$ref": "#"}}},
    ]
    for schema in loops:
        t0 = time.monotonic()
        check(schema, {"x": {"y": {}}})
        assert time.monotonic() - t0 < 5


def test_a_huge_schema_costs_bounded_time() -> None:
    wide = {"type": "object", "properties": {f"p{i}": {"type": "string"} for i in range(50_000)}}
    deep: dict[str, Any] = {"type": "string"}
    for _ in range(150):
        deep = {"type": "object", "properties": {"x": deep}, "required": ["x"]}
    branching = {
        "$defs": {f"d{i}": {"type": "object", "properties": {
            "l": {"$ref": f"#/$defs/d{i + 1}"}, "r": {"$ref": f"#/$defs/d{i + 1}"}}}
            for i in range(40)},
        "$ref": "#/$defs/d0",
    }  # fmt: skip
    t0 = time.monotonic()
    assert check(wide, {"p1": "x"}) == {"p1": "x"}  # too many nodes: not checked
    assert check(branching, {"l": {"r": {"l": {}}}}) == {"l": {"r": {"l": {}}}}
    assert fails(branching, {"l": {"r": 1}})[0].startswith("l.r: Input should be a valid dict")
    assert fails(deep, {"x": {"x": {}}}) == ["x.x.x: Field required"]
    assert time.monotonic() - t0 < 5


def test_the_model_is_cached_per_schema() -> None:
    assert schema_model(dict(SCHEMA)) is schema_model(json.loads(json.dumps(SCHEMA)))
    assert schema_model(SCHEMA) is not schema_model({**SCHEMA, "required": []})


def test_compile_gives_a_json_workflow_its_input_model(kits: KitFactory) -> None:
    wf = kits().compile(seed_doc())
    assert wf.input_model is not None
    assert wf.input_model.model_validate({"email": "a"}).model_dump(mode="json") == {"email": "a"}


def test_run_in_memory_checks_a_json_workflows_input() -> None:
    from thodare_jupyter import run_in_memory

    with pytest.raises(InputInvalid) as e:
        run_in_memory(seed_doc(), {"n": "x"}, env={})
    assert problems(e) == [
        "email: Field required",
        "n: Input should be a valid integer, unable to parse string as an integer",
    ]
    run = run_in_memory(seed_doc(), {"email": "ada@x.io", "n": "3"}, env={})
    assert run.outputs["say"] == {"result": {"to": "ada@x.io", "n": 3}}
