"""``create_webhook_router``: inbound HTTP webhooks start durable runs.

The router is HTTP-server agnostic: :meth:`WebhookRouter.handle` takes a
:class:`WebhookRequest` and returns a :class:`WebhookResponse`, so it plugs into
any server (:mod:`thodare_jupyter.integrations.asgi` serves it with uvicorn) or
into test code. A route matches a method and a path template
(``/tenants/:tenant/events``), builds the run input from the request, checks
it against the target's input model before any run row exists, and starts
the run: ``202 {"runId": ...}``. A failure is a 500 whose message is a
:class:`ThodareError`'s own or only the exception's type name (the traceback
goes to the log), so a secret in an exception never reaches the caller.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import hmac
import inspect
import json
import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from pydantic import BaseModel, ValidationError

from ..authoring.spec import WorkflowSpec
from ..errors import (
    ThodareError,
    WebhookPathInvalid,
    WebhookRouteConflict,
    WebhookSecretEmpty,
)
from ..wire import SerializedWorkflow

if TYPE_CHECKING:
    from ..durable.handle import RunHandle
    from ..kit import Wfkit

log = logging.getLogger(__name__)

RequestFn = Callable[["WebhookRequest"], Any]
"""``fn(request)``, sync or ``async``."""
MAX_KEY_CHARS = 256
"""A stored idempotency key longer than this is replaced by its SHA-256 (see :func:`scoped_key`)."""


@dataclass
class WebhookRequest:
    """One inbound request, as any HTTP server can build it.

    Attributes:
        method: The HTTP method (upper-cased on creation).
        path: The URL path as received (percent-encoded), without the query string.
        headers: Header values by name; names are lower-cased on creation.
        body: The parsed JSON body (None when there is none).
        raw_body: The body bytes as received; signatures are checked over them.
        query: Query string values (the last wins for a repeated name).
        params: ``:param`` captures, URL-decoded; filled by the router.
    """

    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    raw_body: bytes = b""
    query: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.method = self.method.upper()
        self.headers = {k.lower(): v for k, v in self.headers.items()}


@dataclass(frozen=True)
class WebhookResponse:
    """What to answer: a status, a JSON body and extra headers (e.g. ``Allow``)."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class WebhookRoute:
    """A registered route, for introspection: ``target`` is ``name@version`` (or the name)."""

    method: str
    path: str
    target: str


@dataclass(frozen=True)
class _Route:
    info: WebhookRoute
    segments: tuple[str, ...]  # literal segments, or ":name" for a capture
    target: WorkflowSpec | SerializedWorkflow
    from_request: RequestFn | None
    idempotency_key: RequestFn | None

    @property
    def scope(self) -> str:
        """``METHOD /path/:template`` (normalised): what idempotency keys are scoped by."""
        return f"{self.info.method} /{'/'.join(self.segments)}"

    @property
    def model(self) -> type[BaseModel] | None:
        t = self.target
        return t.input if isinstance(t, WorkflowSpec) else t.input_model

    def match(self, parts: list[str]) -> dict[str, str] | None:
        if len(parts) != len(self.segments):
            return None
        params: dict[str, str] = {}
        for seg, part in zip(self.segments, parts, strict=True):
            if seg.startswith(":") and part:
                params[seg[1:]] = part
            elif seg != part:
                return None
        return params


class WebhookRouter:
    """Routes webhooks to workflow runs on one kit. Create it with :func:`create_webhook_router`.

    Database work happens on a thread (``asyncio.to_thread``), so an ASGI
    server's event loop is never blocked; a sync ``from_request`` runs on the
    loop, so keep it quick (or make it ``async``).
    """

    def __init__(
        self,
        kit: Wfkit,
        *,
        secret: str | bytes | None,
        hmac_secret: str | bytes | None,
        secret_header: str,
        signature_header: str,
    ) -> None:
        self.kit = kit
        self._secret = _key("secret", secret)
        self._hmac_secret = _key("hmac_secret", hmac_secret)
        self._secret_header = secret_header.lower()
        self._signature_header = signature_header.lower()
        self._routes: list[_Route] = []

    def register(
        self,
        path: str,
        target: WorkflowSpec | SerializedWorkflow | dict[str, Any] | str,
        *,
        method: str = "POST",
        from_request: RequestFn | None = None,
        idempotency_key: RequestFn | None = None,
    ) -> WebhookRouter:
        """Route ``method path`` to a run of ``target``; returns the router (chainable).

        Args:
            path: A template such as ``/tenants/:tenant/events/:event_id``; a
                ``:name`` segment captures one URL-decoded, non-empty segment.
            target: A :class:`WorkflowSpec` (run with ``kit.run_spec``; build its
                workflow with ``kit.workflow_from_spec``) or a workflow (checked now
                with ``kit.compile``, run with ``kit.run``).
            method: The HTTP method; another method on the same path gets 405.
            from_request: ``fn(request)`` (sync or async) returning the run input;
                default: the JSON body.
            idempotency_key: ``fn(request)`` (sync or async) returning a key, or
                None: a delivery with a key seen before on this route, with the
                same ``:param`` values, returns the first run's id. The stored key
                is scoped: see :func:`scoped_key`.

        Raises:
            WebhookPathInvalid: The path template is malformed.
            WebhookRouteConflict: A route with this method and path shape exists already.
            WorkflowInvalid: A workflow target does not compile on this kit.
        """
        segments = tuple(_template_segment(s, path) for s in _split(path))
        names = [s[1:] for s in segments if s.startswith(":")]
        if len(set(names)) != len(names):
            raise WebhookPathInvalid(
                path, f"Webhook path {path!r} uses a :param name twice; rename one."
            )
        verb = method.upper()
        for r in self._routes:
            if r.info.method == verb and _shape(r.segments) == _shape(segments):
                raise WebhookRouteConflict(verb, path, r.info.path, r.info.target)
        tgt = target if isinstance(target, WorkflowSpec) else self.kit.compile(target)
        name = tgt.runtime_name if isinstance(tgt, WorkflowSpec) else (tgt.name or "(unnamed)")
        info = WebhookRoute(method=verb, path=path, target=name)
        self._routes.append(_Route(info, segments, tgt, from_request, idempotency_key))
        return self

    def routes(self) -> list[WebhookRoute]:
        """The registered routes, in registration order (the first match wins)."""
        return [r.info for r in self._routes]

    async def handle(self, request: WebhookRequest) -> WebhookResponse:
        """Answer one request: 202 with ``runId``, or 400/401/404/405/500 with ``error``.

        No run row exists unless the answer is 202. Error bodies carry a code and
        a message, never a secret or a stack trace (those go to the log).
        """
        parts = _split(request.path)
        allowed: set[str] = set()
        for route in self._routes:
            params = route.match(parts)
            if params is None:
                continue
            if route.info.method != request.method:
                allowed.add(route.info.method)
                continue
            return await self._dispatch(route, dataclasses.replace(request, params=params))
        if allowed:
            allow = ", ".join(sorted(allowed))
            body = {"error": "method_not_allowed", "allowed": sorted(allowed)}
            return WebhookResponse(405, body, {"Allow": allow})
        return WebhookResponse(404, {"error": "no_route"})

    async def _dispatch(self, route: _Route, req: WebhookRequest) -> WebhookResponse:
        if not self._authorized(req, route):
            return WebhookResponse(401, {"error": "unauthorized"})
        try:
            data = req.body if route.from_request is None else await _call(route.from_request, req)
        except Exception as e:
            return _failed("from_request_failed", e, route)
        issues = _issues(route.model, data)
        if issues:
            return WebhookResponse(400, {"error": "validation_failed", "issues": issues})
        try:
            key = None if route.idempotency_key is None else await _call(route.idempotency_key, req)
        except Exception as e:
            return _failed("idempotency_key_failed", e, route)
        scoped = scoped_key(route.scope, req.params, key) if key else None
        try:
            handle = await asyncio.to_thread(self._start, route.target, data, scoped)
        except Exception as e:
            return _failed("dispatch_failed", e, route)
        return WebhookResponse(202, {"runId": handle.id})

    def _start(
        self, target: WorkflowSpec | SerializedWorkflow, data: Any, k: str | None
    ) -> RunHandle:
        if isinstance(target, WorkflowSpec):
            return self.kit.run_spec(target, data, idempotency_key=k)
        return self.kit.run(target, data, idempotency_key=k)

    def _authorized(self, req: WebhookRequest, route: _Route) -> bool:
        ok = True
        if self._secret is not None:
            given = req.headers.get(self._secret_header, "").encode()
            if not hmac.compare_digest(given, self._secret):
                log.warning("webhook %s: missing or wrong %s", route.info.path, self._secret_header)
                ok = False
        if self._hmac_secret is not None:
            sig = req.headers.get(self._signature_header, "").strip()
            sig = sig[7:] if sig[:7].lower() == "sha256=" else sig
            want = hmac.new(self._hmac_secret, req.raw_body, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(sig.lower().encode(), want.encode()):
                log.warning("webhook %s: bad %s", route.info.path, self._signature_header)
                ok = False
        return ok


def create_webhook_router(
    kit: Wfkit,
    *,
    secret: str | bytes | None = None,
    hmac_secret: str | bytes | None = None,
    secret_header: str = "X-Thodare-Secret",
    signature_header: str = "X-Thodare-Signature",
) -> WebhookRouter:
    """A :class:`WebhookRouter` that starts runs on ``kit``.

    Args:
        kit: The kit whose workflows the routes run (its worker need not run here).
        secret: When set, every request must carry it in ``secret_header`` (else 401).
        hmac_secret: When set, every request must carry ``sha256=<hex>`` (or the
            bare hex) of HMAC-SHA256 over the raw body in ``signature_header``.
        secret_header: The header holding the shared secret.
        signature_header: The header holding the signature.

    Paths are matched before the checks: an unknown path is 404 and a known
    one with another method 405 for anyone; the checks come before the input
    is built, so an unauthorized request never reaches ``from_request``.
    """
    return WebhookRouter(
        kit,
        secret=secret,
        hmac_secret=hmac_secret,
        secret_header=secret_header,
        signature_header=signature_header,
    )


def _key(name: str, value: str | bytes | None) -> bytes | None:
    if value is None:
        return None
    raw = value.encode() if isinstance(value, str) else value
    if not raw:
        raise WebhookSecretEmpty(name)
    return raw


def _split(path: str) -> list[str]:
    """``/a/b%20c/`` → ``["a", "b c"]``: split on raw slashes, then URL-decode each segment."""
    trimmed = path.split("?", 1)[0].strip("/")
    return [unquote(s) for s in trimmed.split("/")] if trimmed else []


def _shape(segments: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(":" if s.startswith(":") else s for s in segments)


def _template_segment(seg: str, path: str) -> str:
    if seg.startswith(":") and not seg[1:].isidentifier():
        raise WebhookPathInvalid(
            path, f"Webhook path {path!r}: {seg!r} is not a valid :param (use letters, digits, _)."
        )
    return seg


async def _call(fn: RequestFn, req: WebhookRequest) -> Any:
    out = fn(req)
    return await out if inspect.isawaitable(out) else out


def _issues(model: type[BaseModel] | None, data: Any) -> list[dict[str, Any]]:
    """The input model's complaints as ``{path, message}`` (the kit checks again at run)."""
    if model is None:
        return []
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json")
    try:
        model.model_validate({} if data is None else data)
    except ValidationError as e:
        return [{"path": list(err["loc"]), "message": err["msg"]} for err in e.errors()]
    return []


def scoped_key(route: str, params: dict[str, str], key: Any) -> str:
    """The idempotency key stored for a delivery: ``webhook:<route>:<params>:<key>``.

    ``<route>`` is the JSON string ``"METHOD /path/:template"`` and ``<params>``
    the ``:param`` values as sorted JSON, so the same delivery key on two
    routes, or for two tenants (``/tenants/:tenant/…``), never names one run.
    A result over :data:`MAX_KEY_CHARS` characters, or with a character that
    is not printable (NUL, newline, ...), is stored as ``webhook:sha256:<hex>``
    of itself.
    """
    where = json.dumps(route, ensure_ascii=False)
    values = json.dumps(params, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    full = f"webhook:{where}:{values}:{key}"
    if len(full) <= MAX_KEY_CHARS and full.isprintable():
        return full
    return "webhook:sha256:" + hashlib.sha256(full.encode("utf-8", "surrogatepass")).hexdigest()


def _failed(code: str, error: Exception, route: _Route) -> WebhookResponse:
    """A 500: a ThodareError's message (it says what to do), else only the exception's type.

    Any other message may hold request data, a secret or SQL: it is sent
    nowhere. The log gets the traceback's frames and the same message, never
    the request's body or headers.
    """
    message = str(error) if isinstance(error, ThodareError) else type(error).__name__
    frames = "".join(traceback.format_tb(error.__traceback__))
    log.warning(
        "webhook %s %s: %s: %s\nTraceback (most recent call last):\n%s%s",
        route.info.method, route.info.path, code, message, frames, type(error).__name__,
    )  # fmt: skip
    return WebhookResponse(500, {"error": code, "message": message})
