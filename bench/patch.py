"""Benchmarks of the engine's hot paths (not a test): the patch surface and the in-memory walker.

    .venv/bin/python bench/patch.py [--repeat N] [--profile]

(a) apply_operations: 100 mixed ops (add/edit/connect/disconnect/delete) on a 1,000-block workflow
(b) run_in_memory: a chain of 1,000 transform blocks, each referencing the previous output
(c) run_in_memory: trigger -> 200 transform blocks in parallel -> one join block

Prints the median and the best of N runs against the targets (apply < 50 ms; 1,000-chain < 1 s)
with PASS/MISS. When a target is missed (or with --profile) each case is profiled once with
cProfile and its top 10 functions by own time are printed.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import platform
import pstats
import random
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from thodare_jupyter import Catalog, SerializedWorkflow, apply_operations, run_in_memory

CATALOG = Catalog()
TRIGGER = "start"


# ── workloads ──


def big_workflow(n: int = 1000, seed: int = 7) -> SerializedWorkflow:
    """A trigger and n-1 transform/http blocks; each hangs off 1-2 earlier blocks and refs them."""
    rng = random.Random(seed)
    blocks: list[dict[str, Any]] = [{"id": TRIGGER, "type": "trigger_webhook", "params": {}}]
    conns: list[dict[str, Any]] = []
    for i in range(1, n):
        parents = sorted({rng.randrange(max(0, i - 50), i) for _ in range(rng.randint(1, 2))})
        pids = [blocks[p]["id"] for p in parents]
        bid = f"b{i}"
        field = {"trigger_webhook": "x", "http": "status", "transform": "result"}
        refs = {
            p: f"{{{{{p}.{field[blocks[index]['type']]}}}}}"
            for p, index in zip(pids, parents, strict=True)
        }
        if i % 5 == 0:
            params = {
                "url": f"https://api.example.test/{i}/{refs[pids[0]]}",
                "method": "POST",
                "body": {"from": list(refs.values())},
            }
            blocks.append({"id": bid, "type": "http", "params": params})
        else:
            blocks.append(
                {"id": bid, "type": "transform", "params": {"template": {"i": i, **refs}}}
            )
        conns += [{"source": p, "target": bid} for p in pids]
    wf = SerializedWorkflow.model_validate({"blocks": blocks, "connections": conns})
    return wf


def mixed_ops(wf: SerializedWorkflow, n: int = 100, seed: int = 11) -> list[dict[str, Any]]:
    """100 ops: 20 add (each followed by its connect), 25 edit, 15 connect, 12 disconnect, 8 delete.

    Shuffled as groups, so an added block is connected right after it is added.
    """
    rng = random.Random(seed)
    ids = [b.id for b in wf.blocks]
    index = {bid: i for i, bid in enumerate(ids)}
    transforms = [b.id for b in wf.blocks if b.type == "transform"]
    edges = [(c.source, c.target) for c in wf.connections]
    groups: list[list[dict[str, Any]]] = []
    for k in range(20):
        parent = rng.choice(transforms)
        groups.append(
            [
                {
                    "operation_type": "add",
                    "block_id": f"new{k}",
                    "type": "transform",
                    "params": {"template": {"k": k, "v": f"{{{{{parent}.result}}}}"}},
                },
                {"operation_type": "connect", "block_id": parent, "target_block_id": f"new{k}"},
            ]
        )
    for _ in range(25):
        bid = rng.choice(transforms)
        groups.append(
            [
                {
                    "operation_type": "edit",
                    "block_id": bid,
                    "name": f"Step {bid}",
                    "params": {"template": {"edited": True, "at": "{{trigger.x}}"}},
                }
            ]
        )
    for _ in range(15):  # mostly forward edges; backward ones would close a cycle (skipped)
        a, b = rng.sample(ids, 2)
        if index[a] > index[b] and rng.random() < 0.7:
            a, b = b, a
        groups.append([{"operation_type": "connect", "block_id": a, "target_block_id": b}])
    for src, dst in rng.sample(edges, 12):
        groups.append([{"operation_type": "disconnect", "block_id": src, "target_block_id": dst}])
    for bid in rng.sample(ids[1:], 8):
        groups.append([{"operation_type": "delete", "block_id": bid}])
    rng.shuffle(groups)
    return [op for g in groups for op in g][:n]


def chain(n: int = 1000) -> SerializedWorkflow:
    """trigger -> t0 -> t1 -> ... -> t{n-1}; each template refs the previous block's output."""
    blocks: list[dict[str, Any]] = [{"id": TRIGGER, "type": "trigger_webhook"}]
    conns = []
    prev = TRIGGER
    for i in range(n):
        ref = "{{trigger.x}}" if prev == TRIGGER else f"{{{{{prev}.result.n}}}}"
        blocks.append(
            {"id": f"t{i}", "type": "transform", "params": {"template": {"n": i, "prev": ref}}}
        )
        conns.append({"source": prev, "target": f"t{i}"})
        prev = f"t{i}"
    return SerializedWorkflow.model_validate({"blocks": blocks, "connections": conns})


def fan_out(width: int = 200) -> SerializedWorkflow:
    """trigger -> f0..f{width-1} (in parallel) -> join (refs every branch)."""
    blocks: list[dict[str, Any]] = [{"id": TRIGGER, "type": "trigger_webhook"}]
    conns = []
    for i in range(width):
        blocks.append(
            {
                "id": f"f{i}",
                "type": "transform",
                "params": {"template": {"i": i, "x": "{{trigger.x}}"}},
            }
        )
        conns.append({"source": TRIGGER, "target": f"f{i}"})
        conns.append({"source": f"f{i}", "target": "join"})
    blocks.append(
        {
            "id": "join",
            "type": "transform",
            "params": {"template": [f"{{{{f{i}.result.i}}}}" for i in range(width)]},
        }
    )
    return SerializedWorkflow.model_validate({"blocks": blocks, "connections": conns})


# ── timing ──


def timed(fn: Callable[[], Any], repeat: int) -> tuple[list[float], Any]:
    fn()  # warm-up (imports, pydantic schema caches)
    times, last = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        last = fn()
        times.append(time.perf_counter() - t0)
    return times, last


def profile(label: str, fn: Callable[[], Any], top: int = 10) -> None:
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("tottime").print_stats(top)
    print(f"\n── cProfile: {label} (top {top} by own time) ──")
    lines = out.getvalue().splitlines()
    start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    print("\n".join(line for line in lines[start:] if line.strip()))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=9, help="timed runs per case (default 9)")
    ap.add_argument("--profile", action="store_true", help="profile every case once")
    args = ap.parse_args()

    big = big_workflow()
    ops = mixed_ops(big)
    long_chain = chain()
    wide = fan_out()

    def apply_case() -> Any:
        return apply_operations(big, ops, CATALOG)

    def chain_case() -> Any:
        return run_in_memory(long_chain, {"x": 1}, catalog=CATALOG, env={})

    def fan_case() -> Any:
        return run_in_memory(wide, {"x": 1}, catalog=CATALOG, env={})

    cases: list[tuple[str, Callable[[], Any], float | None, Callable[[Any], str]]] = [
        (
            "(a) apply 100 ops, 1,000 blocks",
            apply_case,
            0.050,
            lambda r: f"{len(r.skipped_items)} skipped, {len(r.validation_errors)} issues",
        ),
        (
            "(b) run 1,000-block chain",
            chain_case,
            1.0,
            lambda r: f"{r.status}, {len(r.outputs)} outputs",
        ),
        (
            "(c) run 200-wide fan-out + join",
            fan_case,
            None,
            lambda r: f"{r.status}, join got {len(r.outputs['join']['result'])}",
        ),
    ]
    print(
        f"python {platform.python_version()} on {platform.machine()}, "
        f"{args.repeat} timed runs per case (after one warm-up)\n"
    )
    header = f"{'case':34} {'median':>10} {'min':>10} {'target':>9}  {'':4}  result"
    print(header)
    print("─" * len(header))
    missed = []
    for label, fn, target, describe in cases:
        times, last = timed(fn, args.repeat)
        med, best = statistics.median(times), min(times)
        verdict = "" if target is None else ("PASS" if med < target else "MISS")
        if verdict == "MISS":
            missed.append((label, fn))
        tgt = "—" if target is None else f"< {target * 1000:g} ms"
        print(
            f"{label:34} {med * 1000:8.1f}ms {best * 1000:8.1f}ms {tgt:>9}  {verdict:4}  "
            f"{describe(last)}"
        )
    to_profile = [(c[0], c[1]) for c in cases] if args.profile else missed
    for label, fn in to_profile:
        profile(label, fn)
    return 0


if __name__ == "__main__":
    sys.exit(main())
