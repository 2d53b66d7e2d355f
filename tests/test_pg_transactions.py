"""PostgreSQL: connections stay in autocommit (no switch per checkout); a write of several
statements sends its own BEGIN and is atomic, one of one statement, a read or a connection
asked for autocommit sends none."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from thodare_jupyter.durable.database import Database

_IDLE, _INTRANS = 0, 2  # psycopg's pq.TransactionStatus


def test_a_write_is_one_transaction_on_an_autocommit_connection(pg_url: str) -> None:
    db = Database(pg_url)
    try:
        for lazy in (False, True):
            with db.write(lazy=lazy) as c:
                driver = c.connection.driver_connection
                assert driver.autocommit is True  # type: ignore[union-attr]
                assert driver.info.transaction_status == _INTRANS  # type: ignore[union-attr]
                c.exec_driver_sql("CREATE TABLE IF NOT EXISTS t (x int)")
            with pytest.raises(KeyError), db.write(lazy=lazy) as c:
                c.exec_driver_sql("INSERT INTO t VALUES (1)")
                raise KeyError  # the insert is rolled back
            with db.write(lazy=lazy) as c:
                c.exec_driver_sql("INSERT INTO t VALUES (2)")
                c.exec_driver_sql("INSERT INTO t VALUES (3)")
            with db.write(lazy=lazy, single=True) as c:
                driver = c.connection.driver_connection
                assert driver.info.transaction_status == _IDLE  # type: ignore[union-attr]
                c.exec_driver_sql("INSERT INTO t VALUES (4)")
        with db.read() as c:
            driver = c.connection.driver_connection
            assert driver.info.transaction_status == _IDLE  # type: ignore[union-attr]
            got = sorted(r[0] for r in c.exec_driver_sql("SELECT x FROM t"))
        assert got == [2, 2, 3, 3, 4, 4]
        with db.engine.begin() as c:  # the engine's own transactions begin too
            c.exec_driver_sql("DELETE FROM t")
            c.rollback()
        with db.read() as c:
            assert c.exec_driver_sql("SELECT count(*) FROM t").scalar() == 6
        with db.engine.connect() as c:  # autocommit asked for: no BEGIN (VACUUM refuses one)
            c.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM t")
    finally:
        db.dispose()


def test_the_event_lock_is_held_until_the_write_commits(pg_url: str) -> None:
    """``lock_event`` takes a transaction lock: it must last the whole write."""
    db, other = Database(pg_url, "n"), Database(pg_url, "n")
    try:
        with db.write() as c:
            db.lock_event(c, "paid")
            with other.read() as o:
                held = o.execute(
                    sa.text("SELECT pg_try_advisory_xact_lock(7272, hashtext('n/paid'))")
                ).scalar()
            assert held is False
        with other.write() as o:
            assert o.execute(
                sa.text("SELECT pg_try_advisory_xact_lock(7272, hashtext('n/paid'))")
            ).scalar()
    finally:
        db.dispose()
        other.dispose()
