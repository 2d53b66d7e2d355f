"""Seed proof 24 (dx-workflow-builder): the fluent builder compiles to the wire format.

``define_workflow(...).input(M).step(...).build()`` emits a plain
``SerializedWorkflow``: ``r.input.x`` becomes ``{{trigger.x}}`` and
``r.<step>.<field>`` becomes ``{{<step>.<field>}}`` (also inside f-strings and
nested dicts/lists); edges come from the refs (a step with none hangs off the
trigger ``__trigger__``) plus ``needs=``. The output is deterministic. Every
mistake (typo'd field or step, unknown or missing param, duplicate id) is
collected and raised once at ``build()`` as a ``BuildError`` that names the
valid choices and the source line. The built workflow runs in memory, and a
bad input is refused before any connector runs.
"""

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from pydantic import BaseModel

from thodare_jupyter import (
    BuildError,
    Catalog,
    InputInvalid,
    WorkflowInvalid,
    define_connector,
    define_workflow,
    run_in_memory,
)
from thodare_jupyter.wire import SerializedWorkflow

THIS_FILE = Path(__file__)


def line_of(tag: str) -> int:
    """The line number of the one source line in this file marked ``# LINE:<tag>``."""
    lines = THIS_FILE.read_text().splitlines()
    hits = [i + 1 for i, text in enumerate(lines) if text.rstrip().endswith(f"# LINE:{tag}")]
    assert len(hits) == 1, f"marker {tag!r} found {len(hits)} times"
    return hits[0]


# ── connectors (test doubles; they touch no outside service) ────────────────


class HttpTestParams(BaseModel):
    url: str
    method: str | None = None
    body: dict[str, object] | None = None


class Person(BaseModel):
    name: str
    company: str


class HttpTestOut(BaseModel):
    status: int
    body: Person


class EnrichParams(BaseModel):
    email: str


class EnrichOut(BaseModel):
    name: str
    company: str
    title: str


class SlackTestParams(BaseModel):
    channel: str
    text: str


class SlackTestOut(BaseModel):
    ok: bool
    ts: str


class NoteParams(BaseModel):
    note: object = None


CALLS: dict[str, int] = {}


def _count(kind: str) -> None:
    CALLS[kind] = CALLS.get(kind, 0) + 1


def _http_run(p: HttpTestParams) -> HttpTestOut:
    _count("http")
    return HttpTestOut(status=200, body=Person(name="Alice", company="Acme"))


def _enrich_run(p: EnrichParams) -> EnrichOut:
    _count("enrich")
    return EnrichOut(name=p.email.split("@")[0].title(), company="Acme", title="CTO")


def _note_run(p: NoteParams) -> dict[str, object]:
    _count("note")
    return {"note": p.note}


http = define_connector(type="http-test", params=HttpTestParams, outputs=HttpTestOut, run=_http_run)
enrich = define_connector(
    type="enrich-lead", params=EnrichParams, outputs=EnrichOut, run=_enrich_run
)
slack = define_connector(
    type="slack-test",
    params=SlackTestParams,
    outputs=SlackTestOut,
    run=lambda p: {"ok": True, "ts": "1"},
)
note = define_connector(type="note", params=NoteParams, outputs=None, run=_note_run)


class LeadIn(BaseModel):
    email: str


class Nested(BaseModel):
    id: str


class UserIn(BaseModel):
    user: Nested
    tags: list[str]


def _edges(wf: SerializedWorkflow) -> list[tuple[str, str]]:
    return [(c.source, c.target) for c in wf.connections]


# ── emits the wire format ──────────────────────────────────────────────────


def test_builder_emits_the_hand_written_json_with_template_refs_and_inferred_edges() -> None:
    wf = (
        define_workflow("dx-lead")
        .input(LeadIn)
        .step(
            "enrich",
            http,
            lambda r: {
                "url": "https://api.example.com/enrich",
                "method": "POST",
                "body": {"email": r.input.email},
            },
        )
        .step(
            "notify",
            slack,
            lambda r: {
                "channel": "#sales",
                "text": f"Lead {r.enrich.body.name} ({r.input.email})",
            },
        )
        .build()
    )

    assert isinstance(wf, SerializedWorkflow)
    assert wf.metadata is not None and wf.metadata.name == "dx-lead"
    assert wf.name == "dx-lead"
    assert wf.input_model is LeadIn
    assert wf.metadata.input_schema == LeadIn.model_json_schema()

    hand_written = {
        "blocks": [
            {"id": "__trigger__", "type": "trigger_webhook", "enabled": True, "params": {}},
            {
                "id": "enrich",
                "type": "http-test",
                "enabled": True,
                "params": {
                    "url": "https://api.example.com/enrich",
                    "method": "POST",
                    "body": {"email": "{{trigger.email}}"},
                },
            },
            {
                "id": "notify",
                "type": "slack-test",
                "enabled": True,
                "params": {
                    "channel": "#sales",
                    "text": "Lead {{enrich.body.name}} ({{trigger.email}})",
                },
            },
        ],
        "connections": [
            {"source": "__trigger__", "target": "enrich"},
            {"source": "enrich", "target": "notify"},
        ],
    }
    d = wf.to_dict()
    assert d["version"] == "1.0.0"
    assert d["blocks"] == hand_written["blocks"]
    assert d["connections"] == hand_written["connections"]


def test_a_workflow_with_zero_steps_is_just_the_trigger() -> None:
    wf = define_workflow("empty").build()
    assert [b.id for b in wf.blocks] == ["__trigger__"]
    assert wf.blocks[0].type == "trigger_webhook"
    assert wf.connections == []

    run = run_in_memory(wf, {"anything": 1}, env={})
    assert run.status == "completed", run.error
    assert run.outputs == {"__trigger__": {"anything": 1}}


def test_refs_inside_fstrings_and_nested_dicts_and_lists_become_templates() -> None:
    wf = (
        define_workflow("ser")
        .input(UserIn)
        .step(
            "n",
            note,
            lambda r: {
                "note": {
                    "who": r.input.user.id,
                    "deep": {"list": [r.input.user.id, {"tag0": r.input.tags[0]}, "plain", 3]},
                    "msg": f"user={r.input.user.id}!",
                    "concat": "id:" + r.input.user.id,
                    "tuple": (r.input.user, 1),
                }
            },
        )
        .build()
    )
    params = wf.blocks[1].params
    assert params == {
        "note": {
            "who": "{{trigger.user.id}}",
            "deep": {"list": ["{{trigger.user.id}}", {"tag0": "{{trigger.tags.0}}"}, "plain", 3]},
            "msg": "user={{trigger.user.id}}!",
            "concat": "id:{{trigger.user.id}}",
            "tuple": ["{{trigger.user}}", 1],
        }
    }
    # Serialization-safe: the JSON holds plain template strings.
    assert '"who":"{{trigger.user.id}}"' in wf.to_json()

    run = run_in_memory(wf, {"user": {"id": "u1"}, "tags": ["vip"]}, catalog=Catalog(note), env={})
    assert run.status == "completed", run.error
    assert run.outputs["n"]["note"] == {
        "who": "u1",
        "deep": {"list": ["u1", {"tag0": "vip"}, "plain", 3]},
        "msg": "user=u1!",
        "concat": "id:u1",
        "tuple": [{"id": "u1"}, 1],
    }


# ── edges inferred from refs ───────────────────────────────────────────────


def test_edges_are_inferred_from_refs_and_needs() -> None:
    wf = (
        define_workflow("edges")
        .input(LeadIn)
        .step("only_input", enrich, lambda r: {"email": r.input.email})
        .step("no_refs", note, {"note": "static"})
        .step("a", enrich, {"email": "a@x.io"})
        .step("both", note, lambda r: {"note": f"{r.a.name} at {r.only_input.company}"})
        .step("after", note, {"note": "later"}, needs=["no_refs"])
        .step("mixed", note, lambda r: {"note": r.a.title}, needs=["both", "a"])
        .build()
    )
    edges = _edges(wf)
    # A step whose only refs are to the input hangs off the trigger.
    assert ("__trigger__", "only_input") in edges
    # So does a step with no refs at all.
    assert ("__trigger__", "no_refs") in edges
    assert ("__trigger__", "a") in edges
    # Refs to two earlier steps: two edges, and none from the trigger.
    assert [e for e in edges if e[1] == "both"] == [("a", "both"), ("only_input", "both")]
    # needs= adds an edge without any ref.
    assert [e for e in edges if e[1] == "after"] == [("no_refs", "after")]
    # needs= and refs together: each upstream once.
    assert [e for e in edges if e[1] == "mixed"] == [("both", "mixed"), ("a", "mixed")]
    assert len(edges) == len(set(edges))

    run = run_in_memory(wf, {"email": "bob@x.io"}, catalog=Catalog(enrich, note), env={})
    assert run.status == "completed", run.error
    assert run.outputs["both"] == {"note": "A at Acme"}
    assert run.outputs["mixed"] == {"note": "CTO"}
    # needs= really orders execution.
    order = run.completed_block_ids
    assert order.index("no_refs") < order.index("after")


def test_each_builder_call_returns_a_new_builder() -> None:
    base = (
        define_workflow("base").input(LeadIn).step("e", enrich, lambda r: {"email": r.input.email})
    )
    one = base.step("x", note, {"note": 1})
    two = base.step("y", note, {"note": 2})
    assert [b.id for b in base.build().blocks] == ["__trigger__", "e"]
    assert [b.id for b in one.build().blocks] == ["__trigger__", "e", "x"]
    assert [b.id for b in two.build().blocks] == ["__trigger__", "e", "y"]


# ── determinism ────────────────────────────────────────────────────────────

_DETERMINISM_SCRIPT = textwrap.dedent(
    """
    from pydantic import BaseModel
    from thodare_jupyter import define_connector, define_workflow

    class P(BaseModel):
        email: str
        tags: list[str] = []
        meta: dict[str, object] = {}

    class O(BaseModel):
        name: str
        company: str

    c = define_connector(type="c", params=P, outputs=O, run=lambda p: {})

    class In(BaseModel):
        email: str
        z: int
        a: int

    def build():
        return (
            define_workflow("det", description="same in, same bytes")
            .input(In)
            .variables(zeta=1, alpha={"b": 2, "a": 1})
            .step("s1", c, lambda r: {
                "email": r.input.email, "meta": {"z": r.input.z, "a": r.input.a},
            })
            .step("s2", c, lambda r: {
                "email": f"{r.s1.name}@{r.s1.company}", "tags": ["x", r.input.email],
            })
            .step("s3", c, {"email": "k"}, needs=["s2", "s1"])
            .step("s4", c, lambda r: {"email": r.s3.name + r.s1.name + r.s2.company})
            .build()
        )
    """
)


def _build_det() -> SerializedWorkflow:
    ns: dict[str, object] = {}
    exec(_DETERMINISM_SCRIPT, ns)
    build = ns["build"]
    assert callable(build)
    wf = build()
    assert isinstance(wf, SerializedWorkflow)
    return wf


def test_same_builder_input_gives_byte_identical_json() -> None:
    first, second = _build_det().to_json(), _build_det().to_json()
    assert first == second
    assert _build_det().to_json(indent=2) == _build_det().to_json(indent=2)

    # ...and across processes with different hash seeds (set/dict ordering must not leak in).
    outs = []
    for seed in ("1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        proc = subprocess.run(
            [sys.executable, "-c", _DETERMINISM_SCRIPT + "\nprint(build().to_json())"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        outs.append(proc.stdout.strip())
    assert outs[0] == outs[1] == first
    # The edges of s4 (three refs) and s3 (needs) come out in a stable order.
    edges = [(c["source"], c["target"]) for c in json.loads(first)["connections"]]
    assert [e for e in edges if e[1] == "s4"] == [("s3", "s4"), ("s1", "s4"), ("s2", "s4")]
    assert [e for e in edges if e[1] == "s3"] == [("s2", "s3"), ("s1", "s3")]


# ── mistakes are collected and raised at build() ───────────────────────────


def test_a_typo_in_a_step_field_raises_at_build_naming_valid_fields_and_the_line() -> None:
    builder = (
        define_workflow("typo")
        .input(LeadIn)
        .step("enrich", enrich, lambda r: {"email": r.input.email})
        .step(
            "notify",
            slack,
            lambda r: {
                "channel": "#sales",
                "text": f"Hi {r.enrich.nam}",  # LINE:typo-nam
            },
        )
    )
    # Nothing raised yet: the mistake is reported by build().
    with pytest.raises(BuildError) as ei:
        builder.build()
    err = ei.value
    assert isinstance(err, WorkflowInvalid)
    assert len(err.problems) == 1
    msg = str(err)
    assert "'nam'" in msg
    assert "company, name, title" in msg
    assert re.search(rf"\bline {line_of('typo-nam')}\b", msg), msg
    assert THIS_FILE.name in msg


def test_a_typo_in_a_nested_output_field_names_that_models_fields() -> None:
    with pytest.raises(BuildError) as ei:
        (
            define_workflow("typo-nested")
            .step("enrich", http, {"url": "x"})
            .step(
                "notify",
                slack,
                lambda r: {
                    "channel": "#s",
                    "text": r.enrich.body.nmae,  # LINE:typo-nested
                },
            )
            .build()
        )
    msg = str(ei.value)
    assert "'nmae'" in msg
    assert "company, name" in msg
    assert re.search(rf"\bline {line_of('typo-nested')}\b", msg), msg


def test_a_typo_in_an_input_field_names_the_input_fields() -> None:
    with pytest.raises(BuildError) as ei:
        (
            define_workflow("typo-input")
            .input(LeadIn)
            .step(
                "enrich",
                enrich,
                lambda r: {
                    "email": r.input.emial,  # LINE:typo-input
                },
            )
            .build()
        )
    msg = str(ei.value)
    assert "'emial'" in msg and "email" in msg
    assert re.search(rf"\bline {line_of('typo-input')}\b", msg), msg


def test_an_unknown_step_raises_at_build_naming_the_earlier_steps_and_the_line() -> None:
    with pytest.raises(BuildError) as ei:
        (
            define_workflow("typo-step")
            .input(LeadIn)
            .step("enrich", enrich, lambda r: {"email": r.input.email})
            .step(
                "notify",
                slack,
                lambda r: {
                    "channel": "#sales",
                    "text": f"Hi {r.enrch.name}",  # LINE:typo-enrch
                },
            )
            .build()
        )
    err = ei.value
    assert len(err.problems) == 1
    msg = str(err)
    assert "'enrch'" in msg
    assert "enrich" in msg and "input" in msg
    assert re.search(rf"\bline {line_of('typo-enrch')}\b", msg), msg


def test_a_ref_to_a_later_step_is_an_unknown_step() -> None:
    with pytest.raises(BuildError) as ei:
        (
            define_workflow("forward")
            .step("first", note, lambda r: {"note": r.second.note})
            .step("second", note, {"note": 1})
            .build()
        )
    assert "'second'" in str(ei.value)


def test_unknown_param_missing_param_and_duplicate_id_are_reported_together() -> None:
    with pytest.raises(BuildError) as ei:
        (
            define_workflow("many")
            .input(LeadIn)
            .step("enrich", enrich, lambda r: {"email": r.input.email, "emale": 1})  # LINE:key
            .step("notify", slack, {"channel": "#x"})  # LINE:missing
            .step("enrich", enrich, {"email": "again@x.io"})  # LINE:dup
            .build()
        )
    err = ei.value
    assert len(err.problems) == 3, err.problems
    bad_key, missing, dup = err.problems
    assert "'emale'" in bad_key and "email" in bad_key
    assert f"line {line_of('key')}" in bad_key
    assert "'text'" in missing and "missing" in missing
    assert f"line {line_of('missing')}" in missing
    assert "'enrich'" in dup and "unique" in dup
    assert f"line {line_of('dup')}" in dup
    assert "3 problem(s)" in str(err)


def test_params_are_checked_by_the_engines_rule_with_a_did_you_mean_and_literal_types() -> None:
    with pytest.raises(BuildError) as ei:
        (
            define_workflow("params")
            .step("call", http, {"url": ["not", "a", "string"], "methd": "GET"})  # LINE:params
            .build()
        )
    bad_value, typo = sorted(ei.value.issues, key=lambda i: i.code)
    assert (bad_value.code, bad_value.field) == ("invalid-param-value", "url")
    assert (typo.code, typo.field) == ("unknown-param", "methd")
    assert "Did you mean 'method'?" in typo.message
    assert all(f"line {line_of('params')}" in i.message for i in (bad_value, typo))


def test_needs_naming_an_unknown_step_is_a_build_error() -> None:
    with pytest.raises(BuildError) as ei:
        define_workflow("needs").step("a", note, {"note": 1}, needs=["ghost"]).build()
    assert "'ghost'" in str(ei.value)


# ── the built workflow runs; bad input is refused before anything runs ─────


def test_the_built_workflow_runs_in_memory_and_bad_input_runs_nothing(
    slack_server, slack_env
) -> None:
    cat = Catalog(enrich)
    wf = (
        define_workflow("lead-to-slack")
        .input(LeadIn)
        .step("enrich", enrich, lambda r: {"email": r.input.email})
        .step(
            "notify",
            cat.get("slack"),
            lambda r: {
                "operation": "send",
                "channel": "#sales",
                "text": f"Lead {r.enrich.name} of {r.enrich.company} ({r.input.email})",
            },
        )
        .build()
    )
    CALLS.clear()
    run = run_in_memory(wf, {"email": "ada@acme.io"}, catalog=cat, env=slack_env)
    assert run.status == "completed", run.error
    assert CALLS == {"enrich": 1}
    assert run.outputs["enrich"] == {"name": "Ada", "company": "Acme", "title": "CTO"}
    assert run.outputs["notify"]["ok"] is True
    assert slack_server.requests[-1]["body"] == {
        "channel": "#sales",
        "text": "Lead Ada of Acme (ada@acme.io)",
    }

    CALLS.clear()
    sent_before = len(slack_server.requests)
    for bad in ({"emial": "ada@acme.io"}, {"email": ["not", "a", "string"]}, None):
        with pytest.raises(InputInvalid) as ei:
            run_in_memory(wf, bad, catalog=cat, env=slack_env)
        assert "email" in str(ei.value)
        assert "lead-to-slack" in str(ei.value)
    assert CALLS == {}
    assert len(slack_server.requests) == sent_before
