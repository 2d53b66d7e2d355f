"""The DAG walker both executors share; only the step dispatch differs.

The walker resolves each block's params, hands them to ``dispatch`` and
records what comes back. Independent branches run concurrently: a block
starts as soon as every block before it has settled (completed, skipped, or
failed onto an ``error`` branch). Branching follows the seed: edges are
grouped by ``sourceHandle``; ``success`` is always taken, ``branch`` in the
output picks a handle, a boolean ``result`` picks ``true``/``false``, else the
default; untaken branches are skipped transitively. A block whose ``when``
resolves falsy (see :mod:`..controls`) is skipped the same way, with all it feeds.
A ``for_each`` block's list is resolved when it would run, each item's params
with ``{{item}}``/``{{item_index}}`` bound, and all go to ``dispatch_each``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from ..artifacts import ArtifactStore, has_ref
from ..clock import utc_iso
from ..connectors import Catalog, Connector
from ..controls import is_falsy
from ..errors import ThodareError, WorkflowInvalid
from ..graph import build_graph, handle_of, topological_order
from ..redaction import Redactor, run_secrets
from ..ref_checks import ids_by_name
from ..templates import Scope, resolve
from ..validation import check_structure, check_workflow
from ..wire import PauseInfo, SerializedBlock, SerializedWorkflow

if TYPE_CHECKING:
    import networkx as nx

StepStatus = Literal["completed", "failed", "paused", "skipped"]
Dispatch = Callable[[str, dict[str, Any]], Coroutine[Any, Any, Any]]
DispatchEach = Callable[[str, list[dict[str, Any]]], Coroutine[Any, Any, Any]]
"""Run a ``for_each`` step: its id and each item's params → the step's output."""


class StepRecord(BaseModel):
    """What happened to one block in a run."""

    block_id: str
    type: str
    status: StepStatus
    started_at: str | None = None
    ended_at: str | None = None
    duration_ms: float = 0.0
    output: Any = None
    error: str | None = None


class WalkState(BaseModel):
    """Where a run stands: enough to pick it up again (a snapshot)."""

    outputs: dict[str, Any] = Field(default_factory=dict)
    completed: list[str] = Field(default_factory=list)
    skipped: list[str] = Field(default_factory=list)
    failed: list[str] = Field(default_factory=list)


@dataclass
class WalkOutcome:
    """How a walk ended."""

    status: Literal["completed", "paused", "failed"]
    pause: PauseInfo | None = None
    error: str | None = None
    failed_block: str | None = None
    pauses: list[PauseInfo] = field(default_factory=list)


def now_iso() -> str:
    """The current UTC time as ISO 8601 with a ``Z``."""
    return utc_iso()


def error_text(exc: BaseException) -> str:
    """A readable one-line message for any exception, even odd ones."""
    if isinstance(exc, ThodareError):
        return str(exc)
    try:
        msg = str(exc)
    except Exception:
        msg = ""
    name = type(exc).__name__
    return f"{name}: {msg}" if msg else f"{name} (raised with no message)"


class Plan:
    """A workflow checked against a catalog and ready to walk.

    Raises :class:`WorkflowInvalid` listing every problem; with
    ``validate=False`` only problems no executor can run past (duplicate ids,
    unknown types, cycles, ghost edges) are fatal.
    """

    def __init__(self, workflow: SerializedWorkflow, catalog: Catalog, *, validate: bool = True):
        problems = (check_workflow if validate else check_structure)(workflow, catalog)
        if problems:
            raise WorkflowInvalid(workflow.name, problems)
        self.workflow = workflow
        self.graph: nx.DiGraph[str] = build_graph(workflow)
        self.blocks: dict[str, SerializedBlock] = {b.id: b for b in workflow.blocks if b.enabled}
        self.connectors: dict[str, Connector] = {
            bid: catalog.get(b.type) for bid, b in self.blocks.items()
        }
        # what {{head.…}} names: a block id first, then a block name
        self.block_refs = {**ids_by_name(workflow), **{bid: bid for bid in self.blocks}}
        self.order = topological_order(self.graph)
        self.rank = {n: i for i, n in enumerate(self.order)}
        self._secrets: tuple[Mapping[str, str], list[Any]] | None = None
        self.preds = {n: list(self.graph.predecessors(n)) for n in self.order}
        self.succs = {
            n: [(t, handle_of(d["conn"])) for _, t, d in self.graph.out_edges(n, data=True)]
            for n in self.order
        }

    def scope(self, outputs: Mapping[str, Any], trigger: Any, env: Mapping[str, str]) -> Scope:
        """What a block's params resolve against, once ``outputs`` are known."""
        return Scope(
            outputs=outputs,
            trigger=trigger,
            env=env,
            variables=self.workflow.variables or {},
            block_refs=self.block_refs,
        )

    def redactor(self, env: Mapping[str, str]) -> Redactor:
        """A new run's secrets before it starts: env values it reads or that look
        secret, and the values of hidden params written into the workflow (worked
        out once per ``env`` mapping: a worker walks one plan many times)."""
        if self._secrets is None or self._secrets[0] is not env:
            hidden = [
                block.params.get(name)
                for bid, block in self.blocks.items()
                for name in self.connectors[bid].hidden_params
            ]
            self._secrets = (env, run_secrets(self.workflow.to_dict(), env, hidden))
        return Redactor(self._secrets[1])


class _Walk:
    def __init__(
        self,
        plan: Plan,
        state: WalkState,
        *,
        trigger: Any,
        env: Mapping[str, str],
        dispatch: Dispatch,
        records: list[StepRecord],
        stop_at_pause: bool,
        abort_on: tuple[type[BaseException], ...],
        redactor: Redactor,
        dispatch_each: DispatchEach | None = None,
        artifacts: ArtifactStore | None = None,
    ) -> None:
        self.plan, self.state, self.dispatch, self.records = plan, state, dispatch, records
        self.dispatch_each, self.artifacts = dispatch_each, artifacts
        self.redactor = redactor
        self.stop_at_pause, self.abort_on = stop_at_pause, abort_on
        self.trigger = trigger
        self.scope = plan.scope(state.outputs, trigger, env)
        self.settled = set(state.completed) | set(state.skipped) | set(state.failed)
        self.remaining = {
            n: sum(1 for p in plan.preds[n] if p not in self.settled)
            for n in plan.order
            if n not in self.settled
        }
        self.ready = deque(n for n in plan.order if self.remaining.get(n) == 0)
        # replay the branch decisions of what already ran (they are a function of the outputs)
        for n in plan.order:
            if n in state.outputs and n in state.completed:
                self.select_branches(n, state.outputs[n])
            elif n in state.failed:
                self.skip_from([t for t, h in plan.succs[n] if h != "error"])

    def settle(self, node: str) -> None:
        self.settled.add(node)
        for succ, _ in self.plan.succs[node]:
            if succ in self.settled:
                continue
            self.remaining[succ] -= 1
            if self.remaining[succ] == 0:
                self.ready.append(succ)

    def skip_from(self, roots: list[str]) -> None:
        stack = list(roots)
        while stack:
            n = stack.pop()
            if n in self.settled:
                continue
            self.state.skipped.append(n)
            self.records.append(
                StepRecord(block_id=n, type=self.plan.blocks[n].type, status="skipped")
            )
            self.settle(n)
            stack.extend(t for t, _ in self.plan.succs[n])

    def complete(self, node: str, output: Any) -> None:
        self.state.outputs[node] = output
        self.state.completed.append(node)
        self.settle(node)
        self.select_branches(node, output)

    def select_branches(self, node: str, output: Any) -> None:
        groups: dict[str, list[str]] = {}
        for target, handle in self.plan.succs[node]:
            groups.setdefault(handle, []).append(target)
        if len(groups) <= 1:
            return
        taken = {"success"} & groups.keys()
        if isinstance(output, dict):
            branch, result = output.get("branch"), output.get("result")
            if isinstance(branch, str) and branch in groups:
                taken.add(branch)
            if isinstance(result, bool):
                taken.add("true" if result else "false")
        if not taken and "__default__" in groups:
            taken.add("__default__")
        self.skip_from([t for h, ts in groups.items() if h not in taken for t in ts])

    def fail(self, node: str, error: str) -> bool:
        """Record a failed step; True when an ``error`` branch lets the run go on."""
        error_targets = [t for t, h in self.plan.succs[node] if h == "error"]
        if not error_targets:
            return False
        self.state.failed.append(node)
        self.settle(node)
        self.skip_from([t for t, h in self.plan.succs[node] if h != "error"])
        return True

    def items_of(self, node: str, block: SerializedBlock) -> list[Any]:
        """The items of a ``for_each`` block: a list, or a table's rows as dicts."""
        value = resolve(block.for_each, self.scope)
        if has_ref(value) and self.artifacts is not None:
            value = self.artifacts.load_refs(value)
            value = json.loads(json.dumps(value, default=str))  # rows: JSON values only
        if not isinstance(value, list):
            what = "nothing" if value is None else f"a {type(value).__name__}"
            raise ValueError(
                f"for_each of block {node!r} ({block.for_each}) gave {what}, not a list or a table"
            )
        return value

    async def for_each(self, node: str, block: SerializedBlock) -> Any:
        if self.dispatch_each is None:
            raise ValueError(f"this executor cannot run for_each (block {node!r})")
        params = [
            resolve(
                block.params,
                dataclasses.replace(self.scope, locals={"item": item, "item_index": i}),
            )
            for i, item in enumerate(self.items_of(node, block))
        ]
        return await self.dispatch_each(node, params)

    async def run(self) -> WalkOutcome:
        running: dict[asyncio.Task[Any], tuple[str, float, str]] = {}
        pauses: list[PauseInfo] = []
        try:
            return await self._loop(running, pauses)
        finally:  # cancelled (run canceled, lease lost): stop the steps still running
            for task in running:
                task.cancel()

    def ready_steps(self) -> list[tuple[str, Coroutine[Any, Any, Any]]]:
        """The steps that can start now, each with its dispatch (not yet awaited);
        triggers complete and blocks with a falsy ``when`` are skipped on the way."""
        starts: list[tuple[str, Coroutine[Any, Any, Any]]] = []
        try:
            while self.ready:
                node = self.ready.popleft()
                if node in self.settled:
                    continue
                block = self.plan.blocks[node]
                if self.plan.connectors[node].kind == "trigger":
                    stamp = now_iso()
                    self.records.append(
                        StepRecord(
                            block_id=node,
                            type=block.type,
                            status="completed",
                            started_at=stamp,
                            ended_at=stamp,
                            output=self.trigger,
                        )
                    )
                    self.complete(node, self.trigger)
                elif block.when is not None and is_falsy(resolve(block.when, self.scope)):
                    self.skip_from([node])  # its `when` is falsy: it and what needs it
                elif block.for_each is not None:
                    starts.append((node, self.for_each(node, block)))
                else:
                    starts.append((node, self.dispatch(node, resolve(block.params, self.scope))))
        except BaseException:  # the steps not started are never awaited
            for _, step in starts:
                step.close()
            raise
        return starts

    async def _loop(
        self, running: dict[asyncio.Task[Any], tuple[str, float, str]], pauses: list[PauseInfo]
    ) -> WalkOutcome:
        outcome: WalkOutcome | None = None
        exc: BaseException | None
        while True:
            starts = self.ready_steps() if outcome is None else []
            if len(starts) == 1 and not running:  # alone: awaited here (no task, no wait)
                node, step = starts[0]
                t0, started = time.perf_counter(), now_iso()
                result, exc = None, None
                try:
                    result = await step
                except (KeyboardInterrupt, SystemExit):
                    raise
                except asyncio.CancelledError as e:
                    if _cancelled_from_outside():
                        raise
                    exc = e
                except BaseException as e:  # as a task would keep it (a custom BaseException)
                    exc = e
                outcome = self.settle_step(node, t0, started, result, exc, pauses, outcome)
                continue
            for node, step in starts:
                running[asyncio.ensure_future(step)] = (node, time.perf_counter(), now_iso())
            if not running:
                break
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for task in sorted(done, key=lambda t: self.plan.rank[running[t][0]]):
                node, t0, started = running.pop(task)
                exc = asyncio.CancelledError() if task.cancelled() else task.exception()
                result = None if exc is not None else task.result()
                outcome = self.settle_step(node, t0, started, result, exc, pauses, outcome)
        if outcome is None and pauses:
            outcome = WalkOutcome("paused", pause=pauses[0])
        if outcome is not None:
            outcome.pauses = pauses
        return outcome or WalkOutcome("completed")

    def settle_step(
        self,
        node: str,
        t0: float,
        started: str,
        result: Any,
        exc: BaseException | None,
        pauses: list[PauseInfo],
        outcome: WalkOutcome | None,
    ) -> WalkOutcome | None:
        """Record how a dispatched step ended; the walk's outcome so far (``exc``: of
        an ``abort_on`` type, raised: the walk ends, with no record of it)."""
        if isinstance(exc, self.abort_on):
            raise exc
        rec = StepRecord(
            block_id=node,
            type=self.plan.blocks[node].type,
            status="completed",
            started_at=started,
            ended_at=now_iso(),
            duration_ms=(time.perf_counter() - t0) * 1000,
        )
        self.records.append(rec)
        if exc is not None:
            rec.status, rec.error = "failed", self.redactor(error_text(exc))
            if not self.fail(node, rec.error) and outcome is None:
                outcome = WalkOutcome("failed", error=rec.error, failed_block=node)
            return outcome
        if isinstance(result, PauseInfo):
            rec.status, rec.output = "paused", result.model_dump(mode="json")
            pauses.append(result)
            if outcome is None and self.stop_at_pause:
                outcome = WalkOutcome("paused", pause=result)
            return outcome
        rec.output = result
        self.complete(node, result)
        return outcome


def _cancelled_from_outside() -> bool:
    """True when the current task was asked to stop (a canceled run, a lost lease), not
    when a step raised CancelledError of its own."""
    task = asyncio.current_task()
    return task is None or task.cancelling() > 0


async def walk(
    plan: Plan,
    state: WalkState,
    *,
    trigger: Any,
    env: Mapping[str, str],
    dispatch: Dispatch,
    records: list[StepRecord],
    stop_at_pause: bool = True,
    abort_on: tuple[type[BaseException], ...] = (),
    redactor: Redactor | None = None,
    dispatch_each: DispatchEach | None = None,
    artifacts: ArtifactStore | None = None,
) -> WalkOutcome:
    """Walk ``plan`` from ``state`` (mutated in place), appending to ``records``.

    Stops scheduling at the first unhandled failure, and at the first pause
    when ``stop_at_pause`` (the in-memory snapshot); otherwise branches that
    do not wait go on. Steps already running always finish, so their outputs
    are kept. An exception of a type in ``abort_on`` (the database is gone,
    the lease was lost) is no step failure: it ends the walk and propagates.
    Step errors are masked by ``redactor`` (default: ``plan.redactor(env)``).
    ``dispatch_each`` runs ``for_each`` steps; ``artifacts`` loads a table they iterate.
    """
    return await _Walk(
        plan,
        state,
        trigger=trigger,
        env=env,
        dispatch=dispatch,
        records=records,
        stop_at_pause=stop_at_pause,
        abort_on=abort_on,
        redactor=redactor if redactor is not None else plan.redactor(env),
        dispatch_each=dispatch_each,
        artifacts=artifacts,
    ).run()
