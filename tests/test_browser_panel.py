"""The Workflows side panel in a real JupyterLab, driven by headless Chromium (Playwright).

A notebook loads ``%load_ext thodare_jupyter`` and starts two runs on the
temp ``THODARE_DB``: one that completes and one parked on a ``human_approval``
step. The panel (the labextension served by the installed package, the REST
routes of ``thodare_jupyter.server``) lists both; Cancel turns the waiting one
``canceled``; Open shows its DAG and steps in the main area. Screenshots go to
``test-artifacts/``. The harness (free port, token, temp root and settings,
process-group kill, Chromium at /usr/bin/chromium) is test_browser_lab's.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_browser_lab import ARTIFACTS, CHROMIUM_ARGS, KERNEL_IDLE, RUN_ALL, STDERR, Lab
from test_browser_lab import chromium as chromium  # the harness's fixtures, used by name
from test_browser_lab import lab as lab

NOTEBOOK = "panel.ipynb"
CELLS = [
    "%load_ext thodare_jupyter",
    "%%workflow needs-ok\nsteps:\n  approve:\n    uses: human_approval\n"
    '    with: {prompt: "Ship it?"}\n  after:\n    uses: transform\n'
    '    with: {template: {ok: "{{approve.approved}}"}}',
    '%%workflow quick\nsteps:\n  hello:\n    uses: transform\n    with: {template: {text: "hi"}}',
    "import time\n"
    "done = wfkit.run(quick, {})\n"
    "done.result(timeout=60)\n"
    "waiting = wfkit.run(needs_ok, {})\n"
    "while waiting.status != 'waiting':\n"
    "    time.sleep(0.05)\n"
    "print(done.id, waiting.id)",
]
TIMEOUT_MS = 90_000


def _notebook(path: Path) -> None:
    cells = [{"cell_type": "code", "metadata": {}, "source": s, "outputs": [],
              "execution_count": None} for s in CELLS]  # fmt: skip
    meta = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    path.write_text(json.dumps({"cells": cells, "metadata": meta, "nbformat": 4,
                                "nbformat_minor": 5}))  # fmt: skip


@pytest.fixture
def lab_root(tmp_path: Path) -> Path:
    """The notebook goes into the root ``lab`` serves (``tmp_path / "root"``)."""
    return tmp_path / "root"


def test_panel_lists_cancels_and_opens_runs(chromium: Path, lab: Lab, lab_root: Path) -> None:
    """Both runs in the panel; Cancel makes the waiting one canceled; Open shows its DAG."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)
    _notebook(lab_root / NOTEBOOK)
    ARTIFACTS.mkdir(exist_ok=True)
    messages: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("console", lambda m: messages.append(f"console.{m.type}: {m.text}"))
            page.on("pageerror", lambda e: messages.append(f"pageerror: {e}"))
            page.goto(f"{lab.url}/lab/tree/{NOTEBOOK}?token={lab.token}")
            page.wait_for_function(KERNEL_IDLE, timeout=60_000)
            page.evaluate(RUN_ALL)
            page.wait_for_function("() => window.__thodareRanAll !== undefined",
                                   timeout=TIMEOUT_MS)  # fmt: skip
            ran = page.evaluate("() => window.__thodareRanAll")
            assert ran is True, f"Run All: {ran!r}; {page.locator(STDERR).all_inner_texts()}"
            out = page.locator(".jp-OutputArea-output").last
            expect(out).to_contain_text(" ", timeout=TIMEOUT_MS)
            done_id, waiting_id = out.inner_text().split()

            page.locator('.jp-SideBar [data-id="thodare-workflows"]').click()
            panel = page.locator("#thodare-workflows")
            expect(panel).to_be_visible()
            done = panel.locator(f'.thodare-run-row[data-run-id="{done_id}"]')
            waiting = panel.locator(f'.thodare-run-row[data-run-id="{waiting_id}"]')
            expect(done).to_have_attribute("data-status", "completed")
            expect(waiting).to_have_attribute("data-status", "waiting")
            expect(done.locator(".thodare-run-workflow")).to_have_text("quick")
            expect(waiting.locator(".thodare-run-workflow")).to_have_text("needs-ok")
            expect(done.locator(".thodare-run-cancel")).to_be_hidden()
            page.screenshot(path=str(ARTIFACTS / "panel-runs.png"))

            panel.locator(".thodare-status-filter").select_option("waiting")
            expect(panel.locator(".thodare-run-row")).to_have_count(1)
            panel.locator(".thodare-status-filter").select_option("")
            expect(panel.locator(".thodare-run-row")).to_have_count(2)

            waiting.locator(".thodare-run-cancel").click()
            expect(waiting).to_have_attribute("data-status", "canceled")
            expect(waiting.locator(".thodare-run-status")).to_have_text("canceled")
            expect(waiting.locator(".thodare-run-cancel")).to_be_hidden()

            waiting.locator(".thodare-run-open").click()
            view = page.locator(f'.thodare-run-view[data-run-id="{waiting_id}"]')
            expect(view).to_have_attribute("data-status", "canceled")
            nodes = view.locator(".thodare-run-dag svg g[data-block-id]")
            expect(nodes).to_have_count(3)
            statuses = nodes.evaluate_all(
                "ns => ns.map(n => [n.dataset.blockId, n.dataset.status])")  # fmt: skip
            assert sorted(statuses) == [["__trigger__", "completed"], ["after", "canceled"],
                                        ["approve", "canceled"]], statuses  # fmt: skip
            step = view.locator('table.thodare-steps tr[data-block-id="approve"]')
            expect(step).to_have_attribute("data-status", "canceled")
            expect(step).to_contain_text("human_approval")
            page.screenshot(path=str(ARTIFACTS / "panel-run-dag.png"))
        finally:
            (ARTIFACTS / "browser-panel-console.log").write_text("\n".join(messages) + "\n")
            browser.close()
    broken = [m for m in messages if m.startswith(("pageerror", "console.error"))]
    assert not broken, f"front-end errors: {broken}"
