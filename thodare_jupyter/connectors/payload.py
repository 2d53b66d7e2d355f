"""A step's output as stored JSON (tables, files and big values by reference), and back.

Outputs: the outputs model is dumped as JSON with every ``Table`` and ``File``
field written to the artifact store first (the step row then holds only the
reference), and an output whose JSON is over 256 KiB is stored whole as a
``json`` artifact. Params: references resolved into a block's params (by
``{{query.rows}}``, which passes a reference without loading it) are loaded as
the params model asks: a ``Table`` param gets a DataFrame, a ``File`` param the
bytes, anything else the JSON value (a table as a list of row dicts; a column
``{{query.rows.name}}`` as a list). Typed outputs: stored JSON back as the
outputs model's types (DataFrames, datetimes, Decimals) for the kernel.
"""

from __future__ import annotations

import json
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, Union, get_args, get_origin

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import PydanticSerializationError

from ..artifacts import ArtifactStore, has_ref
from ..data import WRITER, Flavor, field_want, table_flavor
from ..errors import ArtifactMissing, ArtifactStoreError, OutputInvalid

if TYPE_CHECKING:
    from .connector import Connector

_PLAIN = (str, int, float, bool, type(None))


class _Writer:
    """The serialization context's writer: tables and files into the store."""

    def __init__(self, store: ArtifactStore | None, redact: Callable[[str], str] | None) -> None:
        self.store, self.redact = store, redact
        self.failed: ArtifactStoreError | None = None
        """The store's own error (pydantic wraps it; the step fails with it as it is)."""

    def _need(self, what: str) -> ArtifactStore:
        if self.store is None:
            raise ValueError(f"a {what} is stored in an artifact store; this executor has none")
        return self.store

    def table(self, value: Any) -> dict[str, Any]:
        try:
            return self._need("Table").put_table(value, self.redact)
        except ArtifactStoreError as e:
            self.failed = e
            raise

    def file(self, value: Any) -> dict[str, Any]:
        try:
            return self._need("File").put_file(value, self.redact)
        except ArtifactStoreError as e:
            self.failed = e
            raise


def dump_model(
    conn: Connector,
    model: BaseModel,
    block_id: str,
    store: ArtifactStore | None,
    redact: Callable[[str], str] | None = None,
) -> Any:
    """``model`` as JSON, its tables and files stored first; :class:`OutputInvalid`
    naming the field and the value's type when a value cannot be stored as JSON."""
    writer = _Writer(store, redact)
    context = {WRITER: writer}
    try:
        return model.model_dump(mode="json", by_alias=True, context=context)
    except (ArtifactStoreError, ArtifactMissing):
        raise
    except (PydanticSerializationError, ValueError, TypeError) as e:
        if writer.failed is not None:
            raise writer.failed from None
        problems = []
        for name, finfo in type(model).model_fields.items():
            try:
                model.model_dump(mode="json", include={name}, context=context)
            except (PydanticSerializationError, ValueError, TypeError) as fe:
                value = getattr(model, name, None)
                problems.append(
                    f"field {finfo.alias or name!r} holds a {type(value).__name__} that cannot "
                    f"be stored as JSON ({_cause(fe)}){_hint(value)}"
                )
        raise OutputInvalid(block_id, conn.type, problems or [_cause(e)]) from None


def dump_json(model: BaseModel, store: ArtifactStore | None) -> Any:
    """``model`` (a run input) as JSON, its ``Table``/``File`` values written to ``store``
    first; the store's own error as it is, else ValueError saying what cannot be stored."""
    writer = _Writer(store, None)
    try:
        return model.model_dump(mode="json", context={WRITER: writer})
    except (ArtifactStoreError, ArtifactMissing):
        raise
    except (PydanticSerializationError, ValueError, TypeError) as e:
        if writer.failed is not None:
            raise writer.failed from None
        raise ValueError(_cause(e)) from None


def _cause(e: BaseException) -> str:
    text = str(e).split("\n", 1)[0]
    if "`: " in text:  # "Error calling function `<...>`: ValueError: ..."
        text = text.split("`: ", 1)[1]
    return text[:300]


def _hint(value: Any) -> str:
    if table_flavor(value) is not None:
        return "; annotate the field `Table` (from thodare_jupyter import Table)"
    if isinstance(value, bytes | bytearray):
        return "; annotate the field `File` (from thodare_jupyter import File)"
    return ""


def holds_table(value: Any) -> bool:
    """Whether an untyped output is a table, or a dict with a table as a value."""
    if table_flavor(value) is not None:
        return True
    return isinstance(value, dict) and any(table_flavor(v) is not None for v in value.values())


def store_untyped(value: Any, store: ArtifactStore | None, redact: Any = None) -> Any:
    """An untyped output with its tables (top level, or values of a dict) stored."""
    if store is None:
        return value
    if table_flavor(value) is not None:
        return store.put_table(value, redact)
    if isinstance(value, dict) and any(table_flavor(v) is not None for v in value.values()):
        return {
            k: store.put_table(v, redact) if table_flavor(v) is not None else v
            for k, v in value.items()
        }
    return value


def by_reference(value: Any, store: ArtifactStore | None) -> Any:
    """``value``, or a ``json`` reference to it when its JSON is over 256 KiB."""
    if store is None or store.json_by_reference is None or _small(value, store.json_by_reference):
        return value
    try:
        data = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
    except (TypeError, ValueError):
        return value  # untyped odd values: stored as before (text)
    if len(data) <= store.json_by_reference:
        return value
    return store.put_json(value, data)


def _small(value: Any, limit: int) -> bool:
    """True when ``value``'s JSON surely fits in ``limit`` bytes (at least 8 KiB), known
    without writing it: a scalar, or a dict or list of at most 64 numbers, booleans,
    nulls and strings (keys too) of at most ``limit // 1024`` characters, each at most
    6 bytes in JSON: 64 * (12 * limit / 1024 + 30) bytes at most."""
    if isinstance(value, _PLAIN):
        return True
    if limit < 8192 or not isinstance(value, (dict, list)) or len(value) > 64:
        return False
    cap = limit // 1024
    if isinstance(value, dict) and not all(isinstance(k, str) and len(k) <= cap for k in value):
        return False
    for v in value.values() if isinstance(value, dict) else value:
        if isinstance(v, str):
            if len(v) > cap:
                return False
        elif isinstance(v, int) and not isinstance(v, bool):
            if not -(1 << 63) <= v < 1 << 63:
                return False
        elif v is not None and not isinstance(v, (float, bool)):
            return False
    return True


def load_params(conn: Connector, raw: dict[str, Any], store: ArtifactStore | None) -> Any:
    """Raw params with the references in them loaded as the params model's fields ask."""
    if store is None or not has_ref(raw):
        return raw
    fields = {(f.alias or n): f for n, f in conn.params.model_fields.items()}
    out = {}
    for key, value in raw.items():
        f = fields.get(key)
        want = field_want(f.annotation, f.metadata) if f is not None else None
        out[key] = store.load_refs(value, want)
    return out


def typed_output(conn: Connector | None, stored: Any, store: ArtifactStore | None) -> Any:
    """A stored output with its model's types: tables as DataFrames (the flavor they
    were written in, or the one the field names), datetimes, Decimals... A dict keeps
    the keys the model does not declare; a value the model rejects stays as stored."""
    if store is not None and has_ref(stored):
        stored = _load_fields(conn, stored, store)
    if conn is None or conn.outputs is None or not isinstance(stored, dict):
        return stored
    adapters = _typed_adapters(conn)
    if not adapters:
        return stored
    out = dict(stored)
    for key, adapter in adapters.items():
        if key in out:
            try:
                out[key] = adapter.dump_python(adapter.validate_python(out[key]))
            except (ValidationError, ValueError, TypeError):
                continue
    return out


def _load_fields(conn: Connector | None, stored: Any, store: ArtifactStore) -> Any:
    if isinstance(stored, dict) and not stored.get("$artifact"):
        model = conn.outputs if conn is not None else None
        fields = {(f.alias or n): f for n, f in model.model_fields.items()} if model else {}
        out = {}
        for key, value in stored.items():
            f = fields.get(key)
            want = field_want(f.annotation, f.metadata) if f is not None else None
            out[key] = _load_value(value, want, store)
        return out
    loaded = store.load_refs(stored, None)
    return _load_fields(conn, loaded, store) if isinstance(loaded, dict) else loaded


def _load_value(value: Any, want: Any, store: ArtifactStore) -> Any:
    """An output field: a table in the flavor it was written in (unless the field says)."""
    if isinstance(value, dict) and value.get("kind") == "table" and has_ref(value):
        flavor: Flavor = value.get("flavor") or "pandas"
        return store.load(value, want or ("table", None), flavor)
    if isinstance(value, list) and want is not None and want[0] == "list":
        return [_load_value(v, want[1], store) for v in value]
    return store.load_refs(value, want)


def _typed_adapters(conn: Connector) -> dict[str, TypeAdapter[Any]]:
    """Adapters of the output fields whose Python value is not their JSON (cached)."""
    cached: dict[str, TypeAdapter[Any]] | None = conn.__dict__.get("_typed_output_adapters")
    if cached is None:
        from .connector import _field_type

        cached = {}
        assert conn.outputs is not None
        for name, f in conn.outputs.model_fields.items():
            if field_want(f.annotation, f.metadata) is None and not _json_native(f.annotation):
                cached[f.alias or name] = TypeAdapter(_field_type(f))
        conn.__dict__["_typed_output_adapters"] = cached
    return cached


def _json_native(annotation: Any) -> bool:
    """Whether values of ``annotation`` are the same in Python and in JSON."""
    if annotation in (*_PLAIN, Any, dict, list, None):
        return True
    origin = get_origin(annotation)
    if origin is Literal:
        return True
    if origin in (list, dict, Union, types.UnionType):
        return all(_json_native(a) for a in get_args(annotation))
    return False
