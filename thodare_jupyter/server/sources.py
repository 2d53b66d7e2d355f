"""Which database a request reads: the kernel's it names, else the server's own.

A notebook kernel that loaded the extension tells its database in a 0600 file in
the runtime dir (:mod:`thodare_jupyter.kernel_db`); the panel sends only the
kernel id (``?kernel=``), so no database password ever reaches the browser. A
kernel that told none, or no kernel, reads the server's database
(``c.ThodareServer.db_url``, else ``THODARE_DB``, else the user file).
"""

from __future__ import annotations

import threading
from typing import Literal

from ..kernel_db import KernelDb, read
from .runs import Runs

Source = Literal["kernel", "server"]


class Sources:
    """The server's :class:`Runs` and one per database a kernel told, opened on first use."""

    def __init__(self, default: Runs, runtime_dir: str, artifacts_url: str | None) -> None:
        self.default, self._runtime_dir, self._artifacts_url = default, runtime_dir, artifacts_url
        self._told: dict[KernelDb, Runs] = {}
        self._lock = threading.Lock()

    def get(self, kernel_id: str | None) -> tuple[Runs, Source]:
        """The runs of kernel ``kernel_id``'s database, else the server's; and which."""
        told = read(self._runtime_dir, kernel_id) if kernel_id else None
        if told is None:
            return self.default, "server"
        with self._lock:
            runs = self._told.get(told)
            if runs is None:
                runs = self._told[told] = Runs(told.url, told.namespace, self._artifacts_url)
        return runs, "kernel"

    def close(self) -> None:
        """Close every backend."""
        with self._lock:
            backends, self._told = [self.default, *self._told.values()], {}
        for runs in backends:
            runs.close()
