"""A handle in a process that does not walk the run waits for PostgreSQL's
announcement of its end instead of polling: few reads, woken at once; a cancel
is announced too. (SQLite has no notifications: there handles poll.)"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import BaseModel

from thodare_jupyter import RunCanceled, create_wfkit, define_connector, define_workflow

SLEEP_S = 1.5


class Nap(BaseModel):
    s: float


def _nap(p: Nap) -> Nap:
    time.sleep(p.s)
    return p


NAP = define_connector(type="test-nap", params=Nap, outputs=Nap, run=_nap)
NAPPER = define_workflow("napper").input(Nap).step("nap", NAP, lambda r: {"s": r.input.s}).build()


def _reads(engines: Any) -> Counter[str]:
    seen: Counter[str] = Counter()

    def counted(conn: Any, cur: Any, statement: str, *_: Any) -> None:
        seen[statement.split()[0].upper()] += 1

    for e in engines:
        sa.event.listen(e, "before_cursor_execute", counted)
    return seen


def test_result_from_another_process_waits_for_the_announced_end(pg_url: str) -> None:
    walker = create_wfkit(pg_url, env={}, poll_s=1.0).register(NAP)
    client = create_wfkit(pg_url, env={}).register(NAP)  # never started: it only waits
    try:
        walker.start()
        handle = client.run(NAPPER, {"s": SLEEP_S})
        seen = _reads(client.store.engines)
        out = handle.result(timeout=30)
        woke = time.time()
        ended_at = walker.get_handle(handle.id).describe().ended_at
    finally:
        client.close()
        walker.close()
    assert out["nap"] == {"s": SLEEP_S}
    # polling every 50 ms for 1.5 s would be ~30 reads; woken by the announcement: 2
    assert sum(seen.values()) <= 3, seen
    from thodare_jupyter.clock import from_iso

    assert woke - (from_iso(ended_at) or 0) < 0.5


def test_a_cancel_wakes_a_waiting_handle_at_once(pg_url: str) -> None:
    walker = create_wfkit(pg_url, env={}).register(NAP)
    client = create_wfkit(pg_url, env={}).register(NAP)
    try:
        walker.start()
        handle = client.run(NAPPER, {"s": 20.0})
        threading.Timer(1.0, lambda: walker.cancel(handle.id)).start()
        t0 = time.monotonic()
        with pytest.raises(RunCanceled):
            handle.result(timeout=15)
        waited = time.monotonic() - t0
    finally:
        client.close()
        walker.close()
    assert waited < 3.0  # not the 5 s recheck, nor the 20 s step
