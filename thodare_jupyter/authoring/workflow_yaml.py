"""The YAML of ``%%workflow`` cells, compiled to the same wire format the fluent builder makes.

.. code-block:: yaml

    description: Tell sales about a new lead   # optional
    input: {email: str, note: str?}            # optional; field: type, ?: optional (types below)
    vars: {channel: "#sales"}                  # optional: read as {{vars.channel}}
    steps:
      enrich:
        uses: enrich-lead                      # a connector type
        with: {email: "{{trigger.email}}"}     # its params
        needs: [other]                         # optional; edges are also inferred from refs
        name: Enrich                           # optional display name
        retries: {max: 3, backoff: 2s}         # optional: attempts (the first included)
        when: "{{approve.approved}}"           # optional: falsy skips it and what needs it
        timeout: 30s                           # optional: per attempt (500ms, 30s, 2m, 1h)
        for_each: "{{query.rows}}"             # optional: one call per item ({{item}},
        concurrency: 4                         #   {{item.x}}, {{item_index}} in `with`)

Input types: ``str``, ``int``, ``float``, ``bool``, ``list``, ``dict``,
``datetime``, ``date``, ``decimal`` (``Decimal``: exact), ``table`` (a ``Table``:
pass a pandas/polars DataFrame or a pyarrow Table) and ``file`` (a ``File``:
bytes or a path); a table or file input goes to the kit's artifact store and the
run keeps its reference, so ``{{trigger.rows}}`` reaches a ``Table`` param as a
DataFrame.

Every mistake is collected and raised once as :class:`WorkflowYamlError`, each
located in the cell (line, column), named by field, with the valid choices. This
module checks what only YAML has (syntax, keys, shapes, ``uses``, ``needs``,
``input`` types); whether refs, params and the graph hold is the engine's
:func:`~thodare_jupyter.validation.check_workflow`, whose issues are placed at
the string, param, control or step they name.
The text is read with ruamel.yaml's round-trip loader, so a cell can later be
rewritten in place with its comments kept, after :mod:`.cell_yaml` has screened
it: no anchors, tags, directives or second documents, nesting at most 64 deep,
integers within ±(2**53 - 1); an unquoted date stays the text written.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, create_model
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarbool import ScalarBoolean

from ..connectors import Catalog, Connector
from ..controls import parse_concurrency, parse_for_each, parse_retries, parse_timeout
from ..data import File, Table
from ..errors import Issue, WorkflowYamlError, YamlProblem
from ..ref_checks import FOR_EACH, WHEN
from ..templates import iter_refs, ref_head
from ..validation import block_id_problem, check_workflow
from ..wire import SerializedBlock, SerializedWorkflow
from .builder import TRIGGER_ID, assemble_workflow
from .cell_yaml import CellYamlError, load_cell

TOP_KEYS = ("description", "input", "steps", "vars")
STEP_KEYS = (
    "concurrency",
    "for_each",
    "name",
    "needs",
    "retries",
    "timeout",
    "uses",
    "when",
    "with",
)
INPUT_TYPES: dict[str, Any] = {
    "str": str, "int": int, "float": float, "bool": bool, "list": list[Any], "dict": dict[str, Any],
    "datetime": datetime, "date": date, "decimal": Decimal, "table": Table, "file": File,
}  # fmt: skip
Pos = tuple[int, int]  # 0-based line and column in the YAML text


@dataclass
class _Step:
    id: str
    pos: Pos
    body: Any
    conn: Connector | None = None
    """None when the step cannot be compiled (its problems are reported)."""
    name: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    with_map: CommentedMap | None = None
    with_pos: Pos | None = None
    upstream: dict[str, None] = field(default_factory=dict)
    controls: dict[str, Any] = field(default_factory=dict)

    @property
    def type(self) -> str:
        return self.conn.type if self.conn else ""

    def with_key(self, key: str) -> tuple[Any, ...]:
        """``(the with key a param name came from,)``, or ``()`` (YAML keys need not be
        strings: ``null:`` gives the param ``"None"``)."""
        return next(((k,) for k in self.with_map or () if str(k) == key), ())

    def param_pos(self, key: str, value: bool = False) -> Pos:
        m, raw = self.with_map, self.with_key(key)
        if m is None or not raw:
            return self.with_pos or self.pos
        return _val(m, raw[0]) if value else _key(m, raw[0])


class _Compiler:
    def __init__(self, name: str, catalog: Catalog, first_line: int) -> None:
        self.name, self.catalog, self.first_line = name, catalog, first_line
        self.problems: list[YamlProblem] = []
        self.steps: dict[str, _Step] = {}
        self.variables: dict[str, Any] = {}

    def add(self, pos: Pos, where: str, message: str, choices: Iterable[str] = ()) -> None:
        line, col = pos[0] + self.first_line, pos[1] + 1
        self.problems.append(YamlProblem(line, col, where, message, tuple(sorted(choices))))

    def error(self) -> WorkflowYamlError:
        return WorkflowYamlError(self.name, sorted(self.problems, key=lambda p: (p.line, p.column)))

    def load(self, text: str) -> CommentedMap | None:
        try:
            doc = load_cell(text, self.first_line)
        except CellYamlError as e:
            for pos, message in e.problems:
                self.add(pos, "", message)
            return None
        for key in doc:
            if key not in TOP_KEYS:
                self.add(_key(doc, key), str(key), f"unknown key{_hint(key, TOP_KEYS)}", TOP_KEYS)
        if not isinstance(doc.get("description", ""), str | None):
            self.add(_val(doc, "description"), "description", "must be a string")
        return doc

    def input_model(self, doc: CommentedMap) -> type[BaseModel] | None:
        spec = doc.get("input")
        if spec is None:
            return None
        if not isinstance(spec, CommentedMap):
            self.add(_val(doc, "input"), "input", "must be a mapping: {field: type}", INPUT_TYPES)
            return None
        fields: dict[str, Any] = {}
        before = len(self.problems)
        for key, kind in spec.items():
            where = f"input.{key}"
            if not (isinstance(key, str) and key.isidentifier() and not key.startswith("_")):
                self.add(_key(spec, key), where, "a field name must be an identifier, no leading _")
            elif hasattr(BaseModel, key):
                self.add(_key(spec, key), where, f"'{key}' is a pydantic BaseModel attribute")
            name = kind[:-1] if isinstance(kind, str) and kind.endswith("?") else kind
            if not isinstance(name, str) or name not in INPUT_TYPES:
                msg = f"unknown type '{kind}'{_hint(name, INPUT_TYPES)}; add '?' for optional"
                self.add(_val(spec, key), where, msg, INPUT_TYPES)
            elif name != kind:
                fields[str(key)] = (INPUT_TYPES[name] | None, None)
            else:
                fields[str(key)] = (INPUT_TYPES[name], ...)
        if len(self.problems) > before:
            return None
        return create_model(_model_name(self.name), **fields)

    def read_vars(self, doc: CommentedMap) -> None:
        if doc.get("vars") is None:
            return
        if isinstance(doc["vars"], CommentedMap):
            self.variables = _plain(doc["vars"])
        else:
            self.add(_val(doc, "vars"), "vars", "must be a mapping: {name: value}")

    def read_steps(self, doc: CommentedMap) -> None:
        steps = doc.get("steps")
        if not isinstance(steps, CommentedMap) or not steps:
            pos = _val(doc, "steps") if "steps" in doc else (0, 0)
            msg = "add at least one step: `steps: {my_step: {uses: <connector type>}}`"
            self.add(pos, "steps", msg if not steps else "must be a mapping")
            return
        for key, body in steps.items():
            step = _Step(str(key), _key(steps, key), body)
            self.steps[step.id] = step
            where = f"steps.{step.id}"
            why = block_id_problem(key) or (
                "reserved for the trigger block" if step.id == TRIGGER_ID else None
            )
            if why:
                self.add(step.pos, where, why)
            if not isinstance(body, CommentedMap):
                msg = "a step is a mapping: {uses: <connector type>, with: {params}}"
                self.add(_val(steps, key), where, msg)
                continue
            for k in body:
                if k not in STEP_KEYS:
                    msg = f"unknown key{_hint(k, STEP_KEYS)}"
                    self.add(_key(body, k), f"{where}.{k}", msg, STEP_KEYS)
            if not isinstance(body.get("name", ""), str | None):
                self.add(_val(body, "name"), f"{where}.name", "must be a string")
            step.name = body.get("name") if isinstance(body.get("name"), str) else None
            step.conn = self.read_uses(step, body)
            self.read_with(step, body)
            self.read_controls(step, body)
            if why:
                step.conn = None  # left out of the workflow: the engine would report it again

    def read_controls(self, step: _Step, body: CommentedMap) -> None:
        """``retries``, ``timeout``, ``for_each``, ``concurrency`` and ``when`` (refs
        are checked in :meth:`link`)."""
        where = f"steps.{step.id}"
        parsers: tuple[tuple[str, Any], ...] = (
            ("retries", parse_retries),
            ("timeout", parse_timeout),
            ("for_each", parse_for_each),
            ("concurrency", parse_concurrency),
        )
        for key, parse in parsers:
            if body.get(key) is None:
                continue
            try:
                step.controls[key] = parse(_plain(body[key]))
            except ValueError as e:
                self.add(_val(body, key), f"{where}.{key}", str(e))
        when = body.get("when")
        if when is None:
            return
        if isinstance(when, str):
            step.controls["when"] = str(when)
        else:
            msg = 'must be a template string, e.g. "{{approve.approved}}" (quote it)'
            self.add(_val(body, "when"), f"{where}.when", msg)

    def read_uses(self, step: _Step, body: CommentedMap) -> Connector | None:
        where = f"steps.{step.id}.uses"
        kinds = [c.type for c in self.catalog if c.kind != "trigger"]
        uses = body.get("uses")
        conn = self.catalog.find(uses) if isinstance(uses, str) else None
        if uses is None:
            self.add(step.pos, where, "missing: say which connector the step runs", kinds)
        elif conn is None:
            hint = _hint(uses, kinds) or "; define it with @connector / define_connector first"
            self.add(_val(body, "uses"), where, f"unknown connector type '{uses}'{hint}", kinds)
        elif conn.kind == "trigger":
            msg = f"'{uses}' is the trigger every workflow has ({{{{trigger.x}}}} reads its input)"
            self.add(_val(body, "uses"), where, msg, kinds)
            return None
        return conn

    def read_with(self, step: _Step, body: CommentedMap) -> None:
        where = f"steps.{step.id}.with"
        given = body.get("with")
        if "with" in body:
            step.with_pos = _key(body, "with")
        if given is None:
            return
        if not isinstance(given, CommentedMap):
            self.add(_val(body, "with"), where, "must be a mapping of params: {name: value}")
            step.conn = None  # its params are unknown: no more checks of this step's params
            return
        step.with_map, step.params = given, _plain(given)

    def link(self, step: _Step) -> None:
        """Edges from ``needs`` then from refs to other steps (the builder's order); a
        ref to no step is left to the engine's check."""
        body = step.body
        needs = body.get("needs") if isinstance(body, CommentedMap) else None
        items = [(needs, _val(body, "needs"))] if isinstance(needs, str) else []
        if isinstance(needs, CommentedSeq):
            items = [(n, needs.lc.item(i)) for i, n in enumerate(needs)]
        elif needs is not None and not items:
            self.add(_val(body, "needs"), f"steps.{step.id}.needs", "a step id or a list of them")
        for need, pos in items:
            if isinstance(need, str) and need in self.steps:
                step.upstream[need] = None
            else:
                choices = [s for s in self.steps if s != step.id]
                msg = f"unknown step '{need}'{_hint(need, choices)}"
                self.add(pos, f"steps.{step.id}.needs", msg, choices)
        for ref in iter_refs(
            [step.params, step.controls.get("when"), step.controls.get("for_each")]
        ):
            target = self.find(ref_head(ref)[0])
            if target is not None:
                step.upstream[target.id] = None

    def find(self, head: str) -> _Step | None:
        """The step a ref's head names: by id, else by display name."""
        return self.steps.get(head) or next(
            (s for s in self.steps.values() if s.name == head), None
        )

    def locate(self, issue: Issue) -> None:
        """Place a problem the engine found, by its block and field: at the string
        holding its ref, else at the param (its key when the param is unknown or
        missing), control or step."""
        step = self.steps.get(issue.block or "")
        if step is None:
            self.add((0, 0), "", str(issue), issue.choices)
            return
        key = issue.field or ""
        control = {WHEN: "when", FOR_EACH: "for_each"}.get(key)
        if issue.code == "control-not-applicable":
            control = key
        where, pos = f"steps.{step.id}", step.pos
        if control is not None and control in step.controls:
            where, pos = f"{where}.{control}", _val(step.body, control)
        elif issue.field is not None and control is None:
            where = f"{where}.with.{key}"
            pos = step.param_pos(key, value=issue.code != "unknown-param")
            raw = step.with_key(key)
            if step.with_map is not None and raw:
                for leaf, text, at in _leaves(step.with_map[raw[0]], where, pos):
                    if issue.ref is not None and issue.ref in iter_refs(text):
                        where, pos = leaf, at
                        break
        self.add(pos, where, issue.message, issue.choices)

    def unlisted(self, issue: Issue) -> bool:
        """Whether ``issue`` reads a step left out of the workflow for its own
        problems (already reported), so is no news."""
        if issue.code != "unknown-block" or issue.ref is None:
            return False
        target = self.find(ref_head(issue.ref)[0])
        return target is not None and target.conn is None


def workflow_from_yaml(
    name: str, text: str, catalog: Catalog, *, first_line: int = 1
) -> SerializedWorkflow:
    """Compile the YAML of a ``%%workflow`` cell to a :class:`SerializedWorkflow`.

    The result equals what ``define_workflow`` would build for the same steps:
    a ``__trigger__`` block, one block per step (params = ``with``), edges from
    ``needs`` and from ``{{step.field}}`` refs (a step with none hangs off the
    trigger), and the input model from ``input:`` (its JSON Schema in metadata).
    Steps may be listed in any order; a ref may also name a step by its ``name``.

    Args:
        name: The workflow's name.
        text: The YAML (the cell body without its ``%%workflow`` line).
        catalog: The connectors ``uses:`` may name.
        first_line: The cell line of the YAML's first line (2 below a magic line).

    Raises:
        WorkflowYamlError: Listing every problem with its cell line, column and field.
    """
    c = _Compiler(name, catalog, first_line)
    doc = c.load(text)
    if doc is None:
        raise c.error()
    model = c.input_model(doc)
    c.read_vars(doc)
    c.read_steps(doc)
    for step in c.steps.values():
        c.link(step)
    steps = [
        (
            SerializedBlock(id=s.id, type=t.type, name=s.name, params=s.params, **s.controls),
            [u for u in s.upstream if c.steps[u].conn is not None],
        )
        for s in c.steps.values()
        if (t := s.conn) is not None
    ]
    about = doc.get("description")
    wf = assemble_workflow(
        name, steps, description=about if isinstance(about, str) else None, input_model=model,
        variables=c.variables or None,
    )  # fmt: skip
    for issue in check_workflow(wf, catalog):
        if not c.unlisted(issue):
            c.locate(issue)
    if c.problems:
        raise c.error()
    return wf


def _key(m: CommentedMap, key: Any) -> Pos:
    line, col = m.lc.key(key)
    return int(line), int(col)


def _val(m: CommentedMap, key: Any) -> Pos:
    """Where ``m[key]``'s value starts (the key's place when the value is empty)."""
    if m.get(key) is None:
        return _key(m, key)
    line, col = m.lc.value(key)
    return int(line), int(col)


def _leaves(node: Any, where: str, pos: Pos) -> Iterator[tuple[str, str, Pos]]:
    """Every string inside ``node`` with its field path and position."""
    if isinstance(node, CommentedMap):
        for k, v in node.items():
            yield from _leaves(v, f"{where}.{k}", _val(node, k))
    elif isinstance(node, CommentedSeq):
        for i, v in enumerate(node):
            line, col = node.lc.item(i)
            yield from _leaves(v, f"{where}[{i}]", (int(line), int(col)))
    elif isinstance(node, str):
        yield where, node, pos


def _plain(value: Any) -> Any:
    """ruamel's round-trip values as plain JSON-ready Python."""
    if isinstance(value, CommentedMap):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, CommentedSeq):
        return [_plain(v) for v in value]
    if isinstance(value, bool | ScalarBoolean):
        return bool(value)
    for kind in (int, float, str):
        if isinstance(value, kind):
            return kind(value)
    return value


def _hint(value: Any, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(str(value), list(choices), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def _model_name(workflow: str) -> str:
    """``lead-notifier`` → ``LeadNotifierInput`` (the input model's JSON Schema title)."""
    parts = re.split(r"[^0-9A-Za-z]+", workflow)
    return "".join(p[:1].upper() + p[1:] for p in parts) + "Input"
