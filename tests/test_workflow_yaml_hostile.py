"""Hostile or odd YAML in a ``%%workflow`` cell is refused fast, located, and says what to do.

The cell's text is screened event by event before ruamel.yaml builds anything
(``authoring/cell_yaml.py``): anchors and aliases (a "billion laughs" never
expands), explicit tags (``!!python/object``, ``!!set``, ``!Foo``...), nesting
deeper than 64, integers outside ±(2**53 - 1), non-finite floats, merge keys,
directives and second documents are refused. ruamel's own errors (tabs, bad
indentation, unclosed quotes and brackets, duplicate keys, a ': ' inside a
value, a list or scalar instead of a mapping, an empty cell) become sentences
at a cell line and column. Every refusal is a ``WorkflowYamlError`` that comes
back in well under two seconds; a few hundred random mutations of a valid cell
never raise anything else.
"""

from __future__ import annotations

import itertools
import random
import time

import pytest

from thodare_jupyter import Catalog
from thodare_jupyter.authoring.cell_yaml import MAX_DEPTH, MAX_INT
from thodare_jupyter.authoring.workflow_yaml import workflow_from_yaml
from thodare_jupyter.errors import WorkflowYamlError, YamlProblem
from thodare_jupyter.notebook.magics import located
from thodare_jupyter.wire import SerializedWorkflow

CAT = Catalog()
FAST = 2.0  # seconds: generous for a slow, shared machine; the real cost is milliseconds
STEP = "steps:\n  s: {uses: transform, with: {template: 1}}\n"


def compile_cell(text: str, first_line: int = 2) -> SerializedWorkflow:
    return workflow_from_yaml("wf", text, CAT, first_line=first_line)


def refused(text: str, first_line: int = 2) -> list[YamlProblem]:
    """The problems of a cell that must not compile, checked for shape and speed."""
    start = time.perf_counter()
    with pytest.raises(WorkflowYamlError) as info:
        compile_cell(text, first_line)
    assert time.perf_counter() - start < FAST
    for p in info.value.problems:
        assert first_line <= p.line <= first_line + text.count("\n"), p
        assert p.column >= 1 and p.field == "", p
        assert "; " in p.message, p  # what is wrong; what to do
        assert str(p) in str(info.value)
    return info.value.problems


def only(text: str, first_line: int = 2) -> YamlProblem:
    found = refused(text, first_line)
    assert len(found) == 1, found
    return found[0]


def at(text: str, needle: str, first_line: int = 2) -> tuple[int, int]:
    """The cell (line, column) of the first ``needle`` in ``text``, 1-based."""
    i = text.index(needle)
    return text.count("\n", 0, i) + first_line, i - (text.rfind("\n", 0, i) + 1) + 1


def where(p: YamlProblem) -> tuple[int, int]:
    return p.line, p.column


ANCHORS = (
    "YAML anchors and aliases (&x / *x) are not allowed in a %%workflow cell; write the value out"
)


# ── aliases cannot explode ──────────────────────────────────────────────────


def billion_laughs() -> str:
    levels = "abcdefghi"
    lines = ["vars:", f"  a: &a [{', '.join(['lol'] * 9)}]"]
    for prev, name in itertools.pairwise(levels):
        lines.append(f"  {name}: &{name} [{', '.join([f'*{prev}'] * 9)}]")
    lines.append('steps: {s: {uses: transform, with: {template: "{{vars.i}}"}}}')
    return "\n".join(lines) + "\n"


def test_a_billion_laughs_is_refused_at_its_first_anchor_without_expanding() -> None:
    text = billion_laughs()
    found = refused(text)
    assert where(found[0]) == at(text, "&a")
    assert {p.message for p in found} == {ANCHORS}
    assert len(found) == 20  # the screen stops after 20 problems; the error stays short


def test_a_single_anchor_or_alias_is_refused_where_it_stands() -> None:
    text = "vars: {x: &x hi}\n" + STEP
    assert (where(only(text)), only(text).message) == (at(text, "&x"), ANCHORS)
    text = "vars: {x: *nowhere}\n" + STEP  # an undefined alias is the same mistake
    assert (where(only(text)), only(text).message) == (at(text, "*nowhere"), ANCHORS)


# ── tags ────────────────────────────────────────────────────────────────────


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("!!python/object:os.system x", "!!python/object:os.system"),
        ("!!python/name:os.system ''", "!!python/name:os.system"),
        ("!!omap [a: 1]", "!!omap"),
        ("!!set {a, b}", "!!set"),
        ("!!binary aGVsbG8=", "!!binary"),
        ("!!timestamp 2024-01-01", "!!timestamp"),
        ("!Foo x", "!Foo"),
        ("!Foo [1]", "!Foo"),
        ("!!str 12", "!!str"),  # ruamel would hand back a TaggedScalar, not a str
        ("! 12", "!"),
        ("!!int x", "!!int"),  # ruamel would raise a bare ValueError
    ],
)
def test_explicit_tags_are_refused(value: str, shown: str) -> None:
    text = f"steps:\n  s:\n    uses: transform\n    with: {{template: {value}}}\n"
    p = only(text)
    assert where(p) == at(text, value)
    assert p.message == (
        f"the tag {shown} is not allowed in a %%workflow cell; "
        "use a plain string, number, list or mapping"
    )


def test_a_date_a_time_and_other_plain_oddities_stay_the_text_written() -> None:
    text = (
        "steps:\n  s:\n    uses: transform\n    with:\n      template:\n"
        "        day: 2024-01-02\n        at: 2024-01-02 10:00:00\n        eq: =\n"
        "        big: 9007199254740991\n        low: -9007199254740991\n        hex: 0x1F\n"
    )
    got = compile_cell(text).blocks[1].params["template"]
    assert got == {
        "day": "2024-01-02",
        "at": "2024-01-02 10:00:00",  # not datetime's 2024-01-02T10:00:00
        "eq": "=",
        "big": MAX_INT,
        "low": -MAX_INT,
        "hex": 31,
    }
    assert [type(v) for v in got.values()] == [str, str, str, int, int, int]


# ── huge numbers and deep nesting ───────────────────────────────────────────


@pytest.mark.parametrize(
    "number",
    ["1" * 5000, "9007199254740992", "-9007199254740992", "0x" + "f" * 2000, "0b" + "1" * 60],
)
def test_integers_beyond_json_are_refused(number: str) -> None:
    text = f"steps:\n  s: {{uses: transform, with: {{template: {number}}}}}\n"
    p = only(text)
    assert where(p) == at(text, number)
    assert p.message.startswith(f"the integer {number[:24]}")
    assert p.message.endswith(
        f"is too large: integers must lie within ±{MAX_INT} (2**53 - 1) to survive JSON; "
        "quote it to keep it as text"
    )
    quoted = text.replace(number, f"'{number}'")
    assert compile_cell(quoted).blocks[1].params["template"] == number


@pytest.mark.parametrize("number", [".inf", "-.Inf", ".nan", "1e999"])
def test_numbers_that_are_not_finite_are_refused(number: str) -> None:
    text = f"steps:\n  s: {{uses: transform, with: {{template: {number}}}}}\n"
    p = only(text)
    assert where(p) == at(text, number)
    assert p.message == (
        f"{number} is not a finite number, which JSON cannot carry; quote it to keep it as text"
    )


TOO_DEEP = f"lists and mappings nest deeper than {MAX_DEPTH} levels here; flatten the value"


@pytest.mark.parametrize(
    "value",
    [
        "[" * 2000 + "]" * 2000,
        "[a, " * 2000 + "]" * 2000,
        "{a: " * 2000 + "1" + "}" * 2000,
    ],
    ids=["brackets", "lists", "flow-mappings"],
)
def test_deep_flow_nesting_is_refused_at_the_first_level_too_many(value: str) -> None:
    text = f"vars:\n  v: {value}\n" + STEP
    p = only(text)
    assert p.message == TOO_DEEP
    assert p.line == 3
    before = text.splitlines()[1][: p.column - 1]
    assert text.splitlines()[1][p.column - 1] == value[0]  # at an opening bracket
    assert before.count(value[0]) >= MAX_DEPTH - 2  # past the last level allowed


def test_deep_block_nesting_is_refused_at_the_first_level_too_many() -> None:
    lines = ["vars:"] + [" " * (2 * i) + f"  k{i}:" for i in range(2000)] + [STEP]
    text = "\n".join(lines)
    p = only(text)
    assert (where(p), p.message) == (at(text, "k63:"), TOO_DEEP)
    dashes = "vars:\n  v:\n" + "".join(" " * (2 * i + 4) + "-\n" for i in range(2000)) + STEP
    p = only(dashes)
    assert p.message == TOO_DEEP


def test_sixty_four_levels_are_allowed() -> None:
    depth = MAX_DEPTH - 2  # the cell's mapping and `vars` are two levels
    text = f"vars:\n  v: {'[' * depth}1{']' * depth}\n" + STEP
    variables = compile_cell(text).variables
    assert variables is not None
    value = variables["v"]
    for _ in range(depth - 1):
        value = value[0]
    assert value == [1]
    deeper = text.replace("[1]", "[[1]]")
    assert only(deeper).message == TOO_DEEP


# ── ruamel's errors as sentences ────────────────────────────────────────────


SYNTAX = [
    (
        "tab indentation",
        "steps:\n\ts: {uses: transform}\n",
        "\ts",
        "a tab character cannot indent YAML; indent with spaces",
    ),
    (
        "bad indentation",
        "steps:\n  s:\n    uses: transform\n   with: {template: 1}\n",
        "with",
        "this line's indentation does not fit the lines above it; indent it like its siblings "
        "(or under its parent), with spaces",
    ),
    (
        "unclosed quote",
        'steps:\n  s: {uses: transform, with: {template: "hi}}\n',
        '"hi',
        'this quoted string is never closed; add the closing "',
    ),
    (
        "unclosed bracket",
        "steps:\n  s: {uses: transform, with: {template: 1}\n  t: {uses: transform}\n",
        "{uses",
        "this '{' is never closed; add '}' after its last item, or ',' between items "
        "(YAML was still inside it at line 4, col 3)",
    ),
    (
        "duplicate key",
        "description: x\n" + STEP + "steps: {}\n",
        "steps: {}",
        "duplicate key 'steps' (first at line 3); keep one",
    ),
    (
        "duplicate key on one line",
        "steps:\n  s: {uses: transform, uses: http}\n",
        "uses: http",
        "duplicate key 'uses' (first at line 3); keep one",
    ),
    (
        "duplicate key spelt two ways",
        "vars:\n  v: {1: a, 0x1: b}\n" + STEP,
        "0x1",
        "duplicate key '1' in the mapping at line 3; keep one",
    ),
    (
        "colon in a plain value",
        "description: time: now\n" + STEP,
        ": now",
        "a ': ' inside an unquoted value, or a key at the wrong indent; quote the value "
        '("a: b"), or indent the key under its parent',
    ),
    (
        "colon in a flow value",
        "steps:\n  s: {uses: transform, with: {template: a: b}}\n",
        ": b",
        "a ':' inside an unquoted value in {...}; quote the value (\"a: b\"), or put ', ' "
        "between the items",
    ),
    (
        "text after a quoted value",
        "description: 'x' y\n" + STEP,
        "y\n",
        "unexpected text after the value; quote the whole value",
    ),
    (
        "a key without a colon",
        "description: x\nsteps\n",
        "steps",
        "this line has no ':' after its key; write `key: value`, or indent it to continue "
        "the value above",
    ),
    (
        "a list",
        "- steps\n- more\n",
        "- steps",
        "the cell is a YAML list, but a workflow is a mapping with at least `steps:`; "
        "write `key: value` lines",
    ),
    (
        "a scalar",
        "just words\n",
        "just",
        "the cell is a single value, but a workflow is a mapping with at least `steps:`; "
        "write `key: value` lines",
    ),
    (
        "an empty cell",
        "",
        "",
        "the cell is empty; write a mapping with at least `steps:`, "
        "e.g. `steps: {a: {uses: http}}`",
    ),
    (
        "only comments",
        "# nothing yet\n",
        "#",
        "the cell is empty; write a mapping with at least `steps:`, "
        "e.g. `steps: {a: {uses: http}}`",
    ),
    (
        "two documents",
        STEP + "---\n" + STEP,
        "---",
        "a second YAML document starts here (after '---' or '...'); a %%workflow cell holds "
        "one: remove the separator",
    ),
    (
        "a directive",
        "%YAML 1.1\n---\n" + STEP,
        "%YAML",
        "YAML directives (%YAML, %TAG) are not allowed in a %%workflow cell; delete this line",
    ),
    (
        "a merge key",
        "steps:\n  s: {<<: {uses: transform}}\n",
        "<<",
        "merge keys (<<) are not allowed in a %%workflow cell; write the keys out",
    ),
    (
        "a list as a key",
        "steps:\n  [s, t]: {uses: transform}\n",
        "[s, t]",
        "a key must be a plain string, not a list or mapping; write it as a name",
    ),
    (
        "a stray bracket",
        "description: ]\n" + STEP,
        "]",
        "a stray bracket or comma; quote the value to keep the character as text",
    ),
    (
        "a block scalar sign in a value",
        "description: |x\n" + STEP,
        "x\n",
        "'|' or '>' starts a block of text and must end its line; quote the value to keep the "
        "character as text",
    ),
    (
        "a control character",
        "description: 'a\x01b'\n" + STEP,
        "\x01",
        'the character U+0001 is not allowed in YAML; delete it, or write "\\u0001" in a '
        "double-quoted string",
    ),
]


@pytest.mark.parametrize(("text", "needle", "message"), [c[1:] for c in SYNTAX],
                         ids=[c[0] for c in SYNTAX])  # fmt: skip
def test_ruamel_errors_become_located_sentences(text: str, needle: str, message: str) -> None:
    p = only(text)
    where_ = at(text, needle) if text else (2, 1)
    if needle == "\ts":
        where_ = (where_[0], 1)
    assert (where(p), p.message) == (where_, message)


def test_the_notebook_shows_the_caret_under_the_place() -> None:
    cell = "steps:\n  s:\n    uses: transform\n    with: {template: !!set {a}}\n"
    with pytest.raises(WorkflowYamlError) as info:
        compile_cell(cell)
    shown = located(cell, info.value).splitlines()
    assert shown[2:5] == [
        "line 5, col 22: the tag !!set is not allowed in a %%workflow cell; use a plain "
        "string, number, list or mapping",
        "      with: {template: !!set {a}}",
        "  " + " " * 21 + "^",
    ]


# ── fuzz: nothing but WorkflowYamlError, always fast ────────────────────────


VALID = """\
description: Tell sales about a new lead   # a comment
input: {email: str, note: str?}
vars: {channel: "#sales", n: 3}
steps:
  enrich:
    uses: http
    with: {url: "https://example.com/{{trigger.email}}", method: GET}
  notify:
    uses: slack
    needs: [enrich]
    with:
      operation: send
      channel: "{{vars.channel}}"
      text: 'Lead {{trigger.email}}: {{enrich.status}}'
"""
PIECES = [
    *"[]{}:,'\"&*!|>-#%?@`\t\n \\~=<",
    "!!set ", "!!python/object:os.system ", "!Foo ", "!!binary ", "!!int ", "!!timestamp ",
    "&a ", "*a", "<<: ", "---\n", "...\n", "%YAML 1.1\n", "1" * 40, "9" * 5000, ".inf",
    "[" * 100, "{a: " * 80, "2024-01-02 ", "0x", "\x07", "\ufeff",
]  # fmt: skip


def mutate(rng: random.Random, text: str) -> str:
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(text) + 1)
        if rng.random() < 0.4 and text:
            text = text[:i] + text[i + rng.randint(1, 3) :]
        else:
            text = text[:i] + rng.choice(PIECES) + text[i:]
    return text


def test_random_mutations_raise_only_workflow_yaml_errors_quickly() -> None:
    rng = random.Random(20260)
    assert compile_cell(VALID).name == "wf"
    outcomes = {"compiled": 0, "refused": 0}
    for _ in range(400):
        text = mutate(rng, VALID)
        start = time.perf_counter()
        try:
            compile_cell(text)
            outcomes["compiled"] += 1
        except WorkflowYamlError as e:
            outcomes["refused"] += 1
            for p in e.problems:
                assert p.line >= 2 and p.column >= 1, (text, p)
        assert time.perf_counter() - start < FAST, text
    assert min(outcomes.values()) > 20, outcomes
