"""The ``ctx`` a connector's ``run`` receives."""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..artifacts import ArtifactStore
from ..redaction import ReadingEnv, Redactor
from ..step_logs import StepLog

_log = logging.getLogger("thodare.step")


@dataclass
class StepContext:
    """Facts about the step being run.

    Attributes:
        run_id: The run's id.
        block_id: The block being executed.
        attempt: 1 on the first try; higher on retries and after a crash.
        env: Values for ``{{env.X}}`` (never persisted). Every value a step reads
            here is a secret from then on: masked out of its errors.
        idempotency_key: Stable per run and block, across retries and replays:
            pass it to outside services so an at-least-once step acts once.
        log: The step's log: ``ctx.log("...")`` writes a line to the step's logs
            (the durable runtime keeps them per attempt: ``handle.logs()``);
            ``ctx.log.info(...)`` etc. log to ``thodare.step`` and to the same logs.
        redactor: The run's secrets; the executor masks errors with it.
        artifacts: Where ``Table``/``File`` outputs and outputs over 256 KiB of
            JSON are stored (the kit's artifact store); None: nowhere.
    """

    run_id: str
    block_id: str
    attempt: int = 1
    env: Mapping[str, str] = field(default_factory=dict)
    idempotency_key: str = ""
    redactor: Redactor = field(default_factory=Redactor, repr=False)
    artifacts: ArtifactStore | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if type(self.env) is not ReadingEnv:
            self.env = ReadingEnv(self.env, self.redactor)
        if not self.idempotency_key:
            self.idempotency_key = f"{self.run_id}:{self.block_id}"

    @functools.cached_property
    def log(self) -> StepLog:  # made when a step first logs (most never do)
        return StepLog(_log, {"run_id": self.run_id, "block_id": self.block_id})
