"""``define_connector`` and ``@connector``: a typed step from pydantic models.

A connector is one declaration: its params model (with ``Hidden``/``UserOnly``
markers), its outputs model, and a ``run(params, ctx)`` function, sync or
``async``. Params are validated when the step runs; outputs are validated and
stored as JSON-ready dicts.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cached_property
from types import NoneType
from typing import Annotated, Any, Literal, cast, get_type_hints

from pydantic import BaseModel, PydanticUserError, TypeAdapter, ValidationError
from pydantic.fields import FieldInfo
from pydantic.json_schema import models_json_schema

from ..artifacts import has_ref
from ..data import field_want
from ..errors import ConnectorDefinitionError, OutputInvalid, ParamsInvalid
from ..loop_threads import in_thread
from ..redaction import Redactor
from ..wire import PauseInfo
from .context import StepContext
from .flow import Flow
from .payload import by_reference, dump_model, holds_table, load_params, store_untyped
from .visibility import Visibility, visibility_of

Kind = Literal["compute", "wait", "trigger"]
RunFn = Callable[..., Any]


@dataclass(frozen=True)
class RetryPolicy:
    """How often the durable runtime tries a failing step, and how long it waits between.

    The n-th retry waits ``backoff_s * factor**(n-1)`` seconds, capped at ``max_backoff_s``.
    """

    max_attempts: int = 1
    backoff_s: float = 1.0
    factor: float = 2.0
    max_backoff_s: float = 60.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return float(min(self.max_backoff_s, self.backoff_s * self.factor ** (attempt - 1)))


NO_RETRY = RetryPolicy()


@dataclass(frozen=True)
class ParamSpec:
    """One param as the catalog (and the LLM, unless hidden) sees it."""

    name: str
    json_type: str
    required: bool
    visibility: Visibility
    description: str | None
    schema: dict[str, Any]


def _json_type(schema: dict[str, Any]) -> str:
    if "type" in schema:
        return str(schema["type"])
    if "enum" in schema or "const" in schema:
        return "string"
    kinds = [s.get("type") for s in schema.get("anyOf", []) if s.get("type") != "null"]
    return str(kinds[0]) if len(kinds) == 1 and kinds[0] else "any"


class Connector:
    """A typed step type. Build one with :func:`define_connector` or :func:`connector`.

    Replay caveat: in the durable runtime a step in flight at a crash runs
    again (at-least-once); use ``ctx.idempotency_key`` for outside effects.
    """

    def __init__(
        self,
        *,
        type: str,
        params: type[BaseModel],
        outputs: type[BaseModel] | None,
        run: RunFn,
        name: str | None = None,
        description: str = "",
        kind: Kind = "compute",
        retries: RetryPolicy | int | None = None,
        concurrency: int | None = None,
        rate: str | None = None,
    ) -> None:
        if not isinstance(type, str) or not type.strip():
            raise ConnectorDefinitionError("A connector needs a non-empty type name.")
        if not (inspect.isclass(params) and issubclass(params, BaseModel)):
            raise ConnectorDefinitionError(
                f"Connector {type!r}: params must be a pydantic BaseModel class, got {params!r}."
            )
        if outputs is not None and not (
            inspect.isclass(outputs) and issubclass(outputs, BaseModel)
        ):
            raise ConnectorDefinitionError(
                f"Connector {type!r}: outputs must be a pydantic BaseModel class or None."
            )
        if not callable(run):
            raise ConnectorDefinitionError(f"Connector {type!r}: run must be callable.")
        self.type = type
        self.name = name or type
        self.description = description
        self.kind: Kind = kind
        self.params = params
        self.outputs = outputs
        self.run = run
        self.retries = (
            RetryPolicy(max_attempts=retries) if isinstance(retries, int) else retries or NO_RETRY
        )
        self.flow = Flow.of(type, concurrency, rate)
        """Its flow control (``concurrency``, ``rate``), or ``None`` when it has none."""
        self.is_async = inspect.iscoroutinefunction(run)
        self._takes_ctx = len(inspect.signature(run).parameters) >= 2

    def __repr__(self) -> str:
        return f"<Connector {self.type!r} kind={self.kind}>"

    # ── schema views ──────────────────────────────────────────────────────

    @cached_property
    def params_schema(self) -> dict[str, Any]:
        """The JSON Schema of the params model (its ``$defs`` included)."""
        return self.params.model_json_schema()

    @cached_property
    def output_schema(self) -> dict[str, Any] | None:
        """The JSON Schema of a stored output; None when outputs are untyped.

        Either the model as serialized (computed fields, a ``Decimal`` as a
        string) or as validated (a ``Decimal`` as a number too): a ref may read
        what either allows. A model pydantic cannot describe gives its field
        names only.
        """
        if self.outputs is None:
            return None
        try:
            refs, top = models_json_schema(
                [(self.outputs, "serialization"), (self.outputs, "validation")]
            )
            return {"anyOf": list(refs.values()), "$defs": top.get("$defs", {})}
        except PydanticUserError:  # a field type with no JSON Schema
            fields = self.output_fields or ()
            return {"type": "object", "properties": {name: {} for name in fields}}

    @cached_property
    def param_specs(self) -> dict[str, ParamSpec]:
        """Every param by name, hidden ones included."""
        schema = self.params_schema
        props: dict[str, Any] = schema.get("properties", {})
        required = set(schema.get("required", []))
        specs = {}
        for fname, finfo in self.params.model_fields.items():
            key = finfo.alias or fname
            prop = props.get(key, {})
            specs[key] = ParamSpec(
                name=key,
                json_type=_json_type(prop),
                required=key in required,
                visibility=visibility_of(finfo),
                description=finfo.description,
                schema=prop,
            )
        return specs

    @cached_property
    def llm_settable(self) -> tuple[str, ...]:
        """Params the LLM may set (neither hidden nor user-only)."""
        return tuple(n for n, s in self.param_specs.items() if s.visibility == "user-or-llm")

    @cached_property
    def hidden_params(self) -> frozenset[str]:
        """Names of hidden params."""
        return frozenset(n for n, s in self.param_specs.items() if s.visibility == "hidden")

    @cached_property
    def output_fields(self) -> tuple[str, ...] | None:
        """Declared output fields; ``None`` when outputs are not typed (anything goes)."""
        if self.outputs is None:
            return None
        return tuple(f.alias or n for n, f in self.outputs.model_fields.items())

    @cached_property
    def stores_data(self) -> bool:
        """Whether the outputs model has ``Table``/``File`` fields (kept in the artifact store)."""
        return self.outputs is not None and any(
            field_want(f.annotation, f.metadata) is not None
            for f in self.outputs.model_fields.values()
        )

    @cached_property
    def _adapters(self) -> dict[str, TypeAdapter[Any]]:
        return {
            (f.alias or n): TypeAdapter(_field_type(f)) for n, f in self.params.model_fields.items()
        }

    def check_param(self, name: str, value: Any) -> str | None:
        """Why ``value`` cannot be param ``name`` (None when it can). Hidden values stay out."""
        adapter = self._adapters.get(name)
        if adapter is None:
            return f"{self.type} has no param {name!r}"
        try:
            adapter.validate_python(value)
        except ValidationError as e:
            spec = self.param_specs[name]
            shown = "" if spec.visibility == "hidden" else f", got {_short(value)}"
            return f"{name!r} expects {spec.json_type}{shown}: {e.errors()[0]['msg']}"
        return None

    def describe_for_llm(self) -> dict[str, Any]:
        """The connector as the LLM may see it: hidden params removed."""
        params = {
            n: {
                "type": s.json_type,
                "required": s.required,
                **({"user_only": True} if s.visibility == "user-only" else {}),
                **({"description": s.description} if s.description else {}),
                **({"enum": s.schema["enum"]} if "enum" in s.schema else {}),
            }
            for n, s in self.param_specs.items()
            if s.visibility != "hidden"
        }
        return {
            "type": self.type,
            "kind": self.kind,
            "description": self.description,
            "params": params,
            "outputs": list(self.output_fields) if self.output_fields is not None else "any",
        }

    # ── running ───────────────────────────────────────────────────────────

    def validate_params(
        self, raw: dict[str, Any], block_id: str, redactor: Redactor | None = None
    ) -> BaseModel:
        """Validate resolved params, or raise :class:`ParamsInvalid` naming each field.

        A value is shown only once ``redactor`` has masked it (before it is cut
        short, so not even a prefix of a secret is left); hidden ones never.
        """
        try:
            return self.params.model_validate(raw)
        except ValidationError as e:
            raise ParamsInvalid(block_id, self.type, self._describe(e, redactor)) from None

    def _describe(self, e: ValidationError, redactor: Redactor | None) -> list[str]:
        mask = redactor or Redactor()
        out = []
        for err in e.errors(include_url=False):
            loc = ".".join(str(p) for p in err["loc"]) or "(params)"
            top = str(err["loc"][0]) if err["loc"] else ""
            spec = self.param_specs.get(top)
            expected = f" (expected {spec.json_type})" if spec else ""
            if err["type"] == "missing":
                got = ""
            elif spec is not None and spec.visibility == "hidden":
                got = " [hidden value not shown]"
            else:
                got = f", got {_short(err.get('input'), mask)}"
            out.append(mask(f"{loc}{expected}: {err['msg']}") + got)
        return out

    async def execute(self, raw_params: dict[str, Any], ctx: StepContext) -> Any:
        """Validate params, run, validate outputs. A sync ``run`` goes to a thread,
        with its validation (:meth:`run_sync`: one trip there and back).

        Returns the output as a JSON-ready value, or a :class:`PauseInfo`.
        """
        if not self.is_async:
            result = await in_thread(self.run_sync, raw_params, ctx)
            return await self.finish(result, ctx) if inspect.isawaitable(result) else result
        self._hide(raw_params, ctx)
        if ctx.artifacts is not None and has_ref(raw_params):  # reading files: off the loop
            raw_params = await in_thread(load_params, self, raw_params, ctx.artifacts)
        return await self.finish(await self.run(*self._args(raw_params, ctx)), ctx)

    async def finish(self, result: Any, ctx: StepContext) -> Any:
        """What ``run`` returned (awaited first if awaitable: a sync ``run`` may return
        one), validated and JSON-ready, or a :class:`PauseInfo`."""
        if inspect.isawaitable(result):
            result = await result
        if isinstance(result, PauseInfo):
            return result
        if ctx.artifacts is not None and (
            self.stores_data if self.outputs is not None else holds_table(result)
        ):  # writing files: off the loop
            return await in_thread(self.dump_output, result, ctx.block_id, ctx)
        return self.dump_output(result, ctx.block_id, ctx)

    def run_sync(self, raw_params: dict[str, Any], ctx: StepContext) -> Any:
        """:meth:`execute` of a sync ``run`` on the calling thread (a worker's step
        thread): the output, a :class:`PauseInfo`, or an awaitable ``run`` returned
        (the caller hands it to :meth:`finish`)."""
        self._hide(raw_params, ctx)
        if ctx.artifacts is not None and has_ref(raw_params):
            raw_params = load_params(self, raw_params, ctx.artifacts)
        result = self.run(*self._args(raw_params, ctx))
        if inspect.isawaitable(result) or isinstance(result, PauseInfo):
            return result
        return self.dump_output(result, ctx.block_id, ctx)

    def _hide(self, raw_params: dict[str, Any], ctx: StepContext) -> None:
        """The values of hidden params become secrets of the run (masked in its errors)."""
        if self.hidden_params:
            ctx.redactor.add([raw_params.get(name) for name in self.hidden_params])

    def _args(self, raw_params: dict[str, Any], ctx: StepContext) -> tuple[Any, ...]:
        """What ``run`` is called with: the validated params, and ``ctx`` if it takes one."""
        params = self.validate_params(raw_params, ctx.block_id, ctx.redactor)
        return (params, ctx) if self._takes_ctx else (params,)

    def dump_output(self, result: Any, block_id: str, ctx: StepContext | None = None) -> Any:
        """Validate a run's return value against the outputs model; JSON-ready.

        With ``ctx.artifacts``, ``Table``/``File`` fields are written to the
        artifact store first and replaced by their references, and an output
        whose JSON is over 256 KiB is stored whole and replaced by one.
        """
        store = ctx.artifacts if ctx is not None else None
        redact = ctx.redactor if ctx is not None else None
        if self.outputs is None:
            if isinstance(result, BaseModel):
                out = dump_model(self, result, block_id, store, redact)
            else:
                out = store_untyped(result, store, redact)
            return by_reference(out, store)
        try:
            model = (
                result
                if isinstance(result, self.outputs)
                else self.outputs.model_validate(
                    result.model_dump() if isinstance(result, BaseModel) else result
                )
            )
        except ValidationError as e:
            probs = [
                f"{'.'.join(str(p) for p in err['loc']) or '(output)'}: {err['msg']}"
                for err in e.errors()
            ]
            raise OutputInvalid(block_id, self.type, probs) from None
        return by_reference(dump_model(self, model, block_id, store, redact), store)


def _field_type(f: FieldInfo) -> Any:
    """A field's type with its constraints and validators (``ge=``, ``BeforeValidator``, ...)."""
    ann = f.annotation if f.annotation is not None else Any
    return cast(Any, Annotated)[(ann, *f.metadata)] if f.metadata else ann


def _short(value: Any, mask: Redactor | None = None, limit: int = 60) -> str:
    """``type repr`` cut to ``limit``, masked first; never raises on odd values."""
    try:
        shown = repr(value)
    except Exception:  # a __repr__ that raises, an int too long to print
        shown = "(a value that cannot be shown)"
    text = f"{type(value).__name__} {mask(shown) if mask else shown}"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def define_connector(
    *,
    type: str,
    params: type[BaseModel],
    outputs: type[BaseModel] | None = None,
    run: Callable[..., Any] | Callable[..., Awaitable[Any]],
    name: str | None = None,
    description: str = "",
    kind: Kind = "compute",
    retries: RetryPolicy | int | None = None,
    concurrency: int | None = None,
    rate: str | None = None,
) -> Connector:
    """Declare a connector from a params model, an outputs model and a run function.

    Args:
        type: The name blocks use (``"slack"``, ``"enrich-lead"``).
        params: Pydantic model of the params; mark secrets ``Hidden[...]``.
        outputs: Pydantic model of the output; its fields are what ``{{step.field}}``
            may reference. ``None`` leaves the output untyped.
        run: ``run(params, ctx)`` or ``run(params)``, sync or async.
        name: A human name (defaults to ``type``).
        description: One line shown to the LLM and in the catalog.
        kind: ``"compute"`` (default), ``"wait"`` or ``"trigger"``.
        retries: Attempts in the durable runtime: an int (max attempts) or a
            :class:`RetryPolicy` with exponential backoff. Default: one attempt.
        concurrency: At most this many attempts of this type run at once: in the
            durable runtime across every worker on the database (namespace-wide),
            in memory within the process.
        rate: At most this many attempts start per second, minute or hour
            (``"10/s"``, ``"100/m"``, ``"5/h"``), evenly spaced; shared like ``concurrency``.
    """
    return Connector(
        type=type,
        params=params,
        outputs=outputs,
        run=run,
        name=name,
        description=description,
        kind=kind,
        retries=retries,
        concurrency=concurrency,
        rate=rate,
    )


def connector(
    type: str,
    *,
    description: str | None = None,
    name: str | None = None,
    retries: RetryPolicy | int | None = None,
    concurrency: int | None = None,
    rate: str | None = None,
) -> Callable[[RunFn], Connector]:
    """Decorator form: the params and outputs models come from the annotations.

    Example::

        @connector("enrich-lead")
        async def enrich(params: EnrichParams, ctx) -> EnrichOut: ...
    """

    def wrap(fn: RunFn) -> Connector:
        where = f"{fn.__module__}.{fn.__qualname__}"
        try:
            hints = get_type_hints(fn, localns=caller_locals)
        except (NameError, TypeError) as e:
            raise ConnectorDefinitionError(
                f"@connector on {where}: cannot resolve its annotations ({e}). "
                "Define the params/outputs models before the connector."
            ) from e
        sig = list(inspect.signature(fn).parameters)
        if not sig or sig[0] not in hints:
            raise ConnectorDefinitionError(
                f"@connector on {where}: annotate the first argument with a pydantic "
                "params model, e.g. `def run(params: MyParams, ctx) -> MyOut`."
            )
        out = hints.get("return")
        if out is NoneType:
            out = None
        return define_connector(
            type=type,
            params=hints[sig[0]],
            outputs=out,
            run=fn,
            name=name,
            description=description or (inspect.getdoc(fn) or "").split("\n", 1)[0],
            retries=retries,
            concurrency=concurrency,
            rate=rate,
        )

    if not isinstance(type, str) or not type:
        raise ConnectorDefinitionError('@connector needs a type name: @connector("my-step").')
    caller_locals = sys._getframe(1).f_locals
    return wrap
