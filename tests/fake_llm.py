"""A fake model server on 127.0.0.1: OpenAI chat completions and Anthropic messages.

It answers from a script (one entry per request, the last repeated) or from a
function of the request, and records every request body, so a test can read
exactly what left the process. An entry is the assistant's text, a dict (sent
as JSON text), or an :class:`Http` error answer.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from loopback import JsonHandler, serve


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

    class Handler(JsonHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length") or 0)).decode()
            srv = box["srv"]
            body = json.loads(raw)
            srv.raw_bodies.append(raw)
            srv.requests.append(body)
            answer = srv.next_answer(body)
            if isinstance(answer, Http):
                error = {"error": {"message": answer.message, "type": "scripted"}}
                self.send_json(answer.status, error, answer.headers)
                return
            text = answer if isinstance(answer, str) else json.dumps(answer)
            wrap = _anthropic if self.path.endswith("/messages") else _openai
            self.send_json(200, wrap(text, body.get("model", "")))

    with serve(Handler) as url:
        box["srv"] = FakeLLM(url, list(script), respond)
        yield box["srv"]


def approval_between(source: str, target: str, prompt: str, explanation: str) -> dict[str, Any]:
    """A model's answer that puts a ``human_approval`` step ``approve`` on ``source → target``."""
    return {
        "operations": [
            {"operation_type": "add", "block_id": "approve", "type": "human_approval",
             "params": {"prompt": prompt}},
            {"operation_type": "disconnect", "block_id": source, "target_block_id": target},
            {"operation_type": "connect", "block_id": source, "target_block_id": "approve"},
            {"operation_type": "connect", "block_id": "approve", "target_block_id": target},
        ],
        "explanation": explanation,
    }  # fmt: skip
