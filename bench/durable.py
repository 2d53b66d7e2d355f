"""Benchmark (not a test): our durable runtime vs DBOS Transact, in-process, SQLite and PostgreSQL.

    .venv/bin/python bench/durable.py [--runs 200] [--burst 200] [--repeat 3]
                                      [--db sqlite,postgresql] [--pg URL] [--sqlite-modes FULL]
                                      [--concurrency 8] [--no-dbos]

The workload is ``workloads.THREE``: a 3-step sequential workflow of trivial steps. Ours is a
kit started in this process (``kit.run`` then ``handle.result()``); DBOS's is ``@DBOS.workflow``
of three ``@DBOS.step`` calls launched in this process (``DBOS.start_workflow`` then
``get_result()``). For each database and each of ``--repeat`` rounds (ours and DBOS
interleaved; medians are printed, with the range), on a fresh database each time:

(a) sequential: 5 warm-up runs, then ``--runs`` runs one after another, each awaited:
    runs/s over the whole loop, and the median latency of one run.
(b) at once: ``--burst`` runs started together, time until the last result is read: runs/s.
(c) SQL per run: SQLAlchemy events count, over each timed window (everything the runtime
    does then: creating the runs, claims, steps, finishing, the waiting caller's reads,
    pollers), the statements sent (BEGIN counted apart), commits, commits of transactions
    that wrote and waited for the disk, pool checkouts; divided by the runs. Ours: on the
    kit's engines (``kit.store.engine``, and its PostgreSQL engine for commits that do not
    wait). DBOS: on every SQLAlchemy engine (only DBOS runs during its window).
(d) the ceiling of each database, before and after each round (median): single-row INSERT
    commits per second on that database (SQLite: sqlite3 on a file in the same temp dir,
    same journal and synchronous mode; PostgreSQL: psycopg on 1 connection for (a) and
    ``--concurrency`` connections for (b)). The ceiling column turns it into a bound: with
    W durable write commits per run a run cannot need fewer than W commits, so the
    database cannot end more than rate / W runs a second.

Databases: ``sqlite``: fresh files in a temp dir. ``--sqlite-modes`` picks the modes: FULL
(WAL + synchronous=FULL: ours by default; DBOS forced to the same), NORMAL (WAL +
synchronous=NORMAL for both), DELETE (DBOS's own default, rollback journal + FULL; ours has
no such mode, so only DBOS). ``postgresql``: the server of ``--pg`` (default
``THODARE_TEST_PG`` or ``postgresql+psycopg://postgres@127.0.0.1:5432/test``; that database
is only used to create and drop others): a fresh database ``thodare_durable_<hex>`` with one
schema per round for ours, one database per round for DBOS, all dropped at the end. A
measurement during which PostgreSQL restarted is taken again.
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from harness import (
    DEFAULT_PG,
    WHAT_IS_COUNTED,
    Server,
    SqlCount,
    SqlCounter,
    dbos_burst,
    dbos_launched,
    dbos_missing,
    dbos_sequential,
    fmt,
    kit_engines,
    median,
    our_kit,
    ours_burst,
    ours_sequential,
    pg_commit_rate,
    print_table,
    ratio,
    spread,
    sqlite_commit_rate,
)

WARMUPS = 5

# ── one engine on one database ──


@dataclass
class Result:
    """One engine on one database, over every round."""

    latency_s: list[float] = field(default_factory=list)  # per sequential run
    seq_rate: list[float] = field(default_factory=list)  # runs/s, per round
    burst_rate: list[float] = field(default_factory=list)  # runs/s, per round
    seq_sql: list[SqlCount] = field(default_factory=list)  # per run, per round
    burst_sql: list[SqlCount] = field(default_factory=list)

    def measure(
        self,
        counter: SqlCounter,
        runs: int,
        burst: int,
        sequential: Callable[[int, int], list[float]],
        at_once: Callable[[int], float],
    ) -> None:
        """(a) then (b), counting (c) over each window."""
        try:
            sequential(WARMUPS, -WARMUPS)
            c0 = counter.snapshot()
            start = time.perf_counter()
            self.latency_s += sequential(runs, 0)
            self.seq_rate.append(runs / (time.perf_counter() - start))
            c1 = counter.snapshot()
            self.burst_rate.append(burst / at_once(burst))
            c2 = counter.snapshot()
        finally:
            counter.detach()
        self.seq_sql.append((c1 - c0).per(runs))
        self.burst_sql.append((c2 - c1).per(burst))


def sql_median(xs: list[SqlCount], attr: str) -> float | None:
    return median(getattr(x, attr) for x in xs)


def run_ours(url: str, sync: str, concurrency: int, runs: int, burst: int, res: Result) -> None:
    with our_kit(url, concurrency=concurrency, sqlite_sync=sync) as kit:
        res.measure(
            SqlCounter(kit_engines(kit)),
            runs,
            burst,
            lambda n, first: ours_sequential(kit, n, first),
            lambda n: ours_burst(kit, n),
        )


def run_dbos(url: str, pragmas: tuple[str, str] | None, runs: int, burst: int, res: Result) -> None:
    with dbos_launched(url, sqlite_pragmas=pragmas) as three:
        res.measure(
            SqlCounter([sa.engine.Engine]),  # only DBOS uses SQLAlchemy meanwhile
            runs,
            burst,
            lambda n, first: dbos_sequential(three, n, first),
            lambda n: dbos_burst(three, n),
        )


# ── the databases ──


@dataclass
class Case:
    """One database (and mode): how to get a fresh one per round for each engine, and its
    ceiling (commits/s) for a number of connections."""

    label: str
    ours_url: Callable[[int], str] | None  # round -> URL; None: ours does not run here
    dbos_url: Callable[[int], str]
    ceiling: Callable[[int, int], float]  # (round, connections) -> commits/s
    conns_burst: int  # connections the ceiling of (b) is measured with
    sync: str = "FULL"  # ours (SQLite)
    pragmas: tuple[str, str] | None = None  # forced on DBOS's SQLite connections
    measured: Callable[..., Any] = lambda _what, fn, *a: fn(*a)
    ours: Result = field(default_factory=Result)
    dbos: Result = field(default_factory=Result)
    rates: dict[int, list[float]] = field(default_factory=dict)  # connections -> commits/s

    def take_ceiling(self, rnd: int) -> None:
        for c in sorted({1, self.conns_burst}):
            rate = self.measured("the ceiling", self.ceiling, rnd, c)
            self.rates.setdefault(c, []).append(rate)


SQLITE_MODES = {  # mode -> (journal_mode, synchronous); DELETE: DBOS's own default, ours has none
    "FULL": ("WAL", "FULL"),
    "NORMAL": ("WAL", "NORMAL"),
    "DELETE": ("DELETE", "FULL"),
}


def sqlite_case(tmp: Path, mode: str) -> Case:
    jm, sync = SQLITE_MODES[mode]

    def ceiling(rnd: int, _conns: int) -> float:  # one writer at a time, whatever the conns
        return sqlite_commit_rate(tmp / f"ceiling-{mode}-{rnd}-{time.monotonic_ns()}.db", jm, sync)

    return Case(
        label=f"SQLite {jm} {sync}",
        ours_url=None if jm == "DELETE" else (lambda r: f"sqlite:///{tmp}/ours-{mode}-{r}.db"),
        dbos_url=lambda r: f"sqlite:///{tmp}/dbos-{mode}-{r}.db",
        ceiling=ceiling,
        conns_burst=1,
        sync=sync,
        pragmas=None if jm == "DELETE" else (jm, sync),
    )


def pg_case(server: Server, concurrency: int) -> Case:
    db = server.database()
    return Case(
        label="PostgreSQL",
        ours_url=lambda r: server.schema(db, f"ours_{r}"),
        dbos_url=lambda r: server.database(f"dbos_{r}", create=False),  # DBOS creates it
        ceiling=lambda _r, conns: pg_commit_rate(db, conns),
        conns_burst=concurrency,
        measured=server.measured,
    )


# ── report ──


def rows_for(case: Case, burst: int) -> list[list[str]]:
    o, d = case.ours, case.dbos
    base = o if o.seq_sql else d  # the ceiling bound uses ours' commits, DBOS's without ours
    rows: list[list[str]] = []
    for kind, conns in (("sequential", 1), (f"{burst} at once", case.conns_burst)):
        seq = kind == "sequential"
        o_rate = median(o.seq_rate if seq else o.burst_rate)
        d_rate = median(d.seq_rate if seq else d.burst_rate)
        counts = "seq_sql" if seq else "burst_sql"
        rate = median(case.rates.get(conns))
        w = sql_median(getattr(base, counts), "write_commits")
        bound = f"<= {rate / w:,.0f} runs/s" if rate and w else "-"
        rows.append([f"{case.label}: {kind}, runs/s",
                     fmt(o_rate) + spread(o.seq_rate if seq else o.burst_rate),
                     fmt(d_rate) + spread(d.seq_rate if seq else d.burst_rate),
                     ratio(o_rate, d_rate), bound])  # fmt: skip
        if seq:
            o_ms = median(o.latency_s)
            d_ms = median(d.latency_s)
            rows.append(["  run latency, median ms", fmt(o_ms and o_ms * 1000, 2),
                         fmt(d_ms and d_ms * 1000, 2), ratio(o_ms, d_ms),
                         f">= {w / rate * 1000:.2f} ms" if rate and w else "-"])  # fmt: skip
        for label, attr in (("statements per run (BEGIN apart)", "statements"),
                            ("BEGIN per run", "begins"),
                            ("commits per run", "commits"),
                            ("durable write commits per run", "write_commits"),
                            ("lazy write commits per run (no disk wait)", "lazy_commits"),
                            ("pool checkouts per run", "checkouts")):  # fmt: skip
            ov = sql_median(getattr(o, counts), attr)
            dv = sql_median(getattr(d, counts), attr)
            ceil = "-"
            if attr == "write_commits" and rate:
                ceil = f"{rate:,.0f} commits/s ({conns} conn)"
            rows.append([f"  {label}", fmt(ov), fmt(dv), ratio(ov, dv), ceil])
    return rows


def goals(cases: list[Case], burst: int) -> None:
    print("\ngoals (issue 14):")
    for case in cases:
        if not case.ours.seq_rate:
            continue
        o_, d_ = case.ours, case.dbos
        for kind, o, d in (("sequential", o_.seq_rate, d_.seq_rate),
                           (f"{burst} at once", o_.burst_rate, d_.burst_rate)):  # fmt: skip
            mo, md = median(o), median(d)
            if md is None or mo is None:
                print(f"  ----  {case.label}, {kind}: >= 3x DBOS's runs/s: DBOS not measured")
                continue
            ok = "PASS" if mo >= 3 * md else "MISS"
            print(f"  {ok}  {case.label}, {kind}: >= 3x DBOS's runs/s ({ratio(mo, md)})")
        st = sql_median(case.ours.seq_sql, "statements")
        bg = sql_median(case.ours.seq_sql, "begins") or 0.0
        ok = "PASS" if st is not None and st <= 8 else "MISS"
        print(f"  {ok}  {case.label}: <= 8 statements per sequential 3-step run "
              f"({fmt(st)} without BEGIN, {fmt(st and st + bg)} with it)")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=200, help="sequential runs per round")
    ap.add_argument("--burst", type=int, default=200, help="runs started at once")
    ap.add_argument("--repeat", type=int, default=3, help="rounds; medians over all of them")
    ap.add_argument("--db", default="sqlite,postgresql", help="databases: sqlite, postgresql")
    ap.add_argument("--pg", default=DEFAULT_PG, help="a PostgreSQL database to connect to")
    ap.add_argument("--sqlite-modes", default="FULL", help="FULL, NORMAL, DELETE (comma list)")
    ap.add_argument("--concurrency", type=int, default=8, help="our worker's concurrency")
    ap.add_argument("--no-dbos", action="store_true", help="skip DBOS")
    args = ap.parse_args()
    for name in ("runs", "burst", "repeat", "concurrency"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be 1 or more (got {getattr(args, name)})")
    dbs = [x.strip() for x in args.db.split(",") if x.strip()]
    dbos_error = dbos_missing(args.no_dbos)

    tmp = Path(tempfile.mkdtemp(prefix="thodare-durable-"))
    cases: list[Case] = []
    if "sqlite" in dbs:
        cases += [sqlite_case(tmp, m.strip().upper()) for m in args.sqlite_modes.split(",")]
    server: Server | None = None
    pg_info = ""
    if "postgresql" in dbs:
        try:
            server = Server(args.pg, prefix="thodare_durable")
            pg_info = f", PostgreSQL {server.version()} ({server.settings()})"
            cases.append(pg_case(server, args.concurrency))
        except Exception as e:
            print(f"PostgreSQL not measured: {type(e).__name__}: {e}")
    print(f"python {platform.python_version()}, sqlite {sqlite3.sqlite_version}{pg_info}, "
          f"{os.cpu_count()} cpus; files in {tmp}", flush=True)  # fmt: skip
    started = time.monotonic()
    try:
        for rnd in range(args.repeat):  # interleaved so drift hits both engines alike
            for case in cases:
                say = f"[{time.monotonic() - started:3.0f} s] round {rnd + 1}/{args.repeat}"
                print(f"{say}: {case.label}", flush=True)
                case.take_ceiling(rnd)
                if case.ours_url is not None:
                    case.measured("ours", lambda c=case, r=rnd: run_ours(
                        c.ours_url(r), c.sync, args.concurrency, args.runs, args.burst, c.ours
                    ))  # fmt: skip
                if dbos_error is None:
                    try:
                        case.measured("DBOS", lambda c=case, r=rnd: run_dbos(
                            c.dbos_url(r), c.pragmas, args.runs, args.burst, c.dbos
                        ))  # fmt: skip
                    except Exception as e:  # say why, keep ours
                        dbos_error = f"{type(e).__name__}: {e}"
                case.take_ceiling(rnd)
        print()
        print_table(
            ["metric", "ours", "DBOS", "ours/DBOS", "ceiling (commit rate)"],
            [row for case in cases for row in rows_for(case, args.burst)],
        )
        print(
            f"\nours: a kit in this process, worker concurrency {args.concurrency}; DBOS: "
            "DBOS.launch() in this process, DBOS.start_workflow + get_result.\n"
            f"sequential: {args.runs} runs one after another (after {WARMUPS} warm-ups); "
            f"at once: {args.burst} started together, until the last result is read.\n"
            f"Medians of {args.repeat} round(s) (range in brackets). ours/DBOS: above 1 is "
            "better for runs/s, below 1 for latency and SQL.\n"
            "ceiling: single-row INSERT commits/s on the same database (1 connection for "
            "sequential; for 'at once' PostgreSQL uses\nas many connections as our worker's "
            "concurrency) / durable write commits per run = the most runs/s the database "
            "allows.\n" + WHAT_IS_COUNTED
        )
        goals(cases, args.burst)
        if dbos_error:
            print(f"\nDBOS not measured (or not fully): {dbos_error}")
        print(f"\ntotal {time.monotonic() - started:.0f} s")
    finally:
        if server is not None:
            server.drop_all()


if __name__ == "__main__":
    main()
