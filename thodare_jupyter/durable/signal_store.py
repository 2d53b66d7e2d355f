"""Signals: stored events that wake the runs waiting for them, consumed once per run."""

from __future__ import annotations

import json
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from .database import Database, retrying
from .records import dumps
from .run_store import check_lease
from .schema import consumptions, runs, signals, steps


class SignalSent(int):
    """A stored signal's id (an ``int``, as before) and what sending it did: ``woke``
    runs that were waiting for it then; runs that reach the wait later get it too."""

    woke: int
    event: str
    correlation_key: str | None
    created: bool

    def __new__(
        cls,
        signal_id: int,
        *,
        woke: int,
        event: str,
        correlation_key: str | None = None,
        created: bool = True,
    ) -> SignalSent:
        sent = super().__new__(cls, signal_id)
        sent.woke, sent.event, sent.correlation_key = woke, event, correlation_key
        sent.created = created
        return sent

    @property
    def id(self) -> int:
        """The signal's id."""
        return int(self)

    def __getnewargs_ex__(self) -> tuple[tuple[int], dict[str, Any]]:  # copy and pickle
        kw = {"woke": self.woke, "event": self.event, "correlation_key": self.correlation_key,
              "created": self.created}  # fmt: skip
        return (int(self),), kw

    def __repr__(self) -> str:
        return f"SignalSent(id={int(self)}, woke={self.woke})"

    def message(self) -> str:
        """What happened, in a sentence: how many runs it woke, and that it is kept."""
        key = (
            f"key {self.correlation_key!r}"
            if self.correlation_key is not None
            else "no key: waits with a correlationKey need one"
        )
        runs = f"{self.woke} run{'' if self.woke == 1 else 's'}"
        if not self.created:
            return (
                f"Signal {int(self)} was already stored under this idempotency key; "
                f"sent again, it woke no run."
            )
        return (
            f"Woke {runs} waiting for {self.event!r} ({key}); stored as signal {int(self)} "
            "for runs that reach the wait later."
        )


class SignalStore:
    """The signals of one database and namespace."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @retrying
    def send_signal(
        self,
        event: str,
        payload: Any,
        correlation_key: str | None = None,
        idempotency_key: str | None = None,
    ) -> SignalSent:
        """Store a signal and wake the runs waiting for it now (counted in ``woke``)."""
        try:
            with self.db.write() as c:
                self.db.lock_event(c, event)
                now = time.time()
                if idempotency_key is not None:
                    found = c.execute(
                        sa.select(signals.c.id).where(
                            signals.c.namespace == self.db.namespace,
                            signals.c.idempotency_key == idempotency_key,
                        )
                    ).scalar()
                    if found is not None:
                        return SignalSent(
                            found, woke=0, event=event, correlation_key=correlation_key,
                            created=False,
                        )  # fmt: skip
                res = c.execute(signals.insert().values(
                    namespace=self.db.namespace, event=event, correlation_key=correlation_key,
                    payload_json=dumps(payload), idempotency_key=idempotency_key, created_at=now,
                ))  # fmt: skip
                sid = res.inserted_primary_key[0] if res.inserted_primary_key else 0
                waiting = sa.select(steps.c.run_id).where(
                    steps.c.status == "waiting",
                    steps.c.wait_event == event,
                    sa.or_(steps.c.wait_key.is_(None), steps.c.wait_key == correlation_key)
                    if correlation_key is not None
                    else steps.c.wait_key.is_(None),
                )
                woke = c.execute(
                    runs.update()
                    .where(
                        runs.c.namespace == self.db.namespace,
                        runs.c.id.in_(waiting),
                        runs.c.status.in_(("waiting", "running")),
                    )
                    .values(
                        wake_requested=True,
                        wake_at=sa.case((runs.c.status == "waiting", now), else_=runs.c.wake_at),
                    )
                ).rowcount
                self.db.notify(c)
        except IntegrityError:
            with self.db.read() as c:
                found = c.execute(
                    sa.select(signals.c.id).where(
                        signals.c.namespace == self.db.namespace,
                        signals.c.idempotency_key == idempotency_key,
                    )
                ).scalar_one()
            return SignalSent(found, woke=0, event=event, correlation_key=correlation_key,
                              created=False)  # fmt: skip
        return SignalSent(sid, woke=max(woke, 0), event=event, correlation_key=correlation_key)

    @retrying
    def take_signal(
        self, run_id: str, owner: str, block_id: str, event: str, key: str | None, horizon: int
    ) -> tuple[bool, Any]:
        """Consume the oldest matching signal sent after the run was created, if any."""
        with self.db.write() as c:
            check_lease(c, run_id, owner)
            return self.take_signal_in(c, run_id, block_id, event, key, horizon)

    def take_signal_in(
        self, c: Connection, run_id: str, block_id: str, event: str, key: str | None, horizon: int
    ) -> tuple[bool, Any]:
        """:meth:`take_signal` in the caller's transaction, which holds the run's lease."""
        keyed = (signals.c.correlation_key == key) if key is not None else sa.true()
        used = sa.select(consumptions.c.signal_id).where(consumptions.c.run_id == run_id)
        row = c.execute(
            sa.select(signals.c.id, signals.c.payload_json)
            .where(
                signals.c.namespace == self.db.namespace,
                signals.c.event == event,
                keyed,
                signals.c.id > horizon,
                signals.c.id.not_in(used),
            )
            .order_by(signals.c.id)
            .limit(1)
        ).first()
        if row is None:
            return False, None
        c.execute(consumptions.insert().values(signal_id=row.id, run_id=run_id, block_id=block_id))
        return True, json.loads(row.payload_json)


def db_text(message: str | None) -> str | None:
    """A message as every database stores it: PostgreSQL text cannot hold a NUL byte."""
    return None if message is None else message.replace("\x00", "\\x00")
