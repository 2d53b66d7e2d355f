"""``with_tracing(kit, TracingHooks(...))``: your hooks at the runtime's boundaries.

The hooks subscribe to the kit's lifecycle events
(:mod:`thodare_jupyter.durable.lifecycle`): the kit, its handles, its schedule
dispatcher and its worker fire them, so runs created by ``kit.run``, a fork,
a webhook or a schedule are traced alike. Hooks name no tracing SDK (see
:mod:`.otel` for one).

Contract:
    * A hook runs after its operation succeeded (the store write that
      recorded it); an ``async def`` hook is awaited before the runtime goes
      on (from the worker's event loop thread, on a helper thread).
    * A hook that raises never breaks the operation or the run: the
      exception goes to ``on_error(exc, hook_name)`` (default: a warning on
      the ``thodare.tracing`` logger); an ``on_error`` that raises is ignored.
    * Hooks that are not set cost nothing: no extra database query.
    * Hooks run on the caller's thread; the worker's hooks hold up its event
      loop (every run of that worker) while they run: keep them quick.

Walks: the worker fires ``on_run_start`` when it claims a run, then step
hooks, then exactly one of ``on_run_end`` (completed, failed, canceled) or
``on_run_park`` (the walk stops, the run resumes later). A run that waits
for a day is walked several times, on any worker: one ``on_run_start`` each.
Every ``on_step_start`` gets one ``on_step_end`` in the same walk. Tracing a
started kit is fine: walks already under way are not reported.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..durable.handle import RunDescription, describe_run
from ..durable.lifecycle import (
    WALK_EVENTS,
    RunCancel,
    RunCreateParams,
    RunEnded,
    RunParked,
    RunRead,
    RunStarted,
    StepEnded,
    StepStarted,
)
from ..durable.store import Store
from ..errors import TracingTargetInvalid
from ..kit import Wfkit

__all__ = [
    "RunCreateParams",
    "RunEnded",
    "RunParked",
    "RunStarted",
    "StepEnded",
    "StepStarted",
    "TracingHooks",
    "with_tracing",
]

log = logging.getLogger("thodare.tracing")
_Ret = Awaitable[None] | None


@dataclass(kw_only=True)
class TracingHooks:
    """Optional callables, sync or ``async def``, fired at the runtime's boundaries."""

    on_run_create: Callable[[RunCreateParams, RunDescription], _Ret] | None = None
    """After a run was created (or found by its key), also by a schedule or a webhook;
    read at once, a worker may have it."""
    on_run_get: Callable[[RunDescription | None], _Ret] | None = None
    """After a handle read a run (handles poll this); None when there is no such run."""
    on_run_cancel: Callable[[RunDescription], _Ret] | None = None
    """After a cancel that took effect (not for a run that had already ended)."""
    on_run_start: Callable[[RunStarted], _Ret] | None = None
    on_step_start: Callable[[StepStarted], _Ret] | None = None
    on_step_end: Callable[[StepEnded], _Ret] | None = None
    on_run_park: Callable[[RunParked], _Ret] | None = None
    on_run_end: Callable[[RunEnded], _Ret] | None = None
    on_error: Callable[[Exception, str], _Ret] | None = None
    """Gets what a hook raised and the hook's name (default: a logged warning)."""


class _TracingListener:
    """A lifecycle listener calling :class:`TracingHooks`; only the hooks set are
    subscribed, so a hook left unset costs no query."""

    def __init__(self, hooks: TracingHooks, store: Store) -> None:
        self.hooks, self.store = hooks, store
        if hooks.on_run_create is not None:
            self.on_run_create = self._create
        if hooks.on_run_get is not None:
            self.on_run_get = self._get
        if hooks.on_run_cancel is not None:
            self.on_run_cancel = self._cancel
        for name in WALK_EVENTS:  # the same event objects: the hook itself listens
            if (hook := getattr(hooks, name)) is not None:
                setattr(self, name, hook)

    def __repr__(self) -> str:
        return f"<tracing {self.hooks!r}>"

    def _create(self, params: RunCreateParams) -> _Ret:
        assert self.hooks.on_run_create is not None
        row = self.store.runs.get_run(params.run_id)
        if row is None:
            return None
        steps = [] if params.created else self.store.runs.get_steps(params.run_id)
        return self.hooks.on_run_create(params, describe_run(row, steps))

    def _get(self, ev: RunRead) -> _Ret:
        assert self.hooks.on_run_get is not None
        desc = describe_run(ev.row, self.store.runs.get_steps(ev.run_id)) if ev.row else None
        return self.hooks.on_run_get(desc)

    def _cancel(self, ev: RunCancel) -> _Ret:
        assert self.hooks.on_run_cancel is not None
        row = self.store.runs.get_run(ev.run_id)
        if row is None:
            return None
        return self.hooks.on_run_cancel(describe_run(row, self.store.runs.get_steps(ev.run_id)))

    def on_error(self, exc: Exception, name: str) -> _Ret:
        if self.hooks.on_error is not None:
            return self.hooks.on_error(exc, name)
        log.warning("tracing hook %s raised %r (ignored)", name, exc)
        return None


def with_tracing(target: Wfkit, hooks: TracingHooks) -> Wfkit:
    """Fire ``hooks`` at the runtime's boundaries; see the module docstring for the contract.

    The hooks subscribe to ``kit.lifecycle`` (before or after ``kit.start()``);
    calling it again adds more hooks.

    Args:
        target: The kit (returned, for chaining).
        hooks: The callables to fire.

    Raises:
        TracingTargetInvalid: ``target`` is not a kit (a bare store has no
            lifecycle: trace the kit that holds it).
    """
    if not isinstance(target, Wfkit):
        raise TracingTargetInvalid(type(target).__name__)
    if any(getattr(hooks, n) is not None for n in ("on_run_create", "on_run_get",
                                                   "on_run_cancel", *WALK_EVENTS)):  # fmt: skip
        target.lifecycle.subscribe(_TracingListener(hooks, target.store))
    return target
