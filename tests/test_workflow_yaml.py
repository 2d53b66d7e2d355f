"""The ``%%workflow`` YAML compiles to the same wire format as the fluent builder.

``workflow_from_yaml`` turns DESIGN §6's YAML (``description``, ``input``,
``vars``, ``steps: {id: {uses, with, needs, name}}``) into a
``SerializedWorkflow``: a ``__trigger__`` block, one block per step with
``with`` as params, edges from ``needs`` and from ``{{step.field}}`` refs (a
step with none hangs off the trigger), and an input model whose JSON Schema is
in the metadata. The DESIGN example compiles to exactly what
``define_workflow`` builds (same JSON) and runs in memory through its wait to
a loopback Slack. Every mistake is reported at once as ``WorkflowYamlError``:
each problem located at its cell line and column (shifted by ``first_line``),
named by field, with the valid choices and a "did you mean" when one is close.
"""

from __future__ import annotations

import datetime as dt
import json
import textwrap
from decimal import Decimal
from typing import Any

import pandas as pd
import pytest
from pydantic import BaseModel, ValidationError

from thodare_jupyter import (
    Catalog,
    Hidden,
    InputInvalid,
    Table,
    define_connector,
    define_workflow,
    resume_in_memory,
    run_in_memory,
)
from thodare_jupyter.authoring.workflow_yaml import (
    WorkflowYamlError,
    YamlProblem,
    workflow_from_yaml,
)

# ── connectors defined by the test (no outside service) ─────────────────────


class CountIn(BaseModel):
    rows: Table
    amount: Decimal
    at: dt.datetime


class CountOut(BaseModel):
    n: int
    kind: str
    amount: Decimal
    year: int


def _count(p: CountIn) -> CountOut:
    return CountOut(n=len(p.rows), kind=type(p.rows).__name__, amount=p.amount, year=p.at.year)


count_rows = define_connector(type="count-rows", params=CountIn, outputs=CountOut, run=_count)


class EnrichParams(BaseModel):
    email: str
    api_key: Hidden[str | None] = None


class EnrichOut(BaseModel):
    name: str
    company: str


def _enrich(p: EnrichParams) -> EnrichOut:
    return EnrichOut(name=p.email.split("@")[0].title(), company="Acme")


class LeadNotifierInput(BaseModel):  # what the YAML's `input: {email: str}` must equal
    email: str


enrich = define_connector(type="enrich-lead", params=EnrichParams, outputs=EnrichOut, run=_enrich)

DESIGN_YAML = """\
description: Tell sales about a new lead    # optional
input: {email: str}                        # optional: field: str|int|float|bool|list|dict
steps:
  enrich:
    uses: enrich-lead                      # a connector type
    with: {email: "{{trigger.email}}"}
  wait:
    uses: wait_for_event
    with: {eventName: lead.replied, correlationKey: "{{trigger.email}}", timeoutHours: 72}
  notify:
    uses: slack
    needs: [wait]                          # optional; edges are also inferred from refs
    with: {operation: send, channel: "#sales", text: "Lead {{enrich.name}} at {{enrich.company}}"}
"""


@pytest.fixture
def cat() -> Catalog:
    return Catalog(enrich)


def problems_of(text: str, cat: Catalog, first_line: int = 1) -> list[YamlProblem]:
    with pytest.raises(WorkflowYamlError) as err:
        workflow_from_yaml("wf", textwrap.dedent(text), cat, first_line=first_line)
    assert str(err.value).count("\n  line ") == len(err.value.problems)
    for p in err.value.problems:
        assert str(p) in str(err.value)
    return err.value.problems


def only(text: str, cat: Catalog, first_line: int = 1) -> YamlProblem:
    found = problems_of(text, cat, first_line)
    assert len(found) == 1, found
    return found[0]


def at(text: str, needle: str, first_line: int = 1) -> tuple[int, int]:
    """1-based (line, column) of the first ``needle`` in ``text`` (dedented), in cell lines."""
    text = textwrap.dedent(text)
    i = text.index(needle)
    line = text.count("\n", 0, i)
    return line + first_line, i - (text.rfind("\n", 0, i) + 1) + 1


def where(p: YamlProblem) -> tuple[int, int]:
    return p.line, p.column


TYPES = (
    "enrich-lead",
    "http",
    "human_approval",
    "run_workflow",
    "slack",
    "sql",
    "transform",
    "wait_duration",
    "wait_for_event",
)


# ── the DESIGN example ──────────────────────────────────────────────────────


def test_design_example_compiles_to_blocks_edges_params_and_input_model(cat: Catalog) -> None:
    wf = workflow_from_yaml("lead-notifier", DESIGN_YAML, cat, first_line=2)
    assert [(b.id, b.type) for b in wf.blocks] == [
        ("__trigger__", "trigger_webhook"),
        ("enrich", "enrich-lead"),
        ("wait", "wait_for_event"),
        ("notify", "slack"),
    ]
    params = {b.id: b.params for b in wf.blocks}
    assert params["enrich"] == {"email": "{{trigger.email}}"}
    assert params["wait"] == {
        "eventName": "lead.replied",
        "correlationKey": "{{trigger.email}}",
        "timeoutHours": 72,
    }
    assert type(params["wait"]["timeoutHours"]) is int
    assert params["notify"]["text"] == "Lead {{enrich.name}} at {{enrich.company}}"
    assert [(c.source, c.target) for c in wf.connections] == [
        ("__trigger__", "enrich"),
        ("__trigger__", "wait"),
        ("wait", "notify"),  # from needs
        ("enrich", "notify"),  # from the refs
    ]
    assert wf.metadata is not None
    assert wf.metadata.description == "Tell sales about a new lead"
    assert wf.metadata.input_schema == LeadNotifierInput.model_json_schema()
    assert wf.input_model is not None
    assert wf.input_model.model_validate({"email": "a@b.c"}).model_dump() == {"email": "a@b.c"}


def test_design_example_equals_the_fluent_builder(cat: Catalog) -> None:
    wait, slack = cat.get("wait_for_event"), cat.get("slack")
    built = (
        define_workflow("lead-notifier", description="Tell sales about a new lead")
        .input(LeadNotifierInput)
        .step("enrich", enrich, lambda r: {"email": r.input.email})
        .step(
            "wait",
            wait,
            lambda r: {
                "eventName": "lead.replied",
                "correlationKey": r.input.email,
                "timeoutHours": 72,
            },
        )
        .step(
            "notify",
            slack,
            lambda r: {
                "operation": "send",
                "channel": "#sales",
                "text": f"Lead {r.enrich.name} at {r.enrich.company}",
            },
            needs=["wait"],
        )
        .build()
    )
    from_yaml = workflow_from_yaml("lead-notifier", DESIGN_YAML, cat)
    assert from_yaml.to_json() == built.to_json()


def test_design_example_runs_in_memory_through_the_wait_to_slack(
    cat: Catalog, slack_env: dict[str, str], slack_server: Any
) -> None:
    wf = workflow_from_yaml("lead-notifier", DESIGN_YAML, cat)
    run = run_in_memory(wf, {"email": "ada@example.com"}, catalog=cat, env=slack_env)
    assert run.status == "paused"
    assert run.pause is not None
    assert (run.pause.block_id, run.pause.correlation_key) == ("wait", "ada@example.com")
    assert run.outputs["enrich"] == {"name": "Ada", "company": "Acme"}
    done = resume_in_memory(run, payload={"reply": "yes"}, catalog=cat, env=slack_env)
    assert done.status == "completed", done.error
    assert done.outputs["wait"] == {"data": {"reply": "yes"}, "timedOut": False}
    assert done.outputs["notify"]["ok"] is True
    assert [r["body"] for r in slack_server.requests] == [
        {"channel": "#sales", "text": "Lead Ada at Acme"}
    ]
    with pytest.raises(InputInvalid, match="email"):  # the input model guards the run
        run_in_memory(wf, {"mail": "x"}, catalog=cat, env=slack_env)


def test_optional_inputs_vars_names_single_needs_and_yaml_scalars(cat: Catalog) -> None:
    wf = workflow_from_yaml(
        "misc",
        textwrap.dedent("""\
            input: {email: str, note: str?, tags: list, extra: dict, n: int, x: float, ok: bool}
            vars: {greeting: Hi, team: {name: sales}}
            steps:
              first:
                uses: transform
                name: First Step
                with: {template: {when: 2024-01-02, half: 0.5, yes: true, hex: 0x10}}
              second:
                uses: transform
                needs: first
                with: {template: "{{vars.greeting}} {{trigger.note}}"}
              third:
                uses: transform
                with: {template: "{{First Step.result}}"}
        """),
        cat,
    )
    assert wf.input_model is not None
    schema = wf.input_model.model_json_schema()
    assert schema["title"] == "MiscInput"
    assert set(schema["required"]) == {"email", "tags", "extra", "n", "x", "ok"}
    assert wf.input_model(email="a", tags=[], extra={}, n=1, x=1.5, ok=True).note is None
    assert wf.variables == {"greeting": "Hi", "team": {"name": "sales"}}
    assert type(wf.variables["team"]) is dict  # plain JSON values, not ruamel's
    first = wf.blocks[1]
    assert first.name == "First Step"
    assert first.params == {"template": {"when": "2024-01-02", "half": 0.5, "yes": True, "hex": 16}}
    assert [type(v) for v in first.params["template"].values()] == [str, float, bool, int]
    edges = [(c.source, c.target) for c in wf.connections]
    assert edges == [("__trigger__", "first"), ("first", "second"), ("first", "third")]
    run = run_in_memory(
        wf,
        {"email": "a", "tags": [], "extra": {}, "n": 1, "x": 1, "ok": True, "note": "there"},
        catalog=cat,
    )
    assert run.status == "completed", run.error
    assert run.outputs["second"] == {"result": "Hi there"}
    assert run.outputs["third"] == {"result": first.params["template"]}


def test_steps_may_come_in_any_order(cat: Catalog) -> None:
    text = """\
        steps:
          late: {uses: transform, with: {template: "{{early.result}}!"}}
          early: {uses: transform, with: {template: 1}}
    """
    wf = workflow_from_yaml("order", textwrap.dedent(text), cat)
    assert [b.id for b in wf.blocks] == ["__trigger__", "late", "early"]
    assert [(c.source, c.target) for c in wf.connections] == [
        ("early", "late"),
        ("__trigger__", "early"),
    ]
    assert run_in_memory(wf, catalog=cat).outputs["late"] == {"result": "1!"}


def test_two_hundred_steps_compile(cat: Catalog) -> None:
    lines = ["steps:", "  s0: {uses: transform, with: {template: '{{trigger.x}}'}}"]
    lines += [
        f"  s{i}: {{uses: transform, with: {{template: '{{{{s{i - 1}.result}}}}'}}}}"
        for i in range(1, 200)
    ]
    wf = workflow_from_yaml("long", "\n".join(lines), cat)
    assert len(wf.blocks) == 201
    assert (wf.connections[0].source, wf.connections[-1].source) == ("__trigger__", "s198")
    assert [c.target for c in wf.connections] == [f"s{i}" for i in range(200)]


# ── located errors ──────────────────────────────────────────────────────────


def test_yaml_syntax_error_is_located_and_says_what_to_do(cat: Catalog) -> None:
    text = "steps:\n  a: {uses: transform\n  b: x\n"
    p = only(text, cat, first_line=2)
    assert (where(p), p.field, p.choices) == (at(text, "{", 2), "", ())  # the unclosed '{'
    assert p.message == (
        "this '{' is never closed; add '}' after its last item, or ',' between items "
        "(YAML was still inside it at line 4, col 4)"
    )
    dup = only("steps:\n  a: {uses: transform}\n  a: {uses: http}\n", cat)
    assert where(dup) == (3, 3)
    assert dup.message == "duplicate key 'a' (first at line 2); keep one"
    text = "steps:\n  a: {uses: transform, with: {template: 'x\x07'}}\n"
    bad_char = only(text, cat)
    assert where(bad_char) == at(text, "\x07") == (2, 43)
    assert bad_char.message == (
        'the character U+0007 is not allowed in YAML; delete it, or write "\\u0007" in a '
        "double-quoted string"
    )


def test_unknown_top_level_key_and_a_cell_that_is_no_mapping(cat: Catalog) -> None:
    text = "descripton: x\nsteps: {a: {uses: transform, with: {template: 1}}}\n"
    p = only(text, cat)
    assert (where(p), p.field) == ((1, 1), "descripton")
    assert p.message == "unknown key; did you mean 'description'?"
    assert p.choices == ("description", "input", "steps", "vars")
    for empty in ("", "# only a comment\n", "- a\n- b\n"):
        p = only(empty, cat, first_line=2)
        assert (where(p), p.field) == ((2, 1), "")
        assert "mapping with at least `steps:`" in p.message
    p = only("description: [1]\nsteps: {a: {uses: transform, with: {template: 1}}}\n", cat)
    assert (where(p), p.field, p.message) == ((1, 14), "description", "must be a string")


@pytest.mark.parametrize(
    ("text", "pos", "message"),
    [
        ("description: x\n", (1, 1), "add at least one step"),
        ("steps:\n", (1, 1), "add at least one step"),
        ("steps: {}\n", (1, 8), "add at least one step"),
        ("steps: [a, b]\n", (1, 8), "must be a mapping"),
    ],
)
def test_steps_missing_empty_or_not_a_mapping(
    cat: Catalog, text: str, pos: tuple[int, int], message: str
) -> None:
    p = only(text, cat)
    assert (where(p), p.field, p.choices) == (pos, "steps", ())
    assert message in p.message


def test_step_that_is_no_mapping_has_bad_keys_or_a_bad_id(cat: Catalog) -> None:
    text = """\
        steps:
          a: transform
          trigger:
            uses: transform
            wiht: {template: 1}
            with: {template: 1}
            name: [x]
    """
    a, trig, wiht, name = problems_of(text, cat)
    assert (where(a), a.field) == ((2, 6), "steps.a")
    assert "a step is a mapping" in a.message
    assert (where(trig), trig.field) == ((3, 3), "steps.trigger")
    assert "reserved" in trig.message
    assert (where(wiht), wiht.field) == ((5, 5), "steps.trigger.wiht")
    assert wiht.message == "unknown key; did you mean 'with'?"
    assert wiht.choices == (
        "concurrency", "for_each", "name", "needs", "retries", "timeout", "uses", "when", "with"
    )  # fmt: skip
    assert (where(name), name.field, name.message) == (
        (7, 11),
        "steps.trigger.name",
        "must be a string",
    )


def test_missing_and_unknown_connector_type(cat: Catalog) -> None:
    text = """\
        steps:
          enrich:
            uses: enrich-led
            with: {email: x}
          nothing:
            with: {}
          far:
            uses: zzz
          trig:
            uses: trigger_webhook
    """
    typo, missing, far, trig = problems_of(text, cat, first_line=2)
    assert (where(typo), typo.field) == ((4, 11), "steps.enrich.uses")
    assert typo.message == "unknown connector type 'enrich-led'; did you mean 'enrich-lead'?"
    assert typo.choices == TYPES
    assert (where(missing), missing.field, missing.choices) == ((6, 3), "steps.nothing.uses", TYPES)
    assert "missing" in missing.message
    assert far.message == (
        "unknown connector type 'zzz'; define it with @connector / define_connector first"
    )
    assert "is the trigger every workflow has" in trig.message
    with pytest.raises(WorkflowYamlError) as info:
        workflow_from_yaml("wf", textwrap.dedent(text), cat, first_line=2)
    err = str(info.value)
    assert (
        "line 4, col 11: steps.enrich.uses: unknown connector type 'enrich-led'; did you mean "
        "'enrich-lead'? (choices: enrich-lead, http, human_approval, run_workflow, slack, sql, "
        "transform, wait_duration, wait_for_event)"
    ) in err
    assert err.startswith("Workflow 'wf': the YAML has 4 problem(s); fix them")


def test_with_not_a_mapping_and_unknown_params_list_hidden_ones(cat: Catalog) -> None:
    text = """\
        steps:
          a:
            uses: http
            with: [1, 2]
          b:
            uses: enrich-lead
            with:
              email: x
              apikey: "{{env.KEY}}"
    """
    bad_with, unknown = problems_of(text, cat)
    assert (where(bad_with), bad_with.field) == ((4, 11), "steps.a.with")
    assert "must be a mapping of params" in bad_with.message
    assert (where(unknown), unknown.field) == ((9, 7), "steps.b.with.apikey")
    assert unknown.message == (
        "enrich-lead has no param 'apikey'. Params: api_key, email. Did you mean 'api_key'?"
    )
    assert unknown.choices == ("api_key", "email")  # the hidden param is the user's to set


def test_param_values_and_required_params_are_checked_at_their_place(cat: Catalog) -> None:
    text = """\
        steps:
          w:
            uses: wait_duration
            with: {duration: -1, unit: "{{trigger.unit}}"}
          x:
            uses: wait_for_event
          e:
            uses: enrich-lead
            with: {email: a@b.c, api_key: [s3cret]}
    """
    neg, missing, hidden = problems_of(text, cat)
    assert (where(neg), neg.field) == ((4, 22), "steps.w.with.duration")
    assert "greater than or equal to 0" in neg.message
    assert (where(missing), missing.field) == ((5, 3), "steps.x.with.eventName")
    assert missing.message == "Required field 'eventName' is missing."
    assert (where(hidden), hidden.field) == ((9, 35), "steps.e.with.api_key")
    assert hidden.message.startswith("'api_key' expects string: ")
    assert "s3cret" not in hidden.message  # a hidden param's value is never shown


def test_needs_unknown_steps(cat: Catalog) -> None:
    text = """\
        steps:
          wait: {uses: wait_duration, with: {duration: 1, unit: s}}
          go:
            uses: transform
            needs: [wiat, wait, [wait]]
            with: {template: 1}
          solo:
            uses: transform
            needs: {a: 1}
            with: {template: 1}
    """
    typo, nested, shape = problems_of(text, cat)
    assert (where(typo), typo.field) == ((5, 13), "steps.go.needs")
    assert typo.message == "unknown step 'wiat'; did you mean 'wait'?"
    assert typo.choices == ("solo", "wait")
    assert (where(nested), nested.field) == ((5, 25), "steps.go.needs")
    assert nested.message == "unknown step '['wait']'; did you mean 'wait'?"
    assert (where(shape), shape.field) == ((9, 12), "steps.solo.needs")
    assert "a step id or a list of them" in shape.message


def test_refs_to_unknown_steps_outputs_inputs_and_vars(cat: Catalog) -> None:
    text = """\
        input: {email: str}
        vars: {team: sales}
        steps:
          enrich:
            uses: enrich-lead
            with: {email: "{{trigger.emial}}"}
          notify:
            uses: transform
            with:
              template:
                - "{{enrih.name}}"
                - {deep: "Hi {{enrich.nmae}} from {{vars.teem}}"}
    """
    inp, step, out, var = problems_of(text, cat, first_line=2)
    assert (where(inp), inp.field) == (at(text, '"{{trigger.emial', 2), "steps.enrich.with.email")
    assert inp.message == (
        "The run input has no field 'emial'. Input fields: email. Did you mean 'email'?"
    )
    assert inp.choices == ("email",)
    assert (where(step), step.field) == (at(text, '"{{enrih', 2), "steps.notify.with.template[0]")
    assert step.message == (
        "Reference 'enrih' does not match any block id or name. Blocks: enrich. "
        "Did you mean 'enrich'?"
    )
    assert step.choices == ("enrich", "env", "trigger", "vars")
    assert (where(out), out.field) == (at(text, '"Hi', 2), "steps.notify.with.template[1].deep")
    assert out.message == (
        "Block 'enrich' (enrich-lead) does not declare output 'nmae'. Available: company, name. "
        "Did you mean 'name'?"
    )
    assert out.choices == ("company", "name")
    assert (where(var), var.field) == (where(out), out.field)
    assert var.message == (
        "Workflow variable 'teem' is not declared. Variables: team. Did you mean 'team'?"
    )
    assert var.choices == ("team",)


def test_yaml_and_engine_problems_come_together_and_a_broken_step_is_not_blamed_twice(
    cat: Catalog,
) -> None:
    text = """\
        steps:
          broken:
            uses: enrich-led
          notify:
            uses: transform
            wiht: 1
            with: {template: "{{broken.name}} {{ghost.x}}"}
    """
    typo, key, ghost = problems_of(text, cat)
    assert typo.field == "steps.broken.uses" and "did you mean 'enrich-lead'" in typo.message
    assert key.field == "steps.notify.wiht"
    assert (where(ghost), ghost.field) == (at(text, '"{{broken'), "steps.notify.with.template")
    assert ghost.message.startswith("Reference 'ghost' does not match any block id or name.")
    assert ghost.choices == ("env", "trigger", "vars")  # broken is left out until it compiles


def test_data_input_types_table_file_datetime_date_decimal(cat: Catalog) -> None:
    text = """\
        input: {rows: table, report: file?, at: datetime, day: date?, amount: decimal}
        steps:
          count:
            uses: count-rows
            with: {rows: "{{trigger.rows}}", amount: "{{trigger.amount}}", at: "{{trigger.at}}"}
    """
    cat.register(count_rows)
    wf = workflow_from_yaml("data-in", textwrap.dedent(text), cat)
    model = wf.input_model
    assert model is not None
    fields = model.model_fields
    assert [n for n, f in fields.items() if f.is_required()] == ["rows", "at", "amount"]
    assert fields["at"].annotation is dt.datetime and fields["amount"].annotation is Decimal
    assert fields["day"].annotation == dt.date | None
    props = model.model_json_schema()["properties"]
    assert props["rows"]["format"] == "table" and props["at"]["format"] == "date-time"
    assert "File" in json.dumps(props["report"])
    ok = model.model_validate(
        {"rows": pd.DataFrame({"a": [1, 2]}), "at": "2026-03-04T05:06:07Z", "amount": "0.10"}
    )
    assert ok.amount == Decimal("0.10") and ok.at.year == 2026 and ok.report is None
    with pytest.raises(ValidationError, match="DataFrame"):
        model.model_validate({"rows": [1, 2], "at": "2026-03-04", "amount": 1})

    given = {
        "rows": pd.DataFrame({"a": [1, 2, 3]}), "at": dt.datetime(2026, 3, 4, tzinfo=dt.UTC),
        "amount": Decimal("12.345678901234567890"), "report": b"%PDF-1.4",
    }  # fmt: skip
    run = run_in_memory(wf, given, catalog=cat, env={})
    assert run.status == "completed", run.error
    assert run.outputs["count"] == {
        "n": 3, "kind": "DataFrame", "amount": "12.345678901234567890", "year": 2026,
    }  # fmt: skip
    assert run.trigger["rows"]["$artifact"].startswith("sha256:")  # the input holds a reference
    assert run.trigger["report"]["kind"] == "file"


def test_bad_input_types_and_names(cat: Catalog) -> None:
    text = """\
        input:
          email: string
          age: int?
          _private: str
          tags: [str]
        steps: {a: {uses: transform, with: {template: 1}}}
    """
    typo, private, listed = problems_of(text, cat)
    assert (where(typo), typo.field) == ((2, 10), "input.email")
    assert typo.message == "unknown type 'string'; did you mean 'str'?; add '?' for optional"
    assert typo.choices == (
        "bool", "date", "datetime", "decimal", "dict", "file", "float", "int", "list", "str",
        "table",
    )  # fmt: skip
    assert (where(private), private.field) == ((4, 3), "input._private")
    assert "identifier" in private.message
    assert (where(listed), listed.field, listed.choices) == ((5, 9), "input.tags", typo.choices)
    p = only("input: [email]\nsteps: {a: {uses: http, with: {url: x}}}\n", cat)
    assert (where(p), p.field, p.message) == ((1, 8), "input", "must be a mapping: {field: type}")
    p = only("input: {json: str}\nsteps: {a: {uses: http, with: {url: x}}}\n", cat)
    assert (where(p), p.message) == ((1, 9), "'json' is a pydantic BaseModel attribute")
    p = only("vars: [1]\nsteps: {a: {uses: http, with: {url: x}}}\n", cat)
    assert (where(p), p.field) == ((1, 7), "vars")


def test_cycles_from_needs_and_refs(cat: Catalog) -> None:
    text = """\
        steps:
          a:
            uses: transform
            with: {template: "{{b.result}}"}
          b:
            uses: transform
            needs: a
            with: {template: 1}
    """
    p = only(text, cat, first_line=2)
    assert p.field in ("steps.a", "steps.b")
    assert where(p) == at(text, p.field.split(".")[1] + ":", 2)
    assert "The workflow has a cycle: " in p.message
    assert "a → b" in p.message and "b → a" in p.message
    selfish = only("steps:\n  me: {uses: transform, with: {template: '{{me.result}}'}}\n", cat)
    assert (where(selfish), selfish.message.split(";")[0]) == (
        (2, 3),
        "The workflow has a cycle: me → me",
    )


def test_remaining_engine_problems_are_mapped_to_the_step(cat: Catalog) -> None:
    text = """\
        steps:
          a:
            uses: transform
            with: {template: "token {{env}}"}
    """
    p = only(text, cat, first_line=2)
    assert (where(p), p.field) == ((5, 22), "steps.a.with.template")
    assert p.message == "Use {{env.NAME}} to read an env value."


def test_first_line_shifts_every_line_but_no_column(cat: Catalog) -> None:
    text = "steps:\n  a:\n    uses: transfrom\n"
    at1, at2, at10 = (only(text, cat, first_line=n) for n in (1, 2, 10))
    assert [where(x) for x in (at1, at2, at10)] == [(3, 11), (4, 11), (12, 11)]
    assert str(at2).startswith("line 4, col 11: steps.a.uses: unknown connector type 'transfrom'")


def test_problems_are_reported_together_in_cell_order(cat: Catalog) -> None:
    text = """\
        inptu: {}
        steps:
          b:
            uses: transform
            with: {template: "{{nope.x}}"}
          a:
            uses: nope
    """
    found = problems_of(text, cat)
    assert [where(p) for p in found] == sorted(where(p) for p in found)
    assert [p.field for p in found] == ["inptu", "steps.b.with.template", "steps.a.uses"]
