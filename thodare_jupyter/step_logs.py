"""Step logs: what a step prints, logs or writes with ``ctx.log(...)``, captured per attempt.

Capture is context-local (:mod:`contextvars`): the worker sets the current
:class:`Capture` around one attempt of one step, and a sync step's thread
carries it (``loop_threads.in_thread`` copies the context). ``sys.stdout`` and
``sys.stderr`` are shared by every thread, so :func:`install` wraps them once in
a proxy that sends a write to the current capture, and passes it through to the
stream it wraps otherwise: the notebook's own cells and concurrent steps never
mix. Records of :mod:`logging` that reach the root logger (they pass their
logger's level) are captured the same way by a handler the root logger holds
while any step runs.

A capture holds at most :data:`MAX_BYTES` of text an attempt; the rest is
counted, not kept. Its lines are masked by the run's redactor when it ends.
"""

from __future__ import annotations

import contextvars
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

MAX_BYTES = 64 << 10
"""The text kept of one attempt (UTF-8 bytes); more is cut and counted."""

STREAMS = ("stdout", "stderr", "log")
"""Where a line came from: ``print``/``sys.stdout``, ``sys.stderr``, ``logging``/``ctx.log``."""

_CURRENT: contextvars.ContextVar[Capture | None] = contextvars.ContextVar(
    "thodare_step_capture", default=None
)
_CAPTURED = "thodare_captured"
"""A record attribute: the record is already in the capture (from ``ctx.log``)."""


@dataclass(frozen=True)
class LogLine:
    """One line a step wrote: when, where, which block and attempt, what."""

    at: float
    stream: str
    block_id: str
    attempt: int
    text: str

    def __str__(self) -> str:
        clock = time.strftime("%H:%M:%S", time.localtime(self.at))
        return f"{clock} {self.block_id}#{self.attempt} {self.stream}: {self.text}"


class Capture:
    """The lines of one attempt of one step (thread-safe; bounded)."""

    def __init__(self, block_id: str, attempt: int, max_bytes: int = MAX_BYTES) -> None:
        self.block_id, self.attempt, self.max_bytes = block_id, attempt, max_bytes
        self.lines: list[tuple[float, str, str]] = []
        self.size = 0
        self.cut = 0
        """Bytes not kept (over ``max_bytes``)."""
        self._partial: dict[str, str] = {}
        self._lock = threading.Lock()

    def write(self, stream: str, text: str) -> None:
        """Add ``text`` written to ``stream``; whole lines are kept, a partial one waits."""
        if not text:
            return
        with self._lock:
            text = self._partial.pop(stream, "") + text
            *whole, rest = text.split("\n")
            for line in whole:
                self._add(stream, line.removesuffix("\r"))
            if rest:
                if len(rest) > self.max_bytes:  # no newline ever: don't grow without bound
                    self._add(stream, rest)
                else:
                    self._partial[stream] = rest

    def line(self, stream: str, text: str) -> None:
        """Add ``text`` as whole lines (a log record, ``ctx.log``)."""
        with self._lock:
            for part in text.split("\n"):
                self._add(stream, part)

    def _add(self, stream: str, line: str) -> None:
        n = len(line.encode("utf-8", "replace")) + 1
        if self.cut or self.size + n > self.max_bytes:
            self.cut += n
            return
        self.size += n
        self.lines.append((time.time(), stream, line))

    def finish(self, mask: Callable[[str], str]) -> tuple[list[tuple[float, str, str]], int]:
        """The attempt's lines, masked by ``mask``, and the bytes cut."""
        with self._lock:
            for stream, rest in list(self._partial.items()):
                self._add(stream, rest)
            self._partial.clear()
            return [(t, s, mask(text)) for t, s, text in self.lines], self.cut


def current() -> Capture | None:
    """The capture of the step running in this context, if any."""
    return _CURRENT.get()


def begin(capture: Capture) -> contextvars.Token[Capture | None]:
    """Capture this context's output into ``capture`` (until :func:`end`)."""
    global _active
    install()
    with _install_lock:
        _active += 1
        if _HANDLER not in logging.root.handlers:
            logging.root.addHandler(_HANDLER)
    return _CURRENT.set(capture)


def end(token: contextvars.Token[Capture | None]) -> None:
    """Stop the capture :func:`begin` started; the root logger's handler goes with the
    last capture (so ``logging.basicConfig`` between runs still configures logging)."""
    global _active
    try:
        _CURRENT.reset(token)
    finally:
        with _install_lock:
            _active -= 1
            if _active <= 0:
                _active = 0
                logging.root.removeHandler(_HANDLER)


class _Router:
    """``sys.stdout``/``sys.stderr``: a write goes to the current capture, else through."""

    def __init__(self, inner: TextIO, stream: str) -> None:
        self._thodare_inner, self._thodare_stream = inner, stream

    def write(self, text: str) -> int:
        cap = _CURRENT.get()
        if cap is None:
            return self._thodare_inner.write(text)
        cap.write(self._thodare_stream, str(text))
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if _CURRENT.get() is None:
            self._thodare_inner.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._thodare_inner, name)


class _Handler(logging.Handler):
    """On the root logger: a record emitted during a step goes into its capture. Outside
    a step it does what Python does when no handler is set (the last-resort handler)."""

    def emit(self, record: logging.LogRecord) -> None:
        cap = _CURRENT.get()
        if cap is not None:
            if not getattr(record, _CAPTURED, False):
                cap.line("log", _format(record))
            return
        last = logging.lastResort
        if last is not None and record.levelno >= last.level and self._alone(record):
            last.handle(record)

    def _alone(self, record: logging.LogRecord) -> bool:
        """True when no other handler would see ``record`` (then Python would use
        the last-resort handler, and this one must not hide it)."""
        logger: logging.Logger | None = logging.getLogger(record.name)
        while logger is not None:
            if any(h is not self for h in logger.handlers):
                return False
            if not logger.propagate:
                return True
            logger = logger.parent
        return True


def _format(record: logging.LogRecord) -> str:
    return f"{record.levelname} {record.name}: {record.getMessage()}"


_HANDLER = _Handler()
_install_lock = threading.RLock()


_active = 0
"""Captures under way (the root logger holds the handler while there are any)."""


def install() -> None:
    """Route ``sys.stdout`` and ``sys.stderr`` by context (idempotent; again after
    something replaced them)."""
    if isinstance(sys.stdout, _Router) and isinstance(sys.stderr, _Router):
        return
    with _install_lock:
        if not isinstance(sys.stdout, _Router) and sys.stdout is not None:
            sys.stdout = _Router(sys.stdout, "stdout")
        if not isinstance(sys.stderr, _Router) and sys.stderr is not None:
            sys.stderr = _Router(sys.stderr, "stderr")


class StepLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """``ctx.log``: call it to write a line to the step's logs (``ctx.log("rows: %d", n)``),
    or use it as a logger (``ctx.log.info(...)``): records of INFO and up are kept in
    the step's logs whatever the logger's level, and reach logging's handlers as usual."""

    def __call__(self, msg: object, *args: object) -> None:
        text = str(msg) % args if args else str(msg)
        cap = _CURRENT.get()
        if cap is not None:
            cap.line("log", text)
        else:
            self.info(text)

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        cap = _CURRENT.get()
        if cap is not None and level >= logging.INFO:
            text = str(msg) % args if args else str(msg)
            cap.line("log", f"{logging.getLevelName(level)} {self.logger.name}: {text}")
            kwargs["extra"] = {**(kwargs.get("extra") or {}), _CAPTURED: True}
        super().log(level, msg, *args, **kwargs)

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        kwargs["extra"] = {**(self.extra or {}), **(kwargs.get("extra") or {})}
        return msg, kwargs
