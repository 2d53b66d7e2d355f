"""The worker's store threads: a call's result or exception comes back to the loop,
a canceled caller does not stop the call, and shutting down runs what was queued."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from thodare_jupyter.durable.store_threads import StoreThreads


def test_results_and_errors_come_back_to_the_loop() -> None:
    async def main() -> None:
        threads = StoreThreads(asyncio.get_running_loop(), 2, "t")
        try:
            where = await threads.call(lambda: threading.current_thread().name)
            assert where.startswith("t_")
            assert await threads.call(lambda a, b=0: a + b, 2, b=3) == 5
            with pytest.raises(ZeroDivisionError):
                await threads.call(lambda: 1 / 0)
        finally:
            threads.shutdown()

    asyncio.run(main())


def test_a_canceled_caller_leaves_the_call_running() -> None:
    ran = threading.Event()

    def slow() -> None:
        time.sleep(0.2)
        ran.set()

    async def main() -> None:
        threads = StoreThreads(asyncio.get_running_loop(), 1, "t")
        task = asyncio.ensure_future(threads.call(slow))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        threads.shutdown()  # waits for the call
        assert ran.is_set()

    asyncio.run(main())


def test_shutdown_runs_what_was_queued_then_refuses_more() -> None:
    done: list[int] = []

    async def main() -> None:
        threads = StoreThreads(asyncio.get_running_loop(), 1, "t")
        for i in range(5):
            threads.submit(lambda ok, value: None, done.append, i)
        threads.shutdown()
        with pytest.raises(RuntimeError):
            threads.submit(lambda ok, value: None, done.append, 9)

    asyncio.run(main())
    assert done == [0, 1, 2, 3, 4]
