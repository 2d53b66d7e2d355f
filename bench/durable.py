"""Benchmark (not a test): our durable runtime on SQLite vs DBOS Transact vs the disk's ceiling.

    .venv/bin/python bench/durable.py [--runs N] [--burst N] [--concurrency K] [--no-dbos]

Everything runs in this one process, on fresh SQLite files in a temp dir:

(a) latency: a 3-step sequential workflow of trivial steps, runs started one
    after another and each awaited; the median per run (and per step = /3).
    Ours is timed two ways: wall (``kit.run`` to ``result()``, which polls)
    and engine (the run row's created_at to ended_at).
(b) throughput: ``--burst`` runs started at once, time until all ended -> runs/s.
(c) the same two workloads with DBOS Transact (``pip install dbos``) on SQLite:
    ``@DBOS.workflow`` of three ``@DBOS.step`` calls, ``DBOS.start_workflow``
    then ``get_result()``. DBOS is run with its own SQLite defaults
    (rollback journal, synchronous FULL) and, to compare like with like, with
    the same WAL + synchronous setting as ours.
(d) the ceiling: single-row INSERT commits per second with sqlite3 on the same
    disk (WAL with synchronous FULL and NORMAL; rollback journal FULL). The
    ceiling column turns it into a bound for the workload: with W write
    commits per run (counted here for each engine) a run cannot take less than
    W commits and the disk cannot end more than rate / W runs a second.
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from thodare_jupyter import create_wfkit

# ── counting write transactions of any SQLAlchemy engine ──


class WriteCommits:
    """Counts commits of transactions that wrote (INSERT/UPDATE/DELETE), for every engine."""

    WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")

    def __init__(self) -> None:
        self.n = 0
        self._lock = threading.Lock()
        sa.event.listen(sa.engine.Engine, "before_cursor_execute", self._statement)
        sa.event.listen(sa.engine.Engine, "commit", self._commit)

    def _statement(self, conn: Any, _cur: Any, statement: str, *_: Any) -> None:
        if statement.lstrip()[:7].upper().startswith(self.WRITES):
            conn.info["thodare_bench_wrote"] = True

    def _commit(self, conn: Any) -> None:
        if conn.info.pop("thodare_bench_wrote", False):
            with self._lock:
                self.n += 1


COMMITS = WriteCommits()


# ── (d) the disk's ceiling ──


def commit_rate(path: Path, journal: str, sync: str, seconds: float = 1.5) -> float:
    """Single-row INSERT commits per second with sqlite3."""
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


# ── results ──


@dataclass
class Result:
    """One engine in one SQLite mode, over every repeat."""

    burst: int
    latency_ms: list[float] = field(default_factory=list)  # wall, per run
    engine_ms: list[float] = field(default_factory=list)  # created -> ended, per run
    burst_s: list[float] = field(default_factory=list)  # one per repeat
    writes: list[float] = field(default_factory=list)  # write commits per run, per repeat

    @property
    def median_ms(self) -> float:
        return statistics.median(self.latency_ms)

    @property
    def runs_per_s(self) -> float:
        return self.burst / statistics.median(self.burst_s)

    @property
    def writes_per_run(self) -> float:
        return statistics.mean(self.writes)

    def measure(
        self, runs: int, one: Callable[[int], float | None], many: Callable[[], None]
    ) -> None:
        """(a) ``runs`` awaited one by one after 5 warm-ups, then (b) one burst."""
        for i in range(5):
            one(-1 - i)
        before = COMMITS.n
        for i in range(runs):
            start = time.perf_counter()
            engine_s = one(i)
            self.latency_ms.append((time.perf_counter() - start) * 1000)
            if engine_s is not None:
                self.engine_ms.append(engine_s * 1000)
        self.writes.append((COMMITS.n - before) / runs)
        start = time.perf_counter()
        many()
        self.burst_s.append(time.perf_counter() - start)


# ── (a) + (b): ours ──


from workloads import INC, THREE  # noqa: E402


def bench_ours(db: Path, sync: str, runs: int, res: Result, concurrency: int) -> None:
    kit = create_wfkit(f"sqlite:///{db}", env={}, sqlite_sync=sync, concurrency=concurrency)
    kit.register(INC)
    with kit:

        def one(i: int) -> float:
            h = kit.run(THREE, {"n": i})
            assert h.result(timeout=60)["s3"] == {"n": i + 3}
            row = kit.store.get_run(h.id)
            assert row is not None and row.ended_at is not None
            return row.ended_at - row.created_at

        def many() -> None:
            handles = [kit.run(THREE, {"n": i}) for i in range(res.burst)]
            for i, h in enumerate(handles):
                assert h.result(timeout=300)["s3"] == {"n": i + 3}

        res.measure(runs, one, many)
    kit.store.dispose()


# ── (c): DBOS Transact ──

_DBOS_PRAGMAS: tuple[str, str] | None = None  # (journal_mode, synchronous) forced on DBOS's file


def _force_pragmas(dbapi_conn: Any, _rec: Any) -> None:
    if _DBOS_PRAGMAS is not None and isinstance(dbapi_conn, sqlite3.Connection):
        dbapi_conn.execute(f"PRAGMA journal_mode={_DBOS_PRAGMAS[0]}")
        dbapi_conn.execute(f"PRAGMA synchronous={_DBOS_PRAGMAS[1]}")


_DBOS_FNS: dict[str, Any] = {}


def _dbos_workflow() -> Any:
    """Register the DBOS workflow once (DBOS keeps a global registry)."""
    if "three" not in _DBOS_FNS:
        from dbos import DBOS

        @DBOS.step()
        def inc(n: int) -> int:
            return n + 1

        @DBOS.workflow()
        def three(n: int) -> int:
            return inc(inc(inc(n)))

        _DBOS_FNS["three"] = three
    return _DBOS_FNS["three"]


def bench_dbos(db: Path, pragmas: tuple[str, str] | None, runs: int, res: Result) -> None:
    global _DBOS_PRAGMAS
    from dbos import DBOS

    three = _dbos_workflow()
    _DBOS_PRAGMAS = pragmas
    DBOS(config={"name": "thodare-bench", "system_database_url": f"sqlite:///{db}",
                 "log_level": "ERROR"})  # fmt: skip
    try:
        DBOS.launch()

        def one(i: int) -> None:  # (DBOS's SQLite rows carry no usable end time)
            h = DBOS.start_workflow(three, i)
            assert h.get_result() == i + 3

        def many() -> None:
            handles = [DBOS.start_workflow(three, i) for i in range(res.burst)]
            for i, h in enumerate(handles):
                assert h.get_result() == i + 3

        res.measure(runs, one, many)
    finally:
        DBOS.destroy()
        _DBOS_PRAGMAS = None
    with sqlite3.connect(db) as con:  # what DBOS actually ran with
        mode = con.execute("PRAGMA journal_mode").fetchone()[0]
    expected = (pragmas[0] if pragmas else "delete").lower()
    assert mode.lower() == expected, f"DBOS file is in {mode} mode, expected {expected}"


# ── report ──


def fmt(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:,.{digits}f}"


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a is not None and b else "-"


def mode_rows(
    mode: str, ours: Result | None, theirs: Result | None, rate: float, burst: int
) -> list[list[str]]:
    """Table rows for one SQLite mode; the ceiling is for ours (DBOS's when ours did not run)."""
    base = ours or theirs
    if base is None:
        return []
    tag = f"[{'journal' if mode == 'DELETE/FULL' else 'WAL'} {mode.split('/')[-1]}]"
    who = "" if ours else " (DBOS)"
    floor_ms = base.writes_per_run / rate * 1000
    o_med = ours.median_ms if ours else None
    t_med = theirs.median_ms if theirs else None
    o_eng = statistics.median(ours.engine_ms) if ours and ours.engine_ms else None
    o_tp = ours.runs_per_s if ours else None
    t_tp = theirs.runs_per_s if theirs else None
    o_w = ours.writes_per_run if ours else None
    t_w = theirs.writes_per_run if theirs else None
    per_step = [None if x is None else x / 3 for x in (o_med, t_med)]
    return [
        [f"run latency, median ms {tag}", fmt(o_med), fmt(t_med), ratio(o_med, t_med),
         f">= {floor_ms:.2f} ms{who}"],
        [f"  per step ms (/3) {tag}", fmt(per_step[0]), fmt(per_step[1]), ratio(o_med, t_med),
         f">= {floor_ms / 3:.2f} ms{who}"],
        [f"  engine created->ended ms {tag}", fmt(o_eng), "-", "-", f">= {floor_ms:.2f} ms{who}"],
        [f"throughput, {burst} at once, runs/s {tag}", fmt(o_tp, 1), fmt(t_tp, 1),
         ratio(o_tp, t_tp), f"<= {rate / base.writes_per_run:,.0f} runs/s{who}"],
        [f"  write commits per run {tag}", fmt(o_w, 1), fmt(t_w, 1), ratio(o_w, t_w),
         f"{rate:,.0f} commits/s"],
    ]  # fmt: skip


def print_table(rows: list[list[str]]) -> None:
    headers = ["metric", "ours", "DBOS", "ours/DBOS", "ceiling (disk bound)"]
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    for r in [headers, ["-" * w for w in widths], *rows]:
        cells = zip(r, widths, strict=True)
        print("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(cells)))


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=50, help="sequential runs timed for latency")
    ap.add_argument("--burst", type=int, default=200, help="runs started at once")
    ap.add_argument("--concurrency", type=int, default=8, help="our worker's concurrency")
    ap.add_argument("--repeat", type=int, default=3, help="rounds; medians over all of them")
    ap.add_argument("--no-dbos", action="store_true", help="skip DBOS")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="thodare-bench-"))
    print(f"python {platform.python_version()}, sqlite {sqlite3.sqlite_version}, "
          f"{os.cpu_count()} cpus, files in {tmp}")  # fmt: skip
    dbos_error: str | None = None
    if args.no_dbos:
        dbos_error = "skipped (--no-dbos)"
    else:
        try:
            import dbos  # noqa: F401
        except ImportError as e:
            dbos_error = f"{type(e).__name__}: {e} (pip install dbos)"
        else:
            sa.event.listen(sa.engine.Engine, "connect", _force_pragmas)

    # mode -> (journal_mode, synchronous); ours has no rollback-journal mode
    modes = {"FULL": ("WAL", "FULL"), "NORMAL": ("WAL", "NORMAL"), "DELETE/FULL": None}
    rates: dict[str, list[float]] = {m: [] for m in modes}
    ours = {m: Result(args.burst) for m in modes if modes[m] is not None}
    theirs = {m: Result(args.burst) for m in modes}
    for rep in range(args.repeat):  # interleaved so drift of the disk hits both sides alike
        for mode, pragmas in modes.items():
            jm, sync = pragmas or ("DELETE", "FULL")
            tag = f"{mode}-{rep}".replace("/", "-")
            print(f"... repeat {rep + 1}/{args.repeat}, {jm} + synchronous={sync}", flush=True)
            rates[mode].append(commit_rate(tmp / f"ceiling-{tag}.db", jm, sync))
            if mode in ours:
                bench_ours(tmp / f"ours-{tag}.db", sync, args.runs, ours[mode], args.concurrency)
            if dbos_error is None:
                try:
                    bench_dbos(tmp / f"dbos-{tag}.db", pragmas, args.runs, theirs[mode])
                except Exception as e:  # say why, keep ours
                    dbos_error = f"{type(e).__name__}: {e}"
            rates[mode].append(commit_rate(tmp / f"ceiling-{tag}-after.db", jm, sync))
    ceilings = {m: statistics.median(r) for m, r in rates.items()}
    print("(d) ceiling, single-row INSERT commits/s (median; min-max): " + "; ".join(
        f"{m} {ceilings[m]:,.0f} ({min(r):,.0f}-{max(r):,.0f})" for m, r in rates.items()
    ))  # fmt: skip

    print()
    print_table([
        row for mode, rate in ceilings.items()
        for row in mode_rows(
            mode, ours.get(mode), theirs[mode] if theirs[mode].writes else None, rate, args.burst
        )
    ])  # fmt: skip
    print(
        f"\nours: worker concurrency {args.concurrency}. Latency: median of {args.runs} runs x "
        f"{args.repeat} rounds (5 warm-ups each); throughput: median round.\n"
        "Wall latency: run() to result() (woken in-process); engine = run row timestamps.\n"
        "ours/DBOS: below 1 is better for latency and commits, above 1 for throughput.\n"
        "ceiling: write commits per run (counted) at the sqlite3 commit rate of that mode."
    )
    if dbos_error:
        print(f"DBOS not measured (or not fully): {dbos_error}")


if __name__ == "__main__":
    main()
