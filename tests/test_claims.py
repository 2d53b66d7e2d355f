"""A claim takes at most ``limit`` runs, and concurrent claimers never share one
(SQLite and PostgreSQL; on PostgreSQL the picked ids must be computed once, not
rescanned per row with SKIP LOCKED)."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from typing import Any

from durable_helpers import wait_until
from pydantic import BaseModel

from thodare_jupyter import Connector, StepContext, create_wfkit, define_connector, define_workflow
from thodare_jupyter.durable.store import Store

WF = '{"blocks":[{"id":"a","type":"t"}]}'


class N(BaseModel):
    n: int


def _gated() -> tuple[Connector, threading.Event]:
    """A connector ``hold`` whose steps return their params once the event is set."""
    gate = threading.Event()

    def hold(p: N) -> N:
        gate.wait(30)
        return p

    return define_connector(type="hold", params=N, outputs=N, run=hold), gate


def test_a_claim_takes_at_most_its_limit_oldest_first(db_url: str) -> None:
    store = Store(db_url, f"c{uuid.uuid4().hex[:8]}")
    try:
        for i in range(30):
            store.runs.create_run("w", WF, {"i": i})
        first = store.runs.claim("w1", 16, 30.0, ["t"])
        rest = store.runs.claim("w2", 16, 30.0, ["t"])
    finally:
        store.dispose()
    assert sorted(r.input["i"] for r in first) == list(range(16))
    assert sorted(r.input["i"] for r in rest) == list(range(16, 30))
    assert {r.claimed_from for r in first + rest} == {"pending"}


def test_concurrent_claimers_never_share_a_run(db_url: str) -> None:
    stores = [Store(db_url, "shared-claims") for _ in range(4)]
    try:
        ids = {stores[0].runs.create_run("w", WF, {"i": i})[0] for i in range(200)}
        got: list[list[str]] = [[] for _ in stores]

        def claim(k: int) -> None:
            while batch := stores[k].runs.claim(f"w{k}", 5, 30.0, ["t"]):
                got[k].extend(r.id for r in batch)

        threads = [threading.Thread(target=claim, args=(k,)) for k in range(len(stores))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        for s in stores:
            s.dispose()
    taken = [run_id for g in got for run_id in g]
    assert len(taken) == len(set(taken)) == 200 and set(taken) == ids


def test_a_kit_inserts_its_own_run_claimed_and_falls_back_to_pending(db_url: str) -> None:
    """A kit whose worker has a free slot and every connector inserts the run already
    claimed (no claim round trip); otherwise the run is pending for any worker."""
    held, gate = _gated()
    kit = create_wfkit(db_url, env={}, namespace=f"e{uuid.uuid4().hex[:8]}", concurrency=1)
    kit.register(held)
    wf = define_workflow("eager").input(N).step("h", held, lambda r: {"n": r.input.n}).build()
    try:
        stopped = kit.run(wf, {"n": 0})  # no worker yet: pending
        assert kit.store.runs.get_run(stopped.id).status == "pending"
        kit.start()
        wait_until(lambda: stopped.describe().status == "running", 10, "the pending run claimed")
        full = kit.run(wf, {"n": 1})  # the only slot is taken: pending
        assert kit.store.runs.get_run(full.id).status == "pending"
        gate.set()
        assert full.result(timeout=20)["h"] == {"n": 1}
        gate.clear()
        eager = kit.run(wf, {"n": 2})
        row = kit.store.runs.get_run(eager.id)
        assert (row.status, row.lease_owner, row.claimed_from) == (
            "running", kit.worker.owner, "pending",
        )  # fmt: skip
        gate.set()
        assert eager.result(timeout=20)["h"] == {"n": 2}
        assert stopped.result(timeout=20)["h"] == {"n": 0}
    finally:
        gate.set()
        kit.close()


def test_a_kit_inserted_run_carries_the_start_markers_of_its_first_steps(db_url: str) -> None:
    """The insert of a run the kit's own worker walks writes the start markers (attempt 1)
    of the steps the walk starts first: both roots, not the step after them nor a
    root with a ``when``. The walk does not write them again; their params come with
    their ends."""
    held, gate = _gated()
    kit = create_wfkit(db_url, env={}, namespace=f"m{uuid.uuid4().hex[:8]}", concurrency=2)
    kit.register(held)
    wf = (
        define_workflow("marked").input(N)
        .step("a", held, lambda r: {"n": r.input.n})
        .step("b", held, {"n": 5})
        .step("maybe", held, lambda r: {"n": 0}, when=lambda r: r.input.n)
        .step("c", held, lambda r: {"n": r.b.n}, needs=["a"])
        .build()
    )  # fmt: skip
    try:
        kit.start()
        run = kit.run(wf, {"n": 0})
        first = {
            s.block_id: (s.status, s.attempt, s.params) for s in kit.store.runs.get_steps(run.id)
        }
        assert first == {"a": ("running", 1, None), "b": ("running", 1, None)}
        gate.set()
        assert run.result(timeout=20)["c"] == {"n": 5}
        ended = {
            s.block_id: (s.status, s.attempt, s.params) for s in kit.store.runs.get_steps(run.id)
        }
        assert ended == {
            "a": ("completed", 1, {"n": 0}), "b": ("completed", 1, {"n": 5}),
            "maybe": ("skipped", 0, None), "c": ("completed", 1, {"n": 5}),
        }  # fmt: skip
    finally:
        gate.set()
        kit.close()


def test_a_held_step_end_is_written_while_a_sibling_still_runs(db_url: str) -> None:
    """A step's end waits for the run's next write, but not longer than a moment: with
    no next write (its sibling branch still runs), it is written on its own."""
    held, gate = _gated()
    kit = create_wfkit(db_url, env={}, namespace=f"h{uuid.uuid4().hex[:8]}")
    fast = define_connector(type="fast", params=N, outputs=N, run=lambda p: p)
    kit.register(held, fast)
    wf = (
        define_workflow("siblings").input(N)
        .step("slow", held, lambda r: {"n": r.input.n})
        .step("quick", fast, {"n": 7})
        .build()
    )  # fmt: skip
    try:
        kit.start()
        run = kit.run(wf, {"n": 1})

        def quick() -> tuple[str, Any] | None:
            rows = {s.block_id: s for s in kit.store.runs.get_steps(run.id)}
            return (rows["quick"].status, rows["quick"].params) if "quick" in rows else None

        wait_until(lambda: quick() == ("completed", {"n": 7}), 5, "the quick step's end stored")
        assert kit.store.runs.get_run(run.id).status == "running"
        gate.set()
        out = run.result(timeout=20)
        assert (out["slow"], out["quick"]) == ({"n": 1}, {"n": 7})
    finally:
        gate.set()
        kit.close()


def test_a_first_step_whose_insert_marked_it_runs_again_with_a_higher_attempt(
    db_url: str,
) -> None:
    """A run inserted claimed with its first step's start marker by a kit that died: the
    worker that takes it over counts the step's next attempt as the second."""
    ns = f"t{uuid.uuid4().hex[:8]}"
    seen: list[int] = []

    def inc(p: N, ctx: StepContext) -> N:
        seen.append(ctx.attempt)
        return N(n=p.n + 1)

    kit = create_wfkit(db_url, env={}, namespace=ns, lease_s=0.5)
    kit.register(define_connector(type="inc", params=N, outputs=N, run=inc))
    wf = (
        define_workflow("taken")
        .input(N)
        .step("a", kit.catalog.get("inc"), lambda r: {"n": r.input.n})
        .build()
    )
    try:
        row = kit.store.runs.start_run(
            "dead:1:x", 0.5, wf.name, wf.to_json(), {"n": 1}, run_id=uuid.uuid4().hex,
            first=[("a", "inc")],
        )  # fmt: skip
        assert row.marked == ("a",)
        kit.start()
        assert kit.get_handle(row.id).result(timeout=20)["a"] == {"n": 2}
        assert seen == [2]
        (step,) = kit.store.runs.get_steps(row.id)
        assert (step.status, step.attempt, step.params) == ("completed", 2, {"n": 1})
    finally:
        kit.close()


def test_a_slot_that_opens_after_a_claim_short_of_slots_looks_again(db_url: str) -> None:
    """A claim that found no free slot because runs being inserted had reserved them
    makes the next slot to open look again: the pending run does not wait for the
    poll (60 s here). Before, such a claim counted only walking runs as taken."""
    held, gate = _gated()
    kit = create_wfkit(
        db_url, env={}, namespace=f"s{uuid.uuid4().hex[:8]}", concurrency=2, poll_s=60
    )
    kit.register(held)
    wf = define_workflow("slots").input(N).step("h", held, lambda r: {"n": r.input.n}).build()
    try:
        kit.start()
        walking = kit.run(wf, {"n": 1})  # eager: one slot walks
        assert kit.worker.reserve(["hold"])  # the other: a run being inserted (kit.run)
        waiting = kit.run(wf, {"n": 2})  # no slot: pending, and the worker looks (none free)
        time.sleep(0.5)
        assert kit.store.runs.get_run(waiting.id).status == "pending"
        kit.worker.unreserve()  # that insert gave its slot back
        gate.set()  # the walking run ends: its slot opens
        assert walking.result(timeout=20)["h"] == {"n": 1}
        assert waiting.result(timeout=10)["h"] == {"n": 2}
    finally:
        gate.set()
        kit.close()


def test_an_eager_run_of_a_dead_kit_is_taken_over_after_its_lease(db_url: str) -> None:
    """The insert claimed by a worker that never walks it (its process died) is an
    ordinary claimed run: another worker takes it when the lease runs out."""
    ns = f"d{uuid.uuid4().hex[:8]}"
    store = Store(db_url, ns)
    try:
        row = store.runs.start_run("dead:1:x", 0.5, "w", WF, {"i": 1}, run_id=uuid.uuid4().hex)
        assert row.memo == [] and row.status == "running"
        assert store.runs.claim("w2", 5, 30.0, ["t"]) == []  # its lease holds
        time.sleep(0.6)
        taken = store.runs.claim("w2", 5, 30.0, ["t"])
    finally:
        store.dispose()
    assert [(r.id, r.claimed_from) for r in taken] == [(row.id, "running")]


def test_a_run_claimed_while_its_last_walk_is_still_ending_is_walked(db_url: str) -> None:
    """A run parked by a walk that has not yet left the worker's books (a busy loop)
    can be claimed again by the same worker; the new walk follows the old one instead
    of being dropped (dropped, the run stayed 'running' under this worker's lease,
    which its own claims skip: stuck for good)."""
    kit = create_wfkit(db_url, env={}, namespace=f"w{uuid.uuid4().hex[:8]}", poll_s=0.05)
    inc = define_connector(type="inc", params=N, outputs=N, run=lambda p: N(n=p.n + 1))
    kit.register(inc)
    wf = define_workflow("again").input(N).step("a", inc, lambda r: {"n": r.input.n}).build()
    run_id = uuid.uuid4().hex
    try:
        kit.start()
        loop, worker = kit.worker._loop, kit.worker
        assert loop is not None

        def ending() -> None:  # a previous walk of run_id, still ending for 0.5 s
            worker._active[run_id] = asyncio.ensure_future(asyncio.sleep(0.5))

        loop.call_soon_threadsafe(ending)
        wait_until(lambda: run_id in worker._active, 5, "the ending walk on the books")
        kit.store.runs.create_run("again", wf.to_json(), {"n": 1}, run_id=run_id)
        worker.wake()
        assert kit.get_handle(run_id).result(timeout=10)["a"] == {"n": 2}
    finally:
        kit.close()


def test_a_late_lost_lease_report_does_not_stop_the_runs_newer_walk(db_url: str) -> None:
    """The heartbeat reports the runs whose lease it could not extend; a run that parked
    meanwhile and was claimed again by the same worker has a new walk by the time the
    report reaches the loop. Only the walk the heartbeat saw is stopped: stopping the
    new one left the run 'running' under this worker's lease, which its own claims skip
    (stuck for good with no other worker in the namespace)."""
    hold, gate = _gated()
    kit = create_wfkit(db_url, env={}, namespace=f"h{uuid.uuid4().hex[:8]}", poll_s=0.05)
    kit.register(hold)
    wf = define_workflow("late").input(N).step("a", hold, lambda r: {"n": r.input.n}).build()
    try:
        kit.start()
        loop, worker = kit.worker._loop, kit.worker
        assert loop is not None
        h = kit.run(wf, {"n": 7})
        wait_until(lambda: h.id in worker._active, 5, "the run's walk")
        walk = worker._active[h.id]

        async def seen_before() -> asyncio.Task[None]:  # the walk the heartbeat saw: ended
            return asyncio.ensure_future(asyncio.sleep(0))

        old = asyncio.run_coroutine_threadsafe(seen_before(), loop).result(5)
        loop.call_soon_threadsafe(worker._leases_lost, {h.id: old})
        time.sleep(0.2)
        assert not walk.cancelled() and worker._active.get(h.id) is walk
        gate.set()
        assert h.result(timeout=10)["a"] == {"n": 7}

        gate.clear()
        h2 = kit.run(wf, {"n": 8})  # the walk the heartbeat saw is stopped, as before
        wait_until(lambda: h2.id in worker._active, 5, "the second run's walk")
        loop.call_soon_threadsafe(worker._leases_lost, {h2.id: worker._active[h2.id]})
        wait_until(lambda: h2.id not in worker._active, 5, "the second walk stopped")
        gate.set()
    finally:
        kit.close()
