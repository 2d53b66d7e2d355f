"""A failed run reads the same everywhere: where it failed, with what, and nothing still waiting.

A run whose deadline passes while a step waits is the case that used to show an
orange "waiting" node, an empty "failed at" and an error header starting with
": ". Real SQLite kit and worker; the run's description, the widget's state, the
static SVG and ``thodare runs show`` are checked.
"""

from __future__ import annotations

from typer.testing import CliRunner

from thodare_jupyter import Catalog, define_workflow
from thodare_jupyter.cli import app
from thodare_jupyter.drawing.palette import STATUS_STYLE
from thodare_jupyter.errors import RunFailed
from thodare_jupyter.notebook.widgets import DagView

WAIT_EVENT = Catalog().get("wait_for_event")
TRANSFORM = Catalog().get("transform")
DEADLINE = "The run's deadline passed before it finished."
WF = (
    define_workflow("refund")
    .step("ask", WAIT_EVENT, lambda r: {"eventName": "paid", "correlationKey": "o-1"})
    .step("pay", TRANSFORM, lambda r: {"template": {"got": r.ask.data}})
    .build()
)  # fmt: skip


def test_a_run_past_its_deadline_fails_at_the_step_it_waited_at(kits, db) -> None:  # type: ignore[no-untyped-def]
    kit = kits()
    kit.start()
    handle = kit.run(WF, deadline=0.5)
    try:
        handle.result(timeout=30)
        raise AssertionError("the run should have failed")
    except RunFailed as e:
        assert "failed at block 'ask'" in str(e)
    run = handle.describe()
    assert (run.status, run.failed_block, run.error) == ("failed", "ask", DEADLINE)
    ask = next(s for s in run.steps if s.block_id == "ask")
    assert (ask.status, ask.error) == ("failed", DEADLINE)

    view = DagView(WF, kit, handle.id)
    try:
        assert view.statuses == {"__trigger__": "completed", "ask": "failed", "pay": "not run"}
        assert view.run["failed_block"] == "ask"
        assert [s["status"] for s in view.run["steps"]] == ["failed"]
        svg = view._repr_mimebundle_()[0]["image/svg+xml"]
        assert 'data-block-id="ask" data-status="failed"' in svg
        assert f'fill="{STATUS_STYLE["failed"][0]}"' in svg
        assert "waiting" not in svg
    finally:
        view.close()

    shown = CliRunner().invoke(app, ["runs", "show", handle.id, "--db", str(db)])
    assert shown.exit_code == 0, shown.output
    assert "Failed at ask" in shown.output
    assert f"Error     {DEADLINE}" in shown.output
    assert "waiting" not in shown.output
