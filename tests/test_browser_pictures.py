"""DAG pictures in a real JupyterLab (headless Debian Chromium): they fit, they agree, they stay.

One notebook draws a completed 4-step run, a failed run and a 200-block
definition. Live, each DAG lies inside its cell (fit, zoom, pan work), the failed
run's failing node is red with its error and the step after it "not run". Saved,
its kernel shut down and reopened in a fresh page, every DAG output still shows
its picture (an <img> of the saved SVG) and says the kernel is gone; after the
definition cells run again, Reattach shows the run live. A kernel restart under a
live widget makes it say so. Screenshots go to ``test-artifacts/``;
``THODARE_UPDATE_SCREENSHOT=1`` also copies them to ``docs/`` (``dag-reopened.png``,
``dag-200-nodes.png`` at 1:1, ``dag-failed.png``).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import urllib.request
from pathlib import Path
from typing import Any

from lab_harness import (
    ARTIFACTS,
    RUN_TIMEOUT_MS,
    Lab,
    browser_page,
    open_notebook,
    run_notebook,
    write_notebook,
)

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
NOTEBOOK = "pictures.ipynb"
DEFINITIONS = 5
"""The first cells define (extension, connector, three workflows); the rest run and draw."""
CELLS = [
    "%load_ext thodare_jupyter",
    '''import contextlib

from pydantic import BaseModel

from thodare_jupyter import connector


class Order(BaseModel):
    order: str


@connector("charge-card", retries=1)
def charge(params: Order) -> Order:
    """Charge the card (this one is always declined)."""
    raise RuntimeError(f"card declined for order {params.order}")''',
    """%%workflow chain
input: {x: int}
steps:
  fetch: {uses: transform, with: {template: {v: "{{trigger.x}}"}}}
  clean: {uses: transform, with: {template: {v: "{{fetch.result}}"}}}
  score: {uses: transform, with: {template: {v: "{{clean.result}}"}}}
  store: {uses: transform, with: {template: {v: "{{score.result}}"}}}""",
    """%%workflow refund
input: {order: str}
steps:
  charge: {uses: charge-card, with: {order: "{{trigger.order}}"}}
  notify: {uses: transform, with: {template: {text: "{{charge.order}}"}}}""",
    """%%workflow nap
steps:
  rest: {uses: wait_duration, with: {duration: 3, unit: seconds}}
  wake: {uses: transform, needs: [rest], with: {template: {done: true}}}""",
    """ok = wfkit.run(chain, {"x": 1})
ok.result(timeout=60)
ok""",
    """bad = wfkit.run(refund, {"order": "o-17"})
with contextlib.suppress(Exception):
    bad.result(timeout=60)
bad""",
    """later = wfkit.run(nap)
later  # drawn while it waits: the saved picture must still end up completed""",
    """import random

from thodare_jupyter import SerializedWorkflow
from thodare_jupyter.notebook.widgets import DagView

rnd = random.Random(7)
blocks = [{"id": f"b{i:03d}", "type": "transform"} for i in range(200)]
conns = [{"source": f"b{p:03d}", "target": f"b{i:03d}"} for i in range(1, 200)
         for p in rnd.sample(range(max(0, i - 12), i), k=min(i, rnd.choice([1, 1, 2, 3])))]
DagView(SerializedWorkflow.model_validate(
    {"metadata": {"name": "big"}, "blocks": blocks, "connections": conns}))""",
]
CHAIN = ["__trigger__", "fetch", "clean", "score", "store"]
SVG = "image/svg+xml"
DAG = '.thodare-dag:has(g.thodare-node[data-block-id="{}"])'
FITS = """(dag) => {
  const canvas = dag.querySelector(".thodare-canvas").getBoundingClientRect();
  const cell = dag.closest(".jp-Cell").getBoundingClientRect();
  const nodes = [...dag.querySelectorAll("svg g.thodare-node")];
  const outside = nodes.filter(n => {
    const r = n.getBoundingClientRect();
    return r.width < 1 || r.left < canvas.left - 1 || r.right > canvas.right + 1
      || r.top < canvas.top - 1 || r.bottom > canvas.bottom + 1;
  }).map(n => n.dataset.blockId);
  return { nodes: nodes.length, outside, inCell: canvas.left >= cell.left
    && canvas.right <= cell.right + 1, width: canvas.width, height: canvas.height };
}"""
DAG_CHARGE = DAG.format("charge") + ":has(.thodare-run)"
BESIDE = """(dag) => {
  const c = dag.querySelector(".thodare-canvas").getBoundingClientRect();
  const d = dag.querySelector(".thodare-details").getBoundingClientRect();
  return { beside: d.left >= c.right && d.top < c.bottom, below: d.top >= c.bottom };
}"""
VIEWBOX = "(dag) => dag.querySelector('.thodare-canvas svg').getAttribute('viewBox')"


def _fits(dag: Any, count: int) -> dict[str, Any]:
    """Every node of ``dag`` inside its canvas, the canvas inside its cell."""
    got: dict[str, Any] = dag.evaluate(FITS)
    assert got["nodes"] == count, got
    assert got["outside"] == [], got
    assert got["inCell"], got
    return got


def _keep(*names: str) -> None:
    """With ``THODARE_UPDATE_SCREENSHOT=1``, copy these screenshots to ``docs/``."""
    if os.environ.get("THODARE_UPDATE_SCREENSHOT") == "1":
        DOCS.mkdir(exist_ok=True)
        for name in names:
            shutil.copyfile(ARTIFACTS / name, DOCS / name)


def _save(page: Any) -> None:
    page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
    page.wait_for_function(
        "() => { const nb = window.jupyterapp.shell.currentWidget;"
        " return nb && nb.context && !nb.context.model.dirty; }"
    )


def _api(lab: Lab, path: str, method: str = "GET") -> Any:
    req = urllib.request.Request(
        f"{lab.url}/api/{path}", method=method, headers={"Authorization": f"token {lab.token}"}
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        body = resp.read()
    return json.loads(body) if body else None


def _drawn(img: Any) -> str:
    """The SVG an ``<img src="data:image/svg+xml;base64,…">`` shows."""
    src = img.get_attribute("src")
    assert src.startswith("data:image/svg+xml;base64,"), src[:60]
    return base64.b64decode(src.split(",", 1)[1]).decode()


def _run_and_check_live(page: Any, lab: Lab) -> None:
    from playwright.sync_api import expect

    run_notebook(page, lab, NOTEBOOK)
    chain = page.locator(DAG.format("store"))
    expect(chain).to_have_count(2, timeout=RUN_TIMEOUT_MS)  # the definition, then the run
    run = page.locator(DAG.format("store") + ":has(.thodare-run)")
    expect(run.locator('g.thodare-node[data-status="completed"]')).to_have_count(5)
    _fits(run, 5)
    ids = run.locator("svg g.thodare-node").evaluate_all("ns => ns.map(n => n.dataset.blockId)")
    assert ids == CHAIN
    expect(run.locator('g.thodare-node[data-block-id="__trigger__"] text').first).to_have_text(
        "input"
    )


def _nap_done(page: Any) -> None:
    """The run drawn while it waited has ended (its widget says so)."""
    from playwright.sync_api import expect

    nap = page.locator(DAG.format("wake") + ":has(.thodare-run)")
    expect(nap.locator('g.thodare-node[data-block-id="wake"]')).to_have_attribute(
        "data-status", "completed", timeout=RUN_TIMEOUT_MS
    )


def test_live_dags_fit_zoom_pan_and_a_failed_run_is_red(chromium: Path, lab: Lab) -> None:
    """4 steps and 200 blocks lie inside their cells; zoom, pan, fit; the failed node red."""
    from playwright.sync_api import expect

    write_notebook(lab.root / NOTEBOOK, CELLS)
    with browser_page(chromium, "browser-pictures-live.log") as page:
        _run_and_check_live(page, lab)

        failed = page.locator(DAG_CHARGE)
        charge = failed.locator('g.thodare-node[data-block-id="charge"]')
        expect(charge).to_have_attribute("data-status", "failed", timeout=RUN_TIMEOUT_MS)
        assert charge.locator("rect").get_attribute("fill") == "#ef9a9a"
        notify = failed.locator('g.thodare-node[data-block-id="notify"]')
        expect(notify).to_have_attribute("data-status", "not run")
        head = failed.locator(".thodare-details .thodare-error").first
        expect(head).to_have_text("charge: RuntimeError: card declined for order o-17")
        assert not failed.locator('g.thodare-node[data-status="waiting"]').count()
        _fits(failed, 3)
        failed.scroll_into_view_if_needed()
        failed.screenshot(path=str(ARTIFACTS / "dag-failed.png"))

        big = page.locator(DAG.format("b199"))
        expect(big).to_have_count(1)
        got = _fits(big, 200)
        assert 300 <= got["height"] <= 562, got  # not a blank nor a thin strip
        big.scroll_into_view_if_needed()
        big.screenshot(path=str(ARTIFACTS / "dag-200-nodes-fit.png"))
        big.locator(".thodare-actual").click()  # 1:1 at the left: readable boxes
        assert big.locator(".thodare-canvas").get_attribute("data-zoom") == "1.000"
        big.screenshot(path=str(ARTIFACTS / "dag-200-nodes.png"))
        big.locator(".thodare-fit").click()
        fitted = big.evaluate(VIEWBOX)
        zoom = float(big.locator(".thodare-canvas").get_attribute("data-zoom") or 0)
        big.locator(".thodare-zoom-in").click()
        big.locator(".thodare-zoom-in").click()
        assert float(big.locator(".thodare-canvas").get_attribute("data-zoom") or 0) > zoom
        box = big.locator(".thodare-canvas svg").bounding_box()
        assert box is not None
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] / 2 - 200, box["y"] + box["height"] / 2, steps=5)
        page.mouse.up()
        panned = big.evaluate(VIEWBOX)
        assert panned != fitted
        assert float(panned.split()[0]) > float(fitted.split()[0])  # dragged left: view right
        big.locator(".thodare-fit").click()
        assert big.evaluate(VIEWBOX) == fitted
        page.mouse.move(box["x"] + 40, box["y"] + box["height"] / 2)
        page.keyboard.down("Control")  # ctrl + wheel zooms where the pointer is
        page.mouse.wheel(0, -400)
        page.keyboard.up("Control")
        page.wait_for_function(
            f"() => document.querySelector('{DAG.format('b199')} .thodare-canvas').dataset.zoom"
            f" > {zoom}"
        )
        big.locator(".thodare-fit").click()
        _fits(big, 200)

        beside = failed.evaluate(BESIDE)
        assert beside["beside"], beside  # a wide cell: the details at the DAG's right
        page.set_viewport_size({"width": 900, "height": 1000})
        page.wait_for_function(f"() => !({BESIDE})(document.querySelector('{DAG_CHARGE}')).beside")
        below = failed.evaluate(BESIDE)
        assert below["below"], below  # a narrow one: below it, the DAG refitted
        _fits(failed, 3)
        page.set_viewport_size({"width": 1400, "height": 1000})

        _save(page)
        page.reload()  # the same kernel: the widgets come back live, still fitting
        page.wait_for_function("() => !!document.querySelector('.jp-Notebook')")
        run = page.locator(DAG.format("store") + ":has(.thodare-run)")
        expect(run).to_have_count(1, timeout=RUN_TIMEOUT_MS)
        expect(run.locator('g.thodare-node[data-status="completed"]')).to_have_count(5)
        _fits(run, 5)
    _keep("dag-failed.png", "dag-200-nodes.png")


def test_a_reopened_notebook_shows_its_pictures_and_reattaches(chromium: Path, lab: Lab) -> None:
    """Saved, kernel shut down, reopened in a fresh page: pictures, a banner, Reattach."""
    from playwright.sync_api import expect

    write_notebook(lab.root / NOTEBOOK, CELLS)
    with browser_page(chromium, "browser-pictures-save.log") as page:
        _run_and_check_live(page, lab)
        _nap_done(page)
        _save(page)
    for session in _api(lab, "sessions"):
        _api(lab, f"sessions/{session['id']}", method="DELETE")
    saved = json.loads((lab.root / NOTEBOOK).read_text())
    bundles = [o for c in saved["cells"] for o in c.get("outputs", [])
               if "image/svg+xml" in o.get("data", {})]  # fmt: skip
    assert len(bundles) >= 4  # the definitions, the three runs, the big one
    ours = [o["metadata"].get("thodare") or {} for o in bundles]
    assert all(ours)  # every DAG output is marked as ours (the definitions too)
    run_ids = [m["run_id"] for m in ours if m["run_id"]]
    assert len(run_ids) == 3
    nap = "".join(next(o for o in bundles if 'data-block-id="wake"' in "".join(o["data"][SVG])
                       and o["metadata"]["thodare"]["run_id"])["data"][SVG])  # fmt: skip
    assert 'data-block-id="wake" data-status="completed"' in nap  # the live widget's last

    with browser_page(chromium, "browser-pictures-reopen.log") as page:
        open_notebook(page, lab, NOTEBOOK)  # a new kernel: none of the widget models exist
        pictures = page.locator(".thodare-output[data-view='picture'] .thodare-picture img")
        expect(pictures).to_have_count(len(bundles), timeout=RUN_TIMEOUT_MS)
        drawn = [_drawn(img) for img in pictures.all()]
        for img in pictures.all():
            img.scroll_into_view_if_needed()
            assert img.evaluate("i => i.complete && i.naturalWidth > 0"), "an image not drawn"
            assert img.is_visible()
        done = 'data-block-id="store" data-status="completed"'
        chain_run = next(i for i, svg in enumerate(drawn) if done in svg)
        for block in CHAIN:
            assert f'data-block-id="{block}"' in drawn[chain_run]
        assert any('data-block-id="charge" data-status="failed"' in svg for svg in drawn)
        assert page.locator(".thodare-dag").count() == 0  # no live widget: none can be
        output = page.locator(".jp-Notebook .jp-Cell").nth(DEFINITIONS).locator(".thodare-output")
        assert _drawn(output.locator(".thodare-picture img")) == drawn[chain_run]
        banner = output.locator(".thodare-gone")
        expect(banner).to_contain_text("The kernel that drew this run is gone")
        output.scroll_into_view_if_needed()
        output.screenshot(path=str(ARTIFACTS / "dag-reopened.png"))

        for i in range(DEFINITIONS):  # the definition cells again, then Reattach
            page.locator(".jp-Notebook .jp-Cell").nth(i).click()
            page.keyboard.press("Shift+Enter")
        page.wait_for_function(
            f"() => [...document.querySelectorAll('.jp-Notebook .jp-Cell')].slice(0, {DEFINITIONS})"
            ".every(c => /\\[\\d+\\]/.test(c.querySelector('.jp-InputPrompt').textContent))",
            timeout=RUN_TIMEOUT_MS,
        )
        banner.locator("button.thodare-reattach").click()
        live = page.locator(DAG.format("store") + ":has(.thodare-run)")
        expect(live).to_have_count(1, timeout=RUN_TIMEOUT_MS)
        expect(live.locator('g.thodare-node[data-status="completed"]')).to_have_count(5)
        expect(live.locator(".thodare-run")).to_contain_text(run_ids[0][:12])
    _keep("dag-reopened.png")


def test_a_kernel_restart_under_a_live_widget_says_it_is_gone(chromium: Path, lab: Lab) -> None:
    """Restart the kernel: the run's widget says its kernel is gone and offers Reattach."""
    from playwright.sync_api import expect

    write_notebook(lab.root / NOTEBOOK, CELLS[: DEFINITIONS + 1])
    with browser_page(chromium, "browser-pictures-restart.log") as page:
        run_notebook(page, lab, NOTEBOOK)
        run = page.locator(DAG.format("store") + ":has(.thodare-run)")
        expect(run.locator('g.thodare-node[data-status="completed"]')).to_have_count(5)
        expect(run.locator(".thodare-gone")).to_have_count(0)
        page.evaluate(
            "() => window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.restart()"
        )
        expect(run.locator(".thodare-gone")).to_contain_text(
            "The kernel that drew this run is gone", timeout=RUN_TIMEOUT_MS
        )
        expect(run.locator(".thodare-gone button.thodare-reattach")).to_be_visible()
