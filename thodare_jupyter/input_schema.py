"""A pydantic model read from a JSON Schema: the run input of a workflow loaded from JSON.

A workflow built in Python validates its input with its pydantic model; one
loaded from JSON has only ``metadata.inputSchema``. :func:`schema_model`
turns that schema back into a model, so both validate alike, with the same
messages. It reads what the builder and ``%%workflow`` write: ``type``
(string, integer, number, boolean, array, object, null, or a list of them),
``properties``, ``required``, ``items``, ``additionalProperties``, ``enum``,
``const``, ``anyOf``/``oneOf``, one-item ``allOf``, ``default``, local
``$ref`` (``$defs``/``definitions``), the common string/number/array bounds and
the ``date-time``/``date``/``time``/``uuid`` formats. Anything else is not
checked. A hostile schema costs bounded work: each ``$ref`` is read once (a
reference back into itself becomes a recursive model), nesting and size are
capped, and a schema pydantic cannot express validates nothing rather than
raising. Models are cached per schema.
"""

from __future__ import annotations

import json
import keyword
import logging
import re
from datetime import date, datetime, time
from functools import lru_cache
from typing import Annotated, Any, ClassVar, Literal, Optional, Union
from uuid import UUID

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    RootModel,
    SerializationInfo,
    SerializerFunctionWrapHandler,
    create_model,
    model_serializer,
)

log = logging.getLogger(__name__)

MAX_NODES = 2_000
"""Schema nodes read per schema; a bigger schema is not checked at all."""
MAX_DEPTH = 64
"""Nesting read; deeper values are accepted as they are."""
MAX_SCHEMA_CHARS = 1_000_000
"""A schema longer than this (as JSON) is not checked at all."""

_FORMATS: dict[str, Any] = {"date-time": datetime, "date": date, "time": time, "uuid": UUID}
_SCALARS: dict[str, Any] = {
    "string": str, "integer": int, "number": float, "boolean": bool, "null": None,
}  # fmt: skip
_BOUNDS = {
    "minLength": "min_length", "maxLength": "max_length", "minItems": "min_length",
    "maxItems": "max_length", "minimum": "ge", "maximum": "le", "exclusiveMinimum": "gt",
    "exclusiveMaximum": "lt", "multipleOf": "multiple_of", "pattern": "pattern",
}  # fmt: skip


class _TooBig(Exception):
    """The schema exceeds :data:`MAX_NODES`."""


class SchemaInput(BaseModel):
    """Base of the models read from a schema: input keys kept, absent optionals left out."""

    model_config = ConfigDict(extra="allow")
    keys: ClassVar[dict[str, str]] = {}
    """Field name → input key, where the key cannot be a field name."""
    absent_ok: ClassVar[frozenset[str]] = frozenset()
    """Fields that are optional without a default: left out when the input leaves them out."""

    @model_serializer(mode="wrap")
    def _as_input(self, handler: SerializerFunctionWrapHandler, info: SerializationInfo) -> Any:
        out = handler(self)
        if not isinstance(out, dict):
            return out
        cls = type(self)
        for name in cls.absent_ok - self.model_fields_set:
            out.pop(cls.keys.get(name, name) if info.by_alias else name, None)
        if info.by_alias:
            return out
        return {cls.keys.get(k, k): v for k, v in out.items()}


class _ClosedInput(SchemaInput):
    model_config = ConfigDict(extra="forbid")


def schema_model(schema: Any) -> type[BaseModel] | None:
    """The model a run input is validated with, read from a JSON Schema (cached per schema).

    None when there is nothing to check: no schema, or one too big or too
    odd to read. An object schema gives a model of its fields; any other
    schema a :class:`~pydantic.RootModel`.
    """
    if not isinstance(schema, dict) or not schema:
        return None
    try:
        key = json.dumps(schema, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return None
    if len(key) > MAX_SCHEMA_CHARS:
        log.warning("inputSchema of %d characters is not checked (limit %d)", len(key),
                    MAX_SCHEMA_CHARS)  # fmt: skip
        return None
    return _model_for(key)


@lru_cache(maxsize=256)
def _model_for(key: str) -> type[BaseModel] | None:
    schema = json.loads(key)
    for bounds in (True, False):  # a bound pydantic rejects (a bad pattern): read without bounds
        try:
            return _Reader(schema, bounds).root()
        except _TooBig:
            log.warning("inputSchema has more than %d nodes; it is not checked", MAX_NODES)
            return None
        except Exception as e:  # a schema pydantic cannot express must not stop a run
            log.warning("inputSchema not checked%s: %s", "" if bounds else " (even unbounded)", e)
    return None


class _Reader:
    """One pass over one schema; every ``$ref`` is read once."""

    def __init__(self, schema: dict[str, Any], bounds: bool) -> None:
        self.schema = schema
        self.bounds = bounds
        self.nodes = 0
        self.refs: dict[str, Any] = {}
        self.names: dict[str, str] = {}  # ref → the name a reference back into it uses
        self.models: list[type[BaseModel]] = []

    def root(self) -> type[BaseModel]:
        t = self.type_of(self.schema, 0, "Input")
        ns = {name: self.refs.get(ref, Any) for ref, name in self.names.items()}
        ns = {name: Any if isinstance(v, str) else v for name, v in ns.items()}  # ref → ref
        for model in self.models:  # resolve the references back (recursive models)
            model.model_rebuild(_types_namespace=ns)
        t = ns.get(t, Any) if isinstance(t, str) else t
        if isinstance(t, type) and issubclass(t, BaseModel):
            return t
        return RootModel[t]  # type: ignore[valid-type]

    def type_of(self, s: Any, depth: int, name: str) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise _TooBig
        if not isinstance(s, dict) or depth > MAX_DEPTH:
            return Any
        ref = s.get("$ref")
        if isinstance(ref, str):
            return self.ref(ref, depth)
        if "const" in s:
            return _literal([s["const"]])
        if isinstance(s.get("enum"), list) and s["enum"]:
            return _literal(s["enum"])
        for combo in ("anyOf", "oneOf"):
            if isinstance(s.get(combo), list) and s[combo]:
                return _union([self.type_of(m, depth + 1, name) for m in s[combo]])
        if isinstance(s.get("allOf"), list) and len(s["allOf"]) == 1:
            return self.type_of(s["allOf"][0], depth + 1, name)
        kind = s.get("type", "object" if isinstance(s.get("properties"), dict) else None)
        if isinstance(kind, list):
            return _union([self.one_type(s, k, depth, name) for k in kind])
        return self.one_type(s, kind, depth, name)

    def one_type(self, s: dict[str, Any], kind: Any, depth: int, name: str) -> Any:
        if kind == "object":
            return self.object_type(s, depth, name)
        if kind == "array":
            items = self.type_of(s["items"], depth + 1, f"{name}Item") if "items" in s else Any
            return self.bounded(list[items], s)  # type: ignore[valid-type]
        if kind == "string" and s.get("format") in _FORMATS:
            return _FORMATS[s["format"]]
        if isinstance(kind, str) and kind in _SCALARS:
            return self.bounded(_SCALARS[kind], s)
        return Any

    def bounded(self, t: Any, s: dict[str, Any]) -> Any:
        if not self.bounds or t is None:
            return t
        kw = {
            arg: s[key] for key, arg in _BOUNDS.items()
            if key in s and _bound_ok(key, s[key])
        }  # fmt: skip
        if t is str:
            kw = {k: v for k, v in kw.items() if k in ("min_length", "max_length", "pattern")}
        elif t in (int, float):
            kw = {k: v for k, v in kw.items() if k in ("ge", "le", "gt", "lt", "multiple_of")}
        else:
            kw = {k: v for k, v in kw.items() if k in ("min_length", "max_length")}
        return Annotated[t, Field(**kw)] if kw else t

    def ref(self, ref: str, depth: int) -> Any:
        if ref in self.refs:
            return self.refs[ref]
        if ref in self.names:  # a reference back into itself: named now, resolved in root()
            return self.names[ref]
        target = _pointer(self.schema, ref)
        if target is None:
            return Any
        self.names[ref] = f"Ref{len(self.names)}"
        t = self.type_of(target, depth + 1, _model_name(ref.rsplit("/", 1)[-1]))
        self.refs[ref] = t
        return t

    def object_type(self, s: dict[str, Any], depth: int, name: str) -> Any:
        props = s.get("properties")
        props = props if isinstance(props, dict) else {}
        raw_required = s.get("required")
        required = [r for r in raw_required if isinstance(r, str)] if isinstance(
            raw_required, list
        ) else []  # fmt: skip
        extra = s.get("additionalProperties")
        if not props and not required:
            if isinstance(extra, dict):
                return dict[str, self.type_of(extra, depth + 1, name)]  # type: ignore[misc]
            return dict[str, Any]
        fields: dict[str, Any] = {}
        keys: dict[str, str] = {}
        absent_ok: set[str] = set()
        taken = set(props) | set(required)
        for i, key in enumerate([*props, *(r for r in required if r not in props)]):
            sub = props.get(key, {})
            field = key if _plain_name(key) else _free_name(f"field_{i}", taken)
            if field != key:
                keys[field] = key
            t = self.type_of(sub, depth + 1, f"{name}{_model_name(key)}")
            alias = {"alias": key} if field != key else {}
            if key in required:
                info = Field(**alias)
            elif isinstance(sub, dict) and "default" in sub:  # checked like an input value
                info = Field(sub["default"], validate_default=True, **alias)
            else:
                absent_ok.add(field)
                info = Field(None, **alias)
            fields[field] = (t, info)
        base: type[SchemaInput] = _ClosedInput if extra is False else SchemaInput
        title = _model_name(str(s.get("title") or name))
        model: type[SchemaInput] = create_model(title, __base__=base, **fields)
        model.keys = keys
        model.absent_ok = frozenset(absent_ok)
        self.models.append(model)
        return model


def _literal(values: list[Any]) -> Any:
    if not all(v is None or isinstance(v, str | int | float | bool) for v in values):
        return Any
    return Literal[tuple({(type(v), v): v for v in values}.values())]  # 1 and True differ


def _union(members: list[Any]) -> Any:
    if any(m is Any for m in members):
        return Any
    unique = list(dict.fromkeys(m for m in members if m is not None))
    if not unique:
        return None
    t = unique[0] if len(unique) == 1 else Union[tuple(unique)]  # noqa: UP007
    return Optional[t] if None in members else t  # noqa: UP045 (t may be a forward name)


def _bound_ok(key: str, value: Any) -> bool:
    if key == "pattern":
        return isinstance(value, str)
    return isinstance(value, int | float) and not isinstance(value, bool)


def _pointer(schema: dict[str, Any], ref: str) -> Any:
    """The part of ``schema`` a local ``#/a/b`` reference names (None when it names none)."""
    if ref == "#":
        return schema
    if not ref.startswith("#/"):
        return None  # remote references are never fetched
    node: Any = schema
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def _plain_name(key: str) -> bool:
    """Can ``key`` be a pydantic field name as it is?"""
    return (
        key.isidentifier()
        and not keyword.iskeyword(key)
        and not key.startswith(("_", "model_"))
        and not hasattr(SchemaInput, key)
    )


def _free_name(name: str, taken: set[str]) -> str:
    while name in taken:
        name += "_"
    taken.add(name)
    return name


def _model_name(text: str) -> str:
    words = re.findall(r"[A-Za-z0-9]+", text)
    return "".join(w[:1].upper() + w[1:] for w in words)[:60] or "Object"
