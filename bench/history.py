"""Benchmark (not a test): does throughput hold with a long history in the tables?

    .venv/bin/python bench/history.py [--finished 1000000] [--parked 100000] [--steps 1]
                                      [--runs 200] [--burst 200] [--repeat 2]
                                      [--db sqlite,postgresql] [--pg URL] [--concurrency 8]

The workload is ``workloads.THREE`` (3 trivial steps), run by a kit in this process
(``harness.our_kit``): (a) sequential: 5 warm-ups, then ``--runs`` runs one after another,
each awaited: runs / the loop's time; (b) at once: ``--burst`` runs started together, runs /
time until the last result is read. Each round measures an EMPTY database and a SEEDED one
(a fresh one each: SQLite files in a temp dir; PostgreSQL schemas in a fresh database
``thodare_history_<hex>``, dropped at the end), interleaved; medians over ``--repeat``
rounds, with the range.

The seeded database gets, with set-based SQL (PostgreSQL ``generate_series``, SQLite a
recursive CTE) in the kit's namespace before the kit starts, then ANALYZE:

- ``--finished`` runs (completed; every 50th failed, every 97th canceled) created in the
  past, each with ``--steps`` completed steps;
- ``--parked`` runs ``waiting`` on an event (half on one hot event with a key each, the
  others over 1,000 events; every 10th also has a timer a year out), each with its
  waiting step;
- ``--parked`` old signals over the same events, and as many consumptions.

PASS when each seeded figure is within 15% of the empty one (issue 14: "1M finished + 100k
parked runs: throughput within 15% of an empty database").
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from typing import Any

from harness import (
    DEFAULT_PG,
    Server,
    fmt,
    median,
    our_kit,
    ours_burst,
    ours_sequential,
    print_table,
    ratio,
    spread,
)

WARMUPS = 5
TARGET = 0.85  # seeded / empty, at least
_WORKFLOW = (
    '{"name": "history", "blocks": [{"id": "s1", "type": "bench-inc", '
    '"params": {"n": "{{input.n}}"}}]}'
)


def seed_history(
    db: Any, finished: int, parked: int, *, steps: int = 1, events: int = 1000
) -> dict[str, float]:
    """Fill the tables of ``db`` (a thodare ``Database``, e.g. ``kit.store``) in its
    namespace with ``finished`` ended runs and ``parked`` waiting ones (see the module
    docstring), then ANALYZE. Returns seconds per phase. Run ids: ``f%09d`` (finished)
    and ``p%09d`` (parked); parked run ``p<x>`` waits on ``hist-hot`` with key ``k<x>``
    for even ``x``, else on ``hist-evt-<x % events>`` with key ``k<x>``."""
    sqlite = db.is_sqlite
    ns = db.namespace.replace("'", "''")
    t0 = time.time() - 86400.0 * 30
    far = time.time() + 86400.0 * 365
    took: dict[str, float] = {}

    def series(n: int) -> tuple[str, str]:
        """(a WITH prefix, a FROM item) giving the integers x = 1..n."""
        if sqlite:
            return (
                f"WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < {n}) ",
                "g",
            )
        return "", f"generate_series(1, {n}) AS g(x)"

    def ident(prefix: str) -> str:
        return f"printf('{prefix}%09d', x)" if sqlite else f"'{prefix}' || lpad(x::text, 9, '0')"

    false = "0" if sqlite else "false"
    event = f"CASE WHEN x % 2 = 0 THEN 'hist-hot' ELSE 'hist-evt-' || (x % {events}) END"
    with db.write() as conn:

        def run(phase: str, sql: str) -> None:
            start = time.perf_counter()
            conn.exec_driver_sql(sql if sqlite else sql.replace("%", "%%"))
            took[phase] = took.get(phase, 0.0) + time.perf_counter() - start

        w, src = series(finished)
        at = f"{t0} + x * 0.001"
        run("finished runs", (
            f"{w}INSERT INTO thodare_runs (id, namespace, workflow_name, workflow_json,"
            " input_json, status, created_at, updated_at, started_at, ended_at, wake_requested,"
            " signal_horizon, outputs_json, needs)"
            f" SELECT {ident('f')}, '{ns}', 'history', '{_WORKFLOW}', '{{\"n\": 1}}',"
            " CASE WHEN x % 50 = 0 THEN 'failed' WHEN x % 97 = 0 THEN 'canceled'"
            " ELSE 'completed' END,"
            f" {at}, {at} + 1, {at}, {at} + 1, {false}, 0, '{{\"s1\": {{\"n\": 2}}}}',"
            f" '[\"bench-inc\"]' FROM {src}"
        ))  # fmt: skip
        for b in range(1, steps + 1):
            run("finished steps", (
                f"{w}INSERT INTO thodare_steps (run_id, block_id, type, status, attempt,"
                " output_json, started_at, ended_at)"
                f" SELECT {ident('f')}, 's{b}', 'bench-inc', 'completed', 1, '{{\"n\": 2}}',"
                f" {at}, {at} + 0.5 FROM {src}"
            ))  # fmt: skip
        w, src = series(parked)
        at = f"{t0} + 1000000 + x * 0.001"
        run("parked runs", (
            f"{w}INSERT INTO thodare_runs (id, namespace, workflow_name, workflow_json,"
            " input_json, status, created_at, updated_at, started_at, wake_at, wake_requested,"
            " signal_horizon, needs)"
            f" SELECT {ident('p')}, '{ns}', 'history', '{_WORKFLOW}', '{{\"n\": 1}}', 'waiting',"
            f" {at}, {at}, {at}, CASE WHEN x % 10 = 0 THEN {far} + x END, {false}, 0,"
            f" '[\"bench-inc\"]' FROM {src}"
        ))  # fmt: skip
        run("parked runs", (
            f"{w}INSERT INTO thodare_steps (run_id, block_id, type, status, attempt, started_at,"
            " wait_event, wait_key)"
            f" SELECT {ident('p')}, 'wait', 'wait_for_event', 'waiting', 1, {at}, {event},"
            f" 'k' || x FROM {src}"
        ))  # fmt: skip
        run("signals", (
            f"{w}INSERT INTO thodare_signals (id, namespace, event, correlation_key,"
            f" payload_json, created_at) SELECT x, '{ns}', {event}, 'old' || x, '{{}}',"
            f" {t0} + x * 0.001 FROM {src}"
        ))  # fmt: skip
        if finished:
            w, src = series(min(parked, finished))
            run("signals", (
                f"{w}INSERT INTO thodare_signal_consumptions (signal_id, run_id, block_id)"
                f" SELECT x, {ident('f')}, 'wait' FROM {src}"
            ))  # fmt: skip
        if not sqlite and parked:
            run("signals", "SELECT setval(pg_get_serial_sequence('thodare_signals', 'id'),"
                " (SELECT max(id) FROM thodare_signals))")  # fmt: skip
    start = time.perf_counter()
    with db.engine.connect() as conn:
        if sqlite:
            conn.exec_driver_sql("ANALYZE")
        else:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            conn.exec_driver_sql(
                "VACUUM ANALYZE thodare_runs, thodare_steps, thodare_signals,"
                " thodare_signal_consumptions"
            )
    took["analyze"] = time.perf_counter() - start
    return took


def measure(url: str, seed: dict[str, int] | None, runs: int, burst: int,
            concurrency: int) -> tuple[float, float, dict[str, float]]:  # fmt: skip
    """(sequential runs/s, at-once runs/s, seeding seconds per phase) on a fresh ``url``."""
    with our_kit(url, concurrency=concurrency, start=False) as kit:
        took = seed_history(kit.store, **seed) if seed else {}
        kit.start()
        ours_sequential(kit, WARMUPS, -WARMUPS)
        start = time.perf_counter()
        ours_sequential(kit, runs)
        seq = runs / (time.perf_counter() - start)
        at_once = burst / ours_burst(kit, burst)
    return seq, at_once, took


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--finished", type=int, default=1_000_000, help="finished runs seeded")
    ap.add_argument("--parked", type=int, default=100_000, help="parked (waiting) runs seeded")
    ap.add_argument("--steps", type=int, default=1, help="completed steps per finished run")
    ap.add_argument("--runs", type=int, default=200, help="sequential runs per round")
    ap.add_argument("--burst", type=int, default=200, help="runs started at once")
    ap.add_argument("--repeat", type=int, default=2, help="rounds; medians over all of them")
    ap.add_argument("--db", default="sqlite,postgresql", help="databases: sqlite, postgresql")
    ap.add_argument("--pg", default=DEFAULT_PG, help="a PostgreSQL database to connect to")
    ap.add_argument("--concurrency", type=int, default=8, help="the worker's concurrency")
    args = ap.parse_args()
    seed = {"finished": args.finished, "parked": args.parked, "steps": args.steps}
    print(f"history bench: {platform.python_version()}, {platform.machine()}; seeded = "
          f"{args.finished:,} finished runs ({args.steps} step(s) each) + {args.parked:,} "
          f"parked runs + {args.parked:,} signals; {args.runs} sequential, {args.burst} at "
          f"once, {args.repeat} round(s), concurrency {args.concurrency}", flush=True)  # fmt: skip
    rows: list[list[str]] = []
    verdicts: list[str] = []
    server = None
    with tempfile.TemporaryDirectory(prefix="thodare-history-") as tmp:
        try:
            for name in args.db.split(","):
                if name == "sqlite":
                    label = "SQLite"
                    url = lambda tag, r: f"sqlite:///{tmp}/{tag}-{r}.db"  # noqa: E731
                    measured = lambda _what, fn, *a: fn(*a)  # noqa: E731
                elif name == "postgresql":
                    server = server or Server(args.pg, "thodare_history")
                    label = f"PostgreSQL {server.version().split()[0]}"
                    pgdb = server.database()
                    url = lambda tag, r, db=pgdb, s=server: s.schema(db, f"{tag}_{r}")  # noqa: E731
                    measured = server.measured
                else:
                    raise SystemExit(f"unknown database {name!r}")
                got: dict[str, dict[str, list[float]]] = {
                    "empty": {"seq": [], "burst": []}, "seeded": {"seq": [], "burst": []},
                }  # fmt: skip
                for r in range(args.repeat):
                    for tag in ("empty", "seeded"):
                        s = seed if tag == "seeded" else None
                        seq, at_once, took = measured(
                            f"{label} {tag}", measure, url(tag, r), s, args.runs, args.burst,
                            args.concurrency,
                        )  # fmt: skip
                        got[tag]["seq"].append(seq)
                        got[tag]["burst"].append(at_once)
                        seeded = (f"; seeded in {sum(took.values()):.1f}s ("
                                  + ", ".join(f"{k} {v:.1f}s" for k, v in took.items()) + ")"
                                  if took else "")  # fmt: skip
                        print(f"  {label} round {r + 1} {tag}: sequential {seq:,.1f} runs/s, "
                              f"at once {at_once:,.1f} runs/s{seeded}", flush=True)  # fmt: skip
                for kind, what in (("seq", "sequential"), ("burst", f"{args.burst} at once")):
                    e, s_ = median(got["empty"][kind]), median(got["seeded"][kind])
                    ok = e is not None and s_ is not None and s_ >= TARGET * e
                    rows.append([f"{label}: {what}, runs/s",
                                 fmt(e) + spread(got["empty"][kind]),
                                 fmt(s_) + spread(got["seeded"][kind]), ratio(s_, e),
                                 "PASS" if ok else "MISS"])  # fmt: skip
                    verdicts.append(
                        f"{'PASS' if ok else 'MISS'}  {label}, {what}: seeded "
                        f"{ratio(s_, e)} of empty (target >= {TARGET:.2f}x)"
                    )
        finally:
            if server is not None:
                server.drop_all()
    print()
    print_table(["3-step runs", "empty", f"{args.finished:,} + {args.parked:,}",
                 "seeded/empty", "within 15%"], rows)  # fmt: skip
    print()
    for v in verdicts:
        print(v)


if __name__ == "__main__":
    main()
