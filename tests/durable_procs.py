"""Test helpers for the durable runtime's crash proofs (a module, not a test file).

It holds:

* test connectors whose every execution leaves a trace in a *side-effect file*
  (one line per execution, appended with ``O_APPEND`` in a single ``write``, so
  lines from processes that are SIGKILLed later are never lost or torn). The
  file's path comes from ``ctx.env["DP_EFFECTS"]`` (env is never stored);
* workflow factories built with the fluent builder;
* :class:`WorkerPool`, which starts REAL worker processes (this file run as a
  script) and kills them with SIGKILL, and :func:`crash_env` (a database, a
  side-effect file, a pool and a client kit, cleaned up at the end);
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
* ``dp_pid``: ``<run_id> <block_id> <attempt> <idempotency_key> <pid>`` when it
  starts; its output carries the same ``pid`` (which worker process ran it).

``db`` may also be a database URL (``sqlite:///…`` or ``postgresql+psycopg://…``,
e.g. conftest's ``db_url``): the workers, :func:`client_kit` and
``crash_env(tmp_path, url)`` pass it to ``create_wfkit`` as is, and
``durable_helpers``' row readers take either backend. :func:`pg_rows`,
:func:`pg_run_row`, :func:`pg_step_rows` and :func:`pg_listeners` read such a
database directly with psycopg (no package code); :func:`bounce_pg` restarts the
PostgreSQL server (``pg_ctlcluster``; :func:`pg_checkpoint` first keeps it short)
and :func:`ensure_pg_up` brings it back.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import random
import select
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from durable_helpers import PG_BASE, NoParams, pg_dsn
from pydantic import BaseModel

from thodare_jupyter import (
    Catalog,
    Connector,
    StepContext,
    Wfkit,
    connector,
    create_wfkit,
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


COUNT = connector("dp_count", description="Counts its executions in the side-effect file.")(_count)
SLOW = connector("dp_slow", description="Like dp_count, then sleeps.")(_slow)
STAMP = connector("dp_stamp", description="Returns time.time() and random.random().")(_stamp)
ECHO = connector("dp_echo", description="Returns the values it was given.")(_echo)
CHAOS = connector("dp_chaos", description="Writes start/end lines around a short sleep.")(_chaos)


class PidParams(BaseModel):
    n: int = 0
    seconds: float = 0.0


class PidOut(BaseModel):
    n: int
    attempt: int
    pid: int  # the worker process that ran the step


def _pid(p: PidParams, ctx: StepContext) -> PidOut:
    _effect(ctx, str(os.getpid()))
    time.sleep(p.seconds)
    return PidOut(n=p.n + 1, attempt=ctx.attempt, pid=os.getpid())


PID = connector("dp_pid", description="Like dp_count, with the worker's pid in its output.")(_pid)

CONNECTORS: tuple[Connector, ...] = (COUNT, SLOW, STAMP, ECHO, CHAOS, PID)


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
    name: str = "dp-chaos",
    *,
    compute_steps: int = 9,
    wait_ms: float | None = 200,
    step_s: float = 0.1,
) -> SerializedWorkflow:
    """``compute_steps`` dp_chaos steps in a chain with one wait_duration in the middle.

    Ids: c1 … c<k>, ``wait``, c<k+1> … c<compute_steps>; the last step's ``n`` is
    ``compute_steps``. ``wait_ms=None``: no wait, just the chain c1 … c<compute_steps>.
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
            needs = ("wait",) if i == half + 1 and wait_ms is not None else ()
            b = b.step(sid, CHAOS, lambda r, p=p: {"n": r[p].n, "seconds": step_s}, needs=needs)
        prev = sid
        if i == half and wait_ms is not None:
            b = b.step("wait", WAIT_DURATION, {"duration": wait_ms, "unit": "ms"}, needs=(sid,))
    return b.build()


# ── kits and processes ──────────────────────────────────────────────────────


def client_kit(db: str | Path, effects: str | Path | None = None) -> Wfkit:
    """A kit on ``db`` that knows the test connectors but does NOT start a worker."""
    env = {EFFECTS_ENV: str(effects)} if effects is not None else {}
    return create_wfkit(str(db), catalog=make_catalog(), env=env, lease_s=LEASE_S, poll_s=POLL_S)


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
        concurrency: int = 8,
    ) -> None:
        self.db, self.effects, self.log_dir = str(db), str(effects), Path(log_dir)
        self.lease_s, self.poll_s, self.concurrency = lease_s, poll_s, concurrency
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
                    "--concurrency",
                    str(self.concurrency),
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


@dataclass
class Env:
    """One crash proof's world: a database, its side-effect file, worker processes, a client kit.

    ``db`` is a SQLite file's path or a database URL (SQLite or PostgreSQL);
    ``durable_helpers``' row readers take either.
    """

    db: Path | str
    effects: Path
    pool: WorkerPool
    kit: Wfkit


@contextlib.contextmanager
def crash_env(tmp_path: Path, url: str | None = None) -> Iterator[Env]:
    """An :class:`Env` in ``tmp_path``; at the end every worker is SIGKILLed, the kit disposed.

    The database is ``url`` (SQLite or PostgreSQL) if given, else ``tmp_path/runs.db``.
    """
    db: Path | str = url if url is not None else tmp_path / "runs.db"
    effects = tmp_path / "effects.log"
    pool = WorkerPool(db, effects, tmp_path)
    kit = None
    try:
        kit = client_kit(db, effects)
        yield Env(db, effects, pool, kit)
    finally:
        pool.kill_all()
        if kit is not None:
            kit.store.dispose()


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


# ── PostgreSQL, read directly ───────────────────────────────────────────────


def pg_rows(url: str, sql: str, *args: Any) -> list[dict[str, Any]]:
    """Rows (as dicts) from a fresh psycopg connection on ``url`` (no package code)."""
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(pg_dsn(url), autocommit=True, connect_timeout=5) as conn:
        cur = conn.cursor(row_factory=dict_row)
        return list(cur.execute(sql, args or None).fetchall())


def pg_run_row(url: str, run_id: str) -> dict[str, Any]:
    """The thodare_runs row of a run, as a dict."""
    rows = pg_rows(url, "SELECT * FROM thodare_runs WHERE id = %s", run_id)
    assert len(rows) == 1, run_id
    return rows[0]


def pg_step_rows(url: str, run_id: str) -> dict[str, dict[str, Any]]:
    """The thodare_steps rows of a run (as dicts) by block id."""
    rows = pg_rows(url, "SELECT * FROM thodare_steps WHERE run_id = %s", run_id)
    return {r["block_id"]: r for r in rows}


PG_CTL = "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main {}"


def pg_up(timeout: float = 3.0) -> bool:
    """True if the server at ``PG_BASE`` accepts a connection and answers."""
    import psycopg

    try:
        with psycopg.connect(pg_dsn(PG_BASE), connect_timeout=max(1, int(timeout))) as c:
            c.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def ensure_pg_up(timeout: float = 60.0) -> None:
    """Start the cluster if it does not answer, and wait until it accepts connections."""
    if pg_up():
        return
    subprocess.run(PG_CTL.format("start"), shell=True, timeout=timeout, check=False)
    end = time.monotonic() + timeout
    while not pg_up():
        if time.monotonic() > end:
            raise RuntimeError("PostgreSQL did not come back up")
        time.sleep(0.2)


def pg_checkpoint() -> None:
    """Run a CHECKPOINT, so that a restart right after it has little to flush (short)."""
    import psycopg

    with psycopg.connect(pg_dsn(PG_BASE), autocommit=True, connect_timeout=5) as c:
        c.execute("CHECKPOINT")


def bounce_pg(kind: str = "restart") -> None:
    """Take the server down and bring it back (blocks until it is up again).

    ``restart``: ``pg_ctlcluster … restart`` (a fast shutdown that drops every
    connection); ``stop-start``: down for 2 s; ``immediate``: a crash (no
    checkpoint, unflushed asynchronous commits lost), down for 1 s, then recovery.
    A fast shutdown writes a checkpoint first: :func:`pg_checkpoint` just before
    keeps the outage short.
    """
    if kind == "restart":
        cmds = [PG_CTL.format("restart")]
    elif kind == "stop-start":
        cmds = [PG_CTL.format("stop"), "sleep 2", PG_CTL.format("start")]
    else:
        assert kind == "immediate", kind
        cmds = [PG_CTL.format("stop") + " -m immediate", "sleep 1", PG_CTL.format("start")]
    for cmd in cmds:
        done = subprocess.run(cmd, shell=True, capture_output=True, timeout=60, check=False)
        assert done.returncode == 0, (cmd, done.stdout, done.stderr)


def pg_listeners(url: str, channel: str) -> list[int]:
    """Pids of the server backends LISTENing on ``channel`` (from pg_stat_activity)."""
    rows = pg_rows(
        url,
        "SELECT pid FROM pg_stat_activity WHERE query = %s ORDER BY pid",
        f'LISTEN "{channel}"',
    )
    return [r["pid"] for r in rows]


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
