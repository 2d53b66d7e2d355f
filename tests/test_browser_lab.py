"""The quickstart notebook in a real JupyterLab, driven by headless Chromium (Playwright).

Starts ``jupyter lab`` on 127.0.0.1 (free port, random token, a temp root dir
holding notebooks/01-quickstart.ipynb with its outputs cleared, ``THODARE_DB``
in the temp dir), runs all cells with JupyterLab's own ``notebook:run-all-cells``
command, and checks what a user sees: the run's DAG widget with every node
``completed``, a click on ``enrich`` showing its output in the details panel,
and the ``wfkit.runs()`` table. Screenshots go to ``test-artifacts/``;
``THODARE_UPDATE_SCREENSHOT=1`` also copies the widget's to ``docs/dag-widget.png``.

Needs /usr/bin/chromium (``apt-get install -y chromium``): skipped without it,
except under ``CI=true`` where it fails. Never downloads a browser.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "01-quickstart.ipynb"
ARTIFACTS = REPO / "test-artifacts"
DOCS_SCREENSHOT = REPO / "docs" / "dag-widget.png"
RUN_TIMEOUT_MS = 90_000
# Lab settings for a quiet, predictable UI: no "Jupyter news?" toast over the notebook.
SETTINGS = {
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False}
}


@dataclass
class Lab:
    """A running JupyterLab: where it answers and with which token."""

    url: str
    token: str
    log: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _cleared_copy(src: Path, dest: Path) -> None:
    """Copy a notebook without outputs, execution counts or saved widget state."""
    nb = json.loads(src.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    nb["metadata"].pop("widgets", None)
    dest.write_text(json.dumps(nb, indent=1))


def _wait_ready(proc: subprocess.Popen[bytes], url: str, token: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    request = urllib.request.Request(
        f"{url}/api/status", headers={"Authorization": f"token {token}"}
    )
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"jupyter lab exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(OSError), urllib.request.urlopen(request, timeout=2) as resp:
            if resp.status == 200 and "started" in json.load(resp):
                return
        time.sleep(0.2)
    pytest.fail(f"jupyter lab did not answer {url}/api/status in 60 s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group (it shuts its kernels down), SIGKILL if it lingers."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@pytest.fixture
def chromium() -> Path:
    """The system Chromium; skip without it (fail under CI, which must run this test)."""
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} missing: apt-get install -y chromium (browsers are never downloaded)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return CHROMIUM


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    """``jupyter lab`` serving a cleared copy of the quickstart, killed at teardown."""
    root = tmp_path / "root"
    root.mkdir()
    _cleared_copy(NOTEBOOK, root / NOTEBOOK.name)
    for name, values in SETTINGS.items():
        path = tmp_path / "settings" / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(values))
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, THODARE_DB=str(tmp_path / "runs.db"),
               JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"))  # fmt: skip
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1",
           f"--port={port}", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
           "--LabApp.expose_app_in_browser=True"]  # fmt: skip
    if os.geteuid() == 0:
        cmd.append("--ServerApp.allow_root=True")
    log = tmp_path / "lab.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_ready(proc, url, token, log)
        yield Lab(url, token, log)
    finally:
        _stop(proc)


KERNEL_IDLE = """() => {
  const nb = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  const kernel = nb && nb.sessionContext && nb.sessionContext.session
    && nb.sessionContext.session.kernel;
  return !!kernel && kernel.status === "idle" && !!document.querySelector(".jp-Notebook");
}"""
RUN_ALL = """() => {
  window.__thodareRanAll = undefined;
  window.jupyterapp.commands.execute("notebook:run-all-cells").then(
    ok => { window.__thodareRanAll = ok; }, e => { window.__thodareRanAll = String(e); });
}"""
RUN_DAG = ".thodare-dag:has(.thodare-run)"
ALL_COMPLETED = """(sel) => {
  const nodes = [...document.querySelectorAll(sel + " svg g.thodare-node")];
  return nodes.length > 0 && nodes.every(n => n.dataset.status === "completed");
}"""
STDERR = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'


def test_quickstart_runs_in_jupyterlab(chromium: Path, lab: Lab) -> None:
    """Run All in JupyterLab: the run's DAG turns green, a click shows enrich's output."""
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)  # each click is a kernel round trip on a busy machine
    ARTIFACTS.mkdir(exist_ok=True)
    messages: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("console", lambda m: messages.append(f"console.{m.type}: {m.text}"))
            page.on("pageerror", lambda e: messages.append(f"pageerror: {e}"))
            page.goto(f"{lab.url}/lab/tree/{NOTEBOOK.name}?token={lab.token}")
            page.wait_for_function(KERNEL_IDLE, timeout=60_000)

            page.evaluate(RUN_ALL)
            page.wait_for_function("() => window.__thodareRanAll !== undefined",
                                   timeout=RUN_TIMEOUT_MS)  # fmt: skip
            ran = page.evaluate("() => window.__thodareRanAll")
            errors = page.locator(STDERR).all_inner_texts()
            assert ran is True, f"Run All returned {ran!r}; stderr: {errors}; {messages}"

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

            dag.locator('g.thodare-node[data-block-id="enrich"]').click()
            details = dag.locator(".thodare-details")
            expect(details.locator("h4")).to_have_text("enrich · enrich-lead · completed")
            expect(details).to_contain_text('"email": "{{trigger.email}}"')
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
        finally:
            (ARTIFACTS / "browser-console.log").write_text("\n".join(messages) + "\n")
            browser.close()
    if os.environ.get("THODARE_UPDATE_SCREENSHOT") == "1":
        DOCS_SCREENSHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(ARTIFACTS / "dag-widget.png", DOCS_SCREENSHOT)
    broken = [m for m in messages if m.startswith(("pageerror", "console.error"))]
    assert not broken, f"front-end errors: {broken}"
