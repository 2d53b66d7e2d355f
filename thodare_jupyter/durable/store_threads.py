"""The threads a worker's store calls run on, off its event loop.

A call goes to a queue a few threads read; its result comes back to the loop with
one ``call_soon_threadsafe``. No ``concurrent.futures`` in between: a Future, the
executor's semaphore and their conditions cost about 20 µs of CPU a round trip on
these machines, and a sequential run makes one round trip a write.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
Then = Callable[[bool, Any], None]
"""Called on the loop with ``(True, result)`` or ``(False, exception)``."""


class StoreThreads:
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

    def shutdown(self) -> None:
        """Run what is queued, then stop the threads and wait for them."""
        self._closed = True
        for _ in self._threads:
            self._calls.put(None)
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
