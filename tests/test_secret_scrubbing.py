"""Secrets never stored or shown: a step that quotes its env or hidden values in an error.

A connector whose hidden param comes from ``{{env.X}}`` raises an exception
quoting that value (raw, as JSON, as a repr, in a URL); another reads an env
value through ``ctx.env`` and quotes it. Neither value, in any encoding and
not even a prefix, may reach the SQLite file (WAL included), PostgreSQL's
rows, ``describe()``, ``RunFailed``, the REST routes, the DAG widget's model
or the logs. A NUL byte in an error never turns into a driver's statement.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

import pytest
from durable_helpers import KitFactory, block, chain_wf, database_text
from pydantic import BaseModel
from traitlets.config import Config

from thodare_jupyter import Hidden, Wfkit, define_connector, run_in_memory
from thodare_jupyter.errors import RunFailed
from thodare_jupyter.notebook.widgets import DagView
from thodare_jupyter.wire import SerializedWorkflow

pytest_plugins = ("pytest_jupyter.jupyter_server",)

# long enough that a message cut at 60 characters would still show a prefix
TOKEN = 'sk-live-"quoted"/päss+word?=&' + "T" * 70
READ = "dsn-secret-value-from-ctx-env-" + "R" * 40
ENV = {"API_TOKEN": TOKEN, "WAREHOUSE": READ, "REGION": "eu-west-1"}


def forms(secret: str) -> list[str]:
    """The secret as raw text, JSON, repr, URL, and its first 12 characters."""
    as_json = [json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]]
    return [secret, *as_json, repr(secret)[1:-1], quote(secret, safe=""), quote_plus(secret),
            secret[:12]]  # fmt: skip


def assert_clean(text: str | bytes, where: str) -> None:
    for secret in (TOKEN, READ):
        for form in forms(secret):
            needle = form.encode() if isinstance(text, bytes) else form
            assert needle not in text, f"{where} holds {form[:16]!r}…"


class LeakyParams(BaseModel):
    label: str
    token: Hidden[str]


def _leak(p: LeakyParams) -> None:
    raise RuntimeError(
        f"login failed with {p.token} body={json.dumps({'t': p.token})} "
        f"repr={p.token!r} url=https://api/?k={quote(p.token, safe='')}"
    )


class ReaderParams(BaseModel):
    table: str


def _read_env(p: ReaderParams, ctx: Any) -> None:
    dsn = ctx.env["WAREHOUSE"]  # never named in the workflow
    raise ConnectionError(f"cannot open {dsn}/{p.table} in {ctx.env['REGION']}")


class CountParams(BaseModel):
    count: int


leaky = define_connector(type="leaky", params=LeakyParams, outputs=None, run=_leak)
reader = define_connector(type="reader", params=ReaderParams, outputs=None, run=_read_env)
counter = define_connector(type="counter", params=CountParams, outputs=None, run=lambda p: {})


def nul(_p: ReaderParams) -> None:
    raise ValueError("bad\x00byte in " + TOKEN)


nuller = define_connector(type="nuller", params=ReaderParams, outputs=None, run=nul)

LEAKY = chain_wf("leaky", block("login", "leaky", {"label": "x", "token": "{{env.API_TOKEN}}"}))
READER = chain_wf("reader", block("load", "reader", {"table": "sales"}))
# a str from env into an int param: pydantic's message would quote (a prefix of) it
COUNT = chain_wf("count", block("n", "counter", {"count": "{{env.API_TOKEN}}"}))
NUL = chain_wf("nul", block("boom", "nuller", {"table": "t"}))


def failed_run(kit: Wfkit, wf: dict[str, Any], data: Any = None) -> tuple[str, str]:
    """Run ``wf`` to its failure; the run id and the RunFailed message."""
    handle = kit.run(SerializedWorkflow.model_validate(wf), data or {})
    with pytest.raises(RunFailed) as info:
        handle.result(timeout=20)
    return handle.id, str(info.value)


@pytest.mark.parametrize(
    ("wf", "secret_hint"),
    [
        (LEAKY, "login failed with ***"),
        (READER, "cannot open ***/sales in ***"),
        (COUNT, "count (expected integer)"),
    ],
    ids=["hidden-from-env", "ctx-env-read", "params-invalid"],
)
def test_durable_errors_are_scrubbed_everywhere(
    any_kits: KitFactory,
    db_url: str,
    caplog: pytest.LogCaptureFixture,
    wf: dict[str, Any],
    secret_hint: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    kit = any_kits(env=ENV).start()
    kit.register(leaky, reader, counter)
    run_id, message = failed_run(kit, wf)
    assert secret_hint in message  # the error still says what went wrong
    assert_clean(message, "RunFailed")
    described = kit.get_handle(run_id).describe()
    assert_clean(described.model_dump_json(), "describe()")
    view = DagView(SerializedWorkflow.model_validate(wf), kit, run_id)
    view.selected = wf["blocks"][0]["id"]
    assert_clean(json.dumps(view.get_state(), default=str), "the DAG widget's model")
    assert_clean(repr(view._repr_mimebundle_()), "the DAG widget's bundle")
    kit.close()
    assert_clean(database_text(db_url), "the database")
    assert_clean(caplog.text, "the logs")


def test_params_invalid_shows_other_values(kits: KitFactory) -> None:
    """Masking keeps ordinary values: a literal that is no secret is still quoted."""
    kit = kits(env=ENV).start()
    kit.register(counter)
    wf = chain_wf("c", block("n", "counter", {"count": "{{trigger.n}}"}))
    _, message = failed_run(kit, wf, {"n": "twelve"})
    assert "got str 'twelve'" in message


def test_nul_byte_in_an_error_is_stored_as_text(any_kits: KitFactory, db_url: str) -> None:
    kit = any_kits(env=ENV).start()
    kit.register(nuller)
    run_id, message = failed_run(kit, NUL)
    error = kit.get_handle(run_id).describe().error or ""
    assert "bad\\x00byte in ***" in error, error
    for driver_text in ("[SQL:", "INSERT", "UPDATE", "parameters"):
        assert driver_text not in error
        assert driver_text not in message
    assert_clean(message, "RunFailed")
    kit.close()
    assert_clean(database_text(db_url), "the database")


def test_in_memory_errors_are_scrubbed() -> None:
    from thodare_jupyter import Catalog

    catalog = Catalog(leaky, reader, counter)
    for wf in (LEAKY, READER, COUNT):
        run = run_in_memory(SerializedWorkflow.model_validate(wf), {}, catalog=catalog, env=ENV)
        assert run.status == "failed"
        assert_clean(run.model_dump_json(), f"in-memory run of {wf['metadata']['name']}")


@pytest.fixture
def jp_server_config() -> Config:
    return Config({"ServerApp": {"jpserver_extensions": {"thodare_jupyter.server": True}}})


async def test_rest_routes_show_scrubbed_errors(
    kits: KitFactory, db: Path, monkeypatch: pytest.MonkeyPatch, jp_fetch: Any
) -> None:
    monkeypatch.setenv("THODARE_DB", str(db))
    kit = kits(env=ENV).start()
    kit.register(leaky, reader)
    ids = [kit.run(SerializedWorkflow.model_validate(wf), {}).id for wf in (LEAKY, READER)]
    for run_id in ids:
        with pytest.raises(RunFailed):
            kit.get_handle(run_id).result(timeout=20)
    listing = (await jp_fetch("thodare", "api", "runs")).body.decode()
    assert "login failed with ***" in listing
    assert_clean(listing, "GET /runs")
    for run_id in ids:
        one = (await jp_fetch("thodare", "api", "runs", run_id)).body.decode()
        assert_clean(one, f"GET /runs/{run_id}")
