"""Tornado handlers of ``/thodare/api/…``: JSON in and out, blocking work off the event loop."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, TypeVar

from jupyter_server.base.handlers import APIHandler
from tornado import web

from ..errors import BackendUnavailable
from .runs import RUN_STATUSES, RunNotFound, Runs

T = TypeVar("T")
MAX_LIMIT = 1000


class _Base(APIHandler):
    """Shared: the :class:`Runs` backend and 404 for unknown runs."""

    @property
    def runs(self) -> Runs:
        runs: Runs = self.settings["thodare_runs"]
        return runs

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking database call in a thread; an unknown run id is a 404."""
        try:
            return await asyncio.to_thread(fn, *args)
        except RunNotFound as e:
            raise web.HTTPError(404, f"No run {e.args[0]!r} in this database.") from None
        except BackendUnavailable as e:
            raise web.HTTPError(503, str(e)) from None

    def body(self) -> dict[str, Any]:
        """The JSON object sent, or a 400 saying what is wrong with it."""
        try:
            data = json.loads(self.request.body or b"null")
        except ValueError as e:
            raise web.HTTPError(400, f"body: not JSON ({e}).") from None
        if not isinstance(data, dict):
            raise web.HTTPError(400, "body: expected a JSON object.")
        return data


class RunsHandler(_Base):
    """``GET /thodare/api/runs?status=&limit=``: recent runs, newest first."""

    @web.authenticated
    async def get(self) -> None:
        status = self.get_query_argument("status", "") or None
        if status is not None and status not in RUN_STATUSES:
            raise web.HTTPError(400, f"status: {status!r} is not one of {', '.join(RUN_STATUSES)}.")
        raw = self.get_query_argument("limit", "50")
        if not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
            raise web.HTTPError(400, f"limit: {raw!r} is not a whole number from 1 to {MAX_LIMIT}.")
        self.finish(json.dumps(await self.call(self.runs.list, status, int(raw))))


class RunHandler(_Base):
    """``GET /thodare/api/runs/{id}``: one run with its steps."""

    @web.authenticated
    async def get(self, run_id: str) -> None:
        self.finish(json.dumps(await self.call(self.runs.describe, run_id)))


class CancelHandler(_Base):
    """``POST /thodare/api/runs/{id}/cancel``: cancel a run (also a waiting one)."""

    @web.authenticated
    async def post(self, run_id: str) -> None:
        self.finish(json.dumps(await self.call(self.runs.cancel, run_id)))


class DagHandler(_Base):
    """``GET /thodare/api/runs/{id}/dag.svg``: the run's DAG coloured by step status."""

    @web.authenticated
    async def get(self, run_id: str) -> None:
        svg = await self.call(self.runs.dag_svg, run_id)
        self.finish(svg, set_content_type="image/svg+xml; charset=UTF-8")


class SignalsHandler(_Base):
    """``POST /thodare/api/signals`` with ``{event, payload, correlation_key?}``."""

    @web.authenticated
    async def post(self) -> None:
        data = self.body()
        event, key = data.get("event"), data.get("correlation_key")
        if not isinstance(event, str) or not event.strip():
            raise web.HTTPError(400, "event: required, a non-empty string.")
        if key is not None and not isinstance(key, str):
            raise web.HTTPError(400, "correlation_key: must be a string or null.")
        unknown = sorted(set(data) - {"event", "payload", "correlation_key"})
        if unknown:
            raise web.HTTPError(
                400, f"{unknown[0]}: unknown field (expected event, payload, correlation_key)."
            )
        out = await self.call(self.runs.signal, event, data.get("payload"), key)
        self.finish(json.dumps(out))


RUN_ID = r"(?P<run_id>[^/]+)"
ROUTES: list[tuple[str, type[APIHandler]]] = [
    ("runs", RunsHandler),
    (f"runs/{RUN_ID}", RunHandler),
    (f"runs/{RUN_ID}/cancel", CancelHandler),
    (f"runs/{RUN_ID}/dag.svg", DagHandler),
    ("signals", SignalsHandler),
]
"""Route patterns under ``{base_url}thodare/api/``."""
