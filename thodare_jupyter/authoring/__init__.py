"""Authoring: the fluent builder and workflow specs."""

from .builder import Ref, StepRefs, WorkflowBuilder, define_workflow
from .spec import WorkflowSpec, define_workflow_spec, workflow_from_spec

__all__ = [
    "Ref",
    "StepRefs",
    "WorkflowBuilder",
    "WorkflowSpec",
    "define_workflow",
    "define_workflow_spec",
    "workflow_from_spec",
]
