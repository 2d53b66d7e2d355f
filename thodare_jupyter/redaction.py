"""Secrets out of text: which values of a run are secret, and scrubbing them from messages.

A run's secrets are the values of the ``env`` entries its workflow reads
(``{{env.X}}``) or whose names look secret (``*KEY*``, ``*TOKEN*``, ...), the
values of hidden params, and every ``env`` value a step reads through
``ctx.env``. A :class:`Redactor` replaces each of them, and the ways it is
written inside JSON, a ``repr`` or a URL, by ``***``. Errors pass through one
before they are stored, shown, logged or sent to a model. :func:`safe_url` prints a
database or store URL with its password and secret-looking parameters masked.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import quote, quote_plus, unquote_plus

from .templates import env_refs

MASK = "***"
SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH|COOKIE", re.I)
MIN_SECRET_LEN = 4  # shorter values ("1", "yes") would mask ordinary text


class Redactor:
    """Replaces known secret values by ``***``; grows as a run reveals more (thread-safe)."""

    def __init__(self, secrets: Iterable[Any] = ()) -> None:
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()
        self.add(secrets)

    def add(self, *values: Any) -> None:
        """Treat every string (and number) inside ``values`` as a secret from now on."""
        found = {s for s in _strings(values) if len(s) >= MIN_SECRET_LEN}
        with self._lock:
            if found - self._values:
                self._values |= found
                self._pattern = None

    def __bool__(self) -> bool:
        return bool(self._values)

    def __call__(self, text: str) -> str:
        """``text`` with every secret, in every encoding we know, replaced by ``***``."""
        pattern = self._compiled()
        return text if pattern is None else pattern.sub(MASK, text)

    def _compiled(self) -> re.Pattern[str] | None:
        with self._lock:
            if self._pattern is None and self._values:
                forms = {f for v in self._values for f in _encodings(v) if f}
                alternatives = sorted(forms, key=len, reverse=True)  # longest first
                self._pattern = re.compile("|".join(map(re.escape, alternatives)))
            return self._pattern


class ReadingEnv(Mapping[str, str]):
    """``ctx.env``: the run's env, where every value a step reads becomes a secret."""

    def __init__(self, env: Mapping[str, str], redactor: Redactor) -> None:
        self._env, self._redactor = env, redactor

    def __getitem__(self, key: str) -> str:
        value = self._env[key]
        self._redactor.add(value)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._env)

    def __len__(self) -> int:
        return len(self._env)


def run_secrets(
    workflow_json: Any, env: Mapping[str, str], hidden_values: Iterable[Any] = ()
) -> list[Any]:
    """The secrets known before a run starts: env values it reads or that look secret,
    and ``hidden_values``."""
    read = env_refs(workflow_json)
    return [v for k, v in env.items() if k in read or SECRET_NAME.search(k)] + list(hidden_values)


def run_redactor(
    workflow_json: Any, env: Mapping[str, str], hidden_values: Iterable[Any] = ()
) -> Redactor:
    """A :class:`Redactor` of :func:`run_secrets`."""
    return Redactor(run_secrets(workflow_json, env, hidden_values))


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int | float):
        try:
            yield str(value)
        except ValueError:  # an int too long to print is no secret we could match
            return
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list | tuple | set | frozenset):
        for v in value:
            yield from _strings(v)


def _encodings(value: str) -> set[str]:
    """The value as written raw, inside JSON (both escapings), a ``repr`` and a URL."""
    return {
        value,
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        repr(value)[1:-1],
        quote(value, safe=""),
        quote_plus(value, safe=""),
    }


MAX_PARAM_CHARS = 8192
"""A resolved param longer than this (as JSON) is kept as a note of its size only."""


def masked_params(
    resolved: Mapping[str, Any],
    templates: Mapping[str, Any],
    hidden: Iterable[str],
    redactor: Redactor,
) -> dict[str, Any]:
    """A step's resolved params safe to store and show: a hidden param, and one whose
    template reads ``{{env.X}}``, is ``***``; every known secret inside the rest too;
    a value over :data:`MAX_PARAM_CHARS` of JSON is a note of its size."""
    hidden = frozenset(hidden)
    out: dict[str, Any] = {}
    for k, v in resolved.items():
        if k in hidden or env_refs(templates.get(k)):
            out[k] = MASK
            continue
        size = len(json.dumps(v, default=str))
        out[k] = _masked(v, redactor) if size <= MAX_PARAM_CHARS else f"({size} chars of JSON)"
    return out


def _masked(value: Any, redactor: Redactor) -> Any:
    if isinstance(value, str):
        return redactor(value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return MASK if redactor(str(value)) != str(value) else value
    if isinstance(value, Mapping):
        return {redactor(str(k)): _masked(v, redactor) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_masked(v, redactor) for v in value]
    return redactor(str(value))


_SECRET_WORDS = ("pass", "pwd", "secret", "token", "key", "credential", "auth")


def _secret(name: str) -> bool:
    """Whether a parameter name (maybe percent-encoded) looks like it holds a secret."""
    low = unquote_plus(name).lower()
    return any(w in low for w in _SECRET_WORDS)


def _masked_query(query: str) -> str:
    """A query string with the value of every secret-looking parameter replaced by ``***``."""
    parts = re.split(r"([&;])", query)
    out = []
    for part in parts:
        name, eq, _ = part.partition("=")
        out.append(f"{name}=***" if eq and _secret(name) else part)
    return "".join(out)


def safe_url(url: str) -> str:
    """``scheme://user:***@host/db?password=***``: a URL or DSN safe to print; never raises.

    Masks the userinfo's password (also one with unencoded ``@``, ``/``, ``?``
    or ``#``) and the value of every query parameter, or libpq ``key=value``,
    whose name looks secret (``password``, ``passwd``, ``pwd``, ``secret``,
    ``*token*``, ``*key*``, ``*auth*``, ``*credential*``, any case, also
    percent-encoded). The rest stays as written; an unparseable value shows ``***``.
    """
    try:
        text = str(url)
        head, sep, rest = text.partition("://")
        if not sep:  # a path, or a libpq keyword DSN (host=db password=...)
            pair = r"([\w.-]+)(\s*=\s*)('(?:[^'\\]|\\.)*'|\S*)"
            return re.sub(pair, lambda m: f"{m[1]}{m[2]}***" if _secret(m[1]) else m[0], text)
        auth = ""  # "user:***@": the last '@' before a host[:port], after a user without /?#
        for at in reversed([m.start() for m in re.finditer("@", rest)]):
            host = re.split(r"[/?#]", rest[at + 1 :], maxsplit=1)[0]
            user, colon, _ = rest[:at].partition(":")
            if re.fullmatch(r"[\w.\-\[\]:%]*", host) and not re.search(r"[/?#]", user):
                auth, rest = (f"{user}:***@" if colon else f"{user}@"), rest[at + 1 :]
                break
        base, q, query = rest.partition("?")
        query, hsh, frag = query.partition("#")
        return f"{head}://{auth}{base}{q}{_masked_query(query) if q else query}{hsh}{frag}"
    except Exception:
        return "***"
