"""The runtime's lifecycle events, and the hub that hands them to listeners.

The kit, its handles, the schedule dispatcher and the worker call a kit's one
:class:`Lifecycle` at the boundaries of runs and steps; listeners
(``with_tracing``, the OpenTelemetry adapter, your own) subscribe to it. No
store is wrapped: a run created by a schedule or a webhook fires like any other.

A listener is any object; the hub reads its ``on_*`` attributes once, when it
subscribes (an attribute that is missing or None is not subscribed):

* ``on_run_create(RunCreateParams)``: a run was created or found by its
  idempotency key (``kit.run``, ``kit.run_spec``, ``kit.fork``, a webhook, a
  schedule's tick); fired after the commit, and before the ``on_run_start``
  of that run here (a worker that claims a new run before its creator has
  announced it announces it first, or holds that run's walk, up to 5 s and
  without holding its other runs, until the creator's handlers return).
* ``on_run_get(RunRead)``: a handle read a run (``None`` row: there is none).
* ``on_run_cancel(RunCancel)``: a cancel took effect (after the walk here ended).
* ``on_run_start(RunStarted)``, ``on_step_start(StepStarted)``,
  ``on_step_end(StepEnded)``, ``on_run_park(RunParked)``,
  ``on_run_end(RunEnded)``: a walk of a run by a worker of this kit.
* ``on_error(exc, event_name)``: what one of its handlers raised.

Contract:
    * Walks: ``on_run_start`` when the worker claims a run, then step events,
      then exactly one of ``on_run_end`` (completed, failed, canceled) or
      ``on_run_park`` (the walk stops; the run resumes later). Every
      ``on_step_start`` gets one ``on_step_end`` in the same walk (a retried
      attempt starts again without an end of the attempt before). A walk
      already under way when a listener subscribes is not reported at all.
    * Step and run events fire after the store write that recorded them.
    * An ``async def`` handler is awaited before the runtime goes on (on a
      helper thread when called from a running event loop).
    * A handler that raises never breaks the run: the exception goes to the
      listener's ``on_error`` (else a warning on the ``thodare.lifecycle``
      logger); an ``on_error`` that raises is ignored.
    * With no listener (or none for an event), emitting costs one check: no
      query, no event object.
    * Handlers run on the emitting thread (the worker's event loop for walk
      events: every run of that worker waits while they run; keep them quick).
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._aio import run_sync
from ..wire import TERMINAL_STATUSES

if TYPE_CHECKING:
    from .records import RunRow, StepWrite

log = logging.getLogger("thodare.lifecycle")

EVENTS = (
    "on_run_create", "on_run_get", "on_run_cancel", "on_run_start", "on_step_start",
    "on_step_end", "on_run_park", "on_run_end",
)  # fmt: skip
"""The events a listener may handle, by handler name."""
WALK_EVENTS = EVENTS[3:]
"""The events of a worker's walks (the hub keeps track of walks while one is subscribed)."""


@dataclass(frozen=True)
class RunCreateParams:
    """What a run creation asked for (``on_run_create``); ``created`` is False on a key hit."""

    workflow: str | None
    input: Any
    idempotency_key: str | None
    deadline_at: float | None
    created: bool
    run_id: str = ""
    """The run's id (new, or the one the idempotency key found)."""


@dataclass(frozen=True)
class RunRead:
    """A handle read a run (``on_run_get``); ``row`` is None when there is no such run."""

    run_id: str
    row: RunRow | None


@dataclass(frozen=True)
class RunCancel:
    """A cancel took effect (``on_run_cancel``); not fired for a run that had already ended."""

    run_id: str


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
    ``released`` (the worker stopped and handed it back), ``lease_lost`` (another
    worker took it) or ``aborted`` (the database was unreachable or the walker
    crashed; a worker takes it over when its lease ends).
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


@dataclass
class _Create:
    """A run about to be inserted: its ``on_run_create``, announced once, by its creator
    after the commit or by the worker that claims it first."""

    params: RunCreateParams
    taken: bool = False
    fired: threading.Event = field(default_factory=threading.Event)


CREATE_WAIT_S = 5.0
"""How long a worker's claim waits for another thread's ``on_run_create`` handlers."""
PENDING_CREATES = 4096
"""Announcements kept for inserts that never committed (the oldest go first)."""


@dataclass
class _Open:
    step: StepStarted
    t0: float
    wake_at: float | None = None
    waiting: bool = False


@dataclass
class _Walk:
    started: RunStarted
    t0: float
    open: dict[str, _Open] = field(default_factory=dict)


async def _await(value: Awaitable[Any]) -> None:
    await value


def _call(fn: Callable[..., Any], *args: Any) -> None:
    res = fn(*args)
    if inspect.isawaitable(res):
        run_sync(_await(res))


_Handlers = tuple[tuple[Any, Callable[..., Any]], ...]


class Lifecycle:
    """A kit's lifecycle hub: the runtime emits, subscribed listeners handle."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._listeners: tuple[Any, ...] = ()
        self._handlers: dict[str, _Handlers] = {}
        self._walks: dict[str, _Walk] = {}
        self._creating: dict[str, _Create] = {}
        self.walking = False
        """True while a listener of a walk event is subscribed (walks are kept track of)."""

    def __repr__(self) -> str:
        return f"<Lifecycle {len(self._listeners)} listener(s)>"

    def subscribe(self, listener: Any) -> Callable[[], None]:
        """Hand events to ``listener`` (its ``on_*`` attributes, read now); returns
        the call that unsubscribes it (idempotent)."""
        if not any(getattr(listener, n, None) is not None for n in EVENTS):
            raise TypeError(
                f"Lifecycle.subscribe: {listener!r} handles no event; give it one of "
                f"{', '.join(EVENTS)}."
            )
        with self._lock:
            self._listeners = (*self._listeners, listener)
            self._rebuild()

        def unsubscribe() -> None:
            with self._lock:
                self._listeners = tuple(x for x in self._listeners if x is not listener)
                self._rebuild()

        return unsubscribe

    def wants(self, event: str) -> bool:
        """Whether a listener handles ``event`` (``"on_run_get"``, …)."""
        return event in self._handlers

    def _rebuild(self) -> None:  # under the lock
        handlers: dict[str, _Handlers] = {}
        for name in EVENTS:
            got = tuple(
                (x, fn) for x in self._listeners if (fn := getattr(x, name, None)) is not None
            )
            if got:
                handlers[name] = got
        self._handlers = handlers
        self.walking = any(n in handlers for n in WALK_EVENTS)
        if not self.walking:
            self._walks.clear()

    def _fire(self, name: str, event: Any) -> None:
        for listener, fn in self._handlers.get(name, ()):
            try:
                _call(fn, event)
            except Exception as exc:
                try:
                    on_error = getattr(listener, "on_error", None)
                    if on_error is not None:
                        _call(on_error, exc, name)
                    else:
                        log.warning("lifecycle listener %r: %s raised %r (ignored)",
                                    listener, name, exc)  # fmt: skip
                except Exception:
                    pass  # a listener never breaks the runtime

    # ── the kit, its handles, the schedule dispatcher ──

    def run_creating(
        self,
        run_id: str,
        workflow: str | None,
        input: Any,
        idempotency_key: str | None = None,
        deadline_at: float | None = None,
    ) -> None:
        """Run ``run_id`` is about to be inserted (call before the commit): its
        ``on_run_create`` then comes before its ``on_run_start`` here."""
        if "on_run_create" in self._handlers:
            params = RunCreateParams(workflow, input, idempotency_key, deadline_at, True, run_id)
            with self._lock:
                self._creating[run_id] = _Create(params)
                if len(self._creating) > PENDING_CREATES:
                    del self._creating[next(iter(self._creating))]

    def run_created(
        self,
        run_id: str,
        workflow: str | None,
        input: Any,
        idempotency_key: str | None = None,
        deadline_at: float | None = None,
        created: bool = True,
        asked: str | None = None,
    ) -> None:
        """A run was created (or found by its key) and committed; ``asked``: the id
        announced by :meth:`run_creating` when the key found another run."""
        if "on_run_create" not in self._handlers:
            return
        with self._lock:
            pending = self._creating.get(asked or run_id)
            if pending is not None and pending.taken:  # the claiming worker announced it
                del self._creating[asked or run_id]
                return
            if pending is not None:
                pending.taken = True
        try:
            params = RunCreateParams(workflow, input, idempotency_key, deadline_at, created, run_id)
            self._fire("on_run_create", params)
        finally:
            if pending is not None:
                with self._lock:
                    self._creating.pop(asked or run_id, None)
                pending.fired.set()

    def create_to_wait_for(self, run_id: str) -> threading.Event | None:
        """Before a claimed run starts (its ``on_run_create`` comes first): fires it here
        when its creator has not yet (the claim came first; None), else the event to wait
        for (at most :data:`CREATE_WAIT_S`, off the worker's loop) while another thread
        fires it; None when there is nothing to wait for."""
        if not self.walking or not self._creating:
            return None
        with self._lock:
            pending = self._creating.get(run_id)
            if pending is None:
                return None
            mine = not pending.taken
            pending.taken = True
        if not mine:
            return pending.fired
        self._fire("on_run_create", pending.params)
        pending.fired.set()
        return None

    def run_read(self, run_id: str, row: RunRow | None) -> None:
        """A handle read a run."""
        if "on_run_get" in self._handlers:
            self._fire("on_run_get", RunRead(run_id, row))

    def run_canceled(self, run_id: str) -> None:
        """A cancel took effect: a walk of the run here ends (canceled), then ``on_run_cancel``."""
        if self.walking:
            self._close(run_id, "canceled")
        if "on_run_cancel" in self._handlers:
            self._fire("on_run_cancel", RunCancel(run_id))

    # ── the worker ──

    def run_started(self, row: RunRow, worker: str) -> None:
        """``worker`` claimed ``row`` (``claimed_from``: its status before the claim)."""
        if not self.walking:
            return
        info = RunStarted(row.id, row.workflow_name, row.claimed_from or row.status, worker)
        with self._lock:
            self._walks[row.id] = _Walk(info, time.monotonic())
        self._fire("on_run_start", info)

    def steps_written(
        self, run_id: str, steps: Sequence[StepWrite], written: Mapping[str, int] | Any = None
    ) -> None:
        """Step rows were written: a start marker (``running``; its attempt in
        ``written``, what ``RunStore.write_steps_in`` returned) starts a step, any other
        status ends one."""
        if not self.walking or not steps:
            return
        attempts = written if isinstance(written, Mapping) else {}
        for w in steps:
            if w.status == "running":
                step = StepStarted(run_id, w.block_id, w.type, attempts.get(w.block_id, w.attempt))
                self._start(step)
            else:
                self._end(run_id, w.block_id, w.type, w.status, w.attempt, w.error)

    def step_waiting(self, run_id: str, block_id: str, type_: str, wake_at: float | None) -> None:
        """A wait step was recorded as waiting: it starts (its end comes with the walk's)."""
        if self.walking:
            self._start(StepStarted(run_id, block_id, type_, 1), wake_at=wake_at, waiting=True)

    def run_ended(
        self, run_id: str, status: str, error: str | None = None, failed_block: str | None = None
    ) -> None:
        """The worker recorded the run's end (completed or failed)."""
        if self.walking:
            self._close(run_id, status, error, failed_block)

    def run_parked(self, run_id: str, wake_at: float | None) -> None:
        """The worker parked the run until ``wake_at`` or a signal."""
        if self.walking:
            self._close(run_id, "waiting", wake_at=wake_at)

    def walk_stopped(self, run_id: str, reason: str) -> None:
        """A walk stopped without an end or a park (``reason``: see :class:`RunParked`)."""
        if self.walking:
            self._close(run_id, reason)

    def released(self, worker: str) -> None:
        """``worker`` handed its runs back (it stopped): its walks park, ``released``."""
        if not self.walking:
            return
        with self._lock:
            mine = [rid for rid, w in self._walks.items() if w.started.worker == worker]
        for run_id in mine:
            self._close(run_id, "released")

    def lease_lost(self, run_id: str, get_run: Callable[[str], RunRow | None]) -> None:
        """The worker no longer holds ``run_id``: its walk ends (canceled elsewhere)
        or parks (``lease_lost``). ``get_run`` is asked only if a walk here is open
        (a blocking read: call this off the event loop)."""
        if not self.walking or run_id not in self._walks:
            return
        try:
            row = get_run(run_id)
        except Exception:  # the database is away: it was not a cancel we can see
            row = None
        self._close(run_id, "canceled" if row and row.status == "canceled" else "lease_lost")

    # ── bookkeeping of walks ──

    def _start(
        self, step: StepStarted, *, wake_at: float | None = None, waiting: bool = False
    ) -> None:
        with self._lock:
            walk = self._walks.get(step.run_id)
            if walk is None:
                return  # not walked here (ended already, or begun before the subscription)
            walk.open[step.block_id] = _Open(step, time.monotonic(), wake_at, waiting)
        self._fire("on_step_start", step)

    def _end(self, run_id: str, block_id: str, type_: str, status: str, attempt: int,
             error: str | None) -> None:  # fmt: skip
        with self._lock:
            walk = self._walks.get(run_id)
            if walk is None:
                return
            o = walk.open.pop(block_id, None)
        attempt = attempt or (o.step.attempt if o else 0)
        took = time.monotonic() - o.t0 if o else None
        self._fire("on_step_end", StepEnded(run_id, block_id, type_, status, attempt, error, took))

    def _close(self, run_id: str, status: str, error: str | None = None,
               failed_block: str | None = None, wake_at: float | None = None,
               ) -> None:  # fmt: skip
        now = time.monotonic()
        with self._lock:
            walk = self._walks.pop(run_id, None)
        if walk is None:
            return  # not walked here (e.g. a cancel of a run parked or walked elsewhere)
        for o in walk.open.values():
            s, end = o.step, "waiting" if o.waiting else "interrupted"
            self._fire("on_step_end", StepEnded(run_id, s.block_id, s.type, end, s.attempt,
                                                None, now - o.t0, o.wake_at))  # fmt: skip
        info, took = walk.started, now - walk.t0
        if status in TERMINAL_STATUSES:
            self._fire("on_run_end", RunEnded(run_id, info.workflow, status, error, failed_block,
                                              took))  # fmt: skip
        else:
            self._fire("on_run_park", RunParked(run_id, info.workflow, status, wake_at, took))
