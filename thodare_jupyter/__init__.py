"""thodare-jupyter: typed, durable workflows authored in JupyterLab.

The public API is re-exported here; everything else is internal.
"""

from .artifacts import ArtifactStore
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
from .data import File, Table
from .durable.definitions import DefinitionVersion
from .durable.handle import RunDescription, RunHandle, StepDescription
from .durable.prune import PruneReport
from .durable.schedules import DispatchReport, ScheduleInfo
from .durable.signal_store import SignalSent
from .errors import (
    ArtifactMissing,
    ArtifactStoreError,
    AssistantError,
    AssistantNotConfigured,
    BackendUnavailable,
    BuildError,
    ConnectorConflict,
    ConnectorDefinitionError,
    ForkBlockNotFound,
    InputInvalid,
    Issue,
    KitClosed,
    NoRunsYet,
    NothingToUndo,
    NotPaused,
    OutputInvalid,
    ParamsInvalid,
    ProposalAlreadyDecided,
    ProposalNotApplied,
    ProposalOutdated,
    ProviderFailed,
    ProviderRateLimited,
    ProviderUnreachable,
    RunCanceled,
    RunFailed,
    RunIdAmbiguous,
    RunIdTooShort,
    RunNotFound,
    RunTimeout,
    ScheduleInvalid,
    ScheduleNotFound,
    SpecNotBuilt,
    StepOutputMissing,
    ThodareError,
    TracingTargetInvalid,
    UnknownConnector,
    UnknownPanelAction,
    UnsupportedScope,
    WebhookConfigError,
    WebhookPathInvalid,
    WebhookRouteConflict,
    WebhookRouterNotLoaded,
    WebhookSecretEmpty,
    WorkflowInvalid,
    WorkflowNotDefined,
    WorkflowNotNamed,
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
    RunStatus,
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
    "ArtifactMissing",
    "ArtifactStore",
    "ArtifactStoreError",
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
    "File",
    "ForkBlockNotFound",
    "Hidden",
    "InMemoryRun",
    "InputInvalid",
    "Issue",
    "KitClosed",
    "NoRunsYet",
    "NotPaused",
    "NothingToUndo",
    "OutputInvalid",
    "ParamsInvalid",
    "PauseInfo",
    "Proposal",
    "ProposalAlreadyDecided",
    "ProposalNotApplied",
    "ProposalOutdated",
    "ProviderFailed",
    "ProviderRateLimited",
    "ProviderUnreachable",
    "PruneReport",
    "RetryPolicy",
    "RunCanceled",
    "RunDescription",
    "RunFailed",
    "RunHandle",
    "RunIdAmbiguous",
    "RunIdTooShort",
    "RunNotFound",
    "RunStatus",
    "RunTimeout",
    "ScheduleInfo",
    "ScheduleInvalid",
    "ScheduleNotFound",
    "SerializedBlock",
    "SerializedConnection",
    "SerializedWorkflow",
    "SignalSent",
    "SkippedItem",
    "SpecNotBuilt",
    "StepContext",
    "StepDescription",
    "StepOutputMissing",
    "Table",
    "ThodareError",
    "TracingHooks",
    "TracingTargetInvalid",
    "UnknownConnector",
    "UnknownPanelAction",
    "UnsupportedScope",
    "UserOnly",
    "ValidationIssue",
    "WebhookConfigError",
    "WebhookPathInvalid",
    "WebhookRequest",
    "WebhookResponse",
    "WebhookRouteConflict",
    "WebhookRouter",
    "WebhookRouterNotLoaded",
    "WebhookSecretEmpty",
    "Wfkit",
    "WorkflowBuilder",
    "WorkflowInvalid",
    "WorkflowNotDefined",
    "WorkflowNotNamed",
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
