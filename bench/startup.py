"""Startup: ``%load_ext thodare_jupyter`` in a fresh kernel (target < 0.5 s).

Each sample starts a new IPython kernel (jupyter_client), waits until it is
idle, then times one execute request, from sending it to its reply:

* ``%load_ext thodare_jupyter`` on a new database (migrations run) and on an
  existing one (the usual case: a kernel restart);
* the peer, in the same run: DBOS Transact launched on a SQLite file
  (``DBOS(config=...); DBOS.launch()``), the durable engine's own start;
* ``import json``: the floor of one execute round trip.

Run: ``.venv/bin/python bench/startup.py [--samples 5]`` (``make bench``).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from jupyter_client.manager import start_new_kernel

TARGET_S = 0.5
LOAD = "%load_ext thodare_jupyter"
DBOS_START = """
from dbos import DBOS
DBOS(config={{"name": "startup-bench", "system_database_url": "sqlite:///{db}",
             "log_level": "ERROR"}})
DBOS.launch()
"""


def timed(code: str, env: dict[str, str]) -> float:
    """Seconds for one execute request of ``code`` in a fresh kernel."""
    km, kc = start_new_kernel(kernel_name="python3", env=env)
    try:
        kc.execute_interactive("pass", timeout=60)  # warm: the kernel is fully up
        t0 = time.perf_counter()
        reply = kc.execute_interactive(code, timeout=120)
        took = time.perf_counter() - t0
        if reply["content"]["status"] != "ok":
            raise RuntimeError(f"{code!r} failed: {reply['content']}")
        return took
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=5)
    args = ap.parse_args()
    import os

    base = {k: v for k, v in os.environ.items() if not k.startswith("THODARE_")}
    rows: list[tuple[str, list[float]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        existing = Path(tmp) / "existing.db"
        timed(LOAD, {**base, "THODARE_DB": str(existing)})  # create it once
        cases: list[tuple[str, str, bool]] = [
            ("%load_ext, existing database", LOAD, False),
            ("%load_ext, new database", LOAD, True),
            ("import json (round-trip floor)", "import json", False),
        ]
        try:
            import dbos  # noqa: F401

            cases.append(("peer: DBOS.launch() on SQLite", "", True))
        except ImportError:
            print("(DBOS not installed: pip install -e '.[bench]' to compare)")
        for label, code, fresh in cases:
            samples = []
            for i in range(args.samples):
                db = Path(tmp) / f"{label[:4]}-{i}.db" if fresh else existing
                run = code or DBOS_START.format(db=db)
                samples.append(timed(run, {**base, "THODARE_DB": str(db)}))
            rows.append((label, samples))
    print(f"{'case':34} {'median':>8} {'min':>8} {'max':>8}")
    for label, s in rows:
        print(f"{label:34} {statistics.median(s):8.3f} {min(s):8.3f} {max(s):8.3f}")
    ours = statistics.median(rows[0][1])
    verdict = "meets" if ours < TARGET_S else "MISSES"
    print(f"\n%load_ext (existing database): {ours:.3f} s median; {verdict} the {TARGET_S} s goal")
    peer = next((statistics.median(s) for label, s in rows if label.startswith("peer")), None)
    if peer:
        print(f"DBOS launch: {peer:.3f} s median; ratio ours/DBOS = {ours / peer:.2f}")


if __name__ == "__main__":
    main()
