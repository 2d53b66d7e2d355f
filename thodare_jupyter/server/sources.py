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
    """The server's :class:`Runs` and one per database kernels told (shared by the kernels
    that told the same one), opened on first use and closed when no live kernel tells it."""

    def __init__(self, default: Runs, runtime_dir: str, artifacts_url: str | None) -> None:
        self.default, self._runtime_dir, self._artifacts_url = default, runtime_dir, artifacts_url
        self._told: dict[KernelDb, Runs] = {}
        self._kernels: dict[str, KernelDb] = {}
        self._lock = threading.Lock()

    def get(self, kernel_id: str | None) -> tuple[Runs, Source]:
        """The runs of kernel ``kernel_id``'s database, else the server's; and which."""
        told = read(self._runtime_dir, kernel_id) if kernel_id else None
        gone: Runs | None = None
        runs: Runs = self.default
        source: Source = "server"
        with self._lock:
            before = self._kernels.pop(kernel_id, None) if kernel_id else None
            if told is not None:
                assert kernel_id is not None
                self._kernels[kernel_id] = told
                if told not in self._told:
                    self._told[told] = Runs(told.url, told.namespace, self._artifacts_url)
                runs, source = self._told[told], "kernel"
            if before is not None and before != told:  # the kernel went away, or moved
                gone = self._forget(before)
        if gone is not None:
            gone.close()
        return runs, source

    def _forget(self, told: KernelDb) -> Runs | None:  # under the lock
        """The backend of ``told`` when no kernel tells it any more (to close), else None."""
        if told in self._kernels.values():
            return None
        return self._told.pop(told, None)

    def close(self) -> None:
        """Close every backend."""
        with self._lock:
            backends, self._told, self._kernels = [self.default, *self._told.values()], {}, {}
        for runs in backends:
            runs.close()
