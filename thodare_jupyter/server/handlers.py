"""Tornado handlers of ``/thodare/api/…``: JSON in and out, blocking work off the event loop.

Input from the browser is checked before any database work: query values,
run ids and signal bodies that cannot be right are 400/404/413 with a short
message naming the field (a value is echoed 32 characters at most).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from typing import Any, TypeVar

from jupyter_server.base.handlers import APIHandler
from tornado import web
from tornado.iostream import StreamClosedError

from ..clock import from_iso
from ..errors import BackendUnavailable, RunIdAmbiguous, RunIdTooShort, RunNotFound
from ..jsonsafe import MAX_DEPTH, JsonRejected, JsonTooLarge, loads_bounded
from ..wire import RUN_STATUSES, RunStatus
from .downloads import FORMATS, Format, NotInRun, NotServed, artifact_id_of
from .runs import NotWaiting, Runs
from .sources import Source, Sources

T = TypeVar("T")
MAX_LIMIT = 1000
"""``limit`` is a whole number (ASCII digits) from 1 to this."""
MAX_SIGNAL_BODY = 256 << 10
"""A ``POST /signals`` body over this many bytes (256 KiB) gets 413."""
MAX_SIGNAL_DEPTH = MAX_DEPTH
"""A signal body nested deeper than this (64 arrays/objects) gets 400."""
MAX_KEY_CHARS = 512
"""``event`` and ``correlation_key`` are at most this long (their database columns)."""
MAX_RUN_ID = 64
"""A run id longer than this (or with control characters) cannot exist: 404 at once."""
MAX_BLOCK_ID = 10240
"""``?block=`` is at most this long (its database column)."""
KEEPALIVE_S = 15.0
"""The event stream sends a comment when nothing changed for this long."""
EVENT_GAP_S = 0.1
"""At most one ``change`` event per this many seconds (changes in between are one)."""
_LIMIT = re.compile(r"[0-9]{1,4}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def shown(value: str) -> str:
    """``value`` for a message: its repr, cut to 32 characters with the length said."""
    if len(value) <= 32:
        return repr(value)
    cut = repr(value[:32])
    return f"{cut[:-1]}…{cut[-1]} ({len(value)} characters)"


class _Base(APIHandler):
    """Shared: the :class:`Runs` backend (of ``?kernel=``, see :mod:`.sources`) and 404
    for unknown runs."""

    @property
    def source(self) -> tuple[Runs, Source]:
        """The backend this request reads, and whether it is the kernel's or the server's."""
        sources: Sources = self.settings["thodare_sources"]
        return sources.get(self.get_query_argument("kernel", "") or None)

    @property
    def runs(self) -> Runs:
        return self.source[0]

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking database call in a thread; an unknown run id is a 404, an
        ambiguous prefix a 409 naming the candidates, a too short one a 400."""
        try:
            return await asyncio.to_thread(fn, *args)
        except RunNotFound as e:
            raise _no_run(e.run_id) from None
        except RunIdAmbiguous as e:
            raise web.HTTPError(409, str(e)) from None
        except RunIdTooShort as e:
            raise web.HTTPError(400, str(e)) from None
        except BackendUnavailable as e:
            raise web.HTTPError(503, str(e)) from None

    def body(self, max_bytes: int) -> dict[str, Any]:
        """The JSON object sent, or a 400 (413 when too big) saying what is wrong with it."""
        try:
            data = loads_bounded(
                self.request.body or b"null", max_bytes=max_bytes, max_depth=MAX_SIGNAL_DEPTH
            )
        except JsonTooLarge as e:
            kib = f" ({max_bytes >> 10} KiB)" if max_bytes % 1024 == 0 else ""
            why = f"body: {e}{kib}; send less or store the data elsewhere and send a reference."
            raise web.HTTPError(413, why) from None
        except JsonRejected as e:
            raise web.HTTPError(400, f"body: {e}.") from None
        if not isinstance(data, dict):
            raise web.HTTPError(400, "body: expected a JSON object.")
        return data


def run_id_of(raw: str) -> str:
    """The run id from the URL, or a 404 when it cannot name a run (too long, control chars)."""
    if len(raw) > MAX_RUN_ID or _CONTROL.search(raw):
        raise _no_run(raw)
    return raw


def _run_status(raw: str) -> RunStatus:
    """``?status=`` as a :data:`~thodare_jupyter.wire.RunStatus`, or a 400 naming the choices."""
    for s in RUN_STATUSES:
        if raw == s:
            return s
    raise web.HTTPError(400, f"status: {shown(raw)} is not one of {', '.join(RUN_STATUSES)}.")


def _no_run(run_id: str) -> web.HTTPError:
    return web.HTTPError(404, f"No run {shown(run_id)} in this database.")


def _instant(name: str, raw: str) -> float | None:
    """``?after=`` / ``?before=``: an ISO 8601 time (``Z`` or an offset), or a 400."""
    try:
        return from_iso(raw)
    except ValueError:
        raise web.HTTPError(400, f"{name}: {shown(raw)} is not an ISO 8601 time.") from None


class RunsHandler(_Base):
    """``GET /thodare/api/runs?status=&workflow=&after=&before=&limit=&kernel=``: recent
    runs, newest first, as small rows (no input, outputs or steps; forks and children
    marked), created ``after`` <= t < ``before`` (ISO 8601)."""

    @web.authenticated
    async def get(self) -> None:
        raw_status = self.get_query_argument("status", "")
        status = _run_status(raw_status) if raw_status else None
        raw = self.get_query_argument("limit", "50")
        if not _LIMIT.fullmatch(raw) or not 1 <= int(raw) <= MAX_LIMIT:
            why = f"limit: {shown(raw)} is not a whole number from 1 to {MAX_LIMIT}."
            raise web.HTTPError(400, why)
        workflow = self.get_query_argument("workflow", "") or None
        if workflow is not None and (len(workflow) > 256 or _CONTROL.search(workflow)):
            raise web.HTTPError(400, f"workflow: {shown(workflow)} cannot be a workflow name.")
        after = _instant("after", self.get_query_argument("after", ""))
        before = _instant("before", self.get_query_argument("before", ""))
        out = await self.call(self.runs.recent, status, int(raw), workflow, after, before)
        self.finish(json.dumps(out))


class InfoHandler(_Base):
    """``GET /thodare/api/info?kernel=``: the database shown (its URL with the password
    masked, backend, namespace, schema, runs by status, live workers) and whose it is:
    ``source`` ``kernel`` (the kernel told it) or ``server`` (the server's own)."""

    @web.authenticated
    async def get(self) -> None:
        runs, source = self.source
        about = await self.call(runs.info)
        self.finish(json.dumps({**about, "source": source}))


class EventsHandler(_Base):
    """``GET /thodare/api/events?kernel=``: server-sent events, one ``change`` (data: a
    version number) when the database changed, at most one per :data:`EVENT_GAP_S`;
    a comment every :data:`KEEPALIVE_S` keeps proxies from closing the stream."""

    @web.authenticated
    async def get(self) -> None:
        runs = self.runs
        watcher = await self.call(lambda: runs.watcher)
        changed, unsubscribe = watcher.subscribe(asyncio.get_running_loop())
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.set_header("X-Accel-Buffering", "no")
        try:
            self.write(f"retry: 2000\nevent: ready\ndata: {watcher.version}\n\n")
            await self.flush()
            while not self.request.connection.stream.closed():  # type: ignore[union-attr]
                try:
                    await asyncio.wait_for(changed.wait(), KEEPALIVE_S)
                except TimeoutError:
                    self.write(": keepalive\n\n")
                else:
                    changed.clear()
                    self.write(f"event: change\ndata: {watcher.version}\n\n")
                await self.flush()
                await asyncio.sleep(EVENT_GAP_S)
        except StreamClosedError:
            pass
        finally:
            unsubscribe()


class RunHandler(_Base):
    """``GET /thodare/api/runs/{id}``: one run with its steps."""

    @web.authenticated
    async def get(self, run_id: str) -> None:
        self.finish(json.dumps(await self.call(self.runs.describe, run_id_of(run_id))))


class LogsHandler(_Base):
    """``GET /thodare/api/runs/{id}/logs?block=``: what the run's steps (or one block)
    printed or logged, line by line: ``{at, stream, block_id, attempt, text}``, masked."""

    @web.authenticated
    async def get(self, run_id: str) -> None:
        block = self.get_query_argument("block", "") or None
        if block is not None and len(block) > MAX_BLOCK_ID:
            raise web.HTTPError(400, f"block: {shown(block)} is longer than a block id can be.")
        lines = await self.call(self.runs.logs, run_id_of(run_id), block)
        self.finish(json.dumps(lines))


class CancelHandler(_Base):
    """``POST /thodare/api/runs/{id}/cancel``: cancel a run (also a waiting one)."""

    @web.authenticated
    async def post(self, run_id: str) -> None:
        self.finish(json.dumps(await self.call(self.runs.cancel, run_id_of(run_id))))


class DagHandler(_Base):
    """``GET /thodare/api/runs/{id}/dag.svg``: the run's DAG coloured by step status."""

    @web.authenticated
    async def get(self, run_id: str) -> None:
        svg = await self.call(self.runs.dag_svg, run_id_of(run_id))
        self.finish(svg, set_content_type="image/svg+xml; charset=UTF-8")


class ArtifactHandler(_Base):
    """``GET /thodare/api/runs/{id}/artifacts/{artifact}``: a table, file or big output of a run.

    Only an artifact one of the run's step rows references (else 404). A file is
    sent as stored with its media type, always as an attachment named as stored;
    a table as CSV (``?format=csv``, the default) or Parquet (``?format=parquet``);
    a big JSON output as JSON.
    """

    @web.authenticated
    async def get(self, run_id: str, artifact: str) -> None:
        run_id = run_id_of(run_id)
        artifact_id = artifact_id_of(artifact)
        raw = self.get_query_argument("format", "")
        fmt: Format | None = next((f for f in FORMATS if f == raw), None)
        if raw and fmt is None:
            raise web.HTTPError(400, f"format: {shown(raw)} is not one of {', '.join(FORMATS)}.")
        if artifact_id is None:
            raise web.HTTPError(404, f"Run {shown(run_id)} has no artifact {shown(artifact)}.")
        try:
            found = await self.call(self.runs.artifact, run_id, artifact_id)
            out = await self.call(self.runs.download, found, fmt)
        except NotInRun as e:
            raise web.HTTPError(404, str(e)) from None
        except NotServed as e:
            raise web.HTTPError(e.status, str(e)) from None
        self.set_header("Content-Type", out.media_type)
        self.set_header("Content-Disposition", out.disposition)
        self.set_header("Content-Length", str(len(out.data)))
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Cache-Control", "private, no-store")
        for chunk in out.chunks():
            self.write(chunk)
            await self.flush()
        self.finish(set_content_type=out.media_type)


class WorkersHandler(_Base):
    """``GET /thodare/api/workers``: live workers, their connector types and the runs held."""

    @web.authenticated
    async def get(self) -> None:
        self.finish(json.dumps(await self.call(self.runs.workers)))


class SignalsHandler(_Base):
    """``POST /thodare/api/signals`` with ``{event, payload, correlation_key?}``.

    The body is at most :data:`MAX_SIGNAL_BODY` bytes (else 413), nested at most
    :data:`MAX_SIGNAL_DEPTH` deep; ``event`` and ``correlation_key`` at most
    :data:`MAX_KEY_CHARS` characters, without control characters.
    """

    @web.authenticated
    async def post(self) -> None:
        data = self.body(MAX_SIGNAL_BODY)
        event, key = data.get("event"), data.get("correlation_key")
        if not isinstance(event, str) or not event.strip():
            raise web.HTTPError(400, "event: required, a non-empty string.")
        if key is not None and not isinstance(key, str):
            raise web.HTTPError(400, "correlation_key: must be a string or null.")
        for name, value in (("event", event), ("correlation_key", key)):
            if value is not None and len(value) > MAX_KEY_CHARS:
                why = f"{name}: at most {MAX_KEY_CHARS} characters (got {len(value)})."
                raise web.HTTPError(400, why)
            if value is not None and _CONTROL.search(value):
                raise web.HTTPError(400, f"{name}: {shown(value)} holds a control character.")
        unknown = sorted(set(data) - {"event", "payload", "correlation_key"})
        if unknown:
            name = unknown[0] if len(unknown[0]) <= 64 else shown(unknown[0])
            raise web.HTTPError(
                400, f"{name}: unknown field (expected event, payload, correlation_key)."
            )
        out = await self.call(self.runs.signal, event, data.get("payload"), key)
        self.finish(json.dumps(out))


def _fields(data: dict[str, Any], allowed: tuple[str, ...]) -> None:
    """400 for a field of ``data`` not in ``allowed``."""
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        name = unknown[0] if len(unknown[0]) <= 64 else shown(unknown[0])
        raise web.HTTPError(400, f"{name}: unknown field (expected {', '.join(allowed)}).")


def _text(data: dict[str, Any], name: str, limit: int, *, required: bool = False) -> str | None:
    """``data[name]``: a string of at most ``limit`` characters without control characters."""
    value = data.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value):
        must = "required, a non-empty string" if required else "must be a string or null"
        raise web.HTTPError(400, f"{name}: {must}.")
    if len(value) > limit:
        raise web.HTTPError(400, f"{name}: at most {limit} characters (got {len(value)}).")
    if _CONTROL.search(value) and name != "comment":
        raise web.HTTPError(400, f"{name}: {shown(value)} holds a control character.")
    return value


class _StepAction(_Base):
    """Shared by the actions on one waiting step: its checks and 409 when not waiting."""

    async def act(self, fn: Callable[..., dict[str, Any]], *args: Any) -> None:
        try:
            self.finish(json.dumps(await self.call(fn, *args)))
        except NotWaiting as e:
            raise web.HTTPError(409, str(e)) from None

    def user(self) -> str:
        """The Jupyter user making the request, by name (``current_user.name``; JupyterHub's
        user name), else its username (the page's ``api/me`` says the same)."""
        user = self.current_user
        return str(getattr(user, "name", None) or getattr(user, "username", None) or user)


class ApproveHandler(_StepAction):
    """``POST /thodare/api/runs/{id}/approve`` with ``{block, approved, comment?}``: answer
    a waiting ``human_approval`` step, recorded as the Jupyter user; ``{signal_id, woke,
    by, approved}``. 409 when the step is not waiting for an approval."""

    @web.authenticated
    async def post(self, run_id: str) -> None:
        data = self.body(MAX_SIGNAL_BODY)
        _fields(data, ("block", "approved", "comment"))
        block = _text(data, "block", MAX_BLOCK_ID, required=True)
        if not isinstance(data.get("approved"), bool):
            raise web.HTTPError(400, "approved: required, true or false.")
        comment = _text(data, "comment", MAX_SIGNAL_BODY)
        await self.act(self.runs.approve, run_id_of(run_id), block, data["approved"],
                       comment or None, self.user())  # fmt: skip


class EventHandler(_StepAction):
    """``POST /thodare/api/runs/{id}/event`` with ``{block, payload?, correlation_key?}``:
    send the event a waiting ``wait_for_event`` step waits for, with the key given (or,
    when the body has none, the key the step resolved); ``{signal_id, woke, event,
    correlation_key, message}``. 409 when the step is not waiting for an event."""

    @web.authenticated
    async def post(self, run_id: str) -> None:
        data = self.body(MAX_SIGNAL_BODY)
        _fields(data, ("block", "payload", "correlation_key"))
        block = _text(data, "block", MAX_BLOCK_ID, required=True)
        key = _text(data, "correlation_key", MAX_KEY_CHARS)
        await self.act(self.runs.send_event, run_id_of(run_id), block, data.get("payload"),
                       key, "correlation_key" in data)  # fmt: skip


RUN_ID = r"(?P<run_id>[^/]+)"
ROUTES: list[tuple[str, type[APIHandler]]] = [
    ("info", InfoHandler),
    ("events", EventsHandler),
    ("runs", RunsHandler),
    (f"runs/{RUN_ID}", RunHandler),
    (f"runs/{RUN_ID}/cancel", CancelHandler),
    (f"runs/{RUN_ID}/logs", LogsHandler),
    (f"runs/{RUN_ID}/dag.svg", DagHandler),
    (f"runs/{RUN_ID}/artifacts/(?P<artifact>[^/]+)", ArtifactHandler),
    ("signals", SignalsHandler),
    ("workers", WorkersHandler),
    (f"runs/{RUN_ID}/approve", ApproveHandler),
    (f"runs/{RUN_ID}/event", EventHandler),
]
"""Route patterns under ``{base_url}thodare/api/``."""
