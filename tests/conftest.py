"""Shared fixtures: fresh catalogs and real loopback HTTP fakes (Slack, any JSON API)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from thodare_jupyter import Catalog


@dataclass
class FakeServer:
    """A real HTTP server on 127.0.0.1 that records requests and answers JSON."""

    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    reply: dict[str, Any] = field(default_factory=dict)
    status: int = 200


def _serve(answer: Any) -> Iterator[FakeServer]:
    box: dict[str, FakeServer] = {}

    class Handler(BaseHTTPRequestHandler):
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
            data = answer(srv, req)
            out = json.dumps(data).encode()
            self.send_response(srv.status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    box["srv"] = FakeServer(url=f"http://127.0.0.1:{httpd.server_port}")
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield box["srv"]
    finally:
        httpd.shutdown()
        httpd.server_close()


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
