"""Types checked at compile time (issue 16).

* A param that is exactly one ``{{ref}}`` must be able to take what the ref's declared
  type holds (the upstream outputs model, the run input's model, a variable's value, a
  ``for_each`` item): a table or a list into ``str``, a ``str`` into ``int`` is a
  ``ref-type-mismatch``, located in ``%%workflow`` (line and column), the builder (the
  step's line) and ``apply_operations`` (the op's field is not changed). Unknown types
  pass (``Any``, untyped outputs, an input without a model); numbers widen; a table fits
  a list; refs inside longer text are strings.
* A ref into a field its type does not declare (``{{a.person.nme}}``) is a
  ``ref-unknown-field`` with a did-you-mean, unless the type allows any key there.
* Every problem is an :class:`Issue` (block, field, code, message) on
  ``WorkflowInvalid.issues``, ``problems`` keeping the lines; ``apply_operations``'
  ``validation_errors`` carry the same codes.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict, computed_field

from thodare_jupyter import (
    BuildError,
    Catalog,
    SerializedWorkflow,
    Table,
    WorkflowInvalid,
    apply_operations,
    define_connector,
    define_workflow,
    run_in_memory,
)
from thodare_jupyter.authoring.workflow_yaml import workflow_from_yaml
from thodare_jupyter.errors import Issue, WorkflowYamlError
from thodare_jupyter.validation import compile_workflow


class Person(BaseModel):
    name: str
    age: int


class Loose(BaseModel):
    model_config = ConfigDict(extra="allow")
    id: int = 0


class QueryParams(BaseModel):
    query: str = "select 1"


class QueryOut(BaseModel):
    rows: Table  # type: ignore[type-arg]  # a bare Table: pandas
    count: int
    ratio: float = 0.0
    names: list[str] = []
    people: list[Person] = []
    person: Person
    maybe: Person | None = None
    free: dict[str, Any] = {}
    loose: Loose = Loose()
    anything: Any = None


class NotifyParams(BaseModel):
    text: str = ""
    n: int = 0
    x: float = 0.0
    flag: bool = False
    tags: list[Any] = []
    opt: str | None = None
    blob: Any = None


class NotifyOut(BaseModel):
    ok: bool = True


def _query(p: QueryParams) -> dict[str, Any]:
    raise AssertionError("never run: these workflows do not compile")


SEEN: list[dict[str, Any]] = []


def _notify(p: NotifyParams) -> NotifyOut:
    SEEN.append(p.model_dump())
    return NotifyOut()


QUERY = define_connector(type="query", params=QueryParams, outputs=QueryOut, run=_query)
NOTIFY = define_connector(type="notify", params=NotifyParams, outputs=NotifyOut, run=_notify)
UNTYPED = define_connector(type="untyped", params=QueryParams, run=lambda p: {"rows": [1]})
CATALOG = Catalog(QUERY, NOTIFY, UNTYPED)


def _wf(params: dict[str, Any], *, source: str = "query", **block: Any) -> SerializedWorkflow:
    return SerializedWorkflow.model_validate(
        {
            "metadata": {"name": "types"},
            "blocks": [
                {"id": "q", "type": source},
                {"id": "notify", "type": "notify", "params": params, **block},
            ],
            "connections": [{"source": "q", "target": "notify"}],
        }
    )


def _issues(wf: SerializedWorkflow) -> list[Issue]:
    with pytest.raises(WorkflowInvalid) as ei:
        compile_workflow(wf, CATALOG)
    assert ei.value.problems == [str(i) for i in ei.value.issues]
    return ei.value.issues


# ── the rule ──


@pytest.mark.parametrize(
    ("param", "ref", "says"),
    [
        ("text", "q.rows", "is a table, but 'text' takes a string"),
        ("n", "q.rows", "is a table, but 'n' takes an integer"),
        ("text", "q.names", "is a list, but 'text' takes a string"),
        ("text", "q.person", "is an object, but 'text' takes a string"),
        ("n", "q.person.name", "is a string, but 'n' takes an integer"),
        ("flag", "q.person.name", "is a string, but 'flag' takes a boolean"),
        ("text", "q.count", "is an integer, but 'text' takes a string"),
        ("tags", "q.count", "is an integer, but 'tags' takes a list"),
        ("text", "q.rows.name", "is a list, but 'text' takes a string"),  # a column
        ("opt", "q.people", "is a list, but 'opt' takes a string"),  # optional target
    ],
)
def test_a_whole_ref_whose_type_cannot_fit_its_param_is_a_mismatch(
    param: str, ref: str, says: str
) -> None:
    (issue,) = _issues(_wf({param: f"{{{{{ref}}}}}"}))
    assert (issue.block, issue.field, issue.code, issue.ref) == (
        "notify",
        param,
        "ref-type-mismatch",
        ref,
    )
    assert issue.message.startswith(f"{{{{{ref}}}}} {says}."), issue.message


def test_the_message_says_what_to_pass_instead() -> None:
    table, obj, ints = (
        _issues(_wf({"text": v}))[0].message for v in ("{{q.rows}}", "{{q.person}}", "{{q.count}}")
    )
    assert "Use for_each over its rows ({{item.<column>}})" in table
    assert "pass one value ({{q.rows.<column>.0}})" in table
    assert "Pass one of its fields ({{q.person.name}}). Fields: age, name." in obj
    assert 'Write it inside text ("… {{q.count}} …")' in ints
    line = str(_issues(_wf({"text": "{{q.rows}}"}))[0])
    assert line.startswith("Block 'notify' (notify) param 'text': {{q.rows}} is a table")


@pytest.mark.parametrize(
    "params",
    [
        {"x": "{{q.count}}"},  # int widens to float
        {"n": "{{q.ratio}}"},  # 2.0 is an int to pydantic
        {"tags": "{{q.rows}}"},  # a table reaches a list param as its rows
        {"tags": "{{q.rows.name}}", "text": "{{q.rows.name.0}}"},  # a column; one value
        {"text": "{{q.maybe.name}}", "opt": "{{q.maybe.name}}"},  # optional source
        {"blob": "{{q.rows}}", "text": "{{q.anything}}", "n": "{{q.free.x.y}}"},  # Any / dict
        {"text": "{{q.loose.whatever}}"},  # extra="allow": any key, unknown type
        {"text": "rows: {{q.rows}} n={{q.count}}", "opt": " {{q.person.name}} "},  # inside text
        {"text": "{{env.NAME}}", "n": "{{env.COUNT}}"},  # env values: unknown
    ],
)
def test_what_may_fit_passes(params: dict[str, Any]) -> None:
    assert compile_workflow(_wf(params), CATALOG)


def test_untyped_outputs_and_untyped_input_pass() -> None:
    assert compile_workflow(_wf({"n": "{{q.rows}}"}, source="untyped"), CATALOG)
    wf = _wf({"n": "{{trigger.anything.deep}}", "tags": "{{trigger}}"})
    assert compile_workflow(wf, CATALOG)


def test_a_ref_into_an_undeclared_field_is_an_error_with_a_suggestion() -> None:
    (issue,) = _issues(_wf({"text": "{{q.person.nme}}"}))
    assert (issue.code, issue.field, issue.ref) == ("ref-unknown-field", "text", "q.person.nme")
    assert issue.message == (
        "{{q.person}} has no field 'nme' (in {{q.person.nme}}). Fields: age, name. "
        "Did you mean 'name'?"
    )
    (top,) = _issues(_wf({"text": "Hi {{q.cuont}}"}))  # embedded refs are read too
    assert top.code == "ref-unknown-field"
    assert top.message.endswith("Available: anything, count, free, loose, maybe, names, "
                                "people, person, ratio, rows. Did you mean 'count'?")  # fmt: skip
    (item,) = _issues(_wf({"text": "{{q.people.0.nmae}}"}))
    assert "{{q.people.0}} has no field 'nmae'" in item.message


def test_seed_promise_a_missing_path_into_an_untyped_value_still_resolves_to_none() -> None:
    """The seed resolves a missing path to nothing; only declared types are checked."""
    SEEN.clear()
    wf = SerializedWorkflow.model_validate(
        {
            "blocks": [
                {"id": "t", "type": "trigger_webhook"},
                {"id": "n", "type": "notify", "params": {"opt": "{{trigger.a.b.missing}}"}},
            ],
            "connections": [{"source": "t", "target": "n"}],
        }
    )
    run = run_in_memory(wf, {"a": {}}, catalog=CATALOG)
    assert run.status == "completed", run.error
    assert SEEN[-1]["opt"] is None


def test_the_run_input_model_types_trigger_refs() -> None:
    class In(BaseModel):
        who: Person
        rows: Table  # type: ignore[type-arg]

    wf = define_workflow("w").input(In).step("n", NOTIFY, {"tags": "{{trigger.rows}}"}).build()
    bad = wf.model_copy(deep=True)
    bad.blocks[1].params = {"text": "{{trigger.rows}}", "n": "{{trigger.who.nmae}}"}
    issues = {i.field: i for i in _issues(bad)}
    assert issues["text"].code == "ref-type-mismatch"
    assert issues["n"].code == "ref-unknown-field"
    assert "Did you mean 'name'?" in issues["n"].message


def test_a_variable_has_the_type_of_its_value() -> None:
    wf = _wf({"n": "{{vars.channel}}", "text": "{{vars.channel}}"})
    wf.variables = {"channel": "#ops"}
    (issue,) = _issues(wf)
    assert (issue.field, issue.code) == ("n", "ref-type-mismatch")


# ── for_each ──


def test_for_each_items_have_the_element_type_of_their_source() -> None:
    ok = _wf({"text": "{{item.name}}", "n": "{{item.age}}", "x": "{{item_index}}"})
    ok.blocks[1].for_each = "{{q.people}}"
    assert compile_workflow(ok, CATALOG)
    rows = _wf({"text": "{{item.any_column}}"}, forEach="{{q.rows}}")  # columns: unknown
    assert compile_workflow(rows, CATALOG)
    bad = _wf({"n": "{{item.name}}", "text": "{{item.nmae}}"}, forEach="{{q.people}}")
    issues = {i.field: i.code for i in _issues(bad)}
    assert issues == {"n": "ref-type-mismatch", "text": "ref-unknown-field"}


def test_for_each_must_read_a_list_or_a_table() -> None:
    (issue,) = _issues(_wf({"text": "{{item}}"}, forEach="{{q.count}}"))
    assert (issue.field, issue.code) == ("forEach", "ref-type-mismatch")
    assert "for_each takes a list or a table" in issue.message


def test_refs_into_a_for_each_steps_output_read_items_and_failed() -> None:
    each = {"id": "each", "type": "notify", "params": {"text": "{{item.name}}"}}
    wf = SerializedWorkflow.model_validate(
        {
            "blocks": [
                {"id": "q", "type": "query"},
                {**each, "forEach": "{{q.people}}"},
                {"id": "sum", "type": "notify", "params": {"tags": "{{each.items}}"}},
            ],
            "connections": [{"source": "q", "target": "each"}, {"source": "each", "target": "sum"}],
        }
    )
    assert compile_workflow(wf, CATALOG)
    wf.blocks[2].params = {"text": "{{each.failed}}", "flag": "{{each.items.0.ok}}"}
    (issue,) = _issues(wf)
    assert (issue.block, issue.field, issue.code) == ("sum", "text", "ref-type-mismatch")


# ── structured issues for every rule ──


def test_every_existing_rule_has_a_stable_code() -> None:
    wf = SerializedWorkflow.model_validate(
        {
            "blocks": [
                {"id": "q", "type": "query"},
                {"id": "a", "type": "notify", "params": {"nope": 1, "n": "x"}},
                {"id": "b", "type": "notify", "params": {"text": "{{ghost.x}} {{vars.v}}"}},
                {"id": "c", "type": "notify", "params": {"text": "{{b.ok}} {{item}}"}},
            ],
            "connections": [{"source": "q", "target": "a"}],
        }
    )
    codes = {(i.block, i.field, i.code) for i in _issues(wf)}
    assert codes == {
        ("a", "nope", "unknown-param"),
        ("a", "n", "invalid-param-value"),
        ("b", "text", "unknown-block"),
        ("b", "text", "unknown-variable"),
        ("c", "text", "ref-not-upstream"),
        ("c", "text", "item-outside-for-each"),
    }
    ghost = SerializedWorkflow.model_validate(
        {"blocks": [{"id": "a", "type": "nope"}, {"id": "a", "type": "notify"}]}
    )
    assert {(i.block, i.code) for i in _issues(ghost)} == {
        ("a", "duplicate-block-id"),
        ("a", "unknown-connector"),
    }


def test_a_plain_string_problem_is_an_issue_of_code_invalid() -> None:
    e = WorkflowInvalid("w", ["something broke"])
    assert e.issues == [Issue(None, None, "invalid", "something broke")]
    assert e.problems == ["something broke"]


# ── where it surfaces: %%workflow, the builder, apply_operations ──

YAML = """\
steps:
  q:
    uses: query
  notify:
    uses: notify
    with:
      text: "{{q.rows}}"
      tags: ["{{q.count}}", "ok {{q.person.nmae}}"]
"""


def test_yaml_locates_a_mismatch_and_a_deep_unknown_field_at_their_strings() -> None:
    with pytest.raises(WorkflowYamlError) as ei:
        workflow_from_yaml("w", YAML, CATALOG, first_line=2)
    got = {(p.line, p.column, p.field): p.message for p in ei.value.problems}
    mismatch = got.pop((8, 13, "steps.notify.with.text"))
    assert mismatch.startswith("{{q.rows}} is a table, but 'text' takes a string.")
    unknown = got.pop((9, 29, "steps.notify.with.tags[1]"))
    assert unknown.startswith("{{q.person}} has no field 'nmae'")
    assert got == {}


def test_yaml_locates_a_for_each_mismatch_at_the_for_each() -> None:
    text = "steps:\n  q: {uses: query}\n  n:\n    uses: notify\n    for_each: '{{q.count}}'\n"
    with pytest.raises(WorkflowYamlError) as ei:
        workflow_from_yaml("w", text, CATALOG)
    (p,) = ei.value.problems
    assert (p.line, p.column, p.field) == (5, 15, "steps.n.for_each")


def test_the_builder_raises_with_the_steps_line() -> None:
    b = define_workflow("w").step("q", QUERY).step("n", NOTIFY, lambda r: {"text": r.q.rows})
    with pytest.raises(BuildError) as ei:
        b.build()
    (issue,) = ei.value.issues
    assert (issue.block, issue.field, issue.code) == ("n", "text", "ref-type-mismatch")
    assert "test_ref_types.py" in issue.message and "line " in issue.message
    ok = define_workflow("w").step("q", QUERY).step("n", NOTIFY, lambda r: {"tags": r.q.rows})
    assert ok.build().blocks[-1].params == {"tags": "{{q.rows}}"}


def test_a_run_input_declared_str_into_an_int_param_is_refused_at_build() -> None:
    class In(BaseModel):
        n: str

    b = define_workflow("w").input(In).step("n", NOTIFY, lambda r: {"n": r.input.n})
    with pytest.raises(BuildError) as ei:
        b.build()
    (issue,) = ei.value.issues
    assert issue.message.startswith("{{trigger.n}} is a string, but 'n' takes an integer.")


def test_builder_issues_carry_codes() -> None:
    b = define_workflow("w").step("q", QUERY).step("n", NOTIFY, lambda r: {"text": r.q.nope})
    b = b.step("q", NOTIFY, {"bogus": 1})
    with pytest.raises(BuildError) as ei:
        b.build()
    assert [(i.block, i.code) for i in ei.value.issues] == [
        ("n", "ref-unknown-field"),
        ("q", "duplicate-block-id"),
        ("q", "unknown-param"),
    ]


def test_apply_operations_refuses_a_mismatching_ref_and_says_why() -> None:
    base = _wf({"text": "hello"})
    res = apply_operations(
        base,
        [
            {"operation_type": "edit", "block_id": "notify", "params": {"text": "{{q.rows}}"}},
            {"operation_type": "edit", "block_id": "notify", "params": {"tags": "{{q.rows}}"}},
        ],
        CATALOG,
    )
    assert not res.ok
    (issue,) = res.validation_errors
    assert (issue.block_id, issue.field, issue.code) == ("notify", "text", "ref-type-mismatch")
    assert issue.error.startswith("{{q.rows}} is a table, but 'text' takes a string.")
    assert issue.error.endswith("The field was not changed.")
    assert res.workflow.blocks[1].params == {"text": "hello", "tags": "{{q.rows}}"}
    assert (
        "• [ref-type-mismatch] notify (notify) field 'text': {{q.rows}} is a table" in res.summary
    )


def test_yaml_reads_a_for_each_steps_items() -> None:
    text = (
        "steps:\n  q: {uses: query}\n"
        "  each:\n    uses: notify\n    for_each: '{{q.people}}'\n"
        "    with: {text: '{{item.name}}'}\n"
        "  sum:\n    uses: notify\n    with: {tags: '{{each.items}}', n: '{{each.nope}}'}\n"
    )
    with pytest.raises(WorkflowYamlError) as ei:
        workflow_from_yaml("w", text, CATALOG)
    (p,) = ei.value.problems
    assert p.field == "steps.sum.with.n"
    assert p.message.startswith("Block 'each' (for_each of notify) does not declare output 'nope'")
    assert p.choices == ("failed", "items")
    wf = workflow_from_yaml("w", text.replace(", n: '{{each.nope}}'", ""), CATALOG)
    assert wf.blocks[-1].params == {"tags": "{{each.items}}"}


def test_an_outputs_model_without_json_schema_still_names_its_fields() -> None:
    class Opaque:
        pass

    class OddOut(BaseModel):
        model_config = ConfigDict(arbitrary_types_allowed=True)
        thing: Opaque
        label: str = ""

    odd = define_connector(type="odd", params=QueryParams, outputs=OddOut, run=lambda p: None)
    cat = Catalog(odd, NOTIFY)
    good = _wf({"text": "{{q.thing}}", "n": "{{q.label}}"}, source="odd")
    assert compile_workflow(good, cat)  # fields known, types not: they pass
    with pytest.raises(WorkflowInvalid) as ei:
        compile_workflow(_wf({"text": "{{q.thnig}}"}, source="odd"), cat)
    assert [i.code for i in ei.value.issues] == ["ref-unknown-field"]
    assert "Did you mean 'thing'?" in ei.value.problems[0]


def test_yaml_input_types_reach_the_params() -> None:
    text = (
        "input: {count: str, size: int?, rows: table}\n"
        "steps:\n  n:\n    uses: notify\n"
        "    with: {n: '{{trigger.count}}', x: '{{trigger.size}}', tags: '{{trigger.rows}}'}\n"
    )
    with pytest.raises(WorkflowYamlError) as ei:
        workflow_from_yaml("w", text, CATALOG)
    (p,) = ei.value.problems
    assert (p.line, p.column, p.field) == (5, 15, "steps.n.with.n")
    assert p.message.startswith("{{trigger.count}} is a string, but 'n' takes an integer.")


def test_outputs_are_typed_as_stored_or_as_validated() -> None:
    """A Decimal is stored as a string but is a number to its model; a computed field is
    stored. Either may be read, so neither is refused."""

    class PriceOut(BaseModel):
        price: Decimal
        name: str = ""

        @computed_field  # type: ignore[prop-decorator]
        @property
        def label(self) -> str:
            return f"{self.name}: {self.price}"

    priced = define_connector(type="priced", params=QueryParams, outputs=PriceOut, run=_query)
    cat = Catalog(priced, NOTIFY)
    wf = _wf({"x": "{{q.price}}", "text": "{{q.label}}"}, source="priced")
    assert compile_workflow(wf, cat)
    with pytest.raises(WorkflowInvalid) as ei:
        compile_workflow(_wf({"x": "{{q.name}}", "tags": "{{q.label}}"}, source="priced"), cat)
    assert [(i.field, i.code) for i in ei.value.issues] == [
        ("x", "ref-type-mismatch"),
        ("tags", "ref-type-mismatch"),
    ]
