"""Threads that run blocking calls for one event loop: a worker's store calls and
its sync steps.

A call goes to a queue a few threads read; its result comes back to the loop with
one ``call_soon_threadsafe``. No ``concurrent.futures`` in between: a Future, the
executor's semaphore and their conditions cost about 20 µs of CPU a round trip on
a fast machine (120 µs on a slow one), and a sequential run makes one round trip a
write and one a sync step.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import queue
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
Then = Callable[[bool, Any], None]
"""Called on the loop with ``(True, result)`` or ``(False, exception)``."""


class LoopThreads:
    """``size`` threads that run blocking calls for one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, size: int, name: str) -> None:
        self._loop = loop
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], Then] | None] = queue.SimpleQueue()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._serve, name=f"{name}_{i}", daemon=True)
            for i in range(size)
        ]
        for t in self._threads:
            t.start()

    def submit(self, then: Then, fn: Callable[..., Any], *args: Any, **kw: Any) -> None:
        """Run ``fn(*args, **kw)`` on a thread, then ``then`` on the loop with its
        outcome (dropped if the loop is closed by then). Raises RuntimeError once shut down."""
        if self._closed:
            raise RuntimeError("the store threads are shut down")
        self._calls.put((functools.partial(fn, *args, **kw), then))

    async def call(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """``fn(*args, **kw)`` on a thread; its result (loop thread). A caller canceled
        meanwhile does not stop the call; its outcome is dropped."""
        done: asyncio.Future[T] = self._loop.create_future()

        def then(ok: bool, value: Any) -> None:
            if not done.done():
                done.set_result(value) if ok else done.set_exception(value)

        self.submit(then, fn, *args, **kw)
        return await done

    def shutdown(self, *, wait: bool = True) -> None:
        """Run what is queued, then stop the threads and wait for them; ``wait=False``:
        drop what is queued and leave the calls still running to end on their own."""
        self._closed = True
        if not wait:
            with contextlib.suppress(queue.Empty):
                while True:
                    self._calls.get_nowait()
        for _ in self._threads:
            self._calls.put(None)
        if wait:
            for t in self._threads:
                t.join()

    def _serve(self) -> None:
        while (item := self._calls.get()) is not None:
            fn, then = item
            try:
                outcome: tuple[bool, Any] = (True, fn())
            except BaseException as e:  # as an executor keeps it: the caller hears it
                outcome = (False, e)
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                self._loop.call_soon_threadsafe(then, *outcome)
            del item, fn, then, outcome  # nothing kept alive while the queue is empty


_STEP_THREADS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, LoopThreads] = (
    weakref.WeakKeyDictionary()
)


def run_steps_on(loop: asyncio.AbstractEventLoop, threads: LoopThreads) -> None:
    """Send the sync steps of ``loop`` (:func:`in_thread`) to ``threads``."""
    _STEP_THREADS[loop] = threads


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    """``asyncio.to_thread(fn, *args)`` (the context goes along: step logs follow it),
    on the threads :func:`run_steps_on` gave this loop, if any."""
    threads = _STEP_THREADS.get(asyncio.get_running_loop())
    if threads is None:
        return await asyncio.to_thread(fn, *args)
    return await threads.call(contextvars.copy_context().run, fn, *args)
