"""nbval set-up for the example notebooks (executed by `make test`).

Each notebook's kernel inherits this process's environment: a fresh SQLite
file as ``THODARE_DB`` (so ``wfkit.runs()`` shows only this session's runs)
and, for ``03-postgres``, a fresh PostgreSQL schema as ``THODARE_PG_URL``.
Without a server ``03-postgres`` is skipped with a one-line reason; under
``CI=true`` it runs (and fails, naming the server).
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

PG_BASE = os.environ.get("THODARE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
_tmp = tempfile.mkdtemp(prefix="thodare-nbval-")
os.environ["THODARE_DB"] = str(Path(_tmp) / "runs.db")


def _admin() -> object:
    import psycopg

    return psycopg.connect(PG_BASE.replace("+psycopg", ""), autocommit=True, connect_timeout=3)


@pytest.fixture(scope="session", autouse=True)
def pg_schema_for_notebooks() -> Iterator[None]:
    """A fresh schema for 03-postgres (dropped at the end), when a server answers."""
    try:
        admin = _admin()
    except Exception:
        yield
        return
    schema = f"thodare_nb_{uuid.uuid4().hex[:12]}"
    with admin:  # type: ignore[attr-defined]
        admin.execute(f'CREATE SCHEMA "{schema}"')  # type: ignore[attr-defined]
    os.environ["THODARE_PG_URL"] = f"{PG_BASE}?options=-csearch_path%3D{schema}"
    yield
    with _admin() as admin:  # type: ignore[attr-defined]
        admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """03-postgres needs a server: skip it (or fail under CI) when there is none."""
    try:
        _admin().close()  # type: ignore[attr-defined]
        return
    except Exception as e:
        reason = f"PostgreSQL not reachable at {PG_BASE} ({type(e).__name__})"
    if os.environ.get("CI") == "true":
        return  # CI must run it: the notebook fails on its own, naming the server
    for item in items:
        if "03-postgres" in str(item.path):
            item.add_marker(pytest.mark.skip(reason=reason))
