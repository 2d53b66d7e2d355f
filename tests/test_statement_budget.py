"""The runtime's budget (DESIGN §9): a sequential 3-step run costs a handful of SQL
statements and commits, counted through SQLAlchemy's events on every engine the
store uses (creation, claim, steps, finish, and the caller's wait), on SQLite and
PostgreSQL. Counts, not timings: the same on a busy machine."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from tests.conftest import KitFactory

sys.path.insert(0, str(Path(__file__).parent.parent / "bench"))
from workloads import INC, THREE

RUNS = 20


def test_a_sequential_three_step_run_costs_at_most_eight_statements(
    any_kits: KitFactory,
) -> None:
    kit = any_kits(poll_s=1.0)  # the default poll: a tick costs a few statements
    kit.register(INC)
    kit.start()
    assert kit.run(THREE, {"n": 0}).result(timeout=30)["s3"] == {"n": 3}  # warm: caches, pools
    kinds: Counter[str] = Counter()
    commits = [0]

    def counted(conn: Any, cur: Any, statement: str, *_: Any) -> None:
        kinds[statement.split()[0].upper()] += 1

    def committed(conn: Any) -> None:
        commits[0] += 1

    for engine in kit.store.engines:
        sa.event.listen(engine, "before_cursor_execute", counted)
        sa.event.listen(engine, "commit", committed)
    try:
        for i in range(RUNS):
            assert kit.run(THREE, {"n": i}).result(timeout=30)["s3"] == {"n": i + 3}
    finally:
        for engine in kit.store.engines:
            sa.event.remove(engine, "before_cursor_execute", counted)
            sa.event.remove(engine, "commit", committed)
    statements = sum(n for kind, n in kinds.items() if kind != "BEGIN") / RUNS
    # the create (already claimed by the kit's own worker: no claim) with the first
    # step's start marker, two step writes (each carries the previous step's end and
    # the next one's start), the finish (with the last step's end); each one statement
    # on PostgreSQL, the create and the finish two on SQLite: 4 commits, 4 or 6
    # statements; an occasional poll (schedules, next due run) comes on top
    print(f"statements per run: {statements:.2f}, commits per run: {commits[0] / RUNS:.2f}")
    assert statements <= (6.5 if kit.store.is_sqlite else 4.5), (statements, kinds)
    assert commits[0] / RUNS <= 4.5, (commits, kinds)


def test_runs_in_flight_share_their_commits(any_kits: KitFactory) -> None:
    """Group commit where it pays: on SQLite (one writer) the writes of the runs a
    worker walks at once go in shared transactions, so 100 runs started together cost
    fewer commits each than one run alone (4). On PostgreSQL each run's line of sync
    steps commits from its own thread instead (the server flushes concurrent commits
    together; ``bench/durable.py``: 1.5-2x the runs/s of shared ones), so a run
    costs what it costs alone. Every output is still there."""
    kit = any_kits(poll_s=1.0)
    kit.register(INC)
    kit.start()
    assert kit.run(THREE, {"n": 0}).result(timeout=30)["s3"] == {"n": 3}
    commits = [0]

    def committed(conn: Any) -> None:
        commits[0] += 1

    for engine in kit.store.engines:
        sa.event.listen(engine, "commit", committed)
    try:
        handles = [kit.run(THREE, {"n": i}) for i in range(100)]
        assert [h.result(timeout=60)["s3"]["n"] for h in handles] == [i + 3 for i in range(100)]
    finally:
        for engine in kit.store.engines:
            sa.event.remove(engine, "commit", committed)
    # 100 creations commit on their own; on SQLite the walks' ~300 writes share
    # transactions; on PostgreSQL the steps' writes commit alone
    print(f"commits per run: {commits[0] / 100:.2f}")
    assert commits[0] / 100 < (3.5 if kit.store.is_sqlite else 4.5), commits


def test_postgres_sends_no_begin_or_commit_for_one_statement_writes(pg_url: str) -> None:
    """On PostgreSQL each write of a sequential 3-step run (the creation, the step
    starts and ends, the finish) and each read is one statement: it runs in
    autocommit, so the server gets no BEGIN and no COMMIT round trip for it. A write
    of several statements still gets its transaction."""
    from thodare_jupyter import create_wfkit

    kit = create_wfkit(pg_url, env={}, poll_s=1.0)
    kit.register(INC)
    kit.start()
    try:
        assert kit.run(THREE, {"n": 0}).result(timeout=30)["s3"] == {"n": 3}
        in_transaction: list[bool] = []  # per commit: did the driver open a transaction?

        def committed(conn: Any) -> None:
            # the connections stay in autocommit: a transaction is the BEGIN sent
            in_transaction.append(bool(conn.connection.driver_connection.info.transaction_status))

        for engine in kit.store.engines:
            sa.event.listen(engine, "commit", committed)
        try:
            for i in range(RUNS):
                assert kit.run(THREE, {"n": i}).result(timeout=30)["s3"] == {"n": i + 3}
            with kit.store.write() as c:  # two statements: one transaction
                c.execute(sa.text("SELECT 1"))
                c.execute(sa.text("SELECT 2"))
                assert c.connection.driver_connection.info.transaction_status
        finally:
            for engine in kit.store.engines:
                sa.event.remove(engine, "commit", committed)
        # every run's 4 commits went without BEGIN/COMMIT; a heartbeat may come on top
        assert len(in_transaction) >= 4 * RUNS, len(in_transaction)
        assert sum(in_transaction) <= 3, (sum(in_transaction), len(in_transaction))
    finally:
        kit.close()
