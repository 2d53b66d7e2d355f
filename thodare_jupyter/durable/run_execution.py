"""One claimed run, walked once by a worker: its steps (with retries, timeouts,
flow control, step logs and ``for_each`` items), waits, child runs, and its end;
every write fenced by the run's lease and sent through the worker's group commit,
or, for a line of sync steps, from the steps' own thread (on SQLite: of a run walked alone)."""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import Connection

from ..clock import from_iso, to_iso
from ..connectors import Connector, StepContext, wait_output
from ..connectors.child import RUN_WORKFLOW, RunWorkflowParams, child_output
from ..connectors.flow import backoff
from ..controls import DEFAULT_CONCURRENCY, fan_out, item_key, retry_policy, within
from ..errors import BackendUnavailable, ThodareError, WorkflowNotRegistered
from ..execution.walker import Plan, StepRecord, WalkState, error_text, walk
from ..loop_threads import in_thread
from ..redaction import masked_params
from ..step_logs import Capture, begin, end
from ..validation import input_model_of, validate_input
from ..wire import TERMINAL_STATUSES, PauseInfo, SerializedBlock
from .child_store import waiting_for
from .definitions import Definitions
from .records import LogWrite, RunRow, StepWrite
from .run_store import LeaseLost
from .step_chain import ChainEnded, Link, StepChain, chained_next

if TYPE_CHECKING:
    from .worker import Worker


class StepFailed(ThodareError):
    """A durable step failed for good (after its retries)."""


_HOLD_S = 0.05
"""A step's end waits at most this long for the next write of its run to carry it."""


@functools.lru_cache(maxsize=128)  # a plan is walked many times
def first_steps(plan: Plan) -> tuple[tuple[str, str], ...]:
    """``(block_id, type)`` of the steps every walk of ``plan`` from its start runs
    first with :meth:`RunExecution.compute`, before any step has an output: compute
    steps (no ``run_workflow``, ``for_each`` or ``when``) fed by triggers alone.
    A run's insert can carry their start markers (see ``RunStore.start_run``)."""
    trigger = {n for n, c in plan.connectors.items() if c.kind == "trigger"}
    return tuple(
        (n, conn.type)
        for n, conn in plan.connectors.items()
        if conn.kind == "compute" and conn.type != RUN_WORKFLOW
        and plan.blocks[n].when is None and plan.blocks[n].for_each is None
        and all(p in trigger and len({h for _, h in plan.succs[p]}) == 1 for p in plan.preds[n])
    )  # fmt: skip


class RunExecution:
    """One claimed run, walked once by this worker.

    A step's end is held and written with the run's next write (the next step's
    start, or the run's end), so a sequential run costs one statement a step;
    that write lands before anything downstream starts, and a held end is
    written within ``_HOLD_S`` anyway. The run's writes go in order, one at a
    time; starts that queue up meanwhile (a ``for_each`` step's items, parallel
    branches) go together in the next one. A line of sync steps runs on one step
    thread, each end written there with the next start (:class:`.step_chain.StepChain`),
    when the run's writes may commit on their own (:attr:`Worker.commits_alone`).
    """

    def __init__(self, worker: Worker, row: RunRow) -> None:
        self.w, self.row, self.store = worker, row, worker.store
        self.owner = worker.owner
        self.ended: list[StepWrite] = []
        self.logs: list[LogWrite] = []  # ended attempts' logs: they go with the next write
        self.releases: list[str] = []  # flow-control slots of ended attempts: likewise
        self.lock = asyncio.Lock()
        self.starts: list[tuple[StepWrite, asyncio.Future[tuple[bool, Any]]]] = []
        self.flush: asyncio.Handle | None = None
        self.marked = set(row.marked)  # start markers the run's insert wrote
        self.unsent: dict[str, Any] = {}  # their params: they go with the step's end
        self.chained: dict[str, Link] = {}  # steps a chain ran before the walk reached them
        self.outputs: dict[str, Any] = {}  # the walk's outputs (read by chains)
        self.stopped = threading.Event()  # the walk ended: a chain starts no further step
        self.plain_finish = False  # the run ends with RunStore.finish_in (no parent, no child)
        self.finished = False  # a chain wrote the run's end
        self.running = 0  # steps dispatched and not ended

    async def write(self, fn: Any, *, also: Sequence[StepWrite] = (), **kw: Any) -> Any:
        """Run a store ``*_in`` write that takes ``steps`` (the held step ends, then
        ``also``) in the worker's next group commit; its result once committed."""
        async with self.lock:
            return await self._write(fn, also=also, **kw)

    async def _write(self, fn: Any, *, also: Sequence[StepWrite] = (), **kw: Any) -> Any:
        """:meth:`write`, the lock held."""
        ended, self.ended = self.ended, []
        logs, self.logs = self.logs, []
        releases, self.releases = self.releases, []
        steps = [*ended, *also]
        starts_only = all(w.status == "running" for w in steps)
        lazy = fn == self.store.runs.write_steps_in and starts_only and not logs
        single = not logs and not releases and self.store.runs.one_statement(fn, steps)
        op = functools.partial(fn, run_id=self.row.id, owner=self.owner, steps=steps, **kw)
        if logs:  # after the fenced write: stored only while this worker holds the run
            op = functools.partial(self.with_logs, op, logs)
        if releases:  # the slots go back with the step's end (a lost write: they expire)
            op = functools.partial(self._with_releases, op, releases)
        try:
            done = await self.w.committed(op, lazy=lazy, single=single)
        finally:
            self.w.flow_held.difference_update(releases)
        self.w.lifecycle.steps_written(self.row.id, steps, done)
        return done

    def with_logs(
        self, op: Callable[[Connection], Any], logs: list[LogWrite], c: Connection
    ) -> Any:
        done = op(c)
        self.store.logs.write_in(c, self.row.id, logs)
        return done

    def _with_releases(
        self, op: Callable[[Connection], Any], releases: list[str], c: Connection
    ) -> Any:
        done = op(c)
        self.store.flow.release_in(c, releases)
        return done

    async def acquire(self, block_id: str, conn: Connector) -> str | None:
        """Wait for a slot and a token of ``conn``'s flow control, shared by every
        worker on the database; asleep between tries, no transaction held. Returns
        the slot to give back (``None`` when only the rate is limited)."""
        assert conn.flow is not None
        tries = 0
        while True:
            holder, wait = await self.w.io(
                self.store.flow.take, conn.flow, self.row.id, block_id, self.owner,
                self.w.config.lease_s,
            )  # fmt: skip
            if wait == 0.0:
                if holder is not None:
                    self.w.flow_held.add(holder)
                return holder
            await asyncio.sleep(wait + 0.001 if wait > 0 else backoff(tries))
            tries = min(tries + 1, 8)

    async def give_back(self) -> None:
        """Release the slots of ended attempts now (before a retry's backoff)."""
        releases, self.releases = self.releases, []
        if releases:
            try:
                await self.w.io(self.store.flow.release, releases)
            finally:
                self.w.flow_held.difference_update(releases)

    def keep_logs(self, capture: Capture) -> None:
        """Hold an ended attempt's logs for the next write."""
        self.logs.extend(self.logs_of(capture))

    def logs_of(self, capture: Capture) -> list[LogWrite]:
        """An ended attempt's logs (masked by the run's redactor), if it wrote any."""
        lines, cut = capture.finish(self.redactor)
        return [LogWrite(capture.block_id, capture.attempt, lines, cut)] if lines or cut else []

    def hold(self, end: StepWrite) -> None:
        """Keep a step's end for the run's next write. A sequential run's next write
        takes it in this turn of the loop; one still held after it is written within
        ``_HOLD_S`` anyway (one timer, not one per step)."""
        self.ended.append(end)
        if self.flush is None:
            self.flush = asyncio.get_running_loop().call_soon(self.still_held)

    def still_held(self) -> None:
        self.flush = None
        if self.ended:
            self.flush = asyncio.get_running_loop().call_later(_HOLD_S, self.write_held)

    def write_held(self) -> None:
        self.flush = None
        if self.ended:
            self.w.spawn(self.write(self.store.runs.write_steps_in))

    def shown(self, block_id: str, params: dict[str, Any]) -> dict[str, Any]:
        """``params`` of ``block_id`` as stored and shown: hidden and env values masked."""
        conn, block = self.plan.connectors[block_id], self.plan.blocks[block_id]
        return masked_params(params, block.params, conn.hidden_params, self.redactor)

    async def start(self, block_id: str, type_: str, output: Any = None, params: Any = None) -> int:
        """Record an attempt's start (with the held ends and ``params``, masked); its attempt
        number. The first start to get the lock writes every start queued by then, in one
        write. A start marker the run's insert wrote is not written again (its params
        go with the step's end: :meth:`ended_step`)."""
        if block_id in self.marked:
            self.marked.discard(block_id)
            self.unsent[block_id] = params
            self.w.lifecycle.steps_written(self.row.id, [StepWrite(block_id, type_, "running")])
            return 1
        mine: asyncio.Future[tuple[bool, Any]] = asyncio.get_running_loop().create_future()
        queued = (StepWrite(block_id, type_, "running", output=output, params=params), mine)
        self.starts.append(queued)
        try:
            await self.lock.acquire()
        except asyncio.CancelledError:  # canceled before its start was written: not written
            if queued in self.starts:
                self.starts.remove(queued)
            raise
        try:
            if not mine.done():
                batch, self.starts = self.starts, []
                attempts: dict[str, int] = {}
                said: BaseException | None = None
                try:
                    attempts = await self._write(
                        self.store.runs.write_steps_in, also=[w for w, _ in batch]
                    )
                except BaseException as e:  # each start of the batch hears it (cancel too)
                    said = e
                for w, done in batch:
                    done.set_result((False, said) if said else (True, attempts[w.block_id]))
        finally:
            self.lock.release()
        ok, value = await mine
        if not ok:
            raise value
        return int(value)

    async def inserted(self) -> None:
        """Wait until the run's insert has committed, if it was handed over before
        (:attr:`RunRow.committed`); raises :class:`LeaseLost` if it did not."""
        gate = self.row.committed
        if gate is not None:
            await asyncio.wrap_future(gate)
            self.row.committed = None

    async def dispatch(self, block_id: str, params: dict[str, Any]) -> Any:
        conn = self.plan.connectors[block_id]
        if not self.chains(block_id):  # (a chain's thread waits for the insert itself)
            await self.inserted()
        self.running += 1
        try:
            if conn.type == RUN_WORKFLOW:
                return await self.child(block_id, conn, params)
            if conn.kind == "wait":
                return await self.wait(block_id, conn, params)
            return await self.compute(block_id, conn, params)
        finally:
            self.running -= 1

    async def compute(
        self, block_id: str, conn: Connector, params: dict[str, Any], key: str | None = None
    ) -> Any:
        """Run a compute step (``key``: one item of a ``for_each`` step, its own row)."""
        block = self.plan.blocks[block_id]
        retries = retry_policy(block, conn)  # the block's `retries`, else the connector's
        row = key or block_id
        ran = self.chained.pop(row, None)  # run already, on the thread of the step before it
        if ran is None:
            attempt = await self.start(row, conn.type, params=self.shown(block_id, params))
        else:
            attempt = ran.attempt
        while True:
            if ran is None and key is None and self.chains(block_id):
                ran = await self.run_chain(Link(block_id, conn, params, attempt))
                if self.finished:  # the chain wrote every step's end and the run's
                    raise ChainEnded(self.row.id)
            if ran is not None and ran.write_error is not None:
                raise ran.write_error
            written = False
            try:
                if ran is not None:  # its outcome, and whether its end is written already
                    link, ran = ran, None
                    written = link.written
                    if not written and link.capture is not None:
                        self.keep_logs(link.capture)
                    if link.error is not None:
                        raise link.error
                    out = link.output
                    if inspect.isawaitable(out):  # a sync run that returned an awaitable
                        out = await conn.finish(out, self.context(row, attempt))
                else:
                    out = await self.attempt(row, block, conn, params, attempt)
                if isinstance(out, PauseInfo):
                    raise StepFailed(
                        f"Block {block_id!r} ({conn.type}) returned a pause, but compute blocks "
                        "cannot suspend in the durable runtime; use a wait block "
                        "(wait_duration, wait_for_event, human_approval) after it."
                    )
            except asyncio.CancelledError:
                raise
            except Exception as e:
                if attempt < retries.max_attempts and not isinstance(e, StepFailed):
                    await self.give_back()
                    await asyncio.sleep(retries.delay(attempt))
                    attempt = await self.start(row, conn.type, params=self.shown(block_id, params))
                    continue
                error = self.redactor(error_text(e))
                kept = {"error": error} if key else None  # an item's error comes back in the memo
                self.hold(self.ended_step(row, conn.type, "failed", attempt, error=error,
                                          output=kept))  # fmt: skip
                raise
            if not written:
                self.hold(self.ended_step(row, conn.type, "completed", attempt, output=out))
            return out

    def context(self, row: str, attempt: int) -> StepContext:
        """The context of one attempt of a compute step (or item)."""
        return StepContext(
            run_id=self.row.id, block_id=row, attempt=attempt, env=self.w.env,
            redactor=self.redactor, artifacts=self.w.artifacts,
        )  # fmt: skip

    async def attempt(
        self,
        row: str,
        block: SerializedBlock,
        conn: Connector,
        params: dict[str, Any],
        attempt: int,
    ) -> Any:
        """One attempt of a compute step on the loop: its flow control, step logs and timeout."""
        holder = None if conn.flow is None else await self.acquire(row, conn)
        capture = Capture(row, attempt)
        token = begin(capture)
        try:
            return await within(conn.execute(params, self.context(row, attempt)), block, conn)
        finally:
            end(token)
            self.keep_logs(capture)
            if holder is not None:
                self.releases.append(holder)

    def chains(self, block_id: str) -> bool:
        """Whether ``block_id`` runs as the head of a chain (:class:`.step_chain.StepChain`):
        when its writes may commit on their own (:attr:`Worker.commits_alone`), with no
        deadline to keep and no walk events to time."""
        return (
            block_id in chained_next(self.plan) and self.row.deadline_at is None
            and not self.w.lifecycle.walking and self.w.commits_alone
        )  # fmt: skip

    async def run_chain(self, first: Link) -> Link:
        """Run ``first``, and the steps that follow it one by one, on a step thread
        (:class:`.step_chain.StepChain`); ``first`` as it ended. The others wait
        in :attr:`chained` for the walk to reach them."""
        links = await in_thread(StepChain(self).run, first)
        for link in links[1:]:
            self.chained[link.block_id] = link
        return links[0]

    def ended_step(self, row: str, type_: str, status: str, attempt: int, **kw: Any) -> StepWrite:
        """A compute step's end, with its params when its start marker had none."""
        return StepWrite(row, type_, status, attempt, params=self.unsent.pop(row, None), **kw)

    async def dispatch_each(self, block_id: str, params: list[dict[str, Any]]) -> Any:
        """A ``for_each`` step: its row, then a row per item (``block_id[i]``); items
        that ended before (the claim's memo) are not run again."""
        await self.inserted()
        self.running += 1
        try:
            return await self._each(block_id, params)
        finally:
            self.running -= 1

    async def _each(self, block_id: str, params: list[dict[str, Any]]) -> Any:
        conn, block = self.plan.connectors[block_id], self.plan.blocks[block_id]
        attempt = await self.start(block_id, conn.type, {"total": len(params)})  # progress k/N

        async def one(i: int, p: dict[str, Any]) -> Any:
            key = item_key(block_id, i)
            if key in self.items:
                status, out = self.items[key]
                if status == "completed":
                    return out
                raise StepFailed(out.get("error") if isinstance(out, dict) else "failed")
            return await self.compute(block_id, conn, p, key)

        out = await fan_out(
            params,
            block.concurrency or DEFAULT_CONCURRENCY,
            one,
            error_of=lambda e: self.redactor(error_text(e)),
            abort_on=(LeaseLost, BackendUnavailable),
        )
        self.hold(StepWrite(block_id, conn.type, "completed", attempt, output=out))
        return out

    async def wait(self, block_id: str, conn: Connector, params: dict[str, Any]) -> Any:
        ctx = StepContext(
            run_id=self.row.id, block_id=block_id, env=self.w.env, redactor=self.redactor
        )
        pause = await conn.execute(params, ctx)
        take = None if not pause.resume_on_event else functools.partial(
            self.store.signals.take_signal_in, run_id=self.row.id, block_id=block_id,
            event=pause.resume_on_event, key=pause.correlation_key,
            horizon=self.row.signal_horizon,
        )  # fmt: skip
        runs = self.store.runs  # held step ends need not land first: the park carries them
        wake_at, (found, payload) = await self.w.io(
            runs.step_waiting, self.row.id, self.owner, block_id, conn.type,
            event=pause.resume_on_event, key=pause.correlation_key,
            wake_at=from_iso(pause.resume_at), params=self.shown(block_id, params), take=take,
        )  # fmt: skip
        self.w.lifecycle.step_waiting(self.row.id, block_id, conn.type, wake_at)
        output = wait_output(pause.kind, payload) if found else None
        if output is None and wake_at is not None and time.time() >= wake_at:
            output = wait_output(pause.kind, None, timed_out=pause.kind != "duration")
        if output is None:
            return pause.model_copy(update={"resume_at": to_iso(wake_at)})
        self.hold(StepWrite(block_id, conn.type, "completed", 1, output=output))
        return output

    async def child(self, block_id: str, conn: Connector, params: dict[str, Any]) -> Any:
        """A ``run_workflow`` step: its child run (started once: a re-walk finds it), the
        run parked while the child has not ended (no slot held; the child's end wakes
        it), then the child's outputs; a failed or canceled child fails the step."""
        try:
            found = await self.w.io(self.store.children.find, self.row.id, block_id)
            if found is None:
                p = conn.validate_params(params, block_id, self.redactor)
                assert isinstance(p, RunWorkflowParams)
                found = await self.start_child(block_id, conn, p)
            if found.status not in TERMINAL_STATUSES:
                self.w.lifecycle.step_waiting(self.row.id, block_id, conn.type, None)
                return PauseInfo(
                    block_id=block_id, kind="event", resume_on_event=waiting_for(found.id)
                )
            what = f"Child run {found.id} (workflow {found.workflow_name!r})"
            if found.status == "failed":
                at = f" at block {found.failed_block!r}" if found.failed_block else ""
                raise StepFailed(f"{what} failed{at}: {found.error}")
            if found.status == "canceled":
                raise StepFailed(f"{what} was canceled.")
        except (LeaseLost, BackendUnavailable, asyncio.CancelledError):
            raise
        except Exception as e:
            error = self.redactor(error_text(e))
            shown = self.shown(block_id, params)
            self.hold(StepWrite(block_id, conn.type, "failed", 1, error=error, params=shown))
            raise
        output = child_output(found.id, found.workflow_name, found.outputs)
        shown = self.shown(block_id, params)
        self.hold(StepWrite(block_id, conn.type, "completed", 1, output=output, params=shown))
        return output

    async def start_child(self, block_id: str, conn: Connector, p: RunWorkflowParams) -> RunRow:
        """Start the child run of a ``run_workflow`` step: the newest live version of the
        named workflow, pinned now, with the input checked against its input model."""
        definitions = Definitions(self.store)
        version = await self.w.io(definitions.latest, p.workflow)
        if version is None:
            raise WorkflowNotRegistered(p.workflow, await self.w.io(definitions.names))
        wf = version.workflow
        data = validate_input(input_model_of(wf), p.input, p.workflow, self.w.artifacts)
        if self.ended:  # what the child's input came from is durable before the child starts
            await self.write(self.store.runs.write_steps_in)
        child_id = uuid.uuid4().hex
        self.w.lifecycle.run_creating(child_id, p.workflow, data)
        row = await self.w.io(
            self.store.children.start, self.row.id, self.owner, block_id, conn.type,
            child_id=child_id, workflow_name=p.workflow,
            workflow_json=version.workflow_json, input=data,
        )  # fmt: skip
        self.w.lifecycle.run_created(row.id, p.workflow, data, asked=child_id)
        self.w.wake()  # this worker may take the child as soon as the parent parks
        return row

    def state(self) -> WalkState:
        state = WalkState()
        self.items: dict[str, tuple[str, Any]] = {}  # for_each items that ended
        for block_id, status, output in self.row.memo or ():
            if "[" in block_id:  # no block id has one: an item of a for_each step
                self.items[block_id] = (status, output)
            elif status == "completed":
                state.outputs[block_id] = output
                state.completed.append(block_id)
            elif (
                status == "failed"
                and block_id in self.plan.blocks
                and any(h == "error" for _, h in self.plan.succs[block_id])
            ):
                state.failed.append(block_id)
        return state

    async def execute(self) -> None:
        try:
            await self.walk()
        finally:
            self.stopped.set()
            if self.flush is not None:
                self.flush.cancel()
            if self.releases:  # walk stopped before its next write: give them back anyway
                self.w.spawn(self.give_back())

    async def walk(self) -> None:
        # a child's end wakes its parent; a parent's failure cancels its children
        has_parent = self.row.parent_run_id is not None
        linked = functools.partial(self.store.children.finish_in, parent=has_parent)
        finish = linked if has_parent else self.store.runs.finish_in
        try:
            self.plan = self.w.plan(self.row.workflow_json)
            if any(c.type == RUN_WORKFLOW for c in self.plan.connectors.values()):
                finish = linked
            self.plain_finish = finish == self.store.runs.finish_in
        except ThodareError as e:
            await self.write(finish, status="failed", error=str(e))
            self.w.lifecycle.run_ended(self.row.id, "failed", str(e))
            return
        self.redactor = self.plan.redactor(self.w.env)
        state = self.state()
        self.outputs = state.outputs
        records: list[StepRecord] = []
        coro = walk(
            self.plan,
            state,
            trigger=self.row.input,
            env=self.w.env,
            dispatch=self.dispatch,
            records=records,
            stop_at_pause=False,
            abort_on=(LeaseLost, BackendUnavailable, ChainEnded),
            redactor=self.redactor,
            dispatch_each=self.dispatch_each,
            artifacts=self.w.artifacts,
        )
        deadline = self.row.deadline_at
        try:
            if deadline is not None:
                outcome = await asyncio.wait_for(coro, timeout=max(0.0, deadline - time.time()))
            else:
                outcome = await coro
        except ChainEnded:
            self.w.lifecycle.run_ended(self.row.id, "completed")
            return
        except TimeoutError:
            error = "The run's deadline passed before it finished."
            # the steps it was at (waiting or running) fail with it: the first is where it failed
            rows = await self.w.io(self.store.runs.get_steps, self.row.id)
            held = {w.block_id for w in self.ended}
            at = [r for r in rows if r.status in ("running", "waiting") and r.block_id not in held]
            cut = [StepWrite(r.block_id, r.type, "failed", r.attempt, error=error) for r in at]
            failed_block = next((r.block_id for r in at if "[" not in r.block_id), None)
            await self.write(finish, also=cut, status="failed", error=error,
                             failed_block=failed_block)  # fmt: skip
            self.w.lifecycle.run_ended(self.row.id, "failed", error, failed_block)
            self.w.ended(self.row.id, ("failed", None, error, failed_block))
            return
        for r in records:
            if r.status == "skipped":
                self.ended.append(StepWrite(r.block_id, r.type, "skipped", 0))
        if outcome.status == "completed":
            if not self.finished:  # (a chain wrote it with the last step)
                await self.write(finish, status="completed", outputs=state.outputs)
                self.w.ended(self.row.id, ("completed", state.outputs, None, None))
            self.w.lifecycle.run_ended(self.row.id, "completed")
        elif outcome.status == "failed":
            await self.write(
                finish, status="failed", error=outcome.error, failed_block=outcome.failed_block
            )
            self.w.lifecycle.run_ended(self.row.id, "failed", outcome.error, outcome.failed_block)
            self.w.ended(self.row.id, ("failed", None, outcome.error, outcome.failed_block))
        else:
            timers = [t for p in outcome.pauses if (t := from_iso(p.resume_at)) is not None]
            if deadline is not None:
                timers.append(deadline)
            wake_at = min(timers) if timers else None
            woke = await self.write(self.store.runs.park_in, wake_at=wake_at)
            self.w.lifecycle.run_parked(self.row.id, wake_at)
            if woke:
                self.w.wake()  # a signal came while it walked
            elif wake_at is not None:
                self.w.timer(wake_at)
