"""Workers: who is alive, what each can run, the leases it holds."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

import sqlalchemy as sa

from .database import Database, retrying
from .records import WorkerRow, dumps
from .schema import runs, workers


class WorkerStore:
    """The workers of one database and namespace, and their leases on runs."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @retrying
    def register_worker(
        self, owner: str, kind: str, types: Sequence[str], concurrency: int, lease_s: float
    ) -> None:
        """Record a worker and what it can run; forget workers gone for over an hour."""
        now = time.time()
        row = {"namespace": self.db.namespace, "id": owner, "kind": kind,
               "connector_types": dumps(sorted(types)), "concurrency": concurrency,
               "lease_s": lease_s, "started_at": now, "heartbeat_at": now}  # fmt: skip
        with self.db.write() as c:
            c.execute(workers.delete().where(
                workers.c.namespace == self.db.namespace, workers.c.heartbeat_at < now - 3600
            ))  # fmt: skip
            c.execute(workers.delete().where(workers.c.id == owner))
            c.execute(workers.insert(), row)
            self.db.notify(c)  # a run that waited for these connectors may be claimable now

    @retrying
    def list_workers(self, live_only: bool = True) -> list[WorkerRow]:
        """Workers of this namespace (by default those whose last heartbeat is within
        their lease), each with the count of runs it holds."""
        held = (
            sa.select(sa.func.count())
            .where(
                runs.c.namespace == workers.c.namespace,
                runs.c.status == "running",
                runs.c.lease_owner == workers.c.id,
            )
            .scalar_subquery()
        )
        q = sa.select(workers, held.label("held")).where(workers.c.namespace == self.db.namespace)
        if live_only:
            q = q.where(workers.c.heartbeat_at + workers.c.lease_s >= time.time())
        with self.db.read() as c:
            rows = c.execute(q.order_by(workers.c.started_at)).all()
        return [
            WorkerRow(id=r.id, kind=r.kind, connector_types=json.loads(r.connector_types),
                      concurrency=r.concurrency, lease_s=r.lease_s, started_at=r.started_at,
                      heartbeat_at=r.heartbeat_at, runs_held=r.held)
            for r in rows
        ]  # fmt: skip

    @retrying
    def heartbeat(
        self, owner: str, run_ids: Sequence[str], lease_s: float, types: Sequence[str] = ()
    ) -> set[str]:
        """Extend leases and say this worker (with connector ``types``) is alive;
        returns the ids it still owns (and that are not canceled)."""
        with self.db.write(lazy=True) as c:
            now = time.time()
            c.execute(
                workers.update()
                .where(workers.c.namespace == self.db.namespace, workers.c.id == owner)
                .values(heartbeat_at=now, connector_types=dumps(sorted(types)))
            )
            if not run_ids:
                return set()
            c.execute(
                runs.update()
                .where(
                    runs.c.id.in_(run_ids), runs.c.lease_owner == owner, runs.c.status == "running"
                )
                .values(lease_expires_at=now + lease_s, updated_at=now)
            )
            kept = (
                c.execute(
                    sa.select(runs.c.id).where(
                        runs.c.id.in_(run_ids),
                        runs.c.lease_owner == owner,
                        runs.c.status == "running",
                    )
                )
                .scalars()
                .all()
            )
        return set(kept)

    @retrying
    def release(self, owner: str) -> None:
        """Hand back every run this worker holds and forget it (a clean shutdown)."""
        with self.db.write() as c:
            c.execute(workers.delete().where(workers.c.id == owner))
            c.execute(
                runs.update()
                .where(
                    runs.c.namespace == self.db.namespace,
                    runs.c.status == "running",
                    runs.c.lease_owner == owner,
                )
                .values(
                    status="pending", lease_owner=None, lease_expires_at=None, wake_at=time.time()
                )
            )
            self.db.notify(c)
