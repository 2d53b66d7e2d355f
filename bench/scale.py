"""Benchmark (not a test): scale-out on PostgreSQL: worker processes vs DBOS vs the server.

(In-process runs/s and SQL statements per run on SQLite and PostgreSQL: ``durable.py``. The
plumbing both use, processes, databases, DBOS, counting, ceilings, tables: ``harness.py``.)

    .venv/bin/python bench/scale.py [--runs 500] [--procs 1,2,4] [--repeat 2] [--samples 40]
                                    [--dbos-limits 0,8] [--no-dbos] [--profile]

Everything runs against one PostgreSQL server (``--pg``, default ``THODARE_TEST_PG`` or
``postgresql+psycopg://postgres@127.0.0.1:5432/test``; that database is only used to
create and drop fresh ones). Each run of the script creates ``thodare_scale_<hex>`` (one
schema per scenario for ours) and one database per DBOS scenario, and drops them all
at the end.

(a) throughput: the 3-step workflow of trivial steps of ``workloads.py`` (``THREE``).
    1, 2 and 4 worker PROCESSES ``thodare worker --db URL --import bench/scale.py
    --concurrency 8 --poll 0.2`` are started and warmed up, then frozen with SIGSTOP
    while ``--runs`` runs are created; the clock starts at SIGCONT and stops at the
    last run's ``ended_at``. Every output is checked in SQL. The CPU time the worker
    processes used in that window is reported per run. One more row: 1 process with
    ``--concurrency 1``.
(b) wake-up latency: one worker process; a run parks on ``wait_for_event`` (with its
    own correlation key); after a random pause of 0-200 ms (so the signal lands
    anywhere in the worker's poll cycle) this process calls ``kit.signal(...)``; the
    latency is the next step's ``started_at`` (written by the worker) minus the time
    just before ``kit.signal``. Once with LISTEN/NOTIFY (the default) and once with
    ``--no-listen`` (polling every 0.2 s only).
(c) DBOS Transact (``pip install dbos``) on the same server, its system database in its
    own database: ``@DBOS.workflow`` of three ``@DBOS.step`` calls on a DBOS queue
    (polled every 0.2 s like ours), served by 1, 2 and 4 processes (``harness.py
    dbos-worker``: ``DBOS.launch()`` with its own ``executor_id``), enqueued with
    ``DBOSClient`` while the processes are frozen, timed the same way (last
    ``workflow_status.updated_at``).
    Two queue settings: no ``worker_concurrency`` (DBOS's default: the first process
    to poll takes every queued run, so more processes do not help) and
    ``worker_concurrency=8`` (spread over the processes, but each takes new work only
    once per poll); the table compares ours with the faster of the two.
(d) the ceiling: single-row INSERT commits/s with psycopg on 1, 2 and 4 connections
    (before and after the rest; median), and ``pgbench`` with a one-INSERT script when
    it is installed. Write commits per run are counted once in this process (a burst
    of 50 runs, ``harness.SqlCounter``: SQLAlchemy events) for both engines, durable and
    with ``synchronous_commit`` off apart; the ceiling column is the commit
    rate with as many connections as worker processes divided by our durable write
    commits per run.

Throughput is measured ``--repeat`` times, ours and DBOS interleaved (medians, with the
range). A measurement during which PostgreSQL restarted (other processes on a shared
machine may do that) is thrown away and taken again.

``--profile`` also runs one worker process with cProfile on its worker thread (where the
store calls happen), in that thread's CPU time, and prints the top functions.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import itertools
import os
import platform
import pstats
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel

sys.path.insert(0, str(Path(__file__).resolve().parent))  # workers import this file by path
from harness import (
    DBOS_QUEUE,
    DEFAULT_PG,
    THODARE,
    Proc,
    Server,
    Sql,
    SqlCounter,
    busy_since,
    dbos_launched,
    dbos_missing,
    dbos_worker,
    fmt,
    kit_engines,
    machine_cpu,
    our_kit,
    ours_burst,
    pct,
    pg_commit_rate,
    pgbench_rate,
    print_table,
    procs,
    ratio,
    serve_until_term,
    spread,
)
from workloads import INC, THREE

from thodare_jupyter import Catalog, create_wfkit, define_workflow

THIS = Path(__file__).resolve()
EVENT = "bench-go"

# ── the workloads (also the connectors module of the worker processes) ──


class Key(BaseModel):
    key: str


WAKE = (
    define_workflow("bench-wake").input(Key)
    .step("wait", Catalog().get("wait_for_event"),
          lambda r: {"eventName": EVENT, "correlationKey": r.input.key})
    .step("after", INC, {"n": 1}, needs=("wait",))
    .build()
)  # fmt: skip
"""trigger -> wait_for_event(EVENT, correlationKey = input.key) -> ``after`` (bench-inc)."""


# ── worker processes ──


def our_worker(url: str, concurrency: int, poll: float, listen: bool = True) -> Proc:
    return Proc(
        [str(THODARE), "worker", "--db", url, "--import", str(THIS),
         "--concurrency", str(concurrency), "--poll", str(poll),
         "--listen" if listen else "--no-listen"],
        ready="thodare worker: serving",
    )  # fmt: skip


def profiled_worker(url: str, concurrency: int, poll: float, out: Path) -> Proc:
    return Proc(
        [sys.executable, str(THIS), "_profiled-worker", url, str(concurrency), str(poll),
         str(out)],
        ready="ready",
    )  # fmt: skip


def main_profiled_worker(url: str, concurrency: int, poll: float, out: str) -> None:
    """Our worker with cProfile on its worker thread (where every store call runs), timed
    in CPU time of that thread (time spent waiting on the server is not counted)."""
    from thodare_jupyter.durable.worker import Worker

    prof = cProfile.Profile(time.thread_time)
    original = Worker._thread_main

    def profiled(self: Worker) -> None:
        prof.enable()
        try:
            original(self)
        finally:
            prof.disable()
            prof.dump_stats(out)

    Worker._thread_main = profiled  # type: ignore[method-assign]
    kit = create_wfkit(url, concurrency=concurrency, poll_s=poll)
    kit.register(INC)
    kit.start()
    serve_until_term(kit.close)


# ── (a) + (c): throughput ──


@dataclass
class Timing:
    runs_per_s: float
    cpu_ms_per_run: float  # CPU of the worker processes (not of PostgreSQL) per run
    busy: float  # share of the machine's CPU time in use (by anything) while they ran


def time_ours(server: Server, db: str, k: int, runs: int, concurrency: int, poll: float,
              profile: Path | None = None) -> Timing:  # fmt: skip
    """Runs/s of ``runs`` 3-step runs created up front, served by ``k`` worker processes."""
    url = server.schema(db, f"tp_{k}_{'prof' if profile else 'c' + str(concurrency)}")
    with our_kit(url, start=False) as kit:  # migrates; its worker is never started

        def make(i: int) -> Proc:
            if profile is not None:
                return profiled_worker(url, concurrency, poll, profile)
            return our_worker(url, concurrency, poll)

        with procs(make, k) as ps:
            time.sleep(0.5)  # the listeners connect
            for p in ps:
                p.freeze()
            for i in range(runs):
                kit.run(THREE, {"n": i})
            qs = Sql(url)
            cpu, mc0 = sum(p.cpu_s() for p in ps), machine_cpu()
            start = time.time()
            for p in ps:
                p.thaw()
            _wait_all(lambda: qs(
                "SELECT count(*) FILTER (WHERE status = 'completed'), "
                "count(*) FILTER (WHERE status IN ('failed', 'canceled')) FROM thodare_runs"
            )[0], runs, ps)  # fmt: skip
            cpu, busy = sum(p.cpu_s() for p in ps) - cpu, busy_since(mc0)
            ((end, good),) = qs(
                "SELECT max(ended_at), count(*) FILTER (WHERE (outputs_json::json->'s3'->>'n')"
                "::int = (input_json::json->>'n')::int + 3) FROM thodare_runs"
            )
            qs.close()
        assert good == runs, f"only {good} of {runs} runs have the right output"
        return Timing(runs / (end - start), cpu / runs * 1000, busy)


def _wait_all(counts: Callable[[], tuple[int, int]], runs: int, ps: list[Proc],
              timeout: float = 180) -> None:  # fmt: skip
    end = time.monotonic() + timeout
    while True:
        done, bad = counts()
        if bad:
            raise RuntimeError(f"{bad} runs failed\n" + "".join(ps[0].lines))
        if done >= runs:
            return
        if time.monotonic() > end:
            raise RuntimeError(f"only {done}/{runs} done after {timeout}s\n" + "".join(ps[0].lines))
        time.sleep(0.02)


def time_dbos(server: Server, k: int, runs: int, poll: float, per_worker: int | None) -> Timing:
    """The same workload on DBOS: a queue served by ``k`` DBOS processes, each taking at
    most ``per_worker`` at once (None: DBOS's default, no limit)."""
    from dbos import DBOSClient

    url = server.database(f"dbos{k}_{uuid.uuid4().hex[:6]}", create=False)  # DBOS creates it
    # the first process alone: it creates and migrates the database
    first = dbos_worker(url, "bench-0", poll, per_worker).wait_ready()
    try:
        with procs(lambda i: dbos_worker(url, f"bench-{i + 1}", poll, per_worker), k - 1) as rest:
            ps = [first, *rest]
            time.sleep(1.5)  # DBOS's queue manager picks the queue up within 1 s
            client = DBOSClient(system_database_url=url, application_name="thodare-bench")
            q = Sql(url)
            try:
                for p in ps:
                    p.freeze()
                handles: list[Any] = [
                    client.enqueue({"queue_name": DBOS_QUEUE, "workflow_name": "bench_three"}, i)
                    for i in range(runs)
                ]
                cpu, mc0 = sum(p.cpu_s() for p in ps), machine_cpu()
                start = time.time()
                for p in ps:
                    p.thaw()
                _wait_all(lambda: q(
                    "SELECT count(*) FILTER (WHERE status = 'SUCCESS'), "
                    "count(*) FILTER (WHERE status IN ('ERROR', 'CANCELLED', "
                    "'MAX_RECOVERY_ATTEMPTS_EXCEEDED')) "
                    "FROM dbos.workflow_status WHERE queue_name = %s", DBOS_QUEUE
                )[0], runs, ps)  # fmt: skip
                cpu, busy = sum(p.cpu_s() for p in ps) - cpu, busy_since(mc0)
                ((end_ms,),) = q(
                    "SELECT max(updated_at) FROM dbos.workflow_status WHERE queue_name = %s",
                    DBOS_QUEUE,
                )
                for i, h in enumerate(handles):
                    assert h.get_result() == i + 3
            finally:
                client.destroy()
                q.close()
        return Timing(runs / (end_ms / 1000 - start), cpu / runs * 1000, busy)
    finally:
        first.stop()


# ── write commits per run, counted in this process ──


def count_ours(db: str, server: Server, runs: int = 50) -> tuple[float, float]:
    """(durable, lazy) write commits per run: ``runs`` created, then one in-process worker."""
    url = server.schema(db, "count")
    with our_kit(url, poll_s=0.2, start=False) as kit:
        counter = SqlCounter(kit_engines(kit))
        try:
            c0 = counter.snapshot()
            ours_burst(kit.start(), runs)
            n = (counter.snapshot() - c0).per(runs)
        finally:
            counter.detach()
    return n.write_commits, n.lazy_commits


def count_dbos(server: Server, runs: int = 50) -> tuple[float, float]:
    """The same for DBOS in this process: ``runs`` enqueued on its queue."""
    from dbos import DBOS

    url = server.database(f"dboscount_{uuid.uuid4().hex[:6]}", create=False)
    with dbos_launched(url, executor="bench-count") as three:
        queue = DBOS.register_queue(DBOS_QUEUE, polling_interval_sec=0.2)
        counter = SqlCounter([sa.engine.Engine])  # only DBOS uses SQLAlchemy meanwhile
        try:
            c0 = counter.snapshot()
            handles = [queue.enqueue(three, i) for i in range(runs)]
            for i, h in enumerate(handles):
                assert h.get_result() == i + 3
            n = (counter.snapshot() - c0).per(runs)
        finally:
            counter.detach()
    return n.write_commits, n.lazy_commits


# ── (b) wake-up latency ──


def wake_latencies(server: Server, db: str, listen: bool, samples: int, poll: float,
                   seed: int = 7) -> list[float]:  # fmt: skip
    """Milliseconds from kit.signal() to the next step's started_at, in another process."""
    url = server.schema(db, f"wake_{'listen' if listen else 'poll'}")
    rnd = random.Random(seed)
    out: list[float] = []
    with (
        our_kit(url, start=False) as kit,  # to create runs and send signals; never started
        procs(lambda i: our_worker(url, 8, poll, listen), 1) as ps,
    ):
        qs = Sql(url)
        time.sleep(0.5)
        for i in range(samples + 3):  # 3 warm-ups
            key = f"k{i}"
            h = kit.run(WAKE, {"key": key})
            _until(functools.partial(_parked, qs, h.id), ps, 0.01)
            time.sleep(rnd.uniform(0, 0.2))
            t0 = time.time()
            kit.signal(EVENT, {"i": i}, correlation_key=key)
            started: list[Any] = []

            def after_started(run_id: str = h.id, got: list[Any] = started) -> bool:
                got[:] = qs("SELECT started_at FROM thodare_steps "
                            "WHERE run_id = %s AND block_id = 'after'", run_id)  # fmt: skip
                return bool(got) and got[0][0] is not None

            _until(after_started, ps, 0.02)
            if i >= 3:
                out.append((started[0][0] - t0) * 1000)
        qs.close()
    return out


def _parked(qs: Sql, run_id: str) -> bool:
    return bool(qs("SELECT status FROM thodare_runs WHERE id = %s", run_id)[0][0] == "waiting")


def _until(cond: Callable[[], bool], ps: list[Proc], every: float, timeout: float = 30) -> None:
    """Poll ``cond`` every ``every`` s (coarse: the latency comes from the stored times and a
    tight loop here would take CPU from the worker on a small machine)."""
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise RuntimeError("timed out\n" + "".join(ps[0].lines))
        time.sleep(every)


# ── report ──


@dataclass
class Results:
    procs: list[int]
    ours: dict[int, list[Timing]] = field(default_factory=dict)  # processes -> rounds
    dbos: dict[int, dict[int, list[Timing]]] = field(default_factory=dict)  # limit -> procs ->
    ours_c1: list[Timing] = field(default_factory=list)  # 1 process, --concurrency 1
    rates: dict[int, list[float]] = field(default_factory=dict)  # connections -> commits/s
    pgbench: dict[int, float | None] = field(default_factory=dict)
    commits: dict[str, tuple[float, float]] = field(default_factory=dict)  # engine -> per run
    wake: dict[str, list[float]] = field(default_factory=dict)

    def rate(self, clients: int) -> float | None:
        return statistics.median(self.rates[clients]) if self.rates.get(clients) else None


def med(ts: list[Timing] | None, attr: str = "runs_per_s") -> float | None:
    return statistics.median(getattr(t, attr) for t in ts) if ts else None


def tspread(ts: list[Timing] | None) -> str:
    return spread([t.runs_per_s for t in ts] if ts else None)


def report(res: Results, args: argparse.Namespace) -> None:
    rows: list[list[str]] = []
    o_w = res.commits.get("ours", (None, None))
    d_w = res.commits.get("dbos", (None, None))
    ours = {k: med(res.ours.get(k)) for k in res.procs}
    limits = sorted(res.dbos)
    best: dict[int, list[Timing] | None] = {}  # the faster DBOS configuration per count
    for k in res.procs:
        got = [res.dbos[lim][k] for lim in limits if res.dbos[lim].get(k)]
        best[k] = max(got, key=lambda ts: med(ts) or 0.0) if got else None
    dbos = {k: med(best[k]) for k in res.procs}
    for k in res.procs:
        rate = res.rate(k)
        bound = f"<= {rate / o_w[0]:,.0f} runs/s ({k} conn)" if rate and o_w[0] else "-"
        rows.append([f"(a/c) throughput, {k} process{'es' if k > 1 else ''}, runs/s",
                     fmt(ours[k]) + tspread(res.ours.get(k)),
                     fmt(dbos[k]) + tspread(best[k]), ratio(ours[k], dbos[k]),
                     bound])  # fmt: skip
        if len(limits) > 1:
            rows.append([
                "  DBOS worker_concurrency " + " / ".join(str(lim or "none") for lim in limits),
                "-", " / ".join(fmt(med(res.dbos[lim].get(k))) for lim in limits), "-", "-",
            ])  # fmt: skip
        o_cpu, d_cpu = med(res.ours.get(k), "cpu_ms_per_run"), med(best[k], "cpu_ms_per_run")
        rows.append(["  worker-process CPU ms per run", fmt(o_cpu, 2), fmt(d_cpu, 2),
                     ratio(o_cpu, d_cpu), "-"])  # fmt: skip
        o_busy, d_busy = med(res.ours.get(k), "busy"), med(best[k], "busy")
        rows.append(["  machine CPU busy (everything), %", fmt(o_busy and o_busy * 100, 0),
                     fmt(d_busy and d_busy * 100, 0), "-", "-"])  # fmt: skip
    if res.ours_c1:
        rows.append(["(a) ours, 1 process, --concurrency 1, runs/s",
                     fmt(med(res.ours_c1)) + tspread(res.ours_c1), "-", "-", "-"])  # fmt: skip
    lo, hi = min(res.procs), max(res.procs)
    rows.append([f"  speed-up {hi} vs {lo} process(es)", ratio(ours[hi], ours[lo]),
                 ratio(dbos[hi], dbos[lo]), "-", "-"])  # fmt: skip
    r1 = res.rate(1)
    rows.append(["  durable write commits per run", fmt(o_w[0]), fmt(d_w[0]), ratio(o_w[0], d_w[0]),
                 f"{r1:,.0f} commits/s (1 conn)" if r1 else "-"])  # fmt: skip
    rows.append(["  + commits with synchronous_commit off", fmt(o_w[1]), fmt(d_w[1]), "-", "-"])
    for mode in ("listen", "poll"):
        xs = res.wake.get(mode)
        label = "LISTEN/NOTIFY" if mode == "listen" else f"polling {args.poll:g} s"
        for p in (50, 99):
            rows.append([f"(b) wake-up p{p} ms, {label}", fmt(pct(xs, p) if xs else None),
                         "-", "-", "-"])  # fmt: skip
    for c in sorted(res.rates):
        rs = res.rates[c]
        rows.append([f"(d) INSERT commits/s, {c} conn (psycopg)", "-", "-", "-",
                     f"{statistics.median(rs):,.0f}{spread(rs)}"])  # fmt: skip
    for c, r in res.pgbench.items():
        rows.append([f"(d) pgbench 1-INSERT tps, {c} client{'s' if c > 1 else ''}", "-", "-", "-",
                     fmt(r, 0) if r is not None
                     else "failed" if shutil.which("pgbench") else "not installed"])  # fmt: skip
    print()
    print_table(["metric", "ours", "DBOS", "ours/DBOS", "ceiling (PostgreSQL)"], rows)
    print(
        f"\nours: `thodare worker --concurrency {args.concurrency} --poll {args.poll:g}` per "
        f"process. DBOS: one queue polled every {args.poll:g} s by each process; the DBOS "
        "column is the faster of its\nworker_concurrency settings (none = DBOS's default: the "
        "first process to poll takes every queued run;\n8 = like ours, but a DBOS process only "
        "looks for more work each poll, so <= 8 / poll runs/s per process).\n"
        f"Throughput: {args.runs} runs created while the workers are frozen (SIGSTOP), timed "
        "from SIGCONT to the last run's end.\n"
        f"Wake-up: {args.samples} samples, signal sent 0-200 ms after the run parked; time from "
        "just before kit.signal() to the next step's started_at.\n"
        "ceiling: commits/s with as many connections as processes / durable write commits per "
        "run (counted in-process, burst of 50).\n"
        "CPU: user + system time of the worker processes during the timed window / runs "
        "(PostgreSQL's own CPU not included).\n"
        "ours/DBOS: above 1 is better for throughput, below 1 for commits and CPU."
    )
    print("\ngoals:")
    cmp = [(k, ours[k], dbos[k]) for k in res.procs]
    if all(d is not None for _, _, d in cmp):
        ok = all(o is not None and d is not None and o >= d for _, o, d in cmp)
        print(
            f"  {'PASS' if ok else 'MISS'}  throughput >= DBOS's at every process count ("
            + ", ".join(f"{k}: {ratio(o, d)}" for k, o, d in cmp)
            + ")"
        )
    else:
        print("  ----  throughput >= DBOS's: DBOS not measured")
    seq = [ours[k] for k in res.procs]
    grows = all(a is not None and b is not None and b > a for a, b in itertools.pairwise(seq))
    print(f"  {'PASS' if grows else 'MISS'}  throughput grows with worker processes ("
          + " -> ".join(fmt(x) for x in seq) + f" runs/s; {os.cpu_count()} cpus)")  # fmt: skip
    for (k0, a), (k1, b) in itertools.pairwise(zip(res.procs, seq, strict=True)):
        busy = med(res.ours.get(k1), "busy")
        if a is not None and b is not None and b <= a and busy is not None and busy >= 0.9:
            print(f"        {k0} -> {k1} processes: {b / a:.2f}x, with the machine's CPUs "
                  f"{busy * 100:.0f}% busy (CPU-bound, not commit-bound)")  # fmt: skip
    xs = res.wake.get("listen")
    p50, p99 = (pct(xs, 50), pct(xs, 99)) if xs else (None, None)
    ok = p50 is not None and p99 is not None and p50 < 20 and p99 < 100
    print(f"  {'PASS' if ok else 'MISS'}  wake-up p50 < 20 ms and p99 < 100 ms with "
          f"LISTEN/NOTIFY ({fmt(p50)} / {fmt(p99)} ms)")  # fmt: skip


def print_profile(path: Path, runs: int, top: int = 12) -> None:
    """The worker thread's CPU per run, split by what it was doing, then the top functions."""
    if not path.exists():
        print(f"(no profile written at {path})")
        return
    st = pstats.Stats(str(path))
    raw: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = st.stats  # type: ignore[attr-defined]
    total = max((ct for (_f, _l, fn), (_c, _n, _t, ct, _) in raw.items() if fn == "_thread_main"),
                default=0.0)  # fmt: skip

    def pick(file_part: str, func: str) -> tuple[int, float]:
        hits = [(n, ct) for (f, _l, fn), (_c, n, _t, ct, _) in raw.items()
                if fn == func and file_part in f]  # fmt: skip
        return sum(n for n, _ in hits), sum(ct for _, ct in hits)

    print(f"\n--- worker thread, CPU time (profiled, so slower): {total / runs * 1000:.2f} ms "
          "per run ---")  # fmt: skip
    for label, file_part, func in [
        ("store calls (one transaction each)", "durable/database.py", "wrapper"),
        ("  pool checkouts (pool_pre_ping)", "sqlalchemy/pool/base.py", "_checkout"),
        ("    of which the ping itself", "_psycopg_common.py", "do_ping"),
        ("  lease fence SELECTs", "durable/store.py", "_fence"),
        ("  step_started", "durable/store.py", "step_started"),
        ("  step_finished", "durable/store.py", "step_finished"),
        ("  claim", "durable/store.py", "claim"),
        ("  get_steps (replay state)", "durable/store.py", "get_steps"),
        ("  finish_run", "durable/store.py", "finish_run"),
        ("statements sent (psycopg execute)", "psycopg/cursor.py", "execute"),
        ("BEGIN/COMMIT/SET commands", "psycopg/_connection_base.py", "_exec_command"),
        ("the walker (execution/walker.py)", "execution/walker.py", "walk"),
    ]:
        n, ct = pick(file_part, func)
        share = ct / total * 100 if total else 0.0
        print(f"  {label:38s} {n / runs:6.1f} per run  {ct / runs * 1000:6.2f} ms/run "
              f"({share:4.1f}%)")  # fmt: skip
    print(f"\n--- top {top} functions by own CPU time ---")
    st.sort_stats("tottime").print_stats(top)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--pg", default=DEFAULT_PG, help="an existing database to connect to")
    ap.add_argument("--runs", type=int, default=500, help="runs per throughput measurement")
    ap.add_argument("--procs", default="1,2,4", help="worker process counts")
    ap.add_argument("--concurrency", type=int, default=8, help="our --concurrency per process")
    ap.add_argument("--poll", type=float, default=0.2, help="poll seconds (ours and DBOS)")
    ap.add_argument("--samples", type=int, default=40, help="wake-up samples per mode")
    ap.add_argument("--repeat", type=int, default=2, help="throughput rounds (medians)")
    ap.add_argument(
        "--dbos-limits",
        default="0,8",
        help="DBOS queue worker_concurrency values to try (0: none, DBOS's default)",
    )
    ap.add_argument("--no-dbos", action="store_true", help="skip DBOS")
    ap.add_argument("--profile", action="store_true", help="profile a worker process too")
    args = ap.parse_args()
    res = Results(procs=[int(x) for x in args.procs.split(",")])
    dbos_limits = [int(x) for x in args.dbos_limits.split(",")]

    dbos_error = dbos_missing(args.no_dbos)
    server = Server(args.pg, prefix="thodare_scale")
    measured = server.measured
    started = time.monotonic()

    def say(msg: str, flush: bool = True) -> None:
        print(f"[{time.monotonic() - started:3.0f} s] {msg}", flush=flush)

    try:
        db = server.database()
        print(f"python {platform.python_version()}, PostgreSQL {server.version()} "
              f"({server.settings()}), {os.cpu_count()} cpus; database {server.tag}*",
              flush=True)  # fmt: skip
        clients = sorted({1, 4, *res.procs})

        def ceiling() -> None:
            say("(d) INSERT commit rate, " + ", ".join(f"{c} conn" for c in clients))
            for c in clients:
                rate = measured("the INSERT loop", pg_commit_rate, db, c)
                res.rates.setdefault(c, []).append(rate)

        ceiling()
        say("write commits per run (in-process burst of 50)", flush=True)
        res.commits["ours"] = measured("the count", count_ours, db, server)
        if dbos_error is None:
            try:
                res.commits["dbos"] = measured("the count", count_dbos, server)
            except Exception as e:
                dbos_error = f"{type(e).__name__}: {e}"
        for rep in range(args.repeat):  # interleaved so drift hits both engines alike
            tag = f"round {rep + 1}/{args.repeat}"
            for k in res.procs:
                say(f"{tag}: (a) ours, {k} worker process(es), {args.runs} runs", flush=True)
                res.ours.setdefault(k, []).append(
                    measured(
                        "(a)", time_ours, server, db, k, args.runs, args.concurrency, args.poll
                    )
                )
                for lim in dbos_limits if dbos_error is None else []:
                    say(f"{tag}: (c) DBOS, {k} process(es), {args.runs} runs, "
                          f"worker_concurrency {lim or 'none'}", flush=True)  # fmt: skip
                    try:
                        res.dbos.setdefault(lim, {}).setdefault(k, []).append(
                            measured("(c)", time_dbos, server, k, args.runs, args.poll, lim or None)
                        )
                    except Exception as e:  # say why, keep ours
                        dbos_error = f"{type(e).__name__}: {e}"
            say(f"{tag}: (a) ours, 1 worker process, --concurrency 1", flush=True)
            res.ours_c1.append(measured("(a)", time_ours, server, db, 1, args.runs, 1, args.poll))
        for listen in (True, False):
            mode = "listen" if listen else "poll"
            say(f"(b) wake-up latency, {mode}, {args.samples} samples", flush=True)
            res.wake[mode] = measured(
                "(b)", wake_latencies, server, db, listen, args.samples, args.poll
            )
        ceiling()
        say("(d) pgbench", flush=True)
        for c in (1, 4):
            res.pgbench[c] = measured("pgbench", pgbench_rate, db, c)
        prof_path: Path | None = None
        if args.profile:
            prof_path = Path(tempfile.mkdtemp(prefix="thodare-scale-")) / "worker.prof"
            say("profiling one worker process (1-process workload)", flush=True)
            rate = time_ours(server, db, 1, args.runs, args.concurrency, args.poll, prof_path)
            print(f"    {rate.runs_per_s:,.1f} runs/s under the profiler")
        report(res, args)
        if dbos_error:
            print(f"DBOS not measured (or not fully): {dbos_error}")
        if prof_path is not None:
            print_profile(prof_path, args.runs)
        print(f"\ntotal {time.monotonic() - started:.0f} s")
    finally:
        server.drop_all()


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_profiled-worker":
        main_profiled_worker(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5])
    else:
        main()
