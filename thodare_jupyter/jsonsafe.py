"""``loads_bounded``: decode JSON sent by strangers, with caps on size, depth and numbers.

The nesting depth is measured by scanning the brackets outside strings
(regular expressions and C-level iteration, no recursion) before
``json.loads`` runs, so a body of 100,000 ``[`` is refused instead of raising
``RecursionError``. ``NaN``/``Infinity``, numbers out of float range,
integers of more than :data:`MAX_INT_DIGITS` digits and unpaired surrogate
escapes (``"\\ud800"``: no database can store the string) are refused too.
"""

from __future__ import annotations

import json
import math
import re
from itertools import accumulate
from typing import Any

from .errors import ThodareError

MAX_DEPTH = 64
"""Default nesting limit: arrays and objects inside each other, at most this deep."""
MAX_INT_DIGITS = 4300
"""Integers longer than this (Python's own ``int`` conversion limit) are refused."""

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"?', re.DOTALL)  # an unclosed one runs to the end
_NOT_BRACKET = re.compile(rb"[^\[\]{}]+")
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}
_FINE_ESCAPE = re.compile(  # a surrogate pair, any other \uXXXX, or a one-letter escape
    r"\\(?:u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}"
    r"|u(?![dD][89a-fA-F])[0-9a-fA-F]{4}|[^u])"
)
_LONE_SURROGATE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


class JsonRejected(ThodareError, ValueError):
    """The bytes are not JSON we accept; the message names the problem (no "body:" prefix)."""


class JsonTooLarge(JsonRejected):
    """The bytes exceed the size limit (a 413, where the other rejections are a 400)."""


def loads_bounded(raw: bytes, *, max_bytes: int, max_depth: int = MAX_DEPTH) -> Any:
    """Decode UTF-8 JSON ``raw``, refusing what could exhaust memory, stack or CPU.

    Args:
        raw: The bytes as received.
        max_bytes: More bytes than this raise :class:`JsonTooLarge`.
        max_depth: Arrays/objects nested deeper than this are refused.

    Raises:
        JsonTooLarge: ``raw`` is over ``max_bytes``.
        JsonRejected: Not UTF-8, not JSON, nested too deeply, a ``NaN`` or
            ``Infinity`` literal, a number out of range, an integer of more
            than :data:`MAX_INT_DIGITS` digits, or an unpaired surrogate escape.
    """
    if len(raw) > max_bytes:
        raise JsonTooLarge(f"is {len(raw)} bytes; at most {max_bytes} are allowed")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise JsonRejected(f"not UTF-8 ({e.reason} at byte {e.start})") from None
    if _depth(raw) > max_depth:
        raise JsonRejected(
            f"nested more than {max_depth} levels deep (arrays/objects); send a flatter document"
        )
    try:
        value = json.loads(text, parse_constant=_constant, parse_int=_int, parse_float=_float)
    except JsonRejected:
        raise
    except ValueError as e:
        raise JsonRejected(f"not JSON ({e})") from None
    if "\\" in text:
        lone = _LONE_SURROGATE.search(_FINE_ESCAPE.sub("", text))
        if lone:
            raise JsonRejected(
                f"a string holds an unpaired surrogate escape ({lone[0]}); send valid Unicode"
            )
    return value


def _depth(raw: bytes) -> int:
    """The deepest bracket nesting outside strings (exact for valid JSON; no recursion)."""
    brackets = _NOT_BRACKET.sub(b"", _STRING.sub(b"", raw))
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def _constant(name: str) -> Any:
    raise JsonRejected(f"{name} is not allowed (JSON has no such number; send null or a string)")


def _int(digits: str) -> int:
    n = len(digits.lstrip("-"))
    if n > MAX_INT_DIGITS:
        raise JsonRejected(
            f"an integer has {n} digits; at most {MAX_INT_DIGITS} are allowed (send it as a string)"
        )
    return int(digits)


def _float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        shown = literal if len(literal) <= 32 else literal[:32] + "…"
        raise JsonRejected(f"number {shown!r} is out of range (send it as a string)")
    return value
