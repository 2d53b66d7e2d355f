"""Seed proof 27 (tracing): ``with_tracing`` hooks, and the OpenTelemetry adapter.

Every case runs on SQLite and on PostgreSQL (``any_kits``). The seed's checks:
with no hooks nothing is subscribed (the run completes; no extra database
query either); create / get / cancel hooks fire at their boundaries with the
run's id (create once, get at least once); an ``async def`` hook is awaited
before the call returns (also one fired on the worker's event loop thread);
the store is not wrapped (a bare store is refused: it has no lifecycle); a
hook that raises goes to ``on_error`` (or to a logged warning) and never
breaks the run, and an ``on_error`` that raises is swallowed.

Beyond the seed, the worker's boundaries: a walk starts, its steps start
and end (completed, skipped, failed after a retry, waiting, interrupted by a
cancel or a stop) and the walk ends or parks; a wait makes a second walk.
Hooks subscribe to the kit's lifecycle events, so runs made by a schedule
(the worker's dispatcher and ``kit.dispatch_schedules``) and by a webhook fire
``on_run_create`` and then their walks' hooks; tracing a started kit reports
the walks begun after it. Emitting with no listener builds no event. The OTel adapter, on a private
``TracerProvider`` with an in-memory exporter: a run span with one child
span per step, the trace id is the run id (a resumed run stays in one
trace), a failing step's span and its run's span have status ERROR; the
adapter without OpenTelemetry says which extra to install, and the core
never imports OpenTelemetry.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa
from durable_helpers import KitFactory, NoParams, block, chain_wf, event_wf, wait_until, workflow
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from pydantic import BaseModel

from thodare_jupyter import (
    RetryPolicy,
    RunCanceled,
    RunDescription,
    RunFailed,
    Wfkit,
    define_connector,
    define_workflow,
)
from thodare_jupyter.durable import lifecycle
from thodare_jupyter.durable.lifecycle import Lifecycle
from thodare_jupyter.durable.store import Store
from thodare_jupyter.errors import TracingTargetInvalid
from thodare_jupyter.integrations.otel import with_otel
from thodare_jupyter.integrations.tracing import (
    RunCreateParams,
    StepEnded,
    TracingHooks,
    with_tracing,
)
from thodare_jupyter.integrations.webhooks import WebhookRequest, create_webhook_router

WORKER_HOOKS = ("on_run_start", "on_step_start", "on_step_end", "on_run_park", "on_run_end")


class Msg(BaseModel):
    msg: str


class Done(BaseModel):
    done: bool


def noop_kit(kit: Wfkit, name: str) -> Any:
    """Register a no-op connector on ``kit``; the workflow trigger → ``n`` (no-op)."""
    noop = define_connector(type=f"{name}-noop", params=NoParams, outputs=Done,
                            run=lambda p: Done(done=True))  # fmt: skip
    kit.register(noop)
    return define_workflow(name).input(NoParams).step("n", noop, lambda r: {}).build()


def run_of(event: Any) -> str:
    """The run id of a hook's argument (a ``RunDescription`` or one of the walk events)."""
    return event.id if isinstance(event, RunDescription) else event.run_id


def short(hook: str, e: Any) -> tuple[str, ...]:
    """What a worker hook's event says, in short."""
    if hook == "on_run_start":
        return (e.previous_status,)
    if hook == "on_step_start":
        return (e.block_id, str(e.attempt))
    if hook == "on_step_end":
        return (e.block_id, e.status, str(e.attempt))
    return (e.reason,) if hook == "on_run_park" else (e.status,)


class Recorder:
    """Hooks that record ``(hook name, event)``, thread-safe."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self.lock = threading.Lock()

    def hook(self, name: str) -> Callable[..., None]:
        def record(*args: Any) -> None:
            with self.lock:
                self.events.append((name, args[-1]))

        return record

    def hooks(self, *names: str) -> TracingHooks:
        return TracingHooks(**{n: self.hook(n) for n in names})

    def of(self, name: str, run_id: str | None = None) -> list[Any]:
        with self.lock:
            return [e for n, e in self.events if n == name and run_id in (None, run_of(e))]

    def walk_log(self, run_id: str) -> list[tuple[str, ...]]:
        """The worker events of a run as short tuples, in order."""
        out: list[tuple[str, ...]] = []
        with self.lock:
            for n, e in self.events:
                if n not in WORKER_HOOKS or run_of(e) != run_id:
                    continue
                out.append((n.removeprefix("on_"), *short(n, e)))
        return out


# ── the seed's cases ─────────────────────────────────────────────────────────


def test_with_no_hooks_nothing_is_subscribed_and_runs_complete(any_kits: KitFactory) -> None:
    kit = with_tracing(any_kits(), TracingHooks())
    assert repr(kit.lifecycle) == "<Lifecycle 0 listener(s)>" and not kit.lifecycle.walking
    echo = define_connector(type="tr-echo", params=Msg, outputs=Msg, run=lambda p: p)
    kit.register(echo)
    wf = define_workflow("tr-noop").input(Msg).step("e", echo, lambda r: {"msg": r.input.msg})
    with kit:
        h = kit.run(wf.build(), {"msg": "hi"})
        assert h.result(timeout=30)["e"]["msg"] == "hi"
        assert [r.id for r in kit.runs()] == [h.id]


def test_unset_hooks_add_no_database_query(any_kits: KitFactory) -> None:
    kit = any_kits()  # never started: the only queries are ours
    wf, queries = noop_kit(kit, "tr-quiet"), []
    sa.event.listen(kit.store.engine, "before_cursor_execute", lambda *a: queries.append(a[2]))

    def count(call: Callable[[], Any]) -> int:
        queries.clear()
        call()
        return len(queries)

    def costs(key: str) -> tuple[int, ...]:
        h = kit.run(wf, {})
        return (count(lambda: kit.run(wf, {})), count(lambda: kit.run(wf, {}, idempotency_key=key)),
                count(lambda: kit.run(wf, {}, idempotency_key=key)),  # a key hit
                count(lambda: h.status), count(h.cancel), count(h.cancel))  # fmt: skip

    bare = costs("k1")
    with_tracing(kit, TracingHooks(on_run_start=lambda ev: None, on_step_end=lambda ev: None))
    assert costs("k2") == bare
    seen: list[RunDescription | None] = []
    with_tracing(kit, TracingHooks(on_run_get=seen.append))
    h = kit.get_handle(kit.runs()[0].id)
    assert count(lambda: h.status) > bare[3]
    assert seen and seen[0] is not None and seen[0].id == h.id


def test_emitting_with_no_listener_builds_no_event(monkeypatch: pytest.MonkeyPatch) -> None:
    def built(*a: Any) -> None:
        raise AssertionError("an event was built with no listener for it")

    for name in ("RunCreateParams", "RunRead", "RunCancel", "RunStarted", "StepStarted",
                 "StepEnded", "RunParked", "RunEnded"):  # fmt: skip
        monkeypatch.setattr(lifecycle, name, built)
    hub, row = Lifecycle(), object()

    def emit_all() -> None:
        hub.run_created("r", "wf", {}, None, None, True)
        hub.run_read("r", None)
        hub.run_canceled("r")
        hub.run_started(row, "w")  # type: ignore[arg-type]
        hub.steps_written("r", [row], {})  # type: ignore[list-item]
        hub.step_waiting("r", "b", "t", None)
        hub.run_ended("r", "completed")
        hub.run_parked("r", None)
        hub.walk_stopped("r", "aborted")
        hub.released("w")
        hub.lease_lost("r", built)

    emit_all()
    unsubscribe = hub.subscribe(SimpleNamespace(on_run_create=lambda ev: None))  # kit-side only
    assert not hub.walking
    with pytest.raises(AssertionError, match="an event was built"):
        emit_all()  # run_created builds its event now; the walk events still do not
    unsubscribe()
    emit_all()
    with pytest.raises(TypeError, match="handles no event"):
        hub.subscribe(object())


def test_create_get_and_cancel_hooks_fire_with_the_run_id(any_kits: KitFactory) -> None:
    rec = Recorder()
    created: list[RunCreateParams] = []
    hooks = rec.hooks("on_run_get", "on_run_cancel")

    def on_create(params: RunCreateParams, run: RunDescription) -> None:
        created.append(params)
        rec.hook("create")(run)

    hooks.on_run_create = on_create
    kit = with_tracing(any_kits(), hooks)
    wf = noop_kit(kit, "tr-hooks")
    with kit:
        h = kit.run(wf, {}, idempotency_key="k-1")
        h.result(timeout=30)
        again = kit.run(wf, {}, idempotency_key="k-1")  # the key finds the same run
        assert again.id == h.id
        creates, gets = rec.of("create"), rec.of("on_run_get")
        assert [r.id for r in creates] == [h.id, h.id]
        assert [(p.workflow, p.idempotency_key, p.created) for p in created] == [
            ("tr-hooks", "k-1", True), ("tr-hooks", "k-1", False)]  # fmt: skip
        assert creates[1].status == "completed"  # [0]: read at once, a worker may have it already
        assert h.status == "completed"  # a handle's read (result() may need none here)
        gets = rec.of("on_run_get")
        assert len(gets) >= 1 and gets[-1].status == "completed"
        assert {e.id for n, e in rec.events} == {h.id}
        assert rec.of("on_run_cancel") == []

        waiting = kit.run(event_wf("tr-cancel", {"eventName": "never"}, {"x": 1}), {})
        wait_until(lambda: waiting.status == "waiting", 30, "the run to park")
        assert waiting.cancel() is True and waiting.cancel() is False
    cancels = rec.of("on_run_cancel")
    assert [(r.id, r.status) for r in cancels] == [(waiting.id, "canceled")]


def test_async_hooks_are_awaited_before_the_call_returns(any_kits: KitFactory) -> None:
    state = {"create_done": False}
    ended: list[str] = []

    async def on_create(params: RunCreateParams, run: RunDescription) -> None:
        await asyncio.sleep(0.05)
        state["create_done"] = True

    async def on_step_end(ev: StepEnded) -> None:  # fired on the worker's event loop thread
        await asyncio.sleep(0.05)
        ended.append(ev.block_id)

    kit = with_tracing(any_kits(), TracingHooks(on_run_create=on_create, on_step_end=on_step_end))
    wf = noop_kit(kit, "tr-async")
    with kit:
        h = kit.run(wf, {})
        assert state["create_done"] is True
        h.result(timeout=30)  # the step's end is recorded (and hooked) before the run ends
        assert ended == ["n"]


def test_the_store_is_not_wrapped_and_a_bare_store_is_refused(any_kits: KitFactory) -> None:
    kit = any_kits()
    store = kit.store
    assert with_tracing(kit, TracingHooks(on_run_create=lambda p, r: None)) is kit
    assert type(kit.store) is Store and kit.store is store and kit.worker.store is store
    no_lifecycle = r"takes a Wfkit, not Store: .*lifecycle events \(a bare Store has none\)"
    with pytest.raises(TracingTargetInvalid, match=no_lifecycle):
        with_tracing(kit.store, TracingHooks())  # type: ignore[arg-type]
    with pytest.raises(TracingTargetInvalid, match="not str"):
        with_tracing("sqlite:///x.db", TracingHooks())  # type: ignore[arg-type]


def boom(*_: Any) -> None:
    raise RuntimeError("hook-boom")


def test_a_hook_that_raises_goes_to_on_error_and_the_run_completes(
    any_kits: KitFactory, caplog: pytest.LogCaptureFixture
) -> None:
    errors: list[tuple[str, str]] = []
    hooks = TracingHooks(on_run_create=boom, on_step_end=boom, on_run_end=boom,
                         on_error=lambda e, name: errors.append((str(e), name)))  # fmt: skip
    kit = with_tracing(any_kits(), hooks)
    wf = noop_kit(kit, "tr-hookthrow")
    with kit:
        h = kit.run(wf, {})
        assert h.result(timeout=30)["n"] == {"done": True}
        wait_until(lambda: len(errors) == 3, 30, "the on_run_end error")
    assert errors == [("hook-boom", n) for n in ("on_run_create", "on_step_end", "on_run_end")]

    # without on_error: a warning on the thodare.tracing logger names the hook
    logged = with_tracing(any_kits(), TracingHooks(on_run_create=boom))
    with caplog.at_level(logging.WARNING, logger="thodare.tracing"):
        logged.run(noop_kit(logged, "tr-logged"), {})
    assert [r.levelname for r in caplog.records if r.name == "thodare.tracing"] == ["WARNING"]
    assert "on_run_create" in caplog.text and "hook-boom" in caplog.text


def test_an_on_error_that_raises_is_swallowed(any_kits: KitFactory) -> None:
    kit = with_tracing(any_kits(), TracingHooks(
        on_run_create=boom, on_run_get=boom, on_step_start=boom, on_error=boom))  # fmt: skip
    wf = noop_kit(kit, "tr-errthrow")
    with kit:
        assert kit.run(wf, {}).result(timeout=30)["n"] == {"done": True}


# ── the worker's boundaries ─────────────────────────────────────────────────


def test_step_hooks_fire_for_every_step_and_outcome(any_kits: KitFactory) -> None:
    rec = Recorder()
    kit = with_tracing(any_kits(), rec.hooks(*WORKER_HOOKS))
    tries: list[int] = []

    def explode(p: NoParams) -> None:
        tries.append(1)
        raise ValueError("kaput")

    kit.register(define_connector(type="tr-explode", params=NoParams, outputs=None, run=explode,
                                  retries=RetryPolicy(max_attempts=2, backoff_s=0.01)))  # fmt: skip
    route = workflow("tr-route", [
        block("is_vip", "transform", {"template": "{{trigger.vip}}"}),
        block("vip", "transform", {"template": {"lane": "vip"}}),
        block("std", "transform", {"template": {"lane": "standard"}}),
    ], [{"source": "trg", "target": "is_vip"},
        {"source": "is_vip", "target": "vip", "sourceHandle": "true"},
        {"source": "is_vip", "target": "std", "sourceHandle": "false"}])  # fmt: skip
    failing = chain_wf("tr-fail", block("bad", "tr-explode"),
                       block("after", "transform", {"template": 1}))  # fmt: skip
    with kit:
        ok, bad = kit.run(route, {"vip": True}), kit.run(failing, {})
        ok.result(timeout=30)
        with pytest.raises(RunFailed):
            bad.result(timeout=30)
        wait_until(lambda: len(rec.of("on_run_end")) == 2, 30, "both runs' ends")
    assert rec.walk_log(ok.id) == [
        ("run_start", "pending"),
        ("step_start", "is_vip", "1"), ("step_end", "is_vip", "completed", "1"),
        ("step_start", "vip", "1"), ("step_end", "vip", "completed", "1"),
        ("step_end", "std", "skipped", "0"),
        ("run_end", "completed"),
    ]  # fmt: skip
    assert rec.walk_log(bad.id) == [
        ("run_start", "pending"),
        ("step_start", "bad", "1"), ("step_start", "bad", "2"),
        ("step_end", "bad", "failed", "2"),
        ("run_end", "failed"),
    ]  # fmt: skip
    assert len(tries) == 2
    [failed_step] = [e for e in rec.of("on_step_end", bad.id) if e.status == "failed"]
    assert "kaput" in (failed_step.error or "") and failed_step.duration_s >= 0
    [end] = rec.of("on_run_end", bad.id)
    assert (end.workflow, end.failed_block) == ("tr-fail", "bad") and "kaput" in end.error
    [skipped] = [e for e in rec.of("on_step_end", ok.id) if e.status == "skipped"]
    assert skipped.duration_s is None


def test_a_wait_parks_the_walk_and_the_wake_up_is_a_second_walk(any_kits: KitFactory) -> None:
    rec = Recorder()
    kit = with_tracing(any_kits(), rec.hooks(*WORKER_HOOKS))
    with kit:
        h = kit.run(event_wf("tr-wait", {"eventName": "go"}, {"x": 1}, then_id="then"), {})
        wait_until(lambda: rec.of("on_run_park", h.id), 30, "the walk to park")
        kit.signal("go", {"a": 1})
        h.result(timeout=30)
        wait_until(lambda: rec.of("on_run_end", h.id), 30, "the second walk's end")
    assert rec.walk_log(h.id) == [
        ("run_start", "pending"),
        ("step_start", "wait", "1"), ("step_end", "wait", "waiting", "1"),
        ("run_park", "waiting"),
        ("run_start", "waiting"),
        ("step_start", "wait", "1"), ("step_end", "wait", "completed", "1"),
        ("step_start", "then", "1"), ("step_end", "then", "completed", "1"),
        ("run_end", "completed"),
    ]  # fmt: skip


def test_a_cancel_or_a_stop_ends_the_walk_and_interrupts_its_step(any_kits: KitFactory) -> None:
    rec = Recorder()
    kit = with_tracing(any_kits(), rec.hooks(*WORKER_HOOKS, "on_run_cancel"))

    async def nap(p: NoParams) -> None:
        await asyncio.sleep(30)

    kit.register(define_connector(type="tr-nap", params=NoParams, outputs=None, run=nap))
    wf = chain_wf("tr-nap", block("nap", "tr-nap"))
    with kit:
        canceled, stopped = kit.run(wf, {}), kit.run(wf, {})
        wait_until(lambda: len(rec.of("on_step_start")) == 2, 30, "both naps to start")
        canceled.cancel()
        with pytest.raises(RunCanceled):
            canceled.result(timeout=30)
    # leaving `with` stopped the worker: the other run was handed back
    assert stopped.status == "pending"
    interrupted = [("step_start", "nap", "1"), ("step_end", "nap", "interrupted", "1")]
    assert rec.walk_log(canceled.id) == [("run_start", "pending"), *interrupted,
                                         ("run_end", "canceled")]  # fmt: skip
    assert rec.walk_log(stopped.id) == [("run_start", "pending"), *interrupted,
                                        ("run_park", "released")]  # fmt: skip
    assert [r.id for r in rec.of("on_run_cancel")] == [canceled.id]


def test_tracing_a_started_kit_reports_the_walks_begun_after_it(any_kits: KitFactory) -> None:
    kit = any_kits()
    wf = noop_kit(kit, "tr-late")
    with kit:
        before = kit.run(wf, {})
        before.result(timeout=30)
        rec = Recorder()
        with_tracing(kit, rec.hooks("on_run_create", *WORKER_HOOKS))
        after = kit.run(wf, {})
        after.result(timeout=30)
        wait_until(lambda: rec.of("on_run_end", after.id), 30, "the traced run's end")
    assert rec.of("on_run_start", before.id) == []
    assert rec.walk_log(after.id) == [
        ("run_start", "pending"), ("step_start", "n", "1"), ("step_end", "n", "completed", "1"),
        ("run_end", "completed"),
    ]  # fmt: skip


# ── runs made by schedules and webhooks ───────────────────────────────────────


def created_then_walked(rec: Recorder, run_id: str) -> list[str]:
    """The hook names of one run, in order, from its creation to its end."""
    with rec.lock:
        return [n for n, e in rec.events if run_of(e) == run_id]


def test_a_schedule_made_run_fires_on_run_create_then_its_walk(any_kits: KitFactory) -> None:
    rec = Recorder()
    kit = with_tracing(any_kits(), rec.hooks("on_run_create", *WORKER_HOOKS))
    wf = noop_kit(kit, "tr-cron")
    with kit:  # the worker's own dispatcher
        kit.schedule(wf, "* * * * * *", {}, name="tr-every-second")
        wait_until(lambda: rec.of("on_run_end"), 30, "a scheduled run's end")
        kit.unschedule("tr-every-second")
    [run, *_] = rec.of("on_run_end")
    assert created_then_walked(rec, run.run_id) == [
        "on_run_create", "on_run_start", "on_step_start", "on_step_end", "on_run_end"]  # fmt: skip
    [made] = [d for d in rec.of("on_run_create") if d.id == run.run_id]
    assert made.workflow == "tr-cron" and (made.idempotency_key or "").startswith(
        "cron:tr-every-second:")  # fmt: skip

    # by hand: kit.dispatch_schedules, one create per tick (a tick again makes nothing)
    params: list[RunCreateParams] = []
    later = with_tracing(any_kits(), TracingHooks(on_run_create=lambda p, r: params.append(p)))
    later.schedule(noop_kit(later, "tr-cron-2"), "0 9 * * *", {}, name="tr-nine")
    at = time.time() + 86400 + 60
    [(_, run_id)] = later.dispatch_schedules(at).fired
    assert later.dispatch_schedules(at + 1).fired == []
    assert [(p.run_id, p.workflow, p.created) for p in params] == [(run_id, "tr-cron-2", True)]


def test_a_webhook_made_run_fires_on_run_create_then_its_walk(any_kits: KitFactory) -> None:
    rec = Recorder()
    kit = with_tracing(any_kits(), rec.hooks("on_run_create", *WORKER_HOOKS))
    wf = noop_kit(kit, "tr-hook")
    router = create_webhook_router(kit)
    router.register("/tr", wf, method="post", idempotency_key=lambda req: "same")
    with kit:
        resp = asyncio.run(router.handle(WebhookRequest("POST", "/tr", body={})))
        assert resp.status == 202, resp.body
        run_id = resp.body["runId"]
        kit.get_handle(run_id).result(timeout=30)
        wait_until(lambda: rec.of("on_run_end", run_id), 30, "the webhook run's end")
        again = asyncio.run(router.handle(WebhookRequest("POST", "/tr", body={})))  # redelivered
        assert again.body["runId"] == run_id
    assert created_then_walked(rec, run_id) == [
        "on_run_create", "on_run_start", "on_step_start", "on_step_end", "on_run_end",
        "on_run_create"]  # fmt: skip
    assert [r.status for r in rec.of("on_run_create", run_id)][1] == "completed"


# ── OpenTelemetry ───────────────────────────────────────────────────────────


@pytest.fixture
def otel() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    """A private tracer provider (the global one is left alone) exporting to memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def spans_of(exporter: InMemorySpanExporter, run_id: str) -> list[ReadableSpan]:
    return [s for s in exporter.get_finished_spans()
            if (s.attributes or {}).get("thodare.run.id") == run_id]  # fmt: skip


def test_otel_a_run_span_with_a_child_span_per_step(
    any_kits: KitFactory, otel: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = otel
    kit = with_otel(any_kits(), provider.get_tracer("test"))
    one = define_connector(type="tr-one", params=Msg, outputs=Msg, run=lambda p: p)
    wf = (define_workflow("tr-otel").input(Msg).step("first", one, lambda r: {"msg": r.input.msg})
          .step("second", one, lambda r: {"msg": r.first.msg}))  # fmt: skip
    kit.register(one)
    with kit:
        h = kit.run(wf.build(), {"msg": "hi"})
        assert h.result(timeout=30)["second"] == {"msg": "hi"}
        wait_until(lambda: len(spans_of(exporter, h.id)) == 3, 30, "3 spans")
    spans = {s.name: s for s in spans_of(exporter, h.id)}
    assert set(spans) == {"workflow.run tr-otel", "step first", "step second"}
    run = spans["workflow.run tr-otel"]
    assert run.context is not None and run.context.trace_id == int(h.id, 16)
    assert dict(run.attributes or {}) == {
        "thodare.run.id": h.id, "thodare.workflow.name": "tr-otel",
        "thodare.run.previous_status": "pending", "thodare.worker.id": kit.worker.owner,
        "thodare.run.status": "completed"}  # fmt: skip
    assert run.status.status_code == StatusCode.UNSET
    for block_id in ("first", "second"):
        step = spans[f"step {block_id}"]
        assert step.parent is not None and step.parent.span_id == run.context.span_id
        assert step.context is not None and step.context.trace_id == run.context.trace_id
        assert dict(step.attributes or {}) == {
            "thodare.run.id": h.id, "thodare.step.id": block_id, "thodare.step.type": "tr-one",
            "thodare.step.attempt": 1, "thodare.step.status": "completed"}  # fmt: skip
        assert step.status.status_code == StatusCode.UNSET


def test_otel_a_failing_step_has_error_status_and_a_resumed_run_one_trace(
    any_kits: KitFactory, otel: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = otel
    kit = with_otel(any_kits(), provider.get_tracer("test"))
    kit.register(define_connector(type="tr-raise", params=NoParams, outputs=None, run=boom))
    with kit:
        bad = kit.run(chain_wf("tr-bad", block("b", "tr-raise")), {})
        waits = kit.run(event_wf("tr-otel-wait", {"eventName": "go"}, {"x": 1}), {})
        with pytest.raises(RunFailed):
            bad.result(timeout=30)
        wait_until(lambda: len(spans_of(exporter, waits.id)) == 2, 30, "the first walk")
        kit.signal("go", {})
        waits.result(timeout=30)
        wait_until(lambda: len(spans_of(exporter, waits.id)) == 5, 30, "the second walk")
        wait_until(lambda: len(spans_of(exporter, bad.id)) == 2, 30, "the failed run's spans")
    step, run = sorted(spans_of(exporter, bad.id), key=lambda s: s.name)
    assert (step.name, run.name) == ("step b", "workflow.run tr-bad")
    assert step.status.status_code == StatusCode.ERROR and "hook-boom" in str(
        step.status.description)  # fmt: skip
    assert [e.name for e in step.events] == ["exception"]
    assert run.status.status_code == StatusCode.ERROR
    assert (run.attributes or {})["thodare.run.failed_block"] == "b"

    walked = spans_of(exporter, waits.id)
    assert {s.context.trace_id for s in walked if s.context} == {int(waits.id, 16)}
    runs = [s for s in walked if s.name.startswith("workflow.run")]
    assert [((s.attributes or {})["thodare.run.previous_status"],
             (s.attributes or {})["thodare.run.status"]) for s in runs] == [
        ("pending", "waiting"), ("waiting", "completed")]  # fmt: skip
    steps = [(s.name, (s.attributes or {})["thodare.step.status"]) for s in walked
             if s.name.startswith("step")]  # fmt: skip
    assert steps == [("step wait", "waiting"), ("step wait", "completed"),
                     ("step after", "completed")]  # fmt: skip


def test_otel_without_the_extra_says_what_to_install_and_the_core_never_imports_it() -> None:
    code = textwrap.dedent("""
        import sys
        import thodare_jupyter, thodare_jupyter.integrations.tracing
        assert not [m for m in sys.modules if m.startswith("opentelemetry")], "core imported otel"
        sys.modules["opentelemetry"] = None  # as if the extra were not installed
        try:
            import thodare_jupyter.integrations.otel
        except ImportError as e:
            print(e)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "pip install 'thodare-jupyter[otel]'" in out.stdout


def test_a_claim_before_the_creator_announces_waits_for_on_run_create(
    any_kits: KitFactory,
) -> None:
    """The creator's ``on_run_create`` handler is slow; the worker claims the committed
    run meanwhile and its ``on_run_start`` still comes after the create."""
    order: list[tuple[str, str]] = []

    def slow_create(params: Any, desc: RunDescription) -> None:
        time.sleep(0.6)  # the worker polls and claims the run in this time
        order.append(("create", desc.id))

    hooks = TracingHooks(on_run_create=slow_create,
                         on_run_start=lambda e: order.append(("start", e.run_id)))  # fmt: skip
    kit = with_tracing(any_kits(), hooks)
    wf = noop_kit(kit, "tr-slow-create")
    with kit:
        runs = [kit.run(wf, {}, idempotency_key=f"k{i}") for i in range(3)]  # keyed: not adopted
        for h in runs:
            h.result(timeout=30)
    for h in runs:
        assert [what for what, run in order if run == h.id] == ["create", "start"]


def test_a_slow_create_handler_elsewhere_holds_only_its_own_run(any_kits: KitFactory) -> None:
    """While another thread's ``on_run_create`` handler runs for a run the worker has
    claimed, that run waits (off the worker's loop): another run goes start to end."""
    order: list[tuple[str, str]] = []
    slow_id: list[str] = []

    def create(params: Any, desc: RunDescription) -> None:
        if desc.workflow == "tr-slow":
            slow_id.append(desc.id)
            time.sleep(3.0)  # the worker claims the run meanwhile
        order.append(("create", desc.id))

    hooks = TracingHooks(on_run_create=create,
                         on_run_start=lambda e: order.append(("start", e.run_id)))  # fmt: skip
    kit = with_tracing(any_kits(), hooks)
    slow, fast = noop_kit(kit, "tr-slow"), noop_kit(kit, "tr-fast")
    with kit:
        made: list[Any] = []
        maker = threading.Thread(target=lambda: made.append(kit.run(slow, {}, idempotency_key="s")))
        maker.start()
        claimed = lambda: slow_id and kit.store.runs.get_run(slow_id[0]).status == "running"  # noqa: E731
        wait_until(claimed, 10, "the worker claimed the run whose create handler runs")
        t0 = time.monotonic()
        quick = kit.run(fast, {})
        quick.result(timeout=30)
        assert time.monotonic() - t0 < 2.0, "the other run waited for the slow handler"
        maker.join(30)
        made[0].result(timeout=30)
    assert [w for w, run in order if run == made[0].id] == ["create", "start"]
    assert [w for w, run in order if run == quick.id] == ["create", "start"]


def test_a_worker_that_claims_first_announces_the_create_itself() -> None:
    """Same thread (a child run made by the worker's own loop): no wait; the claim fires
    ``on_run_create`` first and the creator's later call fires nothing more."""
    hub, seen = Lifecycle(), []
    hub.subscribe(SimpleNamespace(
        on_run_create=lambda p: seen.append(("create", p.run_id)),
        on_run_start=lambda e: seen.append(("start", e.run_id)),
    ))  # fmt: skip
    row = SimpleNamespace(id="c1", workflow_name="wf", claimed_from="pending", status="running")
    hub.run_creating("c1", "wf", {})
    assert hub.create_to_wait_for("c1") is None  # fired here: nothing to wait for
    hub.run_started(row, "w")  # type: ignore[arg-type]
    hub.run_created("c1", "wf", {})
    assert seen == [("create", "c1"), ("start", "c1")]
    hub.run_creating("gone", "wf", {}, "key")  # the key found run "old": the announcement goes
    hub.run_created("old", "wf", {}, "key", created=False, asked="gone")
    assert seen[-1] == ("create", "old") and not hub._creating
