"""The artifact store: tables, files and large outputs by content hash, through fsspec.

A step's ``Table`` and ``File`` outputs, and any output whose JSON is over
256 KiB, are written here (tables as Parquet) and the step row keeps only a
JSON reference: ``{"$artifact": "sha256:…", "kind": "table", "rows": N,
"columns": {name: type}, "preview": [first rows]}`` (``kind`` ``file``: name,
size, media type; ``json``: size). An artifact's name is the SHA-256 of its
bytes, so the same content is stored once and a reference never goes stale
by a rewrite. Writes are atomic (a local file is written aside, synced, then
renamed), and happen before the step row that references them is committed.

fsspec and pyarrow are imported on first use.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .data import (
    ARTIFACT_KEY,
    PATH_KEY,
    FileBytes,
    Flavor,
    Want,
    from_arrow,
    is_ref,
    table_flavor,
    table_summary,
    to_arrow,
)
from .errors import ArtifactMissing, ArtifactStoreError
from .redaction import safe_url
from .templates import navigate

_EXT = {"table": ".parquet", "file": ".bin", "json": ".json"}
JSON_BY_REFERENCE = 256 * 1024
"""An output whose JSON is longer than this (bytes) is stored as an artifact."""


def _local(url: str) -> Path | None:
    if url.startswith("file://"):
        return Path(url[len("file://") :])
    if "://" not in url:
        return Path(url)
    return None


class ArtifactStore:
    """Content-addressed storage under one fsspec URL (a folder, ``s3://bucket/prefix``, ...).

    Args:
        url: A folder path or any fsspec URL (``file://``, ``s3://``, ``memory://``).
        json_by_reference: Outputs whose JSON is longer than this many bytes are
            stored here too (default 256 KiB); None keeps them inline.

    Thread-safe; cheap to create (nothing is opened until the first read or write).
    """

    def __init__(
        self, url: str | os.PathLike[str], *, json_by_reference: int | None = JSON_BY_REFERENCE
    ) -> None:
        text = os.fspath(url)
        self.json_by_reference = json_by_reference
        """Outputs whose JSON is longer (bytes) are stored here; None: never."""
        local = _local(text)
        self.url = str(local.expanduser().resolve()) if local is not None else text.rstrip("/")
        self._local = Path(self.url) if local is not None else None
        self._fs: Any = None
        self._root = ""
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<ArtifactStore {safe_url(self.url)}>"

    @property
    def is_local(self) -> bool:
        """True for a folder on this machine (other machines cannot read it)."""
        return self._local is not None or self.url.startswith(("memory://", "memory:"))

    def _filesystem(self) -> tuple[Any, str]:
        with self._lock:
            if self._fs is None:
                import fsspec

                try:
                    self._fs, self._root = fsspec.core.url_to_fs(self.url)
                except (ImportError, ValueError) as e:
                    raise ArtifactStoreError("open", self.url, e) from None
            return self._fs, self._root.rstrip("/")

    def _path(self, artifact_id: str, kind: str) -> str:
        digest = artifact_id.removeprefix("sha256:")
        if len(digest) != 64 or not all(c in "0123456789abcdef" for c in digest):
            raise ArtifactMissing(artifact_id[:80], self.url)
        rel = f"{digest[:2]}/{digest}{_EXT.get(kind, '.bin')}"
        if self._local is not None:
            return str(self._local / rel)
        return f"{self._filesystem()[1]}/{rel}"

    # ── bytes ──

    def put(self, data: bytes, kind: str) -> str:
        """Store ``data`` (once per content); its id, ``sha256:<hex>``. Durable on return."""
        artifact_id = "sha256:" + hashlib.sha256(data).hexdigest()
        path = self._path(artifact_id, kind)
        try:
            if self._local is not None:
                self._put_local(Path(path), data)
            else:
                fs, _ = self._filesystem()
                if not fs.exists(path):
                    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
                    fs.pipe_file(path, data)
        except OSError as e:
            raise ArtifactStoreError("write to", self.url, e) from None
        return artifact_id

    @staticmethod
    def _put_local(path: Path, data: bytes) -> None:
        if path.exists():
            os.utime(path)  # fresh again: an old copy is no orphan now
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)  # the rename survives a power cut before the step row lands
        finally:
            os.close(fd)

    def get(self, artifact_id: str, kind: str) -> bytes:
        """The bytes of an artifact; :class:`ArtifactMissing` when it is not there."""
        path = self._path(artifact_id, kind)
        try:
            if self._local is not None:
                data = Path(path).read_bytes()
            else:
                data = bytes(self._filesystem()[0].cat_file(path))
        except FileNotFoundError:
            raise ArtifactMissing(artifact_id, self.url) from None
        except OSError as e:
            raise ArtifactStoreError("read from", self.url, e) from None
        if "sha256:" + hashlib.sha256(data).hexdigest() != artifact_id:
            raise ArtifactStoreError(
                "read from", self.url, ValueError(f"artifact {artifact_id} is corrupt")
            )
        return data

    def exists(self, artifact_id: str, kind: str) -> bool:
        """Whether the artifact is in the store."""
        path = self._path(artifact_id, kind)
        if self._local is not None:
            return Path(path).exists()
        return bool(self._filesystem()[0].exists(path))

    def delete(self, artifacts: Iterable[tuple[str, str]]) -> int:
        """Delete ``(id, kind)`` artifacts; how many were there."""
        gone = 0
        for artifact_id, kind in artifacts:
            path = self._path(artifact_id, kind)
            try:
                if self._local is not None:
                    Path(path).unlink()
                else:
                    self._filesystem()[0].rm_file(path)
                gone += 1
            except FileNotFoundError:
                continue
            except OSError as e:
                raise ArtifactStoreError("delete from", self.url, e) from None
        return gone

    # ── values ──

    def put_table(self, value: Any, redact: Callable[[str], str] | None = None) -> dict[str, Any]:
        """Store a table as Parquet; its reference (rows, column types, first rows)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        flavor = table_flavor(value)
        table = to_arrow(value)
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        artifact_id = self.put(sink.getvalue().to_pybytes(), "table")
        return {ARTIFACT_KEY: artifact_id, "kind": "table", **table_summary(table, redact),
                "flavor": flavor}  # fmt: skip

    def put_file(self, value: Any, redact: Callable[[str], str] | None = None) -> dict[str, Any]:
        """Store a file (bytes, or the content of a path); its reference."""
        import mimetypes

        name: str | None = None
        if isinstance(value, str | os.PathLike):
            path = Path(value)
            name = path.name
            try:
                data = path.read_bytes()
            except OSError as e:
                raise ArtifactStoreError("read the file for", self.url, e) from None
        else:
            data = bytes(value)
            name = getattr(value, "name", None)
        if name and redact is not None:
            name = redact(name)
        media = (mimetypes.guess_type(name)[0] if name else None) or getattr(
            value, "media_type", None
        )
        artifact_id = self.put(data, "file")
        return {ARTIFACT_KEY: artifact_id, "kind": "file", "name": name, "size": len(data),
                "media_type": media or "application/octet-stream"}  # fmt: skip

    def put_json(self, value: Any, data: bytes | None = None) -> dict[str, Any]:
        """Store a JSON value (``data``: its encoding, when already made); its reference."""
        if data is None:
            data = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
        artifact_id = self.put(data, "json")
        shape: dict[str, Any] = {"size": len(data)}
        if isinstance(value, dict):
            shape["keys"] = [str(k) for k in list(value)[:50]]
            for key in ("branch", "result"):  # what routes the run's edges stays readable
                v = value.get(key)
                if isinstance(v, bool) or (isinstance(v, str) and len(v) <= 256):
                    shape[key] = v
        elif isinstance(value, list):
            shape["length"] = len(value)
        return {ARTIFACT_KEY: artifact_id, "kind": "json", **shape}

    def load(self, ref: dict[str, Any], want: Want | None = None, flavor: Flavor = "pandas") -> Any:
        """The value a reference stands for, as ``want`` asks (see :func:`data.field_want`).

        A table comes back as a DataFrame when a table is wanted (``flavor`` unless
        the field names one), else as a list of row dicts; ``$path`` (a template
        went further, ``{{query.rows.name}}``) picks a column (a list) or a row.
        """
        artifact_id, kind = str(ref[ARTIFACT_KEY]), str(ref.get("kind"))
        path = [str(p) for p in ref.get(PATH_KEY) or ()]
        if kind == "table":
            import pyarrow.parquet as pq

            table = pq.read_table(_buffer(self.get(artifact_id, kind)))
            if not path:
                if want is not None and want[0] == "table":
                    return from_arrow(table, want[1] or flavor)
                return table.to_pylist()
            if path[0] in table.column_names:
                return navigate(table.column(path[0]).to_pylist(), path[1:])
            if path[0].isdigit() and int(path[0]) < table.num_rows:
                return navigate(table.slice(int(path[0]), 1).to_pylist()[0], path[1:])
            return None
        data = self.get(artifact_id, kind)
        if kind == "file":
            if path:
                return None
            return FileBytes.of(data, ref.get("name"), ref.get("media_type"))
        value = navigate(json.loads(data), path)
        return self.load_refs(value, want, flavor)

    def load_refs(self, value: Any, want: Want | None = None, flavor: Flavor = "pandas") -> Any:
        """``value`` with every reference inside it loaded (a new value when any was)."""
        if is_ref(value):
            return self.load(value, want, flavor)
        if isinstance(value, list):
            inner = want[1] if want is not None and want[0] == "list" else None
            return [self.load_refs(v, inner, flavor) for v in value]
        if isinstance(value, dict):
            return {k: self.load_refs(v, None, flavor) for k, v in value.items()}
        return value


def _buffer(data: bytes) -> Any:
    import pyarrow as pa

    return pa.BufferReader(data)


def has_ref(value: Any, depth: int = 0) -> bool:
    """Whether ``value`` holds an artifact reference (looks 8 levels deep at most)."""
    if is_ref(value):
        return True
    if depth >= 8:
        return False
    if isinstance(value, dict):
        return any(has_ref(v, depth + 1) for v in value.values())
    if isinstance(value, list):
        return any(has_ref(v, depth + 1) for v in value)
    return False


def refs_in(value: Any) -> set[tuple[str, str]]:
    """Every ``(id, kind)`` referenced inside ``value``."""
    found: set[tuple[str, str]] = set()
    stack = [value]
    while stack:
        v = stack.pop()
        if is_ref(v):
            found.add((str(v[ARTIFACT_KEY]), str(v.get("kind"))))
        elif isinstance(v, dict):
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
    return found


def default_artifacts_url(db_url: str, data_dir: Path) -> str:
    """Beside a SQLite file (``runs.db.artifacts``); else a folder under ``data_dir``
    named for the database (machine-local)."""
    if db_url.startswith("sqlite"):
        path = db_url.split(":///", 1)[1] if ":///" in db_url else ""
        path = path.split("?", 1)[0]
        if path and path != ":memory:":
            return f"{path}.artifacts"
    tag = hashlib.sha256(safe_url(db_url).encode()).hexdigest()[:16]
    return str(data_dir / "artifacts" / tag)
