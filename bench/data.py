"""Benchmark (not a test): a big table through 3 durable steps, ours (``Table``) vs DBOS (pickle).

    .venv/bin/python bench/data.py [--rows 1000000] [--repeat 3] [--db sqlite,postgresql]
                                   [--pg URL] [--no-dbos]

The workload: make (a ``--rows`` x 10 table: 3 int, 3 float, 2 str, 2 datetime columns, from a
fixed seed) -> transform (keep the rows with ``qty > 0``, add a ``total`` column) -> summarize
(per region: orders, revenue; 8 rows). Both engines run the same pandas code:

- ours: a kit (``harness.our_kit``, artifacts in a fresh temp folder) with three connectors
  whose outputs and params are ``Table``: each table goes to the artifact store as Parquet,
  the step row keeps a reference. Timed: ``kit.run`` -> ``handle.result()`` (which loads
  every step's output, the two big tables included).
- DBOS Transact: ``@DBOS.workflow`` of three ``@DBOS.step`` passing the DataFrame (DBOS pickles
  each step's output, base64, into its system database). Timed: ``DBOS.start_workflow`` ->
  ``get_result()`` (the workflow returns the small summary).

Each case (engine x database x round) runs in its own child process (this file run with
``--child``), on a fresh database: SQLite a new file in a temp dir (WAL, synchronous=FULL
for both engines, as in ``durable.py``); PostgreSQL a new database (``Server``) per case. The
child imports pandas/pyarrow, starts the kit or launches DBOS, then measures one run (no
warm-up: the first run on a fresh database is the one that allocates the tables' pages):

- wall time from starting the run to its result;
- peak RSS during the run: the child resets its peak (``/proc/self/clear_refs``) just before
  the run and reads ``VmHWM`` after (where that reset is refused: ``ru_maxrss``, the whole
  child); beside it the RSS just before the run (imports, kit or DBOS launched);
- database growth: SQLite file + ``-wal`` bytes, PostgreSQL ``pg_database_size``, just
  before the run and just after the result (the kit or DBOS still open);
- ours: the artifact folder's bytes afterwards; stored = database growth + artifacts.

The table's own size (computed here once): pandas ``memory_usage(deep=True)``, Parquet (as
the artifact store writes it) and pickle (what DBOS stores, base64: 4/3 of it). Rounds are
interleaved; the table shows medians of ``--repeat`` rounds with the range. Goal (issue 15):
our database grows by less than 1% of the table's size (judged on the Parquet size, the
smaller one), on each database. Every database, file and folder made is removed at the end
(each case's as soon as it is measured).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import platform
import re
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from harness import (
    DEFAULT_PG,
    ROOT,
    Server,
    Sql,
    dbos_launched,
    dbos_missing,
    fmt,
    median,
    our_kit,
    print_table,
    ratio,
    spread,
)

SEED = 15
GOAL = 0.01  # our database growth / the table's (Parquet) size, at most
MIB = 1024 * 1024
REGIONS = ["north", "south", "east", "west", "centre", "islands", "online", "export"]

# ── the workload (the same pandas code for both engines) ──


def make_table(rows: int, seed: int) -> Any:
    """``rows`` x 10: id, customer, qty (int); price, discount, weight (float); region, sku
    (str); ordered_at, shipped_at (datetime)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    ordered = np.datetime64("2026-01-01T00:00:00", "ns") + rng.integers(
        0, 365 * 86400, rows
    ).astype("timedelta64[s]")
    return pd.DataFrame(
        {
            "id": np.arange(rows, dtype=np.int64),
            "customer": rng.integers(0, 50_000, rows),
            "qty": rng.integers(-2, 20, rows),
            "price": rng.uniform(1, 500, rows).round(2),
            "discount": rng.uniform(0, 0.3, rows),
            "weight": rng.normal(2.0, 0.5, rows),
            "region": np.array(REGIONS, dtype=object)[rng.integers(0, len(REGIONS), rows)],
            "sku": pd.Series(rng.integers(0, 1_000_000, rows)).astype(str).str.zfill(6),
            "ordered_at": ordered,
            "shipped_at": ordered + rng.integers(3600, 10 * 86400, rows).astype("timedelta64[s]"),
        }
    )


def transform_table(df: Any) -> Any:
    out = df[df["qty"] > 0].reset_index(drop=True)
    out["total"] = out["qty"] * out["price"] * (1 - out["discount"])
    return out


def summarize_table(df: Any) -> Any:
    return (
        df.groupby("region", sort=True)
        .agg(orders=("id", "size"), revenue=("total", "sum"))
        .reset_index()
    )


def _ours_workflow() -> tuple[list[Any], Any]:
    from pydantic import BaseModel

    from thodare_jupyter import Table, connector, define_workflow

    class MakeIn(BaseModel):
        rows: int
        seed: int

    class Rows(BaseModel):
        rows: Table

    class Summary(BaseModel):
        summary: Table
        rows: int
        revenue: float

    @connector("bench-data-make")
    def make(p: MakeIn) -> Rows:
        return Rows(rows=make_table(p.rows, p.seed))

    @connector("bench-data-transform")
    def transform(p: Rows) -> Rows:
        return Rows(rows=transform_table(p.rows))

    @connector("bench-data-summarize")
    def summarize(p: Rows) -> Summary:
        s = summarize_table(p.rows)
        return Summary(summary=s, rows=len(p.rows), revenue=float(s["revenue"].sum()))

    wf = (
        define_workflow("bench-data").input(MakeIn)
        .step("make", make, lambda r: {"rows": r.input.rows, "seed": r.input.seed})
        .step("transform", transform, lambda r: {"rows": r.make.rows})
        .step("summarize", summarize, lambda r: {"rows": r.transform.rows})
        .build()
    )  # fmt: skip
    return [make, transform, summarize], wf


def _dbos_workflow() -> Any:
    from dbos import DBOS

    @DBOS.step(name="bench_data_make")
    def make(rows: int, seed: int) -> Any:
        return make_table(rows, seed)

    @DBOS.step(name="bench_data_transform")
    def transform(df: Any) -> Any:
        return transform_table(df)

    @DBOS.step(name="bench_data_summarize")
    def summarize(df: Any) -> dict[str, Any]:
        s = summarize_table(df)
        return {"summary": s, "rows": len(df), "revenue": float(s["revenue"].sum())}

    @DBOS.workflow(name="bench_data_three")
    def three(rows: int, seed: int) -> dict[str, Any]:
        return summarize(transform(make(rows, seed)))

    return three


# ── one case, in a child process ──


def _status(key: str) -> int:
    """A ``/proc/self/status`` figure (kB) in bytes."""
    with open("/proc/self/status") as fh:
        m = re.search(rf"^{key}:\s+(\d+) kB", fh.read(), re.M)
    return int(m.group(1)) * 1024 if m else 0


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # resets VmHWM to the current RSS
        return True
    except OSError:
        return False


def db_bytes(url: str) -> int:
    """SQLite: the file + its WAL; PostgreSQL: ``pg_database_size``."""
    if url.startswith("sqlite"):
        path = Path(url.split(":///", 1)[1])
        return sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())
    q = Sql(url)
    try:
        return int(q("SELECT pg_database_size(current_database())")[0][0])
    finally:
        q.close()


def _timed(url: str, run: Any) -> dict[str, Any]:
    before = db_bytes(url)
    rss = _status("VmRSS")
    reset = _reset_peak()
    start = time.perf_counter()
    rows, revenue = run()
    wall = time.perf_counter() - start
    peak = _status("VmHWM") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"wall_s": wall, "peak": peak, "peak_how": "VmHWM" if reset else "ru_maxrss",
            "rss_before": rss, "db_growth": db_bytes(url) - before,
            "rows": rows, "revenue": revenue}  # fmt: skip


def child(spec: dict[str, Any]) -> dict[str, Any]:
    import pandas  # noqa: F401  (imported before timing, by both engines alike)
    import pyarrow.parquet  # noqa: F401

    url, rows = spec["url"], spec["rows"]
    if spec["engine"] == "ours":
        connectors, wf = _ours_workflow()
        with our_kit(url, artifacts=spec["artifacts"], start=False) as kit:
            kit.register(*connectors).start()

            def run() -> tuple[int, float]:
                out = kit.run(wf, {"rows": rows, "seed": SEED}).result(timeout=3600)
                return out["summarize"]["rows"], out["summarize"]["revenue"]

            return _timed(url, run)
    from dbos import DBOS

    three = _dbos_workflow()  # registered before launch
    with dbos_launched(url, sqlite_pragmas=("WAL", "FULL")):

        def run_dbos() -> tuple[int, float]:
            out = DBOS.start_workflow(three, rows, SEED).get_result()
            return out["rows"], out["revenue"]

        return _timed(url, run_dbos)


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    res = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)],
        cwd=ROOT, capture_output=True, text=True, timeout=3600,
    )  # fmt: skip
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    if res.returncode != 0 or not lines:
        raise RuntimeError(
            f"{spec['engine']} on {spec['url']} failed (exit {res.returncode}):\n"
            + (res.stderr or res.stdout)[-2000:]
        )
    return dict(json.loads(lines[-1]))


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# ── the parent: cases, rounds, report ──


def measure_case(
    engine: str, db: str, folder: Path, rows: int, server: Server | None
) -> dict[str, Any]:
    """One run of ``engine`` on a fresh ``db`` in a child process; the database, files and
    artifacts it made are removed before returning (measured again, on a fresh database,
    when PostgreSQL restarted meanwhile)."""

    def once() -> dict[str, Any]:
        folder.mkdir()
        name = ""
        try:
            if db == "sqlite":
                url = f"sqlite:///{folder}/runs.db"
            else:
                assert server is not None
                url = server.database(f"{engine}_{os.urandom(3).hex()}", create=engine == "ours")
                name = sa.engine.make_url(url).database or ""
            spec = {"engine": engine, "url": url, "rows": rows, "artifacts": str(folder / "a")}
            got = run_child(spec)
            got["artifacts"] = folder_bytes(folder / "a")
            got["stored"] = got["db_growth"] + got["artifacts"]
            return got
        finally:
            shutil.rmtree(folder, ignore_errors=True)
            if name and server is not None:
                server.admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    if server is not None and db == "postgresql":
        return server.measured(f"{engine} on {db}", once)
    return once()


def table_sizes(rows: int) -> dict[str, int]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    df = make_table(rows, SEED)
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(df), sink)  # as ArtifactStore.put_table does
    return {"memory": int(df.memory_usage(deep=True).sum()), "parquet": sink.tell(),
            "pickle": len(pickle.dumps(df))}  # fmt: skip


def mib(x: float | None) -> float | None:
    return None if x is None else x / MIB


def tiny_ratio(a: float | None, b: float | None) -> str:
    if a is None or not b:
        return "-"
    return ratio(a, b) if abs(a / b) >= 0.01 else f"{a / b:.1e}x"


def rows_for(
    label: str, got: dict[str, list[dict[str, Any]]], size: dict[str, int]
) -> list[list[str]]:
    o, d = got["ours"], got["dbos"]

    def col(res: list[dict[str, Any]], key: str, scale: float = 1) -> list[float]:
        return [r[key] / scale for r in res]

    def row(name: str, key: str, scale: float, digits: int, tiny: bool = False) -> list[str]:
        ov, dv = median(col(o, key, scale)), median(col(d, key, scale))
        cell = lambda xs, v: fmt(v, digits) + spread(xs, digits)  # noqa: E731
        return [name, cell(col(o, key, scale), ov), cell(col(d, key, scale), dv),
                (tiny_ratio if tiny else ratio)(ov, dv)]  # fmt: skip

    def share(res: list[dict[str, Any]], of: str) -> str:
        v = median(col(res, "db_growth"))
        return "-" if v is None else f"{100 * v / size[of]:.3g}%"

    arts = median(col(o, "artifacts", MIB))
    return [
        row(f"{label}: 3-step run, wall s", "wall_s", 1, 2),
        row("  peak RSS during the run, MiB", "peak", MIB, 0),
        row("  RSS before the run, MiB", "rss_before", MIB, 0),
        row("  database growth, MiB", "db_growth", MIB, 3, tiny=True),
        ["  database growth / table in memory", share(o, "memory"), share(d, "memory"), ""],
        ["  database growth / table as Parquet", share(o, "parquet"), share(d, "parquet"), ""],
        ["  artifact folder, MiB", fmt(arts) + spread(col(o, "artifacts", MIB), 1), "-", ""],
        row("  stored: database growth + artifacts, MiB", "stored", MIB, 1),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="rows of the table")
    ap.add_argument("--repeat", type=int, default=3, help="rounds; medians over all of them")
    ap.add_argument("--db", default="sqlite,postgresql", help="databases: sqlite, postgresql")
    ap.add_argument("--pg", default=DEFAULT_PG, help="a PostgreSQL database to connect to")
    ap.add_argument("--no-dbos", action="store_true", help="skip DBOS")
    ap.add_argument("--child", help=argparse.SUPPRESS)  # one case, as JSON (internal)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))), flush=True)
        return
    dbs = [x.strip() for x in args.db.split(",") if x.strip()]
    if unknown := set(dbs) - {"sqlite", "postgresql"}:
        raise SystemExit(f"unknown database(s): {', '.join(sorted(unknown))}")
    dbos_error = dbos_missing(args.no_dbos)
    engines = ["ours"] + (["dbos"] if dbos_error is None else [])

    tmp = Path(tempfile.mkdtemp(prefix="thodare-data-"))
    server: Server | None = None
    pg_info = ""
    try:
        if "postgresql" in dbs:
            try:
                server = Server(args.pg, prefix="thodare_data")
                pg_info = f", PostgreSQL {server.version().split()[0]} ({server.settings()})"
            except Exception as e:  # say why, measure SQLite
                print(f"PostgreSQL not measured: {type(e).__name__}: {e}")
                dbs.remove("postgresql")
        size = table_sizes(args.rows)
        print(f"python {platform.python_version()}, sqlite {sqlite3.sqlite_version}{pg_info}, "
              f"{os.cpu_count()} cpus; {args.rows:,} rows x 10 columns: "
              f"{size['memory'] / MIB:,.1f} MiB in memory, {size['parquet'] / MIB:,.1f} MiB as "
              f"Parquet, {size['pickle'] / MIB:,.1f} MiB pickled; files in {tmp}",
              flush=True)  # fmt: skip
        got: dict[str, dict[str, list[dict[str, Any]]]] = {
            db: {"ours": [], "dbos": []} for db in dbs
        }
        started = time.monotonic()
        for rnd in range(args.repeat):
            for db in dbs:
                for engine in list(engines):
                    print(f"[{time.monotonic() - started:4.0f} s] round {rnd + 1}/{args.repeat}: "
                          f"{engine} on {db}", flush=True)  # fmt: skip
                    try:
                        r = measure_case(engine, db, tmp / f"{engine}-{db}-{rnd}", args.rows,
                                         server)  # fmt: skip
                    except Exception as e:
                        if engine == "ours":
                            raise
                        dbos_error = f"{type(e).__name__}: {e}"  # say why, keep ours
                        engines.remove("dbos")
                        continue
                    got[db][engine].append(r)
                    print(f"    {r['wall_s']:.2f} s, peak RSS {r['peak'] / MIB:,.0f} MiB, "
                          f"database +{r['db_growth'] / MIB:,.3f} MiB, artifacts "
                          f"{r['artifacts'] / MIB:,.1f} MiB; {r['rows']:,} rows summed to "
                          f"{r['revenue']:,.2f}", flush=True)  # fmt: skip
        checks = {(r["rows"], round(r["revenue"], 2)) for g in got.values() for rs in g.values()
                  for r in rs}  # fmt: skip
        assert len(checks) == 1, f"the engines disagree on the result: {checks}"
        how = {r["peak_how"] for g in got.values() for rs in g.values() for r in rs}

        labels = {"sqlite": "SQLite (WAL, FULL)", "postgresql": "PostgreSQL"}
        print()
        print_table(
            ["metric", "ours", "DBOS", "ours/DBOS"],
            [row for db in dbs for row in rows_for(labels[db], got[db], size)],
        )
        print(
            f"\n{args.rows:,} rows x 10 columns (3 int, 3 float, 2 str, 2 datetime): "
            f"{size['memory'] / MIB:,.1f} MiB in memory (pandas, deep), "
            f"{size['parquet'] / MIB:,.1f} MiB as Parquet, {size['pickle'] / MIB:,.1f} MiB "
            "pickled (DBOS stores it base64: 4/3 of that).\n"
            "make -> transform (qty > 0, + total) -> summarize (8 rows). ours: a kit, Table "
            "outputs and params, kit.run + handle.result() (loads every step's output, the "
            "two big\ntables included); DBOS: @DBOS.workflow of 3 @DBOS.step, start_workflow "
            "+ get_result() (the summary). Each case in its own child process, on\na fresh "
            "database, one run, no warm-up. Peak RSS: "
            + ("VmHWM reset just before the run" if how == {"VmHWM"} else
               "ru_maxrss of the child (the reset of VmHWM was refused)")
            + f". Medians of {args.repeat} round(s) (range in brackets).\n"
            "Database growth: SQLite file + WAL, PostgreSQL pg_database_size, before the "
            "run and after its result. The machine is shared (2 cpus, other jobs):\n"
            "times move with its load."
        )  # fmt: skip
        print("\ngoals (issue 15):")
        for db in dbs:
            v = median(r["db_growth"] for r in got[db]["ours"])
            if v is None:
                continue
            ok = "PASS" if v < GOAL * size["parquet"] else "MISS"
            print(f"  {ok}  {labels[db]}: the database grows < 1% of the table's size "
                  f"({v / MIB:,.3f} MiB = {100 * v / size['parquet']:.3g}% of its Parquet, "
                  f"{100 * v / size['memory']:.3g}% of it in memory)")  # fmt: skip
        if dbos_error:
            print(f"\nDBOS not measured (or not fully): {dbos_error}")
        print(f"\ntotal {time.monotonic() - started:.0f} s")
    finally:
        if server is not None:
            server.drop_all()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
