"""A run's artifacts as downloads: which ones a run references, and their bytes and headers.

Only an artifact that one of the run's step rows references can be downloaded
(an id alone opens nothing). A file goes out as stored, always as an attachment
(never rendered in Jupyter's origin); a table as CSV or as its Parquet file; a
big JSON output as JSON. Messages name the store by :func:`safe_url` only, and
the store's password and query values are masked out of any reason given.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, unquote, urlsplit

from ..artifacts import ArtifactStore
from ..data import ARTIFACT_KEY, is_ref
from ..errors import ArtifactMissing, ArtifactStoreError, ThodareError
from ..redaction import Redactor, safe_url

Format = Literal["csv", "parquet"]
FORMATS: tuple[Format, ...] = ("csv", "parquet")
_ID = re.compile(r"(?:sha256:)?([0-9a-f]{64})")
_MEDIA = re.compile(r"[A-Za-z0-9][\w.+-]{0,63}/[A-Za-z0-9][\w.+-]{0,127}")
_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f/\\]")
_MAX_NAME = 150
_MAX_DEPTH = 8


class NotInRun(ThodareError, LookupError):
    """The run's step rows reference no artifact with that id."""

    def __init__(self, run_id: str, artifact_id: str) -> None:
        self.run_id, self.artifact_id = run_id, artifact_id
        super().__init__(f"Run {run_id} has no artifact {artifact_id}.")


class NotServed(ThodareError):
    """A referenced artifact cannot be served as asked; ``status`` is the HTTP status to send.

    404: gone from the store; 503: the store cannot be read; 400: a format asked of
    something that is not a table; 422: a table CSV cannot hold (Parquet can).
    """

    def __init__(self, message: str, status: int) -> None:
        self.status = status
        super().__init__(message)


def artifact_id_of(raw: str) -> str | None:
    """``sha256:<64 hex>`` from the URL (also the bare hex); None when it cannot be an id."""
    m = _ID.fullmatch(raw)
    return f"sha256:{m[1]}" if m else None


@dataclass(frozen=True)
class Found:
    """An artifact reference found in a run: the reference and where (``block``, ``field``)."""

    ref: dict[str, Any]
    block: str
    field: str


def find_ref(outputs: list[tuple[str, Any]], artifact_id: str) -> Found | None:
    """The first reference to ``artifact_id`` in ``(block id, output)`` pairs, else None."""
    for block, output in outputs:
        for path, ref in _refs(output, ()):
            if ref[ARTIFACT_KEY] == artifact_id:
                return Found(ref, block, ".".join(path))
    return None


def _refs(value: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], dict[str, Any]]]:
    if is_ref(value):
        yield path, value
    elif len(path) >= _MAX_DEPTH:
        return
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _refs(v, (*path, str(k)))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _refs(v, (*path, str(i)))


@dataclass(frozen=True)
class Download:
    """What the route sends: the bytes, their media type and the file name."""

    data: bytes
    media_type: str
    filename: str

    @property
    def disposition(self) -> str:
        """``attachment`` with an ASCII ``filename`` and the exact UTF-8 ``filename*``."""
        plain = re.sub(r"[^A-Za-z0-9._ -]", "_", self.filename).strip(" .") or "download"
        return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(self.filename, safe='')}"

    def chunks(self, size: int = 64 << 10) -> Iterator[bytes]:
        """The bytes in pieces of ``size`` (the route flushes after each)."""
        view = memoryview(self.data)
        for i in range(0, len(view), size):
            yield bytes(view[i : i + size])


def download(store: ArtifactStore, found: Found, fmt: Format | None) -> Download:
    """The bytes of a referenced artifact as the route sends them.

    Raises:
        NotServed: The artifact is gone from the store, the store cannot be read, a
            format was asked of a file, or the table cannot be written as CSV.
    """
    ref, kind = found.ref, str(found.ref.get("kind"))
    artifact_id = str(ref[ARTIFACT_KEY])
    if fmt is not None and kind != "table":
        raise NotServed(f"format: only a table has formats; this artifact is a {kind}.", 400)
    stem = _name(f"{found.block}-{found.field}" if found.field else found.block)
    try:
        data = store.get(artifact_id, kind)
    except ArtifactMissing:
        where = safe_url(store.url)
        raise NotServed(
            f"Artifact {artifact_id} is not in the artifact store at {where} (pruned, or "
            "this server reads another store than the workers: set "
            "c.ThodareServer.artifacts_url or THODARE_ARTIFACTS).",
            404,
        ) from None
    except ArtifactStoreError as e:
        raise NotServed(_masked(str(e), store.url), 503) from None
    if kind == "table":
        if fmt == "parquet":
            return Download(data, "application/vnd.apache.parquet", f"{stem}.parquet")
        try:
            return Download(_csv(data), "text/csv; charset=utf-8", f"{stem}.csv")
        except Exception as e:  # an Arrow type CSV cannot hold
            why = f"{type(e).__name__}: {str(e)[:200]}"
            raise NotServed(f"This table cannot be written as CSV ({why}); ask for "
                            "?format=parquet.", 422) from None  # fmt: skip
    if kind == "file":
        name = _name(str(ref.get("name") or "")) or stem
        media = str(ref.get("media_type") or "")
        return Download(data, media if _MEDIA.fullmatch(media) else "application/octet-stream",
                        name)  # fmt: skip
    return Download(data, "application/json", f"{stem}.json")


def _name(raw: str) -> str:
    """A file name without directories or control characters, at most 150 characters."""
    name = _UNSAFE_NAME.sub("_", raw.replace("\\", "/").rsplit("/", 1)[-1]).strip()
    return "" if name in ("", ".", "..") else name[:_MAX_NAME]


def _csv(parquet: bytes) -> bytes:
    """A Parquet table as CSV: a header row; nested values as JSON text, bytes as base64,
    any other type Arrow cannot write as CSV as its Python text."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    table = pq.read_table(pa.BufferReader(parquet))
    for i, field in enumerate(table.schema):
        convert = _csv_text(field.type)
        if convert is not None:
            text = [None if v is None else convert(v) for v in table.column(i).to_pylist()]
            table = table.set_column(i, field.name, pa.array(text, pa.string()))
    sink = pa.BufferOutputStream()
    pacsv.write_csv(table, sink)
    return bytes(sink.getvalue().to_pybytes())


def _csv_text(type_: Any) -> Callable[[Any], str] | None:
    """How a value of Arrow type ``type_`` becomes CSV text; None: Arrow writes it as it is."""
    import pyarrow as pa

    t = pa.types
    if t.is_nested(type_):
        return lambda v: json.dumps(v, default=str, ensure_ascii=False)
    if t.is_binary(type_) or t.is_large_binary(type_) or t.is_fixed_size_binary(type_):
        return lambda v: base64.b64encode(v).decode()
    plain = (t.is_string(type_) or t.is_large_string(type_) or t.is_integer(type_)
             or t.is_floating(type_) or t.is_boolean(type_) or t.is_decimal(type_)
             or t.is_null(type_) or t.is_dictionary(type_) or t.is_timestamp(type_)
             or t.is_date(type_) or t.is_time(type_) or t.is_duration(type_))  # fmt: skip
    return None if plain else str


def _masked(message: str, url: str) -> str:
    """``message`` without the store URL's password or query values (as written or encoded)."""
    secrets: list[str] = []
    try:
        parts = urlsplit(url)
        secrets += [parts.password or ""]
        secrets += [v for _, _, v in (p.partition("=") for p in parts.query.split("&"))]
    except ValueError:
        pass
    secrets += [unquote(s) for s in secrets]
    return Redactor(secrets)(message.replace(url, safe_url(url)))
