"""Execution: the shared DAG walker and the in-memory executor."""

from .memory import (
    InMemoryRun,
    aresume_in_memory,
    arun_in_memory,
    resume_in_memory,
    run_in_memory,
)
from .walker import Plan, StepRecord, WalkOutcome, WalkState, walk

__all__ = [
    "InMemoryRun",
    "Plan",
    "StepRecord",
    "WalkOutcome",
    "WalkState",
    "aresume_in_memory",
    "arun_in_memory",
    "resume_in_memory",
    "run_in_memory",
    "walk",
]
