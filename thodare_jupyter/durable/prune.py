"""Pruning: finished runs older than a cutoff go, with the artifacts only they referenced."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ..artifacts import ArtifactStore, refs_in
from ..wire import TERMINAL_STATUSES
from .database import Database, retrying
from .schema import consumptions, runs, step_logs, steps

_BATCH = 500
_HAS_REF = '%"$artifact"%'


@dataclass(frozen=True)
class PruneReport:
    """What :meth:`Wfkit.prune` deleted."""

    runs: int
    steps: int
    artifacts: int


def _chunks(items: list[str]) -> Iterator[list[str]]:
    for i in range(0, len(items), _BATCH):
        yield items[i : i + _BATCH]


def _refs(texts: Iterable[Any]) -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    for text in texts:
        if text:
            try:
                found |= refs_in(json.loads(text))
            except ValueError:
                continue
    return found


class Pruner:
    """Deletes old finished runs of one namespace and their unshared artifacts."""

    def __init__(self, db: Database, artifacts: ArtifactStore | None) -> None:
        self.db, self.artifacts = db, artifacts

    @retrying
    def _delete_runs(self, cutoff: float) -> tuple[list[str], int, set[tuple[str, str]]]:
        """Delete the runs (and steps) that ended before ``cutoff``; the artifacts they named."""
        with self.db.write() as c:
            ids = [
                str(r)
                for r in c.execute(
                    sa.select(runs.c.id).where(
                        runs.c.namespace == self.db.namespace,
                        runs.c.status.in_(TERMINAL_STATUSES),
                        runs.c.ended_at < cutoff,
                    )
                ).scalars()
            ]
            named: set[tuple[str, str]] = set()
            n_steps = 0
            for chunk in _chunks(ids):
                named |= _refs(
                    c.execute(
                        sa.select(steps.c.output_json).where(
                            steps.c.run_id.in_(chunk), steps.c.output_json.like(_HAS_REF)
                        )
                    ).scalars()
                )
                named |= _refs(
                    t
                    for row in c.execute(
                        sa.select(runs.c.outputs_json, runs.c.input_json).where(
                            runs.c.id.in_(chunk)
                        )
                    )
                    for t in row
                    if t and '"$artifact"' in t
                )
                c.execute(consumptions.delete().where(consumptions.c.run_id.in_(chunk)))
                c.execute(step_logs.delete().where(step_logs.c.run_id.in_(chunk)))
                n_steps += c.execute(steps.delete().where(steps.c.run_id.in_(chunk))).rowcount
                c.execute(runs.delete().where(runs.c.id.in_(chunk)))
            return ids, n_steps, named

    @retrying
    def _still_named(self, candidates: set[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which of ``candidates`` a remaining run (of any namespace) still references."""
        if not candidates:
            return set()
        with self.db.read() as c:
            texts = list(
                c.execute(sa.select(steps.c.output_json).where(steps.c.output_json.like(_HAS_REF)))
                .scalars()
            )  # fmt: skip
            for col in (runs.c.outputs_json, runs.c.input_json):
                texts += list(c.execute(sa.select(col).where(col.like(_HAS_REF))).scalars())
        return _refs(texts) & candidates

    def prune(self, older_than_s: float) -> PruneReport:
        """Delete finished runs that ended more than ``older_than_s`` seconds ago and the
        artifacts no remaining run references."""
        ids, n_steps, named = self._delete_runs(time.time() - older_than_s)
        gone = 0
        if named and self.artifacts is not None:
            gone = self.artifacts.delete(sorted(named - self._still_named(named)))
        return PruneReport(runs=len(ids), steps=n_steps, artifacts=gone)
