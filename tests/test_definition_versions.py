"""Workflow definition versions on SQLite and PostgreSQL: save, history, undo, namespaces.

Saving what the newest live version already holds adds nothing; ``undo`` marks
the newest live version undone and returns the one before (repeatedly, down to
the first); a version saved after an undo becomes the newest; tenants never
see each other's versions; two kits saving at once each get their own number.
"""

from __future__ import annotations

import threading

import pytest
from durable_helpers import KitFactory

from thodare_jupyter import NothingToUndo, ThodareError
from thodare_jupyter.authoring.workflow_yaml import workflow_from_yaml
from thodare_jupyter.connectors import Catalog
from thodare_jupyter.wire import SerializedWorkflow


def version(n: int, name: str = "digest") -> SerializedWorkflow:
    text = f"steps:\n  post:\n    uses: transform\n    with: {{template: {{n: {n}}}}}\n"
    return workflow_from_yaml(name, text, Catalog())


def test_save_history_and_undo(any_kits: KitFactory) -> None:
    kit = any_kits()
    first = kit.save_version(version(1), source="v1")
    assert (first.version, first.origin, first.undone) == (1, "cell", False)
    assert kit.save_version(version(1), source="v1").version == 1  # unchanged: no new version
    kit.save_version(version(2), source="v2", origin="assistant", note="make it 2")
    kit.save_version(version(3), source="v3", origin="assistant", note="make it 3")
    history = kit.history("digest")
    assert [(v.version, v.origin, v.note) for v in history] == [
        (3, "assistant", "make it 3"), (2, "assistant", "make it 2"), (1, "cell", None),
    ]  # fmt: skip
    assert history[0].workflow.blocks[1].params == {"template": {"n": 3}}

    assert kit.undo("digest").source == "v2"
    assert kit.undo("digest").source == "v1"
    with pytest.raises(NothingToUndo, match="no earlier version"):
        kit.undo("digest")
    assert [v.undone for v in kit.history("digest")] == [True, True, False]

    again = kit.save_version(version(4), source="v4")
    assert again.version == 4 and not again.undone
    assert kit.undo("digest").version == 1


def test_versions_are_per_namespace(db_url: str, any_kits: KitFactory) -> None:
    a, b = any_kits(namespace="team-a"), any_kits(namespace="team-b")
    a.save_version(version(1), source="a")
    assert b.history("digest") == []
    with pytest.raises(NothingToUndo):
        b.undo("digest")


def test_an_unnamed_workflow_cannot_be_versioned(any_kits: KitFactory) -> None:
    wf = version(1)
    wf.metadata.name = None
    with pytest.raises(ThodareError, match="Only a named workflow"):
        any_kits().save_version(wf)


def test_two_kits_saving_at_once_get_distinct_versions(any_kits: KitFactory) -> None:
    kits = [any_kits(), any_kits()]
    errors: list[BaseException] = []

    def save(i: int) -> None:
        try:
            for n in range(5):
                kits[i].save_version(version(10 * i + n), source=f"{i}-{n}")
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=save, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    numbers = [v.version for v in kits[0].history("digest")]
    assert sorted(numbers) == list(range(1, 11))
