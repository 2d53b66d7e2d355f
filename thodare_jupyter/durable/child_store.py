"""Child runs of ``run_workflow`` steps: started once per parent step, found again
on replay, listed for a parent, and their ends handed to the parent.

A parent step and its child are one: the child is keyed on ``(parent run,
block)`` (a unique index), so a parent walked again after a crash finds the
child it started instead of starting a second one.
"""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..errors import ChildRunsTooDeep
from .database import Database, retrying
from .lineage import PARENT_OF, cancel_children_in, wake_parent_in
from .records import ChildRunInfo, RunRow, run_row
from .run_store import RunStore, check_lease
from .schema import runs, steps

_CHILD = sa.select(runs).where(
    runs.c.parent_run_id == sa.bindparam("p_parent"),
    runs.c.parent_block_id == sa.bindparam("p_block"),
)
MAX_DEPTH = 16
"""How deep child runs may nest (a parent, its child, the child's child, ...)."""
_CHILDREN = (
    sa.select(runs.c.id, runs.c.parent_block_id, runs.c.workflow_name, runs.c.status)
    .where(runs.c.parent_run_id == sa.bindparam("p_parent"))
    .order_by(runs.c.created_at)
)


def waiting_for(child_id: str) -> str:
    """What a parent step waiting for child ``child_id`` shows as waited for."""
    return f"child run {child_id}"


class ChildStore:
    """The child runs of one database and namespace."""

    def __init__(self, db: Database, runs_: RunStore) -> None:
        self.db, self.runs = db, runs_

    def _find(self, c: Connection, parent_id: str, block_id: str) -> RunRow | None:
        row = c.execute(_CHILD, {"p_parent": parent_id, "p_block": block_id}).first()
        return run_row(row) if row is not None else None

    @retrying
    def find(self, parent_id: str, block_id: str) -> RunRow | None:
        """The child run block ``block_id`` of run ``parent_id`` started, if any."""
        with self.db.read() as c:
            return self._find(c, parent_id, block_id)

    @retrying
    def start(
        self,
        parent_id: str,
        owner: str,
        block_id: str,
        type_: str,
        *,
        child_id: str,
        workflow_name: str,
        workflow_json: str,
        input: Any,
    ) -> RunRow:
        """Start the child of ``(parent_id, block_id)`` (pending, for any worker) and mark
        that step waiting, in one transaction fenced by the parent's lease; a child
        already started is returned as it is (a retried call, a re-walk)."""
        with self.db.write() as c:
            check_lease(c, parent_id, owner)
            found = self._find(c, parent_id, block_id)
            if found is None:
                if self._depth(c, parent_id) >= MAX_DEPTH:
                    raise ChildRunsTooDeep(block_id, workflow_name, MAX_DEPTH)
                self.runs.insert_run(
                    c, child_id, workflow_name, workflow_json, input, parent=(parent_id, block_id)
                )
                found = self._find(c, parent_id, block_id)
                assert found is not None
            self._mark_waiting(c, parent_id, block_id, type_, found.id)
        return found

    def _depth(self, c: Connection, run_id: str) -> int:
        """How many ancestors ``run_id`` has (counted up to :data:`MAX_DEPTH`)."""
        depth = 0
        while depth < MAX_DEPTH:
            parent = c.execute(PARENT_OF, {"p_run": run_id}).scalar()
            if parent is None:
                break
            run_id, depth = parent, depth + 1
        return depth

    def _mark_waiting(
        self, c: Connection, parent_id: str, block_id: str, type_: str, child_id: str
    ) -> None:
        where = (steps.c.run_id == parent_id, steps.c.block_id == block_id)
        values = dict(type=type_, status="waiting", wait_event=waiting_for(child_id),
                      wait_key=None, wake_at=None)  # fmt: skip
        if not c.execute(steps.update().where(*where).values(**values)).rowcount:
            c.execute(steps.insert().values(run_id=parent_id, block_id=block_id, attempt=1,
                                            started_at=time.time(), **values))  # fmt: skip

    @retrying
    def children(self, parent_id: str) -> list[ChildRunInfo]:
        """The child runs of ``parent_id``, oldest first."""
        with self.db.read() as c:
            rows = c.execute(_CHILDREN, {"p_parent": parent_id}).all()
        return [ChildRunInfo(r.parent_block_id, r.id, r.workflow_name, r.status) for r in rows]

    def finish_in(
        self, c: Connection, run_id: str, owner: str, status: str, *, parent: bool, **kw: Any
    ) -> None:
        """:meth:`RunStore.finish_in` for a run with links: a run that did not complete
        cancels its unfinished children, and its ``parent`` (if it has one) is woken."""
        self.runs.finish_in(c, run_id, owner, status, **kw)
        now = time.time()
        if status != "completed":
            cancel_children_in(self.db, c, run_id, now)
        if parent:
            wake_parent_in(self.db, c, run_id, now)
