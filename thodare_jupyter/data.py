"""``Table`` and ``File``: model fields that hold data frames and files.

A ``Table`` field holds a pandas or polars DataFrame or a pyarrow Table; a
``File`` field holds bytes or a path. In a step's outputs model they are
stored by content hash in the kit's artifact store and the step row keeps only
a JSON reference (``{"$artifact": "sha256:…", "kind": "table", ...}``). In a
params model they receive the loaded value: ``Table`` a pandas DataFrame,
``Table["polars"]`` a polars DataFrame, ``Table["pyarrow"]`` a pyarrow Table;
``File`` the bytes (a :class:`FileBytes`, with ``name`` and ``media_type``).

pandas, polars and pyarrow are imported only when a table is converted, so
importing this package never imports them.
"""

from __future__ import annotations

import math
import os
import types
from collections.abc import Mapping
from pathlib import Path
from typing import (
    TYPE_CHECKING,
    Annotated,
    Any,
    Generic,
    Literal,
    TypeVar,
    Union,
    get_args,
    get_origin,
)

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema, to_jsonable_python

if TYPE_CHECKING:
    import pyarrow as pa

Flavor = Literal["pandas", "polars", "pyarrow"]
_T = TypeVar("_T")
ARTIFACT_KEY = "$artifact"
PATH_KEY = "$path"
"""A reference reached through a template path (``{{query.rows.name}}``) keeps the rest here."""
WRITER = "thodare_artifact_writer"
"""The key of the serialization context that stores tables and files (see ``model_dump``)."""
_FLAVORS: dict[str, Flavor] = {
    "pandas": "pandas", "pd": "pandas", "polars": "polars", "pl": "polars",
    "pyarrow": "pyarrow", "arrow": "pyarrow", "pa": "pyarrow",
}  # fmt: skip
PREVIEW_ROWS = 5
_PREVIEW_TEXT = 200


def is_ref(value: Any) -> bool:
    """True for an artifact reference (a dict with a ``"$artifact"`` id)."""
    return isinstance(value, dict) and isinstance(value.get(ARTIFACT_KEY), str)


def table_flavor(value: Any) -> Flavor | None:
    """``pandas``, ``polars`` or ``pyarrow`` for a table of that library; else None."""
    cls = type(value)
    lib, name = cls.__module__.split(".", 1)[0], cls.__name__
    if name == "DataFrame" and lib in ("pandas", "polars"):
        return "pandas" if lib == "pandas" else "polars"
    if lib == "pyarrow" and name in ("Table", "RecordBatch"):
        return "pyarrow"
    return None


def is_file_value(value: Any) -> bool:
    """True for what a ``File`` holds: bytes, a bytearray or memoryview, or a path."""
    return isinstance(value, bytes | bytearray | memoryview | str | os.PathLike)


def to_arrow(value: Any) -> pa.Table:
    """A pandas/polars DataFrame or pyarrow Table (or RecordBatch) as a pyarrow Table."""
    import pyarrow as pa

    flavor = table_flavor(value)
    if flavor == "pandas":
        return pa.Table.from_pandas(value)
    if flavor == "polars":
        return value.to_arrow()
    if isinstance(value, pa.RecordBatch):
        return pa.Table.from_batches([value])
    if isinstance(value, pa.Table):
        return value
    raise TypeError(f"expected a pandas/polars DataFrame or a pyarrow Table, got {type(value)}")


def from_arrow(table: pa.Table, flavor: Flavor) -> Any:
    """A pyarrow Table as ``flavor``."""
    if flavor == "pandas":
        return table.to_pandas()
    if flavor == "polars":
        import polars as pl

        return pl.from_arrow(table)
    return table


def as_flavor(value: Any, flavor: Flavor | None) -> Any:
    """``value`` (a table) converted to ``flavor`` (None: as it is)."""
    if flavor is None or table_flavor(value) == flavor:
        return value
    return from_arrow(to_arrow(value), flavor)


def json_safe(value: Any, redact: Any = None) -> Any:
    """A preview cell as JSON: datetimes and decimals as text, NaN as null, long text cut,
    bytes as their size, strings masked by ``redact``."""
    if isinstance(value, bytes | bytearray):
        return f"<{len(value)} bytes>"
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v, redact) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v, redact) for v in value]
    if value is None or isinstance(value, bool | int):
        return value
    if not isinstance(value, str):
        value = to_jsonable_python(value, fallback=str)
        if not isinstance(value, str):
            return json_safe(value, redact)
    text = value if len(value) <= _PREVIEW_TEXT else value[: _PREVIEW_TEXT - 1] + "…"
    return redact(text) if redact is not None else text


def table_summary(table: pa.Table, redact: Any = None) -> dict[str, Any]:
    """``rows``, ``columns`` (name → Arrow type) and ``preview`` (first rows) of a table."""
    return {
        "rows": table.num_rows,
        "columns": {str(f.name): str(f.type) for f in table.schema},
        "preview": [json_safe(r, redact) for r in _head(table).to_pylist()],
    }


def _head(table: pa.Table) -> pa.Table:
    """The first rows (pyarrow slices a table of no columns to the length asked for)."""
    return table.slice(0, min(PREVIEW_ROWS, table.num_rows))


def flavor_name(flavor: Any) -> Flavor:
    """``"polars"``, ``pl.DataFrame``, ``pa.Table``... as a flavor name."""
    if isinstance(flavor, str) and flavor.lower() in _FLAVORS:
        return _FLAVORS[flavor.lower()]
    if isinstance(flavor, type):
        lib = flavor.__module__.split(".", 1)[0]
        if lib in _FLAVORS:
            return _FLAVORS[lib]
    raise TypeError(f"Table[{flavor!r}]: use Table['pandas'], Table['polars'] or Table['pyarrow'].")


class _Serialize:
    """In JSON mode, hands the value to the context's writer (the artifact store)."""

    def __init__(self, kind: Literal["table", "file"]) -> None:
        self.kind = kind

    def __call__(self, value: Any, info: core_schema.SerializationInfo) -> Any:
        if not info.mode_is_json() or is_ref(value):
            return value
        ctx = info.context
        writer = ctx.get(WRITER) if isinstance(ctx, dict) else None
        if writer is None:
            raise ValueError(
                f"a {self.kind.title()} is stored in an artifact store; none is configured here"
            )
        return writer.table(value) if self.kind == "table" else writer.file(value)


class _ValueSpec:
    """The pydantic schema of a ``Table`` or ``File`` field: :meth:`validate`, stored
    by reference when serialized (:class:`_Serialize`)."""

    kind: Literal["table", "file"]

    def validate(self, value: Any) -> Any:
        raise NotImplementedError

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> Any:
        return core_schema.no_info_plain_validator_function(
            self.validate,
            serialization=core_schema.plain_serializer_function_ser_schema(
                _Serialize(self.kind), info_arg=True
            ),
        )

    def __get_pydantic_json_schema__(
        self, schema: Any, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"type": "object", "title": self.kind.title(), "format": self.kind}


class TableSpec(_ValueSpec):
    """The pydantic schema of a ``Table`` field; ``flavor`` is what a param receives."""

    kind = "table"

    def __init__(self, flavor: Flavor | None = None) -> None:
        self.flavor = flavor

    def __repr__(self) -> str:
        return f"Table[{self.flavor!r}]" if self.flavor else "Table"

    def validate(self, value: Any) -> Any:
        if is_ref(value):
            return value
        if table_flavor(value) is None:
            raise ValueError(
                f"expected a pandas or polars DataFrame or a pyarrow Table, got "
                f"{type(value).__name__}"
            )
        return as_flavor(value, self.flavor)


class FileSpec(_ValueSpec):
    """The pydantic schema of a ``File`` field."""

    kind = "file"

    def validate(self, value: Any) -> Any:
        if is_ref(value):
            return value
        if isinstance(value, bytearray | memoryview):
            return bytes(value)
        if isinstance(value, str | os.PathLike):
            return Path(value)
        if isinstance(value, bytes):
            return value
        raise ValueError(f"expected bytes or a path, got {type(value).__name__}")


class Table(Generic[_T]):
    """A field holding a table (pandas or polars DataFrame, pyarrow Table), stored as Parquet.

    In an outputs model the table goes to the kit's artifact store and the step
    row keeps a reference with the row count, column types and first rows. In a
    params model the step receives the loaded table: ``Table`` gives a pandas
    DataFrame; ``Table[pl.DataFrame]`` a polars one; ``Table[pa.Table]`` a
    pyarrow Table (``Table["polars"]``, ``Table["pyarrow"]`` work too, but
    linters rewrite quoted names under ``from __future__ import annotations``).
    A value of another flavor is converted.

    Example::

        class QueryOut(BaseModel):
            rows: Table
    """

    def __class_getitem__(cls, flavor: Any) -> Any:
        return Annotated[Any, TableSpec(flavor_name(flavor))]

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> Any:
        return TableSpec().__get_pydantic_core_schema__(source, handler)

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: Any, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return TableSpec().__get_pydantic_json_schema__(schema, handler)


class File:
    """A field holding a file's content (bytes) or a path to one; stored by content hash.

    In a params model the step receives the bytes, as :class:`FileBytes`
    (``.name`` and ``.media_type`` from the reference).
    """

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> Any:
        return FileSpec().__get_pydantic_core_schema__(source, handler)

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: Any, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return FileSpec().__get_pydantic_json_schema__(schema, handler)


class FileBytes(bytes):
    """A loaded ``File``: its bytes, with the ``name`` and ``media_type`` it was stored with."""

    name: str | None = None
    media_type: str | None = None

    @classmethod
    def of(cls, data: bytes, name: str | None, media_type: str | None) -> FileBytes:
        out = cls(data)
        out.name, out.media_type = name, media_type
        return out


Want = tuple[str, Any]
"""What a field wants from a reference: ``("table", flavor)``, ``("file", None)``,
``("list", Want | None)``; None: a JSON value."""


def field_want(annotation: Any, metadata: Any = ()) -> Want | None:
    """:func:`want_of` for a pydantic field (which keeps ``Annotated`` extras in ``metadata``)."""
    for meta in metadata:
        if isinstance(meta, TableSpec):
            return ("table", meta.flavor)
        if isinstance(meta, FileSpec):
            return ("file", None)
    return want_of(annotation)


def want_of(annotation: Any) -> Want | None:
    """What a field annotated ``annotation`` wants loaded from a reference."""
    if annotation is Table:
        return ("table", None)
    if annotation is File:
        return ("file", None)
    origin = get_origin(annotation)
    if origin is Annotated:
        for meta in annotation.__metadata__:
            if isinstance(meta, TableSpec):
                return ("table", meta.flavor)
            if isinstance(meta, FileSpec):
                return ("file", None)
        return want_of(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        for arg in get_args(annotation):
            if arg is not type(None) and (found := want_of(arg)) is not None:
                return found
        return None
    if origin in (list, tuple) or annotation in (list, tuple):
        args = [a for a in get_args(annotation) if a is not Ellipsis]
        return ("list", want_of(args[0]) if args else None)
    return None
