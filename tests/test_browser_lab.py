"""The quickstart notebook in a real JupyterLab, driven by headless Chromium (Playwright).

Runs all cells of a cleared copy of notebooks/01-quickstart.ipynb with
JupyterLab's own ``notebook:run-all-cells`` and checks what a user sees: the
run's DAG widget with every node ``completed``, a click on ``enrich`` showing
its output in the details panel, and the ``wfkit.runs()`` table. Screenshots go
to ``test-artifacts/``; ``THODARE_UPDATE_SCREENSHOT=1`` also copies the widget's
to ``docs/dag-widget.png``. The harness is ``lab_harness`` (skipped without
/usr/bin/chromium, except under ``CI=true`` where it fails).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from lab_harness import ARTIFACTS, RUN_TIMEOUT_MS, Lab, browser_page, run_notebook

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "01-quickstart.ipynb"
DOCS_SCREENSHOT = REPO / "docs" / "dag-widget.png"
RUN_DAG = ".thodare-dag:has(.thodare-run)"
ALL_COMPLETED = """(sel) => {
  const nodes = [...document.querySelectorAll(sel + " svg g.thodare-node")];
  return nodes.length > 0 && nodes.every(n => n.dataset.status === "completed");
}"""


def _cleared_copy(src: Path, dest: Path) -> None:
    """Copy a notebook without outputs, execution counts or saved widget state."""
    nb = json.loads(src.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    nb["metadata"].pop("widgets", None)
    dest.write_text(json.dumps(nb, indent=1))


def test_quickstart_runs_in_jupyterlab(chromium: Path, lab: Lab) -> None:
    """Run All in JupyterLab: the run's DAG turns green, a click shows enrich's output."""
    from playwright.sync_api import expect

    _cleared_copy(NOTEBOOK, lab.root / NOTEBOOK.name)
    with browser_page(chromium, "browser-console.log") as page:
        run_notebook(page, lab, NOTEBOOK.name)
        dag = page.locator(RUN_DAG)
        expect(dag).to_have_count(1, timeout=RUN_TIMEOUT_MS)
        page.wait_for_function(ALL_COMPLETED, arg=RUN_DAG, timeout=RUN_TIMEOUT_MS)
        nodes = dag.locator("svg g.thodare-node")
        ids = nodes.evaluate_all("ns => ns.map(n => n.dataset.blockId)")
        statuses = nodes.evaluate_all("ns => ns.map(n => n.dataset.status)")
        assert ids == ["__trigger__", "enrich", "message"]
        assert statuses == ["completed"] * 3
        head = dag.locator(".thodare-details .thodare-run")
        expect(head).to_have_attribute("data-status", "completed")
        run_prefix = head.inner_text().split()[1].rstrip(":")
        steps = dag.locator(".thodare-details table.thodare-steps tr")
        expect(steps).to_have_count(2)  # enrich and message, each with its time
        for row in steps.all():
            expect(row).to_have_attribute("data-status", "completed")
            expect(row.locator(".thodare-took")).to_have_text(re.compile(r"^\d+(\.\d)? (ms|s)$"))

        dag.locator('g.thodare-node[data-block-id="enrich"]').click()
        details = dag.locator(".thodare-details")
        expect(details.locator("h4")).to_have_text("enrich · enrich-lead · completed")
        email = details.locator('.thodare-params tr[data-param="email"] td')
        expect(email).to_have_text(["email", "{{trigger.email}}", "ada@lovelace.io"])
        expect(details).to_contain_text('"name": "Ada"')
        expect(details).to_contain_text('"company": "Lovelace"')

        table = page.locator("table:has(th:text-is('workflow'))")
        expect(table).to_have_count(1, timeout=RUN_TIMEOUT_MS)
        cells = table.locator("tbody tr").first.locator("td").all_inner_texts()
        assert table.locator("tbody tr").count() == 1
        assert cells[:3] == [run_prefix, "lead-notifier", "completed"], cells

        dag.scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "lab-quickstart.png"), full_page=True)
        dag.screenshot(path=str(ARTIFACTS / "dag-widget.png"))
    if os.environ.get("THODARE_UPDATE_SCREENSHOT") == "1":
        DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(ARTIFACTS / "dag-widget.png", DOCS_SCREENSHOT)
