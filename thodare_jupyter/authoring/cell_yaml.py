"""Read the YAML of a ``%%workflow`` cell safely: one plain mapping, nothing that can explode.

The events of the text are screened before ruamel.yaml builds anything, so a
hostile cell is refused fast and never expanded:

- anchors and aliases (``&x`` / ``*x``): refused (no "billion laughs");
- explicit tags (``!!set``, ``!!python/object:...``, ``!Foo``, even ``!!str``):
  refused; a value is a plain or quoted scalar, a list or a mapping;
- nesting deeper than :data:`MAX_DEPTH` (64) lists/mappings: refused, flow
  brackets as soon as the scanner opens one too many;
- integers outside ±(2**53 − 1) (what every JSON reader keeps exactly) and
  floats that are not finite (``.inf``, ``.nan``, ``1e999``): refused;
- merge keys (``<<``), lists or mappings as keys, duplicate keys, directives
  (``%YAML``), a second document (``---``), and a cell that is empty, a list
  or a single value: refused.

Only YAML 1.2's plain types are read: str, int, float, bool, null, list,
mapping. An unquoted date or time (``2024-01-02``) stays the text written.
ruamel's own errors (scanner, parser, composer) become sentences that say
what to do. Positions are 0-based; lines named inside a message are cell lines.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.constructor import DuplicateKeyError
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    DocumentStartEvent,
    Event,
    MappingStartEvent,
    NodeEvent,
    ScalarEvent,
)
from ruamel.yaml.nodes import ScalarNode
from ruamel.yaml.resolver import VersionedResolver
from ruamel.yaml.scanner import RoundTripScanner

MAX_DEPTH = 64  # nested lists/mappings a cell may hold
MAX_INT = 2**53 - 1  # the largest integer a JSON reader (JavaScript's too) keeps exactly
MAX_PROBLEMS = 20  # the screen stops after this many
CORE = "tag:yaml.org,2002:"
PLAIN_TAGS = {CORE + t for t in ("str", "int", "float", "bool", "null")}
NULLS = ("", "~", "null", "Null", "NULL")
EMPTY = "the cell is empty; write a mapping with at least `steps:`, e.g. `steps: {a: {uses: http}}`"
ANCHORS = (
    "YAML anchors and aliases (&x / *x) are not allowed in a %%workflow cell; write the value out"
)
TOO_DEEP = f"lists and mappings nest deeper than {MAX_DEPTH} levels here; flatten the value"
Pos = tuple[int, int]  # 0-based line and column in the YAML text


class CellYamlError(Exception):
    """The text is no safe, plain YAML mapping; ``problems`` say where and what to do."""

    def __init__(self, problems: list[tuple[Pos, str]]) -> None:
        super().__init__("; ".join(m for _, m in problems))
        self.problems = problems


class _Resolver(VersionedResolver):
    """YAML 1.2 resolution, but a plain scalar is only ever str, int, float, bool or null."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        tag = super().resolve(kind, value, implicit)
        if kind is ScalarNode and str(tag) not in PLAIN_TAGS:  # timestamp, merge, value
            return self.DEFAULT_SCALAR_TAG
        return tag


class _TooDeep(MarkedYAMLError):
    """Flow brackets nest deeper than :data:`MAX_DEPTH`."""


class _Scanner(RoundTripScanner):
    """Stops at the first flow bracket too deep (ruamel's scanner is quadratic in them)."""

    def fetch_flow_collection_start(self, TokenClass: Any, to_push: str) -> None:
        if self.flow_level >= MAX_DEPTH:
            raise _TooDeep(problem="too deep", problem_mark=self.reader.get_mark())
        super().fetch_flow_collection_start(TokenClass, to_push)


def make_yaml() -> YAML:
    """A round-trip ``YAML`` that reads timestamps, ``=`` and ``<<`` as strings."""
    y = YAML(typ="rt")
    y.Resolver = _Resolver
    y.Scanner = _Scanner
    return y


def load_cell(text: str, first_line: int = 1) -> CommentedMap:
    """The cell's YAML as ruamel's round-trip mapping (with positions and comments).

    Raises:
        CellYamlError: The text is not YAML, or is YAML a workflow cell does not allow.
    """
    screen = _Screen(make_yaml(), first_line)
    try:
        screen.run(text)
    except MarkedYAMLError as e:
        screen.problems.append(syntax_problem(e, text, first_line))
    except YAMLError as e:  # a ReaderError: a character YAML does not allow
        screen.problems.append(_reader_problem(e, text))
    if screen.problems:
        raise CellYamlError(screen.problems)
    try:
        doc = make_yaml().load(text)
    except MarkedYAMLError as e:  # a duplicate the screen cannot see, e.g. 1 and 0x1
        raise CellYamlError([syntax_problem(e, text, first_line)]) from None
    assert isinstance(doc, CommentedMap)  # the screen saw one mapping
    return doc


@dataclass
class _Frame:
    """An open list or mapping; a mapping knows its keys and whether a key comes next."""

    mapping: bool
    keys: dict[tuple[str, str], Pos] = field(default_factory=dict)
    expect_key: bool = True


class _Screen:
    """Walks the parser's events; nothing is built, so nothing can expand."""

    def __init__(self, y: YAML, first_line: int) -> None:
        self.y, self.first_line = y, first_line
        self.problems: list[tuple[Pos, str]] = []
        self.stack: list[_Frame] = []
        self.documents = 0
        self.stop = False  # a problem after which reading on makes no sense
        self.lines: list[str] = []

    def add(self, event: Event, message: str, stop: bool = False) -> None:
        self.problems.append(((event.start_mark.line, event.start_mark.column), message))
        self.stop = self.stop or stop

    def run(self, text: str) -> None:
        self.lines = text.splitlines()
        for event in self.y.parse(text):
            if isinstance(event, DocumentStartEvent):
                self.document(event)
            elif isinstance(event, CollectionEndEvent):
                self.stack.pop()
            elif isinstance(event, NodeEvent):
                self.node(event)
            if self.stop or len(self.problems) >= MAX_PROBLEMS:
                return
        if not self.documents:
            self.problems.append(((0, 0), EMPTY))

    def document(self, event: DocumentStartEvent) -> None:
        self.documents += 1
        if self.documents > 1:
            msg = "a second YAML document starts here (after '---' or '...'); a %%workflow cell"
            self.add(event, f"{msg} holds one: remove the separator", stop=True)
        elif event.version or event.tags:
            line = next(i for i, t in enumerate(self.lines) if t.startswith("%"))
            msg = "YAML directives (%YAML, %TAG) are not allowed in a %%workflow cell"
            self.problems.append(((line, 0), f"{msg}; delete this line"))
            self.stop = True

    def node(self, event: NodeEvent) -> None:
        parent = self.stack[-1] if self.stack else None
        is_key = parent is not None and parent.mapping and parent.expect_key
        if parent is not None and parent.mapping:
            parent.expect_key = not parent.expect_key
        if isinstance(event, AliasEvent) or event.anchor is not None:
            self.add(event, ANCHORS)
        if not isinstance(event, ScalarEvent | CollectionStartEvent):
            return  # an alias
        if event.tag is not None:
            self.add(event, f"the tag {_short(event.tag)} is not allowed in a %%workflow cell; "
                            "use a plain string, number, list or mapping")  # fmt: skip
        if parent is None:
            self.root(event)
        if isinstance(event, CollectionStartEvent):
            if is_key:
                self.add(event, "a key must be a plain string, not a list or mapping; "
                                "write it as a name")  # fmt: skip
            if len(self.stack) >= MAX_DEPTH:
                self.add(event, TOO_DEEP, stop=True)
            self.stack.append(_Frame(isinstance(event, MappingStartEvent)))
        elif isinstance(event, ScalarEvent):
            self.scalar(event, parent if is_key else None)

    def root(self, event: NodeEvent) -> None:
        if isinstance(event, MappingStartEvent):
            return
        what = "a YAML list" if isinstance(event, CollectionStartEvent) else "a single value"
        if isinstance(event, ScalarEvent) and event.style is None and event.value in NULLS:
            self.add(event, EMPTY, stop=True)
        else:
            msg = f"the cell is {what}, but a workflow is a mapping with at least `steps:`"
            self.add(event, f"{msg}; write `key: value` lines", stop=True)

    def scalar(self, event: ScalarEvent, mapping: _Frame | None) -> None:
        text = str(event.value)
        tag = str(self.y.resolver.resolve(ScalarNode, text, event.implicit))
        if event.tag is None and tag == CORE + "int" and not _int_fits(text):
            self.add(event, f"the integer {_cut(text)} is too large: integers must lie within "
                            f"±{MAX_INT} (2**53 - 1) to survive JSON; quote it to keep it as "
                            "text")  # fmt: skip
        elif event.tag is None and tag == CORE + "float" and not _float_fits(text):
            self.add(event, f"{_cut(text)} is not a finite number, which JSON cannot carry; "
                            "quote it to keep it as text")  # fmt: skip
        if mapping is None:
            return
        here = (event.start_mark.line, event.start_mark.column)
        if event.style is None and text == "<<":
            self.add(event, "merge keys (<<) are not allowed in a %%workflow cell; "
                            "write the keys out")  # fmt: skip
        first = mapping.keys.setdefault((tag, text), here)
        if first != here:
            at = f"line {first[0] + self.first_line}"
            self.add(event, f"duplicate key '{_cut(text)}' (first at {at}); keep one")


# A character that starts a YAML construct, where ruamel says "while scanning/parsing <context>"
STARTERS = {
    "an anchor": "'&' starts an anchor, which a %%workflow cell does not allow",
    "an alias": "'*' starts an alias, which a %%workflow cell does not allow",
    "a tag": "'!' starts a tag, which a %%workflow cell does not allow",
    "an tag": "'!' starts a tag, which a %%workflow cell does not allow",
    "a block scalar": "'|' or '>' starts a block of text and must end its line",
    "a directive": "'%' at the start of a line starts a directive",
    "a block node": "a stray bracket or comma",
    "a flow node": "a stray bracket or comma",
}


def syntax_problem(e: MarkedYAMLError, text: str, first_line: int) -> tuple[Pos, str]:
    """ruamel's error as a place and a sentence that says what to do."""
    problem, context = str(e.problem or ""), str(e.context or "")
    mark = e.problem_mark or e.context_mark
    pos, opened = _pos(mark), _pos(e.context_mark or mark)
    if isinstance(e, _TooDeep):
        return pos, TOO_DEEP
    if isinstance(e, DuplicateKeyError):
        key = re.search(r'duplicate key "(.*?)" with value', problem)
        what = f"'{_cut(key.group(1))}' " if key else ""
        return pos, f"duplicate key {what}in the mapping at line {opened[0] + first_line}; keep one"
    if "'\\t'" in problem or "tab character" in problem:
        return pos, "a tab character cannot indent YAML; indent with spaces"
    found = re.match(r"found character '(.*)' that cannot start any token", problem)
    if found:
        return pos, f"a value cannot start with '{found.group(1)}'; quote the value"
    if problem in ("mapping values are not allowed here", "found unexpected ':'"):
        return pos, ("a ': ' inside an unquoted value, or a key at the wrong indent; quote the "
                     "value (\"a: b\"), or indent the key under its parent")  # fmt: skip
    if problem == "mapping keys are not allowed here":
        return pos, "'?' starts a complex key here; quote the value to keep the '?' as text"
    if "unknown escape" in problem:
        return pos, ("unknown escape in a double-quoted string; write \\\\ for a backslash, "
                     "or use single quotes")  # fmt: skip
    if context == "while scanning a quoted scalar":
        quote = _char(text, e.context_mark)
        closing = quote if quote in ("'", '"') else "quote"
        return opened, f"this quoted string is never closed; add the closing {closing}"
    if context.startswith("while parsing a flow") and "node" not in context:
        return _flow_problem(context, problem, pos, opened, first_line)
    if context == "while scanning a simple key":
        return opened, ("this line has no ':' after its key; write `key: value`, or indent it "
                        "to continue the value above")  # fmt: skip
    if "expected <block end>" in problem:
        if not _line_before(text, mark).strip(" "):
            return pos, ("this line's indentation does not fit the lines above it; indent it "
                         "like its siblings (or under its parent), with spaces")  # fmt: skip
        return pos, "unexpected text after the value; quote the whole value"
    starter = STARTERS.get(re.sub(r"^while (scanning|parsing) ", "", context))
    if starter:
        return pos, f"{starter}; quote the value to keep the character as text"
    said = "; ".join(s for s in (problem, context) if s)
    return pos, f"YAML cannot read this ({said}); fix the text here, quoting a value often helps"


def _flow_problem(context: str, problem: str, pos: Pos, opened: Pos, first_line: int
                  ) -> tuple[Pos, str]:  # fmt: skip
    """An unclosed ``[``/``{``, or a ``:`` inside one."""
    bracket, close = ("{", "}") if "mapping" in context else ("[", "]")
    if problem.endswith("but got ':'") and pos[0] == opened[0]:
        return pos, (f"a ':' inside an unquoted value in {bracket}...{close}; quote the value "
                     "(\"a: b\"), or put ', ' between the items")  # fmt: skip
    at = f"line {pos[0] + first_line}, col {pos[1] + 1}"
    return opened, (f"this '{bracket}' is never closed; add '{close}' after its last item, "
                    f"or ',' between items (YAML was still inside it at {at})")  # fmt: skip


def _reader_problem(e: YAMLError, text: str) -> tuple[Pos, str]:
    """A character YAML does not allow (a ``ReaderError``)."""
    at = int(getattr(e, "position", 0))
    pos = (text.count("\n", 0, at), at - text.rfind("\n", 0, at) - 1)
    code = ord(text[at]) if at < len(text) else 0
    return pos, (f"the character U+{code:04X} is not allowed in YAML; delete it, or write "
                 f'"\\u{code:04x}" in a double-quoted string')  # fmt: skip


def _char(text: str, mark: Any) -> str:
    """The character at a ruamel mark (its ``index`` counts characters of the text)."""
    index = int(getattr(mark, "index", -1))
    return text[index] if 0 <= index < len(text) else ""


def _line_before(text: str, mark: Any) -> str:
    """The text of the mark's line before the mark."""
    index = int(getattr(mark, "index", 0))
    return text[max(text.rfind("\n", 0, index), text.rfind("\r", 0, index)) + 1 : index]


def _pos(mark: Any) -> Pos:
    return (int(mark.line), int(mark.column)) if mark is not None else (0, 0)


def _short(tag: str) -> str:
    return "!!" + tag[len(CORE) :] if tag.startswith(CORE) else tag


def _cut(text: str, limit: int = 24) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


def _int_fits(text: str) -> bool:
    """Whether a YAML 1.2 int, read the way ruamel reads it, lies within ±MAX_INT."""
    digits = text.replace("_", "").lstrip("+-")
    base = {"0b": 2, "0o": 8, "0x": 16}.get(digits[:2], 10)
    digits = (digits[2:] if base != 10 else digits).lstrip("0") or "0"
    return len(digits) <= 64 and int(digits, base) <= MAX_INT


def _float_fits(text: str) -> bool:
    lowered = text.replace("_", "").lower()
    return "inf" not in lowered and "nan" not in lowered and math.isfinite(float(lowered))
