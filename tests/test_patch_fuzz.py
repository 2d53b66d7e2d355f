"""The apply_operations fuzzer (tests/fuzz_ops.py): a fast share here, the full run in bench.

``THODARE_FUZZ_BATCHES=20000`` runs the whole 20,000 batches (``bench/fuzz_patch.py`` does too).
"""

from __future__ import annotations

import os

from fuzz_ops import fuzz


def test_apply_operations_keeps_its_invariants_on_fuzzed_batches() -> None:
    batches = int(os.environ.get("THODARE_FUZZ_BATCHES", "2000"))
    report = fuzz(batches, seed=int(os.environ.get("THODARE_FUZZ_SEED", "20240")))
    assert report.batches == batches
    assert not report.violations, report.summary() + "\n" + "\n".join(report.violations)
    # the batches reach every kind of outcome, not only the cheap skips
    assert report.ok > batches // 20
    for code in ("invalid_operation", "env_ref_not_allowed", "block_id_shadows_name",
                 "block_not_found", "cycle_introduced"):  # fmt: skip
        assert report.skips[code] > 0, report.summary()
