"""A line of sync steps of one run, walked on one step thread: each step's end is
committed there with the next step's start, before the next step runs, and the
last step's end with the run's end when nothing else is left. A sequential run so
crosses threads once for the whole line, not twice a step and twice a write.
:class:`.run_execution.RunExecution` starts a chain and meets its steps later."""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..connectors import Connector
from ..connectors.child import RUN_WORKFLOW
from ..execution.walker import Plan
from ..step_logs import Capture, begin, end
from ..templates import resolve
from ..wire import PauseInfo
from .records import StepWrite

if TYPE_CHECKING:
    from .run_execution import RunExecution


class ChainEnded(Exception):
    """A chain wrote the run's end with its last step's: the walk has nothing left to
    do (it stops at the chain's head, not meeting each step the chain ran)."""


def _chainable(plan: Plan, block_id: str) -> bool:
    """A sync compute step with nothing to do on the loop around its run: no flow
    control, ``when``, ``for_each`` or ``timeout``."""
    conn, block = plan.connectors[block_id], plan.blocks[block_id]
    return (
        conn.kind == "compute" and conn.type != RUN_WORKFLOW and not conn.is_async
        and conn.flow is None and block.when is None and block.for_each is None
        and block.timeout is None
    )  # fmt: skip


@functools.lru_cache(maxsize=128)  # a plan is walked many times
def chained_next(plan: Plan) -> dict[str, str]:
    """``{N: F}``: once step ``N`` completes, the walk starts ``F`` and only ``F``
    (``N``'s one edge leads to it, and ``F`` needs nothing else); both are
    :func:`_chainable`. ``F`` can then run on ``N``'s thread (:meth:`StepChain.run`)."""
    return {
        n: plan.succs[n][0][0]
        for n in plan.connectors
        if len(plan.succs[n]) == 1 and plan.succs[n][0][1] != "error"
        and _chainable(plan, n) and _chainable(plan, plan.succs[n][0][0])
        and plan.preds[plan.succs[n][0][0]] == [n]
    }  # fmt: skip


@dataclass
class Link:
    """One attempt of a step run by :meth:`StepChain.run` on a step thread."""

    block_id: str
    conn: Connector
    params: dict[str, Any]
    attempt: int
    capture: Capture | None = None
    output: Any = None
    error: Exception | None = None
    written: bool = False
    """Its end was written there, with the start of the link after it."""
    write_error: BaseException | None = None
    """Writing its end failed (:class:`LeaseLost`, the database): the walk stops."""


class StepChain:
    """The chain of one run's walk (``ex``), run on a step thread."""

    def __init__(self, ex: RunExecution) -> None:
        self.ex = ex

    def run(self, link: Link) -> list[Link]:
        """On a step thread: run ``link``; while it completes and :func:`chained_next`
        names the step after it, write its end and that step's start in one commit
        (durable before the next step starts, as on the loop), then run that step
        too. The run's last step ends the run in its commit when every other block
        has completed. Stops at a failure, a pause, the end of the walk or a write
        that failed; the walk takes it from there."""
        links = [link]
        if self.ex.row.committed is not None:  # handed over before its insert committed
            try:
                self.ex.row.committed.result()
            except BaseException as e:  # LeaseLost: the run was never stored
                link.write_error = e
                return links
        while True:
            link.capture = Capture(link.block_id, link.attempt)
            token = begin(link.capture)
            try:
                link.output = link.conn.run_sync(
                    link.params, self.ex.context(link.block_id, link.attempt)
                )
            except Exception as e:
                link.error = e
                return links
            finally:
                end(token)
            if (
                self.ex.stopped.is_set() or not self.ex.w.commits_alone
                or isinstance(link.output, PauseInfo) or inspect.isawaitable(link.output)
            ):  # fmt: skip
                return links
            nxt = chained_next(self.ex.plan).get(link.block_id)
            if nxt is None:
                self.finish(links)
                return links
            try:  # a block whose params do not resolve: the walk says what is wrong
                outputs = {**self.ex.outputs, link.block_id: link.output}
                params = resolve(self.ex.plan.blocks[nxt].params, self.ex.plan.scope(
                    outputs, self.ex.row.input, self.ex.w.env))  # fmt: skip
                shown = self.ex.shown(nxt, params)
            except Exception:
                return links
            conn = self.ex.plan.connectors[nxt]
            start = StepWrite(nxt, conn.type, "running", params=shown)
            done = self.write(link, self.ex.store.runs.write_steps_in, start)
            if not link.written:
                return links
            link = Link(nxt, conn, params, done[nxt])
            links.append(link)

    def finish(self, links: list[Link]) -> None:
        """On a chain's thread, after its last link: if that was the run's last step
        and every block has completed, write the run's end with it and say so.
        Not while any other step of the run runs, or its end waits to be written
        (held, or in a write under way: the loop holds an end before the walk
        records the output, and takes the run's lock before it takes the ends)."""
        outputs = {**self.ex.outputs, **{x.block_id: x.output for x in links}}
        if (
            not self.ex.plain_finish or not outputs.keys() >= self.ex.plan.blocks.keys()
            or self.ex.running != 1 or self.ex.ended or self.ex.logs or self.ex.releases
            or self.ex.lock.locked()
        ):  # fmt: skip
            return
        self.write(links[-1], self.ex.store.runs.finish_in, status="completed", outputs=outputs)
        if links[-1].written:
            self.ex.finished = True
            self.ex.w.ended(self.ex.row.id, ("completed", outputs, None, None))

    def write(self, link: Link, fn: Any, *also: StepWrite, **kw: Any) -> Any:
        """On a chain's thread: a store ``*_in`` write ``fn`` of ``link``'s end (with
        its logs) and ``also``, in a commit of its own; its result, and
        ``link.written``, or ``link.write_error``."""
        runs = self.ex.store.runs
        ended = self.ex.ended_step(
            link.block_id, link.conn.type, "completed", link.attempt, output=link.output
        )
        steps = [ended, *also]
        assert link.capture is not None
        logs = self.ex.logs_of(link.capture)
        op = functools.partial(fn, run_id=self.ex.row.id, owner=self.ex.owner, steps=steps, **kw)
        if logs:
            op = functools.partial(self.ex.with_logs, op, logs)
        try:
            single = not logs and runs.one_statement(fn, steps)
            [(ok, done)] = runs.run_batch([op], lazy=False, single=single)
            if not ok:
                raise done
        except Exception as e:
            link.write_error = e
            return None
        link.written = True
        return done
