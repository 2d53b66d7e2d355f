"""The durable runtime's storage: one database, and a store for each idea on it."""

from __future__ import annotations

from .database import Database
from .run_store import RunStore
from .signal_store import SignalStore
from .worker_store import WorkerStore


class Store(Database):
    """One database URL and namespace with its stores: ``runs`` (runs and steps),
    ``workers`` (who is alive, leases) and ``signals``."""

    def __init__(
        self,
        url: str,
        namespace: str = "default",
        *,
        sqlite_sync: str = "FULL",
        outage_s: float = 60.0,
    ) -> None:
        super().__init__(url, namespace, sqlite_sync=sqlite_sync, outage_s=outage_s)
        self.runs = RunStore(self)
        self.workers = WorkerStore(self)
        self.signals = SignalStore(self)
