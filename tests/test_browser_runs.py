"""Runs you can find, in a real JupyterLab driven by headless Chromium (Playwright).

A notebook runs a two-step workflow, forks it from its second step
(``kit.fork``), and runs a parent whose ``run_workflow`` step starts a child.
The panel says it shows this notebook's kernel's SQLite database (password-free
URL, from the kernel id), lists the runs with 8-character ids and dated times,
marks the fork and the child, filters by workflow, status and time, and opens
a run. Then it sits still: the list is fetched again only when the database
changes (the server's event stream), not every second; a run created by another
process appears within seconds. ``THODARE_UPDATE_SCREENSHOT=1`` copies the panel's
screenshot to ``docs/panel-runs.png``.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

from lab_harness import (
    ARTIFACTS,
    KERNEL_IDLE,
    RUN_ALL,
    RUN_TIMEOUT_MS,
    Lab,
    browser_page,
    run_notebook,
    write_notebook,
)

from thodare_jupyter import create_wfkit

DOCS = Path(__file__).resolve().parents[1] / "docs"
NOTEBOOK = "runs.ipynb"
CELLS = [
    "%load_ext thodare_jupyter",
    "%%workflow two-steps\nsteps:\n  fetch:\n    uses: transform\n"
    "    with: {template: {n: 1}}\n  report:\n    uses: transform\n"
    '    with: {template: {got: "{{fetch.result}}"}}',
    "%%workflow double\nsteps:\n  calc:\n    uses: transform\n    with: {template: {n: 2}}",
    "%%workflow parent\nsteps:\n  kid:\n    uses: run_workflow\n"
    "    with: {workflow: double, input: {}}",
    "first = wfkit.run(two_steps, {})\n"
    "first.result(timeout=60)\n"
    "fork = wfkit.fork(first.id, 'report')\n"
    "fork.result(timeout=60)\n"
    "parent = wfkit.run(parent, {})\n"
    "kid = parent.result(timeout=60)['kid']['runId']\n"
    "print(first.id, fork.id, parent.id, kid)",
]
TIMEOUT_MS = 90_000


def test_panel_lists_filters_marks_and_updates_live(chromium: Path, lab: Lab) -> None:
    from playwright.sync_api import expect

    write_notebook(lab.root / NOTEBOOK, CELLS)
    with browser_page(chromium, "browser-runs-console.log", height=900) as page:
        lists: list[float] = []
        streams: list[str] = []

        def seen(request: Any) -> None:
            if re.search(r"/thodare/api/runs\?", request.url):
                lists.append(time.monotonic())
            if "/thodare/api/events" in request.url:
                streams.append(request.url)

        page.on("request", seen)
        run_notebook(page, lab, NOTEBOOK)
        out = page.locator(".jp-OutputArea-output").last
        expect(out).to_contain_text(" ", timeout=TIMEOUT_MS)
        first, fork, parent, kid = out.inner_text().split()

        page.locator('.jp-SideBar [data-id="thodare-workflows"]').click()
        panel = page.locator("#thodare-workflows")
        row = lambda rid: panel.locator(f'.thodare-run-row[data-run-id="{rid}"]')  # noqa: E731
        expect(panel.locator(".thodare-run-row")).to_have_count(4)
        # which database: the kernel's SQLite file, told by kernel id
        db = panel.locator(".thodare-runs-db")
        expect(db).to_have_attribute("data-source", "kernel")
        expect(db.locator(".thodare-db-url")).to_have_text(f"sqlite:///{lab.root.parent}/runs.db")
        expect(db).to_contain_text("this notebook's kernel")
        # short ids, dated times, the fork and the child marked
        expect(row(first).locator(".thodare-run-id")).to_have_text(first[:8])
        created = row(first).locator(".thodare-run-created").inner_text()
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", created), created
        expect(row(fork)).to_have_class(re.compile("thodare-fork-run"))
        expect(row(fork).locator(".thodare-run-fork")).to_contain_text(
            f"fork of {first[:8]} · 1 reused"
        )
        expect(row(fork)).to_have_attribute("data-forked-from", first)
        expect(row(first).locator(".thodare-run-fork")).to_have_count(0)
        expect(row(kid)).to_have_class(re.compile("thodare-child-run"))
        expect(row(kid).locator(".thodare-run-parent")).to_contain_text(f"child of {parent[:8]}")
        # room to read it: a wider side bar, the runs list taller than the assistant
        _drag(page, "#jp-main-split-panel > .lm-SplitPanel-handle >> nth=0", 260, 0)
        _drag(page, "#thodare-workflows > .lm-SplitPanel-handle >> nth=0", 0, 220)
        top = panel.locator(".thodare-runs").bounding_box()
        end = panel.locator(".thodare-run-row").last.bounding_box()
        assert top is not None and end is not None
        clip = {"x": top["x"], "y": top["y"], "width": top["width"],
                "height": end["y"] + end["height"] + 8 - top["y"]}  # fmt: skip
        page.screenshot(path=str(ARTIFACTS / "panel-runs.png"), clip=clip)
        if os.environ.get("THODARE_UPDATE_SCREENSHOT") == "1":
            shutil.copy(ARTIFACTS / "panel-runs.png", DOCS / "panel-runs.png")

        # filters: workflow, status, time
        panel.locator(".thodare-workflow-filter").fill("double")
        expect(panel.locator(".thodare-run-row")).to_have_count(1)
        expect(row(kid)).to_be_visible()
        panel.locator(".thodare-workflow-filter").fill("")
        expect(panel.locator(".thodare-run-row")).to_have_count(4)
        panel.locator(".thodare-status-filter").select_option("failed")
        expect(panel.locator(".thodare-run-list")).to_have_attribute("data-empty", "true")
        panel.locator(".thodare-status-filter").select_option("completed")
        expect(panel.locator(".thodare-run-row")).to_have_count(4)
        panel.locator(".thodare-since-filter").select_option("hour")
        expect(panel.locator(".thodare-run-row")).to_have_count(4)
        panel.locator(".thodare-since-filter").select_option("between")
        panel.locator(".thodare-before").fill("2020-01-01T00:00")
        panel.locator(".thodare-before").dispatch_event("change")
        expect(panel.locator(".thodare-run-list")).to_have_attribute("data-empty", "true")
        panel.locator(".thodare-since-filter").select_option("")
        panel.locator(".thodare-status-filter").select_option("")
        expect(panel.locator(".thodare-run-row")).to_have_count(4)

        # live: no fetch of the list while nothing changes; a new run appears by push
        assert streams and all("kernel=" in u for u in streams), streams
        page.wait_for_timeout(1500)  # the filters' fetches settle
        before = len(lists)
        page.wait_for_timeout(4000)
        idle = len(lists) - before
        assert idle <= 1, f"{idle} list fetches in 4 s with nothing changing (polling?)"
        other = create_wfkit(str(lab.root.parent / "runs.db"))
        try:
            t0 = time.monotonic()
            new = other.run(other.compile({"name": "from-elsewhere", "blocks": []}), {})
        finally:
            other.close()
        expect(row(new.id)).to_be_visible(timeout=5000)
        assert any(t >= t0 for t in lists)

        row(fork).locator(".thodare-run-open").click()
        view = page.locator(f'.thodare-run-view[data-run-id="{fork}"]')
        expect(view).to_have_attribute("data-status", "completed")


def _drag(page: Any, handle: str, dx: int, dy: int) -> None:
    """Drag a split panel's handle by (dx, dy) pixels."""
    box = page.locator(handle).bounding_box()
    assert box is not None, handle
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + dx, y + dy, steps=5)
    page.mouse.up()


MINE = "mine.ipynb"
THEIRS = "theirs.ipynb"
MINE_CELLS = [
    *CELLS[:2],
    "first = wfkit.run(two_steps, {})\nfirst.result(timeout=60)\nprint(first.id)",
]


def test_an_open_run_view_keeps_reading_its_kernels_database(chromium: Path, lab: Lab) -> None:
    """A run view reads the database of the kernel it was opened with: after another
    notebook (another kernel, another database) becomes the active one, the view's
    step details and logs still come from the first kernel's database."""
    from playwright.sync_api import expect

    theirs_db = lab.root.parent / "theirs.db"
    write_notebook(lab.root / MINE, MINE_CELLS)
    write_notebook(
        lab.root / THEIRS,
        [f"import os\nos.environ['THODARE_DB'] = {str(theirs_db)!r}", *MINE_CELLS],
    )
    with browser_page(chromium, "browser-runs-kernels-console.log", height=900) as page:
        routes: list[str] = []
        page.on("request", lambda r: routes.append(r.url) if "/thodare/api/" in r.url else None)
        run_notebook(page, lab, MINE)
        mine = page.locator(".jp-OutputArea-output").last.inner_text().strip()
        page.locator('.jp-SideBar [data-id="thodare-workflows"]').click()
        panel = page.locator("#thodare-workflows")
        panel.locator(f'.thodare-run-row[data-run-id="{mine}"] .thodare-run-open').click()
        view = page.locator(f'.thodare-run-view[data-run-id="{mine}"]')
        expect(view).to_have_attribute("data-status", "completed")
        first = next(u for u in routes if f"/runs/{mine}?" in u or f"/runs/{mine}&" in u)
        kernel = re.search(r"kernel=([0-9a-f-]+)", first)
        assert kernel, first
        mine_kernel = kernel.group(1)

        # another notebook, its own kernel and database, becomes the active one
        page.evaluate(
            "p => window.jupyterapp.commands.execute('docmanager:open', {path: p})", THEIRS
        )
        page.wait_for_function(
            f"() => window.jupyterapp.shell.currentWidget"
            f" && window.jupyterapp.shell.currentWidget.title.label === {THEIRS!r}"
        )
        page.wait_for_function(KERNEL_IDLE, timeout=60_000)
        page.evaluate(RUN_ALL)
        page.wait_for_function("() => window.__thodareRanAll === true", timeout=RUN_TIMEOUT_MS)
        theirs = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-OutputArea-output").last
        theirs_id = theirs.inner_text().strip()
        expect(panel.locator(f'.thodare-run-row[data-run-id="{theirs_id}"]')).to_be_visible()
        expect(panel.locator(f'.thodare-run-row[data-run-id="{mine}"]')).to_have_count(0)

        # back to the run view: its details still come from the first kernel's database
        page.locator(".lm-TabBar-tab", has_text=f"Run {mine[:8]}").click()
        start = len(routes)
        view.locator('table.thodare-steps tr[data-block-id="report"]').click()
        output = view.locator('.thodare-run-output[data-block-id="report"]')
        expect(output.locator(".thodare-logs")).to_have_text("(none)")
        expect(view.locator(".thodare-error").first).to_have_text("")
        asked = [u for u in routes[start:] if f"/runs/{mine}" in u]
        assert asked and all(f"kernel={mine_kernel}" in u for u in asked), asked
