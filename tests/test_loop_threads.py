"""Threads for a loop's blocking calls (a worker's store calls and sync steps): a
call's result or exception comes back to the loop, a canceled caller does not stop
the call, shutting down runs what was queued (or drops it, not waiting), and a sync
step goes to its loop's threads with the caller's context."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time

import pytest

from thodare_jupyter.loop_threads import LoopThreads, in_thread, run_steps_on


def test_results_and_errors_come_back_to_the_loop() -> None:
    async def main() -> None:
        threads = LoopThreads(asyncio.get_running_loop(), 2, "t")
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
        threads = LoopThreads(asyncio.get_running_loop(), 1, "t")
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
        threads = LoopThreads(asyncio.get_running_loop(), 1, "t")
        for i in range(5):
            threads.submit(lambda ok, value: None, done.append, i)
        threads.shutdown()
        with pytest.raises(RuntimeError):
            threads.submit(lambda ok, value: None, done.append, 9)

    asyncio.run(main())
    assert done == [0, 1, 2, 3, 4]


def test_shutdown_without_waiting_drops_what_was_queued() -> None:
    done: list[int] = []
    gate = threading.Event()

    async def main() -> None:
        threads = LoopThreads(asyncio.get_running_loop(), 1, "t")
        threads.submit(lambda ok, value: None, gate.wait, 5)  # the thread is busy
        for i in range(3):
            threads.submit(lambda ok, value: None, done.append, i)
        await asyncio.sleep(0.05)
        threads.shutdown(wait=False)  # returns while the first call still blocks
        gate.set()
        await asyncio.sleep(0.1)

    asyncio.run(main())
    assert done == []


CURRENT: contextvars.ContextVar[str] = contextvars.ContextVar("current", default="none")


def test_in_thread_runs_on_the_loops_step_threads_with_the_callers_context() -> None:
    def where() -> tuple[str, str]:
        return threading.current_thread().name, CURRENT.get()

    async def main() -> None:
        CURRENT.set("step s1")
        name, seen = await in_thread(where)  # no threads given to this loop: asyncio's
        assert not name.startswith("steps_") and seen == "step s1"
        threads = LoopThreads(asyncio.get_running_loop(), 2, "steps")
        run_steps_on(asyncio.get_running_loop(), threads)
        try:
            name, seen = await in_thread(where)
            assert name.startswith("steps_") and seen == "step s1"
            with pytest.raises(ValueError, match="bad"):
                await in_thread(int, "bad")
        finally:
            threads.shutdown()

    asyncio.run(main())
