"""The builtin ``sql`` block: one query through SQLAlchemy, its rows as a ``Table``.

``sql {query*, params, url: hidden}`` → ``{rows: Table, rowcount}``. The query
is ``sa.text(query)`` with ``params`` bound (``:name`` placeholders; values are
never pasted into the text). ``url`` defaults to ``env.THODARE_SQL_URL`` (the
run's env, then the process environment); it is hidden (the LLM neither sees
nor sets it), a secret of the run from the moment it is read (masked out of
every error and preview, its password too), and never in an output or an error.
A statement that returns no rows (INSERT, UPDATE, DDL) gives an empty table and
the number of rows it changed. The statement runs in its own transaction,
committed when it succeeds.

Engines are cached per URL, in process memory only (at most
:data:`MAX_ENGINES`, least recently used disposed first; all disposed at exit or
by :func:`dispose_engines`): a ``for_each`` over a ``sql`` step or a schedule
every minute then reuses a connection instead of paying a connect and a login
each time, and idle connections stay few (:data:`POOL_SIZE` per URL, a pre-ping
before reuse, recycled after :data:`POOL_RECYCLE_S`). SQLite files get no pool
at all: opening one costs microseconds, and a pooled connection would hold on
to a file that was replaced since.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, Field

from ..data import Table
from ..errors import QueryFailed
from .connector import Connector, define_connector
from .context import StepContext
from .visibility import Hidden

URL_ENV = "THODARE_SQL_URL"
MAX_ENGINES = 4
"""Engines kept at once (one per database URL)."""
POOL_SIZE = 2
"""Idle connections kept per URL; up to :data:`MAX_OVERFLOW` more while busy."""
MAX_OVERFLOW = 8
POOL_RECYCLE_S = 300


class SqlParams(BaseModel):
    query: str = Field(
        min_length=1, description="One SQL statement; write :name where a bound value goes."
    )
    params: dict[str, Any] | None = Field(
        default=None, description="Values for the query's :name placeholders (bound, not pasted)."
    )
    url: Hidden[str | None] = None


class SqlOut(BaseModel):
    rows: Table = Field(  # type: ignore[type-arg]  # Table[X] names a flavor
        description="The rows the statement returned (empty when none)."
    )
    rowcount: int = Field(description="Rows returned, else rows changed (0 when unknown).")


class _Engines:
    """SQLAlchemy engines by URL, least recently used disposed beyond ``limit`` (thread-safe)."""

    def __init__(self, limit: int = MAX_ENGINES) -> None:
        self.limit = limit
        self._by_url: OrderedDict[str, sa.Engine] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, url: str) -> sa.Engine:
        with self._lock:
            engine = self._by_url.get(url)
            if engine is not None:
                self._by_url.move_to_end(url)
                return engine
            engine = _create_engine(url)
            self._by_url[url] = engine
            evicted = []
            while len(self._by_url) > self.limit:
                evicted.append(self._by_url.popitem(last=False)[1])
        for old in evicted:
            old.dispose()
        return engine

    def dispose(self) -> None:
        with self._lock:
            engines = list(self._by_url.values())
            self._by_url.clear()
        for engine in engines:
            engine.dispose()

    def __len__(self) -> int:
        return len(self._by_url)


def _create_engine(url: str) -> sa.Engine:
    parsed = sa.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return sa.create_engine(parsed, poolclass=sa.pool.NullPool)
    return sa.create_engine(
        parsed,
        pool_size=POOL_SIZE,
        max_overflow=MAX_OVERFLOW,
        pool_pre_ping=True,
        pool_recycle=POOL_RECYCLE_S,
    )


ENGINES = _Engines()
atexit.register(ENGINES.dispose)


def dispose_engines() -> None:
    """Close every cached engine's connections (the next ``sql`` step opens new ones)."""
    ENGINES.dispose()


def _sql(p: SqlParams, ctx: StepContext) -> SqlOut:
    url = p.url or ctx.env.get(URL_ENV) or os.environ.get(URL_ENV)
    if not url:
        raise QueryFailed(
            ctx.block_id,
            f"no database URL: set {URL_ENV} in the run's env (or the process environment), "
            "or pass the block's url param (e.g. url: '{{env.SALES_DB}}')",
        )
    ctx.redactor.add(url)
    engine = _engine(url, ctx)
    dialect = engine.dialect.name
    try:
        conn = engine.connect()
    except sa.exc.SQLAlchemyError as e:
        raise QueryFailed(
            ctx.block_id, f"cannot connect to the {dialect} database: {_cause(e)}"
        ) from None
    try:
        with conn, conn.begin():
            result = conn.execute(sa.text(p.query), p.params or {})
            if result.returns_rows:
                keys, data = list(result.keys()), result.fetchall()
                count = len(data)
            else:
                keys, data, count = [], [], max(result.rowcount, 0)
    except sa.exc.SQLAlchemyError as e:
        raise QueryFailed(
            ctx.block_id, f"the {dialect} database refused the query: {_cause(e)}"
        ) from None
    ctx.log.info("sql on %s: %d row(s)", dialect, count)
    return SqlOut(rows=_frame(keys, data), rowcount=count)


def _engine(url: str, ctx: StepContext) -> sa.Engine:
    """The cached engine for ``url``; its password becomes a secret of the run first."""
    try:
        ctx.redactor.add(sa.make_url(url).password)
        return ENGINES.get(url)
    except sa.exc.NoSuchModuleError as e:  # an ArgumentError: first
        problem = f"the database URL names an unknown dialect or driver ({_cause(e)})"
    except sa.exc.ArgumentError:
        problem = (
            "the database URL is not one SQLAlchemy can read; write it as "
            "dialect+driver://user:password@host/database (sqlite:///path/to/file.db)"
        )
    except ImportError as e:
        problem = (
            f"the database driver is not installed ({type(e).__name__}: {e}); "
            "for PostgreSQL install psycopg and write postgresql+psycopg://..."
        )
    raise QueryFailed(ctx.block_id, problem) from None


def _cause(e: BaseException) -> str:
    """The database's own error, first line: no SQL echo, parameters or help link."""
    orig = getattr(e, "orig", None)
    source = orig if isinstance(orig, BaseException) else e
    try:
        text = source._message() if isinstance(source, sa.exc.SQLAlchemyError) else str(source)
    except Exception:
        text = ""
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if first.startswith("[SQL:") or first.startswith("(Background on this error"):
        first = ""
    if first.startswith("(") and ") " in first:  # "(sqlite3.OperationalError) no such table"
        first = first.split(") ", 1)[1]
    name = type(source).__name__
    return f"{name}: {first[:300]}" if first else name


def _frame(keys: Sequence[str], rows: Sequence[Sequence[Any]]) -> Any:
    """Rows as a pandas DataFrame, each column typed by Arrow from its values."""
    import pyarrow as pa

    names = _unique([str(k) for k in keys])
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in names]
    arrays = [_column(list(values)) for values in columns]
    return pa.Table.from_arrays(arrays, names=names).to_pandas()


def _column(values: list[Any]) -> Any:
    """An Arrow array of ``values``; a column Arrow cannot type as it is (SQLite lets a
    column mix ints and text) becomes float when all numbers, else text."""
    import pyarrow as pa

    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
        pass
    if all(v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in values):
        return pa.array([None if v is None else float(v) for v in values], pa.float64())
    return pa.array([None if v is None else _text(v) for v in values], pa.string())


def _text(value: Any) -> str:
    if isinstance(value, dict | list):
        try:
            return json.dumps(value, default=str)
        except (TypeError, ValueError):
            pass
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


def _unique(names: list[str]) -> list[str]:
    """Column names made unique (``id``, ``id_2``): a join's two ``id`` columns both stay."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        n = seen.get(name, 0) + 1
        seen[name] = n
        out.append(name if n == 1 else f"{name}_{n}")
    return out


SQL: Connector = define_connector(
    type="sql",
    name="SQL query",
    description=(
        "Run one SQL statement (SQLAlchemy; :name placeholders bound from params) on the "
        "database at env THODARE_SQL_URL; outputs its rows as a table and the row count."
    ),
    params=SqlParams,
    outputs=SqlOut,
    run=_sql,
)
