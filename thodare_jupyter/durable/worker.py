"""The durable worker: claims runs with leases and walks them, memoising every step.

Replay: a claimed run's completed steps come back from the database and are
not run again; a step that was in flight when a worker died runs again
(at-least-once) with the same ``ctx.idempotency_key`` and a higher
``ctx.attempt``. Waits park the run (no worker slot is held) until a timer
or a signal wakes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import socket
import sys
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy.engine import Connection

from ..artifacts import ArtifactStore
from ..connectors import Catalog
from ..errors import BackendUnavailable
from ..execution.walker import Plan
from ..loop_threads import LoopThreads, run_steps_on
from ..wire import SerializedWorkflow
from .lifecycle import CREATE_WAIT_S, Lifecycle
from .listener import PgListener
from .records import RunRow
from .run_execution import RunExecution
from .run_store import LeaseLost
from .schedules import Schedules
from .store import Store

log = logging.getLogger("thodare.worker")
_T = TypeVar("_T")


@dataclass(frozen=True)
class WorkerConfig:
    """Tuning knobs; tests shrink them so crash recovery takes seconds, not minutes.

    Attributes:
        concurrency: Runs walked at once by this worker.
        lease_s: How long a claim lasts without a heartbeat; a crashed worker's
            runs are taken over this long after its last heartbeat.
        poll_s: The longest sleep between looks at the database (wake-ups from
            this process are immediate).
        listen: On PostgreSQL, wake on LISTEN/NOTIFY too (runs and signals from
            other processes are picked up at once; polling stays as the fallback).
    """

    concurrency: int = 8
    lease_s: float = 30.0
    poll_s: float = 1.0
    listen: bool = True


Outcome = tuple[str, dict[str, Any] | None, str | None, str | None]
"""A run's end as a handle needs it: status, outputs, error, failed block."""
_OUTCOMES_KEPT = 1024
_PLANS_KEPT = 128


def _kind() -> str:
    """What runs this worker, as ``thodare workers`` shows it."""
    if "ipykernel" in sys.modules:
        return "kernel"
    script = sys.argv[0] if sys.argv else ""
    return Path(script).name if script not in ("", "-", "-c") else "python"


class Slot:
    """A slot :meth:`Worker.reserve` took: the run inserted in it is handed to the worker
    with :meth:`hand`, once (the insert may hand it over before its commit ends);
    leaving the ``with`` block before that gives the slot back."""

    def __init__(self, worker: Worker) -> None:
        self.worker, self.handed = worker, False

    def hand(self, row: RunRow) -> None:
        if not self.handed:
            self.handed = True
            self.worker.adopt(row)

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.handed:
            self.worker.unreserve()


class Worker:
    """Claims and walks runs in a background thread with its own event loop."""

    def __init__(
        self,
        store: Store,
        catalog: Catalog,
        env: Mapping[str, str],
        config: WorkerConfig,
        *,
        lifecycle: Lifecycle | None = None,
        artifacts: ArtifactStore | None = None,
    ) -> None:
        self.store, self.catalog, self.env, self.config = store, catalog, env, config
        self.artifacts = artifacts
        """Where steps store tables, files and big outputs (the kit's artifact store)."""
        self.lifecycle = lifecycle if lifecycle is not None else Lifecycle()
        """Where this worker's walks are reported (the kit's lifecycle events)."""
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._stopping = False
        self._active: dict[str, asyncio.Task[None]] = {}
        self._ready = threading.Event()
        self._ended = threading.Condition()
        self._listener: PgListener | None = None
        self._ended_count = 0
        self._schedules_at = 0.0  # when to look at the schedules next
        self._due_at = 0.0  # when to ask the database for the next due run
        self._types_changed = False
        self._full = False  # the last claim filled every free slot: a slot opening looks again
        self._db: LoopThreads | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._queued: list[tuple[Callable[[Connection], Any], bool, bool, asyncio.Future[Any]]] = []
        self._committing: asyncio.Future[None] | None = None  # done once the queue is empty
        self._outcomes: dict[str, Outcome] = {}  # the newest runs this worker ended
        self._plans: dict[str, Plan] = {}  # by pinned workflow JSON
        self._slots = threading.Lock()
        self._reserved = 0  # slots taken by runs this process is inserting (reserve)
        self.flow_held: set[str] = set()
        """Flow-control slots this worker's attempts hold; the heartbeat keeps them alive."""

    @property
    def running(self) -> bool:
        """True while the worker thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the worker thread (idempotent)."""
        if self.running:
            return
        self._stopping = False
        self._ready.clear()
        self._thread = threading.Thread(
            target=self._thread_main, name="thodare-worker", daemon=True
        )
        self._thread.start()
        self._ready.wait(timeout=10)
        if self.config.listen and not self.store.is_sqlite:
            self._listener = PgListener(
                self.store.url, self.store.channel, lambda _: self.wake(), skip=self.store.origin
            )
            self._listener.start()

    def wake(self) -> None:
        """Look for due work now (thread-safe)."""
        loop, ev = self._loop, self._wake
        if loop is not None and ev is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(ev.set)

    def reserve(self, needs: Sequence[str]) -> Slot | None:
        """Take a free slot for a run this process starts, if this worker is running
        and can run every connector type in ``needs`` (thread-safe). Then the run
        is inserted claimed by :attr:`owner` and handed over (:class:`Slot`)."""
        with self._slots:
            if not self.running or self._stopping or self._loop is None:
                return None
            if len(self._active) + self._reserved >= self.config.concurrency:
                return None
            if not set(needs) <= set(self.catalog.types()):
                return None
            self._reserved += 1
            return Slot(self)

    def unreserve(self) -> None:
        """Give back a slot taken by :meth:`reserve` (thread-safe)."""
        with self._slots:
            self._reserved -= 1

    def adopt(self, row: RunRow) -> None:
        """Walk ``row``, a run inserted claimed by this worker in a slot taken by
        :meth:`reserve` (thread-safe). If the worker stopped meanwhile, the run's
        lease runs out and another worker takes it over."""
        loop = self._loop
        try:
            if loop is None or loop.is_closed():
                raise RuntimeError("worker stopped")
            loop.call_soon_threadsafe(self._adopted, row)
        except RuntimeError:
            self.unreserve()

    def _adopted(self, row: RunRow) -> None:
        self.unreserve()
        if self._stopping or row.id in self._active:
            return
        self._active[row.id] = asyncio.create_task(self._execute(row))
        if len(self._active) + self._reserved >= self.config.concurrency:
            self._full = True

    @property
    def commits_alone(self) -> bool:
        """Whether a run's writes may commit on their own, from its steps' thread
        (any thread): on PostgreSQL always (the server flushes the commits of
        concurrent sessions together); on SQLite, one writer at a time, only while
        this worker walks one run at most (else its runs' writes share commits)."""
        return not self.store.is_sqlite or len(self._active) + self._reserved <= 1

    def timer(self, at: float) -> None:
        """Look for due work at ``at`` (a run this worker parked wakes then; loop thread)."""
        self._due_at = min(self._due_at, at)

    async def io(self, fn: Callable[..., _T], *args: Any, **kw: Any) -> _T:
        """Run a (blocking) store call off the event loop."""
        assert self._db is not None
        return await self._db.call(fn, *args, **kw)

    async def committed(
        self, op: Callable[[Connection], _T], *, lazy: bool, single: bool = False
    ) -> _T:
        """Run a write ``op(connection)`` in the next group commit: at once when no
        commit is under way, else with the writes of all the runs this worker walks
        that arrive meanwhile (one transaction, one commit); its result once
        committed. Raises what the op raised (:class:`LeaseLost`) or the commit's error.
        ``single``: ``op`` runs one statement (alone in its commit, it needs no BEGIN).
        """
        loop = asyncio.get_running_loop()
        done: asyncio.Future[tuple[bool, Any]] = loop.create_future()
        self._queued.append((op, lazy, single, done))
        if self._committing is None:  # no commit under way: this write leaves at once
            self._committing = loop.create_future()
            self._commit_queued()
        ok, value = await done
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]

    def _commit_queued(self) -> None:
        """Send the queued writes to the database as one batch (loop thread); the
        next batch leaves when this one is committed. Callbacks, not a task: no task
        and one loop turn less per commit."""
        if not self._queued:
            if self._committing is not None:
                self._committing.set_result(None)
            self._committing = None
            return
        batch, self._queued = self._queued, []
        ops, lazy = [op for op, _, _, _ in batch], all(lz for _, lz, _, _ in batch)
        single = len(batch) == 1 and batch[0][2]
        try:
            assert self._db is not None
            self._db.submit(
                functools.partial(self._batch_done, batch),
                self.store.runs.run_batch, ops, lazy=lazy, single=single,
            )  # fmt: skip
        except RuntimeError as e:  # the store threads are shut down
            self._batch_done(batch, False, e)

    def _batch_done(self, batch: list[Any], ok: bool, sent: Any) -> None:
        """Answer every op of a committed (or failed) batch, then send the next."""
        results = sent if ok else [(False, sent)] * len(batch)  # every op hears a failure
        for (_, _, _, done), result in zip(batch, results, strict=True):
            if not done.done():
                done.set_result(result)
        self._commit_queued()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` in the background on the loop; its failure is logged."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._spawned_done)

    def _spawned_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("worker %s: background write failed: %s", self.owner, task.exception())

    def plan(self, workflow_json: str) -> Plan:
        """The walkable plan of a pinned workflow, built once for its many runs (thread-safe)."""
        plan = self._plans.get(workflow_json)
        if plan is None:
            plan = Plan(SerializedWorkflow.from_json(workflow_json), self.catalog, validate=False)
            with self._slots:
                if len(self._plans) >= _PLANS_KEPT:
                    self._plans.pop(next(iter(self._plans)))
                self._plans[workflow_json] = plan
        return plan

    def connectors_changed(self) -> None:
        """Record the catalog's new connector types and claim what they allow (thread-safe)."""
        self._plans.clear()  # plans hold the connectors they were built with
        self._types_changed = True
        self.wake()

    def schedules_changed(self) -> None:
        """Look at the schedules now (thread-safe; after one was added or resumed)."""
        self._schedules_at = 0.0
        self.wake()

    def outcome(self, run_id: str) -> Outcome | None:
        """How this worker ended ``run_id``, if it did lately (thread-safe)."""
        return self._outcomes.get(run_id)

    def ended(self, run_id: str, outcome: Outcome) -> None:
        """Remember how a run ended, for :meth:`outcome`, and wake who waits for it
        (:meth:`wait_walk_end`; any thread: a chain of steps ends a run on its own)."""
        with self._ended:
            self._outcomes[run_id] = outcome
            if len(self._outcomes) > _OUTCOMES_KEPT:
                self._outcomes.pop(next(iter(self._outcomes)))
            self._ended.notify_all()

    @property
    def ended_count(self) -> int:
        """How many walks this worker has ended (parked, finished or dropped)."""
        return self._ended_count

    def wait_walk_end(self, seen: int, timeout: float, run_id: str | None = None) -> None:
        """Block until a walk ends after ``ended_count`` was ``seen``, the end of
        ``run_id`` is known here (:meth:`ended`), or ``timeout``."""
        with self._ended:
            self._ended.wait_for(
                lambda: self._ended_count != seen or run_id in self._outcomes, timeout
            )

    def abort(self, run_id: str) -> None:
        """Stop walking ``run_id`` now if this worker is (thread-safe; after a cancel)."""
        loop = self._loop
        task = self._active.get(run_id)
        if loop is not None and task is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(task.cancel)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop claiming, cancel runs in flight and hand them back at once."""
        self._stopping = True
        if self._listener is not None:
            self._listener.stop()
            self._listener = None
        self.wake()
        if self._thread is not None:
            self._thread.join(timeout)
        self._thread = None

    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        size = max(4, self.config.concurrency)
        steps = LoopThreads(loop, size, "thodare-step")  # sync steps
        run_steps_on(loop, steps)
        other = ThreadPoolExecutor(max_workers=size, thread_name_prefix="thodare-aux")
        loop.set_default_executor(other)  # what async steps send to a thread themselves
        self._db = LoopThreads(
            loop, 1 if self.store.is_sqlite else self.config.concurrency + 2, "thodare-db"
        )
        try:
            loop.run_until_complete(self._main(loop))
        finally:  # a sync step still blocking was handed back with its run: don't wait for it
            steps.shutdown(wait=False)
            other.shutdown(wait=False, cancel_futures=True)
            self._db.shutdown()
            loop.close()

    async def _main(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop, self._wake = loop, asyncio.Event()
        try:
            await self.io(
                self.store.workers.register_worker, self.owner, _kind(), self.catalog.types(),
                self.config.concurrency, self.config.lease_s,
            )  # fmt: skip
        except Exception as e:  # the database is down: the heartbeat records us later
            log.warning("worker %s: cannot record itself: %s", self.owner, e)
        self._ready.set()
        beating = threading.Event()
        beat = threading.Thread(
            target=self._heartbeat, args=(beating,), name="thodare-heartbeat", daemon=True
        )
        beat.start()
        schedules = Schedules(self.store, self.lifecycle)
        try:
            woken = True
            while not self._stopping:
                self._wake.clear()
                try:
                    if self._types_changed:
                        self._types_changed = False
                        await self.io(self._beat, [])
                    if time.time() >= self._schedules_at:
                        await self._dispatch(schedules)
                    await self._claim(probe=not woken)
                    if time.time() >= self._due_at:
                        await self._next_due()
                except Exception as e:  # database trouble: keep running, try again soon
                    log.warning("worker %s: database error: %s", self.owner, e)
                timeout = max(0.0, min(self._schedules_at, self._due_at) - time.time()) + 0.001
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), min(self.config.poll_s, timeout))
                woken = self._wake.is_set()
        finally:
            beating.set()
            for task in self._active.values():
                task.cancel()
            await asyncio.gather(*self._active.values(), *self._tasks, return_exceptions=True)
            if self._committing is not None:  # the last batch lands before the hand-back
                await asyncio.shield(self._committing)
            beat.join(5)  # no lease extended after the hand-back
            with contextlib.suppress(Exception):
                await self.io(self.store.workers.release, self.owner)
            self.lifecycle.released(self.owner)

    async def _dispatch(self, schedules: Schedules) -> None:
        """Start the runs of due schedule ticks; look again at the next tick or poll."""
        self._schedules_at = time.time() + self.config.poll_s
        report = await self.io(schedules.dispatch_due)
        if report.next_at is not None:
            self._schedules_at = min(self._schedules_at, report.next_at)

    async def _claim(self, *, probe: bool) -> None:
        """Start walking what is due, up to the free slots (``probe``: after a quiet poll)."""
        free = self.config.concurrency - len(self._active) - self._reserved
        if free <= 0:  # a slot to open looks again (below)
            self._full = True
            return
        rows = await self.io(
            self.store.runs.claim, self.owner, free, self.config.lease_s, self.catalog.types(),
            probe=probe,
        )  # fmt: skip
        for row in rows:  # a run parked by a walk still ending here: the new walk follows it
            before = self._active.get(row.id)
            self._active[row.id] = asyncio.create_task(self._execute(row, after=before))
        # every free slot taken (none free: reserved ones count): more may be due, so the
        # next slot to open looks again instead of waiting for the poll
        self._full = len(rows) >= free

    async def _next_due(self) -> None:
        """Ask when the next run becomes due (timers and leases of other workers'
        runs); once a poll interval, not at every wake-up."""
        self._due_at = time.time() + self.config.poll_s
        nxt = await self.io(self.store.runs.next_due, self.owner, self.catalog.types())
        if nxt is not None and nxt > time.time():  # one due now waits for a free slot
            self._due_at = min(self._due_at, nxt)

    async def _execute(self, row: RunRow, *, after: asyncio.Task[None] | None = None) -> None:
        """Walk a claimed run (once ``after``, its previous walk here, has ended, and its
        ``on_run_create`` fired elsewhere has returned)."""
        try:
            if after is not None:
                await asyncio.wait([after])
            creating = self.lifecycle.create_to_wait_for(row.id)
            if creating is not None:  # another thread runs its on_run_create: wait off the loop
                await asyncio.to_thread(creating.wait, CREATE_WAIT_S)
            self.lifecycle.run_started(row, self.owner)
            await RunExecution(self, row).execute()
        except LeaseLost:
            log.info("worker %s: lost the lease of run %s", self.owner, row.id)
            await self.io(self.lifecycle.lease_lost, row.id, self.store.runs.get_run)
        except BackendUnavailable as e:  # the lease runs out; a worker takes the run over later
            log.warning("worker %s: run %s paused, database unreachable: %s", self.owner, row.id, e)
            self.lifecycle.walk_stopped(row.id, "aborted")
        except asyncio.CancelledError:
            pass
        except Exception:
            log.exception("worker %s: run %s crashed the walker", self.owner, row.id)
            self.lifecycle.walk_stopped(row.id, "aborted")
        finally:
            if self._active.get(row.id) is asyncio.current_task():
                del self._active[row.id]
            with self._ended:
                self._ended_count += 1
                self._ended.notify_all()
            if self._full and self._wake is not None:  # a slot opened for what waited
                self._wake.set()

    def _beat(self, run_ids: list[str]) -> set[str]:
        return self.store.workers.heartbeat(
            self.owner, run_ids, self.config.lease_s, self.catalog.types()
        )

    def _heartbeat(self, stop: threading.Event) -> None:
        """Extend the leases of the runs this worker walks, from a thread of its own:
        a busy event loop (or CPU starved by its steps) never lets them lapse."""
        while not stop.wait(self.config.lease_s / 3):
            try:
                walks = dict(self._active)  # the walks the leases are extended for
                kept = self._beat(list(walks))
            except Exception as e:  # the database, or _active changed while copied
                log.warning("worker %s: heartbeat failed: %s", self.owner, e)
                continue
            try:
                held = list(self.flow_held)
                if held:  # attempts still running: their slots live one more lease
                    self.store.flow.extend(held, self.config.lease_s)
            except Exception as e:  # the database, or the set changed while copied
                log.warning("worker %s: flow-control heartbeat failed: %s", self.owner, e)
            lost = {rid: w for rid, w in walks.items() if rid not in kept}  # canceled, taken over
            loop = self._loop
            if lost and loop is not None and not loop.is_closed():
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(self._leases_lost, lost)

    def _leases_lost(self, lost: dict[str, asyncio.Task[None]]) -> None:
        """Stop the walks whose lease the heartbeat could not extend. Only those walks: a
        run that parked meanwhile and was claimed again has a new walk, and its lease."""
        for run_id, walk in lost.items():
            if self._active.get(run_id) is not walk:
                continue
            if self.lifecycle.walking:
                self.spawn(self.io(self.lifecycle.lease_lost, run_id, self.store.runs.get_run))
            walk.cancel()
