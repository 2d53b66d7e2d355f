"""thodare-jupyter: typed, durable workflows authored in JupyterLab.

The public API is re-exported here; everything else is internal.
"""

from .authoring import (
    WorkflowBuilder,
    WorkflowSpec,
    define_workflow,
    define_workflow_spec,
    workflow_from_spec,
)
from .connectors import (
    Catalog,
    Connector,
    Hidden,
    RetryPolicy,
    StepContext,
    UserOnly,
    connector,
    define_connector,
)
from .durable.handle import RunDescription, RunHandle, StepDescription
from .errors import (
    BackendUnavailable,
    BuildError,
    ConnectorConflict,
    ConnectorDefinitionError,
    InputInvalid,
    NotPaused,
    OutputInvalid,
    ParamsInvalid,
    RunCanceled,
    RunFailed,
    RunTimeout,
    ScheduleInvalid,
    ThodareError,
    UnknownConnector,
    WorkflowInvalid,
)
from .execution import (
    InMemoryRun,
    aresume_in_memory,
    arun_in_memory,
    resume_in_memory,
    run_in_memory,
)
from .kit import Wfkit, create_wfkit
from .patch import apply_operations, redact_for_llm
from .validation import compile_workflow
from .wire import (
    ApplyResult,
    EditOp,
    PauseInfo,
    SerializedBlock,
    SerializedConnection,
    SerializedWorkflow,
    SkippedItem,
    ValidationIssue,
)

__all__ = [
    "ApplyResult",
    "BackendUnavailable",
    "BuildError",
    "Catalog",
    "Connector",
    "ConnectorConflict",
    "ConnectorDefinitionError",
    "EditOp",
    "Hidden",
    "InMemoryRun",
    "InputInvalid",
    "NotPaused",
    "OutputInvalid",
    "ParamsInvalid",
    "PauseInfo",
    "RetryPolicy",
    "RunCanceled",
    "RunDescription",
    "RunFailed",
    "RunHandle",
    "RunTimeout",
    "ScheduleInvalid",
    "SerializedBlock",
    "SerializedConnection",
    "SerializedWorkflow",
    "SkippedItem",
    "StepContext",
    "StepDescription",
    "ThodareError",
    "UnknownConnector",
    "UserOnly",
    "ValidationIssue",
    "Wfkit",
    "WorkflowBuilder",
    "WorkflowInvalid",
    "WorkflowSpec",
    "apply_operations",
    "aresume_in_memory",
    "arun_in_memory",
    "compile_workflow",
    "connector",
    "create_wfkit",
    "define_connector",
    "define_workflow",
    "define_workflow_spec",
    "redact_for_llm",
    "resume_in_memory",
    "run_in_memory",
    "workflow_from_spec",
]
