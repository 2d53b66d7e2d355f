"""The Workflows side panel in a real JupyterLab, driven by headless Chromium (Playwright).

A notebook loads ``%load_ext thodare_jupyter`` and starts two runs on the
temp ``THODARE_DB``: one that completes and one parked on a ``human_approval``
step. The panel (the labextension served by the installed package, the REST
routes of ``thodare_jupyter.server``) lists both; Cancel turns the waiting one
``canceled``; Open shows its DAG and steps in the main area. Screenshots go to
``test-artifacts/``. The harness is ``lab_harness``.

A second notebook runs a connector returning a pandas ``Table`` and a ``File``:
the run's DAG widget and the panel's run view both show the table as its
shape, typed columns and first rows (a hostile cell stays text), and the file
as name, size and a download link; the links download through the server's
artifacts route with the page's login. ``THODARE_UPDATE_SCREENSHOT=1`` copies
the widget's screenshot to ``docs/table-output.png``.
"""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
from pathlib import Path
from typing import Any

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
        assert sorted(statuses) == [["__trigger__", "completed"], ["after", "not run"],
                                    ["approve", "canceled"]], statuses  # fmt: skip
        step = view.locator('table.thodare-steps tr[data-block-id="approve"]')
        expect(step).to_have_attribute("data-status", "canceled")
        expect(step).to_contain_text("human_approval")
        page.screenshot(path=str(ARTIFACTS / "panel-run-dag.png"))


TABLES = "tables.ipynb"
TABLE_CELLS = [
    "%load_ext thodare_jupyter",
    "from pathlib import Path\n"
    "import pandas as pd\n"
    "from pydantic import BaseModel\n"
    "from thodare_jupyter import File, Table, connector\n\n"
    "class ExportIn(BaseModel):\n    n: int\n\n"
    "class ExportOut(BaseModel):\n    customers: Table\n    report: File\n    rowcount: int\n\n"
    '@connector("customers-export")\n'
    "def export(p: ExportIn) -> ExportOut:\n"
    "    names = ['Ada Lovelace', 'Grace Hopper', 'Katherine Johnson', 'Dorothy Vaughan',\n"
    "             '<img src=x onerror=alert(1)>', 'Mary Jackson', 'Annie Easley', 'Joan Clarke']\n"
    "    df = pd.DataFrame({'customer': names[: p.n],\n"
    "                       'region': ['EU', 'US', 'US', 'US', 'EU', 'US', 'US', 'EU'][: p.n],\n"
    "                       'revenue': [1250.5, 980, 1432.25, None, 12, 770, 99.9, 640][: p.n],\n"
    "                       'orders': list(range(1, p.n + 1))})\n"
    "    path = Path('customers-report.txt')\n"
    "    path.write_text('%d customers\\n' % p.n * 100)\n"
    "    return ExportOut(customers=df, report=path, rowcount=p.n)",
    "%%workflow customers\ninput: {n: int}\nsteps:\n  export:\n    uses: customers-export\n"
    '    with: {n: "{{trigger.n}}"}',
    "run = wfkit.run(customers, {'n': 8})\nrun.result(timeout=60)\nprint(run.id)",
    "run",
]
SHAPE = "8 rows × 4 columns"
COLUMNS = ["customer", "region", "revenue", "orders"]
FIRST_ROWS = ["Ada Lovelace", "Grace Hopper", "Katherine Johnson", "Dorothy Vaughan",
              "<img src=x onerror=alert(1)>"]  # fmt: skip
REPORT = b"8 customers\n" * 100
STDOUT = ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stdout']"
DOCS_SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "table-output.png"


def check_table_and_file(page: Any, box: Any, run_id: str) -> None:
    """``box`` shows the table (shape, typed columns, first rows, CSV link) and the file."""
    from playwright.sync_api import expect

    table = box.locator('.thodare-table-ref[data-field="customers"]')
    expect(table).to_have_count(1)
    expect(table.locator(".thodare-table-shape")).to_have_text(SHAPE)
    names = table.locator("th .thodare-col-name").all_inner_texts()
    types = table.locator("th .thodare-col-type").all_inner_texts()
    assert names == COLUMNS, names
    assert types == ["string", "string", "double", "int64"], types
    rows = table.locator("tbody tr")
    expect(rows).to_have_count(5)
    assert rows.locator("td:first-child").all_inner_texts() == FIRST_ROWS
    assert table.locator("img").count() == 0  # a cell is text, never markup
    expect(rows.nth(3).locator("td").nth(2)).to_have_text("null")
    expect(table.locator(".thodare-artifact-note")).to_have_text("first 5 of 8 rows")

    csv_link = table.locator("a.thodare-download", has_text="CSV")
    href = csv_link.evaluate("a => a.href")  # absolute
    # the kernel's id says whose database (and artifact store) the server reads
    assert re.search(rf"/thodare/api/runs/{run_id}/artifacts/sha256%3A[0-9a-f]{{64}}"
                     r"\?format=csv&kernel=[0-9a-f-]+$", href), href  # fmt: skip
    got = page.request.get(href)  # with the page's login cookie
    assert got.status == 200, got.text()
    parsed = list(csv.reader(io.StringIO(got.text())))
    assert parsed[0] == COLUMNS and len(parsed) == 9 and parsed[5][0] == FIRST_ROWS[4]

    file = box.locator('.thodare-file-ref[data-field="report"]')
    expect(file.locator(".thodare-file-name")).to_have_text("customers-report.txt")
    expect(file.locator(".thodare-file-size")).to_have_text("1.2 KiB")
    expect(file.locator("a.thodare-download")).to_have_text("Download")


def test_table_and_file_outputs_in_the_widget_and_the_panel(chromium: Path, lab: Lab) -> None:
    """A Table and a File output: previewed and downloadable in the widget and the panel."""
    from playwright.sync_api import expect

    write_notebook(lab.root / TABLES, TABLE_CELLS)
    with browser_page(chromium, "browser-tables-console.log") as page:
        run_notebook(page, lab, TABLES)
        printed = page.locator(STDOUT)
        expect(printed.last).to_have_text(re.compile(r"^\w+\s*$"), timeout=TIMEOUT_MS)
        run_id = printed.last.inner_text().strip()

        dag = page.locator(".thodare-dag:has(.thodare-run)")
        expect(dag).to_have_count(1, timeout=TIMEOUT_MS)
        dag.locator('g.thodare-node[data-block-id="export"]').click()
        details = dag.locator(".thodare-details")
        expect(details.locator("h4")).to_have_text("export · customers-export · completed")
        check_table_and_file(page, details, run_id)
        expect(details.locator("pre").last).to_contain_text('"rowcount": 8')
        dag.scroll_into_view_if_needed()
        dag.screenshot(path=str(ARTIFACTS / "widget-table-output.png"))

        page.locator('.jp-SideBar [data-id="thodare-workflows"]').click()
        row = page.locator(f'#thodare-workflows .thodare-run-row[data-run-id="{run_id}"]')
        expect(row).to_have_attribute("data-status", "completed")
        row.locator(".thodare-run-open").click()
        view = page.locator(f'.thodare-run-view[data-run-id="{run_id}"]')
        expect(view.locator(".thodare-run-output .thodare-hint")).to_contain_text("Click a step")
        view.locator('table.thodare-steps tr[data-block-id="export"]').click()
        output = view.locator('.thodare-run-output[data-block-id="export"]')
        title = "export · customers-export · completed"
        expect(output.locator(".thodare-output-title")).to_have_text(title)
        check_table_and_file(page, output, run_id)
        expect(output.locator("pre:not(.thodare-logs)")).to_contain_text('"rowcount": 8')
        page.screenshot(path=str(ARTIFACTS / "panel-table-output.png"))
        view.screenshot(path=str(ARTIFACTS / "run-view-table-output.png"))
        with page.expect_download() as download:
            output.locator(".thodare-file-ref a.thodare-download").click()
        assert download.value.suggested_filename == "customers-report.txt"
        assert Path(download.value.path()).read_bytes() == REPORT
    if os.environ.get("THODARE_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(ARTIFACTS / "widget-table-output.png", DOCS_SCREENSHOT)


CHILDREN = "children.ipynb"
CHILD_CELLS = [
    "%load_ext thodare_jupyter",
    "%%workflow double\ninput: {n: int}\nsteps:\n  calc:\n    uses: transform\n"
    '    with: {template: {twice: "{{trigger.n}}"}}',
    "%%workflow parent\ninput: {n: int}\nsteps:\n  kid:\n    uses: run_workflow\n"
    '    with: {workflow: double, input: {n: "{{trigger.n}}"}}',
    "run = wfkit.run(parent, {'n': 3})\n"
    "child = run.result(timeout=60)['kid']['runId']\n"
    "print(run.id, child)",
    "run",
]


def test_child_runs_are_linked_in_the_widget_and_the_panel(chromium: Path, lab: Lab) -> None:
    """A run_workflow step: the widget names its child run; the panel marks the child
    and links parent and child both ways."""
    from playwright.sync_api import expect

    write_notebook(lab.root / CHILDREN, CHILD_CELLS)
    with browser_page(chromium, "browser-children-console.log") as page:
        run_notebook(page, lab, CHILDREN)
        printed = page.locator(STDOUT)
        expect(printed.last).to_have_text(re.compile(r"^\w+ \w+\s*$"), timeout=TIMEOUT_MS)
        parent_id, child_id = printed.last.inner_text().split()

        dag = page.locator(".thodare-dag:has(.thodare-run)")
        expect(dag).to_have_count(1, timeout=TIMEOUT_MS)
        dag.locator('g.thodare-node[data-block-id="kid"]').click()
        child = dag.locator(".thodare-details .thodare-child")
        expect(child).to_have_text(f"child run {child_id[:12]} (double): completed")
        expect(child).to_have_attribute("title", child_id)

        page.locator('.jp-SideBar [data-id="thodare-workflows"]').click()
        panel = page.locator("#thodare-workflows")
        child_row = panel.locator(f'.thodare-run-row[data-run-id="{child_id}"]')
        parent_row = panel.locator(f'.thodare-run-row[data-run-id="{parent_id}"]')
        expect(child_row).to_have_attribute("data-parent-run-id", parent_id)
        expect(child_row.locator(".thodare-run-parent")).to_have_text(
            f"↳ child of {parent_id[:8]} (kid)"
        )
        expect(parent_row.locator(".thodare-run-parent")).to_have_count(0)

        parent_row.locator(".thodare-run-open").click()
        view = page.locator(f'.thodare-run-view[data-run-id="{parent_id}"]')
        link = view.locator(f'.thodare-run-child-link[data-run-id="{child_id}"]')
        expect(link).to_have_text(f"child run {child_id[:8]} (kid → double): completed")
        link.click()
        child_view = page.locator(f'.thodare-run-view[data-run-id="{child_id}"]')
        expect(child_view).to_have_attribute("data-status", "completed")
        back = child_view.locator(f'.thodare-run-parent-link[data-run-id="{parent_id}"]')
        expect(back).to_have_text(f"parent run {parent_id[:8]} (step kid)")
        page.screenshot(path=str(ARTIFACTS / "panel-child-run.png"))
