"""Cron expressions (croniter): checked field by field, ticks computed in a time zone.

Five fields (``minute hour day-of-month month day-of-week``), or six with
seconds last; ``@hourly``-style aliases too. Times are UNIX seconds.
"""

from __future__ import annotations

import math
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from croniter.croniter import CroniterError

from ..errors import ScheduleInvalid

FIELDS = ("minute", "hour", "day-of-month", "month", "day-of-week", "second")
_RANGES = ("0-59", "0-23", "1-31", "1-12 or jan-dec", "0-6 or sun-sat", "0-59")


def check_cron(expr: str) -> str:
    """The expression, normalised; raises :class:`ScheduleInvalid` naming the bad field."""
    text = " ".join(str(expr).split())
    if text.startswith("@"):
        if not croniter.is_valid(text):
            raise ScheduleInvalid(
                "cron", expr, "unknown alias; use @yearly, @monthly, @weekly, @daily or @hourly."
            )
        return text
    parts = text.split(" ")
    if len(parts) not in (5, 6):
        raise ScheduleInvalid(
            "cron",
            expr,
            f"has {len(parts)} field(s); write 5 ({' '.join(FIELDS[:5])}) "
            "or 6 with seconds last, e.g. '*/15 * * * *'.",
        )
    for i, part in enumerate(parts):
        probe = ["*"] * len(parts)
        probe[i] = part
        if not croniter.is_valid(" ".join(probe)):
            raise ScheduleInvalid(
                "cron",
                expr,
                f"the {FIELDS[i]} field {part!r} is not valid (values {_RANGES[i]}; "
                "use *, lists a,b, ranges a-b and steps */n).",
            )
    return text


def zone(tz: str) -> ZoneInfo:
    """The IANA time zone ``tz``; raises :class:`ScheduleInvalid` when unknown."""
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleInvalid(
            "tz", tz, "unknown time zone; use an IANA name such as 'UTC' or 'Europe/Paris'."
        ) from None


def next_tick(expr: str, tz: str, after: float) -> float:
    """The first tick strictly after ``after``."""
    try:
        return float(croniter(expr, datetime.fromtimestamp(after, zone(tz))).get_next(float))
    except CroniterError:  # e.g. '0 0 30 2 *': every field is valid, no date matches
        raise ScheduleInvalid("cron", expr, "never matches a date.") from None


def latest_tick(expr: str, tz: str, at: float) -> float:
    """The last tick at or before ``at`` (ticks fall on whole seconds)."""
    base = datetime.fromtimestamp(math.floor(at) + 1, zone(tz))
    return float(croniter(expr, base).get_prev(float))
