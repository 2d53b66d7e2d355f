"""PostgreSQL LISTEN/NOTIFY: wake a worker the moment a run or a signal lands.

Polling stays as the fallback: when the listening connection is lost, the
worker keeps polling and the listener reconnects with backoff.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa

log = logging.getLogger("thodare.listener")


class PgListener:
    """A thread that LISTENs on ``channels`` and calls ``on_notify(payload)`` for each
    NOTIFY but those whose payload is ``skip`` (sent by this process, which woke
    itself); ``on_notify("")`` after each (re)connect, for what may have been missed.
    ``on_tick(connection)``, if given, after each wait of up to ``every`` seconds for
    notifications (a look of its own on the same connection)."""

    def __init__(
        self,
        url: str,
        channels: str | Sequence[str],
        on_notify: Callable[[str], None],
        skip: str = "",
        *,
        every: float = 0.5,
        on_tick: Callable[[Any], None] | None = None,
    ) -> None:
        u = sa.engine.make_url(url)
        self._dsn = u.set(drivername="postgresql").render_as_string(hide_password=False)
        self._channels = [channels] if isinstance(channels, str) else list(channels)
        self._on_notify = on_notify
        self._skip = skip
        self._every = every
        self._on_tick = on_tick
        self._stop = threading.Event()
        self.connected = threading.Event()
        self._thread = threading.Thread(target=self._main, name="thodare-listen", daemon=True)

    def start(self) -> None:
        """Start listening in the background."""
        self._thread.start()

    def stop(self) -> None:
        """Stop listening (returns within about ``every`` seconds)."""
        self._stop.set()
        self._thread.join(5)

    def _main(self) -> None:
        import psycopg

        delay = 0.1
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._dsn, autocommit=True, connect_timeout=5) as conn:
                    for channel in self._channels:
                        conn.execute(f'LISTEN "{channel}"')
                    self.connected.set()
                    delay = 0.1
                    self._on_notify("")  # catch up on anything sent while we were away
                    while not self._stop.is_set():
                        for n in conn.notifies(timeout=self._every):
                            if not self._skip or n.payload != self._skip:
                                self._on_notify(n.payload)
                        if self._on_tick is not None:
                            self._on_tick(conn)
            except psycopg.Error as e:
                if self.connected.is_set():
                    log.warning("LISTEN connection lost (%s); polling until it is back", e)
                self.connected.clear()
                self._stop.wait(delay)
                delay = min(5.0, delay * 2)
