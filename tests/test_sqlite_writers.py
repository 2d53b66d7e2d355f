"""SQLite: the writes of a database keep one connection of each kind checked out (they
take turns on the file's writer lock anyway): no pool checkout per write, a lazy write
never waits for the disk and a durable one always does, and ``dispose`` closes them."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from thodare_jupyter.durable.database import Database

_NORMAL, _FULL = 1, 2  # PRAGMA synchronous


def _sync(c: sa.Connection) -> Any:
    return c.exec_driver_sql("PRAGMA synchronous").scalar()


def test_writes_keep_their_connections(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'w.db'}")
    checkouts: list[Any] = []
    sa.event.listen(db.engine, "checkout", lambda *a: checkouts.append(a))
    try:
        for lazy in (False, True, False, True):
            with db.write(lazy=lazy) as c:
                assert _sync(c) == (_NORMAL if lazy else _FULL)
                c.exec_driver_sql("CREATE TABLE IF NOT EXISTS t (x INTEGER)")
                c.exec_driver_sql("INSERT INTO t VALUES (1)")
        assert len(checkouts) == 2  # the first durable and the first lazy write

        def other_thread() -> None:
            with db.write() as c:
                c.exec_driver_sql("INSERT INTO t VALUES (2)")

        t = threading.Thread(target=other_thread)
        t.start()
        t.join()
        assert len(checkouts) == 2  # the other thread's write took the same connection
        with db.read() as c:
            assert sorted(r[0] for r in c.exec_driver_sql("SELECT x FROM t")) == [1, 1, 1, 1, 2]
    finally:
        db.dispose()
    assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
