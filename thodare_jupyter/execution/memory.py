"""The in-memory executor: no database, for tests and dry runs.

A wait block stops the run and returns it ``paused`` (a snapshot you can
serialize); :func:`resume_in_memory` continues it without running completed
steps again. Each resume returns a new run; the old one is untouched, so
resuming the same snapshot twice runs the rest twice (no idempotency here:
that is what the durable runtime is for). A block's own ``retries`` and
``timeout`` apply here too; a connector's retry policy only in the durable runtime.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, PrivateAttr

from .._aio import run_sync
from ..artifacts import ArtifactStore
from ..connectors import Catalog, StepContext, wait_output
from ..connectors.payload import typed_output
from ..controls import DEFAULT_CONCURRENCY, fan_out, item_key, retry_policy, within
from ..errors import NotPaused
from ..validation import input_model_of, validate_input
from ..wire import PauseInfo, SerializedWorkflow
from .walker import Plan, StepRecord, WalkState, error_text, walk

WorkflowLike = SerializedWorkflow | dict[str, Any] | str


class InMemoryRun(BaseModel):
    """The result (or paused snapshot) of an in-memory run.

    Attributes:
        status: ``completed``, ``paused`` or ``failed``.
        outputs: Output by block id of the steps that ran.
        steps: A record per step, in the order they settled.
        pause: Why it stopped, when ``paused``.
        error / failed_block: What failed, when ``failed``.
    """

    run_id: str
    workflow: SerializedWorkflow
    status: Literal["completed", "paused", "failed"]
    trigger: Any = None
    state: WalkState
    steps: list[StepRecord]
    pause: PauseInfo | None = None
    error: str | None = None
    failed_block: str | None = None

    _catalog: Catalog | None = PrivateAttr(default=None)
    _env: Mapping[str, str] | None = PrivateAttr(default=None)
    _artifacts: ArtifactStore | None = PrivateAttr(default=None)

    @property
    def outputs(self) -> dict[str, Any]:
        """Outputs by block id of the steps that completed."""
        return self.state.outputs

    def output(self, block_id: str) -> Any:
        """A step's output with its model's types: ``Table`` fields as DataFrames
        (loaded from the run's artifact store), ``datetime`` fields as datetimes..."""
        if block_id not in self.state.outputs:
            raise KeyError(f"no output for block {block_id!r}; outputs: {sorted(self.outputs)}")
        block = next((b for b in self.workflow.blocks if b.id == block_id), None)
        conn = self._catalog.find(block.type) if self._catalog and block else None
        return typed_output(conn, self.state.outputs[block_id], self._artifacts or _memory())

    @property
    def completed_block_ids(self) -> list[str]:
        """Blocks that completed, in order."""
        return self.state.completed

    def __repr__(self) -> str:
        where = f" at {self.pause.block_id}" if self.pause else ""
        return f"<InMemoryRun {self.status}{where}: {len(self.state.completed)} step(s) done>"


def _as_workflow(workflow: WorkflowLike) -> SerializedWorkflow:
    if isinstance(workflow, SerializedWorkflow):
        return workflow
    if isinstance(workflow, str | bytes):
        return SerializedWorkflow.from_json(workflow)
    return SerializedWorkflow.model_validate(workflow)


async def _execute(
    plan: Plan,
    run: InMemoryRun,
    catalog: Catalog,
    env: Mapping[str, str],
    artifacts: ArtifactStore | None = None,
) -> InMemoryRun:
    redactor = plan.redactor(env)
    store = artifacts or run._artifacts or _memory()

    async def dispatch(block_id: str, params: dict[str, Any], key: str | None = None) -> Any:
        block, conn = plan.blocks[block_id], plan.connectors[block_id]
        policy = retry_policy(block, conn, default=False)  # the block's `retries` only
        attempt = 1
        while True:
            ctx = StepContext(
                run_id=run.run_id, block_id=key or block_id, attempt=attempt, env=env,
                redactor=redactor, artifacts=store,
            )  # fmt: skip
            try:
                if conn.flow is None:
                    return await within(conn.execute(params, ctx), block, conn)
                await conn.flow.acquire()  # the connector's limits, within this process
                try:
                    return await within(conn.execute(params, ctx), block, conn)
                finally:
                    conn.flow.release()
            except Exception:
                if conn.kind != "compute" or attempt >= policy.max_attempts:
                    raise
                await asyncio.sleep(policy.delay(attempt))
                attempt += 1

    async def dispatch_each(block_id: str, params: list[dict[str, Any]]) -> Any:
        async def one(i: int, p: dict[str, Any]) -> Any:
            return await dispatch(block_id, p, item_key(block_id, i))

        return await fan_out(
            params,
            plan.blocks[block_id].concurrency or DEFAULT_CONCURRENCY,
            one,
            error_of=lambda e: redactor(error_text(e)),
        )

    outcome = await walk(
        plan,
        run.state,
        trigger=run.trigger,
        env=env,
        dispatch=dispatch,
        records=run.steps,
        redactor=redactor,
        dispatch_each=dispatch_each,
        artifacts=store,
    )
    run.status, run.pause = outcome.status, outcome.pause
    run.error, run.failed_block = outcome.error, outcome.failed_block
    run._catalog, run._env, run._artifacts = catalog, env, store
    return run


_MEMORY: list[ArtifactStore] = []


def _memory() -> ArtifactStore:
    """The default store of in-memory runs: fsspec's ``memory://``, in this process only
    (outputs stay inline whatever their size; tables and files go here)."""
    if not _MEMORY:
        _MEMORY.append(ArtifactStore("memory://thodare-artifacts", json_by_reference=None))
    return _MEMORY[0]


async def arun_in_memory(
    workflow: WorkflowLike,
    input: Any = None,
    *,
    catalog: Catalog | None = None,
    env: Mapping[str, str] | None = None,
    validate: bool = True,
    run_id: str | None = None,
    artifacts: ArtifactStore | None = None,
) -> InMemoryRun:
    """Async form of :func:`run_in_memory`."""
    wf = _as_workflow(workflow)
    cat = catalog if catalog is not None else Catalog()
    plan = Plan(wf, cat, validate=validate)
    store = artifacts or _memory()
    trigger = validate_input(input_model_of(wf), input, wf.name, store)
    run = InMemoryRun(
        run_id=run_id or uuid.uuid4().hex,
        workflow=wf,
        status="completed",
        trigger=trigger,
        state=WalkState(),
        steps=[],
    )
    return await _execute(plan, run, cat, dict(os.environ) if env is None else env, store)


def run_in_memory(
    workflow: WorkflowLike,
    input: Any = None,
    *,
    catalog: Catalog | None = None,
    env: Mapping[str, str] | None = None,
    validate: bool = True,
    run_id: str | None = None,
    artifacts: ArtifactStore | None = None,
) -> InMemoryRun:
    """Run a workflow in this process, with no database, until it ends or pauses.

    Args:
        workflow: A built workflow, or seed-style JSON (string or dict).
        input: The run input (``{{trigger.x}}``); checked against the workflow's
            input model first, so a bad input starts nothing.
        catalog: Connectors to use (builtins by default).
        env: Values for ``{{env.X}}`` (default: the process environment).
        validate: Check refs and params first (:class:`WorkflowInvalid` lists
            every problem). ``False`` runs anything structurally sound.
        run_id: Use this id instead of a new one.
        artifacts: Where ``Table``/``File`` outputs go (default: an in-process
            ``memory://`` store); ``run.output(block_id)`` loads them back.

    Returns:
        An :class:`InMemoryRun`; a failing step makes it ``failed``, not an exception.
    """
    return run_sync(
        arun_in_memory(
            workflow,
            input,
            catalog=catalog,
            env=env,
            validate=validate,
            run_id=run_id,
            artifacts=artifacts,
        )
    )


async def aresume_in_memory(
    run: InMemoryRun,
    payload: Any = None,
    *,
    timed_out: bool = False,
    catalog: Catalog | None = None,
    env: Mapping[str, str] | None = None,
) -> InMemoryRun:
    """Async form of :func:`resume_in_memory`."""
    if run.status != "paused" or run.pause is None:
        raise NotPaused(run.status)
    cat = catalog or run._catalog or Catalog()
    plan = Plan(run.workflow, cat, validate=False)
    state = run.state.model_copy(deep=True)
    node = run.pause.block_id
    output = (
        wait_output(run.pause.kind, payload, timed_out=timed_out)
        if plan.connectors[node].kind == "wait"
        else payload
    )
    state.outputs[node] = output
    state.completed.append(node)
    resumed = InMemoryRun(
        run_id=run.run_id,
        workflow=run.workflow,
        status="completed",
        trigger=run.trigger,
        state=state,
        steps=[
            *run.steps,
            StepRecord(
                block_id=node, type=plan.blocks[node].type, status="completed", output=output
            ),
        ],
    )
    plan_env = env if env is not None else (run._env if run._env is not None else dict(os.environ))
    return await _execute(plan, resumed, cat, plan_env, run._artifacts)


def resume_in_memory(
    run: InMemoryRun,
    payload: Any = None,
    *,
    timed_out: bool = False,
    catalog: Catalog | None = None,
    env: Mapping[str, str] | None = None,
) -> InMemoryRun:
    """Continue a paused run; completed steps are not run again.

    Args:
        run: A ``paused`` run (or one loaded back from its JSON).
        payload: What the wait produced: the event's data, or the approval
            answer (``{"approved": True, "by": "ada"}``). Never expanded as a
            template.
        timed_out: Wake the wait as if its timeout passed.
        catalog / env: Needed when ``run`` was loaded from JSON.

    Returns:
        A new run; ``run`` itself is unchanged.
    """
    return run_sync(aresume_in_memory(run, payload, timed_out=timed_out, catalog=catalog, env=env))
