"""Changes of a runs database, pushed: one watcher thread per database, shared by
every subscriber (the panels' event streams).

SQLite: ``PRAGMA data_version`` every 250 ms on one connection of its own (it
moves on every commit of any other connection: runs, steps, signals, workers).
PostgreSQL: LISTEN on the namespace's channels (a run created, a signal, a run
ended: at once) and, every 500 ms, the count and newest ``updated_at`` of the
active runs (claims, waits, leases), read from the partial index of active runs.
Subscribers get the new version number; they fetch what they show themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from ..durable.listener import PgListener
from ..durable.store import Store

log = logging.getLogger("thodare.server.live")
SQLITE_EVERY_S = 0.25
PG_EVERY_S = 0.5


class Watcher:
    """Bumps :attr:`version` when the database changes and wakes each subscriber."""

    def __init__(self, store: Store) -> None:
        self.version = 0
        self._store = store
        self._subscribers: set[Callable[[int], None]] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._main, name="thodare-live", daemon=True)
        self._thread.start()

    def subscribe(
        self, loop: asyncio.AbstractEventLoop
    ) -> tuple[asyncio.Event, Callable[[], None]]:
        """An event set (on ``loop``) at each change, and the call that unsubscribes."""
        changed = asyncio.Event()

        def wake(_: int) -> None:
            loop.call_soon_threadsafe(changed.set)

        with self._lock:
            self._subscribers.add(wake)

        def unsubscribe() -> None:
            with self._lock:
                self._subscribers.discard(wake)

        return changed, unsubscribe

    def close(self) -> None:
        """Stop watching (within a second)."""
        self._stop.set()
        self._thread.join(2)

    def _bump(self) -> None:
        self.version += 1
        with self._lock:
            wakes = list(self._subscribers)
        for wake in wakes:
            with contextlib.suppress(RuntimeError):  # that subscriber's loop is closed
                wake(self.version)

    def _main(self) -> None:
        if not self._store.is_sqlite:
            self._watch_pg()
            return
        while not self._stop.is_set():
            try:
                self._watch_sqlite()
            except Exception as e:  # the file went away: look again soon
                log.warning("watching %s for changes failed (%s); retrying", self._store, e)
                self._stop.wait(2.0)

    def _watch_sqlite(self) -> None:
        path = sa.engine.make_url(self._store.url).database or ""
        if path in ("", ":memory:"):
            self._stop.wait()  # nothing another connection could change
            return
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            seen = conn.execute("PRAGMA data_version").fetchone()[0]
            while not self._stop.wait(SQLITE_EVERY_S):
                now = conn.execute("PRAGMA data_version").fetchone()[0]
                if now != seen:
                    seen = now
                    self._bump()
        finally:
            conn.close()

    def _watch_pg(self) -> None:
        """LISTEN (reconnecting with backoff, :class:`PgListener`), and after each wait
        of up to ``PG_EVERY_S`` one bump if anything was notified or the active runs moved."""
        store = self._store
        active = (
            "SELECT count(*), max(updated_at) FROM thodare_runs WHERE namespace = %s "
            "AND status IN ('pending', 'waiting', 'running')"
        )
        seen: list[Any] = [None, False]  # the active runs last looked at; notified since

        def heard(_: str) -> None:
            seen[1] = True

        def look(conn: Any) -> None:
            now = conn.execute(active, (store.namespace,)).fetchone()
            if seen[1] or (seen[0] is not None and now != seen[0]):
                self._bump()
            seen[:] = [now, False]

        listener = PgListener(store.url, [store.channel, store.end_channel], heard,
                              every=PG_EVERY_S, on_tick=look)  # fmt: skip
        listener.start()
        self._stop.wait()
        listener.stop()
