"""thodare-jupyter: typed, durable workflows authored in JupyterLab.

The public API is re-exported here; everything else is internal.
"""

from .assistant import Assistant, Proposal
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
from .durable.definitions import DefinitionVersion
from .durable.handle import RunDescription, RunHandle, StepDescription
from .durable.schedules import DispatchReport, ScheduleInfo
from .errors import (
    AssistantError,
    AssistantNotConfigured,
    BackendUnavailable,
    BuildError,
    ConnectorConflict,
    ConnectorDefinitionError,
    InputInvalid,
    NothingToUndo,
    NotPaused,
    OutputInvalid,
    ParamsInvalid,
    ProviderFailed,
    ProviderRateLimited,
    ProviderUnreachable,
    RunCanceled,
    RunFailed,
    RunTimeout,
    ScheduleInvalid,
    ThodareError,
    UnknownConnector,
    WorkflowInvalid,
    WorkflowYamlError,
)
from .execution import (
    InMemoryRun,
    aresume_in_memory,
    arun_in_memory,
    resume_in_memory,
    run_in_memory,
)
from .integrations.tracing import TracingHooks, with_tracing
from .integrations.webhooks import (
    WebhookRequest,
    WebhookResponse,
    WebhookRouter,
    create_webhook_router,
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


def load_ipython_extension(ip: object) -> None:
    """``%load_ext thodare_jupyter``: ``wfkit``, the workflow magics and the DAG displays."""
    from .notebook.extension import load_ipython_extension as load

    load(ip)


def unload_ipython_extension(ip: object) -> None:
    """``%unload_ext thodare_jupyter``: stop the worker and close ``wfkit``."""
    from .notebook.extension import unload_ipython_extension as unload

    unload(ip)


__all__ = [
    "ApplyResult",
    "Assistant",
    "AssistantError",
    "AssistantNotConfigured",
    "BackendUnavailable",
    "BuildError",
    "Catalog",
    "Connector",
    "ConnectorConflict",
    "ConnectorDefinitionError",
    "DefinitionVersion",
    "DispatchReport",
    "EditOp",
    "Hidden",
    "InMemoryRun",
    "InputInvalid",
    "NotPaused",
    "NothingToUndo",
    "OutputInvalid",
    "ParamsInvalid",
    "PauseInfo",
    "Proposal",
    "ProviderFailed",
    "ProviderRateLimited",
    "ProviderUnreachable",
    "RetryPolicy",
    "RunCanceled",
    "RunDescription",
    "RunFailed",
    "RunHandle",
    "RunTimeout",
    "ScheduleInfo",
    "ScheduleInvalid",
    "SerializedBlock",
    "SerializedConnection",
    "SerializedWorkflow",
    "SkippedItem",
    "StepContext",
    "StepDescription",
    "ThodareError",
    "TracingHooks",
    "UnknownConnector",
    "UserOnly",
    "ValidationIssue",
    "WebhookRequest",
    "WebhookResponse",
    "WebhookRouter",
    "Wfkit",
    "WorkflowBuilder",
    "WorkflowInvalid",
    "WorkflowSpec",
    "WorkflowYamlError",
    "apply_operations",
    "aresume_in_memory",
    "arun_in_memory",
    "compile_workflow",
    "connector",
    "create_webhook_router",
    "create_wfkit",
    "define_connector",
    "define_workflow",
    "define_workflow_spec",
    "redact_for_llm",
    "resume_in_memory",
    "run_in_memory",
    "with_tracing",
    "workflow_from_spec",
]
