"""A run input may hold tables and files (``%%workflow`` ``input: {rows: table, doc: file}``,
or a ``Table``/``File`` field of a builder's or a spec's input model): ``kit.run`` writes
them to the kit's artifact store before the run row exists, the row's input keeps only the
references, ``{{trigger.rows}}`` reaches a ``Table`` param as a DataFrame, and a fork reuses
the same input. Without a store (a schedule's stored input) such an input is refused with
:class:`InputInvalid`, not a serialization traceback. Real SQLite runs database, real files.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from durable_helpers import KitFactory, run_row
from pydantic import BaseModel

from thodare_jupyter import (
    File,
    InputInvalid,
    Table,
    connector,
    define_workflow,
    define_workflow_spec,
)
from thodare_jupyter.validation import validate_input


class RowsIn(BaseModel):
    rows: Table
    doc: File | None = None


class CountIn(BaseModel):
    rows: Table
    doc: File | None = None


class CountOut(BaseModel):
    n: int
    kind: str
    doc_size: int


@connector("ti-count")
def count(p: CountIn) -> CountOut:
    return CountOut(n=len(p.rows), kind=type(p.rows).__name__, doc_size=len(p.doc) if p.doc else -1)


WF = (
    define_workflow("ti-count")
    .input(RowsIn)
    .step("count", count, lambda r: {"rows": r.input.rows, "doc": r.input.doc})
    .build()
)


def test_a_table_input_is_stored_by_reference_and_reaches_a_table_param(
    kits: KitFactory, db: Path, tmp_path: Path
) -> None:
    kit = kits(artifacts=str(tmp_path / "artifacts"))
    kit.register(count).start()
    df = pd.DataFrame({"name": [f"secret-name-{i}" for i in range(50)], "v": range(50)})
    h = kit.run(WF, {"rows": df, "doc": b"hello file"})
    out = h.result(timeout=60)
    assert out["count"] == {"n": 50, "kind": "DataFrame", "doc_size": 10}

    stored = json.loads(run_row(db, h.id)["input_json"])
    assert stored["rows"]["$artifact"].startswith("sha256:") and stored["rows"]["rows"] == 50
    assert stored["doc"]["kind"] == "file" and stored["doc"]["size"] == 10
    assert "secret-name-49" not in run_row(db, h.id)["input_json"]  # preview: 5 rows only
    digest = stored["rows"]["$artifact"].removeprefix("sha256:")
    assert (tmp_path / "artifacts" / digest[:2] / f"{digest}.parquet").exists()

    again = kit.fork(h.id, "count")  # the same input (its references) runs again
    assert again.result(timeout=60)["count"]["n"] == 50


def test_a_spec_with_a_table_input_runs(kits: KitFactory, tmp_path: Path) -> None:
    spec = define_workflow_spec("ti-spec", "1", input=RowsIn)
    kit = kits(artifacts=str(tmp_path / "artifacts"))
    kit.register(count)
    kit.workflow_from_spec(spec, lambda b: b.step("count", count, lambda r: {"rows": r.input.rows}))
    kit.start()
    out = kit.run_spec(spec, {"rows": pd.DataFrame({"a": [1, 2]})}).result(timeout=60)
    assert out["count"]["n"] == 2


def test_a_table_input_with_no_store_is_an_input_error() -> None:
    with pytest.raises(InputInvalid) as err:
        validate_input(RowsIn, {"rows": pd.DataFrame({"a": [1]})}, "ti-count")
    msg = str(err.value)
    assert "no run was started" in msg and "Table" in msg and "artifact store" in msg
    assert "Error calling function" not in msg
    with pytest.raises(InputInvalid, match="rows"):  # not a table at all: named field
        validate_input(RowsIn, {"rows": [1, 2]}, "ti-count")


def test_a_schedule_refuses_a_table_input(kits: KitFactory) -> None:
    kit = kits()
    kit.register(count)
    with pytest.raises(InputInvalid, match="artifact store"):
        kit.schedule(WF, "0 9 * * *", {"rows": pd.DataFrame({"a": [1]})}, name="ti-sched")
    assert kit.schedules() == []
