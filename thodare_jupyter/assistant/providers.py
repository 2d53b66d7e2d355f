"""The models the assistant talks to: one small interface over the official SDKs.

``THODARE_LLM_MODEL`` names the model as ``provider:model``:

- ``openai:gpt-4o-mini``: OpenAI or any OpenAI-compatible server (vLLM,
  Ollama, LM Studio, ...) through ``OPENAI_BASE_URL`` and ``OPENAI_API_KEY``;
- ``anthropic:claude-sonnet-4-5``: ``ANTHROPIC_API_KEY`` (``ANTHROPIC_BASE_URL``).

Every request is a plain chat completion asking for one JSON object (JSON
mode where the provider has it; no tool calls), so the smallest local server
works. Rate limits are retried with backoff by the SDK (``THODARE_LLM_RETRIES``,
default 4, honouring ``Retry-After``); ``THODARE_LLM_TIMEOUT`` (seconds, default
60) bounds one request.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

from ..errors import (
    AssistantNotConfigured,
    ProviderFailed,
    ProviderRateLimited,
    ProviderUnreachable,
)

Message = dict[str, str]
"""``{"role": "user" | "assistant", "content": text}``."""

PROVIDERS = ("anthropic", "openai")
EXAMPLE = "THODARE_LLM_MODEL=openai:gpt-4o-mini (with OPENAI_API_KEY, or OPENAI_BASE_URL for a local server) or THODARE_LLM_MODEL=anthropic:claude-sonnet-4-5 (with ANTHROPIC_API_KEY)"  # noqa: E501


class ChatModel(Protocol):
    """What the repair loop needs of a model: a system prompt and turns in, text out."""

    name: str

    def complete(self, system: str, messages: list[Message]) -> str:
        """The model's answer to the conversation (raises an :class:`AssistantError`)."""
        ...


def _sdk(module: str) -> Any:
    try:
        return __import__(module)
    except ImportError:
        raise AssistantNotConfigured(
            f"The {module} SDK is not installed: pip install 'thodare-jupyter[assistant]'."
        ) from None


def _settings() -> tuple[int, float]:
    return int(os.environ.get("THODARE_LLM_RETRIES", "4")), float(
        os.environ.get("THODARE_LLM_TIMEOUT", "60")
    )


class OpenAIChat:
    """Chat completions on OpenAI or any OpenAI-compatible server, in JSON mode."""

    def __init__(self, model: str, *, base_url: str | None = None, api_key: str | None = None):
        openai = _sdk("openai")
        self._sdk = openai
        base_url = base_url or os.environ.get("OPENAI_BASE_URL") or None
        api_key = api_key or os.environ.get("OPENAI_API_KEY")
        if not api_key and not base_url:
            raise AssistantNotConfigured(
                f"THODARE_LLM_MODEL is openai:{model} but OPENAI_API_KEY is not set "
                "(set it, or OPENAI_BASE_URL for a local OpenAI-compatible server)."
            )
        retries, timeout = _settings()
        self.name = f"openai:{model}"
        self.model = model
        self.base_url = base_url or "https://api.openai.com/v1"
        self.client = openai.OpenAI(
            api_key=api_key or "not-needed", base_url=base_url, max_retries=retries,
            timeout=timeout,
        )  # fmt: skip

    def complete(self, system: str, messages: list[Message]) -> str:
        """One chat completion with ``response_format={"type": "json_object"}``."""
        with _translated(self._sdk, self.name, self.base_url):
            resp = self.client.chat.completions.create(
                model=self.model,
                messages=[{"role": "system", "content": system}, *messages],
                response_format={"type": "json_object"},
            )
        if not resp.choices:
            return ""
        return str(resp.choices[0].message.content or "")


class AnthropicChat:
    """Anthropic's Messages API; the prompt asks for one JSON object (no JSON mode there)."""

    def __init__(self, model: str, *, base_url: str | None = None, api_key: str | None = None):
        anthropic = _sdk("anthropic")
        self._sdk = anthropic
        api_key = api_key or os.environ.get("ANTHROPIC_API_KEY")
        if not api_key:
            raise AssistantNotConfigured(
                f"THODARE_LLM_MODEL is anthropic:{model} but ANTHROPIC_API_KEY is not set."
            )
        base_url = base_url or os.environ.get("ANTHROPIC_BASE_URL") or None
        retries, timeout = _settings()
        self.name = f"anthropic:{model}"
        self.model = model
        self.base_url = base_url or "https://api.anthropic.com"
        self.client = anthropic.Anthropic(
            api_key=api_key, base_url=base_url, max_retries=retries, timeout=timeout
        )

    def complete(self, system: str, messages: list[Message]) -> str:
        """One Messages API call; the text blocks of the answer, joined."""
        with _translated(self._sdk, self.name, self.base_url):
            resp = self.client.messages.create(
                model=self.model, max_tokens=4096, system=system, messages=messages
            )
        return "".join(b.text for b in resp.content if getattr(b, "type", "") == "text")


def model_from_env(spec: str | None = None) -> ChatModel:
    """The model named by ``spec`` or ``THODARE_LLM_MODEL`` (``provider:model``).

    Raises:
        AssistantNotConfigured: No model is named, the provider is unknown, or its
            SDK or key is missing; the message says what to set.
    """
    spec = spec or os.environ.get("THODARE_LLM_MODEL", "").strip()
    if not spec:
        raise AssistantNotConfigured(f"No model is configured for the assistant. Set {EXAMPLE}.")
    provider, _, model = spec.partition(":")
    if provider not in PROVIDERS or not model:
        raise AssistantNotConfigured(
            f"THODARE_LLM_MODEL={spec!r} is not provider:model with a provider of "
            f"{', '.join(PROVIDERS)}; e.g. {EXAMPLE}."
        )
    return OpenAIChat(model) if provider == "openai" else AnthropicChat(model)


@contextmanager
def _translated(sdk: Any, name: str, base_url: str) -> Iterator[None]:
    """The SDK's errors (same names in both SDKs) as ours, with what to do."""
    try:
        yield
    except sdk.RateLimitError as e:
        raise ProviderRateLimited(_rate_limited(name, e)) from None
    except sdk.APIConnectionError as e:
        raise ProviderUnreachable(_unreachable(name, base_url, e)) from None
    except sdk.APIStatusError as e:
        raise ProviderFailed(_failed(name, e)) from None


def _rate_limited(name: str, e: Exception) -> str:
    retries, _ = _settings()
    return (
        f"{name} is rate limiting requests (HTTP 429) and still was after {retries} "
        f"retries with backoff: wait a minute and ask again, or raise THODARE_LLM_RETRIES. "
        f"The provider said: {_said(e)}"
    )


def _unreachable(name: str, base_url: str, e: Exception) -> str:
    return (
        f"Cannot reach {name} at {base_url} ({type(e).__name__}: {e}). Check the server is "
        "running and the base URL (OPENAI_BASE_URL / ANTHROPIC_BASE_URL) and network."
    )


def _failed(name: str, e: Any) -> str:
    hint = {401: " Check the API key.", 403: " Check the key's permissions.",
            404: " Check the model name in THODARE_LLM_MODEL."}.get(e.status_code, "")  # fmt: skip
    return f"{name} answered HTTP {e.status_code}: {_said(e)}.{hint}"


def _said(e: Exception) -> str:
    body = getattr(e, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
    return str(e)
