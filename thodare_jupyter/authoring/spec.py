"""``define_workflow_spec``: a workflow's name, version and I/O contract, without its steps.

A spec can live in a package with no worker code. ``workflow_from_spec``
gives it steps; ``spec.validate_input`` checks an input before any run exists.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from ..validation import validate_input
from ..wire import SerializedWorkflow
from .builder import WorkflowBuilder, define_workflow

if TYPE_CHECKING:
    from ..artifacts import ArtifactStore


@dataclass(frozen=True)
class WorkflowSpec:
    """Name + version + input/output models. Runs are registered as ``name@version``."""

    name: str
    version: str
    input: type[BaseModel] | None = None
    output: type[BaseModel] | None = None
    description: str | None = None

    @property
    def runtime_name(self) -> str:
        """``name@version``: two versions of one spec are two workflows."""
        return f"{self.name}@{self.version}"

    def validate_input(self, data: Any, artifacts: ArtifactStore | None = None) -> Any:
        """The validated, JSON-ready input; raises :class:`InputInvalid` naming each field.

        ``Table``/``File`` values go to ``artifacts`` (the result holds their references).
        """
        return validate_input(self.input, data, self.runtime_name, artifacts)


def define_workflow_spec(
    name: str,
    version: str,
    *,
    input: type[BaseModel] | None = None,
    output: type[BaseModel] | None = None,
    description: str | None = None,
) -> WorkflowSpec:
    """Declare a workflow's contract (see :class:`WorkflowSpec`)."""
    if not name:
        raise ValueError("define_workflow_spec: name is required.")
    if not version:
        raise ValueError("define_workflow_spec: version is required.")
    return WorkflowSpec(
        name=name, version=str(version), input=input, output=output, description=description
    )


def workflow_from_spec(
    spec: WorkflowSpec, steps: Callable[[WorkflowBuilder], WorkflowBuilder]
) -> SerializedWorkflow:
    """Build the workflow that implements ``spec``: ``steps`` adds steps to its builder."""
    builder = define_workflow(spec.runtime_name, description=spec.description)
    if spec.input is not None:
        builder = builder.input(spec.input)
    return steps(builder).build()
