"""The builtin ``sql`` block (DESIGN §9): ``{query*, params, url: hidden}`` → ``{rows: Table,
rowcount}`` through SQLAlchemy, on a real SQLite file and a real PostgreSQL schema.

The queried database is the ``target`` fixture (a SQLite file made in ``tmp_path``, then a
fresh PostgreSQL schema with a ``sales`` table); runs are durable on the test's SQLite file
(``kits``). Checked: rows reach a downstream ``Table`` param as a DataFrame and come back
from ``handle.output`` as one; values are bound, never pasted; INSERT/UPDATE give an empty
table and the rows changed; the URL (from ``THODARE_SQL_URL`` or the hidden ``url``) is in no
step row, no error and nothing the LLM sees; a bad query fails naming the block and the
database's error, without SQLAlchemy's SQL echo or help link; a missing URL says what to set.
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
from durable_helpers import KitFactory, is_pg, q, run_row, step_rows
from pydantic import BaseModel

from thodare_jupyter import (
    Catalog,
    RunFailed,
    Table,
    apply_operations,
    connector,
    define_workflow,
    run_in_memory,
)
from thodare_jupyter.authoring.workflow_yaml import workflow_from_yaml
from thodare_jupyter.connectors import sql as sql_module
from thodare_jupyter.connectors.builtins import BUILTINS
from thodare_jupyter.patch import redact_for_llm

SQL = next(c for c in BUILTINS if c.type == "sql")
SALES = [
    (1, "north", "ada", Decimal("120.50"), dt.date(2026, 1, 5)),
    (2, "south", "bob", Decimal("80.00"), dt.date(2026, 1, 6)),
    (3, "north", "cyd", Decimal("42.25"), dt.date(2026, 2, 1)),
    (4, "east", "dee", Decimal("10.00"), dt.date(2026, 2, 3)),
    (5, "north", "eve", Decimal("7.75"), dt.date(2026, 3, 9)),
]


@pytest.fixture(autouse=True)
def _fresh_engines() -> Iterator[None]:
    """Every test starts and ends with no cached engine (their connections closed)."""
    sql_module.dispose_engines()
    yield
    sql_module.dispose_engines()


@pytest.fixture(params=["sqlite", "postgres"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The database the ``sql`` steps query, with a ``sales`` table: a SQLite file, then a
    fresh PostgreSQL schema (made with sqlite3 / psycopg, no package code)."""
    if request.param == "sqlite":
        path = tmp_path / "sales.db"
        con = sqlite3.connect(path)
        con.execute(
            "CREATE TABLE sales (id INTEGER PRIMARY KEY, region TEXT, rep TEXT, "
            "amount REAL, sold_on TEXT)"
        )
        con.executemany(
            "INSERT INTO sales VALUES (?, ?, ?, ?, ?)",
            [(i, r, p, float(a), d.isoformat()) for i, r, p, a, d in SALES],
        )
        con.commit()
        con.close()
        return f"sqlite:///{path}"
    url = str(request.getfixturevalue("pg_url"))
    _exec(url, "CREATE TABLE sales (id int PRIMARY KEY, region text, rep text, "
           "amount numeric(10, 2), sold_on date)")  # fmt: skip
    for row in SALES:
        _exec(url, "INSERT INTO sales VALUES (?, ?, ?, ?, ?)", *row)
    return url


# ── a connector that takes the rows as a table ──────────────────────────────


class SummaryIn(BaseModel):
    rows: Table


class SummaryOut(BaseModel):
    by_rep: Table
    total: float
    kind: str


@connector("sql-test-summary")
def summarize(p: SummaryIn) -> SummaryOut:
    """Total by rep, from the rows of the sql step (a pandas DataFrame)."""
    df = p.rows
    by_rep = (
        df.assign(amount=df["amount"].astype(float)).groupby("rep", as_index=False)["amount"].sum()
    )
    return SummaryOut(by_rep=by_rep, total=float(by_rep["amount"].sum()), kind=type(df).__name__)


class RegionIn(BaseModel):
    region: str


def _sales_wf(query: str = "SELECT rep, amount FROM sales WHERE region = :region ORDER BY id"):
    return (
        define_workflow("sql-sales")
        .input(RegionIn)
        .step("query", SQL, lambda r: {"query": query, "params": {"region": r.input.region}})
        .step("summary", summarize, lambda r: {"rows": r.query.rows})
        .build()
    )


def _exec(url: str, sql: str, *args: Any) -> None:
    """A statement on PostgreSQL through psycopg (``?`` placeholders), no package code."""
    import psycopg

    dsn = url.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.replace("?", "%s"), args or None)


def _all_text(db: Path, run_id: str) -> str:
    """Everything the database holds about a run: its row and its step rows, as text."""
    return json.dumps([run_row(db, run_id), step_rows(db, run_id)], default=str)


# ── happy paths ──────────────────────────────────────────────────────────────


def test_rows_reach_a_table_param_and_come_back_as_a_dataframe(
    kits: KitFactory, db: Path, target: str
) -> None:
    kit = kits(env={"THODARE_SQL_URL": target})
    kit.register(summarize).start()
    h = kit.run(_sales_wf(), {"region": "north"})
    out = h.result(timeout=60)

    rows = h.output("query")["rows"]
    assert isinstance(rows, pd.DataFrame)
    assert list(rows.columns) == ["rep", "amount"]
    assert list(rows["rep"]) == ["ada", "cyd", "eve"]
    assert [float(a) for a in rows["amount"]] == [120.5, 42.25, 7.75]
    assert h.output("query")["rowcount"] == 3
    assert out["summary"]["kind"] == "DataFrame"  # the Table param got pandas
    assert out["summary"]["total"] == pytest.approx(170.5)
    assert isinstance(out["summary"]["by_rep"], pd.DataFrame)

    stored = json.loads(step_rows(db, h.id)["query"]["output_json"])
    assert stored["rowcount"] == 3 and stored["rows"]["rows"] == 3  # the row holds a reference
    assert stored["rows"]["$artifact"].startswith("sha256:")
    assert stored["rows"]["preview"][0]["rep"] == "ada"
    assert target not in _all_text(db, h.id)  # the URL is in no row of the run


def test_values_are_bound_never_pasted(kits: KitFactory, target: str) -> None:
    kit = kits(env={"THODARE_SQL_URL": target})
    kit.register(summarize).start()
    hostile = "north' OR '1'='1"
    out = kit.run(_sales_wf(), {"region": hostile}).result(timeout=60)
    assert out["query"]["rowcount"] == 0 and len(out["query"]["rows"]) == 0
    drop = "x'; DROP TABLE sales; --"
    kit.run(_sales_wf(), {"region": drop}).result(timeout=60)
    assert q(target, "SELECT count(*) FROM sales")[0][0] == len(SALES)


def test_insert_and_update_give_an_empty_table_and_their_rowcount(
    kits: KitFactory, db: Path, target: str
) -> None:
    wf = (
        define_workflow("sql-write")
        .step("add", SQL, lambda r: {
            "query": "INSERT INTO sales (id, region, rep, amount) VALUES (:id, :region, 'zed', 1)",
            "params": {"id": 99, "region": "west"}})
        .step("bump", SQL, lambda r: {
            "query": "UPDATE sales SET amount = amount + 1 WHERE region = :region",
            "params": {"region": "north"}}, needs=["add"])
        .build()
    )  # fmt: skip
    kit = kits(env={"THODARE_SQL_URL": target})
    kit.start()
    h = kit.run(wf)
    out = h.result(timeout=60)
    assert out["add"]["rowcount"] == 1 and out["bump"]["rowcount"] == 3
    for block in ("add", "bump"):
        rows = h.output(block)["rows"]
        assert isinstance(rows, pd.DataFrame) and rows.shape == (0, 0)
        ref = json.loads(step_rows(db, h.id)[block]["output_json"])["rows"]
        assert (ref["rows"], ref["columns"], ref["preview"]) == (0, {}, [])
    # committed: another connection sees both writes
    assert q(target, "SELECT rep FROM sales WHERE id = 99") == [("zed",)]
    got = q(target, "SELECT amount FROM sales WHERE id = 1")[0][0]
    assert float(got) == pytest.approx(121.5)


def test_postgres_types_come_back_typed(kits: KitFactory, pg_url: str) -> None:
    _exec(pg_url, "CREATE TABLE t (n numeric(8, 3), d date, ts timestamptz, j jsonb, u uuid, "
              "big bigint, flag boolean)")  # fmt: skip
    _exec(pg_url, "INSERT INTO t VALUES (1.250, '2026-03-04', '2026-03-04T05:06:07Z', "
              "'{\"a\": 1}', '00000000-0000-0000-0000-000000000001', NULL, true)")  # fmt: skip
    wf = define_workflow("sql-types").step("t", SQL, lambda r: {"query": "SELECT * FROM t"})
    kit = kits(env={"THODARE_SQL_URL": pg_url})
    kit.start()
    rows = kit.run(wf.build()).result(timeout=60)["t"]["rows"]
    row = rows.iloc[0]
    assert row["n"] == Decimal("1.250")
    assert row["d"] == dt.date(2026, 3, 4)
    assert pd.Timestamp(row["ts"]) == pd.Timestamp("2026-03-04T05:06:07Z")
    assert row["j"] == {"a": 1}
    assert str(row["u"]) == "00000000-0000-0000-0000-000000000001"
    assert pd.isna(row["big"]) and bool(row["flag"]) is True


def test_a_sqlite_column_of_mixed_values_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "mixed.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE m (x, y)")
    con.executemany("INSERT INTO m VALUES (?, ?)", [(1, 1), ("two", 2.5), (None, None)])
    con.commit()
    con.close()
    wf = define_workflow("sql-mixed").step("m", SQL, lambda r: {"query": "SELECT x, y FROM m"})
    run = run_in_memory(wf.build(), {}, env={"THODARE_SQL_URL": f"sqlite:///{path}"})
    assert run.status == "completed", run.error
    rows = run.output("m")["rows"]
    assert list(rows["x"])[:2] == ["1", "two"] and pd.isna(list(rows["x"])[2])
    assert list(rows["y"])[:2] == [1.0, 2.5]


def test_the_url_param_wins_over_the_env_and_a_join_keeps_both_ids(tmp_path: Path) -> None:
    path = tmp_path / "two.db"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE a (id int, v text)")
    con.execute("INSERT INTO a VALUES (1, 'x')")
    con.commit()
    con.close()
    wf = define_workflow("sql-join").step("j", SQL, lambda r: {
        "query": "SELECT a.id, b.id, a.v FROM a JOIN a AS b ON a.id = b.id",
        "url": "{{env.TWO_DB}}"}).build()  # fmt: skip
    env = {"TWO_DB": f"sqlite:///{path}", "THODARE_SQL_URL": "sqlite:///nowhere/else.db"}
    run = run_in_memory(wf, {}, env=env)
    assert run.status == "completed", run.error
    assert list(run.output("j")["rows"].columns) == ["id", "id_2", "v"]


def test_yaml_steps_use_sql(tmp_path: Path) -> None:
    text = """\
        input: {region: str}
        steps:
          query:
            uses: sql
            with:
              query: "SELECT rep FROM sales WHERE region = :region"
              params: {region: "{{trigger.region}}"}
          count:
            uses: transform
            with: {template: {n: "{{query.rowcount}}"}}
    """
    import textwrap

    wf = workflow_from_yaml("sql-yaml", textwrap.dedent(text), Catalog())
    assert [b.type for b in wf.blocks] == ["trigger_webhook", "sql", "transform"]


# ── errors ───────────────────────────────────────────────────────────────────


def test_a_bad_query_fails_naming_the_block_and_the_database_error(
    kits: KitFactory, db: Path, target: str
) -> None:
    kit = kits(env={"THODARE_SQL_URL": target})
    kit.register(summarize).start()
    h = kit.run(_sales_wf("SELECT * FROM no_such_table WHERE region = :region"), {"region": "n"})
    with pytest.raises(RunFailed) as err:
        h.result(timeout=60)
    msg = str(err.value)
    assert err.value.block_id == "query"
    assert "Block 'query' (sql): the " in msg and "database refused the query" in msg
    assert "no_such_table" in msg
    assert ("does not exist" if is_pg(target) else "no such table") in msg
    for noise in ("[SQL:", "sqlalche.me", "Background on this error", "Traceback", "LINE 1"):
        assert noise not in msg
    assert target not in msg and target not in _all_text(db, h.id)
    assert step_rows(db, h.id)["query"]["error"] == err.value.error


def test_a_password_in_the_url_is_masked_in_a_connect_error() -> None:
    # no env name says it is secret: the URL (and its password) is a secret once read
    url = "postgresql+psycopg://ada:Hunter2pw@127.0.0.1:1/test?connect_timeout=2"
    wf = define_workflow("sql-pw").step("b", SQL, lambda r: {"query": "SELECT 1"}).build()
    run = run_in_memory(wf, {}, env={"THODARE_SQL_URL": url})
    assert run.status == "failed"
    error = run.error or ""
    assert error.startswith("Block 'b' (sql): cannot connect to the postgresql database: ")
    assert "Hunter2pw" not in error and "ada:" not in error and "127.0.0.1:1/test" not in error


def test_a_password_echoed_by_the_database_is_masked(pg_url: str) -> None:
    # PostgreSQL here trusts local connections: the password is accepted and ignored
    url = pg_url.replace(
        "postgresql+psycopg://postgres@", "postgresql+psycopg://postgres:Zebra9pw@"
    )
    assert "Zebra9pw" in url
    wf = define_workflow("sql-echo").step("e", SQL, lambda r: {
        "query": 'SELECT * FROM "Zebra9pw"', "url": url}).build()  # fmt: skip
    run = run_in_memory(wf, {}, env={})
    assert run.status == "failed"
    assert 'relation "***" does not exist' in (run.error or ""), run.error
    assert "Zebra9pw" not in (run.error or "")


def test_a_missing_url_says_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("THODARE_SQL_URL", raising=False)
    wf = define_workflow("sql-nourl").step("q", SQL, lambda r: {"query": "SELECT 1"}).build()
    run = run_in_memory(wf, {}, env={})
    assert run.status == "failed"
    assert run.error is not None and run.error.startswith("Block 'q' (sql): no database URL")
    assert "set THODARE_SQL_URL" in run.error and "url param" in run.error


def test_a_url_sqlalchemy_cannot_read_is_not_echoed() -> None:
    for url, says in [
        ("not a url at all Kiwi77", "not one SQLAlchemy can read"),
        ("nosuchdb+drv://u:Kiwi77@h/d", "unknown dialect or driver"),
    ]:
        wf = define_workflow("sql-bad").step("b", SQL, lambda r: {"query": "SELECT 1"}).build()
        run = run_in_memory(wf, {}, env={"THODARE_SQL_URL": url})
        assert run.status == "failed" and says in (run.error or ""), run.error
        assert "Kiwi77" not in (run.error or "")


def test_a_missing_bind_value_names_it_without_the_sql_echo(target: str) -> None:
    wf = define_workflow("sql-bind").step("b", SQL, lambda r: {
        "query": "SELECT * FROM sales WHERE region = :region"}).build()  # fmt: skip
    run = run_in_memory(wf, {}, env={"THODARE_SQL_URL": target})
    assert run.status == "failed"
    assert "bind parameter 'region'" in (run.error or ""), run.error
    assert "[SQL:" not in (run.error or "") and "sqlalche.me" not in (run.error or "")


# ── the LLM never sees or sets the URL ───────────────────────────────────────


def test_the_url_is_hidden_from_the_llm() -> None:
    cat = Catalog()
    described = next(c for c in cat.describe_for_llm() if c["type"] == "sql")
    assert set(described["params"]) == {"query", "params"}
    assert described["outputs"] == ["rows", "rowcount"]
    assert "url" not in json.dumps(described).replace("URL", "")
    assert SQL.hidden_params == frozenset({"url"})

    wf = (
        define_workflow("sql-llm")
        .step("q", SQL, lambda r: {"query": "SELECT 1", "url": "{{env.SALES_DB}}"})
        .build()
    )
    res = apply_operations(wf, [
        {"operation_type": "edit", "block_id": "q",
         "params": {"url": "postgresql://evil@attacker/db", "query": "SELECT 2"}},
    ], cat)  # fmt: skip
    assert not res.ok and [e.field for e in res.validation_errors] == ["url"]
    assert "evil" not in json.dumps(res.model_dump(mode="json"))
    block = next(b for b in res.workflow.blocks if b.id == "q")
    assert block.params == {"query": "SELECT 2", "url": "{{env.SALES_DB}}"}  # kept, not replaced
    shown = redact_for_llm(res.workflow, cat)  # the workflow as the model sees it
    assert next(b for b in shown["blocks"] if b["id"] == "q")["params"] == {"query": "SELECT 2"}


# ── engines ──────────────────────────────────────────────────────────────────


def test_engines_are_cached_per_url_and_disposed(tmp_path: Path, pg_url: str) -> None:
    engines = sql_module.ENGINES
    pg = engines.get(pg_url)
    assert engines.get(pg_url) is pg and len(engines) == 1
    assert isinstance(pg.pool, sa.pool.QueuePool) and pg.pool.size() == sql_module.POOL_SIZE
    lite = engines.get(f"sqlite:///{tmp_path / 'a.db'}")
    assert isinstance(lite.pool, sa.pool.NullPool)  # a SQLite file: a new connection each time
    with pg.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
    pool = pg.pool
    assert pool.checkedin() == 1  # kept for the next step
    for i in range(sql_module.MAX_ENGINES):  # the least recently used go, disposed
        engines.get(f"sqlite:///{tmp_path / f'{i}.db'}")
    assert len(engines) == sql_module.MAX_ENGINES
    assert pool.checkedin() == 0  # disposed: its idle connection closed
    assert engines.get(pg_url) is not pg  # a new engine next time
    sql_module.dispose_engines()
    assert len(engines) == 0


def test_concurrent_steps_share_the_engine(kits: KitFactory, pg_url: str) -> None:
    b = define_workflow("sql-many")
    for i in range(6):
        b = b.step(f"s{i}", SQL, lambda r, i=i: {
            "query": "SELECT :i AS i, pg_sleep(0.2)::text AS s", "params": {"i": i}})  # fmt: skip
    kit = kits(env={"THODARE_SQL_URL": pg_url})
    kit.start()
    out = kit.run(b.build()).result(timeout=60)
    assert sorted(int(out[f"s{i}"]["rows"]["i"][0]) for i in range(6)) == list(range(6))
    assert len(sql_module.ENGINES) == 1
