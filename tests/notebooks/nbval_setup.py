"""The example notebooks' set-up under nbval (a pytest plugin: ``-p nbval_setup``).

It lives here, not beside the notebooks, so the demo folder shows only notebooks.
Before the first notebook's kernel starts (kernels inherit this process's
environment), ``THODARE_DB`` becomes a fresh SQLite file (so ``wfkit.runs()``
shows only this session's runs) and, when a server answers, ``THODARE_PG_URL``
a fresh PostgreSQL schema for ``03-postgres``, dropped at the end. Without a
server ``03-postgres`` is skipped with a one-line reason; under ``CI=true`` it
runs (and fails, naming the server). Sessions without notebooks are untouched.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest
from durable_helpers import PG_BASE, pg_dsn

_made: dict[str, str] = {}
"""What the session made: the temporary folder and the schema (dropped at the end)."""


def _is_notebook(item: pytest.Item) -> bool:
    return item.path.suffix == ".ipynb"


def _admin() -> Any:
    import psycopg

    return psycopg.connect(pg_dsn(), autocommit=True, connect_timeout=3)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """03-postgres needs a server: skip it (or fail under CI) when there is none."""
    if not any("03-postgres" in str(item.path) for item in items):
        return
    try:
        _admin().close()
        return
    except Exception as e:
        reason = f"PostgreSQL not reachable at {PG_BASE} ({type(e).__name__})"
    if os.environ.get("CI") == "true":
        return  # CI must run it: the notebook fails on its own, naming the server
    for item in items:
        if "03-postgres" in str(item.path):
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before the first notebook cell (and so before its kernel starts): the databases."""
    if not _is_notebook(item) or "dir" in _made:
        return
    _made["dir"] = tempfile.mkdtemp(prefix="thodare-nbval-")
    os.environ["THODARE_DB"] = str(Path(_made["dir"]) / "runs.db")
    try:
        admin = _admin()
    except Exception:
        return  # 03-postgres is skipped (or fails under CI), see above
    schema = f"thodare_nb_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    _made["schema"] = schema
    sep = "&" if "?" in PG_BASE else "?"
    os.environ["THODARE_PG_URL"] = f"{PG_BASE}{sep}options=-csearch_path%3D{schema}"


def pytest_sessionfinish() -> None:
    """Drop the schema and the temporary folder the notebooks used."""
    if "schema" in _made:
        with _admin() as admin:
            admin.execute(f'DROP SCHEMA "{_made["schema"]}" CASCADE')
    if "dir" in _made:
        shutil.rmtree(_made["dir"], ignore_errors=True)
    _made.clear()
