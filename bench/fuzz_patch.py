"""Fuzz apply_operations (not a test): seeded random batches laced with hostile values.

    .venv/bin/python bench/fuzz_patch.py [--batches 20000] [--seed 20240]

The generator and the invariant checks live in tests/fuzz_ops.py (tests/test_patch_fuzz.py runs a
fast share of the same). Prints the seed, batches/s and a summary; exits 1 on any violation.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fuzz_ops import fuzz


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=20240)
    args = ap.parse_args()
    print(f"fuzzing apply_operations: {args.batches} batches, seed {args.seed}", flush=True)
    report = fuzz(args.batches, args.seed)
    print(report.summary())
    for v in report.violations:
        print(f"  VIOLATION {v}")
    return 1 if report.violations else 0


if __name__ == "__main__":
    sys.exit(main())
