"""OpenTelemetry spans for durable runs: ``with_otel(kit)`` or ``otel_hooks(tracer)``.

Needs the ``otel`` extra (``pip install 'thodare-jupyter[otel]'``); nothing
else in the package imports OpenTelemetry. Spans go to the tracer you pass
(default: ``trace.get_tracer("thodare_jupyter")`` on the global provider).

* ``workflow.run <name>``: one span per walk of a run (a run that waits is
  walked again when it wakes, maybe on another worker), with
  ``thodare.run.id``, ``thodare.workflow.name``, ``thodare.run.previous_status``,
  ``thodare.worker.id`` and, at its end, ``thodare.run.status``: ``completed``,
  ``failed`` (span status ERROR), ``canceled``, ``waiting``, ``released`` or
  ``lease_lost``.
* ``step <block_id>``: a child span per step attempt, with ``thodare.step.id``,
  ``.type``, ``.attempt`` and ``.status``; a failed step has status ERROR and an
  ``exception`` event carrying the error.

One trace per run: every walk span has the same remote parent, whose trace id
is the run id (a uuid4, 128 bits) and whose span id comes from it, so all the
walks of a run share one trace across waits, restarts and workers. That parent
is never exported itself (backends may call it a missing parent), and it is
marked sampled, so a parent-based sampler keeps every run.
"""

from __future__ import annotations

import threading

from ..kit import Wfkit
from .tracing import (
    RunEnded,
    RunParked,
    RunStarted,
    StepEnded,
    StepStarted,
    TracingHooks,
    with_tracing,
)

try:
    from opentelemetry import trace
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, SpanContext, StatusCode, TraceFlags, Tracer
except ImportError as e:  # the optional extra is missing
    raise ImportError(
        "thodare_jupyter.integrations.otel needs OpenTelemetry: pip install 'thodare-jupyter[otel]'"
    ) from e


def run_trace_context(run_id: str) -> Context:
    """The context every walk span of ``run_id`` starts in (trace id = the run id)."""
    try:
        trace_id = int(run_id, 16)
    except ValueError:  # not a hex id (runs made by kit.run always have one): a trace per walk
        return Context()
    if not 0 < trace_id < 1 << 128:
        return Context()
    parent = SpanContext(
        trace_id=trace_id,
        span_id=(trace_id & 0xFFFF_FFFF_FFFF_FFFF) or 1,
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )
    return trace.set_span_in_context(trace.NonRecordingSpan(parent))


class _Spans:
    """The open spans of the walks and steps in flight, by run id and block id."""

    def __init__(self, tracer: Tracer) -> None:
        self.tracer = tracer
        self.lock = threading.Lock()
        self.runs: dict[str, Span] = {}
        self.steps: dict[tuple[str, str], Span] = {}

    def run_start(self, ev: RunStarted) -> None:
        span = self.tracer.start_span(
            f"workflow.run {ev.workflow}",
            context=run_trace_context(ev.run_id),
            attributes={
                "thodare.run.id": ev.run_id,
                "thodare.workflow.name": ev.workflow or "",
                "thodare.run.previous_status": ev.previous_status,
                "thodare.worker.id": ev.worker,
            },
        )
        with self.lock:
            self.runs[ev.run_id] = span

    def _step_span(self, run_id: str, block_id: str, type_: str) -> Span:
        with self.lock:
            parent = self.runs.get(run_id)
        ctx = trace.set_span_in_context(parent) if parent else run_trace_context(run_id)
        return self.tracer.start_span(
            f"step {block_id}",
            context=ctx,
            attributes={
                "thodare.run.id": run_id,
                "thodare.step.id": block_id,
                "thodare.step.type": type_,
            },
        )

    def step_start(self, ev: StepStarted) -> None:
        span = self._step_span(ev.run_id, ev.block_id, ev.type)
        span.set_attribute("thodare.step.attempt", ev.attempt)
        with self.lock:
            self.steps[(ev.run_id, ev.block_id)] = span

    def step_end(self, ev: StepEnded) -> None:
        with self.lock:
            span = self.steps.pop((ev.run_id, ev.block_id), None)
        if span is None:  # a step without a start: skipped
            span = self._step_span(ev.run_id, ev.block_id, ev.type)
        span.set_attribute("thodare.step.attempt", ev.attempt)
        span.set_attribute("thodare.step.status", ev.status)
        if ev.status == "failed":
            span.add_event("exception", {"exception.message": ev.error or ""})
            span.set_status(StatusCode.ERROR, ev.error)
        span.end()

    def run_stop(self, run_id: str, status: str, error: str | None = None) -> None:
        with self.lock:
            span = self.runs.pop(run_id, None)
        if span is None:
            return
        span.set_attribute("thodare.run.status", status)
        if status == "failed":
            span.set_status(StatusCode.ERROR, error)
        span.end()

    def run_park(self, ev: RunParked) -> None:
        self.run_stop(ev.run_id, ev.reason)

    def run_end(self, ev: RunEnded) -> None:
        if ev.failed_block is not None:
            with self.lock:
                span = self.runs.get(ev.run_id)
            if span is not None:
                span.set_attribute("thodare.run.failed_block", ev.failed_block)
        self.run_stop(ev.run_id, ev.status, ev.error)


def otel_hooks(tracer: Tracer | None = None) -> TracingHooks:
    """:class:`~.tracing.TracingHooks` that make the spans described in this module.

    Args:
        tracer: Where spans go (default: the global provider's ``thodare_jupyter`` tracer).
    """
    spans = _Spans(tracer or trace.get_tracer("thodare_jupyter"))
    return TracingHooks(
        on_run_start=spans.run_start,
        on_step_start=spans.step_start,
        on_step_end=spans.step_end,
        on_run_park=spans.run_park,
        on_run_end=spans.run_end,
    )


def with_otel(kit: Wfkit, tracer: Tracer | None = None) -> Wfkit:
    """``with_tracing(kit, otel_hooks(tracer))``: spans for the runs walked from now on."""
    return with_tracing(kit, otel_hooks(tracer))
