"""``GET /thodare/api/runs/{id}/artifacts/{artifact}``: a run's tables and files, downloaded.

A real Jupyter server (pytest-jupyter) with ``thodare_jupyter.server`` enabled,
a real kit run on a temp SQLite file whose step returned a pandas table and two
files; requests over HTTP on loopback with the server's token (and refused
without it). The server finds the store the way the kit does (beside the
SQLite file) or at ``c.ThodareServer.artifacts_url``. Only an artifact that
the run's step rows reference is served: another run's artifact, a made-up id
or a malformed one is a 404; a missing or corrupt artifact is a 404/503 naming
the store with its password masked.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from durable_helpers import KitFactory, block, chain_wf
from pydantic import BaseModel
from tornado.httpclient import HTTPClientError, HTTPResponse
from traitlets.config import Config

from thodare_jupyter import File, Table, Wfkit, connector

pytest_plugins = ("pytest_jupyter.jupyter_server",)

Fetch = Callable[..., Awaitable[HTTPResponse]]
MEMORY = f"memory://analyst:s3cret-pw@ui15-{uuid.uuid4().hex[:8]}/artifacts"
"""A store URL with a password (memory:// is shared by the test's kit and the server)."""
REPORT = "Q3 report – été.txt"
PAGE = b"<html><script>alert(document.cookie)</script></html>"


class ExportIn(BaseModel):
    n: int
    folder: str


class ExportOut(BaseModel):
    rows: Table
    report: File
    page: File
    n: int


@connector("ui15-export")
def export(p: ExportIn) -> ExportOut:
    """A table of ``n`` leads, a text report (a path: its name is kept) and an HTML page."""
    df = pd.DataFrame({"name": [f"lead-{i}" for i in range(p.n)],
                       "score": [i * 1.5 for i in range(p.n)],
                       "tags": [["a", "b"][: i % 3] for i in range(p.n)]})  # fmt: skip
    path = Path(p.folder) / REPORT
    path.write_text(f"{p.n} leads\n")
    return ExportOut(rows=df, report=path, page=PAGE, n=p.n)


EXPORT = chain_wf(
    "export", block("export", "ui15-export", {"n": "{{trigger.n}}", "folder": "{{trigger.folder}}"})
)


class OddOut(BaseModel):
    odd: Table


@connector("ui15-odd")
def odd(p: ExportIn) -> OddOut:
    """A pyarrow table of bytes, structs and lists (CSV cannot hold them as they are)."""
    return OddOut(odd=pa.table({"raw": [b"\x00\xff", None], "point": [{"x": 1}, None],
                                "tags": [["a"], []]}))  # fmt: skip


class BigOut(BaseModel):
    items: list[str]


@connector("ui15-big")
def big(p: ExportIn) -> BigOut:
    """An output over 256 KiB of JSON: stored apart as a whole (kind ``json``)."""
    return BigOut(items=["x" * 1000] * p.n)


@pytest.fixture
def jp_server_config() -> Config:
    return Config({"ServerApp": {"jpserver_extensions": {"thodare_jupyter.server": True}}})


@pytest.fixture
def kit(kits: KitFactory, db: Path, monkeypatch: pytest.MonkeyPatch) -> Wfkit:
    """A started kit on the SQLite file the server reads (its default store: beside it)."""
    monkeypatch.setenv("THODARE_DB", str(db))
    monkeypatch.delenv("THODARE_ARTIFACTS", raising=False)
    return kits().register(export, odd, big).start()


async def run_export(kit: Wfkit, n: int) -> tuple[str, dict[str, Any]]:
    """Run the export; its id and the step's stored output (the references)."""
    folder = Path(str(kit.store.url).split("///", 1)[1]).parent / f"files-{n}"
    folder.mkdir(exist_ok=True)
    h = kit.run(EXPORT, {"n": n, "folder": str(folder)})
    await asyncio.to_thread(h.result, 30)
    return h.id, next(s.output for s in h.describe().steps if s.block_id == "export")


async def get(jp_fetch: Fetch, run_id: str, artifact: str, **params: str) -> HTTPResponse:
    return await jp_fetch("thodare", "api", "runs", run_id, "artifacts", artifact,
                          params=params or None)  # fmt: skip


async def error(jp_fetch: Fetch, run_id: str, artifact: str, **params: str) -> tuple[int, str]:
    with pytest.raises(HTTPClientError) as info:
        await get(jp_fetch, run_id, artifact, **params)
    assert info.value.response is not None
    return info.value.code, json.loads(info.value.response.body)["message"]


async def test_a_file_downloads_as_stored_named_and_typed(jp_fetch: Fetch, kit: Wfkit) -> None:
    run_id, out = await run_export(kit, 3)
    report = out["report"]
    assert (report["kind"], report["name"], report["size"]) == ("file", REPORT, 8)

    resp = await get(jp_fetch, run_id, report["$artifact"])
    assert resp.body == b"3 leads\n"
    assert resp.headers["Content-Type"] == "text/plain"
    assert resp.headers["Content-Length"] == "8"
    assert resp.headers["Content-Disposition"] == (
        'attachment; filename="Q3 report _ _t_.txt"; '
        "filename*=UTF-8''Q3%20report%20%E2%80%93%20%C3%A9t%C3%A9.txt"
    )
    # the bare hex names it too
    bare = await get(jp_fetch, run_id, report["$artifact"].removeprefix("sha256:"))
    assert bare.body == b"3 leads\n"


async def test_an_html_file_is_an_attachment_never_a_page(jp_fetch: Fetch, kit: Wfkit) -> None:
    run_id, out = await run_export(kit, 1)
    resp = await get(jp_fetch, run_id, out["page"]["$artifact"])
    assert resp.body == PAGE
    assert resp.headers["Content-Type"] == "application/octet-stream"  # bytes without a name
    assert resp.headers["Content-Disposition"].startswith('attachment; filename="export-page"')
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


async def test_a_table_downloads_as_csv_by_default_or_parquet(jp_fetch: Fetch, kit: Wfkit) -> None:
    run_id, out = await run_export(kit, 4)
    rows = out["rows"]
    assert (rows["kind"], rows["rows"]) == ("table", 4)

    resp = await get(jp_fetch, run_id, rows["$artifact"])
    assert resp.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert 'filename="export-rows.csv"' in resp.headers["Content-Disposition"]
    got = list(csv.reader(io.StringIO(resp.body.decode())))
    assert got == [["name", "score", "tags"], ["lead-0", "0", "[]"], ["lead-1", "1.5", '["a"]'],
                   ["lead-2", "3", '["a", "b"]'], ["lead-3", "4.5", "[]"]]  # fmt: skip
    assert (await get(jp_fetch, run_id, rows["$artifact"], format="csv")).body == resp.body

    resp = await get(jp_fetch, run_id, rows["$artifact"], format="parquet")
    assert resp.headers["Content-Type"] == "application/vnd.apache.parquet"
    assert 'filename="export-rows.parquet"' in resp.headers["Content-Disposition"]
    table = pq.read_table(pa.BufferReader(resp.body))
    assert table.column("name").to_pylist() == ["lead-0", "lead-1", "lead-2", "lead-3"]
    assert table.column("score").to_pylist() == [0.0, 1.5, 3.0, 4.5]


async def test_only_an_artifact_the_run_references_is_served(jp_fetch: Fetch, kit: Wfkit) -> None:
    first, out1 = await run_export(kit, 2)
    second, out2 = await run_export(kit, 5)
    theirs = out2["rows"]["$artifact"]
    assert theirs != out1["rows"]["$artifact"]
    assert kit.artifacts.exists(theirs, "table")  # in the store, but not first's

    assert await error(jp_fetch, first, theirs) == (404, f"Run {first} has no artifact {theirs}.")
    assert (await get(jp_fetch, second, theirs)).code == 200
    made_up = "sha256:" + "0" * 64
    assert await error(jp_fetch, first, made_up) == (404, f"Run {first} has no artifact {made_up}.")
    code, msg = await error(jp_fetch, "no-such-run", out1["rows"]["$artifact"])
    assert (code, msg) == (404, "No run 'no-such-run' in this database.")


async def test_csv_holds_bytes_as_base64_and_nested_values_as_json(
    jp_fetch: Fetch, kit: Wfkit
) -> None:
    h = kit.run(chain_wf("odd", block("odd", "ui15-odd", {"n": 1, "folder": "."})), {})
    out = (await asyncio.to_thread(h.result, 30))["odd"]
    ref = next(s.output for s in h.describe().steps if s.block_id == "odd")["odd"]
    assert out["odd"].shape == (2, 3)
    resp = await get(jp_fetch, h.id, ref["$artifact"])
    assert list(csv.reader(io.StringIO(resp.body.decode()))) == [
        ["raw", "point", "tags"], ["AP8=", '{"x": 1}', '["a"]'], ["", "", "[]"]]  # fmt: skip


async def test_a_big_json_output_downloads_as_json(jp_fetch: Fetch, kit: Wfkit) -> None:
    h = kit.run(chain_wf("big", block("big", "ui15-big", {"n": 300, "folder": "."})), {})
    await asyncio.to_thread(h.result, 30)
    ref = next(s.output for s in h.describe().steps if s.block_id == "big")
    assert ref["kind"] == "json" and ref["keys"] == ["items"]
    resp = await get(jp_fetch, h.id, ref["$artifact"])
    assert resp.headers["Content-Type"] == "application/json"
    assert 'filename="big.json"' in resp.headers["Content-Disposition"]
    assert json.loads(resp.body) == {"items": ["x" * 1000] * 300}


@pytest.mark.parametrize(
    "bad",
    ["sha256:" + "A" * 64, "sha256:" + "0" * 63, "sha256:" + "0" * 65, "md5:" + "0" * 32,
     "..", "%2e%2e%2fetc%2fpasswd", "sha256:" + "0" * 63 + "%00", "x" * 5000],
)  # fmt: skip
async def test_a_malformed_artifact_id_is_404_with_a_short_message(
    jp_fetch: Fetch, kit: Wfkit, bad: str
) -> None:
    run_id, _ = await run_export(kit, 1)
    code, msg = await error(jp_fetch, run_id, bad)
    assert code == 404 and msg.startswith(f"Run {run_id!r} has no artifact ") and len(msg) < 140


async def test_a_bad_format_is_400_naming_the_choices(jp_fetch: Fetch, kit: Wfkit) -> None:
    run_id, out = await run_export(kit, 1)
    code, msg = await error(jp_fetch, run_id, out["rows"]["$artifact"], format="xlsx")
    assert (code, msg) == (400, "format: 'xlsx' is not one of csv, parquet.")
    code, msg = await error(jp_fetch, run_id, out["report"]["$artifact"], format="csv")
    assert (code, msg) == (400, "format: only a table has formats; this artifact is a file.")


async def test_the_route_refuses_a_request_without_a_valid_token(
    jp_fetch: Fetch, kit: Wfkit
) -> None:
    run_id, out = await run_export(kit, 1)
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("thodare", "api", "runs", run_id, "artifacts", out["report"]["$artifact"],
                       headers={"Authorization": "token not-the-token"})  # fmt: skip
    assert info.value.code in (401, 403)
    assert info.value.response is not None and b"leads" not in info.value.response.body


class TestConfiguredStore:
    """``c.ThodareServer.artifacts_url`` is the store read; its password never shows."""

    @pytest.fixture
    def jp_server_config(self) -> Config:
        return Config({"ServerApp": {"jpserver_extensions": {"thodare_jupyter.server": True}},
                       "ThodareServer": {"artifacts_url": MEMORY}})  # fmt: skip

    @pytest.fixture
    def kit(self, kits: KitFactory, db: Path, monkeypatch: pytest.MonkeyPatch) -> Wfkit:
        monkeypatch.setenv("THODARE_DB", str(db))
        return kits(artifacts=MEMORY).register(export).start()

    async def test_the_configured_store_is_read_and_its_password_never_shows(
        self, jp_fetch: Fetch, kit: Wfkit, db: Path
    ) -> None:
        run_id, out = await run_export(kit, 2)
        assert not Path(f"{db}.artifacts").exists()  # not the default store
        report = out["report"]["$artifact"]
        assert (await get(jp_fetch, run_id, report)).body == b"2 leads\n"

        fs = fsspec.filesystem("memory")
        path = kit.artifacts._path(report, "file")
        fs.pipe_file(path, b"2 leads, tampered\n")
        code, msg = await error(jp_fetch, run_id, report)
        assert code == 503 and "is corrupt" in msg, msg
        assert "memory://analyst:***@ui15-" in msg and "s3cret-pw" not in msg

        fs.rm_file(path)
        code, msg = await error(jp_fetch, run_id, report)
        assert code == 404 and "s3cret-pw" not in msg
        assert msg.startswith(f"Artifact {report} is not in the artifact store at "
                              "memory://analyst:***@ui15-"), msg  # fmt: skip
        assert "c.ThodareServer.artifacts_url" in msg
