"""Time, one way: UNIX epoch floats inside, ISO 8601 at the edges.

The database, the worker and the schedules keep instants as epoch seconds
(``float``). What a person or another program reads (run descriptions, the
REST API, wait blocks' ``resume_at``) is ISO 8601 with an offset. Every
conversion between the two goes through this module (it imports nothing of ours).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import overload

__all__ = ["from_iso", "instant", "local_text", "now", "to_iso", "utc", "utc_iso"]


def now() -> float:
    """The current instant, epoch seconds."""
    return time.time()


@overload
def to_iso(epoch: float) -> str: ...
@overload
def to_iso(epoch: None) -> None: ...
@overload
def to_iso(epoch: float | None) -> str | None: ...
def to_iso(epoch: float | None) -> str | None:
    """``epoch`` as ISO 8601 in this machine's time zone, with its offset; None stays None."""
    return datetime.fromtimestamp(epoch).astimezone().isoformat() if epoch is not None else None


def utc_iso(epoch: float | None = None, *, seconds: bool = False) -> str:
    """``epoch`` (default: now) as ISO 8601 in UTC with a ``Z``: ``2025-01-31T09:00:00.5Z``.

    ``seconds=True`` drops the fraction (``2025-01-31T09:00:00Z``), for keys and stamps.
    """
    at = datetime.fromtimestamp(time.time() if epoch is None else epoch, UTC)
    text = at.isoformat(timespec="seconds") if seconds else at.isoformat()
    return text.replace("+00:00", "Z")


@overload
def from_iso(text: str) -> float: ...
@overload
def from_iso(text: None) -> None: ...
@overload
def from_iso(text: str | None) -> float | None: ...
def from_iso(text: str | None) -> float | None:
    """Epoch seconds from ISO 8601 (a trailing ``Z`` is UTC; no offset is local time).

    None or ``""`` gives None; text that is not ISO 8601 raises ``ValueError``.
    """
    return _parse(text) if text else None


def _parse(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@overload
def utc(epoch: float) -> datetime: ...
@overload
def utc(epoch: None) -> None: ...
@overload
def utc(epoch: float | None) -> datetime | None: ...
def utc(epoch: float | None) -> datetime | None:
    """``epoch`` as an aware ``datetime`` in UTC; None stays None."""
    return datetime.fromtimestamp(epoch, UTC) if epoch is not None else None


def instant(when: datetime | timedelta | str | float | None) -> float | None:
    """Epoch seconds from what a caller may hand us.

    A ``datetime`` (naive = local time), an ISO 8601 string (see :func:`from_iso`),
    a ``timedelta`` (from now) or a number (already epoch seconds); None stays None.
    Raises ``ValueError`` for a string that is not ISO 8601 (also ``""``).
    """
    if when is None or isinstance(when, int | float):
        return when
    if isinstance(when, str):
        return _parse(when)
    if isinstance(when, timedelta):
        return time.time() + when.total_seconds()
    return when.timestamp()


def local_text(epoch: float | None, missing: str = "-") -> str:
    """``epoch`` as local wall time to the second (``2025-01-31 10:00:00``), for tables."""
    if epoch is None:
        return missing
    return datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")
