"""Waits answered from the browser: a real JupyterLab, headless Chromium (Playwright).

The widget: a run parked on ``wait_for_event`` (its key ``{{trigger.order}}``)
offers a Send-event form with the key the step resolved (``A-1``) prefilled;
Send wakes the run (it completes) and the widget says it woke 1 run.
The panel: a run parked on ``human_approval``, opened from the Workflows panel;
a click on its node shows Approve/Reject with a comment; Approve completes the
run, recorded as the Jupyter user of the page (``api/me``), not ``notebook``.
Screenshots under ``test-artifacts/``; ``THODARE_UPDATE_SCREENSHOT=1`` copies the forms
before they are sent to ``docs/widget-send-event.png`` and ``docs/panel-approve.png``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from lab_harness import (
    ARTIFACTS,
    Lab,
    browser_page,
    keep_screenshot,
    run_notebook,
    write_notebook,
)

STDOUT = ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stdout']"
TIMEOUT_MS = 90_000
PAID = (
    "%%workflow paid\ninput: {order: str}\nsteps:\n  wait:\n    uses: wait_for_event\n"
    '    with: {eventName: order.paid, correlationKey: "{{trigger.order}}"}\n'
    '  receipt:\n    uses: transform\n    with: {template: {amount: "{{wait.data.amount}}"}}'
)
APPROVAL = (
    "%%workflow needs-ok\nsteps:\n  approve:\n    uses: human_approval\n"
    '    with: {prompt: "Ship it?"}\n  after:\n    uses: transform\n'
    '    with: {template: {ok: "{{approve.approved}}", by: "{{approve.by}}"}}'
)


def waiting_widget(page: Any, lab: Lab, notebook: str, cells: list[str], block: str) -> Any:
    """Run ``cells`` (the last shows a run) in a new notebook; once ``block`` waits, click
    it: the widget's DAG locator (its details pane shows the step)."""
    from playwright.sync_api import expect

    write_notebook(lab.root / notebook, cells)
    run_notebook(page, lab, notebook)
    dag = page.locator(".thodare-dag:has(.thodare-run)")
    expect(dag).to_have_count(1, timeout=TIMEOUT_MS)
    node = dag.locator(f'g.thodare-node[data-block-id="{block}"]')
    expect(node).to_have_attribute("data-status", "waiting", timeout=TIMEOUT_MS)
    node.click()
    return dag


def test_send_event_from_the_widget_wakes_the_run(chromium: Path, lab: Lab) -> None:
    from playwright.sync_api import expect

    cells = ["%load_ext thodare_jupyter", PAID, 'run = wfkit.run(paid, {"order": "A-1"})\nrun']
    with browser_page(chromium, "browser-waits-event-console.log") as page:
        dag = waiting_widget(page, lab, "event.ipynb", cells, "wait")
        details = dag.locator(".thodare-details")
        expect(details.locator("h4")).to_have_text("wait · wait_for_event · waiting")
        key = details.locator("input.thodare-event-key")
        expect(key).to_have_value("A-1")  # resolved, not "{{trigger.order}}"
        row = details.locator('.thodare-params tr[data-param="correlationKey"] td')
        expect(row).to_have_text(["correlationKey", "{{trigger.order}}", "A-1"])
        details.locator("textarea.thodare-payload").fill('{"amount": 42}')
        dag.scroll_into_view_if_needed()
        dag.screenshot(path=str(ARTIFACTS / "widget-send-event.png"))
        keep_screenshot(ARTIFACTS / "widget-send-event.png")

        details.locator("button.thodare-send").click()
        expect(details.locator(".thodare-notice")).to_have_text(
            "Sent 'order.paid' (key 'A-1'): woke 1 run.", timeout=TIMEOUT_MS
        )
        expect(details.locator(".thodare-run")).to_have_attribute(
            "data-status", "completed", timeout=TIMEOUT_MS
        )
        expect(dag.locator('g.thodare-node[data-block-id="receipt"]')).to_have_attribute(
            "data-status", "completed"
        )
        dag.screenshot(path=str(ARTIFACTS / "widget-event-sent.png"))


ME_JS = """async () => {
  const base = JSON.parse(document.getElementById('jupyter-config-data').textContent).baseUrl;
  const me = await (await fetch(base + 'api/me')).json();
  return me.identity.name || me.identity.username;
}"""


def test_approve_from_the_widget_is_recorded_as_the_pages_user(chromium: Path, lab: Lab) -> None:
    from playwright.sync_api import expect

    cells = ["%load_ext thodare_jupyter", APPROVAL, "run = wfkit.run(needs_ok, {})\nrun"]
    with browser_page(chromium, "browser-waits-widget-approve-console.log") as page:
        dag = waiting_widget(page, lab, "widget-approve.ipynb", cells, "approve")
        details = dag.locator(".thodare-details")
        details.locator("input.thodare-comment").fill("fine by me")
        me = page.evaluate(ME_JS)
        assert me and me != "notebook"
        details.locator("button.thodare-approve").click()
        expect(details.locator(".thodare-notice")).to_contain_text(f"as {me}", timeout=TIMEOUT_MS)
        expect(dag.locator('g.thodare-node[data-block-id="after"]')).to_have_attribute(
            "data-status", "completed", timeout=TIMEOUT_MS
        )
        dag.locator('g.thodare-node[data-block-id="after"]').click()
        expect(details).to_contain_text(f'"by": "{me}"', timeout=TIMEOUT_MS)


def test_approve_from_the_panels_run_view(chromium: Path, lab: Lab) -> None:
    from playwright.sync_api import expect

    start = (
        "import time\nrun = wfkit.run(needs_ok, {})\n"
        "deadline = time.monotonic() + 60\n"
        "while run.status != 'waiting' and time.monotonic() < deadline:\n"
        "    time.sleep(0.05)\n"
        "print(run.id)"
    )
    write_notebook(lab.root / "approve.ipynb", ["%load_ext thodare_jupyter", APPROVAL, start])
    with browser_page(chromium, "browser-waits-approve-console.log") as page:
        run_notebook(page, lab, "approve.ipynb")
        printed = page.locator(STDOUT).last
        expect(printed).to_have_text(re.compile(r"^\w{32}\s*$"), timeout=TIMEOUT_MS)
        run_id = printed.inner_text().strip()

        page.locator('.jp-SideBar [data-id="thodare-workflows"]').click()
        row = page.locator(f'#thodare-workflows .thodare-run-row[data-run-id="{run_id}"]')
        expect(row).to_have_attribute("data-status", "waiting")
        row.locator(".thodare-run-open").click()
        view = page.locator(f'.thodare-run-view[data-run-id="{run_id}"]')
        expect(view).to_have_attribute("data-status", "waiting")
        view.locator('.thodare-run-dag svg g[data-block-id="approve"]').click()
        details = view.locator('.thodare-run-output[data-block-id="approve"]')
        expect(details.locator(".thodare-output-title")).to_have_text(
            "approve · human_approval · waiting"
        )
        prompt = details.locator('.thodare-params tr[data-param="prompt"] td')
        expect(prompt).to_have_text(["prompt", "Ship it?", "="])  # ran as written
        details.locator("input.thodare-comment").fill("looks good")
        view.screenshot(path=str(ARTIFACTS / "panel-approve.png"))
        keep_screenshot(ARTIFACTS / "panel-approve.png")

        me = page.evaluate(ME_JS)
        assert me and me != "notebook"
        details.locator("button.thodare-approve").click()
        expect(view).to_have_attribute("data-status", "completed", timeout=TIMEOUT_MS)
        expect(details.locator(".thodare-notice")).to_have_text(f"Approved as {me}: woke 1 run.")
        view.locator('table.thodare-steps tr[data-block-id="after"]').click()
        after = view.locator('.thodare-run-output[data-block-id="after"]')
        expect(after.locator("pre:not(.thodare-logs)")).to_contain_text(f'"by": "{me}"')
        view.screenshot(path=str(ARTIFACTS / "panel-approved.png"))
