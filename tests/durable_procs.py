"""Test helpers for the durable runtime's crash proofs (a module, not a test file).

It holds:

* test connectors whose every execution leaves a trace in a *side-effect file*
  (one line per execution, appended with ``O_APPEND`` in a single ``write``, so
  lines from processes that are SIGKILLed later are never lost or torn). The
  file's path comes from ``ctx.env["DP_EFFECTS"]`` (env is never stored);
* workflow factories built with the fluent builder;
* :class:`WorkerPool`, which starts REAL worker processes (this file run as a
  script) and kills them with SIGKILL;
* a ``__main__`` entry::

      python tests/durable_procs.py worker DB_PATH SIDE_EFFECT_FILE [--lease 1] [--poll 0.05]
      python tests/durable_procs.py open DB_PATH GO_FILE

  ``worker`` creates the kit with these connectors, starts it, prints
  ``ready`` and sleeps forever (it exits by itself if its parent dies).
  ``open`` imports everything, prints ``ready``, waits for ``GO_FILE`` to
  exist, then calls ``create_wfkit`` on ``DB_PATH`` and creates one run (used
  to race migrations between processes).

Side-effect line formats (fields separated by one space):

* ``dp_count``, ``dp_slow``, ``dp_stamp``, ``dp_echo``:
  ``<run_id> <block_id> <attempt> <idempotency_key>``, written when the step
  starts executing.
* ``dp_chaos``: ``start <run_id> <block_id> <attempt> <idempotency_key> <nonce> <time> <pid>``
  when it starts and ``end ...`` (same fields) just before it returns; ``nonce``
  is also in its output, so the stored output names the execution it came from.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import random
import select
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from thodare_jupyter import (
    Catalog,
    Connector,
    StepContext,
    Wfkit,
    create_wfkit,
    define_connector,
    define_workflow,
)
from thodare_jupyter.wire import SerializedWorkflow

THIS = Path(__file__).resolve()
EFFECTS_ENV = "DP_EFFECTS"
LEASE_S = 1.0
POLL_S = 0.05


# ── side effects ────────────────────────────────────────────────────────────


def append_line(path: str, line: str) -> None:
    """Append one line with a single O_APPEND write (atomic for short lines)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def _effect(ctx: StepContext, *extra: str) -> None:
    fields = [ctx.run_id, ctx.block_id, str(ctx.attempt), ctx.idempotency_key, *extra]
    append_line(ctx.env[EFFECTS_ENV], " ".join(fields))


def read_effects(path: str | Path) -> list[list[str]]:
    """Every side-effect line, split into fields, in the order they were written."""
    p = Path(path)
    if not p.exists():
        return []
    return [line.split(" ") for line in p.read_text().splitlines() if line]


def executions(path: str | Path, run_id: str, block_id: str) -> list[list[str]]:
    """Lines ``<run> <block> <attempt> <key>`` of one step of one run."""
    return [f for f in read_effects(path) if f[0] == run_id and f[1] == block_id]


# ── test connectors ─────────────────────────────────────────────────────────


class NParams(BaseModel):
    n: int = 0


class NOut(BaseModel):
    n: int
    attempt: int


def _count(p: NParams, ctx: StepContext) -> NOut:
    _effect(ctx)
    return NOut(n=p.n + 1, attempt=ctx.attempt)


class SlowParams(BaseModel):
    n: int = 0
    seconds: float = 60.0
    slow_attempts: int = 1  # attempts up to this one sleep ``seconds``; later ones 50 ms


def _slow(p: SlowParams, ctx: StepContext) -> NOut:
    _effect(ctx)
    time.sleep(p.seconds if ctx.attempt <= p.slow_attempts else 0.05)
    return NOut(n=p.n + 1, attempt=ctx.attempt)


class NoParams(BaseModel):
    pass


class StampOut(BaseModel):
    ts: float
    rnd: float
    attempt: int


def _stamp(p: NoParams, ctx: StepContext) -> StampOut:
    _effect(ctx)
    return StampOut(ts=time.time(), rnd=random.random(), attempt=ctx.attempt)


class EchoParams(BaseModel):
    ts: float
    rnd: float


class EchoOut(BaseModel):
    ts: float
    rnd: float
    attempt: int


def _echo(p: EchoParams, ctx: StepContext) -> EchoOut:
    _effect(ctx)
    return EchoOut(ts=p.ts, rnd=p.rnd, attempt=ctx.attempt)


class ChaosParams(BaseModel):
    n: int = 0
    seconds: float = 0.1


class ChaosOut(BaseModel):
    n: int
    attempt: int
    nonce: str


def _chaos(p: ChaosParams, ctx: StepContext) -> ChaosOut:
    nonce = uuid.uuid4().hex[:12]
    _phase(ctx, "start", nonce)
    time.sleep(p.seconds)
    _phase(ctx, "end", nonce)
    return ChaosOut(n=p.n + 1, attempt=ctx.attempt, nonce=nonce)


def _phase(ctx: StepContext, phase: str, nonce: str) -> None:
    fields = [
        phase,
        ctx.run_id,
        ctx.block_id,
        str(ctx.attempt),
        ctx.idempotency_key,
        nonce,
        repr(time.time()),
        str(os.getpid()),
    ]
    append_line(ctx.env[EFFECTS_ENV], " ".join(fields))


COUNT = define_connector(
    type="dp_count",
    params=NParams,
    outputs=NOut,
    run=_count,
    description="Counts its executions in the side-effect file.",
)
SLOW = define_connector(
    type="dp_slow",
    params=SlowParams,
    outputs=NOut,
    run=_slow,
    description="Like dp_count, then sleeps.",
)
STAMP = define_connector(
    type="dp_stamp",
    params=NoParams,
    outputs=StampOut,
    run=_stamp,
    description="Returns time.time() and random.random().",
)
ECHO = define_connector(
    type="dp_echo",
    params=EchoParams,
    outputs=EchoOut,
    run=_echo,
    description="Returns the values it was given.",
)
CHAOS = define_connector(
    type="dp_chaos",
    params=ChaosParams,
    outputs=ChaosOut,
    run=_chaos,
    description="Writes start/end lines around a short sleep.",
)

CONNECTORS: tuple[Connector, ...] = (COUNT, SLOW, STAMP, ECHO, CHAOS)


def make_catalog() -> Catalog:
    """Builtins plus the test connectors (the same in the test process and the workers)."""
    return Catalog(*CONNECTORS)


# ── workflows ───────────────────────────────────────────────────────────────


WAIT_DURATION = Catalog().get("wait_duration")


class Start(BaseModel):
    start: int = 0


def chain_workflow(
    name: str = "dp-chain", *, slow_seconds: float = 60.0, slow_attempts: int = 1
) -> SerializedWorkflow:
    """one → two → slow → four → five, each passing ``n`` along (five.n == start + 5)."""
    return (
        define_workflow(name)
        .input(Start)
        .step("one", COUNT, lambda r: {"n": r.input.start})
        .step("two", COUNT, lambda r: {"n": r.one.n})
        .step(
            "slow",
            SLOW,
            lambda r: {"n": r.two.n, "seconds": slow_seconds, "slow_attempts": slow_attempts},
        )
        .step("four", COUNT, lambda r: {"n": r.slow.n})
        .step("five", COUNT, lambda r: {"n": r.four.n})
        .build()
    )


def stamp_workflow(
    name: str = "dp-stamp", *, slow_seconds: float = 60.0, wait_ms: float | None = None
) -> SerializedWorkflow:
    """now (time + random) → slow [→ wait] → use (echoes now's values)."""
    b = (
        define_workflow(name)
        .step("now", STAMP)
        .step("slow", SLOW, {"seconds": slow_seconds}, needs=("now",))
    )
    last = "slow"
    if wait_ms is not None:
        b = b.step("pause", WAIT_DURATION, {"duration": wait_ms, "unit": "ms"}, needs=("slow",))
        last = "pause"
    return b.step("use", ECHO, lambda r: {"ts": r.now.ts, "rnd": r.now.rnd}, needs=(last,)).build()


def chaos_workflow(
    name: str = "dp-chaos", *, compute_steps: int = 9, wait_ms: float = 200, step_s: float = 0.1
) -> SerializedWorkflow:
    """``compute_steps`` dp_chaos steps in a chain with one wait_duration in the middle.

    Ids: c1 … c<k>, ``wait``, c<k+1> … c<compute_steps>; the last step's ``n`` is
    ``compute_steps``.
    """
    half = compute_steps // 2
    b = define_workflow(name)
    prev: str | None = None
    for i in range(1, compute_steps + 1):
        sid = f"c{i}"
        if prev is None:
            b = b.step(sid, CHAOS, {"n": 0, "seconds": step_s})
        else:
            p = prev
            needs = ("wait",) if i == half + 1 else ()
            b = b.step(sid, CHAOS, lambda r, p=p: {"n": r[p].n, "seconds": step_s}, needs=needs)
        prev = sid
        if i == half:
            b = b.step("wait", WAIT_DURATION, {"duration": wait_ms, "unit": "ms"}, needs=(sid,))
    return b.build()


# ── kits and processes ──────────────────────────────────────────────────────


def client_kit(db: str | Path, effects: str | Path | None = None) -> Wfkit:
    """A kit on ``db`` that knows the test connectors but does NOT start a worker."""
    env = {EFFECTS_ENV: str(effects)} if effects is not None else {}
    return create_wfkit(str(db), catalog=make_catalog(), env=env, lease_s=LEASE_S, poll_s=POLL_S)


@contextlib.contextmanager
def db_conn(db: str | Path) -> Iterator[sqlite3.Connection]:
    """A plain sqlite3 connection to look at the rows directly."""
    conn = sqlite3.connect(str(db), timeout=30)
    conn.row_factory = sqlite3.Row
    try:
        yield conn
    finally:
        conn.close()


def step_rows(db: str | Path, run_id: str) -> dict[str, dict[str, Any]]:
    """The thodare_steps rows of a run (as dicts) by block id."""
    with db_conn(db) as c:
        rows = c.execute("SELECT * FROM thodare_steps WHERE run_id = ?", (run_id,)).fetchall()
    return {r["block_id"]: dict(r) for r in rows}


def run_row(db: str | Path, run_id: str) -> dict[str, Any]:
    """The thodare_runs row of a run, as a dict."""
    with db_conn(db) as c:
        row = c.execute("SELECT * FROM thodare_runs WHERE id = ?", (run_id,)).fetchone()
    assert row is not None, run_id
    return dict(row)


def wait_until(pred: Any, timeout: float, what: str, interval: float = 0.02) -> Any:
    """Poll ``pred()`` until truthy; fail with ``what`` after ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() >= end:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class WorkerPool:
    """Real worker processes on one database; every one is SIGKILLed by :meth:`kill_all`."""

    def __init__(
        self,
        db: str | Path,
        effects: str | Path,
        log_dir: str | Path,
        *,
        lease_s: float = LEASE_S,
        poll_s: float = POLL_S,
    ) -> None:
        self.db, self.effects, self.log_dir = str(db), str(effects), Path(log_dir)
        self.lease_s, self.poll_s = lease_s, poll_s
        self.procs: list[subprocess.Popen[bytes]] = []
        self._logs: list[Path] = []

    def start(self, *, wait_ready: bool = True, timeout: float = 30.0) -> subprocess.Popen[bytes]:
        """Start a worker process; by default wait until its worker thread runs."""
        log = self.log_dir / f"worker-{len(self.procs)}.log"
        self._logs.append(log)
        with open(log, "wb") as err:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    str(THIS),
                    "worker",
                    self.db,
                    self.effects,
                    "--lease",
                    str(self.lease_s),
                    "--poll",
                    str(self.poll_s),
                ],
                stdout=subprocess.PIPE,
                stderr=err,
                stdin=subprocess.DEVNULL,
            )
        self.procs.append(proc)
        if wait_ready:
            wait_ready_line(proc, timeout, f"worker pid {proc.pid} ({log})")
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL one worker (no clean shutdown: its leases stay until they expire)."""
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()

    def kill_all(self) -> None:
        """SIGKILL every worker this pool started (teardown)."""
        for proc in self.procs:
            with contextlib.suppress(Exception):
                self.kill(proc)

    def logs(self) -> str:
        """Every worker's stderr (for failure messages)."""
        out = []
        for log in self._logs:
            with contextlib.suppress(OSError):
                out.append(f"--- {log.name}\n{log.read_text()[-4000:]}")
        return "\n".join(out)


def wait_ready_line(proc: subprocess.Popen[bytes], timeout: float, what: str) -> None:
    """Wait for the child's ``ready`` line on stdout."""
    assert proc.stdout is not None
    end = time.monotonic() + timeout
    buf = b""
    while b"ready" not in buf:
        left = end - time.monotonic()
        if left <= 0 or proc.poll() is not None:
            raise AssertionError(f"{what} did not become ready (exit code {proc.poll()})")
        r, _, _ = select.select([proc.stdout], [], [], min(left, 0.5))
        if r:
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                raise AssertionError(f"{what} closed stdout before ready")
            buf += chunk


# ── __main__ ────────────────────────────────────────────────────────────────


def _sleep_until_orphaned(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.2)
    os._exit(0)  # the test process is gone: don't linger


def _main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="durable_procs.py")
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("worker", help="run a durable worker until killed")
    w.add_argument("db")
    w.add_argument("effects")
    w.add_argument("--lease", type=float, default=LEASE_S)
    w.add_argument("--poll", type=float, default=POLL_S)
    w.add_argument("--concurrency", type=int, default=8)
    o = sub.add_parser("open", help="create_wfkit on DB once GO_FILE exists, then create a run")
    o.add_argument("db")
    o.add_argument("go")
    args = ap.parse_args(argv)
    parent = os.getppid()
    logging.basicConfig(
        level=logging.INFO,
        stream=sys.stderr,
        format=f"%(asctime)s pid{os.getpid()} %(name)s %(message)s",
    )
    if args.cmd == "worker":
        kit = create_wfkit(
            args.db,
            catalog=make_catalog(),
            env={EFFECTS_ENV: args.effects},
            lease_s=args.lease,
            poll_s=args.poll,
            concurrency=args.concurrency,
        )
        kit.start()
        print("ready", flush=True)
        _sleep_until_orphaned(parent)
        return 0
    print("ready", flush=True)
    while not os.path.exists(args.go):
        time.sleep(0.001)
    kit = create_wfkit(args.db, catalog=make_catalog(), env={})
    h = kit.run(chain_workflow("dp-open"), {"start": 1})
    print(f"run {h.id}", flush=True)
    kit.store.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
