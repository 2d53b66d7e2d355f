"""Versions of workflow definitions: every change is kept, so any change can be undone.

A version is saved when a ``%%workflow`` cell defines something new and when
an assistant proposal is accepted. ``undo`` marks the newest live version
undone and returns the one before it; undone versions stay in the history.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any

import sqlalchemy as sa

from ..clock import utc
from ..errors import NothingToUndo
from ..wire import SerializedWorkflow
from .database import Database, retrying
from .schema import definitions as t
from .store import Store


@dataclass(frozen=True)
class DefinitionVersion:
    """One stored version of a workflow definition.

    ``origin``: ``cell`` (a ``%%workflow`` cell ran), ``assistant`` (a proposal
    was accepted; ``note`` is the request) or ``undo``.
    """

    name: str
    version: int
    workflow_json: str
    source: str | None
    origin: str
    note: str | None
    undone: bool
    created_at: datetime

    @property
    def workflow(self) -> SerializedWorkflow:
        """The workflow of this version."""
        return SerializedWorkflow.from_json(self.workflow_json)


def _version(r: Any) -> DefinitionVersion:
    return DefinitionVersion(
        name=r.name, version=r.version, workflow_json=r.workflow_json, source=r.source,
        origin=r.origin, note=r.note, undone=bool(r.undone),
        created_at=utc(r.created_at),
    )  # fmt: skip


class Definitions:
    """The definition versions of one store (database and namespace)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.db: Database = store

    def _lock(self, c: Any, name: str) -> None:
        """Serialize writers of one workflow's versions (SQLite: ``BEGIN IMMEDIATE`` does)."""
        if not self.db.is_sqlite:
            key = sa.func.hashtext(f"thodare.definitions:{self.store.namespace}:{name}")
            c.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))

    def _rows(self, c: Any, name: str) -> list[DefinitionVersion]:
        q = sa.select(t).where(t.c.namespace == self.store.namespace, t.c.name == name)
        return [_version(r) for r in c.execute(q.order_by(t.c.version.desc()))]

    @retrying
    def save(
        self,
        name: str,
        workflow: SerializedWorkflow,
        *,
        source: str | None = None,
        origin: str = "cell",
        note: str | None = None,
    ) -> DefinitionVersion:
        """Store a new version, unless it equals the newest live one (then return that)."""
        data = workflow.to_json()
        with self.db.write() as c:
            self._lock(c, name)
            rows = self._rows(c, name)
            live = next((v for v in rows if not v.undone), None)
            if live is not None and live.workflow_json == data and live.source == source:
                return live
            row = {
                "namespace": self.store.namespace, "name": name,
                "version": rows[0].version + 1 if rows else 1, "workflow_json": data,
                "source": source, "origin": origin, "note": note, "undone": False,
                "created_at": time.time(),
            }  # fmt: skip
            c.execute(sa.insert(t).values(**row))
        return _version(SimpleNamespace(**row))

    @retrying
    def history(self, name: str) -> list[DefinitionVersion]:
        """Every version of ``name``, newest first (undone ones included)."""
        with self.db.read() as c:
            return self._rows(c, name)

    @retrying
    def latest(self, name: str) -> DefinitionVersion | None:
        """The newest live (not undone) version of ``name``, or None."""
        q = sa.select(t).where(
            t.c.namespace == self.store.namespace, t.c.name == name, t.c.undone == sa.false()
        )
        with self.db.read() as c:
            row = c.execute(q.order_by(t.c.version.desc()).limit(1)).first()
        return _version(row) if row is not None else None

    @retrying
    def names(self) -> list[str]:
        """The names with a live version, sorted."""
        q = sa.select(t.c.name).where(
            t.c.namespace == self.store.namespace, t.c.undone == sa.false()
        )
        with self.db.read() as c:
            return sorted(set(c.execute(q.distinct()).scalars()))

    @retrying
    def undo(self, name: str) -> DefinitionVersion:
        """Mark the newest live version undone; return the one now current.

        Raises:
            NothingToUndo: Fewer than two live versions.
        """
        with self.db.write() as c:
            self._lock(c, name)
            live = [v for v in self._rows(c, name) if not v.undone]
            if len(live) < 2:
                raise NothingToUndo(name)
            c.execute(
                sa.update(t)
                .where(t.c.namespace == self.store.namespace, t.c.name == name,
                       t.c.version == live[0].version)
                .values(undone=True)
            )  # fmt: skip
            return live[1]
