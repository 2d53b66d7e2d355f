"""Tables and files between steps (DESIGN §9): ``Table``/``File`` fields and outputs over
256 KiB of JSON go to the kit's artifact store (Parquet for tables, named by SHA-256),
the step row keeps only a JSON reference, downstream params get the loaded value, and
``handle.output`` / ``result()`` give outputs back with their models' types.

Real SQLite files and a real PostgreSQL schema (``db_url``), real Parquet files on disk
(read back with pyarrow directly), the rows read with sqlite3/psycopg (no package code).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys
import threading
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from durable_helpers import KitFactory, block, q, run_row, step_rows, wait_until, workflow
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from typer.testing import CliRunner

from thodare_jupyter import (
    ArtifactMissing,
    ArtifactStore,
    Catalog,
    File,
    OutputInvalid,
    RunFailed,
    StepOutputMissing,
    Table,
    connector,
    create_wfkit,
    define_connector,
    define_workflow,
    run_in_memory,
)
from thodare_jupyter.cli import app
from thodare_jupyter.connectors.payload import _small
from thodare_jupyter.errors import ArtifactStoreError

WHEN = dt.datetime(2026, 3, 4, 5, 6, 7, 123456, tzinfo=dt.UTC)


class QueryIn(BaseModel):
    n: int


class QueryOut(BaseModel):
    rows: Table
    when: dt.datetime
    total: Decimal


@connector("art-query")
def query(p: QueryIn) -> QueryOut:
    """A pandas table of ``n`` rows, with typed scalars beside it."""
    df = pd.DataFrame(
        {
            "name": [f"lead-{i}" for i in range(p.n)],
            "score": [i * 1.5 for i in range(p.n)],
            "seen": pd.to_datetime([WHEN] * p.n),
        }
    )
    return QueryOut(rows=df, when=WHEN, total=Decimal("12.34"))


class PolarsIn(BaseModel):
    rows: Table[pl.DataFrame]
    names: list[str]


class PolarsOut(BaseModel):
    top: Table[pl.DataFrame]
    count: int
    first: str


@connector("art-polars")
def to_polars(p: PolarsIn) -> PolarsOut:
    assert isinstance(p.rows, pl.DataFrame), type(p.rows)
    top = p.rows.filter(pl.col("score") >= 3.0)
    return PolarsOut(top=top, count=p.rows.height, first=p.names[0])


class ArrowIn(BaseModel):
    top: Table[pa.Table]


class ArrowOut(BaseModel):
    scores: Table
    n: int


@connector("art-arrow")
def to_arrow(p: ArrowIn) -> ArrowOut:
    assert isinstance(p.top, pa.Table), type(p.top)
    return ArrowOut(scores=p.top.select(["name", "score"]), n=p.top.num_rows)


THREE = (
    define_workflow("art-three").input(QueryIn)
    .step("query", query, lambda r: {"n": r.input.n})
    .step("pl", to_polars, lambda r: {"rows": r.query.rows, "names": r.query.rows.name})
    .step("arrow", to_arrow, lambda r: {"top": r.pl.top})
    .build()
)  # fmt: skip


def _store(tmp_path: Path) -> str:
    return f"file://{tmp_path / 'artifacts'}"


def _parquet_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.parquet"))


# ── round trips ─────────────────────────────────────────────────────────────


def test_pandas_polars_and_arrow_tables_cross_three_durable_steps(
    any_kits: KitFactory, tmp_path: Path
) -> None:
    kit = any_kits(artifacts=_store(tmp_path))
    kit.register(query, to_polars, to_arrow).start()
    h = kit.run(THREE, {"n": 4})
    out = h.result(timeout=30)

    rows = out["query"]["rows"]
    assert isinstance(rows, pd.DataFrame)
    assert rows["name"].tolist() == ["lead-0", "lead-1", "lead-2", "lead-3"]
    assert rows["score"].tolist() == [0.0, 1.5, 3.0, 4.5]
    assert out["query"]["when"] == WHEN and isinstance(out["query"]["when"], dt.datetime)
    assert out["query"]["total"] == Decimal("12.34") and isinstance(out["query"]["total"], Decimal)
    assert out["pl"]["count"] == 4 and out["pl"]["first"] == "lead-0"
    assert isinstance(out["pl"]["top"], pl.DataFrame)
    assert out["pl"]["top"]["name"].to_list() == ["lead-2", "lead-3"]
    assert isinstance(out["arrow"]["scores"], pa.Table)  # written as arrow: comes back so
    assert out["arrow"]["scores"].column("score").to_pylist() == [3.0, 4.5]

    # handle.output and kit.output load one step, from the rows, in any handle
    again = kit.get_handle(h.id).output("query")
    pd.testing.assert_frame_equal(again["rows"], rows)
    assert kit.output(h.id, "query")["when"] == WHEN
    assert kit.output(h.id, "pl")["top"].equals(out["pl"]["top"])
    with pytest.raises(StepOutputMissing, match="Blocks with an output: arrow, pl, query"):
        h.output("nope")

    # three tables, three Parquet files on disk, readable without our code
    files = _parquet_files(tmp_path / "artifacts")
    assert len(files) == 3
    tables = [pq.read_table(f) for f in files]
    assert sorted(t.num_rows for t in tables) == [2, 2, 4]


def test_the_step_row_holds_only_the_reference(any_kits: KitFactory, db_url: str, tmp_path: Path):
    kit = any_kits(artifacts=_store(tmp_path))
    kit.register(query, to_polars, to_arrow).start()
    h = kit.run(THREE, {"n": 20_000})
    h.result(timeout=60)

    row = step_rows(db_url, h.id)["query"]
    text = row["output_json"]
    assert len(text) < 2_000, len(text)  # 20,000 rows would be ~1 MB of JSON
    ref = json.loads(text)["rows"]
    assert ref["$artifact"].startswith("sha256:") and len(ref["$artifact"]) == 71
    assert ref["kind"] == "table" and ref["rows"] == 20_000
    cols = ref["columns"]
    assert list(cols) == ["name", "score", "seen"] and cols["score"] == "double"
    assert cols["name"] in ("string", "large_string") and cols["seen"].startswith("timestamp[")
    assert ref["preview"][0] == {
        "name": "lead-0",
        "score": 0.0,
        "seen": "2026-03-04T05:06:07.123456Z",
    }
    assert len(ref["preview"]) == 5
    # the file is named by the hash of its bytes
    digest = ref["$artifact"].removeprefix("sha256:")
    path = tmp_path / "artifacts" / digest[:2] / f"{digest}.parquet"
    import hashlib

    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest
    assert pq.read_table(path).num_rows == 20_000
    # the run's outputs column holds references too, never the rows
    assert len(run_row(db_url, h.id)["outputs_json"]) < 4_000


class BigOut(BaseModel):
    items: list[str]
    branch: str = "x"


@connector("art-big")
def big(p: QueryIn) -> BigOut:
    return BigOut(items=[f"item-{i:06d}-" + "x" * 20 for i in range(p.n)])


class CountIn(BaseModel):
    items: list[str]


class CountOut(BaseModel):
    n: int
    last: str


@connector("art-count")
def count(p: CountIn) -> CountOut:
    return CountOut(n=len(p.items), last=p.items[-1])


def test_an_output_over_256_kib_of_json_goes_by_reference(
    any_kits: KitFactory, db_url: str, tmp_path: Path
) -> None:
    wf = (
        define_workflow("art-big").input(QueryIn)
        .step("big", big, lambda r: {"n": r.input.n})
        .step("count", count, lambda r: {"items": "{{big.items}}"})
        .build()
    )  # fmt: skip
    kit = any_kits(artifacts=_store(tmp_path))
    kit.register(big, count).start()
    small = kit.run(wf, {"n": 10}).result(timeout=30)
    assert small["count"] == {"n": 10, "last": "item-000009-" + "x" * 20}

    h = kit.run(wf, {"n": 10_000})  # ~380 KiB of JSON
    out = h.result(timeout=60)
    assert out["count"] == {"n": 10_000, "last": "item-009999-" + "x" * 20}
    assert len(out["big"]["items"]) == 10_000  # loaded back whole
    rows = step_rows(db_url, h.id)
    ref = json.loads(rows["big"]["output_json"])
    assert ref["kind"] == "json" and ref["size"] > 256 * 1024 and ref["keys"] == ["items", "branch"]
    assert ref["branch"] == "x"  # kept beside the reference: conditional edges still route
    assert len(rows["big"]["output_json"]) < 1_000
    digest = ref["$artifact"].removeprefix("sha256:")
    stored = json.loads((tmp_path / "artifacts" / digest[:2] / f"{digest}.json").read_text())
    assert len(stored["items"]) == 10_000
    # a small output stays in the row
    assert json.loads(step_rows(db_url, h.id)["count"]["output_json"])["n"] == 10_000


def _untyped(p: QueryIn) -> dict[str, Any]:
    return {"rows": pd.DataFrame({"name": ["a", "b"], "score": [1.0, 2.0]}), "n": p.n}


UNTYPED = define_connector(type="art-untyped", params=QueryIn, run=_untyped)


def test_an_untyped_output_stores_its_tables_too(kits: KitFactory, db: Path, tmp_path: Path):
    wf = (
        define_workflow("art-untyped").input(QueryIn)
        .step("u", UNTYPED, lambda r: {"n": r.input.n})
        .step("pl", to_polars, lambda r: {"rows": "{{u.rows}}", "names": "{{u.rows.name}}"})
        .build()
    )  # fmt: skip
    kit = kits(artifacts=_store(tmp_path))
    kit.register(UNTYPED, to_polars).start()
    h = kit.run(wf, {"n": 7})
    out = h.result(timeout=30)
    assert out["pl"]["count"] == 2 and out["pl"]["first"] == "a"
    assert isinstance(out["u"]["rows"], pd.DataFrame) and out["u"]["n"] == 7
    stored = json.loads(step_rows(db, h.id)["u"]["output_json"])
    assert stored["rows"]["kind"] == "table" and stored["n"] == 7


def test_a_big_output_still_routes_its_branch(kits: KitFactory, tmp_path: Path) -> None:
    wf = workflow(
        "art-route",
        [
            block("big", "art-big", {"n": "{{trigger.n}}"}),
            block("yes", "art-count", {"items": "{{big.items}}"}),
            block("no", "art-count", {"items": ["never"]}),
        ],
        [
            {"source": "trg", "target": "big"},
            {"source": "big", "target": "yes", "sourceHandle": "x"},
            {"source": "big", "target": "no", "sourceHandle": "y"},
        ],
    )
    kit = kits(artifacts=_store(tmp_path))
    kit.register(big, count).start()
    h = kit.run(wf, {"n": 10_000})
    out = h.result(timeout=60)
    assert out["yes"]["n"] == 10_000 and "no" not in out
    assert {s.block_id: s.status for s in h.describe().steps}["no"] == "skipped"


# ── in memory, files, columns ───────────────────────────────────────────────


class NamesIn(BaseModel):
    names: list[str]
    scores: list[float]
    rows: list[dict[str, Any]]


class NamesOut(BaseModel):
    joined: str
    best: float
    n: int


@connector("art-names")
def names(p: NamesIn) -> NamesOut:
    return NamesOut(joined=",".join(p.names), best=max(p.scores), n=len(p.rows))


def test_a_column_ref_gives_a_list_in_memory_and_durably(kits: KitFactory, tmp_path: Path) -> None:
    wf = (
        define_workflow("art-cols").input(QueryIn)
        .step("query", query, lambda r: {"n": r.input.n})
        .step("names", names, lambda r: {"names": r.query.rows.name,
                                         "scores": "{{query.rows.score}}",
                                         "rows": r.query.rows})
        .build()
    )  # fmt: skip
    assert wf.blocks[-1].params["names"] == "{{query.rows.name}}"
    run = run_in_memory(wf, {"n": 3}, catalog=Catalog(query, names), env={})
    assert run.status == "completed", run.error
    assert run.outputs["names"] == {"joined": "lead-0,lead-1,lead-2", "best": 3.0, "n": 3}
    assert run.outputs["query"]["rows"]["$artifact"].startswith("sha256:")
    assert isinstance(run.output("query")["rows"], pd.DataFrame)

    kit = kits(artifacts=_store(tmp_path))
    kit.register(query, names).start()
    out = kit.run(wf, {"n": 3}).result(timeout=30)
    assert out["names"] == {"joined": "lead-0,lead-1,lead-2", "best": 3.0, "n": 3}


class ReportOut(BaseModel):
    report: File
    csv: File


@connector("art-file")
def make_file(p: QueryIn, ctx: Any) -> ReportOut:
    path = Path(os.environ["ART_TMP"]) / "report.csv"
    path.write_text("a,b\n1,2\n")
    return ReportOut(report=b"%PDF-1.7 fake" * p.n, csv=path)


class ReadIn(BaseModel):
    report: File
    csv: File


class ReadOut(BaseModel):
    size: int
    csv_name: str | None
    media: str | None
    text: str


@connector("art-read")
def read_file(p: ReadIn) -> ReadOut:
    assert isinstance(p.report, bytes) and isinstance(p.csv, bytes)
    return ReadOut(
        size=len(p.report), csv_name=p.csv.name, media=p.csv.media_type, text=p.csv.decode()
    )


def test_files_go_by_reference_and_arrive_as_bytes(
    any_kits: KitFactory, db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ART_TMP", str(tmp_path))
    wf = (
        define_workflow("art-files").input(QueryIn)
        .step("make", make_file, lambda r: {"n": r.input.n})
        .step("read", read_file, lambda r: {"report": "{{make.report}}", "csv": "{{make.csv}}"})
        .build()
    )  # fmt: skip
    kit = any_kits(artifacts=_store(tmp_path))
    kit.register(make_file, read_file).start()
    h = kit.run(wf, {"n": 3})
    out = h.result(timeout=30)
    assert out["read"] == {"size": 39, "csv_name": "report.csv", "media": "text/csv",
                           "text": "a,b\n1,2\n"}  # fmt: skip
    assert out["make"]["report"] == b"%PDF-1.7 fake" * 3
    ref = json.loads(step_rows(db_url, h.id)["make"]["output_json"])
    assert ref["report"]["kind"] == "file" and ref["report"]["size"] == 39
    assert ref["csv"]["name"] == "report.csv" and ref["csv"]["media_type"] == "text/csv"
    assert "fake" not in step_rows(db_url, h.id)["make"]["output_json"]


def test_a_memory_url_works_in_one_process(kits: KitFactory) -> None:
    url = f"memory://thodare-test-{uuid.uuid4().hex}"
    kit = kits(artifacts=url)
    kit.register(query, to_polars, to_arrow).start()
    out = kit.run(THREE, {"n": 4}).result(timeout=30)
    assert out["pl"]["first"] == "lead-0" and out["arrow"]["n"] == 2
    import fsspec

    fs = fsspec.filesystem("memory")
    assert len(fs.find(url.removeprefix("memory://"))) == 3


# ── bad input ───────────────────────────────────────────────────────────────


def test_a_missing_artifact_fails_the_reading_step_with_its_id_and_the_store(
    any_kits: KitFactory, tmp_path: Path
) -> None:
    kit = any_kits(artifacts=_store(tmp_path))
    kit.register(query, to_polars, to_arrow).start()
    h = kit.run(THREE, {"n": 4})
    h.result(timeout=30)
    steps = kit.get_handle(h.id).describe().steps
    rows_ref = next(s.output for s in steps if s.block_id == "query")["rows"]
    digest = rows_ref["$artifact"].removeprefix("sha256:")
    (tmp_path / "artifacts" / digest[:2] / f"{digest}.parquet").unlink()  # deleted by hand

    again = kit.fork(h.id, "pl")  # "query" is reused; "pl" reads its table
    with pytest.raises(RunFailed) as err:
        again.result(timeout=30)
    msg = str(err.value)
    assert err.value.block_id == "pl"
    assert rows_ref["$artifact"] in msg and str(tmp_path / "artifacts") in msg
    assert "Traceback" not in msg and "fsspec" not in msg and "FileNotFoundError" not in msg
    with pytest.raises(ArtifactMissing) as missing:
        h.output("query")
    assert missing.value.artifact_id == rows_ref["$artifact"]


def test_a_store_url_with_a_password_never_shows_it() -> None:
    err = ArtifactMissing("sha256:" + "0" * 64, "s3://user:hunter22@minio.local/bucket?token=abc")
    assert "hunter22" not in str(err) and "token=abc" not in str(err)
    assert "sha256:" + "0" * 64 in str(err)


class Opaque:
    def __repr__(self) -> str:
        return "<opaque>"


class AnyOut(BaseModel):
    ok: bool
    payload: Any


@connector("art-opaque")
def opaque(p: QueryIn) -> AnyOut:
    return AnyOut(ok=True, payload=Opaque() if p.n else pd.DataFrame({"a": [1]}))


def test_an_output_its_model_cannot_store_names_block_field_and_type(
    any_kits: KitFactory, tmp_path: Path
) -> None:
    wf = define_workflow("art-bad").input(QueryIn).step("odd", opaque, lambda r: {"n": r.input.n})
    kit = any_kits(artifacts=_store(tmp_path))
    kit.register(opaque).start()
    with pytest.raises(RunFailed) as err:
        kit.run(wf.build(), {"n": 1}).result(timeout=30)
    msg = str(err.value)
    assert err.value.block_id == "odd"
    assert "'payload'" in msg and "Opaque" in msg and "art-opaque" in msg
    with pytest.raises(RunFailed) as err:
        kit.run(wf.build(), {"n": 0}).result(timeout=30)
    assert "'payload'" in str(err.value) and "DataFrame" in str(err.value)
    assert "annotate the field `Table`" in str(err.value)
    # in memory the same error, as the run's error
    run = run_in_memory(wf.build(), {"n": 1}, catalog=Catalog(opaque), env={})
    assert run.status == "failed" and "'payload'" in (run.error or "")
    with pytest.raises(OutputInvalid):
        opaque.dump_output(opaque.run(QueryIn(n=1)), "odd")


class SecretOut(BaseModel):
    rows: Table


@connector("art-secret")
def leaky(p: QueryIn, ctx: Any) -> SecretOut:
    token = ctx.env["API_TOKEN"]
    return SecretOut(rows=pd.DataFrame({"who": ["ada"], "auth": [f"Bearer {token}"]}))


def test_no_secret_in_a_reference(kits: KitFactory, db: Path, tmp_path: Path) -> None:
    kit = kits(artifacts=_store(tmp_path), env={"API_TOKEN": "sk-live-4242-very-secret"})
    kit.register(leaky).start()
    wf = define_workflow("art-sec").input(QueryIn).step("s", leaky, lambda r: {"n": 1}).build()
    h = kit.run(wf, {"n": 1})
    h.result(timeout=30)
    text = step_rows(db, h.id)["s"]["output_json"]
    assert "sk-live-4242-very-secret" not in text
    assert json.loads(text)["rows"]["preview"] == [{"who": "ada", "auth": "Bearer ***"}]


# ── durability ──────────────────────────────────────────────────────────────


class SlowStore(ArtifactStore):
    """Holds every write until ``go`` is set, so a test can look at the rows meanwhile."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.writing, self.go = threading.Event(), threading.Event()

    def put(self, data: bytes, kind: str) -> str:
        self.writing.set()
        assert self.go.wait(20)
        return super().put(data, kind)


def test_the_artifact_exists_before_the_row_that_references_it(
    any_kits: KitFactory, db_url: str, tmp_path: Path
) -> None:
    store = SlowStore(str(tmp_path / "artifacts"))
    kit = any_kits(artifacts=store)
    kit.register(query, to_polars, to_arrow).start()
    h = kit.run(THREE, {"n": 4})
    assert store.writing.wait(20)
    # the write is under way: no row may reference anything yet
    assert "$artifact" not in json.dumps(q(db_url, "SELECT output_json FROM thodare_steps"))
    assert _parquet_files(tmp_path / "artifacts") == []
    store.go.set()
    h.result(timeout=30)
    refs = [
        value
        for row in step_rows(db_url, h.id).values()
        for value in json.loads(row["output_json"]).values()
        if isinstance(value, dict) and "$artifact" in value
    ]
    assert len(refs) == 3 and all(store.exists(r["$artifact"], r["kind"]) for r in refs)


class BrokenStore(ArtifactStore):
    """A store whose disk is full."""

    def put(self, data: bytes, kind: str) -> str:
        raise ArtifactStoreError("write to", self.url, OSError(28, "No space left on device"))


def test_a_failed_artifact_write_fails_the_step_and_no_row_references_it(
    kits: KitFactory, db: Path, tmp_path: Path
) -> None:
    kit = kits(artifacts=BrokenStore(str(tmp_path / "artifacts")))
    kit.register(query, to_polars, to_arrow).start()
    with pytest.raises(RunFailed) as err:
        kit.run(THREE, {"n": 4}).result(timeout=30)
    assert err.value.block_id == "query" and "No space left on device" in str(err.value)
    assert "invalid output" not in str(err.value)  # the store's error, not the model's
    assert "$artifact" not in json.dumps(q(db, "SELECT output_json FROM thodare_steps"))


# ── defaults and pruning ────────────────────────────────────────────────────


def test_default_store_is_beside_the_sqlite_file(kits: KitFactory, db: Path) -> None:
    kit = kits()
    assert kit.artifacts.url == f"{db}.artifacts"
    kit.register(query, to_polars, to_arrow).start()
    kit.run(THREE, {"n": 2}).result(timeout=30)
    assert len(_parquet_files(Path(f"{db}.artifacts"))) == 3


def test_postgres_default_store_is_machine_local_and_says_so_once(
    pg_url: str, caplog: pytest.LogCaptureFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.delenv("THODARE_ARTIFACTS", raising=False)
    caplog.set_level("WARNING", logger="thodare.kit")
    kits = [create_wfkit(pg_url, env={}) for _ in range(2)]
    try:
        said = [r.getMessage() for r in caplog.records if "machine" in r.getMessage()]
        assert len(said) == 1, said
        assert kits[0].artifacts.url in said[0] and "password" not in said[0]
        assert kits[0].artifacts.url == kits[1].artifacts.url
        assert kits[0].artifacts.url.startswith(str(tmp_path / "data"))
        explicit = create_wfkit(pg_url, env={}, artifacts=str(tmp_path / "mine"))
        explicit.close()
        assert len([r for r in caplog.records if "machine" in r.getMessage()]) == 1
    finally:
        for k in kits:
            k.close()


def _sql(db_url: str, sql: str, *args: Any) -> None:
    """Run a write directly (psycopg or sqlite3), returning nothing."""
    if db_url.startswith("postgresql"):
        import psycopg

        dsn = db_url.replace("postgresql+psycopg://", "postgresql://", 1)
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute(sql.replace("?", "%s"), args)
        return
    con = sqlite3.connect(db_url.removeprefix("sqlite:///"))
    with con:
        con.execute(sql, args)
    con.close()


def _age_run(db_url: str, run_id: str, seconds: float) -> None:
    _sql(db_url, "UPDATE thodare_runs SET ended_at = ended_at - ? WHERE id = ?", seconds, run_id)


class SharedIn(BaseModel):
    tag: str


class SharedOut(BaseModel):
    shared: Table
    own: Table


@connector("art-shared")
def shared(p: SharedIn) -> SharedOut:
    return SharedOut(shared=pd.DataFrame({"x": [1, 2, 3]}), own=pd.DataFrame({"tag": [p.tag]}))


def test_prune_removes_old_runs_and_the_artifacts_only_they_referenced(
    any_kits: KitFactory, db_url: str, tmp_path: Path
) -> None:
    wf = (
        define_workflow("art-prune")
        .input(SharedIn)
        .step("s", shared, lambda r: {"tag": r.input.tag})
    )
    kit = any_kits(artifacts=_store(tmp_path))
    kit.register(shared).start()
    old = kit.run(wf.build(), {"tag": "old"})
    old.result(timeout=30)
    new = kit.run(wf.build(), {"tag": "new"})
    new.result(timeout=30)
    assert len(_parquet_files(tmp_path / "artifacts")) == 3  # shared once, two own
    _age_run(db_url, old.id, 3 * 3600)

    report = kit.prune(dt.timedelta(hours=1))
    assert (report.runs, report.steps, report.artifacts) == (1, 1, 1)
    assert q(db_url, "SELECT id FROM thodare_runs WHERE id = ?", old.id) == []
    assert q(db_url, "SELECT block_id FROM thodare_steps WHERE run_id = ?", old.id) == []
    assert len(_parquet_files(tmp_path / "artifacts")) == 2
    kept = kit.output(new.id, "s")  # the shared table is still there for the new run
    assert kept["shared"]["x"].tolist() == [1, 2, 3] and kept["own"]["tag"].tolist() == ["new"]
    assert kit.prune(3600).runs == 0  # the new run is younger than an hour

    # the command line: everything finished, older than a second
    _age_run(db_url, new.id, 10)
    res = CliRunner().invoke(
        app, ["prune", "--older-than", "5s", "--db", db_url, "--artifacts", _store(tmp_path)]
    )
    assert res.exit_code == 0, res.output
    assert "Pruned 1 run(s), 1 step(s) and 2 artifact(s)" in res.output
    assert _parquet_files(tmp_path / "artifacts") == []
    bad = CliRunner().invoke(app, ["prune", "--older-than", "soon", "--db", db_url])
    assert bad.exit_code == 2 and "is not an age" in bad.output


def test_prune_keeps_runs_that_have_not_ended(kits: KitFactory, db: Path, tmp_path: Path) -> None:
    kit = kits(artifacts=_store(tmp_path))  # not started: the run stays pending
    kit.register(shared)
    wf = define_workflow("art-pend").input(SharedIn).step("s", shared, lambda r: {"tag": "x"})
    h = kit.run(wf.build(), {"tag": "x"})
    _sql(
        f"sqlite:///{db}",
        "UPDATE thodare_runs SET created_at = created_at - 1e5 WHERE id = ?",
        h.id,
    )
    assert kit.prune(0).runs == 0
    assert h.status == "pending"
    kit.start()
    wait_until(lambda: h.status == "completed", 30, "the pending run to complete")


def test_importing_the_package_does_not_import_pandas_or_pyarrow() -> None:
    code = (
        "import sys, thodare_jupyter; "
        "print(sorted(m for m in ('pandas', 'pyarrow', 'polars', 'fsspec') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
    )  # fmt: skip
    assert out.stdout.strip() == "[]"


_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=300)
)


@settings(max_examples=300, deadline=None)
@given(
    value=st.one_of(
        st.dictionaries(st.text(max_size=300), _SCALARS, max_size=70),
        st.lists(_SCALARS, max_size=70),
    ),
    limit=st.sampled_from([8192, 16384, 262144]),
)
def test_an_output_kept_unmeasured_is_surely_within_the_reference_size(
    value: Any, limit: int
) -> None:
    """``by_reference`` skips writing a small flat output's JSON to measure it: whatever
    it so keeps in the row (control characters, long keys, big numbers alike) is
    within the size, measured as the store measures it."""
    if _small(value, limit):
        assert len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()) <= limit


@pytest.mark.parametrize("limit", [8192, 262144])
def test_the_largest_output_kept_unmeasured_is_within_the_reference_size(limit: int) -> None:
    """The worst case the rule lets through unmeasured: 64 items whose keys and values
    are as long as allowed and all control characters (6 bytes each in JSON)."""
    cap = limit // 1024
    worst = {f"{i:02d}" + "\x01" * (cap - 2): "\x01" * cap for i in range(64)}
    longest_numbers = {f"{i:02d}" + "\x01" * (cap - 2): -(1 << 63) for i in range(64)}
    for value in (worst, longest_numbers, list(worst.values())):
        assert _small(value, limit)
        assert len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()) <= limit
    assert not _small({**worst, "one more": 1}, limit)
    assert not _small({"x": "a" * (cap + 1)}, limit)
