"""The ``run_workflow`` block: run another registered workflow as a child run.

``run_workflow {workflow*, input}`` → ``{runId, workflow, outputs}``:
``outputs`` are the child's outputs by block id (``{{child.outputs.fetch.body}}``).
The durable runtime starts the child (the newest live version of ``workflow``
in the definitions store, pinned then), parks the parent until the child ends
(no worker slot held), and fails the step when the child fails or is canceled.
The in-memory executor has no registry of workflows: there the block fails
with :class:`~thodare_jupyter.errors.NeedsDurableRuntime`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from ..errors import NeedsDurableRuntime
from .connector import Connector, define_connector
from .context import StepContext

RUN_WORKFLOW = "run_workflow"


class RunWorkflowParams(BaseModel):
    workflow: str = Field(min_length=1, description="Name of the registered workflow to run.")
    input: dict[str, Any] | None = Field(
        default=None, description="The child run's input ({{trigger}} in the child)."
    )


class RunWorkflowOut(BaseModel):
    runId: str = Field(description="The child run's id.")
    workflow: str = Field(description="The child's workflow name.")
    outputs: dict[str, Any] = Field(description="The child's outputs by block id.")


def _run_workflow(p: RunWorkflowParams, ctx: StepContext) -> RunWorkflowOut:
    raise NeedsDurableRuntime(ctx.block_id, RUN_WORKFLOW)


def child_output(run_id: str, workflow: str | None, outputs: Any) -> dict[str, Any]:
    """The step output of a ``run_workflow`` block whose child completed."""
    return {"runId": run_id, "workflow": workflow or "", "outputs": outputs or {}}


RUN_WORKFLOW_BLOCK: Connector = define_connector(
    type=RUN_WORKFLOW,
    name="Run workflow",
    description=(
        "Run another registered workflow as a child run and wait for it (no worker held); "
        "read its outputs as {{<this step>.outputs.<child block>.<field>}}."
    ),
    params=RunWorkflowParams,
    outputs=RunWorkflowOut,
    run=_run_workflow,
    kind="wait",
)
