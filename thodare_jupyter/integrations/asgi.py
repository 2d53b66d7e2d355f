"""A small ASGI 3 app serving a :class:`WebhookRouter`, with no web framework.

``uvicorn thodare_jupyter.integrations.asgi:app`` serves the router named by
``THODARE_WEBHOOKS="package.module:attribute"`` (a router, or a zero-argument
function returning one). It is loaded at lifespan startup, or on the first
request when the server runs without lifespan. ``GET /healthz`` answers 200
once the router is loaded. At lifespan shutdown the router's kit worker, if
started, is stopped so its runs in flight are handed back at once.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import logging
import os
import threading
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl, quote

from ..errors import UnsupportedScope, WebhookConfigError, WebhookRouterNotLoaded
from ..jsonsafe import MAX_DEPTH, JsonRejected, loads_bounded
from .webhooks import WebhookRequest, WebhookResponse, WebhookRouter

ENV_VAR = "THODARE_WEBHOOKS"
MAX_BODY = 1 << 20
"""Default body limit in bytes (1 MiB); a larger body gets 413."""
MAX_JSON_DEPTH = MAX_DEPTH
"""JSON bodies nested deeper than this (64 arrays/objects) get 400 ``invalid_json``."""

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

log = logging.getLogger(__name__)


def load_router(ref: str | None = None) -> WebhookRouter:
    """Import the router named by ``ref`` (default: env ``THODARE_WEBHOOKS``).

    Raises:
        WebhookRouterNotLoaded: The name is unset or malformed, cannot be imported, or
            names something that is not a router (the message names the variable).
    """
    ref = os.environ.get(ENV_VAR, "") if ref is None else ref
    hint = f"Set {ENV_VAR}='package.module:attribute' naming a WebhookRouter or a function "
    hint += "returning one (the module must be importable, e.g. on PYTHONPATH)."
    if not ref:
        raise WebhookRouterNotLoaded(ref, f"{ENV_VAR} is not set. {hint}")
    mod_name, _, attr = ref.partition(":")
    if not mod_name or not attr:
        raise WebhookRouterNotLoaded(ref, f"{ENV_VAR}={ref!r} names no router. {hint}")
    try:
        obj: Any = importlib.import_module(mod_name)
    except Exception as e:
        raise WebhookRouterNotLoaded(
            ref, f"{ENV_VAR}={ref!r}: importing {mod_name!r} failed: {e!r}. {hint}"
        ) from e
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise WebhookRouterNotLoaded(
                ref, f"{ENV_VAR}={ref!r}: {mod_name!r} has no attribute {attr!r}. {hint}"
            )
        obj = getattr(obj, part)
    if not isinstance(obj, WebhookRouter) and callable(obj):
        try:
            obj = obj()
        except Exception as e:
            raise WebhookRouterNotLoaded(
                ref, f"{ENV_VAR}={ref!r}: calling {attr}() failed: {e!r}"
            ) from e
    if not isinstance(obj, WebhookRouter):
        raise WebhookRouterNotLoaded(
            ref, f"{ENV_VAR}={ref!r} is a {type(obj).__name__}, not a router. {hint}"
        )
    return obj


class WebhookApp:
    """An ASGI 3 application: JSON in, :meth:`WebhookRouter.handle`, JSON out.

    The whole body is read (up to ``max_body`` bytes, else 413
    ``payload_too_large``) and parsed as JSON unless a non-JSON ``content-type``
    is sent (then ``body`` is None and ``raw_body`` holds the bytes). JSON that
    is malformed, not UTF-8, nested deeper than :data:`MAX_JSON_DEPTH`, or holds
    ``NaN``/``Infinity``, a number out of range or an integer of over 4,300
    digits gets 400 ``invalid_json`` with a message naming the problem. Both
    answers come before routing (and before the signature check).
    """

    def __init__(
        self,
        router: WebhookRouter | None = None,
        *,
        loader: Callable[[], WebhookRouter] | None = None,
        max_body: int = MAX_BODY,
    ) -> None:
        if (router is None) == (loader is None):
            raise WebhookConfigError("WebhookApp needs a router or a loader (exactly one).")
        self._router = router
        self._loader = loader
        self._lock = threading.Lock()
        self.max_body = max_body

    async def router(self) -> WebhookRouter:
        """The router, loaded now (on a thread) if it is not yet."""
        if self._router is not None:
            return self._router
        return await asyncio.to_thread(self._load)

    def _load(self) -> WebhookRouter:
        with self._lock:
            if self._router is None:
                assert self._loader is not None  # __init__ takes exactly one of the two
                self._router = self._loader()
            return self._router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI 3 entry point (``lifespan`` and ``http`` scopes)."""
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)
        else:
            raise UnsupportedScope(scope["type"])

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.router()
                except Exception as e:
                    await send({"type": "lifespan.startup.failed", "message": str(e)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._router is not None:
                    await asyncio.to_thread(self._router.kit.stop)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            router = await self.router()
        except Exception:  # the reason (it may name files or hosts) goes to the log only
            log.exception("cannot load the webhook router")
            why = "The webhook router could not be loaded; see the server log."
            return await _answer(send, WebhookResponse(500, {"error": "no_router", "message": why}))
        method, headers = scope["method"].upper(), _headers(scope)
        raw_path = scope.get("raw_path") or quote(scope["path"]).encode()
        path = raw_path.decode("latin-1").split("?", 1)[0]
        if method == "GET" and path.rstrip("/") == "/healthz":
            return await _answer(send, WebhookResponse(200, {"ok": True}))
        try:
            raw = await _read_body(receive, self.max_body)
        except _ClientGone:  # a cut-off body never starts a run
            return None
        if raw is None:
            return await _answer(send, _too_large(self.max_body))
        body: Any = None
        ctype = headers.get("content-type", "")
        if raw and (not ctype or "json" in ctype):
            try:
                body = loads_bounded(raw, max_bytes=self.max_body, max_depth=MAX_JSON_DEPTH)
            except JsonRejected as e:
                bad = WebhookResponse(400, {"error": "invalid_json", "message": f"body: {e}."})
                return await _answer(send, bad)
        qs = scope.get("query_string", b"").decode("latin-1")
        query = dict(parse_qsl(qs, keep_blank_values=True))
        req = WebhookRequest(method, path, headers, body, raw, query)
        await _answer(send, await router.handle(req))


def create_asgi_app(router: WebhookRouter, *, max_body: int = MAX_BODY) -> WebhookApp:
    """An ASGI app serving ``router`` (mount it, or run it with any ASGI server)."""
    return WebhookApp(router, max_body=max_body)


app = WebhookApp(loader=load_router)
"""``uvicorn thodare_jupyter.integrations.asgi:app``: serves ``$THODARE_WEBHOOKS``."""


def _too_large(limit: int) -> WebhookResponse:
    mib = f" ({limit >> 20} MiB)" if limit and limit % (1 << 20) == 0 else ""
    why = f"body: over {limit} bytes{mib}; send less or raise max_body."
    return WebhookResponse(413, {"error": "payload_too_large", "message": why})


class _ClientGone(Exception):
    """The client disconnected before the whole body arrived."""


def _headers(scope: Scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in scope.get("headers", []):
        name, value = k.decode("latin-1").lower(), v.decode("latin-1")
        out[name] = f"{out[name]}, {value}" if name in out else value
    return out


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole body, or None when it exceeds ``limit`` bytes; raises :class:`_ClientGone`."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


async def _answer(send: Send, resp: WebhookResponse) -> None:
    data = json.dumps(resp.body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(data))]
    headers += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in resp.headers.items()]
    await send({"type": "http.response.start", "status": resp.status, "headers": headers})
    await send({"type": "http.response.body", "body": data})
