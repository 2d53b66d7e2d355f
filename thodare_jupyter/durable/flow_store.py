"""Flow control in the database: connector slots and token buckets, namespace-wide.

Taking a slot is one short write transaction (on PostgreSQL under an advisory
lock on the connector type; SQLite lets one writer in anyway); a step that finds
none sleeps outside any transaction and tries again. A slot lives until its
``expires_at``, which the holder's heartbeat extends with its lease, so a
crashed worker's slots free themselves. Connectors without flow control never
come here: they cost no statement.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..connectors.flow import Flow, refill
from .database import Database, retrying
from .schema import flow_buckets, flow_slots

_LOCK_TYPE = sa.text("SELECT pg_advisory_xact_lock(7273, hashtext(:ns || '/' || :type))")


class FlowStore:
    """The slots and buckets of one database and namespace."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @retrying
    def take(
        self, flow: Flow, run_id: str, block_id: str, owner: str, lease_s: float
    ) -> tuple[str | None, float]:
        """Take a slot (when ``flow`` limits concurrency) and a token (when it limits
        the rate): ``(holder, 0.0)`` (``holder`` is ``None`` without a slot to give
        back), or ``(None, seconds)`` to wait before trying again (``-1.0``: unknown)."""
        ns, now = self.db.namespace, time.time()
        with self.db.write(lazy=True) as c:
            if not self.db.is_sqlite:
                c.execute(_LOCK_TYPE, {"ns": ns, "type": flow.type})
            mine = (flow_slots.c.namespace == ns, flow_slots.c.type == flow.type)
            if flow.concurrency is not None:
                c.execute(flow_slots.delete().where(*mine, flow_slots.c.expires_at < now))
                held = c.execute(sa.select(sa.func.count()).where(*mine)).scalar_one()
                if held >= flow.concurrency:
                    return None, -1.0
            if flow.per_s is not None and (wait := self._token(c, flow, now)) > 0:
                return None, wait
            if flow.concurrency is None:
                return None, 0.0
            holder = uuid.uuid4().hex
            c.execute(flow_slots.insert(), {
                "namespace": ns, "type": flow.type, "holder": holder, "run_id": run_id,
                "block_id": block_id, "owner": owner, "expires_at": now + lease_s,
            })  # fmt: skip
            return holder, 0.0

    def _token(self, c: Connection, flow: Flow, now: float) -> float:
        """Take a token: 0.0, or the seconds until the bucket holds one."""
        assert flow.per_s is not None
        key = (flow_buckets.c.namespace == self.db.namespace, flow_buckets.c.type == flow.type)
        found = c.execute(
            sa.select(flow_buckets.c.tokens, flow_buckets.c.refilled_at).where(*key)
        ).first()
        tokens = 1.0 if found is None else refill(found.tokens, found.refilled_at, now, flow.per_s)
        if tokens < 1.0:
            return (1.0 - tokens) / flow.per_s
        if found is None:
            c.execute(flow_buckets.insert(), {
                "namespace": self.db.namespace, "type": flow.type, "tokens": tokens - 1.0,
                "refilled_at": now,
            })  # fmt: skip
        else:
            c.execute(
                flow_buckets.update().where(*key).values(tokens=tokens - 1.0, refilled_at=now)
            )
        return 0.0

    def release_in(self, c: Connection, holders: Sequence[str]) -> None:
        """Give back slots, in the caller's transaction (a step's end)."""
        if holders:
            c.execute(flow_slots.delete().where(
                flow_slots.c.namespace == self.db.namespace, flow_slots.c.holder.in_(holders)
            ))  # fmt: skip

    @retrying
    def release(self, holders: Sequence[str]) -> None:
        """Give back slots in a transaction of their own."""
        with self.db.write(lazy=True) as c:
            self.release_in(c, holders)

    @retrying
    def extend(self, holders: Sequence[str], lease_s: float) -> None:
        """Keep the slots of attempts still running alive for one more lease (heartbeat)."""
        with self.db.write(lazy=True) as c:
            c.execute(
                flow_slots.update()
                .where(
                    flow_slots.c.namespace == self.db.namespace, flow_slots.c.holder.in_(holders)
                )
                .values(expires_at=time.time() + lease_s)
            )
