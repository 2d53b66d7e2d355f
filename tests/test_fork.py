"""Re-run from here: ``kit.fork(run_id, from_block, workflow=None)``, on SQLite and PostgreSQL.

A run whose middle step failed is forked from that step with a fixed
definition: the steps upstream of it are not executed again (their recorded
outputs are copied into the new run), the fixed step and everything after it
run, and the old run is left as it was. Forking without a definition re-runs
from the block with the pinned one. An unknown block or run is a clear error.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from durable_helpers import KitFactory
from pydantic import BaseModel
from typer.testing import CliRunner

from thodare_jupyter import (
    ForkBlockNotFound,
    RunFailed,
    RunNotFound,
    define_connector,
    define_workflow,
)
from thodare_jupyter.cli import app


class Email(BaseModel):
    email: str


class Person(BaseModel):
    name: str


class Text(BaseModel):
    text: str


class Sent(BaseModel):
    sent: str


class Counts:
    def __init__(self) -> None:
        self.enrich = 0
        self.send = 0


def connectors(counts: Counts) -> tuple[object, object]:
    def enrich(p: Email) -> Person:
        counts.enrich += 1
        return Person(name=p.email.split("@")[0].title())

    def send(p: Text) -> Sent:
        counts.send += 1
        if "TODO" in p.text:
            raise ValueError(f"refusing to send an unfinished text: {p.text!r}")
        return Sent(sent=p.text)

    return (
        define_connector(type="fork-enrich", params=Email, outputs=Person, run=enrich),
        define_connector(type="fork-send", params=Text, outputs=Sent, run=send),
    )


def lead_flow(enrich: object, send: object, text: str) -> object:
    return (
        define_workflow("fork-lead")
        .input(Email)
        .step("enrich", enrich, lambda r: {"email": r.input.email})
        .step("notify", send, lambda r: {"text": text.replace("NAME", f"{r.enrich.name}")})
        .build()
    )


def test_fork_from_the_failed_step_with_a_fix_reuses_what_came_before(
    any_kits: KitFactory,
) -> None:
    counts = Counts()
    enrich, send = connectors(counts)
    kit = any_kits().register(enrich, send).start()  # type: ignore[arg-type]
    broken = lead_flow(enrich, send, "TODO greet NAME")  # unfinished: the send refuses
    first = kit.run(broken, {"email": "ada@example.com"})
    with pytest.raises(RunFailed) as ei:
        first.result(timeout=30)
    assert ei.value.block_id == "notify" and counts.enrich == 1

    fixed = lead_flow(enrich, send, "Hello NAME")
    second = kit.fork(first.id, "notify", workflow=fixed)
    out = second.result(timeout=30)

    assert out["notify"] == {"sent": "Hello Ada"}
    assert out["enrich"] == {"name": "Ada"}
    assert counts.enrich == 1  # reused, not run again
    assert counts.send == 2
    steps = {s.block_id: s for s in second.describe().steps}
    assert steps["enrich"].attempt == 1 and steps["notify"].status == "completed"
    assert first.describe().status == "failed"  # the old run is untouched
    assert second.describe().input == {"email": "ada@example.com"}
    assert (second.describe().forked_from, first.describe().forked_from) == (first.id, None)


def test_fork_without_a_definition_reruns_from_the_block(any_kits: KitFactory) -> None:
    counts = Counts()
    enrich, send = connectors(counts)
    kit = any_kits().register(enrich, send).start()  # type: ignore[arg-type]
    done = kit.run(lead_flow(enrich, send, "Hi NAME"), {"email": "bo@example.com"})
    done.result(timeout=30)

    again = kit.fork(done.id, "enrich")  # from the first step: everything runs again
    assert again.result(timeout=30)["notify"] == {"sent": "Hi Bo"}
    assert (counts.enrich, counts.send) == (2, 2)
    tail = kit.fork(done.id, "notify")
    assert tail.result(timeout=30)["notify"] == {"sent": "Hi Bo"}
    assert (counts.enrich, counts.send) == (2, 3)


def test_fork_names_the_blocks_when_the_block_is_unknown(any_kits: KitFactory) -> None:
    counts = Counts()
    enrich, send = connectors(counts)
    kit = any_kits().register(enrich, send)  # type: ignore[arg-type]
    run = kit.run(lead_flow(enrich, send, "Hi NAME"), {"email": "cy@example.com"})
    with pytest.raises(ForkBlockNotFound) as ei:
        kit.fork(run.id, "notfy")
    assert "'notfy'" in str(ei.value) and "enrich" in str(ei.value) and "notify" in str(ei.value)
    with pytest.raises(RunNotFound):
        kit.fork("no-such-run", "notify")
    assert len(kit.runs()) == 1


def test_the_cli_names_the_run_a_fork_came_from(kits: KitFactory, db: Path) -> None:
    counts = Counts()
    enrich, send = connectors(counts)
    kit = kits().register(enrich, send).start()  # type: ignore[arg-type]
    done = kit.run(lead_flow(enrich, send, "Hi NAME"), {"email": "cy@example.com"})
    done.result(timeout=30)
    time.sleep(0.01)  # the fork is created after the steps it copies ended
    fork = kit.fork(done.id, "notify")
    fork.result(timeout=30)
    env = {"THODARE_DB": str(db), "THODARE_NAMESPACE": None}
    listed = CliRunner().invoke(app, ["runs"], env=env)
    assert listed.exit_code == 0, listed.output
    assert f"fork of {done.id[:8]} (1 step reused)" in listed.output
    shown = CliRunner().invoke(app, ["runs", "show", fork.id[:8]], env=env)
    assert shown.exit_code == 0, shown.output
    assert f"Forked    from {done.id}" in shown.output
