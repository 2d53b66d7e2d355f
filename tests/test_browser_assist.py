"""The assistant end to end in a real JupyterLab (headless Chromium), on a fake model server.

A notebook defines ``digest`` in a ``%%workflow`` cell and asks ``%%assist``
for an approval step; the fake OpenAI-compatible server on 127.0.0.1 answers.
Accept in the proposal widget makes the lab extension rewrite the
``%%workflow`` cell in place (comments kept). Then the Workflows panel's chat
asks for another change, and Accept there rewrites the cell again. Each
version is in ``%workflow history``; the rewritten cell runs again. After a page
reload the panel opens its own comm to the kernel. Screenshots go to ``test-artifacts/``
(``THODARE_UPDATE_SCREENSHOT=1`` also copies the proposal's to ``docs/``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_llm import FakeLLM, approval_between, fake_llm
from lab_harness import (
    ARTIFACTS,
    RUN_TIMEOUT_MS,
    Lab,
    browser_page,
    open_notebook,
    run_notebook,
    write_notebook,
)

NOTEBOOK = "assist.ipynb"
DOCS = Path(__file__).resolve().parents[1] / "docs"
FLOW = """%%workflow digest
# Morning digest for the sales team
steps:
  fetch:
    uses: http   # the CRM
    with: {url: "https://crm.example/leads"}
  post:
    uses: slack
    with: {operation: send, channel: "#sales", text: "Leads: {{fetch.body}}"}"""
CELLS = ["%load_ext thodare_jupyter", FLOW, "%%assist digest\nAsk a human before posting."]
APPROVE = approval_between(
    "fetch", "post", "Post {{fetch.status}}?", "A human approves before the digest is posted."
)
CHANNEL = {
    "operations": [{"operation_type": "edit", "block_id": "post", "params": {"channel": "#leads"}}],
    "explanation": "The digest now goes to #leads.",
}
CELL_SOURCE = (
    "(i) => window.jupyterapp.shell.currentWidget.content.widgets[i].model.sharedModel.getSource()"
)


@pytest.fixture
def model(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLLM]:
    """The fake model, in the environment the lab server (and so the kernel) inherits."""
    with fake_llm(APPROVE, CHANNEL) as server:
        monkeypatch.setenv("THODARE_LLM_MODEL", "openai:fake")
        monkeypatch.setenv("OPENAI_BASE_URL", server.openai_url)
        monkeypatch.setenv("THODARE_LLM_RETRIES", "0")
        yield server


def test_accept_in_the_widget_and_in_the_panel_rewrites_the_cell(
    model: FakeLLM, chromium: Path, lab: Lab
) -> None:
    from playwright.sync_api import expect

    write_notebook(lab.root / NOTEBOOK, CELLS)
    with browser_page(chromium, "browser-assist-console.log", height=1100) as page:
        run_notebook(page, lab, NOTEBOOK)
        widget = page.locator(".jp-Notebook .thodare-proposal")
        expect(widget).to_have_attribute("data-state", "pending", timeout=RUN_TIMEOUT_MS)
        expect(widget.locator(".thodare-explanation")).to_have_text(APPROVE["explanation"])
        expect(widget.locator(".thodare-ops li")).to_have_count(4)
        added = widget.locator('svg g[data-block-id="approve"][data-status="added"]')
        expect(added).to_have_count(1)
        widget.scroll_into_view_if_needed()
        widget.screenshot(path=str(ARTIFACTS / "assist-proposal.png"))
        widget.locator("button.thodare-accept").click()
        expect(widget.locator(".thodare-message")).to_contain_text(
            "Accepted as version 2 of digest; the %%workflow cell was rewritten"
        )
        page.wait_for_function(f"() => ({CELL_SOURCE})(1).includes('needs: [approve]')")
        source = page.evaluate(f"({CELL_SOURCE})(1)")
        assert source.startswith("%%workflow digest\n# Morning digest for the sales team\n")
        assert "    uses: http   # the CRM\n" in source
        assert "  approve:\n    uses: human_approval\n" in source
        flow_cell = page.locator(".jp-Notebook .jp-Cell").nth(1)  # ran again: the new DAG
        expect(flow_cell.locator("g.thodare-node")).to_have_count(4)

        page.locator('.jp-SideBar [data-id="thodare-workflows"]').click()
        chat = page.locator("#thodare-workflows .thodare-chat")
        expect(chat).to_have_attribute("data-connected", "true")
        chat.locator(".thodare-chat-workflow").select_option("digest")
        chat.locator(".thodare-chat-input").fill("Post to #leads instead.")
        chat.locator(".thodare-chat-send").click()
        card = chat.locator(".thodare-proposal")
        expect(card).to_have_attribute("data-applied", "true", timeout=RUN_TIMEOUT_MS)
        expect(card.locator(".thodare-explanation")).to_have_text(CHANNEL["explanation"])
        page.screenshot(path=str(ARTIFACTS / "assist-panel.png"))
        card.locator("button.thodare-accept").click()
        expect(card).to_have_attribute("data-state", "accepted")
        expect(card.locator(".thodare-decision")).to_have_text("Accepted: digest is now version 3.")
        page.wait_for_function(f"() => ({CELL_SOURCE})(1).includes('channel: \"#leads\"')")
        assert "needs: [approve]" in page.evaluate(f"({CELL_SOURCE})(1)")

        page.reload()  # the kernel's comm went to the old page: the new one opens its own
        open_notebook(page, lab, NOTEBOOK)
        page.locator('.jp-SideBar [data-id="thodare-workflows"]').click()
        chat = page.locator("#thodare-workflows .thodare-chat")
        expect(chat).to_have_attribute("data-connected", "true")
        expect(chat.locator(".thodare-chat-workflow option")).to_have_text(["digest (3 steps)"])
    assert len(model.requests) == 2
    if os.environ.get("THODARE_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(ARTIFACTS / "assist-proposal.png", DOCS / "assist-proposal.png")
