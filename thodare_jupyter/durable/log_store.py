"""Step logs in the database: one row an attempt that wrote anything (``thodare_step_logs``)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from ..step_logs import MAX_BYTES, LogLine
from .database import Database, retrying
from .records import LogWrite, db_text, dumps
from .schema import runs, step_logs

CUT_STREAM = "thodare"
"""The stream of the line that says how much of an attempt's output was cut."""


class LogStore:
    """The step logs of one database and namespace."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def write_in(self, c: Connection, run_id: str, logs: Sequence[LogWrite]) -> None:
        """Store attempts' logs in the caller's transaction (one statement)."""
        now = time.time()
        rows = [
            {"run_id": run_id, "block_id": w.block_id, "attempt": w.attempt,
             "lines_json": db_text(dumps(w.lines)), "cut_bytes": w.cut, "created_at": now}
            for w in logs
        ]  # fmt: skip
        if rows:
            c.execute(step_logs.insert(), rows)

    @retrying
    def lines(self, run_id: str, block_id: str | None = None, after: int = 0) -> list[LogLine]:
        """A run's log lines (of one block: a ``for_each`` block's include its items',
        ``block[i]``), attempt by attempt in the order they were stored; ``after``: only
        of rows stored after the row of that id (see :meth:`last_id`)."""
        return [line for _, line in self.rows(run_id, block_id, after)]

    @retrying
    def rows(
        self, run_id: str, block_id: str | None = None, after: int = 0
    ) -> list[tuple[int, LogLine]]:
        """Like :meth:`lines`, each line with the id of the row it was stored in."""
        q = (
            sa.select(step_logs)
            .join(runs, runs.c.id == step_logs.c.run_id)
            .where(
                step_logs.c.run_id == run_id,
                runs.c.namespace == self.db.namespace,
                step_logs.c.id > after,
            )
            .order_by(step_logs.c.id)
        )
        if block_id is not None:
            item = sa.func.substr(step_logs.c.block_id, 1, len(block_id) + 1) == f"{block_id}["
            q = q.where(sa.or_(step_logs.c.block_id == block_id, item))
        with self.db.read() as c:
            found = c.execute(q).all()
        out: list[tuple[int, LogLine]] = []
        for r in found:
            lines = json.loads(r.lines_json)
            for at, stream, text in lines:
                out.append((r.id, LogLine(at, stream, r.block_id, r.attempt, text)))
            if r.cut_bytes:
                at = lines[-1][0] if lines else r.created_at
                why = f"[{r.cut_bytes} more bytes cut: an attempt keeps {MAX_BYTES >> 10} KiB]"
                out.append((r.id, LogLine(at, CUT_STREAM, r.block_id, r.attempt, why)))
        return out
