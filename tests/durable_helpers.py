"""Plain helpers shared by the durable tests (a module, not a test file).

* reading the database directly, with ``sqlite3`` for a SQLite file (a path or a
  ``sqlite:///`` URL) or ``psycopg`` for a ``postgresql+psycopg://`` URL (no
  package code; SQL is written with ``?`` placeholders for both): :func:`q`
  (rows as tuples), :func:`dict_rows`, :func:`step_rows` / :func:`run_row` (rows as
  dicts), :func:`steps_of`, :func:`run_status`, :func:`parked`,
  :func:`table_names` and :func:`database_text` (every byte it holds for us);
* :data:`PG_ONLY`, which runs a test that takes ``db_url`` on PostgreSQL alone;
* :func:`check_chaos_runs`, the shared verdict of the chaos proofs (the
  ``dp_chaos`` side-effect lines of ``durable_procs`` against the stored rows);
* :func:`wait_until`, a polling wait that fails with a message;
* serialized-workflow factories: :func:`block`, :func:`workflow` (a trigger,
  blocks and connections), :func:`chain_wf` (a trigger and a chain of blocks),
  :func:`event_wf` and :func:`duration_wf` (a wait and then a ``transform``).

The ``db``, ``kits``, ``db_url`` and ``any_kits`` fixtures live in
``conftest.py``; :data:`KitFactory` is the type of ``kits``.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import sqlite3
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import BaseModel

from thodare_jupyter import Wfkit

KitFactory = Callable[..., Wfkit]


class NoParams(BaseModel):  # params of a test connector that takes none
    pass


# ── the database, read directly (SQLite file or PostgreSQL URL) ──────────────

PG_ONLY = pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
"""Mark a test that takes ``db_url`` (or ``any_kits``) to run on PostgreSQL only."""


PG_BASE = os.environ.get("THODARE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
"""The test PostgreSQL database (tests make a fresh schema in it)."""


def pg_dsn(url: str = PG_BASE) -> str:
    """A libpq URI for psycopg from a ``postgresql+psycopg://`` URL (its search_path kept)."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def is_pg(db: str | Path) -> bool:
    """True for a PostgreSQL URL; anything else is a SQLite file (a path or a URL)."""
    return str(db).startswith("postgresql")


def sqlite_file(db: str | Path) -> str:
    """The file of a SQLite path or ``sqlite:///`` URL."""
    return str(db).removeprefix("sqlite:///")


def _pg(db: str | Path, sql: str, args: tuple[Any, ...], as_dicts: bool) -> list[Any]:
    import psycopg
    from psycopg.rows import dict_row, tuple_row

    dsn = pg_dsn(str(db))
    sql = sql.replace("%", "%%").replace("?", "%s")
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        cur = conn.cursor(row_factory=dict_row if as_dicts else tuple_row)
        return list(cur.execute(sql, args or None).fetchall())


def q(db: str | Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Rows as tuples, from a separate connection (no package code); ``?`` placeholders."""
    if is_pg(db):
        return _pg(db, sql, args, as_dicts=False)
    con = sqlite3.connect(sqlite_file(db))
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def dict_rows(db: str | Path, sql: str, *args: Any) -> list[dict[str, Any]]:
    """Rows as dicts, from a separate connection (no package code); ``?`` placeholders."""
    if is_pg(db):
        return _pg(db, sql, args, as_dicts=True)
    with db_conn(db) as c:
        return [dict(r) for r in c.execute(sql, args).fetchall()]


@contextlib.contextmanager
def db_conn(db: str | Path) -> Iterator[sqlite3.Connection]:
    """A plain sqlite3 connection to look at the rows directly (rows as ``sqlite3.Row``)."""
    conn = sqlite3.connect(sqlite_file(db), timeout=30)
    conn.row_factory = sqlite3.Row
    try:
        yield conn
    finally:
        conn.close()


def table_names(db: str | Path) -> list[str]:
    """The names of the ``thodare*`` tables (the test's schema on PostgreSQL), sorted."""
    if is_pg(db):
        sql = (
            "SELECT table_name AS name FROM information_schema.tables "
            "WHERE table_schema = current_schema() AND table_name LIKE 'thodare%'"
        )
    else:
        sql = "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'thodare%'"
    return [r[0] for r in q(db, sql + " ORDER BY name")]


def step_rows(db: str | Path, run_id: str) -> dict[str, dict[str, Any]]:
    """The thodare_steps rows of a run (as dicts) by block id."""
    got = dict_rows(db, "SELECT * FROM thodare_steps WHERE run_id = ?", run_id)
    return {r["block_id"]: r for r in got}


def run_row(db: str | Path, run_id: str) -> dict[str, Any]:
    """The thodare_runs row of a run, as a dict."""
    got = dict_rows(db, "SELECT * FROM thodare_runs WHERE id = ?", run_id)
    assert len(got) == 1, run_id
    return got[0]


def steps_of(db: str | Path, run_id: str) -> dict[str, str]:
    """The status of each step of a run, by block id."""
    rows = q(db, "SELECT block_id, status FROM thodare_steps WHERE run_id = ?", run_id)
    return {b: s for b, s in rows}


def database_text(url: str) -> bytes:
    """Every byte the database holds for us: the SQLite file and its WAL, or PG's rows."""
    if url.startswith("sqlite"):
        path = Path(sa.engine.make_url(url).database or "")
        return b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    engine = sa.create_engine(url)
    try:
        with engine.connect() as c:
            names = sa.inspect(c).get_table_names()
            return b"\n".join(
                repr(list(c.execute(sa.text(f'SELECT * FROM "{t}"')))).encode() for t in names
            )
    finally:
        engine.dispose()


def run_status(db: str | Path, run_id: str) -> str:
    """The run's status column."""
    return str(q(db, "SELECT status FROM thodare_runs WHERE id = ?", run_id)[0][0])


def parked(db: str | Path, run_id: str, block_id: str = "wait") -> Callable[[], bool]:
    """True once the run is waiting in the database with ``block_id`` parked."""
    return lambda: (
        run_status(db, run_id) == "waiting" and steps_of(db, run_id).get(block_id) == "waiting"
    )


def wait_until(
    pred: Callable[[], Any], timeout: float = 10.0, what: str = "condition", interval: float = 0.02
) -> Any:
    """Poll ``pred()`` until truthy (and return it); fail with ``what`` after ``timeout`` s."""
    end = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() >= end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


# ── chaos proofs ─────────────────────────────────────────────────────────────


@dataclass
class ChaosTally:
    """What :func:`check_chaos_runs` counted."""

    executions: int  # dp_chaos executions (start lines)
    cut_short: int  # executions whose output was not the one stored (all explained)
    ended_uncommitted: int  # of those, how many had written their end line
    retried_steps: int  # steps executed more than once (one idempotency key each)
    max_attempt: int  # the highest attempt number stored


def check_chaos_runs(
    lines: list[list[str]],
    outs: dict[str, dict[str, Any]],
    runs: dict[str, dict[str, Any]],
    rows: dict[str, dict[str, dict[str, Any]]],
    compute: list[str],
    cut_short: Callable[[list[str]], bool],
    where: str = "",
) -> ChaosTally:
    """The verdict of a chaos proof on ``chaos_workflow`` runs (``durable_procs``).

    ``lines`` are the side-effect file's lines (``read_effects``): ``start|end run
    block attempt key nonce time pid``; ``outs``, ``runs`` and ``rows`` are each
    run's result, ``thodare_runs`` row and ``thodare_steps`` rows by run id;
    ``compute`` the dp_chaos step ids in chain order (c1 … ck). Asserts that

    * every run completed, every compute step is ``completed`` and the chain's
      counter reaches ``len(compute)``;
    * every step's stored output comes from exactly one execution: the one whose
      attempt is in ``thodare_steps.attempt`` (the highest that ran), which wrote
      exactly one ``start`` and one ``end`` line with the nonce of the output;
    * attempts of a step are distinct, and every execution of a step saw the same
      idempotency key, ``<run>:<block>``;
    * no completed step ran again: every start of a step precedes its successor's
      first start (the successor is only dispatched after the commit), and no
      step started after its run ended;
    * every other execution is explained by ``cut_short(start_line)`` (e.g. its
      worker was SIGKILLed while it ran).
    """
    by_step: dict[tuple[str, str], list[tuple[int, list[str]]]] = defaultdict(list)
    for idx, f in enumerate(lines):
        assert f[0] in ("start", "end") and len(f) == 8, f
        by_step[(f[1], f[2])].append((idx, f))
    assert {r for r, _ in by_step} == set(outs), "side effects of an unknown run"

    tally = ChaosTally(0, 0, 0, 0, 0)
    for rid, out in outs.items():
        assert runs[rid]["status"] == "completed", (rid, runs[rid]["error"])
        assert [out[b]["n"] for b in compute] == list(range(1, len(compute) + 1)), rid
        assert {b: rows[rid][b]["status"] for b in compute} == dict.fromkeys(
            compute, "completed"
        ), rid
        first_start: dict[str, int] = {}
        for b in compute:
            recs = by_step[(rid, b)]
            starts = [(i, f) for i, f in recs if f[0] == "start"]
            ends = [(i, f) for i, f in recs if f[0] == "end"]
            first_start[b] = starts[0][0]
            stored = rows[rid][b]["attempt"]
            at = f"run {rid} step {b}{where}"
            attempts = [int(f[3]) for _, f in starts]
            assert len(set(attempts)) == len(attempts), f"{at}: an attempt ran twice"
            assert max(attempts) == stored, f"{at}: attempts {attempts} vs stored {stored}"
            assert {f[4] for _, f in recs} == {f"{rid}:{b}"}, f"{at}: key changed"
            # The stored output comes from exactly one execution: the final attempt.
            final = [f for _, f in starts if int(f[3]) == stored]
            final_end = [f for _, f in ends if int(f[3]) == stored]
            assert len(final) == 1 and len(final_end) == 1, at
            assert out[b]["attempt"] == stored and out[b]["nonce"] == final[0][5], at
            assert final_end[0][5] == final[0][5], at
            # Every other execution was cut short (by a kill, an outage…).
            for _, f in starts:
                if int(f[3]) != stored:
                    tally.cut_short += 1
                    assert cut_short(f), f"{at}: attempt {f[3]} re-ran unexplained: {f}"
            tally.executions += len(starts)
            tally.ended_uncommitted += len(ends) - 1
            tally.retried_steps += len(starts) > 1
            tally.max_attempt = max(tally.max_attempt, stored)
            # No step started after its run had ended.
            assert all(float(f[6]) <= runs[rid]["ended_at"] for _, f in starts), at
        for prev, nxt in itertools.pairwise(compute):
            last_prev = max(i for i, f in by_step[(rid, prev)] if f[0] == "start")
            assert last_prev < first_start[nxt], f"run {rid}: {prev} re-ran after {nxt} began"
    return tally


def killed_while_running(killed: dict[int, float]) -> Callable[[list[str]], bool]:
    """A ``cut_short`` for :func:`check_chaos_runs`: the execution's worker (pid, the
    line's last field) was SIGKILLed after the execution began; ``killed`` maps
    pid -> a time it was dead by (its SIGKILL reaped: a time taken before the kill
    would call a step that began in between unexplained)."""

    def cut(f: list[str]) -> bool:
        pid = int(f[7])
        return pid in killed and killed[pid] >= float(f[6])

    return cut


# ── serialized workflows ─────────────────────────────────────────────────────


def block(block_id: str, type_: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
    """One enabled block of a serialized workflow."""
    return {"id": block_id, "type": type_, "enabled": True, "params": params or {}}


def workflow(
    name: str, blocks: list[dict[str, Any]], connections: list[dict[str, Any]]
) -> dict[str, Any]:
    """A serialized workflow: trigger ``trg`` and ``blocks``, wired by ``connections``."""
    return {
        "version": "1.0.0",
        "metadata": {"name": name},
        "blocks": [block("trg", "trigger_webhook"), *blocks],
        "connections": connections,
    }


def chain_wf(name: str, *blocks: dict[str, Any]) -> dict[str, Any]:
    """A serialized workflow: trigger ``trg`` → ``blocks[0]`` → ``blocks[1]`` → …"""
    ids = ["trg", *(b["id"] for b in blocks)]
    return workflow(
        name, list(blocks), [{"source": a, "target": b} for a, b in itertools.pairwise(ids)]
    )


def event_wf(
    name: str,
    wait_params: dict[str, Any],
    template: Any,
    *,
    wait_id: str = "wait",
    then_id: str = "after",
) -> dict[str, Any]:
    """trigger → ``wait_id`` (wait_for_event) → ``then_id`` (transform of ``template``)."""
    return chain_wf(
        name,
        block(wait_id, "wait_for_event", wait_params),
        block(then_id, "transform", {"template": template}),
    )


def duration_wf(
    name: str, duration: float, unit: str, template: Any, *, then_id: str = "after"
) -> dict[str, Any]:
    """trigger → ``wait`` (wait_duration) → ``then_id`` (transform of ``template``)."""
    return chain_wf(
        name,
        block("wait", "wait_duration", {"duration": duration, "unit": unit}),
        block(then_id, "transform", {"template": template}),
    )
