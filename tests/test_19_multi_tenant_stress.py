"""Seed proof 19 (multi-tenant stress) on a real PostgreSQL server.

1. 100 runs started at once (from 8 threads), each of its own workflow
   (``stress-i``) with a unique tenant id and a random wait: all complete, and
   the tenant id seen by the trigger, step1 and step2 is the run's own (no
   cross-talk), within the slowest wait + 12 s.
2. 100 OFF-TIMED runs, each started at a random moment of a 2 s window by a
   kit with no worker, picked up by two worker kits sharing the namespace:
   all complete, every step ran once (two workers never claimed one run).
3. Hard multi-tenancy: 5 namespaces × 20 runs in one schema, one kit (and
   worker) per namespace. Each kit's ``runs()`` lists exactly its own 20 runs,
   cannot open another namespace's run, ``SELECT namespace, count(*) FROM
   thodare_runs GROUP BY namespace`` says 20 each, and each namespace has its
   own LISTEN channel.
4. A signal sent in namespace A does not wake (nor is it later consumed by) a
   run waiting for the same event in namespace B.

The waits are telescoped from the seed's 1-8 s to 0.1-1.5 s; the randomness is
seeded and the seed printed.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from durable_helpers import block, chain_wf, event_wf, wait_until
from durable_procs import pg_listeners, pg_rows

from thodare_jupyter import RunNotFound, Wfkit, create_wfkit

KitFactory = Callable[..., Wfkit]
RNG_SEED = random.SystemRandom().randrange(2**32)


@pytest.fixture
def kits(pg_url: str) -> Iterator[KitFactory]:
    """Kits on the test's schema (defaults: poll_s=0.1, lease_s=5, env={}); closed at teardown."""
    made: list[Wfkit] = []

    def make(**kw: Any) -> Wfkit:
        kw = {"poll_s": 0.1, "lease_s": 5, "env": {}, **kw}
        kit = create_wfkit(pg_url, **kw)
        made.append(kit)
        return kit

    yield make
    for kit in made:
        kit.close()


@pytest.fixture
def rng() -> random.Random:
    print(f"random seed: {RNG_SEED}")
    return random.Random(RNG_SEED)


def tenant_wf(name: str, wait_ms: int) -> dict[str, Any]:
    """trg → step1 → wait → step2 → done (the seed's shape), the tenant id threaded through."""
    tid = "{{trigger.tenantId}}"
    return chain_wf(
        name,
        block("step1", "transform", {"template": {"tenantId": tid, "phase": "step1"}}),
        block("wait", "wait_duration", {"duration": wait_ms, "unit": "ms"}),
        block("step2", "transform", {"template": {"tenantId": tid, "phase": "step2"}}),
        block("done", "transform", {"template": {
            "tenantId": tid, "seenInTrigger": tid,
            "seenInStep1": "{{step1.result.tenantId}}",
            "seenInStep2": "{{step2.result.tenantId}}",
        }}),
    )  # fmt: skip


def assert_own_tenant(out: dict[str, Any], tenant: str) -> None:
    assert out["done"]["result"] == {
        "tenantId": tenant, "seenInTrigger": tenant, "seenInStep1": tenant, "seenInStep2": tenant,
    }  # fmt: skip


def assert_rows_tenant(url: str, run_ids: dict[str, str]) -> None:
    """In SQL: each run's input and step outputs carry only its own tenant id."""
    rows = pg_rows(
        url,
        "SELECT r.id, r.input_json, s.block_id, s.output_json, s.attempt FROM thodare_runs r "
        "JOIN thodare_steps s ON s.run_id = r.id WHERE s.block_id IN ('step1', 'step2')",
    )
    assert len(rows) == 2 * len(run_ids)
    for r in rows:
        tenant = run_ids[r["id"]]
        assert json.loads(r["input_json"]) == {"tenantId": tenant}
        assert json.loads(r["output_json"])["result"]["tenantId"] == tenant
        assert r["attempt"] == 1


def test_100_parallel_runs_complete_with_no_cross_tenant_leakage(
    kits: KitFactory, pg_url: str, rng: random.Random
) -> None:
    n = 100
    waits = [rng.randint(100, 1000) for _ in range(n)]
    tenants = [f"tenant-{i:03d}" for i in range(n)]
    with kits(concurrency=25) as kit:
        t0 = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            handles = list(
                pool.map(
                    lambda i: kit.run(tenant_wf(f"stress-{i}", waits[i]), {"tenantId": tenants[i]}),
                    range(n),
                )
            )
        results = [h.result(timeout=60) for h in handles]
        elapsed = time.monotonic() - t0

    for out, tenant in zip(results, tenants, strict=True):
        assert_own_tenant(out, tenant)
    assert elapsed < max(waits) / 1000 + 12
    assert_rows_tenant(pg_url, {h.id: t for h, t in zip(handles, tenants, strict=True)})
    counts = pg_rows(pg_url, "SELECT status, count(*) AS n FROM thodare_runs GROUP BY status")
    assert counts == [{"status": "completed", "n": n}]
    names = pg_rows(pg_url, "SELECT count(DISTINCT workflow_name) AS n FROM thodare_runs")
    assert names == [{"n": n}]
    print(f"[stress-100] elapsed={elapsed:.1f}s max-wait={max(waits)}ms")


def test_100_off_timed_runs_started_over_a_window_all_complete(
    kits: KitFactory, pg_url: str, rng: random.Random
) -> None:
    n = 100
    offsets = sorted(rng.uniform(0, 2.0) for _ in range(n))
    waits = [rng.randint(100, 1500) for _ in range(n)]
    tenants = [f"offtimed-{i:03d}" for i in range(n)]
    w1, w2 = kits(concurrency=15).start(), kits(concurrency=15).start()
    client = kits()  # no worker: the arrivals come from "outside"
    t0 = time.monotonic()

    def arrive(i: int) -> Any:
        time.sleep(max(0.0, t0 + offsets[i] - time.monotonic()))
        return client.run(tenant_wf(f"offtimed-{i}", waits[i]), {"tenantId": tenants[i]})

    with ThreadPoolExecutor(8) as pool:
        handles = list(pool.map(arrive, range(n)))
    results = [h.result(timeout=60) for h in handles]
    elapsed = time.monotonic() - t0

    for out, tenant in zip(results, tenants, strict=True):
        assert_own_tenant(out, tenant)
    created = [r["created_at"] for r in pg_rows(pg_url, "SELECT created_at FROM thodare_runs")]
    assert max(created) - min(created) > 1.0  # the arrivals really were spread out
    assert_rows_tenant(pg_url, {h.id: t for h, t in zip(handles, tenants, strict=True)})
    attempts = pg_rows(pg_url, "SELECT max(attempt) AS a, count(*) AS n FROM thodare_steps")
    assert attempts == [{"a": 1, "n": 4 * n}]  # every step ran once, on one of the workers
    assert w1.worker.running and w2.worker.running
    print(f"[off-timed-100] elapsed={elapsed:.1f}s")


def test_five_namespaces_of_20_runs_each_are_isolated(kits: KitFactory, pg_url: str) -> None:
    tenants, per = 5, 20
    nss = [f"ns-{t}" for t in range(tenants)]
    ks = {ns: kits(namespace=ns, concurrency=10).start() for ns in nss}
    jobs = [(ns, f"t{t}-w{j:02d}", 100 + 50 * (j % 8)) for t, ns in enumerate(nss)
            for j in range(per)]  # fmt: skip
    with ThreadPoolExecutor(8) as pool:
        handles = list(
            pool.map(
                lambda job: ks[job[0]].run(
                    tenant_wf(f"{job[0]}_wf{job[1]}", job[2]), {"tenantId": job[1]}
                ),
                jobs,
            )
        )
    for h, (_ns, tenant, _w) in zip(handles, jobs, strict=True):
        assert_own_tenant(h.result(timeout=60), tenant)

    # each namespace's kit sees exactly its own runs
    by_ns: dict[str, set[str]] = {ns: set() for ns in nss}
    for h, (ns, _t, _w) in zip(handles, jobs, strict=True):
        by_ns[ns].add(h.id)
    for ns, kit in ks.items():
        listed = kit.runs(limit=1000)
        assert {r.id for r in listed} == by_ns[ns]
        assert {r.status for r in listed} == {"completed"}
        assert all(r.workflow and r.workflow.startswith(f"{ns}_") for r in listed)
        other = next(iter(by_ns[nss[(nss.index(ns) + 1) % tenants]]))
        with pytest.raises(RunNotFound):
            kit.get_handle(other).describe()
        assert kit.runs(status="waiting") == []

    # the database agrees, row by row
    counts = pg_rows(
        pg_url, "SELECT namespace, count(*) AS n FROM thodare_runs GROUP BY namespace ORDER BY 1"
    )
    assert counts == [{"namespace": ns, "n": per} for ns in nss]
    steps = pg_rows(
        pg_url,
        "SELECT r.namespace, count(*) AS n FROM thodare_steps s JOIN thodare_runs r "
        "ON r.id = s.run_id GROUP BY r.namespace ORDER BY 1",
    )
    assert steps == [{"namespace": ns, "n": 4 * per} for ns in nss]
    for ns in nss:
        rows = pg_rows(pg_url, "SELECT input_json FROM thodare_runs WHERE namespace = %s", ns)
        prefix = f"t{nss.index(ns)}-"
        assert all(json.loads(r["input_json"])["tenantId"].startswith(prefix) for r in rows)
    # one LISTEN channel per namespace, each with its own worker's backend
    channels = {kit.store.channel for kit in ks.values()}
    assert len(channels) == tenants
    assert all(len(pg_listeners(pg_url, c)) == 1 for c in channels)


def test_a_signal_in_one_namespace_does_not_wake_a_run_in_another(
    kits: KitFactory, pg_url: str
) -> None:
    a, b = kits(namespace="tenant-a").start(), kits(namespace="tenant-b").start()
    wf = event_wf("wf-invoice", {"eventName": "invoice.paid"}, "{{wait.data.by}}")
    ha, hb = a.run(wf), b.run(wf)

    def parked(run_id: str) -> bool:
        rows = pg_rows(pg_url, "SELECT status FROM thodare_runs WHERE id = %s", run_id)
        return rows == [{"status": "waiting"}]

    wait_until(lambda: parked(ha.id) and parked(hb.id), 10, "both runs to park")
    sid_a = a.signal("invoice.paid", {"by": "a"})
    assert ha.result(timeout=10)["after"]["result"] == "a"
    time.sleep(0.5)  # B's worker had every chance to pick it up

    row_b = pg_rows(pg_url, "SELECT status, wake_requested FROM thodare_runs WHERE id = %s", hb.id)
    assert row_b == [{"status": "waiting", "wake_requested": False}]
    assert hb.status == "waiting"
    assert pg_rows(pg_url, "SELECT signal_id, run_id FROM thodare_signal_consumptions") == [
        {"signal_id": sid_a, "run_id": ha.id}
    ]
    with pytest.raises(RunNotFound):
        b.get_handle(ha.id).describe()
    signals = pg_rows(pg_url, "SELECT namespace, event FROM thodare_signals")
    assert signals == [{"namespace": "tenant-a", "event": "invoice.paid"}]

    # B's own signal wakes B's run, with B's payload (A's signal was never a candidate)
    sid_b = b.signal("invoice.paid", {"by": "b"})
    assert hb.result(timeout=10)["after"]["result"] == "b"
    consumed = pg_rows(
        pg_url, "SELECT signal_id, run_id FROM thodare_signal_consumptions ORDER BY signal_id"
    )
    assert consumed == [
        {"signal_id": sid_a, "run_id": ha.id},
        {"signal_id": sid_b, "run_id": hb.id},
    ]
