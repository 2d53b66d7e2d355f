"""Flow control of a connector type: at most ``concurrency`` attempts at once and
at most ``rate`` starts per second (a token bucket holding one token: no bursts).

:class:`Flow` is the declaration (checked when the connector is defined) and the
in-process limiter the in-memory executor uses; the durable runtime keeps the same
limits in the database, across every worker (``durable/flow_store.py``).
"""

from __future__ import annotations

import asyncio
import random
import re
import threading
import time
from dataclasses import dataclass, field

from ..errors import ConnectorDefinitionError

_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*$")
_PER = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0,
        "h": 3600.0, "hour": 3600.0}  # fmt: skip
BUCKET = 1.0
"""Tokens a bucket holds when full: one, so starts are spaced evenly (no bursts)."""


def parse_rate(type_: str, rate: str) -> float:
    """Starts per second of a rate such as ``"10/s"``, ``"100/m"`` or ``"5/h"``."""
    m = _RATE.match(rate) if isinstance(rate, str) else None
    per_s = float(m.group(1)) / _PER[m.group(2)] if m else 0.0
    if per_s <= 0:
        raise ConnectorDefinitionError(
            f"Connector {type_!r}: rate must be a positive count per second, minute or "
            f'hour, like "10/s", "100/m" or "5/h"; got {rate!r}.'
        )
    return per_s


def refill(tokens: float, at: float, now: float, per_s: float) -> float:
    """A bucket's tokens at ``now`` that held ``tokens`` at ``at``."""
    return min(BUCKET, tokens + max(0.0, now - at) * per_s)


def backoff(tries: int) -> float:
    """How long a step waiting for a slot sleeps after ``tries`` looks (jittered)."""
    return float(min(0.5, 0.02 * 2**tries) * (0.5 + random.random()))


@dataclass
class Flow:
    """A connector type's limits, and its in-process limiter (thread- and loop-safe)."""

    type: str
    concurrency: int | None = None
    rate: str | None = None
    per_s: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _in_flight: int = 0
    _tokens: float = BUCKET
    _at: float = 0.0

    @classmethod
    def of(cls, type_: str, concurrency: int | None, rate: str | None) -> Flow | None:
        """The limits declared for ``type_``, checked; ``None`` when there are none."""
        if concurrency is not None and (
            isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1
        ):
            raise ConnectorDefinitionError(
                f"Connector {type_!r}: concurrency must be an integer of at least 1, "
                f"got {concurrency!r}."
            )
        if concurrency is None and rate is None:
            return None
        per_s = parse_rate(type_, rate) if rate is not None else None
        return cls(type_, concurrency, rate, per_s)

    def _take(self, now: float) -> float:
        """Take a slot and a token if both are free (0.0), else seconds to wait."""
        with self._lock:
            if self.concurrency is not None and self._in_flight >= self.concurrency:
                return -1.0
            if self.per_s is not None:
                tokens = refill(self._tokens, self._at, now, self.per_s)
                if tokens < 1.0:
                    return (1.0 - tokens) / self.per_s
                self._tokens, self._at = tokens - 1.0, now
            self._in_flight += 1
            return 0.0

    async def acquire(self) -> None:
        """Wait (asleep, off nothing) for a slot and a token in this process."""
        tries = 0
        while (wait := self._take(time.monotonic())) != 0.0:
            await asyncio.sleep(wait if wait > 0 else backoff(tries))
            tries += 1

    def release(self) -> None:
        with self._lock:
            self._in_flight -= 1
