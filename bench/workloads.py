"""The workload both durable benchmarks run: a 3-step workflow of trivial increments."""

from __future__ import annotations

from pydantic import BaseModel

from thodare_jupyter import define_connector, define_workflow


class N(BaseModel):
    n: int


def _inc(p: N) -> N:
    return N(n=p.n + 1)


INC = define_connector(type="bench-inc", params=N, outputs=N, run=_inc)
THREE = (
    define_workflow("bench-three").input(N)
    .step("s1", INC, lambda r: {"n": r.input.n})
    .step("s2", INC, lambda r: {"n": r.s1.n})
    .step("s3", INC, lambda r: {"n": r.s2.n})
    .build()
)  # fmt: skip
