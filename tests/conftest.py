"""Shared fixtures: fresh catalogs, loopback HTTP fakes (Slack, any JSON API), durable kits."""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from durable_helpers import PG_BASE, KitFactory, pg_dsn
from lab_harness import Lab, chromium_or_skip, start_lab
from loopback import JsonHandler, serve

from thodare_jupyter import Catalog, Wfkit, create_wfkit


@dataclass
class FakeServer:
    """A real HTTP server on 127.0.0.1 that records requests and answers JSON."""

    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    reply: dict[str, Any] = field(default_factory=dict)
    status: int = 200


def _serve(answer: Any) -> Iterator[FakeServer]:
    box: dict[str, FakeServer] = {}

    class Handler(JsonHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body: Any = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode()
            srv = box["srv"]
            req = {
                "method": self.command,
                "path": self.path,
                "headers": dict(self.headers),
                "body": body,
            }
            srv.requests.append(req)
            self.send_json(srv.status, answer(srv, req))

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    with serve(Handler) as url:
        box["srv"] = FakeServer(url=url)
        yield box["srv"]


@pytest.fixture
def catalog() -> Catalog:
    """A fresh catalog with the builtin blocks."""
    return Catalog()


@pytest.fixture
def api_server() -> Iterator[FakeServer]:
    """A JSON API on loopback: answers ``server.reply`` (default: echoes the request)."""
    yield from _serve(lambda srv, req: srv.reply or {"echo": req})


@pytest.fixture
def slack_server() -> Iterator[FakeServer]:
    """A fake Slack Web API on loopback; point ``SLACK_API_URL`` at ``server.url``."""

    def answer(srv: FakeServer, req: dict[str, Any]) -> dict[str, Any]:
        if srv.reply:
            return srv.reply
        if not req["headers"].get("Authorization", "").startswith("Bearer "):
            return {"ok": False, "error": "not_authed"}
        body = req["body"] or {}
        ts = f"17000000.{len(srv.requests):06d}"
        return {"ok": True, "ts": ts, "channel": body.get("channel")}

    yield from _serve(answer)


@pytest.fixture
def slack_env(slack_server: FakeServer) -> dict[str, str]:
    """Env for runs whose slack blocks talk to the loopback fake."""
    return {"SLACK_API_URL": slack_server.url, "SLACK_BOT_TOKEN": "xoxb-test"}


# ── durable kits on SQLite ──────────────────────────────────────────────────


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """The test's SQLite file (created by the first kit that opens it)."""
    return tmp_path / "runs.db"


@contextlib.contextmanager
def _kit_factory(url: str) -> Iterator[KitFactory]:
    made: list[Wfkit] = []

    def make(**kw: Any) -> Wfkit:
        kw.setdefault("poll_s", 0.05)
        kw.setdefault("lease_s", 2)
        kw.setdefault("env", {})
        kit = create_wfkit(url, **kw)
        made.append(kit)
        return kit

    yield make
    for kit in made:
        kit.close()


@pytest.fixture
def kits(db: Path) -> Iterator[KitFactory]:
    """Kits on the test's SQLite file; all closed at teardown.

    ``kits(**kw)`` passes ``kw`` to ``create_wfkit`` with the defaults
    ``poll_s=0.05``, ``lease_s=2`` and ``env={}``.
    """
    with _kit_factory(str(db)) as make:
        yield make


# ── PostgreSQL ────────────────────────────────────────────────────────────
@pytest.fixture
def pg_url() -> Iterator[str]:
    """A SQLAlchemy URL on a fresh PostgreSQL schema, dropped on teardown.

    Without a server the test skips with a one-line reason; under CI=true it fails.
    """
    try:
        import psycopg

        admin = psycopg.connect(pg_dsn(), autocommit=True, connect_timeout=3)
    except Exception as e:  # no driver or no server
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but PostgreSQL is unreachable at {PG_BASE}: {e}")
        pytest.skip(f"PostgreSQL not reachable at {PG_BASE} ({type(e).__name__})")
    schema = f"thodare_t_{uuid.uuid4().hex[:12]}"
    with admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in PG_BASE else "?"
    try:
        yield f"{PG_BASE}{sep}options=-csearch_path%3D{schema}"
    finally:  # a fresh connection: the test may have restarted the server
        with psycopg.connect(pg_dsn(), autocommit=True, connect_timeout=10) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE pid <> pg_backend_pid() AND query LIKE %s",
                (f"%{schema}%",),
            )
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


# ── one variable switches SQLite / PostgreSQL ────────────────────────────────


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The test runs twice: on a SQLite file, then on a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'runs.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def any_kits(db_url: str) -> Iterator[KitFactory]:
    """Like ``kits``, on ``db_url`` (SQLite, then PostgreSQL)."""
    with _kit_factory(db_url) as make:
        yield make


@pytest.fixture
def chromium() -> Path:
    """/usr/bin/chromium for the browser tests (skipped without it, failed under CI=true)."""
    return chromium_or_skip()


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    """A real ``jupyter lab`` on loopback serving ``lab.root`` (runs in ``tmp_path``)."""
    with start_lab(tmp_path) as running:
        yield running
