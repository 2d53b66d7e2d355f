"""A fake model server on 127.0.0.1: OpenAI chat completions and Anthropic messages.

It answers from a script (one entry per request, the last repeated) or from a
function of the request, and records every request body, so a test can read
exactly what left the process. An entry is the assistant's text, a dict (sent
as JSON text), or an :class:`Http` error answer.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Http:
    """An HTTP error answer, e.g. ``Http(429, headers={"retry-after-ms": "10"})``."""

    status: int
    message: str = "scripted error"
    headers: dict[str, str] = field(default_factory=dict)


Answer = str | dict[str, Any] | Http


@dataclass
class FakeLLM:
    """The running fake: its base URL, the script and what it received."""

    url: str
    script: list[Answer] = field(default_factory=list)
    respond: Callable[[dict[str, Any]], Answer] | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    raw_bodies: list[str] = field(default_factory=list)

    @property
    def openai_url(self) -> str:
        return f"{self.url}/v1"

    def next_answer(self, body: dict[str, Any]) -> Answer:
        if self.respond is not None:
            return self.respond(body)
        n = len(self.requests) - 1
        return self.script[min(n, len(self.script) - 1)]

    def user_turns(self, i: int) -> list[str]:
        """The user messages of request ``i``."""
        return [m["content"] for m in self.requests[i]["messages"] if m["role"] == "user"]


def _openai(text: str, model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake", "object": "chat.completion", "created": 0, "model": model,
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }  # fmt: skip


def _anthropic(text: str, model: str) -> dict[str, Any]:
    return {
        "id": "msg_fake", "type": "message", "role": "assistant", "model": model,
        "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
        "stop_sequence": None, "usage": {"input_tokens": 1, "output_tokens": 1},
    }  # fmt: skip


@contextmanager
def fake_llm(*script: Answer, respond: Callable[[dict[str, Any]], Answer] | None = None
             ) -> Iterator[FakeLLM]:  # fmt: skip
    """Serve a fake model on a free loopback port for the ``with`` block."""
    box: dict[str, FakeLLM] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length") or 0)).decode()
            srv = box["srv"]
            body = json.loads(raw)
            srv.raw_bodies.append(raw)
            srv.requests.append(body)
            answer = srv.next_answer(body)
            if isinstance(answer, Http):
                self._send(
                    answer.status,
                    {"error": {"message": answer.message, "type": "scripted"}},
                    answer.headers,
                )
                return
            text = answer if isinstance(answer, str) else json.dumps(answer)
            wrap = _anthropic if self.path.endswith("/messages") else _openai
            self._send(200, wrap(text, body.get("model", "")), {})

        def _send(self, status: int, data: dict[str, Any], headers: dict[str, str]) -> None:
            out = json.dumps(data).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(out)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    box["srv"] = FakeLLM(f"http://127.0.0.1:{httpd.server_port}", list(script), respond)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)  # fmt: skip
    thread.start()
    try:
        yield box["srv"]
    finally:
        httpd.shutdown()
        httpd.server_close()
