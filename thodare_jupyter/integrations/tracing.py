"""``with_tracing(kit_or_store, TracingHooks(...))``: your hooks at the runtime's boundaries.

The store is wrapped in a proxy. The hooked operations call the real store,
then your hook, then return the store's result; everything else passes
through unchanged. Hooks name no tracing SDK (see :mod:`.otel` for one).

Contract:
    * A hook runs after its operation succeeded and before its result is
      returned; an ``async def`` hook is awaited first (also from the
      worker's event loop thread, on a helper thread).
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
Every ``on_step_start`` gets one ``on_step_end`` in the same walk.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast, overload

from .._aio import run_sync
from ..durable.handle import RunDescription, describe_run
from ..durable.store import RunRow, Store
from ..errors import ThodareError
from ..kit import Wfkit

log = logging.getLogger("thodare.tracing")
_Ret = Awaitable[None] | None


@dataclass(frozen=True)
class RunCreateParams:
    """What a run creation asked for (``on_run_create``); ``created`` is False on a key hit."""

    workflow: str | None
    input: Any
    idempotency_key: str | None
    deadline_at: float | None
    created: bool


@dataclass(frozen=True)
class RunStarted:
    """A worker claimed a run (``on_run_start``).

    ``previous_status`` tells why: ``pending`` (new, or handed back at a shutdown),
    ``waiting`` (its timer or event came), ``running`` (taken over from a silent worker).
    """

    run_id: str
    workflow: str | None
    previous_status: str
    worker: str


@dataclass(frozen=True)
class StepStarted:
    """An attempt of a step began (``on_step_start``); a wait step starts at attempt 1."""

    run_id: str
    block_id: str
    type: str
    attempt: int


@dataclass(frozen=True)
class StepEnded:
    """A step ended in this walk (``on_step_end``).

    ``status``: ``completed``, ``failed``, ``skipped``, ``waiting`` (its run parks),
    or ``interrupted`` (the walk stopped while it ran: cancel, deadline, shutdown;
    it runs again when the run resumes). ``duration_s`` is None without a start.
    """

    run_id: str
    block_id: str
    type: str
    status: str
    attempt: int
    error: str | None = None
    duration_s: float | None = None
    wake_at: float | None = None


@dataclass(frozen=True)
class RunParked:
    """A walk stopped and the run resumes later (``on_run_park``).

    ``reason``: ``waiting`` (a timer or event; ``wake_at`` is the timer, epoch s),
    ``released`` (the worker stopped) or ``lease_lost`` (another worker took it).
    """

    run_id: str
    workflow: str | None
    reason: str
    wake_at: float | None
    duration_s: float | None


@dataclass(frozen=True)
class RunEnded:
    """A run ended while walked here (``on_run_end``): completed, failed or canceled."""

    run_id: str
    workflow: str | None
    status: str
    error: str | None
    failed_block: str | None
    duration_s: float | None


@dataclass(kw_only=True)
class TracingHooks:
    """Optional callables, sync or ``async def``, fired at the runtime's boundaries."""

    on_run_create: Callable[[RunCreateParams, RunDescription], _Ret] | None = None
    """After a run was created (or found by its key); read at once, a worker may have it."""
    on_run_get: Callable[[RunDescription | None], _Ret] | None = None
    """After a run was read (handles poll this); None when there is no such run."""
    on_run_cancel: Callable[[RunDescription], _Ret] | None = None
    """After a cancel that took effect (not for a run that had already ended)."""
    on_run_start: Callable[[RunStarted], _Ret] | None = None
    on_step_start: Callable[[StepStarted], _Ret] | None = None
    on_step_end: Callable[[StepEnded], _Ret] | None = None
    on_run_park: Callable[[RunParked], _Ret] | None = None
    on_run_end: Callable[[RunEnded], _Ret] | None = None
    on_error: Callable[[Exception, str], _Ret] | None = None
    """Gets what a hook raised and the hook's name (default: a logged warning)."""


async def _await(value: Awaitable[None]) -> None:
    await value


def _call(fn: Callable[..., _Ret], *args: Any) -> None:
    res = fn(*args)
    if inspect.isawaitable(res):
        run_sync(_await(res))


@dataclass
class _Open:
    step: StepStarted
    t0: float
    wake_at: float | None = None
    waiting: bool = False


class TracedStore:
    """A :class:`~thodare_jupyter.durable.store.Store` proxy firing :class:`TracingHooks`."""

    def __init__(self, store: Store, hooks: TracingHooks) -> None:
        self.wrapped = store
        """The store underneath."""
        self.hooks = hooks
        self._lock = threading.Lock()
        self._walks: dict[str, tuple[RunStarted, float]] = {}
        self._open: dict[tuple[str, str], _Open] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)

    def __repr__(self) -> str:
        return f"<TracedStore {self.wrapped!r}>"

    def _fire(self, name: str, *args: Any) -> None:
        hook = getattr(self.hooks, name)
        if hook is None:
            return
        try:
            _call(hook, *args)
        except Exception as exc:
            try:
                if self.hooks.on_error is not None:
                    _call(self.hooks.on_error, exc, name)
                else:
                    log.warning("tracing hook %s raised %r (ignored)", name, exc)
            except Exception:
                pass  # tracing never breaks the runtime

    # ── operations of handles and the kit ──

    def create_run(
        self, workflow_name: str | None, workflow_json: str, input: Any, **kw: Any
    ) -> tuple[str, bool]:
        """``Store.create_run``, then ``on_run_create``."""
        run_id, created = self.wrapped.create_run(workflow_name, workflow_json, input, **kw)
        if self.hooks.on_run_create is not None:
            row = self.wrapped.get_run(run_id)
            if row is not None:
                params = RunCreateParams(
                    workflow_name, input, kw.get("idempotency_key"), kw.get("deadline_at"), created
                )
                steps = [] if created else self.wrapped.get_steps(run_id)
                self._fire("on_run_create", params, describe_run(row, steps))
        return run_id, created

    def get_run(self, run_id: str) -> RunRow | None:
        """``Store.get_run``, then ``on_run_get``."""
        row = self.wrapped.get_run(run_id)
        if self.hooks.on_run_get is not None:
            desc = describe_run(row, self.wrapped.get_steps(run_id)) if row else None
            self._fire("on_run_get", desc)
        return row

    def cancel_run(self, run_id: str) -> bool:
        """``Store.cancel_run``; if it took effect, the walk here ends, then ``on_run_cancel``."""
        done = self.wrapped.cancel_run(run_id)
        if done:
            self._close_walk(run_id, "canceled")
            if self.hooks.on_run_cancel is not None and (row := self.wrapped.get_run(run_id)):
                self._fire("on_run_cancel", describe_run(row, self.wrapped.get_steps(run_id)))
        return done

    # ── operations of the worker ──

    def claim(
        self, owner: str, limit: int, lease_s: float, types: Sequence[str]
    ) -> tuple[list[RunRow], float | None]:
        """``Store.claim``, then ``on_run_start`` for each run claimed."""
        rows, nxt = self.wrapped.claim(owner, limit, lease_s, types)
        for r in rows:
            info = RunStarted(r.id, r.workflow_name, r.status, owner)
            with self._lock:
                self._walks[r.id] = (info, time.monotonic())
            self._fire("on_run_start", info)
        return rows, nxt

    def step_started(self, run_id: str, owner: str, block_id: str, type_: str) -> int:
        """``Store.step_started``, then ``on_step_start``."""
        attempt = self.wrapped.step_started(run_id, owner, block_id, type_)
        self._start(StepStarted(run_id, block_id, type_, attempt))
        return attempt

    def step_waiting(
        self, run_id: str, owner: str, block_id: str, type_: str, **kw: Any
    ) -> float | None:
        """``Store.step_waiting``, then ``on_step_start`` (its end comes at the park or finish)."""
        wake_at = self.wrapped.step_waiting(run_id, owner, block_id, type_, **kw)
        self._start(StepStarted(run_id, block_id, type_, 1), wake_at=wake_at, waiting=True)
        return wake_at

    def step_finished(
        self, run_id: str, owner: str, block_id: str, type_: str, status: str, **kw: Any
    ) -> None:
        """``Store.step_finished``, then ``on_step_end``."""
        self.wrapped.step_finished(run_id, owner, block_id, type_, status, **kw)
        with self._lock:
            o = self._open.pop((run_id, block_id), None)
        attempt = kw.get("attempt") or (o.step.attempt if o else 0)
        took = time.monotonic() - o.t0 if o else None
        self._fire("on_step_end", StepEnded(run_id, block_id, type_, status, attempt,
                                            kw.get("error"), took))  # fmt: skip

    def finish_run(self, run_id: str, owner: str, status: str, **kw: Any) -> None:
        """``Store.finish_run``, then ``on_run_end``."""
        self.wrapped.finish_run(run_id, owner, status, **kw)
        self._close_walk(run_id, status, kw.get("error"), kw.get("failed_block"))

    def park_run(self, run_id: str, owner: str, wake_at: float | None) -> None:
        """``Store.park_run``, then ``on_step_end`` of its waits and ``on_run_park``."""
        self.wrapped.park_run(run_id, owner, wake_at)
        self._close_walk(run_id, "waiting", wake_at=wake_at)

    def release(self, owner: str) -> None:
        """``Store.release``, then ``on_run_park`` (reason ``released``) per walk here."""
        self.wrapped.release(owner)
        with self._lock:
            mine = [rid for rid, (info, _) in self._walks.items() if info.worker == owner]
        for run_id in mine:
            self._close_walk(run_id, "released")

    def heartbeat(
        self, owner: str, run_ids: Sequence[str], lease_s: float, types: Sequence[str] = ()
    ) -> set[str]:
        """``Store.heartbeat``; a walk whose lease is gone ends (canceled) or parks."""
        kept = self.wrapped.heartbeat(owner, run_ids, lease_s, types)
        with self._lock:
            lost = [rid for rid in run_ids if rid not in kept and rid in self._walks]
        for run_id in lost:
            wanted = self.hooks.on_run_end or self.hooks.on_run_park
            row = self.wrapped.get_run(run_id) if wanted else None
            self._close_walk(
                run_id, "canceled" if row and row.status == "canceled" else "lease_lost"
            )
        return kept

    # ── bookkeeping of walks ──

    def _start(
        self, step: StepStarted, *, wake_at: float | None = None, waiting: bool = False
    ) -> None:
        with self._lock:
            if step.run_id not in self._walks:
                return  # its walk ended here already (a cancel raced it): no start without an end
            self._open[(step.run_id, step.block_id)] = _Open(
                step, time.monotonic(), wake_at, waiting
            )
        self._fire("on_step_start", step)

    def _close_walk(self, run_id: str, status: str, error: str | None = None,
                    failed_block: str | None = None, wake_at: float | None = None,
                    ) -> None:  # fmt: skip
        now = time.monotonic()
        with self._lock:
            walk = self._walks.pop(run_id, None)
            steps = [self._open.pop(k) for k in list(self._open) if k[0] == run_id]
        for o in steps:
            s, end = o.step, "waiting" if o.waiting else "interrupted"
            self._fire("on_step_end", StepEnded(run_id, s.block_id, s.type, end, s.attempt,
                                                None, now - o.t0, o.wake_at))  # fmt: skip
        if walk is None:
            return  # not walked here (e.g. a cancel of a run parked or walked elsewhere)
        info, t0 = walk
        if status in ("completed", "failed", "canceled"):
            ended = RunEnded(run_id, info.workflow, status, error, failed_block, now - t0)
            self._fire("on_run_end", ended)
        else:
            self._fire("on_run_park", RunParked(run_id, info.workflow, status, wake_at, now - t0))


@overload
def with_tracing(target: Wfkit, hooks: TracingHooks) -> Wfkit: ...
@overload
def with_tracing(target: Store, hooks: TracingHooks) -> Store: ...
def with_tracing(target: Wfkit | Store, hooks: TracingHooks) -> Wfkit | Store:
    """Fire ``hooks`` at the runtime's boundaries; see the module docstring for the contract.

    Args:
        target: A kit (its store is wrapped for the kit, its handles and its
            worker; the same kit is returned) or a store (its wrapper is returned:
            a proxy, so ``isinstance(x, Store)`` is False on it).
        hooks: The callables to fire.

    Raises:
        ThodareError: The kit's worker is already running (it holds the bare store).
    """
    if isinstance(target, Wfkit):
        if target.worker.running:
            raise ThodareError(
                "with_tracing(kit, hooks): the kit's worker is already running and holds the "
                "untraced store. Call with_tracing before kit.start() (or `with kit:`)."
            )
        traced = cast(Store, TracedStore(target.store, hooks))
        target.store = target.worker.store = traced
        return target
    if isinstance(target, Store | TracedStore):
        return cast(Store, TracedStore(target, hooks))
    raise ThodareError(
        f"with_tracing() takes a Wfkit or a Store, not {type(target).__name__}. "
        "Pass the kit from create_wfkit()."
    )
