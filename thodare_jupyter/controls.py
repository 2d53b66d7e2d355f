"""Step controls: a block's own ``retries``, ``when`` and ``timeout``.

Shared by the YAML, the builder, ``apply_operations`` (parsing and checking
the values) and both executors (running them). The rules:

* ``retries: {max, backoff}``: ``max`` is the most attempts in all, the first
  included (``max: 1`` never retries); ``backoff`` is the pause before the
  second attempt, doubling after each further failure (capped at 60 s). It
  replaces the connector's own retry policy for that block, in both executors
  (without it the in-memory executor tries once, as before).
* ``when: "{{ref}}"``: resolved like a param template when the step would run;
  a falsy value (``None``/missing, ``False``, ``0``, ``""``, ``[]``, ``{}``;
  any other value, the string ``"false"`` included, is truthy) skips the step
  and everything downstream of it (the seed's rule for untaken branches).
* ``timeout``: seconds one attempt may take (``30s``, ``2m``, ``1h``, ``500ms``
  in YAML); an attempt past it fails with :class:`StepTimedOut` and is retried
  if attempts remain. An ``async`` step is cancelled; a sync step's thread is
  abandoned (its late result ignored) so nothing waits for it.

``retries`` and ``timeout`` govern compute steps; on a wait block they are ignored.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from .connectors.connector import NO_RETRY, Connector, RetryPolicy
from .errors import StepTimedOut
from .templates import TEMPLATE
from .wire import SerializedBlock, StepRetries

T = TypeVar("T")
MAX_ATTEMPTS = 100
"""The most attempts ``retries.max`` may ask for."""
MAX_SECONDS = 7 * 24 * 3600.0
"""The longest ``timeout`` or ``backoff`` (a week)."""
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")


def parse_seconds(value: Any, what: str) -> float:
    """``30``, ``2.5``, ``"30s"``, ``"2m"``, ``"500ms"`` → seconds; ValueError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ValueError(f"{what} must be seconds or a duration like 30s, 2m, 500ms")
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m is None:
            raise ValueError(f"{what} must be seconds or a duration like 30s, 2m, 500ms")
        seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    else:
        seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"{what} cannot be negative")
    if seconds > MAX_SECONDS:
        raise ValueError(f"{what} is longer than a week")
    return seconds


def parse_timeout(value: Any) -> float:
    """A ``timeout`` value in seconds (positive), or ValueError saying why not."""
    seconds = parse_seconds(value, "timeout")
    if seconds <= 0:
        raise ValueError("timeout must be more than 0 seconds")
    return seconds


def parse_retries(value: Any) -> StepRetries:
    """``3``, ``{max: 3}`` or ``{max: 3, backoff: 2s}`` → :class:`StepRetries`, or ValueError."""
    if isinstance(value, StepRetries):
        value = value.model_dump(exclude_none=True)
    if isinstance(value, int) and not isinstance(value, bool):
        value = {"max": value}
    if not isinstance(value, dict):
        raise ValueError("retries must be {max: <attempts>, backoff: <duration>}")
    unknown = sorted(str(k) for k in value if k not in ("max", "backoff"))
    if unknown:
        raise ValueError(f"retries has no field '{unknown[0]}'; fields: max, backoff")
    most = value.get("max")
    if isinstance(most, bool) or not isinstance(most, int):
        raise ValueError("retries.max must be a whole number of attempts (the first included)")
    if not 1 <= most <= MAX_ATTEMPTS:
        raise ValueError(
            f"retries.max must be from 1 to {MAX_ATTEMPTS} (attempts, the first included)"
        )
    backoff = value.get("backoff")
    return StepRetries(
        max=most, backoff=None if backoff is None else parse_seconds(backoff, "retries.backoff")
    )


def retry_policy(block: SerializedBlock, conn: Connector, *, default: bool = True) -> RetryPolicy:
    """The block's retry policy: its ``retries`` over the connector's policy
    (``default=False``: one attempt when the block sets none)."""
    base = conn.retries
    if block.retries is None:
        return base if default else NO_RETRY
    backoff = block.retries.backoff
    return RetryPolicy(
        max_attempts=block.retries.max,
        backoff_s=base.backoff_s if backoff is None else backoff,
        factor=2.0,
        max_backoff_s=60.0,
    )


def is_falsy(value: Any) -> bool:
    """Whether a resolved ``when`` skips its step: None, False, 0, "", [] or {}."""
    if value is None or value is False:
        return True
    if type(value) in (int, float):
        return bool(value == 0)
    if type(value) in (str, list, dict):
        return len(value) == 0
    return False


async def within(step: Awaitable[T], block: SerializedBlock, conn: Connector) -> T:
    """Await one attempt of ``step`` under the block's ``timeout`` (compute steps only).

    Past it the attempt is cancelled (a sync step's thread is left to finish on
    its own, its result ignored) and :class:`StepTimedOut` is raised.
    """
    if block.timeout is None or conn.kind != "compute":
        return await step
    limit = asyncio.timeout(block.timeout)
    try:
        async with limit:
            return await step
    except TimeoutError:
        if limit.expired():  # not a TimeoutError the step raised itself
            raise StepTimedOut(block.id, conn.type, block.timeout) from None
        raise


MAX_CONCURRENCY = 1000
"""The most items a ``for_each`` step may run at once."""
DEFAULT_CONCURRENCY = 8
"""Items in flight at once when a ``for_each`` step sets no ``concurrency``."""
ITEM_REFS = ("item", "item_index")
"""The ref heads a ``for_each`` step's params may use."""
EACH_OUTPUTS = ("failed", "items")
"""The outputs of a ``for_each`` step (whatever its connector's are)."""


def parse_for_each(value: Any) -> str:
    """A ``for_each`` value: one ``{{template}}`` (a list or a table), or ValueError."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError('for_each must be a {{reference}} to a list or a table, e.g. "{{q.rows}}"')
    m = TEMPLATE.fullmatch(value.strip())
    if m is None:
        raise ValueError(
            'for_each must be one {{reference}} to a list or a table, e.g. "{{q.rows}}"'
        )
    if m.group(1).strip().split(".", 1)[0] in ITEM_REFS:
        raise ValueError("for_each cannot read {{item}}: it names the items")
    return value.strip()


def parse_concurrency(value: Any) -> int:
    """A ``concurrency`` value (a whole number from 1 to 1000), or ValueError."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("concurrency must be a whole number of items in flight at once")
    if not 1 <= value <= MAX_CONCURRENCY:
        raise ValueError(f"concurrency must be from 1 to {MAX_CONCURRENCY}")
    return value


def item_key(block_id: str, index: int) -> str:
    """The step row of item ``index`` of a ``for_each`` step: ``block_id[index]``
    (no block id can contain ``[``)."""
    return f"{block_id}[{index}]"


ItemCall = Callable[[int, dict[str, Any]], Awaitable[Any]]


async def fan_out(
    params: list[dict[str, Any]],
    concurrency: int,
    call: ItemCall,
    *,
    error_of: Callable[[BaseException], str],
    abort_on: tuple[type[BaseException], ...] = (),
) -> dict[str, Any]:
    """Run ``call(index, params)`` for every item, at most ``concurrency`` at once.

    A failing item is recorded (``error_of`` gives its text) and the others go
    on; an exception of a type in ``abort_on`` stops them all and propagates.
    Returns ``{"items": [output or None], "failed": [{"index", "error"}]}``.
    """
    items: list[Any] = [None] * len(params)
    failed: dict[int, str] = {}
    gate = asyncio.Semaphore(max(1, concurrency))

    async def one(i: int) -> None:
        async with gate:
            try:
                items[i] = await call(i, params[i])
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if isinstance(e, abort_on):
                    raise
                failed[i] = error_of(e)

    tasks = [asyncio.ensure_future(one(i)) for i in range(len(params))]
    try:
        if tasks:
            await asyncio.gather(*tasks)
    finally:
        for t in tasks:
            t.cancel()
    return {"items": items, "failed": [{"index": i, "error": failed[i]} for i in sorted(failed)]}
