"""Waiting for runs other processes walk: PostgreSQL announces each run's end.

A run's finish (and a cancel) NOTIFYs the database's end channel with the run
id. :class:`RunEnds` listens once per store, from the first wait on, and wakes
the handles waiting for that run, so ``handle.result()`` reads the run when it
ended instead of polling. SQLite has no notifications: handles poll there.
"""

from __future__ import annotations

import threading

from .database import Database
from .listener import PgListener


class RunEnds:
    """The ends of runs announced on one database and namespace (PostgreSQL)."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._changed = threading.Condition()
        self._seen: dict[str, int] = {}  # run id → announcements heard
        self._reconnects = 0  # each (re)connect may have missed some
        self._listener: PgListener | None = None

    def mark(self, run_id: str) -> tuple[int, int]:
        """What has been heard of ``run_id`` so far; pass it to :meth:`wait`.

        Starts listening on first use (and waits up to a second for the
        connection), so an end after this call is not missed.
        """
        with self._changed:
            if self._listener is None:
                self._listener = PgListener(self.db.url, self.db.end_channel, self._heard)
                self._listener.start()
        self._listener.connected.wait(1.0)
        with self._changed:
            return self._seen.get(run_id, 0), self._reconnects

    def wait(self, run_id: str, mark: tuple[int, int], timeout: float) -> None:
        """Block until ``run_id``'s end is heard after ``mark`` (or a reconnect), or ``timeout``."""
        with self._changed:
            self._changed.wait_for(
                lambda: (self._seen.get(run_id, 0), self._reconnects) != mark, timeout
            )

    def _heard(self, payload: str) -> None:
        with self._changed:
            if payload:
                self._seen[payload] = self._seen.get(payload, 0) + 1
                if len(self._seen) > 10_000:  # keep the newest
                    self._seen.pop(next(iter(self._seen)))
            else:
                self._reconnects += 1
            self._changed.notify_all()

    def close(self) -> None:
        """Stop listening."""
        with self._changed:
            listener, self._listener = self._listener, None
        if listener is not None:
            listener.stop()
