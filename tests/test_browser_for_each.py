"""A ``for_each`` step's progress and its items' logs in a real JupyterLab (headless Chromium).

A notebook runs ``rep-emails``: a ``for_each`` step e-mails eight reps (the
second one fails: no address); the last three items wait until the test
writes a ``go`` file beside the notebook, so the run is caught in the middle.

* The DAG widget's ``email_reps`` node reads ``5/8 · 1 failed`` while the run
  goes on, then ``8/8 · 1 failed``; its steps table says the same. Every text of
  the node lies inside its box, the type does not run into the count, the
  widget lies inside its output cell (the type, ``email-rep-numbers``, is cut to
  make room: its full name is in the tooltip and the details). Clicking the node
  shows its items' log lines (``email_reps[0] #1 stdout: …``), inside the details
  panel, not clipped.
  The screenshot is ``test-artifacts/for-each-progress.png``
  (``THODARE_UPDATE_SCREENSHOT=1`` copies it to ``docs/for-each-progress.png``).
* The side panel's run view (server SVG and REST ``progress``) shows the same
  counts on the step's row and its DAG node, and no row per item.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

from lab_harness import ARTIFACTS, Lab, browser_page, run_notebook, write_notebook

NOTEBOOK = "for-each.ipynb"
REPS = ["ada", "ken", "barbara", "donald", "edsger", "grace", "margaret", "alan"]
CELLS = [
    "%load_ext thodare_jupyter",
    "import time\n"
    "from pathlib import Path\n"
    "from pydantic import BaseModel\n"
    "from thodare_jupyter import connector\n\n"
    "class Rep(BaseModel):\n    rep: str\n    index: int\n\n"
    "class Sent(BaseModel):\n    to: str\n\n"
    '@connector("email-rep-numbers")\n'
    "def email_rep(p: Rep) -> Sent:\n"
    "    if p.index >= 5:  # the last three wait for the test's go\n"
    "        deadline = time.monotonic() + 90\n"
    "        while not Path('go').exists() and time.monotonic() < deadline:\n"
    "            time.sleep(0.05)\n"
    "    if p.rep == 'ken':\n"
    "        raise ValueError(f'no e-mail address for rep {p.rep!r}')\n"
    "    print(f'to {p.rep}@example.com: your March numbers')\n"
    "    return Sent(to=f'{p.rep}@example.com')",
    "%%workflow rep-emails\ninput: {reps: list}\nsteps:\n"
    "  email_reps:\n    uses: email-rep-numbers\n"
    '    for_each: "{{trigger.reps}}"\n    concurrency: 4\n'
    '    with: {rep: "{{item}}", index: "{{item_index}}"}\n'
    "  summary:\n    uses: transform\n"
    '    with: {template: {failed: "{{email_reps.failed}}"}}',
    f"run = wfkit.run(rep_emails, {{'reps': {REPS!r}}})\nprint(run.id)\nrun",
]
TIMEOUT_MS = 90_000
DOCS_SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "for-each-progress.png"
STDOUT = ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stdout']"
# Each box as [left, top, right, bottom] in page pixels.
BOX = "e => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; }"


def inside(inner: list[float], outer: list[float], what: str) -> None:
    """``inner`` lies within ``outer`` (half a pixel of rounding allowed)."""
    ok = (inner[0] >= outer[0] - 0.5 and inner[1] >= outer[1] - 0.5
          and inner[2] <= outer[2] + 0.5 and inner[3] <= outer[3] + 0.5)  # fmt: skip
    assert ok, f"{what}: {inner} is not inside {outer}"


def check_node_fits(node: Any) -> None:
    """The node's id, type and count lie inside its box; the type ends before the count."""
    rect = node.locator("rect").evaluate(BOX)
    texts = node.locator("text")
    for i in range(texts.count()):
        inside(texts.nth(i).evaluate(BOX), rect, f"text {texts.nth(i).text_content()!r}")
    type_box = node.locator(".thodare-node-type").evaluate(BOX)
    count_box = node.locator(".thodare-node-progress").evaluate(BOX)
    assert type_box[2] <= count_box[0], (type_box, count_box)


def test_for_each_progress_and_item_logs_in_the_widget_and_the_panel(
    chromium: Path, lab: Lab
) -> None:
    from playwright.sync_api import expect

    write_notebook(lab.root / NOTEBOOK, CELLS)
    with browser_page(chromium, "browser-for-each-console.log") as page:
        run_notebook(page, lab, NOTEBOOK)
        printed = page.locator(STDOUT).last
        expect(printed).to_have_text(re.compile(r"^\w+\s*$"), timeout=TIMEOUT_MS)
        run_id = printed.inner_text().strip()

        dag = page.locator(".thodare-dag:has(.thodare-run)")
        expect(dag).to_have_count(1, timeout=TIMEOUT_MS)
        node = dag.locator('g.thodare-node[data-block-id="email_reps"]')
        progress = node.locator(".thodare-node-progress")
        expect(progress).to_have_text("5/8 · 1 failed", timeout=TIMEOUT_MS)
        expect(node).to_have_attribute("data-status", "running")
        expect(progress.locator(".thodare-node-failed")).to_have_text(" · 1 failed")
        expect(dag.locator('.thodare-steps tr[data-block-id="email_reps"]')).to_contain_text(
            "running · 5/8 · 1 failed"
        )

        page.locator('.jp-SideBar [data-id="thodare-workflows"]').click()
        row = page.locator(f'#thodare-workflows .thodare-run-row[data-run-id="{run_id}"]')
        expect(row).to_have_attribute("data-status", "running")
        row.locator(".thodare-run-open").click()
        view = page.locator(f'.thodare-run-view[data-run-id="{run_id}"]')
        step = view.locator('table.thodare-steps tr[data-block-id="email_reps"]')
        items = step.locator(".thodare-step-items")
        expect(items).to_have_text(" · 5/8 · 1 failed")
        expect(items).to_have_attribute("data-total", "8")
        expect(view.locator('table.thodare-steps tr[data-block-id^="email_reps["]')).to_have_count(
            0
        )
        expect(view.locator(".thodare-run-dag .thodare-node-progress")).to_have_text(
            "5/8 · 1 failed"
        )

        (lab.root / "go").touch()  # the three waiting items go on
        expect(view).to_have_attribute("data-status", "completed", timeout=TIMEOUT_MS)
        expect(items).to_have_text(" · 8/8 · 1 failed")
        expect(step.locator(".thodare-step-failed")).to_have_text(" · 1 failed")
        expect(view.locator(".thodare-run-dag .thodare-node-progress")).to_have_text(
            "8/8 · 1 failed"
        )
        page.screenshot(path=str(ARTIFACTS / "panel-for-each.png"))

        page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text=NOTEBOOK).click()
        expect(progress).to_have_text("8/8 · 1 failed", timeout=TIMEOUT_MS)
        expect(node).to_have_attribute("data-status", "completed")
        node.click()
        details = dag.locator(".thodare-details")
        expect(details.locator("h4")).to_have_text("email_reps · email-rep-numbers · completed")
        logs = details.locator("pre.thodare-logs")
        expect(logs).to_contain_text("email_reps[0] #1 stdout: to ada@example.com")
        lines = logs.inner_text().splitlines()
        assert len(lines) == 7 and not any("ken" in ln for ln in lines), lines
        dag.scroll_into_view_if_needed()
        page.wait_for_timeout(200)  # the type fitted to its room on the next frame

        check_node_fits(node)
        expect(node.locator(".thodare-node-type")).to_have_text(re.compile(r"^email-rep.*…$"))
        cell = dag.locator("xpath=ancestor::div[contains(@class, 'jp-OutputArea-output')][1]")
        cell_box = cell.evaluate(BOX)
        inside(dag.evaluate(BOX), cell_box, "the widget")
        inside(node.evaluate(BOX), dag.locator(".thodare-canvas").evaluate(BOX), "the node")
        inside(logs.evaluate(BOX), details.evaluate(BOX), "the logs")
        inside(details.evaluate(BOX), cell_box, "the details")
        widths = logs.evaluate("e => [e.scrollWidth, e.clientWidth]")
        assert widths[0] <= widths[1], f"the logs scroll sideways: {widths}"
        dag.screenshot(path=str(ARTIFACTS / "for-each-progress.png"))
    if os.environ.get("THODARE_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(ARTIFACTS / "for-each-progress.png", DOCS_SCREENSHOT)
