"""The Workflows side panel in a real JupyterLab, driven by headless Chromium (Playwright).

A notebook loads ``%load_ext thodare_jupyter`` and starts two runs on the
temp ``THODARE_DB``: one that completes and one parked on a ``human_approval``
step. The panel (the labextension served by the installed package, the REST
routes of ``thodare_jupyter.server``) lists both; Cancel turns the waiting one
``canceled``; Open shows its DAG and steps in the main area. Screenshots go to
``test-artifacts/``. The harness is ``lab_harness``.
"""

from __future__ import annotations

from pathlib import Path

from lab_harness import ARTIFACTS, Lab, browser_page, run_notebook, write_notebook

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


def test_panel_lists_cancels_and_opens_runs(chromium: Path, lab: Lab) -> None:
    """Both runs in the panel; Cancel makes the waiting one canceled; Open shows its DAG."""
    from playwright.sync_api import expect

    write_notebook(lab.root / NOTEBOOK, CELLS)
    with browser_page(chromium, "browser-panel-console.log") as page:
        run_notebook(page, lab, NOTEBOOK)
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
        # the notebook's kernel is a live worker on the same database
        expect(panel.locator(".thodare-workers-label")).to_have_text("1 live worker:")
        expect(panel.locator(".thodare-worker")).to_contain_text("kernel")
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
        statuses = nodes.evaluate_all("ns => ns.map(n => [n.dataset.blockId, n.dataset.status])")
        assert sorted(statuses) == [["__trigger__", "completed"], ["after", "canceled"],
                                    ["approve", "canceled"]], statuses  # fmt: skip
        step = view.locator('table.thodare-steps tr[data-block-id="approve"]')
        expect(step).to_have_attribute("data-status", "canceled")
        expect(step).to_contain_text("human_approval")
        page.screenshot(path=str(ARTIFACTS / "panel-run-dag.png"))
