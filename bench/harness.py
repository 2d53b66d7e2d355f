"""The benchmarks' harness (imported by ``durable.py`` and ``scale.py``; measures nothing itself).

- tables: :func:`print_table` (a metric column, then right-aligned cells), :func:`fmt`,
  :func:`ratio`, :func:`spread`, :func:`pct`.
- counting: :class:`SqlCounter` counts, through SQLAlchemy's events, what the engines it
  is attached to send (BEGIN apart from the other statements, commits with and without
  writes, commits that did not wait for the disk, rollbacks, pool checkouts);
  :func:`kit_engines` finds a kit's engines.
- our runtime in this process: :func:`our_kit`, :func:`ours_sequential`, :func:`ours_burst`
  (the 3-step workflow of ``workloads.py``).
- DBOS Transact (``pip install dbos``): :func:`dbos_missing`, :func:`dbos_workflow` (the same
  3 steps), :func:`dbos_launched` (in this process, its system database at a URL, optional
  SQLite pragmas), :func:`dbos_sequential`, :func:`dbos_burst`, and :func:`dbos_worker`: a DBOS
  process serving a queue (this file run as ``harness.py dbos-worker URL EXECUTOR POLL LIMIT``).
- process trees: :class:`Proc` (a child that dies with its parent; ready line, SIGSTOP and
  SIGCONT, CPU time), :func:`procs`, :func:`serve_until_term`, :func:`machine_cpu`.
- PostgreSQL: :class:`Server` creates fresh databases (``<prefix>_<hex>[_suffix]``) and schemas
  and drops them all at the end; it notices a server restart during a measurement
  (:meth:`Server.measured` measures again). :class:`Sql` is one autocommit psycopg connection
  that reconnects.
- commit ceilings: :func:`sqlite_commit_rate` (sqlite3, one file), :func:`pg_commit_rate`
  (psycopg, N connections), :func:`pgbench_rate` (when ``pgbench`` is installed): single-row
  INSERT commits per second.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:  # ``workloads`` beside this file, however we were imported
    sys.path.insert(0, str(HERE))

from workloads import INC, THREE  # noqa: E402

THODARE = Path(sys.executable).parent / "thodare"
DEFAULT_PG = os.environ.get("THODARE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
DBOS_QUEUE = "thodare_bench"
T = TypeVar("T")


# ── tables ──


def fmt(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a is not None and b else "-"


def spread(xs: list[float] | None, digits: int = 0) -> str:
    """`` (min-max)`` of several measurements, empty for one."""
    return f" ({min(xs):,.{digits}f}-{max(xs):,.{digits}f})" if xs and len(xs) > 1 else ""


def median(xs: Iterable[float] | None) -> float | None:
    got = list(xs or ())
    return statistics.median(got) if got else None


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(p / 100 * len(s) + 0.5) - 1))]


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    """The first column left-aligned, the others right-aligned, a rule under the headers."""
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    for r in [headers, ["-" * w for w in widths], *rows]:
        cells = zip(r, widths, strict=True)
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(cells)))


# ── counting statements and commits (SQLAlchemy events) ──


@dataclass
class SqlCount:
    """What went through the counted engines (totals, or per run after :meth:`per`)."""

    begins: float = 0  # transactions begun (the ``begin`` event; SQLite's BEGIN text too)
    statements: float = 0  # every other statement sent (``before_cursor_execute``)
    commits: float = 0  # transactions committed (the ``commit`` event)
    write_commits: float = 0  # ... of which wrote (INSERT/UPDATE/DELETE) and waited for the disk
    lazy_commits: float = 0  # ... of which wrote without waiting (synchronous_commit off/NORMAL)
    rollbacks: float = 0  # transactions rolled back (read transactions may end so)
    checkouts: float = 0  # connections taken from the pool

    def __sub__(self, other: SqlCount) -> SqlCount:
        return SqlCount(*(getattr(self, f.name) - getattr(other, f.name) for f in fields(self)))

    def per(self, n: int) -> SqlCount:
        return SqlCount(*(getattr(self, f.name) / n for f in fields(self)))


WHAT_IS_COUNTED = (
    "SQL counted with SQLAlchemy events on the engines each runtime uses, over the whole timed "
    "window (creating the runs,\nclaims, steps, finishing, the waiting caller's reads, pollers "
    "and heartbeats), divided by the runs: 'statements' = every\nbefore_cursor_execute except "
    "BEGIN; 'BEGIN' = transactions begun (the begin event; not when the driver runs the\n"
    "statement in autocommit, as ours does on PostgreSQL for a write of one statement); "
    "'commits' = the commit event\n(such a statement commits alone: counted); 'durable write "
    "commits' = commits of transactions that ran INSERT/UPDATE/DELETE\nand waited for the disk "
    "(not synchronous_commit=off / SQLite synchronous=NORMAL). Statements sent outside "
    "SQLAlchemy\n(our LISTEN connection, SQLite PRAGMAs run on the raw connection) "
    "are not counted."
)

_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


class SqlCounter:
    """Counts on ``targets`` (engines, or ``sa.engine.Engine`` for every engine) until
    :meth:`detach`. Take :meth:`snapshot` before and after a window and subtract."""

    def __init__(self, targets: Iterable[Any]) -> None:
        self.targets = list(targets)
        self._n = SqlCount()
        self._lock = threading.Lock()
        self._hooks: list[tuple[Any, str, Callable[..., None]]] = []
        for t in self.targets:
            for name, fn in (("before_cursor_execute", self._statement), ("begin", self._begin),
                             ("commit", self._commit), ("rollback", self._rollback),
                             ("checkout", self._checkout)):  # fmt: skip
                sa.event.listen(t, name, fn)
                self._hooks.append((t, name, fn))

    def _add(self, name: str) -> None:
        with self._lock:
            setattr(self._n, name, getattr(self._n, name) + 1)

    def _statement(self, conn: Any, _cur: Any, statement: str, *_: Any) -> None:
        head = statement.lstrip()[:60].upper()
        if head.startswith("BEGIN"):  # SQLite's BEGIN [IMMEDIATE]: counted by _begin
            return
        self._add("statements")
        if head.startswith(_WRITES) or (head.startswith("WITH") and any(
            w in statement.upper() for w in _WRITES[:3]
        )):  # fmt: skip
            conn.info["bench_wrote"] = True
        if ("SYNCHRONOUS_COMMIT" in head and "OFF" in head) or "SYNCHRONOUS=NORMAL" in head:
            conn.info["bench_lazy"] = True

    def _begin(self, conn: Any) -> None:
        driver = conn.connection.driver_connection
        if getattr(driver, "autocommit", None) is True and not driver.info.transaction_status:
            return  # psycopg in autocommit, no BEGIN sent: the statement commits alone
        self._add("begins")

    def _commit(self, conn: Any) -> None:
        self._add("commits")
        lazy = conn.info.pop("bench_lazy", False) or bool(
            conn.get_execution_options().get("thodare_lazy")
        )
        if conn.info.pop("bench_wrote", False):
            self._add("lazy_commits" if lazy else "write_commits")

    def _rollback(self, conn: Any) -> None:
        self._add("rollbacks")
        conn.info.pop("bench_wrote", None)
        conn.info.pop("bench_lazy", None)

    def _checkout(self, *_: Any) -> None:
        self._add("checkouts")

    def snapshot(self) -> SqlCount:
        with self._lock:
            return SqlCount(*(getattr(self._n, f.name) for f in fields(self._n)))

    def detach(self) -> None:
        for t, name, fn in self._hooks:
            with contextlib.suppress(Exception):
                sa.event.remove(t, name, fn)
        self._hooks.clear()


def kit_engines(kit: Any) -> list[Any]:
    """Every SQLAlchemy engine a kit's store uses (PostgreSQL has a second one for
    commits that do not wait for the disk)."""
    return list(kit.store.engines)


# ── our runtime, in this process ──


@contextlib.contextmanager
def our_kit(url: str, *, concurrency: int = 8, sqlite_sync: str = "FULL", poll_s: float = 1.0,
            start: bool = True, artifacts: str | None = None) -> Iterator[Any]:  # fmt: skip
    """A kit on ``url`` with the bench connector, started (unless ``start`` is false);
    ``artifacts``: its artifact store's folder or URL (default: the kit's)."""
    from thodare_jupyter import create_wfkit

    kit = create_wfkit(url, env={}, concurrency=concurrency, sqlite_sync=sqlite_sync,
                       poll_s=poll_s, artifacts=artifacts)  # fmt: skip
    kit.register(INC)
    try:
        if start:
            kit.start()
        yield kit
    finally:
        kit.close()
        kit.store.dispose()


def ours_sequential(kit: Any, runs: int, first: int = 0) -> list[float]:
    """``runs`` 3-step runs one after another, each awaited; seconds per run."""
    out = []
    for i in range(first, first + runs):
        start = time.perf_counter()
        h = kit.run(THREE, {"n": i})
        assert h.result(timeout=60)["s3"] == {"n": i + 3}
        out.append(time.perf_counter() - start)
    return out


def ours_burst(kit: Any, runs: int) -> float:
    """``runs`` 3-step runs started at once; seconds until the last result is read."""
    start = time.perf_counter()
    handles = [kit.run(THREE, {"n": i}) for i in range(runs)]
    for i, h in enumerate(handles):
        assert h.result(timeout=300)["s3"] == {"n": i + 3}
    return time.perf_counter() - start


# ── DBOS Transact ──


def dbos_missing(skip: bool = False) -> str | None:
    """Why DBOS cannot be measured (None: it can)."""
    if skip:
        return "skipped (--no-dbos)"
    try:
        import dbos  # noqa: F401
    except ImportError as e:
        return f"{type(e).__name__}: {e} (pip install dbos, or the bench extra)"
    return None


_DBOS_FNS: dict[str, Any] = {}


def dbos_workflow() -> Any:
    """``bench_three``: three ``bench_inc`` steps (registered once: DBOS's registry is global)."""
    if "three" not in _DBOS_FNS:
        from dbos import DBOS

        @DBOS.step(name="bench_inc")
        def inc(n: int) -> int:
            return n + 1

        @DBOS.workflow(name="bench_three")
        def three(n: int) -> int:
            return inc(inc(inc(n)))

        _DBOS_FNS["three"] = three
    return _DBOS_FNS["three"]


_SQLITE_PRAGMAS: list[tuple[str, str] | None] = [None]  # forced on DBOS's SQLite connections


def _force_pragmas(dbapi_conn: Any, _rec: Any) -> None:
    p = _SQLITE_PRAGMAS[0]
    if p is not None and isinstance(dbapi_conn, sqlite3.Connection):
        dbapi_conn.execute(f"PRAGMA journal_mode={p[0]}")
        dbapi_conn.execute(f"PRAGMA synchronous={p[1]}")


@contextlib.contextmanager
def dbos_launched(url: str, *, executor: str | None = None,
                  sqlite_pragmas: tuple[str, str] | None = None) -> Iterator[Any]:  # fmt: skip
    """DBOS launched in this process with its system database at ``url`` (DBOS creates it);
    ``sqlite_pragmas``: (journal_mode, synchronous) forced on its SQLite connections
    (default: DBOS's own, a rollback journal). Yields the workflow; destroyed on exit."""
    from dbos import DBOS

    three = dbos_workflow()
    if sqlite_pragmas is not None and not sa.event.contains(
        sa.engine.Engine, "connect", _force_pragmas
    ):
        sa.event.listen(sa.engine.Engine, "connect", _force_pragmas)
    _SQLITE_PRAGMAS[0] = sqlite_pragmas
    config: dict[str, Any] = {"name": "thodare-bench", "system_database_url": url,
                              "log_level": "ERROR"}  # fmt: skip
    if executor:
        config["executor_id"] = executor
    DBOS(config=config)  # type: ignore[arg-type]
    try:
        DBOS.launch()
        yield three
    finally:
        DBOS.destroy()
        _SQLITE_PRAGMAS[0] = None


def dbos_sequential(three: Any, runs: int, first: int = 0) -> list[float]:
    """The same as :func:`ours_sequential` with ``DBOS.start_workflow`` and ``get_result``."""
    from dbos import DBOS

    out = []
    for i in range(first, first + runs):
        start = time.perf_counter()
        assert DBOS.start_workflow(three, i).get_result() == i + 3
        out.append(time.perf_counter() - start)
    return out


def dbos_burst(three: Any, runs: int) -> float:
    from dbos import DBOS

    start = time.perf_counter()
    handles = [DBOS.start_workflow(three, i) for i in range(runs)]
    for i, h in enumerate(handles):
        assert h.get_result() == i + 3
    return time.perf_counter() - start


def dbos_worker(url: str, executor: str, poll: float, per_worker: int | None) -> Proc:
    """A DBOS process serving :data:`DBOS_QUEUE` (polled every ``poll`` s, at most
    ``per_worker`` runs at once; None: DBOS's default, no limit)."""
    argv = [sys.executable, str(Path(__file__).resolve()), "dbos-worker", url, executor,
            str(poll), str(per_worker or 0)]  # fmt: skip
    return Proc(argv, "ready")


def _main_dbos_worker(url: str, executor: str, poll: float, per_worker: int | None) -> None:
    from dbos import DBOS

    dbos_workflow()
    DBOS(config={"name": "thodare-bench", "system_database_url": url, "log_level": "ERROR",
                 "executor_id": executor})  # fmt: skip
    DBOS.launch()
    DBOS.register_queue(DBOS_QUEUE, polling_interval_sec=poll, worker_concurrency=per_worker)
    serve_until_term(DBOS.destroy)


# ── process trees ──


def _die_with_parent() -> None:  # runs in the child before exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Proc:
    """A child process (started at once; :meth:`wait_ready` waits for its ready line) that
    is killed when this process dies; keeps its last output lines."""

    def __init__(self, argv: list[str], ready: str) -> None:
        self.argv, self.ready = argv, ready
        self.p = subprocess.Popen(
            argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            preexec_fn=_die_with_parent,
        )  # fmt: skip
        self.lines: deque[str] = deque(maxlen=40)
        self._ready = threading.Event()
        threading.Thread(target=self._drain, daemon=True).start()  # a full pipe would block it

    def wait_ready(self, timeout: float = 60) -> Proc:
        end = time.monotonic() + timeout
        while not self._ready.wait(0.05):
            if time.monotonic() > end or self.p.poll() is not None:
                self.stop()
                raise RuntimeError(
                    f"process did not start: {' '.join(self.argv)}\n" + "".join(self.lines)
                )
        return self

    def _drain(self) -> None:
        """Keep the last lines (and notice the ready line, whatever came before it)."""
        assert self.p.stdout is not None
        for line in self.p.stdout:
            self.lines.append(line)
            if self.ready in line:
                self._ready.set()

    def freeze(self) -> None:
        os.kill(self.p.pid, signal.SIGSTOP)
        end = time.monotonic() + 5
        while time.monotonic() < end:  # wait until it is really stopped
            with open(f"/proc/{self.p.pid}/stat") as fh:
                if fh.read().rsplit(")", 1)[1].split()[0] == "T":
                    return
            time.sleep(0.001)

    def thaw(self) -> None:
        os.kill(self.p.pid, signal.SIGCONT)

    def cpu_s(self) -> float:
        """CPU seconds (user + system) the process has used so far."""
        with open(f"/proc/{self.p.pid}/stat") as fh:
            stat = fh.read().rsplit(")", 1)[1].split()
        return (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.p.pid, signal.SIGCONT)
                self.p.terminate()
            try:
                self.p.wait(20)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()


@contextlib.contextmanager
def procs(make: Callable[[int], Proc], k: int) -> Iterator[list[Proc]]:
    """``k`` processes from ``make``, started together; all stopped on exit."""
    started: list[Proc] = []
    try:
        for i in range(k):
            started.append(make(i))
        for p in started:
            p.wait_ready()
        yield started
    finally:
        for p in started:
            p.stop()


def serve_until_term(stop: Callable[[], None]) -> None:
    """Print ``ready``, wait for SIGTERM or SIGINT, then ``stop()`` (a child's main loop)."""
    done = threading.Event()
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, lambda *_: done.set())
    print("ready", flush=True)
    while not done.wait(0.5):
        pass
    stop()


def machine_cpu() -> tuple[int, int]:
    """(busy, total) CPU jiffies of the whole machine so far, from /proc/stat."""
    with open("/proc/stat") as fh:
        ticks = [int(x) for x in fh.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    return sum(ticks) - idle, sum(ticks)


def busy_since(since: tuple[int, int]) -> float:
    """The share of the machine's CPU time in use (by anything) since ``machine_cpu()``."""
    busy, total = machine_cpu()
    return (busy - since[0]) / max(1, total - since[1])


# ── PostgreSQL ──


def dsn(url: str) -> str:
    """A libpq URI from a SQLAlchemy URL (``+psycopg`` dropped, query kept)."""
    return re.sub(r"^postgresql\+\w+://", "postgresql://", url)


def with_db(url: str, database: str) -> str:
    return sa.engine.make_url(url).set(database=database).render_as_string(hide_password=False)


def with_schema(url: str, schema: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"


class Sql:
    """One autocommit psycopg connection that reconnects (for up to a minute) when the
    server goes away: other processes on this machine may restart PostgreSQL."""

    def __init__(self, url: str) -> None:
        self.dsn = dsn(url)
        self.conn: Any = None

    def __call__(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        import psycopg

        end = time.monotonic() + 60
        while True:
            try:
                if self.conn is None or self.conn.closed:
                    self.conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=5)
                cur = self.conn.execute(sql, args or None)
                return cur.fetchall() if cur.description else []
            except psycopg.OperationalError:
                self.close()
                if time.monotonic() > end:
                    raise
                time.sleep(0.5)

    def close(self) -> None:
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
            self.conn = None


class Server:
    """Creates the bench's databases (``<prefix>_<hex>[_suffix]``) on the server of ``base``
    (which is only used to connect) and drops them all in :meth:`drop_all`."""

    def __init__(self, base: str, prefix: str = "thodare_bench") -> None:
        self.base = base
        self.admin = Sql(base)
        self.admin("SELECT 1")
        self.tag = f"{prefix}_{uuid.uuid4().hex[:10]}"
        self.made: list[str] = []

    def database(self, suffix: str = "", create: bool = True) -> str:
        """A fresh database's URL (``create=False``: only its name, dropped at the end too:
        for DBOS, which creates its system database itself)."""
        name = self.tag + (f"_{suffix}" if suffix else "")
        self.made.append(name)
        if create:
            self.admin(f'CREATE DATABASE "{name}"')
        return with_db(self.base, name)

    def schema(self, db: str, prefix: str) -> str:
        """A fresh schema ``<prefix>_<hex>`` in database ``db``: the URL that uses it."""
        name = f"{prefix}_{uuid.uuid4().hex[:6]}"
        q = Sql(db)
        try:
            q(f"CREATE SCHEMA {name}")
        finally:
            q.close()
        return with_schema(db, name)

    def settings(self) -> str:
        names = ("fsync", "synchronous_commit", "wal_sync_method", "commit_delay")
        rows = self.admin("SELECT name, setting FROM pg_settings WHERE name = ANY(%s)", list(names))
        return ", ".join(f"{k}={v}" for k, v in sorted(rows))

    def version(self) -> str:
        return str(self.admin("SHOW server_version")[0][0])

    def started_at(self) -> Any:
        """When the server (re)started: a change means a restart during a measurement."""
        return self.admin("SELECT pg_postmaster_start_time()")[0][0]

    def measured(self, what: str, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)``, measured again when PostgreSQL restarted meanwhile (other processes
        on this machine may restart it; a restart invalidates the timing)."""
        for attempt in range(4):
            if attempt:
                time.sleep(3)
            before = self.started_at()
            try:
                value = fn(*args)
            except Exception:
                if self.started_at() == before:
                    raise
            else:
                if self.started_at() == before:
                    return value
            print(f"    PostgreSQL restarted during {what}; measuring again", flush=True)
        raise RuntimeError(f"PostgreSQL kept restarting during {what}")

    def drop_all(self) -> None:
        for name in reversed(self.made):
            try:
                self.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            except Exception as e:
                print(f"could not drop database {name}: {e}", file=sys.stderr)
        self.admin.close()


# ── commit ceilings: single-row INSERT commits per second ──


def sqlite_commit_rate(path: Path, journal: str, sync: str, seconds: float = 1.5) -> float:
    """With sqlite3 on a new file ``path`` (journal_mode ``journal``, synchronous ``sync``)."""
    con = sqlite3.connect(path, isolation_level=None)
    try:
        con.execute(f"PRAGMA journal_mode={journal}")
        con.execute(f"PRAGMA synchronous={sync}")
        con.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        n, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            con.execute("BEGIN IMMEDIATE")
            con.execute("INSERT INTO t (v) VALUES (?)", ("x" * 200,))
            con.execute("COMMIT")
            n += 1
        return n / elapsed
    finally:
        con.close()


def pg_commit_rate(db: str, clients: int, seconds: float = 2.0) -> float:
    """With ``clients`` psycopg connections (one thread each) into table ``ceiling_t`` of ``db``."""
    import psycopg

    q = Sql(db)
    q("CREATE TABLE IF NOT EXISTS ceiling_t (id bigserial PRIMARY KEY, v text)")
    q.close()
    counts = [0] * clients
    errors: list[BaseException] = []
    go = threading.Barrier(clients + 1, timeout=30)
    stop = threading.Event()

    def loop(i: int) -> None:
        try:
            with psycopg.connect(dsn(db)) as conn:
                go.wait()
                while not stop.is_set():
                    conn.execute("INSERT INTO ceiling_t (v) VALUES (%s)", ("x" * 200,))
                    conn.commit()
                    counts[i] += 1
        except BaseException as e:  # raised again in the caller
            errors.append(e)
            go.abort()

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    with contextlib.suppress(threading.BrokenBarrierError):
        go.wait()
    start = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return sum(counts) / (time.perf_counter() - start)


def pgbench_rate(db: str, clients: int, seconds: int = 4) -> float | None:
    """``pgbench -f`` with a one-INSERT script (run :func:`pg_commit_rate` first: it makes
    the table); None when pgbench is not installed or failed."""
    exe = shutil.which("pgbench")
    if exe is None:
        return None
    u = sa.engine.make_url(db)
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as fh:
        fh.write("INSERT INTO ceiling_t (v) VALUES (repeat('x', 200));\n")
    try:
        res = subprocess.run(
            [exe, "-n", "-f", fh.name, "-c", str(clients), "-j", str(min(clients, 2)),
             "-T", str(seconds), "-h", u.host or "127.0.0.1", "-p", str(u.port or 5432),
             "-U", u.username or "postgres", u.database or ""],
            capture_output=True, text=True, timeout=seconds + 30,
            env={**os.environ, "PGPASSWORD": u.password or ""},
        )  # fmt: skip
    finally:
        os.unlink(fh.name)
    m = re.search(r"tps = ([\d.]+) \(without initial", res.stdout)
    if m is None:
        print(f"    pgbench failed: {(res.stderr or res.stdout).strip()[-300:]}", flush=True)
    return float(m.group(1)) if m else None


if __name__ == "__main__":
    if len(sys.argv) == 6 and sys.argv[1] == "dbos-worker":
        _main_dbos_worker(sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5]) or None)
    else:
        sys.exit(f"usage: {sys.argv[0]} dbos-worker URL EXECUTOR POLL LIMIT (0: none)")
