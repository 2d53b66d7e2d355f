"""Benchmark (not a test): our process's CPU time per durable run, by thread, with a profile.

    .venv/bin/python bench/cpu.py [--runs 300] [--repeat 3] [--db sqlite,postgresql]
                                  [--pg URL] [--dbos] [--burst] [--profile] [--top 30]
                                  [--sort tottime] [--thread NAME]

Wall-clock runs/s swing with whatever else the machine runs; CPU time per run much less,
so this is the figure to compare before and after a change of the runtime (a loaded machine
still inflates it a little: compare rounds taken at the same time). For each
database, ``--repeat`` rounds (the median is printed, with every round's CPU figure), each
on a fresh database: a kit in this process (``harness.our_kit``), 20 warm-up runs of
``workloads.THREE``, then ``--runs`` sequential runs (``kit.run`` then ``result()``; with
``--burst``: started at once, then every result read), and:

- CPU ms per run: ``time.process_time()`` over the loop (every thread of this process)
  / runs, and per thread (Linux: ``/proc/self/task/<tid>/stat``, named by ``threading``);
- wall ms per run, and statements / commits per run (``harness.SqlCounter``);
- ``--profile``: cProfile in every thread, timed by each thread's CPU clock (each
  thread's profile starts with it: the kit is started under the profile), merged
  (``--thread``: only the threads whose name has it); the top ``--top`` by ``--sort``;
  and the Python function calls per run over the loop: a figure a loaded machine does
  not change.
  Profiling slows everything down; its CPU figures are not the unprofiled ones.

``--dbos``: the same for DBOS Transact (``harness.dbos_launched``, SQLite in WAL FULL mode).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import os
import pstats
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from harness import (
    DEFAULT_PG,
    Server,
    SqlCounter,
    dbos_burst,
    dbos_launched,
    dbos_sequential,
    kit_engines,
    our_kit,
    ours_burst,
    ours_sequential,
)

WARMUPS = 20
_TICK = os.sysconf("SC_CLK_TCK")


def thread_cpu() -> dict[str, float]:
    """CPU seconds of each live thread of this process, by thread name, user and
    system apart (Linux)."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, float] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:  # ended meanwhile
            continue
        name = names.get(int(tid), "other")
        name = name.rsplit("_", 1)[0] if name.startswith("thodare-") else name
        for kind, ticks in (("user", fields[11]), ("sys", fields[12])):
            key = f"{name} {kind}"
            out[key] = out.get(key, 0.0) + int(ticks) / _TICK
    return out


_PROFILES: list[tuple[str, cProfile.Profile]] = []


def profile_threads() -> Callable[[], None]:
    """Profile every thread started from now on (and this one); returns ``stop``."""
    original = threading.Thread.run

    def run(self: threading.Thread) -> None:
        prof = cProfile.Profile(time.thread_time)
        _PROFILES.append((self.name, prof))
        prof.enable()
        try:
            original(self)
        finally:
            prof.disable()

    threading.Thread.run = run  # type: ignore[method-assign]
    main = cProfile.Profile(time.thread_time)
    _PROFILES.append(("MainThread", main))
    main.enable()

    def stop() -> None:
        main.disable()
        threading.Thread.run = original  # type: ignore[method-assign]

    return stop


def measure(url: str, runs: int, profile: bool, dbos: bool, burst: bool) -> dict[str, Any]:
    stop = profile_threads() if profile else None
    counter = SqlCounter([])
    try:
        with contextlib.ExitStack() as stack:
            if dbos:
                three = stack.enter_context(dbos_launched(url, sqlite_pragmas=("WAL", "FULL")))
                counter = SqlCounter([sa.engine.Engine])

                def sequential(n: int, first: int = 0) -> Any:
                    return dbos_sequential(three, n, first)

                def at_once(n: int) -> Any:
                    return dbos_burst(three, n)
            else:
                kit = stack.enter_context(our_kit(url))
                counter = SqlCounter(kit_engines(kit))

                def sequential(n: int, first: int = 0) -> Any:
                    return ours_sequential(kit, n, first)

                def at_once(n: int) -> Any:
                    return ours_burst(kit, n)

            sequential(WARMUPS, -WARMUPS)
            c0, t0, n0 = counter.snapshot(), thread_cpu(), calls()
            w0, p0 = time.perf_counter(), time.process_time()
            at_once(runs) if burst else sequential(runs)
            p1, w1 = time.process_time(), time.perf_counter()
            t1, c1, n1 = thread_cpu(), counter.snapshot(), calls()
    finally:
        counter.detach()  # once the kit is closed: no thread of it is sending SQL
        if stop is not None:
            stop()
    threads = {k: (t1.get(k, 0.0) - t0.get(k, 0.0)) * 1000 / runs for k in t1}
    return {
        "cpu_ms": (p1 - p0) * 1000 / runs,
        "wall_ms": (w1 - w0) * 1000 / runs,
        "threads": {k: v for k, v in sorted(threads.items(), key=lambda kv: -kv[1]) if v > 0},
        "sql": (c1 - c0).per(runs),
        "calls": (n1 - n0) / runs,
    }


def calls() -> int:
    """Python function calls so far in every profiled thread (0 without ``--profile``):
    unlike CPU time, the same on a busy machine."""
    return sum(e.callcount for _, p in _PROFILES for e in p.getstats())


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--repeat", type=int, default=3, help="rounds, each on a fresh database")
    ap.add_argument("--db", default="sqlite,postgresql")
    ap.add_argument("--pg", default=DEFAULT_PG)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--burst", action="store_true", help="the runs started at once, not one by one")
    ap.add_argument("--dbos", action="store_true", help="DBOS instead of ours (SQLite WAL FULL)")
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--sort", default="tottime")
    ap.add_argument("--thread", default="", help="--profile only threads whose name has this")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="thodare-cpu-")
    server: Server | None = None
    try:
        for db in [d.strip() for d in args.db.split(",") if d.strip()]:
            if db != "sqlite":
                server = server or Server(args.pg, prefix="thodare_cpu")
            fresh = fresh_url(db, tmp, server, args.dbos)
            _PROFILES.clear()
            rounds = [measure(fresh(), args.runs, args.profile, args.dbos, args.burst)
                      for _ in range(args.repeat)]  # fmt: skip
            report(f"{'DBOS' if args.dbos else 'ours'}, {db}", rounds, args)
    finally:
        if server is not None:
            server.drop_all()


def fresh_url(db: str, tmp: str, server: Server | None, dbos: bool) -> Callable[[], str]:
    """A fresh database for each round: a SQLite file; on PostgreSQL a database (DBOS)
    or a schema (ours)."""
    if server is None:
        return lambda: f"sqlite:///{tmp}/cpu-{time.monotonic_ns()}.db"
    if dbos:
        return lambda: server.database(f"dbos_{time.monotonic_ns()}", create=False)
    ours = server.database()
    return lambda: server.schema(ours, "ours")


def report(label: str, rounds: list[dict[str, Any]], args: argparse.Namespace) -> None:
    got = sorted(rounds, key=lambda r: r["cpu_ms"])[len(rounds) // 2]  # the median
    s = got["sql"]
    cpu = ", ".join(f"{r['cpu_ms']:.2f}" for r in rounds)
    kind = "runs at once" if args.burst else "sequential runs"
    print(f"{label}: {got['cpu_ms']:.2f} CPU ms/run [rounds: {cpu}] "
          f"(wall {got['wall_ms']:.2f} ms/run), {s.statements:.2f} statements + "
          f"{s.begins:.2f} BEGIN, {s.commits:.2f} commits per run; {args.runs} {kind}")  # fmt: skip
    if args.profile:
        print(f"  Python function calls per run: {got['calls']:,.0f}")
    print("  by thread, CPU ms/run: " + ", ".join(
        f"{k} {v:.2f}" for k, v in got["threads"].items()
    ))  # fmt: skip
    if args.profile:
        profiles = [p for name, p in _PROFILES if args.thread in name]
        stats = pstats.Stats(profiles[0])
        for p in profiles[1:]:
            stats.add(p)
        stats.sort_stats(args.sort).print_stats(args.top)


if __name__ == "__main__":
    main()
