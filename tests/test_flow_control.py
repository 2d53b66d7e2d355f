"""Flow control (DESIGN §9): ``define_connector(concurrency=N, rate="10/s")``.

In the durable runtime the limits hold across every worker on the database
(two kits on one database here, and a worker process SIGKILLed while it holds a
slot); in memory within the process; bad declarations fail at define time.
Steps write ``start``/``end`` lines with ``time.time()`` to a file (its path in
``ctx.env``), from which the overlaps and the spacing of starts are measured.

Run as a script it is a worker process: ``python tests/test_flow_control.py
worker DB_URL EFFECTS_FILE`` prints ``ready`` and runs until killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from durable_helpers import KitFactory
from pydantic import BaseModel

from thodare_jupyter import (
    Catalog,
    Connector,
    StepContext,
    connector,
    create_wfkit,
    define_connector,
    define_workflow,
    run_in_memory,
)
from thodare_jupyter.errors import ConnectorDefinitionError

THIS = Path(__file__).resolve()
EFFECTS = "FLOW_EFFECTS"


class SleepParams(BaseModel):
    seconds: float = 0.2
    tag: str = ""
    hold_first: float = 0.0  # the first attempt sleeps this long instead (a slot held)


class SleepOut(BaseModel):
    tag: str


def _line(ctx: StepContext, what: str, tag: str) -> None:
    fd = os.open(ctx.env[EFFECTS], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{what} {time.time():.6f} {tag} {ctx.attempt} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


def _sleep(p: SleepParams, ctx: StepContext) -> SleepOut:
    _line(ctx, "start", p.tag)
    time.sleep(p.hold_first if p.hold_first and ctx.attempt == 1 else p.seconds)
    _line(ctx, "end", p.tag)
    return SleepOut(tag=p.tag)


def limited(type_: str = "flow_sleep", **flow: Any) -> Connector:
    return define_connector(type=type_, params=SleepParams, outputs=SleepOut, run=_sleep, **flow)


def lines(path: Path) -> list[tuple[str, float, str]]:
    if not path.exists():
        return []
    out = []
    for raw in path.read_text().splitlines():
        what, at, tag, *_ = raw.split()
        out.append((what, float(at), tag))
    return out


def max_overlap(path: Path) -> int:
    """The most attempts between their start and end lines at any moment."""
    events = sorted((at, 1 if what == "start" else -1) for what, at, _ in lines(path))
    now = top = 0
    for _, d in sorted(events, key=lambda e: (e[0], e[1])):  # an end before a start at a tie
        now += d
        top = max(top, now)
    return top


def one_step(conn: Connector, tag: str, **params: Any) -> Any:
    return define_workflow(f"flow-{tag}").step("s", conn, {"tag": tag, **params}).build()


# ── define time ─────────────────────────────────────────────────────────────


@pytest.mark.parametrize("rate", ["10", "10/d", "0/s", "-1/s", "fast", "/s", "1e3/s", 10, ""])
def test_a_bad_rate_fails_at_define_time(rate: Any) -> None:
    with pytest.raises(ConnectorDefinitionError, match="rate must be"):
        limited(rate=rate)


@pytest.mark.parametrize("concurrency", [0, -1, 1.5, True, "2"])
def test_a_bad_concurrency_fails_at_define_time(concurrency: Any) -> None:
    with pytest.raises(ConnectorDefinitionError, match="concurrency must be"):
        limited(concurrency=concurrency)


def test_good_declarations_parse() -> None:
    assert limited().flow is None
    flow = limited(concurrency=2, rate="10/s").flow
    assert flow is not None and flow.concurrency == 2 and flow.per_s == 10.0
    assert limited(rate="100/m").flow.per_s == pytest.approx(100 / 60)  # type: ignore[union-attr]
    assert limited(rate="5 / h").flow.per_s == pytest.approx(5 / 3600)  # type: ignore[union-attr]
    assert limited(rate="2.5/s").flow.per_s == 2.5  # type: ignore[union-attr]


def test_the_decorator_takes_flow_control_too() -> None:
    @connector("flow-deco", concurrency=3, rate="5/h")
    def deco(p: SleepParams) -> SleepOut:
        return SleepOut(tag=p.tag)

    assert deco.flow is not None and deco.flow.concurrency == 3
    assert deco.flow.per_s == pytest.approx(5 / 3600)
    with pytest.raises(ConnectorDefinitionError, match="rate must be"):
        connector("flow-bad", rate="5 per hour")(deco.run)


# ── in memory ───────────────────────────────────────────────────────────────


def test_in_memory_concurrency_and_rate(tmp_path: Path) -> None:
    conn = limited(concurrency=2)
    b = define_workflow("flow-mem")
    for i in range(6):
        b = b.step(f"s{i}", conn, {"tag": f"m{i}", "seconds": 0.15})
    eff = tmp_path / "mem.txt"
    run = run_in_memory(b.build(), catalog=Catalog(conn), env={EFFECTS: str(eff)})
    assert run.status == "completed", run
    assert max_overlap(eff) == 2

    fast = limited(rate="10/s")
    b = define_workflow("flow-mem-rate")
    for i in range(6):
        b = b.step(f"s{i}", fast, {"tag": f"r{i}", "seconds": 0.0})
    eff = tmp_path / "rate.txt"
    run = run_in_memory(b.build(), catalog=Catalog(fast), env={EFFECTS: str(eff)})
    assert run.status == "completed", run
    starts = sorted(at for what, at, _ in lines(eff) if what == "start")
    assert starts[-1] - starts[0] >= 0.45  # 6 starts at 10/s: 0.5 s apart first to last


# ── durable: two kits on one database ──────────────────────────────────────


def test_concurrency_holds_across_two_kits(any_kits: KitFactory, tmp_path: Path) -> None:
    eff = tmp_path / "effects.txt"
    conn = limited(concurrency=2)
    kits = [any_kits(env={EFFECTS: str(eff)}, concurrency=8) for _ in range(2)]
    for kit in kits:
        kit.register(conn)
        kit.start()
    handles = [kits[i % 2].run(one_step(conn, f"c{i}", seconds=0.15)) for i in range(12)]
    for h in handles:
        assert h.result(timeout=60)["s"] == {"tag": h.result()["s"]["tag"]}
    assert len([1 for what, _, _ in lines(eff) if what == "end"]) == 12
    assert max_overlap(eff) == 2  # never more; and the two slots were used
    held = _rows(kits[0], "SELECT count(*) FROM thodare_flow_slots")
    assert held == 0  # every slot was given back with its step's end


def test_rate_spaces_starts_across_two_kits(any_kits: KitFactory, tmp_path: Path) -> None:
    eff = tmp_path / "effects.txt"
    conn = limited(rate="10/s")
    kits = [any_kits(env={EFFECTS: str(eff)}, concurrency=10) for _ in range(2)]
    for kit in kits:
        kit.register(conn)
        kit.start()
    handles = [kits[i % 2].run(one_step(conn, f"r{i}", seconds=0.0)) for i in range(20)]
    for h in handles:
        h.result(timeout=60)
    starts = sorted(at for what, at, _ in lines(eff) if what == "start")
    assert len(starts) == 20
    assert starts[-1] - starts[0] >= 1.85, starts[-1] - starts[0]  # 19 gaps of 0.1 s
    # never more than 10 starts within one second (a 10-token burst would break it)
    assert all(starts[i + 10] - starts[i] >= 0.9 for i in range(len(starts) - 10))


def _rows(kit: Any, sql: str) -> Any:
    with kit.store.read() as c:
        return c.exec_driver_sql(sql).scalar()


# ── durable: a worker SIGKILLed while it holds a slot ──────────────────────


def _worker(db_url: str, eff: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, str(THIS), "worker", db_url, str(eff)],
            stdout=subprocess.PIPE,
            stderr=err,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == b"ready", (line, log.read_text())
    return proc


def _wait_for(cond: Any, timeout: float, what: str) -> None:
    end = time.time() + timeout
    while not cond():
        assert time.time() < end, f"timed out waiting for {what}"
        time.sleep(0.02)


def test_a_killed_holder_blocks_the_others_only_for_its_lease(db_url: str, tmp_path: Path) -> None:
    eff = tmp_path / "effects.txt"
    conn = limited("flow_one", concurrency=1)
    proc = _worker(db_url, eff, tmp_path / "worker.log")
    try:
        client = create_wfkit(db_url, env={EFFECTS: str(eff)}, lease_s=1.0, poll_s=0.05)
        try:
            client.register(conn)
            a = client.run(one_step(conn, "held", hold_first=60.0))  # the worker takes it
            _wait_for(lambda: any(t == "held" for _, _, t in lines(eff)), 30, "held to start")
            client.start()  # now a second worker on the database
            b = client.run(one_step(conn, "other", seconds=0.0))
            time.sleep(2.5)  # over two leases: the holder's heartbeat keeps its slot
            assert not any(t == "other" for _, _, t in lines(eff)), lines(eff)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
            killed = time.time()
            assert b.result(timeout=15)["s"] == {"tag": "other"}
            assert a.result(timeout=15)["s"] == {"tag": "held"}  # taken over, run again
            other = [at for what, at, t in lines(eff) if t == "other" and what == "start"]
            assert other and other[0] - killed < 1.0 + 3.0  # the lease, and some slack
        finally:
            client.close()
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def _serve(db_url: str, eff: str) -> None:
    kit = create_wfkit(db_url, env={EFFECTS: eff}, lease_s=1.0, poll_s=0.05)
    kit.register(limited("flow_one", concurrency=1))
    kit.start()
    print("ready", flush=True)
    parent = os.getppid()
    while os.getppid() == parent:
        time.sleep(0.2)


if __name__ == "__main__" and len(sys.argv) == 4 and sys.argv[1] == "worker":
    _serve(sys.argv[2], sys.argv[3])
