"""``loads_bounded``: JSON from strangers, decoded with size, depth and number caps.

Each hostile shape is refused with a :class:`JsonRejected` (a ``ValueError``)
whose message names the problem, never a ``RecursionError``; the depth check
scans brackets without recursion, so 1 MiB of ``[`` costs little.
"""

from __future__ import annotations

import json
import math
import time
from typing import Any

import pytest

from thodare_jupyter.errors import ThodareError
from thodare_jupyter.jsonsafe import (
    MAX_DEPTH,
    MAX_INT_DIGITS,
    JsonRejected,
    JsonTooLarge,
    loads_bounded,
)

MiB = 1 << 20


def load(raw: bytes | str, **kw: Any) -> Any:
    kw.setdefault("max_bytes", MiB)
    kw.setdefault("max_depth", MAX_DEPTH)
    return loads_bounded(raw.encode() if isinstance(raw, str) else raw, **kw)


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        ('{"a": [1, 2.5, "x", true, null]}', {"a": [1, 2.5, "x", True, None]}),
        ('"[[[[{{{{"', "[[[[{{{{"),  # brackets inside strings do not nest
        ('["\\"[[[", "\\\\", "]]"]', ['"[[[', "\\", "]]"]),
        ("[" * 64 + "]" * 64, json.loads("[" * 64 + "]" * 64)),  # exactly the cap
        ("-" + "9" * MAX_INT_DIGITS, -int("9" * MAX_INT_DIGITS)),
        ("1e308", 1e308),
        ("  7 ", 7),
        (
            '["\\ud83d\\ude00", "\\u00e9", "\\\\ud800", "\\n"]',
            ["\U0001f600", "\u00e9", "\\ud800", "\n"],
        ),
    ],
)
def test_ordinary_json_decodes(raw: str, value: Any) -> None:
    assert load(raw) == value


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("[" * 65 + "]" * 65, "nested more than 64 levels deep"),
        ('{"a":' * 65 + "1" + "}" * 65, "nested more than 64 levels deep"),
        ("[" * 100_000, "nested more than 64 levels deep"),
        ('{"a": NaN}', "NaN is not allowed"),
        ("[Infinity]", "Infinity is not allowed"),
        ("-Infinity", "-Infinity is not allowed"),
        ("[1e999]", "number '1e999' is out of range"),
        ("9" * (MAX_INT_DIGITS + 1), "an integer has 4301 digits; at most 4300 are allowed"),
        (b'{"a": "\xff"}', "not UTF-8 (invalid start byte at byte 7)"),
        ('["\\ud800"]', "a string holds an unpaired surrogate escape (\\ud800)"),
        ('{"a": "x\\uDC00"}', "a string holds an unpaired surrogate escape (\\uDC00)"),
        ('["\\\\\\ud800"]', "a string holds an unpaired surrogate escape (\\ud800)"),
        ('["\\ude00\\ud83d"]', "a string holds an unpaired surrogate escape (\\ude00)"),
        ("{not json", "not JSON (Expecting property name enclosed in double quotes: line 1"),
        ("", "not JSON (Expecting value: line 1 column 1 (char 0))"),
        ('["unterminated', "not JSON (Unterminated string"),
    ],
)
def test_hostile_json_is_rejected_naming_the_problem(raw: str | bytes, problem: str) -> None:
    with pytest.raises(JsonRejected) as info:
        load(raw)
    assert str(info.value).startswith(problem), str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, ThodareError)
    assert not isinstance(info.value, JsonTooLarge)


def test_size_is_checked_first_and_is_its_own_subclass() -> None:
    with pytest.raises(JsonTooLarge, match=r"^is 11 bytes; at most 10 are allowed"):
        load(b"[" * 11, max_bytes=10)
    assert load(b'"' + b"x" * 8 + b'"', max_bytes=10) == "x" * 8


def test_the_depth_cap_is_a_parameter() -> None:
    assert load("[[[]]]", max_depth=3) == [[[]]]
    with pytest.raises(JsonRejected, match="nested more than 2 levels deep"):
        load("[[[]]]", max_depth=2)


def test_worst_case_scans_stay_fast() -> None:
    """A MiB of brackets, or of escaped quotes that never close, is linear work."""
    for raw in (b"[]" * (MiB // 2), b'"\\' * (MiB // 2), b"[" * MiB):
        start = time.perf_counter()
        with pytest.raises(JsonRejected):
            load(raw, max_bytes=MiB)
        assert time.perf_counter() - start < 2.0
    assert math.isfinite(load("1.5"))
