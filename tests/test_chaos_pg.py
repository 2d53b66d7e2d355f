"""Chaos proof on PostgreSQL: SIGKILLed workers and a server restart lose nothing.

Three REAL worker processes walk 150 runs of a five-step workflow (five
``dp_chaos`` steps in a chain). The runs arrive over ~40 s; meanwhile a
background loop SIGKILLs one worker (chosen at random) every ~1.5 s and starts
its replacement at once, so three worker processes live at all times, until
every run has completed. In the middle, the PostgreSQL server is restarted
(``pg_ctlcluster`` stop, a fast shutdown that drops every connection, then start
2 s later: down for longer than a lease). Then:

* every run completes, with every step's output (the chain's counter reaches 5);
* no completed step ran again, and every step's stored output comes from exactly
  one execution (``durable_helpers.check_chaos_runs``: attempt numbers, nonces
  in the side-effect file, the order of starts along the chain);
* every step that ran more than once saw the same ``ctx.idempotency_key``;
* every extra execution is explained: its worker was SIGKILLed while it ran, or
  it was in flight around the restart (its completion could not be committed
  while the server was down, and its run's lease lapsed meanwhile);
* no worker process died on its own (the restart included);
* the restart landed on runs in flight (a step began before the server went
  down, the run ended after it answered again), and kills on running steps.

The randomness is seeded: the seed is printed, and ``THODARE_CHAOS_SEED=<seed>``
replays the same schedule (timing still varies). The server is brought back up
at the end even if the test fails.
"""

from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from durable_helpers import check_chaos_runs, dict_rows, killed_while_running, wait_until
from durable_procs import (
    LEASE_S,
    WorkerPool,
    bounce_pg,
    chaos_workflow,
    client_kit,
    ensure_pg_up,
    pg_checkpoint,
    pg_up,
    read_effects,
    wait_ready_line,
)

RUNS = 150
STEPS = 5
WORKERS = 3
STEP_S = 0.3  # a run takes ~2 s: several are in flight at any moment
KILL_EVERY = (1.0, 2.0)  # s between two SIGKILLs: ~1.5 s on average
ARRIVE_EVERY = (0.1, 0.3)  # s between two new runs (+ the run() call, ~40 s in all)
RESTART_AFTER = RUNS // 2  # the server restarts once this many runs were started
_ANY = "SELECT * FROM {} WHERE {} = ANY(?)"


@pytest.mark.timeout(170)
def test_chaos_on_postgres_sigkills_and_a_restart_lose_nothing(pg_url: str, tmp_path: Path) -> None:
    seed = int(os.environ.get("THODARE_CHAOS_SEED") or random.SystemRandom().randrange(2**32))
    print(f"\npg chaos seed: {seed} (THODARE_CHAOS_SEED={seed} to replay)")
    kill_rng, run_rng = random.Random(seed), random.Random(seed + 1)
    effects = tmp_path / "effects.log"
    pool = WorkerPool(pg_url, effects, tmp_path)
    client = client_kit(pg_url, effects)  # never started: every step runs in a worker process
    wf = chaos_workflow("dp-chaos-pg", compute_steps=STEPS, wait_ms=None, step_s=STEP_S)
    killed: dict[int, float] = {}  # pid -> time of its SIGKILL
    outage: list[float] = []  # [restart command began, returned]
    down: list[float] = []  # [server stopped answering, answered again]
    stop, errors = threading.Event(), []

    def chaos(live: list[Any]) -> None:
        try:
            while not stop.wait(kill_rng.uniform(*KILL_EVERY)):
                # any but the newest (which may still be starting)
                victim = live.pop(kill_rng.randrange(len(live) - 1))
                pool.kill(victim)
                killed[victim.pid] = time.time()  # reaped: it starts nothing after this
                live.append(pool.start(wait_ready=False))  # replaced at once
        except BaseException as e:  # surfaced by the test thread
            errors.append(e)

    def restart() -> None:
        try:
            pg_checkpoint()  # little left to flush: a short outage
            outage.append(time.time())
            watcher.start()
            bounce_pg("stop-start")  # down for 2 s: longer than a lease
            outage.append(time.time())
            watcher.join(30)
        except BaseException as e:
            errors.append(e)

    def watch() -> None:  # when the server stopped answering, and when it answered again
        try:
            wait_until(lambda: not pg_up(1), 30, "the server to go down", interval=0.01)
            down.append(time.time())
            wait_until(lambda: pg_up(1), 30, "the server to come back", interval=0.01)
            down.append(time.time())
        except BaseException as e:
            errors.append(e)

    def around_the_restart(f: list[str]) -> bool:
        # In flight when the server went down (its completion could not be committed
        # and its run's lease lapsed: another worker may take the run over), or started
        # just after it came back by a walk whose retried commit landed before the
        # takeover (the retry backs off up to 2 s; the lease lapsed during the outage).
        began, back = down
        return began - 2 * LEASE_S <= float(f[6]) <= back + 2.0 + LEASE_S

    t0, wall0 = time.monotonic(), time.time()
    live = [pool.start(wait_ready=False) for _ in range(WORKERS)]
    for w in live:
        wait_ready_line(w, 30, f"worker pid {w.pid}")
    loop = threading.Thread(target=chaos, args=(live,), name="chaos", daemon=True)
    bouncer = threading.Thread(target=restart, name="pg-restart", daemon=True)
    watcher = threading.Thread(target=watch, name="pg-watch", daemon=True)
    try:
        loop.start()
        handles = []
        for i in range(RUNS):
            if i == RESTART_AFTER:
                bouncer.start()
            time.sleep(run_rng.uniform(*ARRIVE_EVERY))
            handles.append(client.run(wf))
        submitted_s = time.monotonic() - t0
        bouncer.join(60)
        assert not errors, errors
        assert len(outage) == 2 and len(down) == 2, "the server restart did not finish"
        outs = {}
        for h in handles:
            try:
                outs[h.id] = h.result(timeout=max(5.0, 150 - (time.monotonic() - t0)))
            except Exception as e:
                raise AssertionError(f"run {h.id}: {e!r}") from e
        done_s = time.monotonic() - t0
        stop.set()
        loop.join(timeout=30)
        assert not loop.is_alive(), "the chaos loop did not stop"
        assert not errors, errors
        # three workers at all times: every one that is gone was SIGKILLed by the loop
        dead = [p.pid for p in pool.procs if p.poll() is not None]
        assert set(dead) <= set(killed), f"workers died on their own: {set(dead) - set(killed)}"
        assert sum(p.poll() is None for p in pool.procs) == WORKERS
        lines = read_effects(effects)
        ids = list(outs)
        runs = {r["id"]: r for r in dict_rows(pg_url, _ANY.format("thodare_runs", "id"), ids)}
        rows: dict[str, dict[str, dict[str, Any]]] = {rid: {} for rid in ids}
        for r in dict_rows(pg_url, _ANY.format("thodare_steps", "run_id"), ids):
            rows[r["run_id"]][r["block_id"]] = r
    except BaseException:
        print(pool.logs())
        raise
    finally:
        stop.set()
        loop.join(timeout=30)
        pool.kill_all()
        client.close()
        ensure_pg_up()

    compute = [f"c{i}" for i in range(1, STEPS + 1)]
    assert len(outs) == RUNS
    for rid, out in outs.items():
        assert set(out) == {"__trigger__", *compute}, rid
    print(f"killed (pid: dead by): {killed}")
    by_kill = killed_while_running(killed)
    tally = check_chaos_runs(
        lines,
        outs,
        runs,
        rows,
        compute,
        lambda f: by_kill(f) or around_the_restart(f),
        f" (seed {seed})",
    )
    cut_by_kill = sum(
        by_kill(f) for f in lines if f[0] == "start" and int(f[3]) != rows[f[1]][f[2]]["attempt"]
    )
    # runs in flight across the outage: a step began before it, the run ended after it
    first = {rid: min(float(f[6]) for f in lines if f[1] == rid) for rid in outs}
    hit = sum(first[rid] < down[0] and runs[rid]["ended_at"] > down[1] for rid in outs)
    print(
        f"pg chaos: {RUNS} runs of {STEPS} steps on {WORKERS} workers, {len(killed)} SIGKILLs, "
        f"1 restart (server down {down[1] - down[0]:.1f}s at {down[0] - wall0:.1f}s, "
        f"pg_ctlcluster took {outage[1] - outage[0]:.1f}s, "
        f"{hit} runs in flight across it); "
        f"runs started over {submitted_s:.1f}s, all completed at {done_s:.1f}s; "
        f"{tally.executions} executions of {RUNS * STEPS} steps, "
        f"{tally.retried_steps} steps with attempts > 1 (max attempt {tally.max_attempt}), "
        f"{tally.cut_short} executions cut short ({cut_by_kill} by a kill, "
        f"{tally.cut_short - cut_by_kill} by the restart), "
        f"{tally.ended_uncommitted} of them after their end line"
    )
    assert len(killed) >= 10, "too few kills to prove anything"
    assert cut_by_kill >= 1, f"no kill landed on a running step (seed {seed})"
    assert hit >= 1, f"the restart landed on no run in flight (seed {seed})"
