"""``define_workflow``: the fluent builder that compiles to the wire format.

A step's params function receives ``r``; ``r.input.x`` becomes
``{{trigger.x}}`` and ``r.<step>.<field>`` becomes ``{{<step>.<field>}}``,
in plain values and inside f-strings alike. Each access is checked against
the input model and the step's outputs model; ``build()`` raises
:class:`BuildError` listing every typo with its line. Edges are inferred
from the refs (a step with none hangs off the trigger), plus ``needs=``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import BaseModel

from ..connectors import Catalog, Connector
from ..controls import parse_concurrency, parse_for_each, parse_retries, parse_timeout
from ..errors import BuildError, Issue, listing
from ..ref_checks import FOR_EACH, WHEN, check_refs
from ..templates import iter_refs, ref_head
from ..validation import as_issue, block_id_problem, check_controls, check_params
from ..wire import (
    SerializedBlock,
    SerializedConnection,
    SerializedWorkflow,
    StepRetries,
    WorkflowMetadata,
)

TRIGGER_ID = "__trigger__"


def _where(depth: int) -> str:
    frame = sys._getframe(depth + 1)
    return f"line {frame.f_lineno} of {frame.f_code.co_filename}"


class Ref:
    """A typed reference to a value that exists only at run time.

    ``str(ref)`` and f-strings give its ``{{path}}`` template.
    """

    __slots__ = ("_model", "_path", "_problems")
    _path: str
    _model: type[BaseModel] | None
    _problems: list[Issue]

    def __init__(self, path: str, model: type[BaseModel] | None, problems: list[Issue]) -> None:
        object.__setattr__(self, "_path", path)
        object.__setattr__(self, "_model", model)
        object.__setattr__(self, "_problems", problems)

    def _child(self, name: str, depth: int) -> Ref:
        model = self._model
        sub: type[BaseModel] | None = None
        if model is not None:
            fields = {(f.alias or n): f for n, f in model.model_fields.items()}
            if name not in fields:
                what = "The run input" if self._path == "trigger" else f"'{self._path}'"
                self._problems.append(
                    Issue(
                        None,
                        None,
                        "ref-unknown-field",
                        f"{what} has no field '{name}' ({_where(depth + 1)}). "
                        f"Valid: {listing(fields)}.",
                    )
                )
            else:
                ann = fields[name].annotation
                if isinstance(ann, type) and issubclass(ann, BaseModel):
                    sub = ann
        return Ref(f"{self._path}.{name}", sub, self._problems)

    def __getattr__(self, name: str) -> Ref:
        if name.startswith("__"):
            raise AttributeError(name)
        return self._child(name, 1)

    def __getitem__(self, key: str | int) -> Ref:
        return self._child(str(key), 1)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("References are read-only.")

    def __str__(self) -> str:
        return "{{" + self._path + "}}"

    __repr__ = __str__

    def __format__(self, spec: str) -> str:
        return str(self)

    def __add__(self, other: object) -> str:
        return str(self) + str(other)

    def __radd__(self, other: object) -> str:
        return str(other) + str(self)


class ForEachOutputs(BaseModel):
    """A ``for_each`` step's outputs (whatever its connector's): each item's output
    (``None`` where it failed), and the failures."""

    items: list[Any]
    failed: list[dict[str, Any]]


class StepRefs:
    """The ``r`` a params function receives: ``r.input`` and one attribute per earlier
    step (``steps``: each step's outputs model, :class:`ForEachOutputs` for a ``for_each`` step)."""

    def __init__(
        self,
        input_model: type[BaseModel] | None,
        steps: Mapping[str, type[BaseModel] | None],
        problems: list[Issue],
    ) -> None:
        self._input_model = input_model
        self._steps = steps
        self._problems = problems

    def _get(self, name: str, depth: int) -> Ref:
        if name in ("input", "trigger", TRIGGER_ID):
            return Ref("trigger", self._input_model, self._problems)
        if name not in self._steps:
            self._problems.append(
                Issue(
                    None,
                    None,
                    "unknown-block",
                    f"No earlier step '{name}' ({_where(depth + 1)}). "
                    f"Available: {listing(['input', *self._steps])}.",
                )
            )
            return Ref(name, None, self._problems)
        return Ref(name, self._steps[name], self._problems)

    def __getattr__(self, name: str) -> Ref:
        if name.startswith("_"):
            raise AttributeError(name)
        return self._get(name, 1)

    def __getitem__(self, name: str) -> Ref:
        return self._get(name, 1)


def materialize(value: Any) -> Any:
    """Turn refs (at any depth) into template strings; tuples into lists."""
    if isinstance(value, Ref):
        return str(value)
    if isinstance(value, BaseModel):
        return materialize(value.model_dump(mode="json"))
    if isinstance(value, Mapping):
        return {str(k): materialize(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [materialize(v) for v in value]
    return value


ParamsArg = Mapping[str, Any] | Callable[[StepRefs], Mapping[str, Any]]


@dataclass(frozen=True)
class _State:
    name: str
    description: str | None = None
    input_model: type[BaseModel] | None = None
    variables: Mapping[str, Any] | None = None
    steps: tuple[tuple[SerializedBlock, Connector, tuple[str, ...], str], ...] = ()
    """``(block, connector, upstream ids, where it was added)`` per step."""
    problems: tuple[Issue, ...] = field(default=())


class WorkflowBuilder:
    """Chain ``.input()``, ``.step()``… then ``.build()``. Each call returns a new builder."""

    def __init__(self, state: _State) -> None:
        self._s = state

    def input(self, model: type[BaseModel]) -> WorkflowBuilder:
        """Declare the run input model; ``r.input.<field>`` is checked against it."""
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            raise TypeError(f"input() takes a pydantic model class, got {model!r}.")
        return WorkflowBuilder(replace(self._s, input_model=model))

    def describe(self, description: str) -> WorkflowBuilder:
        """Set the workflow's description."""
        return WorkflowBuilder(replace(self._s, description=description))

    def variables(self, **values: Any) -> WorkflowBuilder:
        """Declare workflow variables, readable as ``{{vars.name}}``."""
        return WorkflowBuilder(replace(self._s, variables={**(self._s.variables or {}), **values}))

    def step(
        self,
        id: str,
        connector: Connector,
        params: ParamsArg | None = None,
        *,
        needs: Sequence[str] = (),
        name: str | None = None,
        retries: int | Mapping[str, Any] | StepRetries | None = None,
        when: str | Ref | Callable[[StepRefs], Any] | None = None,
        timeout: float | str | None = None,
        for_each: str | Ref | Callable[[StepRefs], Any] | None = None,
        concurrency: int | None = None,
    ) -> WorkflowBuilder:
        """Add a step running ``connector`` with ``params`` (a dict, or a function of ``r``).

        Args:
            id: The step id (``{{id.field}}`` refers to its output).
            connector: A connector from ``define_connector`` / ``@connector``.
            params: ``{"email": "x"}`` or ``lambda r: {"email": r.input.email}``.
            needs: Steps that must finish first even without a ref between them.
            name: A display name.
            retries: This step's attempts, overriding the connector's policy:
                ``3`` or ``{"max": 3, "backoff": "2s"}`` (``max`` counts the first try).
            when: Run the step only when this is truthy at run time:
                ``lambda r: r.approve.approved`` or ``"{{approve.approved}}"``; a
                falsy value skips it and the steps that need it.
            timeout: Seconds (or ``"30s"``, ``"2m"``) one attempt may take.
            for_each: Run once per item of this list or table (``lambda r:
                r.query.rows``); params may read ``{{item}}``/``{{item_index}}``
                (see :meth:`for_each`).
            concurrency: Items of a ``for_each`` step in flight at once (default 8).
        """
        return self._step(
            id, connector, params, _where(1), needs=needs, name=name, retries=retries,
            when=when, timeout=timeout, for_each=for_each, concurrency=concurrency,
        )  # fmt: skip

    def for_each(
        self,
        id: str,
        connector: Connector,
        *,
        over: str | Ref | Callable[[StepRefs], Any],
        params: Mapping[str, Any] | Callable[[Ref, StepRefs], Mapping[str, Any]] | None = None,
        concurrency: int | None = None,
        needs: Sequence[str] = (),
        name: str | None = None,
        retries: int | Mapping[str, Any] | StepRetries | None = None,
        when: str | Ref | Callable[[StepRefs], Any] | None = None,
        timeout: float | str | None = None,
    ) -> WorkflowBuilder:
        """Add a step that runs ``connector`` once per item of ``over`` (a list, or a
        table: one item per row), ``concurrency`` at a time (default 8).

        ``params(item, r)`` gives each call's params: ``item`` is ``{{item}}``
        (``item.name`` is ``{{item.name}}``); ``"{{item_index}}"`` is its index.
        The step's output is ``{"items": [...], "failed": [{"index", "error"}]}``.
        """
        fn = params
        item = Ref("item", None, [])
        each: ParamsArg | None = (lambda r: fn(item, r)) if callable(fn) else fn
        return self._step(
            id, connector, each, _where(1), needs=needs, name=name, retries=retries,
            when=when, timeout=timeout, for_each=over, concurrency=concurrency,
        )  # fmt: skip

    def _step(
        self,
        id: str,
        connector: Connector,
        params: ParamsArg | None,
        where: str,
        *,
        needs: Sequence[str],
        name: str | None,
        retries: Any,
        when: Any,
        timeout: Any,
        for_each: Any,
        concurrency: Any,
    ) -> WorkflowBuilder:
        problems = _Problems(id, where, self._s.problems)
        known = {b.id: c for b, c, _, _ in self._s.steps}
        outputs = {
            b.id: ForEachOutputs if b.for_each else c.outputs for b, c, _, _ in self._s.steps
        }
        if not isinstance(connector, Connector):
            raise TypeError(f"step({id!r}): expected a connector, got {connector!r} ({where}).")
        why = block_id_problem(id)
        if why or id in known or id == "input":
            problems.add(
                "invalid-block-id" if why else "duplicate-block-id",
                f"Step id {id!r} ({where}): "
                f"{why or 'already used by an earlier step; ids must be unique'}.",
            )
        raw = (
            params(StepRefs(self._s.input_model, outputs, problems))
            if callable(params)
            else (params or {})
        )
        values = materialize(raw)
        if not isinstance(values, dict):
            raise TypeError(
                f"step({id!r}): params must be a dict, got {type(raw).__name__} ({where})."
            )
        for n in needs:
            if n not in known:
                problems.add(
                    "unknown-block",
                    f"Step '{id}' ({where}): needs unknown step '{n}'. "
                    f"Earlier steps: {listing(known)}.",
                )
        controls = _controls(id, where, retries, timeout, problems)
        if concurrency is not None:
            try:
                controls["concurrency"] = parse_concurrency(concurrency)
            except ValueError as e:
                problems.add("invalid-concurrency", f"Step '{id}' ({where}): {e}.", "concurrency")
        if callable(for_each) and not isinstance(for_each, Ref):
            for_each = for_each(StepRefs(self._s.input_model, outputs, problems))
        if for_each is not None:
            try:
                controls["for_each"] = parse_for_each(materialize(for_each))
            except ValueError as e:
                problems.add("invalid-for-each", f"Step '{id}' ({where}): {e}.", FOR_EACH)
        if callable(when) and not isinstance(when, Ref):
            when = when(StepRefs(self._s.input_model, outputs, problems))
        cond = None if when is None else materialize(when)
        if cond is not None and not isinstance(cond, str):
            problems.add(
                "invalid-when",
                f"Step '{id}' ({where}): when must be a reference or a template string, "
                f"got {type(cond).__name__}.",
                WHEN,
            )
            cond = None
        refs = iter_refs([values, cond, controls.get("for_each")])
        deps = [h for h in (ref_head(r)[0] for r in refs) if h in known]
        upstream = tuple(dict.fromkeys([*needs, *deps]))
        block = SerializedBlock(
            id=id, type=connector.type, name=name, params=values, when=cond, **controls
        )
        for i in [*check_params(block, connector), *check_controls(block, connector)]:
            problems.add(i.code, f"Step '{id}' ({where}): {i.error}", i.field)
        return WorkflowBuilder(
            replace(
                self._s,
                steps=(*self._s.steps, (block, connector, upstream, where)),
                problems=problems.done(),
            )
        )

    def build(self) -> SerializedWorkflow:
        """Compile to a :class:`SerializedWorkflow`; :class:`BuildError` lists every problem.

        Once every access through ``r`` checks out, the refs are checked as
        ``compile_workflow`` checks them (template strings included): each must
        name a declared field, and a param that is exactly one ref must fit the
        field's type (a table is no ``str``); each issue names the step's line.
        """
        s = self._s
        if s.problems:
            raise BuildError(s.name, s.problems)
        wf = assemble_workflow(
            s.name,
            [(block, upstream) for block, _, upstream, _ in s.steps],
            description=s.description,
            input_model=s.input_model,
            variables=s.variables,
        )
        catalog = Catalog(builtins=False).register(*{c.type: c for _, c, _, _ in s.steps}.values())
        where = {block.id: at for block, _, _, at in s.steps}
        issues = [
            replace(i, message=f"{i.message} ({where[i.block]})") if i.block in where else i
            for i in map(as_issue, check_refs(wf, catalog))
        ]
        if issues:
            raise BuildError(s.name, issues)
        return wf


def _controls(
    id: str, where: str, retries: Any, timeout: Any, problems: _Problems
) -> dict[str, Any]:
    """The ``retries``/``timeout`` block fields of a step; problems are appended."""
    out: dict[str, Any] = {}
    for key, value, parse in (
        ("retries", retries, parse_retries),
        ("timeout", timeout, parse_timeout),
    ):
        if value is None:
            continue
        try:
            out[key] = parse(value)
        except ValueError as e:
            problems.add(f"invalid-{key}", f"Step '{id}' ({where}): {e}.", key)
    return out


class _Problems(list[Issue]):
    """The issues found so far while adding step ``step``; refs append ones of no block."""

    def __init__(self, step: str, where: str, earlier: Iterable[Issue]) -> None:
        super().__init__(earlier)
        self.step, self.where = step, where

    def add(self, code: str, message: str, field: str | None = None) -> None:
        self.append(Issue(self.step, field, code, message))

    def done(self) -> tuple[Issue, ...]:
        """Every issue, those the refs of this step found stamped with its id."""
        return tuple(i if i.block is not None else replace(i, block=self.step) for i in self)


def assemble_workflow(
    name: str,
    steps: Sequence[tuple[SerializedBlock, Sequence[str]]],
    *,
    description: str | None = None,
    input_model: type[BaseModel] | None = None,
    variables: Mapping[str, Any] | None = None,
) -> SerializedWorkflow:
    """The workflow of checked ``(block, upstream ids)`` steps: a trigger first, steps
    without upstream hang off it. Shared by the builder and the ``%%workflow`` YAML."""
    blocks = [SerializedBlock(id=TRIGGER_ID, type="trigger_webhook")]
    connections = []
    for block, upstream in steps:
        blocks.append(block.model_copy(deep=True))
        for src in upstream or (TRIGGER_ID,):
            connections.append(SerializedConnection(source=src, target=block.id))
    wf = SerializedWorkflow(
        metadata=WorkflowMetadata(
            name=name,
            description=description,
            input_schema=input_model.model_json_schema() if input_model else None,
        ),
        blocks=blocks,
        connections=connections,
        variables=dict(variables) if variables else None,
    )
    wf._input_model = input_model
    return wf


def define_workflow(name: str, *, description: str | None = None) -> WorkflowBuilder:
    """Start a workflow: ``define_workflow("x").input(M).step(...).build()``."""
    if not isinstance(name, str) or not name.strip():
        raise TypeError("define_workflow needs a non-empty name.")
    return WorkflowBuilder(_State(name=name, description=description))
