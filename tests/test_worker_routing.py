"""Workers claim only what they can run (DESIGN §9), on SQLite and PostgreSQL.

Two kits on one database, one lacking a connector: every run completes on the
kit that can run it, none fails for "connector type is not registered". A run
no live worker can run stays pending and says what is missing; registering the
connector lets it go on. Live workers are listed; a kernel's shutdown hands its
runs back at once instead of after the lease.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from durable_helpers import KitFactory, block, chain_wf, wait_until
from pydantic import BaseModel

from thodare_jupyter import create_wfkit, define_connector
from thodare_jupyter.errors import RunTimeout
from thodare_jupyter.wire import SerializedWorkflow


class TotalParams(BaseModel):
    n: int


class TotalOut(BaseModel):
    total: int
    pid: int


def _total(p: TotalParams) -> TotalOut:
    return TotalOut(total=p.n * 2, pid=os.getpid())


sales_total = define_connector(type="sales-total", params=TotalParams, outputs=TotalOut, run=_total)
NEEDS_SALES = SerializedWorkflow.model_validate(
    chain_wf("sales", block("sum", "sales-total", {"n": "{{trigger.n}}"}))
)
BUILTIN_ONLY = SerializedWorkflow.model_validate(
    chain_wf("hello", block("say", "transform", {"template": {"text": "hi {{trigger.n}}"}}))
)


def test_two_kits_one_lacking_a_connector_fail_nothing(any_kits: KitFactory) -> None:
    able = any_kits().register(sales_total)
    lacking = any_kits()
    able.start()
    lacking.start()
    handles = [able.run(NEEDS_SALES if i % 2 else BUILTIN_ONLY, {"n": i}) for i in range(60)]
    results = [h.result(timeout=60) for h in handles]  # RunFailed would raise here
    assert [r["sum"]["total"] for r in results[1::2]] == [2 * i for i in range(1, 60, 2)]
    statuses = {h.describe().status for h in handles}
    assert statuses == {"completed"}


def test_a_run_nobody_can_run_waits_and_says_why(any_kits: KitFactory) -> None:
    creator = any_kits().register(sales_total)  # validates and creates runs, runs nothing
    runner = any_kits().start()  # the only live worker: it lacks sales-total
    handle = creator.run(NEEDS_SALES, {"n": 4})
    with pytest.raises(RunTimeout) as info:
        handle.result(timeout=0.5)
    assert info.value.missing_connectors == ["sales-total"]
    assert "No live worker has connector type(s) sales-total" in str(info.value)
    desc = handle.describe()
    assert desc.status == "pending"
    assert desc.missing_connectors == ["sales-total"]
    runner.register(sales_total)  # the worker re-records its types and claims the run now
    assert handle.result(timeout=10)["sum"]["total"] == 8
    assert handle.describe().missing_connectors is None


def test_missing_names_what_live_workers_lack(any_kits: KitFactory) -> None:
    creator = any_kits().register(sales_total)
    handle = creator.run(NEEDS_SALES, {"n": 1})
    assert handle.describe().missing_connectors is None  # no live worker: nothing to compare
    with pytest.raises(RunTimeout, match="No worker has picked it up"):
        handle.result(timeout=0.2)
    any_kits().start()
    assert handle.describe().missing_connectors == ["sales-total"]
    runner = any_kits().register(sales_total).start()
    assert handle.result(timeout=10)["sum"]["total"] == 2
    runner.stop()


def test_workers_are_listed_with_what_they_hold(any_kits: KitFactory) -> None:
    gate = threading.Event()

    def _slow(p: TotalParams) -> TotalOut:
        gate.wait(10)
        return TotalOut(total=p.n, pid=os.getpid())

    slow = define_connector(type="slow-total", params=TotalParams, outputs=TotalOut, run=_slow)
    a = any_kits().register(slow).start()
    b = any_kits().start()
    handle = a.run(
        SerializedWorkflow.model_validate(chain_wf("s", block("x", "slow-total", {"n": 1}))), {}
    )
    wait_until(lambda: handle.describe().status == "running", what="the run to start")
    listed = {w.id: w for w in b.workers()}
    assert set(listed) == {a.worker.owner, b.worker.owner}
    assert "slow-total" in listed[a.worker.owner].connector_types
    assert "slow-total" not in listed[b.worker.owner].connector_types
    assert listed[a.worker.owner].runs_held == 1
    assert listed[b.worker.owner].runs_held == 0
    assert listed[a.worker.owner].namespace == "default"
    gate.set()
    handle.result(timeout=10)
    b.stop()  # a clean stop forgets the worker at once
    assert [w.id for w in a.workers()] == [a.worker.owner]


FLOW = """
import time
from pydantic import BaseModel
from thodare_jupyter import define_connector, SerializedWorkflow

class P(BaseModel):
    n: int

class O(BaseModel):
    total: int
    pid: int

def _block(p: P) -> O:
    time.sleep(600)  # never finishes in this kernel
    return O(total=p.n, pid=0)

sales_total = define_connector(type="sales-total", params=P, outputs=O, run=_block)
"""


def test_kernel_shutdown_hands_its_runs_back_at_once(tmp_path: Path) -> None:
    """A kernel holding a run shuts down; another kit takes the run over long before the lease."""
    from jupyter_client.manager import start_new_kernel

    db = tmp_path / "k.db"
    km, kc = start_new_kernel(kernel_name="python3", env={**os.environ, "THODARE_DB": str(db)})
    try:
        reply = kc.execute_interactive("%load_ext thodare_jupyter\n" + FLOW, timeout=60)
        assert reply["content"]["status"] == "ok"
        wf = NEEDS_SALES.to_json()
        started = kc.execute_interactive(
            f"h = wfkit.run(SerializedWorkflow.from_json({wf!r}), {{'n': 21}})", timeout=60
        )
        assert started["content"]["status"] == "ok"
        with create_wfkit(str(db), env={}, lease_s=30) as other:
            wait_until(
                lambda: [r.status for r in other.runs()] == ["running"], timeout=20,
                what="the kernel to claim the run",
            )  # fmt: skip
            t0 = time.monotonic()
            km.shutdown_kernel(now=False)  # what a restart or "Shut Down Kernel" does first
            other.register(sales_total).start()
            run = other.runs()[0]
            result: dict[str, Any] = other.get_handle(run.id).result(timeout=20)
            took = time.monotonic() - t0
        assert result["sum"] == {"total": 42, "pid": os.getpid()}
        assert took < 15, f"took {took:.1f}s: the run waited for its 30 s lease"
    finally:
        kc.stop_channels()
        if km.is_alive():
            km.shutdown_kernel(now=True)
