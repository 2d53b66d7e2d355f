"""A real JupyterLab on loopback driven by headless Debian Chromium (Playwright).

``start_lab`` runs ``jupyter lab`` (free port, random token, a temp root dir,
quiet settings, its own runtime dir) as a process group and kills it after;
it serves this tree's panel build (``labextension/dist``, from ``jlpm
build:prod``) when there is one, ahead of the installed copy, so a rebuilt
panel is what the tests see;
``browser_page`` opens Chromium at /usr/bin/chromium (never a downloaded
browser), keeps the console in ``test-artifacts/`` and fails on front-end
errors; ``run_notebook`` opens a notebook and runs every cell with
JupyterLab's own ``notebook:run-all-cells``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
PANEL_BUILD = Path(__file__).resolve().parents[1] / "labextension" / "dist"
RUN_TIMEOUT_MS = 90_000
# Lab settings for a quiet, predictable UI: no "Jupyter news?" toast over the notebook.
SETTINGS = {
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False}
}
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
STDERR = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'


@dataclass
class Lab:
    """A running JupyterLab: where it answers, with which token, and the dir it serves."""

    url: str
    token: str
    root: Path
    log: Path


def chromium_or_skip() -> Path:
    """The system Chromium; skip without it (fail under CI, which must run the browser tests)."""
    if not CHROMIUM.exists():
        reason = f"{CHROMIUM} missing: apt-get install -y chromium (browsers are never downloaded)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return CHROMIUM


def write_notebook(path: Path, cells: list[str]) -> None:
    """A notebook of code cells with no outputs."""
    code = [{"cell_type": "code", "metadata": {}, "source": s, "outputs": [],
             "execution_count": None} for s in cells]  # fmt: skip
    meta = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    path.write_text(json.dumps({"cells": code, "metadata": meta, "nbformat": 4,
                                "nbformat_minor": 5}))  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


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


@contextlib.contextmanager
def start_lab(tmp_path: Path) -> Iterator[Lab]:
    """``jupyter lab`` serving ``tmp_path/root``, runs in ``tmp_path/runs.db``; killed after."""
    root = tmp_path / "root"
    root.mkdir()
    for name, values in SETTINGS.items():
        path = tmp_path / "settings" / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(values))
    port, token = _free_port(), secrets.token_hex(16)
    jupyter_path = os.environ.get("JUPYTER_PATH", "")
    if (PANEL_BUILD / "package.json").exists():  # first on JUPYTER_PATH wins over the installed
        served = tmp_path / "jupyter" / "labextensions" / "thodare-jupyter"
        served.parent.mkdir(parents=True)
        served.symlink_to(PANEL_BUILD)
        jupyter_path = os.pathsep.join(p for p in (str(tmp_path / "jupyter"), jupyter_path) if p)
    env = dict(os.environ, THODARE_DB=str(tmp_path / "runs.db"), JUPYTER_PATH=jupyter_path,
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
        yield Lab(url, token, root, log)
    finally:
        _stop(proc)


@contextlib.contextmanager
def browser_page(chromium: Path, console_log: str, height: int = 1000) -> Iterator[Any]:
    """A Chromium page; its console goes to ``test-artifacts/<console_log>``.

    On a normal exit, any page error or ``console.error`` fails the test.
    """
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=30_000)  # each click is a kernel round trip on a busy machine
    ARTIFACTS.mkdir(exist_ok=True)
    messages: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(chromium), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": height})
            page.on("console", lambda m: messages.append(f"console.{m.type}: {m.text}"))
            page.on("pageerror", lambda e: messages.append(f"pageerror: {e}"))
            yield page
        finally:
            (ARTIFACTS / console_log).write_text("\n".join(messages) + "\n")
            browser.close()
    broken = [m for m in messages if m.startswith(("pageerror", "console.error"))]
    assert not broken, f"front-end errors: {broken}"


def open_notebook(page: Any, lab: Lab, notebook: str) -> None:
    """Open ``notebook`` in the lab and wait for its kernel to be idle."""
    page.goto(f"{lab.url}/lab/tree/{notebook}?token={lab.token}")
    page.wait_for_function(KERNEL_IDLE, timeout=60_000)


def run_notebook(page: Any, lab: Lab, notebook: str) -> None:
    """Open ``notebook`` and run all its cells; fail with the cells' stderr if one fails."""
    open_notebook(page, lab, notebook)
    page.evaluate(RUN_ALL)
    page.wait_for_function("() => window.__thodareRanAll !== undefined", timeout=RUN_TIMEOUT_MS)
    ran = page.evaluate("() => window.__thodareRanAll")
    assert ran is True, (
        f"Run All returned {ran!r}; stderr: {page.locator(STDERR).all_inner_texts()}"
    )


def keep_screenshot(shot: Path) -> None:
    """Copy ``shot`` (under ``test-artifacts/``) to ``docs/`` when ``THODARE_UPDATE_SCREENSHOT=1``
    (a test run leaves the tracked pictures alone otherwise)."""
    if os.environ.get("THODARE_UPDATE_SCREENSHOT") == "1":
        docs = Path(__file__).resolve().parents[1] / "docs"
        (docs / shot.name).write_bytes(shot.read_bytes())
