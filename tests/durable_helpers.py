"""Plain helpers shared by the durable tests (a module, not a test file).

* reading the SQLite file directly with ``sqlite3`` (no package code): :func:`q`
  (rows as tuples), :func:`step_rows` / :func:`run_row` (rows as dicts),
  :func:`steps_of`, :func:`run_status` and :func:`parked`;
* :func:`wait_until`, a polling wait that fails with a message;
* serialized-workflow factories: :func:`block`, :func:`workflow` (a trigger,
  blocks and connections), :func:`chain_wf` (a trigger and a chain of blocks),
  :func:`event_wf` and :func:`duration_wf` (a wait and then a ``transform``).

The ``db`` and ``kits`` fixtures live in ``conftest.py``; :data:`KitFactory` is
the type of ``kits``.
"""

from __future__ import annotations

import contextlib
import itertools
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from thodare_jupyter import Wfkit

KitFactory = Callable[..., Wfkit]


class NoParams(BaseModel):  # params of a test connector that takes none
    pass


# ── the SQLite file, read directly ───────────────────────────────────────────


def q(db: str | Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Rows straight from the SQLite file (a separate connection, no package code)."""
    con = sqlite3.connect(db)
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


@contextlib.contextmanager
def db_conn(db: str | Path) -> Iterator[sqlite3.Connection]:
    """A plain sqlite3 connection to look at the rows directly (rows as ``sqlite3.Row``)."""
    conn = sqlite3.connect(str(db), timeout=30)
    conn.row_factory = sqlite3.Row
    try:
        yield conn
    finally:
        conn.close()


def step_rows(db: str | Path, run_id: str) -> dict[str, dict[str, Any]]:
    """The thodare_steps rows of a run (as dicts) by block id."""
    with db_conn(db) as c:
        rows = c.execute("SELECT * FROM thodare_steps WHERE run_id = ?", (run_id,)).fetchall()
    return {r["block_id"]: dict(r) for r in rows}


def run_row(db: str | Path, run_id: str) -> dict[str, Any]:
    """The thodare_runs row of a run, as a dict."""
    with db_conn(db) as c:
        row = c.execute("SELECT * FROM thodare_runs WHERE id = ?", (run_id,)).fetchone()
    assert row is not None, run_id
    return dict(row)


def steps_of(db: str | Path, run_id: str) -> dict[str, str]:
    """The status of each step of a run, by block id."""
    rows = q(db, "SELECT block_id, status FROM thodare_steps WHERE run_id = ?", run_id)
    return {b: s for b, s in rows}


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
