"""The database under the durable runtime: engine set-up, migrations, transactions.

SQLite gets WAL, a busy timeout and ``BEGIN IMMEDIATE`` writes; PostgreSQL a
pool with pre-ping, an advisory lock around migrations, LISTEN/NOTIFY and
retries across a lost connection or a server restart.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple, Protocol, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError

from ..errors import BackendUnavailable, StoreRefused

log = logging.getLogger("thodare.store")
_MIGRATIONS = Path(__file__).parent / "migrations"

_TRANSIENT = (sa.exc.OperationalError, sa.exc.InterfaceError)
_F = TypeVar("_F", bound=Callable[..., Any])


class Ran(NamedTuple):
    """What a statement run by :meth:`Database.run` returned."""

    rows: list[tuple[Any, ...]]
    rowcount: int
    columns: tuple[str, ...]


class _OnDatabase(Protocol):
    db: Database


def retrying(fn: _F) -> _F:
    """PostgreSQL: ride out a lost connection or a server restart for ``outage_s``.

    Each call is one short transaction, so running it again is safe: writes are
    upserts or fenced, and a retried run creation keeps its id. Any other
    database error becomes :class:`StoreRefused`: the driver's statement and
    parameters never reach a run's error, a caller or a log.
    """

    @functools.wraps(fn)
    def wrapper(self: _OnDatabase, *args: Any, **kwargs: Any) -> Any:
        db = self.db
        delay, end = 0.05, time.monotonic() + db.outage_s
        while True:
            try:
                return fn(self, *args, **kwargs)
            except _TRANSIENT as e:
                if db.is_sqlite or time.monotonic() >= end:
                    raise BackendUnavailable(db.url, getattr(e, "orig", None) or e) from e
                log.warning("database unreachable (%s); retrying in %.2fs", e.orig, delay)
                time.sleep(delay)
                delay = min(2.0, delay * 2)
            except sa.exc.SQLAlchemyError as e:
                raise StoreRefused(e) from None

    return cast(_F, wrapper)


_LOCK_EVENT = sa.text("SELECT pg_advisory_xact_lock(7272, hashtext(:ns || '/' || :event))")
_WRITERS: dict[str, threading.RLock] = {}
_WRITERS_LOCK = threading.Lock()


def _sqlite_writer(url: str) -> threading.RLock:
    """The lock the write transactions of this process take on one SQLite file.

    SQLite lets one writer in at a time; a writer that finds the file locked
    sleeps in SQLite's busy handler (up to 100 ms a try), so threads of one
    process contending for it (a kit's ``run`` and its worker) would stall
    each other. They queue on this lock instead; other processes still meet
    SQLite's own lock.
    """
    key = str(sa.engine.make_url(url).database or ":memory:")
    if key != ":memory:":
        key = str(Path(key).expanduser().resolve())
    with _WRITERS_LOCK:
        return _WRITERS.setdefault(key, threading.RLock())


class Database:
    """One database URL and namespace: connections, migrations, notifications."""

    def __init__(
        self,
        url: str,
        namespace: str = "default",
        *,
        sqlite_sync: str = "FULL",
        outage_s: float = 60.0,
    ) -> None:
        self.url = url
        self.namespace = namespace
        self.outage_s = outage_s
        self.is_sqlite = url.startswith("sqlite")
        self._rendered: dict[Any, tuple[str, dict[str, Any]]] = {}  # see run()
        # SQLite: the connection of each kind of write (durable, lazy) stays checked out:
        # writes of this file take turns (the writer lock), so one of each serves them all
        # and a write skips the pool's checkout, reset and checkin
        self._held: dict[bool, Connection] = {}
        # PostgreSQL: one connection of each kind of write (durable or lazy, one statement
        # or more) stays checked out between writes: a sequential run's writes skip the
        # pool's checkout and checkin, and keep the statements they prepared
        self._idle: dict[tuple[bool, bool], list[Connection]] = {
            (lazy, single): [] for lazy in (False, True) for single in (False, True)
        }
        self.origin = uuid.uuid4().hex[:16]  # this store's NOTIFY payload: its listener skips them
        self._writer: contextlib.AbstractContextManager[Any] = (
            _sqlite_writer(url) if self.is_sqlite else contextlib.nullcontext()
        )
        try:
            self.engine = self._engine(url, sqlite_sync)
            self._lazy_engine = self.engine if self.is_sqlite else self._engine(url, lazy=True)
            # the same pools with each kind of transaction's options bound once (a
            # Connection.execution_options() per transaction costs a copy of the connection)
            self._writes = self.engine.execution_options(thodare_lazy=False)
            self._lazy_writes = self._lazy_engine.execution_options(thodare_lazy=True)
            self._reads = self.engine.execution_options(thodare_read=True)
            # PostgreSQL: a transaction of one statement, and a read (READ COMMITTED gives
            # each statement its own snapshot anyway), send no BEGIN (see _engine): the
            # statement is atomic alone, and BEGIN and COMMIT cost no round trip each
            self._one_writes, self._one_lazy_writes = self._writes, self._lazy_writes
            if not self.is_sqlite:
                auto = {"thodare_auto": True}
                self._one_writes = self._writes.execution_options(**auto)
                self._one_lazy_writes = self._lazy_writes.execution_options(**auto)
                self._reads = self._reads.execution_options(**auto)
            self._dbapi_error: type[Exception] = self.engine.dialect.loaded_dbapi.Error
            self.migrate()
            self.channel = self._channel()
            self.end_channel = f"{self.channel}_end" if self.channel else ""
        except ImportError as e:
            raise BackendUnavailable(
                url, f"{e}. For PostgreSQL: pip install 'thodare-jupyter[postgres]'"
            ) from None
        except (OperationalError, OSError, sa.exc.ArgumentError, sa.exc.NoSuchModuleError) as e:
            raise BackendUnavailable(url, getattr(e, "orig", None) or e) from None

    # ── connection setup ────────────────────────────────────────────────

    def _engine(self, url: str, sqlite_sync: str = "FULL", *, lazy: bool = False) -> Engine:
        if not self.is_sqlite:  # no pre-ping: a dead pooled connection fails once, then retrying
            args = {}
            if lazy:  # commits that do not wait for the disk; keeps the URL's own options
                given = sa.engine.make_url(url).query.get("options", "")
                given = " ".join(given) if isinstance(given, tuple) else given
                args["options"] = f"{given} -c synchronous_commit=off".strip()
            # every connection stays in autocommit (no switch per checkout and checkin); a
            # transaction sends its BEGIN, but for one statement or a read (thodare_auto).
            # psycopg's commit() and rollback() end a transaction so begun.
            pg = sa.create_engine(
                url, hide_parameters=True, connect_args=args, isolation_level="AUTOCOMMIT"
            )

            @sa.event.listens_for(pg, "begin")
            def _on_pg_begin(conn: Connection) -> None:
                opts = conn.get_execution_options()  # (a caller may ask for autocommit too)
                if opts.get("thodare_auto") or opts.get("isolation_level") == "AUTOCOMMIT":
                    return
                driver: Any = conn.connection.driver_connection
                try:
                    driver.execute("BEGIN")
                except pg.dialect.loaded_dbapi.Error as e:  # as SQLAlchemy raises it (retrying)
                    dead = pg.dialect.is_disconnect(e, driver, None)
                    if dead:
                        conn.invalidate(e)
                    raise sa.exc.DBAPIError.instance(
                        "BEGIN", None, e, pg.dialect.loaded_dbapi.Error,
                        connection_invalidated=dead, dialect=pg.dialect,
                    ) from e  # fmt: skip

            return pg
        path = sa.engine.make_url(url).database
        if path and path != ":memory:":
            Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            url,
            connect_args={"timeout": 30, "check_same_thread": False},
            hide_parameters=True,
        )

        @sa.event.listens_for(engine, "connect")
        def _on_connect(dbapi: Any, _rec: Any) -> None:
            dbapi.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={sqlite_sync}")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @sa.event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            opts = conn.get_execution_options()
            raw = conn.connection.driver_connection
            # no fsync of its own; the next durable commit syncs it (a held lazy writer's
            # connection stays so until it is closed)
            if opts.get("thodare_lazy") and not conn.connection.info.get("lazy"):
                raw.execute("PRAGMA synchronous=NORMAL")  # type: ignore[union-attr]
                conn.connection.info["lazy"] = True
            # on the driver's connection, like the PRAGMAs: the begin event counts it, and
            # it skips a pass through SQLAlchemy's statement path per transaction
            raw.execute("BEGIN" if opts.get("thodare_read") else "BEGIN IMMEDIATE")  # type: ignore[union-attr]

        @sa.event.listens_for(engine, "checkin")
        def _on_checkin(dbapi: Any, rec: Any) -> None:
            if rec.info.pop("lazy", False):
                dbapi.execute(f"PRAGMA synchronous={sqlite_sync}")

        return engine

    @contextlib.contextmanager
    def write(self, *, lazy: bool = False, single: bool = False) -> Iterator[Connection]:
        """A write transaction. ``lazy``: commit without waiting for the disk; for facts
        whose loss in a power cut is harmless (claims, heartbeats, step start markers).
        ``single``: the caller runs exactly one statement in it (PostgreSQL: autocommit)."""
        if single:
            engine = self._one_lazy_writes if lazy else self._one_writes
        else:
            engine = self._lazy_writes if lazy else self._writes
        if not self.is_sqlite:
            idle = self._idle[(lazy, single)]
            try:
                conn = idle.pop()
            except IndexError:  # in use by another thread: one from the pool
                conn = engine.connect()
            try:
                with conn.begin():
                    yield conn
            except BaseException:  # (the server restarted?) the pool knows a dead connection
                conn.close()
                self._release_idle()
                raise
            if idle:
                conn.close()
            else:
                idle.append(conn)
            return
        with self._writer:  # (a write inside a write of one thread would wait for itself)
            held = self._held.get(lazy)
            if held is None or held.closed or held.invalidated:
                held = self._held[lazy] = engine.connect()
            try:
                with held.begin():
                    yield held
            except BaseException:  # a commit that failed can leave the file's transaction open
                if cast(Any, held.connection.driver_connection).in_transaction:
                    held.invalidate()  # (closed: rolled back; the next write opens another)
                raise

    def run(self, c: Connection, statement: Any, params: dict[str, Any]) -> Ran:
        """Run a hot statement (a step write, a finish, a run's start, a claim) on the
        driver's cursor of ``c``, its SQL rendered once for this database: it skips
        SQLAlchemy's statement path (~80 µs a statement). Listeners of the engine's
        ``before_cursor_execute`` still hear it (the benches and tests count
        statements so); a driver error becomes SQLAlchemy's, as ``c.execute`` raises it."""
        sql, fixed = self._rendered.get(statement) or self._render(statement)
        args = {**fixed, **params} if fixed else params
        dispatch = c.dispatch.before_cursor_execute
        cur = c.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            if dispatch:
                dispatch(c, cur, sql, args, None, False)
            if self.is_sqlite:
                cur.execute(sql, args)
            else:  # planned once per connection: planning these costs more than running them
                cur.execute(sql, args, prepare=True)  # type: ignore[call-arg]
            desc = cur.description
            rows = cast(list[tuple[Any, ...]], cur.fetchall()) if desc else []
            return Ran(rows, cur.rowcount, tuple(d[0] for d in desc) if desc else ())
        except self._dbapi_error as e:  # a dropped connection: the rollback invalidates it
            raise sa.exc.DBAPIError.instance(
                sql, None, e, self._dbapi_error, hide_parameters=True, dialect=self.engine.dialect
            ) from e
        finally:
            cur.close()

    def _render(self, statement: Any) -> tuple[str, dict[str, Any]]:
        """A statement's SQL in the driver's own parameter style (SQLite: named), and the
        values of the literals SQLAlchemy made parameters of; kept for the next call."""
        dialect = self.engine.dialect
        if self.is_sqlite:  # named parameters: the driver takes the same dict
            dialect = cast(Any, type(dialect))(paramstyle="named")
        compiled = statement.compile(dialect=dialect)
        if "POSTCOMPILE" in compiled.string:  # a list parameter SQLAlchemy renders per call
            raise ValueError(f"Database.run cannot take a statement with a list: {compiled}")
        given = {name for b, name in compiled.bind_names.items() if b.required}
        fixed = {k: v for k, v in compiled.params.items() if k not in given}
        self._rendered[statement] = got = (str(compiled), fixed)
        return got

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        with self._reads.connect() as conn, conn.begin():
            yield conn

    @contextlib.contextmanager
    def _migration_lock(self) -> Iterator[None]:
        """Serialize migrations between processes starting at once."""
        if self.is_sqlite:
            path = sa.engine.make_url(self.url).database
            if not path or path == ":memory:":
                yield
                return
            with open(f"{Path(path).expanduser()}.migrate.lock", "w") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(fh, fcntl.LOCK_UN)
        else:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("SELECT pg_advisory_lock(727274)")
                try:
                    yield
                finally:
                    conn.exec_driver_sql("SELECT pg_advisory_unlock(727274)")
                    conn.commit()

    def schema_versions(self) -> list[str]:
        """The schema revision(s) the database records; none before the first migration."""
        try:
            with self.read() as c:
                found = c.exec_driver_sql("SELECT version_num FROM thodare_alembic_version").all()
        except sa.exc.DBAPIError:  # no table yet
            return []
        return [str(r[0]) for r in found]

    def _at_head(self) -> bool:
        """True when the schema is at the newest revision: then alembic is not even imported."""
        head = max(p.name.split("_", 1)[0] for p in (_MIGRATIONS / "versions").glob("[0-9]*.py"))
        return self.schema_versions() == [head]

    def migrate(self) -> None:
        """Bring the schema to the newest revision (safe when many processes start together)."""
        if self._at_head():
            return
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(_MIGRATIONS))
        with self._migration_lock(), self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def _channel(self) -> str:
        """The LISTEN/NOTIFY channel of this schema and namespace (PostgreSQL)."""
        if self.is_sqlite:
            return ""
        with self.read() as c:
            schema = c.exec_driver_sql("SELECT current_schema()").scalar()
        return "thodare_" + hashlib.sha1(f"{schema}/{self.namespace}".encode()).hexdigest()[:24]

    def lock_event(self, c: Connection, event: str) -> None:
        """PostgreSQL: hold ``event``'s lock until the transaction ends. Sending a signal
        and recording a step that waits for it take it, so one of them always sees the
        other: under READ COMMITTED a signal whose wake-up looked before the waiting
        step was committed, and that committed after the step looked for signals, would
        otherwise be lost. SQLite runs one writer at a time anyway."""
        if not self.is_sqlite:
            c.execute(_LOCK_EVENT, {"ns": self.namespace, "event": event})

    def announce_end(self, c: Connection, run_id: str) -> None:
        """Tell handles waiting in other processes that ``run_id`` ended (at commit)."""
        if not self.is_sqlite:
            c.execute(sa.select(sa.func.pg_notify(self.end_channel, run_id)))

    def notify(self, c: Connection) -> None:
        """Wake the workers listening on this namespace when the transaction commits."""
        if not self.is_sqlite:
            c.execute(sa.select(sa.func.pg_notify(self.channel, self.origin)))

    @property
    def engines(self) -> tuple[Engine, ...]:
        """Every engine this database uses (PostgreSQL: one more for lazy commits)."""
        return (
            (self.engine,) if self._lazy_engine is self.engine else (self.engine, self._lazy_engine)
        )

    def _release_idle(self) -> None:
        """Give the write connections kept checked out back to the pool."""
        for idle in self._idle.values():
            while idle:
                with contextlib.suppress(IndexError):
                    idle.pop().close()

    def dispose(self) -> None:
        """Close every pooled connection."""
        with self._writer:
            for held in self._held.values():
                held.close()
            self._held.clear()
        self._release_idle()
        self.engine.dispose()
        self._lazy_engine.dispose()
