"""Links between runs: a child run (``run_workflow``) and the run whose step started it.

A child's end wakes its parent (the parent's step looks at the child again, as
a wait looks for its signal); a run canceled, or failed, cancels its unfinished
children, and theirs. Runs without links pay nothing: these run only for runs
that have a parent or may have children.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..wire import TERMINAL_STATUSES
from .database import Database
from .schema import runs

PARENT_OF = sa.select(runs.c.parent_run_id).where(runs.c.id == sa.bindparam("p_run"))
"""The parent run id of run ``p_run`` (None for a top-level run)."""
_WAKE_PARENT = (
    runs.update()
    .where(
        runs.c.id == PARENT_OF.scalar_subquery(),
        runs.c.status.in_(("waiting", "running")),
    )
    .values(
        wake_requested=True,
        wake_at=sa.case((runs.c.status == "waiting", sa.bindparam("p_now")), else_=runs.c.wake_at),
    )
)  # fmt: skip


def wake_parent_in(db: Database, c: Connection, run_id: str, now: float) -> bool:
    """Wake the parent of ``run_id`` (in the caller's transaction), if it has one that
    has not ended: a parked parent is due at once, a walking one re-walks when it parks."""
    if not c.execute(_WAKE_PARENT, {"p_run": run_id, "p_now": now}).rowcount:
        return False
    db.notify(c)
    return True


def cancel_children_in(db: Database, c: Connection, run_id: str, now: float) -> list[str]:
    """Cancel the unfinished descendants of ``run_id`` (in the caller's transaction),
    each with an error naming its parent; their ids, nearest first."""
    canceled: list[str] = []
    frontier = [run_id]
    while frontier:
        got = c.execute(
            runs.update()
            .where(  # a child is in its parent's namespace: the parent's id says it all
                runs.c.parent_run_id.in_(frontier),
                runs.c.status.not_in(TERMINAL_STATUSES),
            )
            .values(
                status="canceled", ended_at=now, updated_at=now, lease_owner=None,
                lease_expires_at=None, wake_at=None,
                error=sa.literal("Canceled with its parent run ") + runs.c.parent_run_id + ".",
            )
            .returning(runs.c.id)
        ).scalars().all()  # fmt: skip
        for child in got:
            db.announce_end(c, child)
        canceled.extend(got)
        frontier = list(got)
    return canceled
