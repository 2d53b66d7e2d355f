"""The panel's live feed and its database, on a real Jupyter server, SQLite and PostgreSQL.

``GET /thodare/api/events`` is a server-sent event stream: a run created in the
database (by a kit, as in a kernel) reaches a subscriber as a ``change`` within a
second, on SQLite (the shared ``data_version`` look) and on PostgreSQL (LISTEN).
``?kernel=K`` reads the database kernel K told in its 0600 runtime file: the
info route names it with the password masked, and no response carries the
password; a file others can read is ignored. Run ids shorten on the routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from durable_helpers import KitFactory, block, chain_wf, is_pg
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPResponse
from traitlets.config import Config

from thodare_jupyter import Wfkit, create_wfkit
from thodare_jupyter.kernel_db import db_file

pytest_plugins = ("pytest_jupyter.jupyter_server",)

Fetch = Callable[..., Awaitable[HTTPResponse]]
QUICK = chain_wf("quick", block("hello", "transform", {"template": {"text": "hi"}}))


@pytest.fixture
def jp_server_config() -> Config:
    """Only our extension (not the terminals one the default config enables)."""
    return Config({"ServerApp": {"jpserver_extensions": {"thodare_jupyter.server": True}}})


@pytest.fixture
def kit(any_kits: KitFactory, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Wfkit:
    """A kit (no worker) on the database the server reads too (``THODARE_DB``)."""
    monkeypatch.setenv("THODARE_DB", db_url)
    return any_kits()


class Stream:
    """An event stream read in the background: each event with the time it came."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        self.events: list[tuple[float, str, str]] = []
        self._buffer = ""
        self.task = asyncio.ensure_future(
            AsyncHTTPClient().fetch(
                url, headers=headers, streaming_callback=self._chunk, request_timeout=8
            )
        )

    def _chunk(self, data: bytes) -> None:
        self._buffer += data.decode()
        while "\n\n" in self._buffer:
            raw, self._buffer = self._buffer.split("\n\n", 1)
            fields = dict(line.split(": ", 1) for line in raw.splitlines() if ": " in line)
            if "event" in fields:
                self.events.append((time.monotonic(), fields["event"], fields.get("data", "")))

    async def first(self, event: str, after: float = 0.0, within: float = 5.0) -> float:
        """When the first ``event`` after ``after`` came (fails after ``within`` s)."""
        end = time.monotonic() + within
        while time.monotonic() < end:
            for at, name, _ in self.events:
                if name == event and at >= after:
                    return at
            await asyncio.sleep(0.02)
        raise AssertionError(f"no {event!r} event within {within} s; got {self.events}")

    async def close(self) -> None:
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError, HTTPClientError):
            await self.task


def _url(port: int, base: str, path: str) -> str:
    return f"http://localhost:{port}{base}thodare/api/{path}"


async def test_a_new_run_reaches_the_stream_within_a_second(
    kit: Wfkit, jp_fetch: Fetch, jp_http_port: int, jp_base_url: str,
    jp_auth_header: dict[str, str],
) -> None:  # fmt: skip
    stream = Stream(_url(jp_http_port, jp_base_url, "events"), jp_auth_header)
    try:
        await stream.first("ready", within=15)
        await asyncio.sleep(0.6)  # the watcher has looked at least once
        t0 = time.monotonic()
        run = await asyncio.to_thread(kit.run, QUICK, {})
        came = await stream.first("change", after=t0)
        assert came - t0 < 1.0, f"the change took {came - t0:.2f} s"
        listed = json.loads((await jp_fetch("thodare", "api", "runs")).body)
        assert [r["id"] for r in listed] == [run.id]
        short = json.loads((await jp_fetch("thodare", "api", "runs", run.id[:8])).body)
        assert short["id"] == run.id
    finally:
        await stream.close()


def _tell(runtime: Path, kernel: str, url: str, mode: int = 0o600) -> Path:
    path = db_file(runtime, kernel)
    assert path is not None
    path.write_text(json.dumps({"url": url, "namespace": "default"}))
    os.chmod(path, mode)
    return path


async def test_the_kernels_database_is_read_by_kernel_id_never_shown(
    kit: Wfkit, db_url: str, tmp_path: Path, jp_fetch: Fetch, jp_serverapp: Any
) -> None:
    other_url = f"sqlite:///{tmp_path / 'kernel.db'}"
    if is_pg(db_url):  # the kernel's PostgreSQL, with a password (trust auth ignores it)
        other_url = db_url.replace("postgres@", "postgres:s3cret-pw@")
    other = create_wfkit(other_url, namespace="default" if is_pg(db_url) else None)
    try:
        mine = await asyncio.to_thread(other.run, QUICK, {})
    finally:
        other.close()
    runtime = Path(jp_serverapp.kernel_manager.connection_dir)
    _tell(runtime, "k-told", other_url)
    _tell(runtime, "k-open", other_url, 0o644)  # readable by others: not trusted

    bodies = []
    for path, params in (("info", {"kernel": "k-told"}), ("runs", {"kernel": "k-told"}),
                         ("info", {"kernel": "k-open"}), ("info", {})):  # fmt: skip
        bodies.append(json.loads((await jp_fetch("thodare", "api", path, params=params)).body))
    info, runs, open_info, server_info = bodies
    assert info["source"] == "kernel" and info["url"].startswith(other_url.split(":")[0])
    assert mine.id in [r["id"] for r in runs]
    assert open_info["source"] == server_info["source"] == "server"
    assert "s3cret-pw" not in json.dumps(bodies)
    if is_pg(db_url):
        assert "***" in info["url"] and info["backend"] == "PostgreSQL"
    else:
        assert info["url"] == other_url and info["runs"]["pending"] == 1


async def test_run_routes_take_a_prefix_and_name_the_candidates(
    kit: Wfkit, jp_fetch: Fetch
) -> None:
    wf = kit.compile(QUICK)
    twins = ("abcd1111" + "0" * 24, "abcd2222" + "0" * 24)
    for rid in twins:
        kit.store.runs.create_run("quick", wf.to_json(), {}, run_id=rid)
    one = json.loads((await jp_fetch("thodare", "api", "runs", "abcd2222")).body)
    assert one["id"] == twins[1]
    svg = (await jp_fetch("thodare", "api", "runs", "abcd1", "dag.svg")).body.decode()
    assert svg.startswith("<svg")
    for prefix, code, needles in (("abcd", 409, twins), ("ab", 400, ("at least 4",)),
                                  ("ffff", 404, ("No run",))):  # fmt: skip
        with pytest.raises(HTTPClientError) as ei:
            await jp_fetch("thodare", "api", "runs", prefix)
        assert ei.value.code == code and ei.value.response is not None
        message = json.loads(ei.value.response.body)["message"]
        assert all(n in message for n in needles), message


def test_a_kernels_database_is_shared_and_closed_when_no_live_kernel_tells_it(
    tmp_path: Path,
) -> None:
    from thodare_jupyter.server.runs import Runs
    from thodare_jupyter.server.sources import Sources

    def tell(kernel: str, db: str) -> None:
        path = db_file(tmp_path, kernel)
        assert path is not None
        path.write_text(json.dumps({"url": f"sqlite:///{tmp_path / db}", "namespace": "default"}))
        path.chmod(0o600)

    server = Runs(f"sqlite:///{tmp_path / 'server.db'}", "default")
    sources = Sources(server, str(tmp_path), None)
    try:
        tell("k1", "nb.db")
        tell("k2", "nb.db")
        (one, src), (two, _) = sources.get("k1"), sources.get("k2")
        assert src == "kernel" and one is two  # two notebooks on one file: one backend
        one.info()  # opened
        db_file(tmp_path, "k1").unlink()  # type: ignore[union-attr]
        assert sources.get("k1") == (server, "server")
        assert one._kit is not None  # k2 still tells it
        db_file(tmp_path, "k2").unlink()  # type: ignore[union-attr]
        assert sources.get("k2") == (server, "server")
        assert one._kit is None  # closed with the last kernel that told it
    finally:
        sources.close()
