"""The durable runtime's storage: one database, and a store for each idea on it."""

from __future__ import annotations

from .child_store import ChildStore
from .database import Database
from .flow_store import FlowStore
from .log_store import LogStore
from .run_ends import RunEnds
from .run_store import RunStore
from .signal_store import SignalStore
from .worker_store import WorkerStore


class Store(Database):
    """One database URL and namespace with its stores: ``runs`` (runs and steps),
    ``workers`` (who is alive, leases), ``signals``, ``logs`` (step logs), ``flow``
    (connectors' flow control), ``children`` (child runs of ``run_workflow``); on
    PostgreSQL ``run_ends`` (runs' ends announced, for handles waiting in this process)."""

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
        self.logs = LogStore(self)
        self.flow = FlowStore(self)
        self.children = ChildStore(self, self.runs)
        self.run_ends = None if self.is_sqlite else RunEnds(self)

    def dispose(self) -> None:
        """Stop listening and close every pooled connection."""
        if self.run_ends is not None:
            self.run_ends.close()
        super().dispose()
