"""Run a coroutine to completion from sync code, even inside a running loop (Jupyter)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(coro)``, except that threads still running at the end (a sync
    step abandoned at its ``timeout``) are not waited for: they finish on their own."""
    loop = asyncio.new_event_loop()
    pool = ThreadPoolExecutor(thread_name_prefix="thodare-step")
    loop.set_default_executor(pool)
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(coro)
    finally:
        try:
            left = asyncio.all_tasks(loop)
            for task in left:
                task.cancel()
            if left:
                loop.run_until_complete(asyncio.gather(*left, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            pool.shutdown(wait=False, cancel_futures=True)
            loop.close()


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(coro)``; in a thread with a running loop, on a helper thread instead."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = _run(coro)
        except BaseException as e:  # re-raised in the caller's thread
            box["error"] = e

    t = threading.Thread(target=target, name="thodare-run-sync", daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]
