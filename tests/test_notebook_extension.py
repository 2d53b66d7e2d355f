"""The IPython extension in a real IPython shell: ``%load_ext``, ``%%workflow``, the DAG widget.

``%load_ext thodare_jupyter`` binds ``wfkit`` (a started kit on ``THODARE_DB``)
and picks up connectors defined in cells. ``%%workflow NAME`` binds a checked
workflow and shows its DAG (widget + static SVG + a stable text form); a
mistake is shown with the cell line, a caret and the valid choices, and binds
nothing. ``%workflow list|show|runs`` work. A run's widget follows the run
live, masks hidden params, shows the failing step's error, and its buttons
approve, send an event and re-run from a block. A new kit on the same file
(a restarted kernel) finishes a run the first one left waiting.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from durable_helpers import wait_until
from IPython.core.interactiveshell import InteractiveShell

import thodare_jupyter
from thodare_jupyter import Catalog, Wfkit, define_workflow
from thodare_jupyter.notebook.widgets import MASK, POLL_S, DagView, kernel_user

CONNECTORS = """
from pydantic import BaseModel
from thodare_jupyter import Hidden, connector

class LeadIn(BaseModel):
    email: str
    api_key: Hidden[str] = "sk-secret-value"

class Lead(BaseModel):
    name: str

@connector("enrich-lead")
def enrich(p: LeadIn) -> Lead:
    if p.email.startswith("boom"):
        raise ValueError(f"no such lead: {p.email}")
    return Lead(name=p.email.split("@")[0].title())
"""

FLOW = """%%workflow lead-flow
input: {email: str}
steps:
  enrich:
    uses: enrich-lead
    with: {email: "{{trigger.email}}", api_key: "sk-secret-value"}
  approve:
    uses: human_approval
    with: {prompt: "Contact {{enrich.name}}?"}
  reply:
    uses: wait_for_event
    needs: [approve]
    with: {eventName: lead.replied, correlationKey: "{{trigger.email}}"}
  done:
    uses: transform
    with: {template: {who: "{{enrich.name}}", said: "{{reply.data.text}}"}}
"""


@pytest.fixture
def ip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    monkeypatch.setenv("THODARE_DB", str(tmp_path / "nb.db"))
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "thodare_jupyter")
    yield shell
    shell.run_line_magic("unload_ext", "thodare_jupyter")


def cell(ip: InteractiveShell, source: str) -> Any:
    result = ip.run_cell(source)
    if result.error_in_exec is not None:
        raise result.error_in_exec
    return result.result


def test_load_ext_binds_a_started_kit_and_picks_up_connectors(ip: InteractiveShell) -> None:
    kit = ip.user_ns["wfkit"]
    assert isinstance(kit, Wfkit) and kit.worker.running
    assert kit.store.url.endswith("nb.db")
    cell(ip, CONNECTORS)
    first = kit.catalog.get("enrich-lead")
    cell(ip, CONNECTORS)  # the cell run again: the new definition replaces the old
    assert kit.catalog.get("enrich-lead") is not first
    thodare_jupyter.load_ipython_extension(ip)  # a second load keeps the kit
    assert ip.user_ns["wfkit"] is kit and kit.worker.running


def test_unload_closes_the_kit_and_reload_starts_a_new_one_on_the_same_file(
    ip: InteractiveShell,
) -> None:
    kit = ip.user_ns["wfkit"]
    ip.run_line_magic("reload_ext", "thodare_jupyter")  # IPython unloads, then loads
    again = ip.user_ns["wfkit"]
    assert again is not kit and not kit.worker.running and again.worker.running
    assert again.store.url == kit.store.url
    ip.run_line_magic("unload_ext", "thodare_jupyter")
    assert not again.worker.running
    wf = (
        define_workflow("plain")
        .step("t", Catalog().get("transform"), lambda r: {"template": 1})
        .build()
    )
    assert "image/svg+xml" not in ip.display_formatter.format(wf)[0]  # no DAG display left
    ip.run_line_magic("load_ext", "thodare_jupyter")  # for the fixture's unload


def test_workflow_cell_binds_and_draws(ip: InteractiveShell) -> None:
    cell(ip, CONNECTORS)
    wf = cell(ip, FLOW)
    assert ip.user_ns["lead_flow"] is wf and ip.user_ns["wfkit"].workflows["lead-flow"] is wf
    bundle, _ = ip.display_formatter.format(wf)
    assert bundle["text/plain"] == "<DagView lead-flow: 5 blocks, definition>"
    assert "application/vnd.jupyter.widget-view+json" in bundle
    svg = bundle["image/svg+xml"]
    assert svg.startswith("<svg") and 'data-block-id="approve"' in svg
    assert "sk-secret-value" not in svg


def test_a_mistake_names_the_line_the_column_and_the_choices(ip: InteractiveShell) -> None:
    cell(ip, CONNECTORS)
    result = ip.run_cell("%%workflow typo\nsteps:\n  enrich:\n    uses: enrich-led\n")
    err = str(result.error_in_exec)
    assert "line 4, col 11: steps.enrich.uses: unknown connector type 'enrich-led'" in err
    assert "did you mean 'enrich-lead'?" in err
    assert "    uses: enrich-led\n" in err and "\n            ^" in err
    assert "choices: enrich-lead, http, human_approval" in err
    assert "typo" not in ip.user_ns


def test_line_magics_list_show_runs(ip: InteractiveShell) -> None:
    cell(ip, CONNECTORS)
    cell(ip, FLOW)
    listing = ip.run_line_magic("workflow", "list")
    assert "lead-flow" in listing.data and "enrich-lead" in listing.data
    assert ip.run_line_magic("workflow", "show lead-flow") is ip.user_ns["lead_flow"]
    kit = ip.user_ns["wfkit"]
    kit.run(ip.user_ns["lead_flow"], {"email": "boom@x.io"})
    wait_until(lambda: kit.runs()[0].status == "failed", 20)
    runs = ip.run_line_magic("workflow", "runs lead-flow")
    assert repr(runs) == "<1 run: 1 failed>"
    assert "no such lead: boom@x.io" in runs._repr_html_()
    with pytest.raises(Exception, match="Usage: %workflow list"):
        ip.run_line_magic("workflow", "frobnicate")
    with pytest.raises(Exception, match=r"No workflow 'nope'.*lead-flow"):
        ip.run_line_magic("workflow", "show nope")


def test_the_run_widget_follows_approves_sends_and_reruns(ip: InteractiveShell) -> None:
    cell(ip, CONNECTORS)
    wf = cell(ip, FLOW)
    kit = ip.user_ns["wfkit"]
    handle = kit.run(wf, {"email": "ada@x.io"})
    view = DagView(wf, kit, handle.id)
    assert POLL_S <= 0.5  # the widget sees the worker's changes within this
    wait_until(lambda: view.statuses.get("approve") == "waiting", 20)
    assert view.statuses["enrich"] == "completed" and view.statuses["__trigger__"] == "completed"
    bundle, _ = ip.display_formatter.format(handle)
    assert bundle["text/plain"] == "<DagView lead-flow: 5 blocks, run waiting>"

    view.selected = "enrich"
    assert view.details["params"]["api_key"] == MASK
    assert view.details["output"] == {"name": "Ada"}

    view._on_action(view, {"kind": "approve", "block": "approve", "approved": True,
                           "comment": "go"}, None)  # fmt: skip
    assert view.notice == f"Approved approve as {kernel_user()}."  # the page named nobody
    wait_until(lambda: view.statuses.get("reply") == "waiting", 20)
    view.selected = "reply"  # the key the wait resolved, for the form
    assert (view.details["waiting_for"], view.details["waiting_key"]) == (
        "lead.replied",
        "ada@x.io",
    )
    assert view.details["params"]["correlationKey"] == "{{trigger.email}}"
    assert view.details["resolved"]["correlationKey"] == "ada@x.io"
    view._on_action(view, {"kind": "event", "block": "reply", "payload": "{not json"}, None)
    assert view.notice.startswith("The payload is not JSON: Expecting property name")
    view._on_action(view, {"kind": "event", "block": "reply", "payload": '{"text": "hi!"}'}, None)
    assert view.notice == "Sent 'lead.replied' (key 'ada@x.io'): woke 1 run."
    assert handle.result(timeout=30)["done"] == {"result": {"who": "Ada", "said": "hi!"}}
    approved = kit.get_handle(handle.id).describe().steps
    assert next(s.output for s in approved if s.block_id == "approve")["by"] == kernel_user()
    wait_until(lambda: view.run.get("status") == "completed", 10)

    view._on_action(view, {"kind": "fork", "block": "done"}, None)
    assert view.run_id != handle.id and view.notice.startswith("Re-running from done")
    wait_until(lambda: view.run.get("status") == "completed", 20)
    steps = {s.block_id: s.attempt for s in kit.get_handle(view.run_id).describe().steps}
    assert steps["approve"] == 1  # reused: nobody was asked again


TABLE_CONNECTOR = """
import pandas as pd
from pydantic import BaseModel
from thodare_jupyter import Table, connector

class N(BaseModel):
    n: int

class Rows(BaseModel):
    rows: Table
    n: int

@connector("nb-rows")
def make_rows(p: N) -> Rows:
    labels = ["<b>%d</b>" % i for i in range(p.n)]
    return Rows(rows=pd.DataFrame({"x": list(range(p.n)), "label": labels}), n=p.n)
"""
TABLE_FLOW = """%%workflow rows-flow
input: {n: int}
steps:
  rows:
    uses: nb-rows
    with: {n: "{{trigger.n}}"}
"""


def test_a_table_output_reaches_the_widget_as_its_reference(ip: InteractiveShell) -> None:
    """The front end gets the reference (shape, column types, first rows), never the data."""
    cell(ip, TABLE_CONNECTOR)
    wf = cell(ip, TABLE_FLOW)
    kit = ip.user_ns["wfkit"]
    handle = kit.run(wf, {"n": 7})
    handle.result(timeout=30)
    view = DagView(wf, kit, handle.id)
    view.selected = "rows"
    out = json.loads(json.dumps(view.details["output"]))  # what the front end draws
    assert out["n"] == 7
    ref = out["rows"]
    assert ref["$artifact"].startswith("sha256:") and (ref["kind"], ref["rows"]) == ("table", 7)
    assert list(ref["columns"]) == ["x", "label"] and ref["columns"]["x"] == "int64"
    assert ref["preview"] == [{"x": i, "label": f"<b>{i}</b>"} for i in range(5)]


def test_a_failed_step_shows_its_error(ip: InteractiveShell) -> None:
    cell(ip, CONNECTORS)
    wf = cell(ip, FLOW)
    kit = ip.user_ns["wfkit"]
    view = DagView(wf, kit, kit.run(wf, {"email": "boom@x.io"}).id)
    wait_until(lambda: view.run.get("status") == "failed", 20)
    assert view.run["failed_block"] == "enrich"
    assert "no such lead: boom@x.io" in view.run["error"]
    view.selected = "enrich"
    assert view.details["status"] == "failed" and "no such lead" in view.details["error"]
    view._on_action(view, {"kind": "event", "block": "enrich", "payload": "{}"}, None)
    assert view.notice == "enrich is not waiting for an event now."  # shown, not raised


def test_a_restarted_kernel_finishes_what_the_first_left_waiting(ip: InteractiveShell) -> None:
    cell(ip, CONNECTORS)
    wf = cell(ip, FLOW)
    kit = ip.user_ns["wfkit"]
    handle = kit.run(wf, {"email": "ada@x.io"})
    wait_until(lambda: handle.status == "waiting", 20)
    ip.run_line_magic("unload_ext", "thodare_jupyter")  # the kernel goes away
    ip.reset()  # a fresh namespace (IPython's own names restored, as a new kernel has)

    ip.run_line_magic("load_ext", "thodare_jupyter")  # a new kernel on the same file
    cell(ip, CONNECTORS)  # re-running the definition cells
    kit2 = ip.user_ns["wfkit"]
    assert kit2 is not kit and [r.id for r in kit2.runs()] == [handle.id]
    kit2.approve(handle.id, "approve")
    kit2.signal("lead.replied", {"text": "later"}, correlation_key="ada@x.io")
    out = kit2.get_handle(handle.id).result(timeout=30)
    assert out["done"] == {"result": {"who": "Ada", "said": "later"}}
