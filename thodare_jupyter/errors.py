"""The exception family: one root, narrow subclasses that carry their facts.

Mistakes by the developer are exceptions. Feedback to an LLM (skipped ops,
validation issues) is data in :class:`~thodare_jupyter.wire.ApplyResult`, never
an exception.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .redaction import safe_url


class ThodareError(Exception):
    """Root of every error this package raises on purpose."""


@dataclass(frozen=True)
class Issue:
    """One validation problem as data: where (``block``, ``field``), what (``code``, ``message``).

    ``code`` is stable (``ref-type-mismatch``, ``unknown-connector``, ...), so a
    caller (the YAML compiler, the assistant) acts on it without reading the
    text. ``field`` is a param name, ``"when"`` or ``"forEach"``; ``ref`` is the
    ``{{ref}}`` the issue is about, when it is about one; ``choices`` are the names
    that would have been valid (for a did-you-mean). ``str(issue)`` is the
    line a person reads: prefixed with the block (and its type) when
    ``block_type`` is set, else the ``message`` alone (it names its block itself).
    """

    block: str | None
    field: str | None
    code: str
    message: str
    block_type: str | None = None
    ref: str | None = None
    choices: tuple[str, ...] = ()

    def __str__(self) -> str:
        if self.block is None or self.block_type is None:
            return self.message
        field = f" param '{self.field}'" if self.field else ""
        return f"Block '{self.block}' ({self.block_type}){field}: {self.message}"


class WorkflowInvalid(ThodareError):
    """A workflow cannot run as written.

    ``issues`` lists every reason as an :class:`Issue`; ``problems`` holds their
    lines (a plain string given is an issue with code ``invalid``).
    """

    def __init__(self, name: str | None, problems: Sequence[str | Issue]) -> None:
        self.workflow_name = name
        self.issues = [
            p if isinstance(p, Issue) else Issue(None, None, "invalid", str(p)) for p in problems
        ]
        self.problems = [str(i) for i in self.issues]
        head = f"Workflow {name!r} is invalid" if name else "Workflow is invalid"
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{head} ({len(self.problems)} problem(s)):\n{lines}")


class InputInvalid(ThodareError):
    """A run input does not match the workflow's input model."""

    def __init__(self, workflow: str | None, problems: Sequence[str]) -> None:
        self.workflow_name = workflow
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(
            f"Input for workflow {workflow!r} is invalid; no run was started:\n{lines}"
        )


class UnknownConnector(ThodareError):
    """A block names a connector type that is not in the catalog."""

    def __init__(self, type_: str, available: Sequence[str]) -> None:
        self.type = type_
        self.available = sorted(available)
        super().__init__(
            f"Connector type {type_!r} is not registered. "
            f"Register it (kit.register / Catalog.register) or use one of: "
            f"{', '.join(self.available)}."
        )


class ConnectorConflict(ThodareError):
    """Two different connectors were registered under one type name."""

    def __init__(self, type_: str) -> None:
        self.type = type_
        super().__init__(
            f"A different connector is already registered as {type_!r}. "
            "Give the new one another type name, or pass replace=True."
        )


class ConnectorDefinitionError(ThodareError):
    """A connector was declared wrongly (missing annotations, bad models)."""


class ParamsInvalid(ThodareError):
    """A block's resolved params failed its connector's params model at run time.

    The message names the block, the field and the expected type; a hidden
    param's value is never part of it.
    """

    def __init__(self, block_id: str, connector_type: str, problems: Sequence[str]) -> None:
        self.block_id = block_id
        self.connector_type = connector_type
        self.problems = list(problems)
        super().__init__(
            f"Block {block_id!r} ({connector_type}): params invalid: " + "; ".join(self.problems)
        )


class OutputInvalid(ThodareError):
    """A connector returned something its outputs model rejects."""

    def __init__(self, block_id: str, connector_type: str, problems: Sequence[str]) -> None:
        self.block_id = block_id
        self.connector_type = connector_type
        self.problems = list(problems)
        super().__init__(
            f"Block {block_id!r} ({connector_type}) returned invalid output: "
            + "; ".join(self.problems)
        )


class BuildError(WorkflowInvalid):
    """The fluent builder found problems (bad refs, duplicate ids) at ``build()``."""


class RunFailed(ThodareError):
    """A run ended in failure; ``block_id`` and ``error`` say where and why."""

    def __init__(self, run_id: str, block_id: str | None, error: str) -> None:
        self.run_id = run_id
        self.block_id = block_id
        self.error = error
        where = f" at block {block_id!r}" if block_id else ""
        super().__init__(f"Run {run_id} failed{where}: {error}")


class RunCanceled(ThodareError):
    """The run was canceled before it completed."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"Run {run_id} was canceled.")


class RunTimeout(ThodareError):
    """Waiting for a result took longer than the caller allowed (the run goes on)."""

    def __init__(
        self, run_id: str, timeout: float, status: str, missing: Sequence[str] | None = None
    ) -> None:
        self.run_id = run_id
        self.timeout = timeout
        self.status = status
        self.missing_connectors = list(missing) if missing is not None else None
        hint = ""
        if missing:
            hint = (
                f" No live worker has connector type(s) {', '.join(missing)}: register them "
                "(kit.register, or `thodare worker --import` a module defining them)."
            )
        elif status == "pending":
            hint = " No worker has picked it up: start one with kit.start() or `thodare worker`."
        super().__init__(
            f"Run {run_id} is still {status} after {timeout:g}s; it keeps going.{hint} "
            "Call result() again with a longer timeout, or timeout=None to wait for good."
        )


class RunNotFound(ThodareError, LookupError):
    """No run with this id in the namespace (a :class:`LookupError`, never a ``KeyError``)."""

    def __init__(self, run_id: str, namespace: str, message: str | None = None) -> None:
        self.run_id = run_id
        self.namespace = namespace
        super().__init__(message or f"No run {run_id!r} in namespace {namespace!r}.")


MIN_RUN_ID_PREFIX = 4
"""A run id prefix (the 8 characters the CLI and the panel show) has at least this many."""


class RunIdTooShort(ThodareError, ValueError):
    """A run id prefix shorter than :data:`MIN_RUN_ID_PREFIX` characters."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        super().__init__(
            f"Run id {prefix!r} is too short: give at least {MIN_RUN_ID_PREFIX} characters "
            "of it (`thodare runs` and the panel show 8)."
        )


class RunIdAmbiguous(ThodareError, LookupError):
    """A run id prefix that several runs of the namespace start with; ``candidates``
    holds their ids (``(id, workflow)`` pairs shown), at most ten, newest first."""

    def __init__(
        self, prefix: str, namespace: str, candidates: Sequence[tuple[str, str | None]]
    ) -> None:
        self.prefix, self.namespace = prefix, namespace
        self.candidates = [c[0] for c in candidates]
        shown = ", ".join(f"{i} ({w or 'unnamed'})" for i, w in candidates[:10])
        more = " and more" if len(candidates) > 10 else ""
        super().__init__(
            f"Run id {prefix!r} is ambiguous in namespace {namespace!r}: it starts "
            f"{shown}{more}. Give more characters."
        )


class ScheduleNotFound(ThodareError, LookupError):
    """No schedule with this name in the namespace; ``known`` lists the ones that exist."""

    def __init__(self, name: str, known: Sequence[str]) -> None:
        self.name = name
        self.known = list(known)
        shown = ", ".join(self.known) or "none"
        super().__init__(f"No schedule named {name!r} (schedules: {shown}).")


class KitClosed(ThodareError):
    """A kit was used after ``close()`` (or the end of its ``with`` block)."""

    def __init__(self, call: str) -> None:
        self.call = call
        super().__init__(
            f"kit.{call}(): this kit is closed (close() or the end of its `with` block "
            "released its database). Create a new one with create_wfkit()."
        )


class SpecNotBuilt(ThodareError):
    """``run_spec`` was given a spec no workflow implements in this kit."""

    def __init__(self, spec: str, built: Sequence[str]) -> None:
        self.spec = spec
        self.built = sorted(built)
        known = ", ".join(self.built) or "none yet"
        super().__init__(
            f"No workflow implements spec {spec!r} in this kit "
            f"(built: {known}). Call kit.workflow_from_spec(spec, steps) first."
        )


class ForkBlockNotFound(ThodareError, LookupError):
    """``fork`` was asked to start from a block the workflow does not have."""

    def __init__(
        self, run_id: str, block_id: str, workflow: str | None, blocks: Sequence[str]
    ) -> None:
        self.run_id = run_id
        self.block_id = block_id
        self.workflow_name = workflow
        self.blocks = sorted(blocks)
        super().__init__(
            f"Cannot fork run {run_id} from {block_id!r}: no such block in workflow "
            f"{workflow!r}. Blocks: {', '.join(self.blocks)}."
        )


class WorkflowNotNamed(ThodareError):
    """Only a workflow with ``metadata.name`` can be versioned (saved, undone)."""

    def __init__(self) -> None:
        super().__init__("Only a named workflow can be versioned: set metadata.name.")


class WebhookConfigError(ThodareError):
    """A webhook router or its ASGI app was set up wrongly (the message says how)."""


class WebhookPathInvalid(WebhookConfigError):
    """A route's path template is malformed (a bad or repeated ``:param``)."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        super().__init__(message)


class WebhookRouteConflict(WebhookConfigError):
    """A route with this method and path shape is registered already."""

    def __init__(self, method: str, path: str, existing_path: str, existing_target: str) -> None:
        self.method = method
        self.path = path
        self.existing_path = existing_path
        self.existing_target = existing_target
        super().__init__(
            f"A {method} route matching {path!r} exists already ({existing_path!r} → "
            f"{existing_target}); register each method and path once."
        )


class WebhookSecretEmpty(WebhookConfigError):
    """``create_webhook_router`` got an empty secret (use None for no secret)."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"create_webhook_router: {name} is empty; pass a real secret or None.")


class WebhookRouterNotLoaded(WebhookConfigError):
    """``THODARE_WEBHOOKS`` (or the ref given) does not lead to a router."""

    def __init__(self, ref: str, message: str) -> None:
        self.ref = ref
        super().__init__(message)


class UnsupportedScope(ThodareError):
    """The ASGI app was called with a scope type it does not serve (only HTTP and lifespan)."""

    def __init__(self, scope_type: str) -> None:
        self.scope_type = scope_type
        super().__init__(f"WebhookApp serves HTTP only, not {scope_type!r}.")


class TracingTargetInvalid(ThodareError):
    """``with_tracing`` was given something other than a kit."""

    def __init__(self, got: str) -> None:
        self.got = got
        super().__init__(
            f"with_tracing() takes a Wfkit, not {got}: hooks subscribe to the kit's lifecycle "
            "events (a bare Store has none). Pass the kit from create_wfkit()."
        )


class ScheduleInvalid(ThodareError):
    """A schedule's cron expression, time zone, end or policy is not usable."""

    def __init__(self, field: str, value: Any, problem: str) -> None:
        self.field = field
        self.value = value
        self.problem = problem
        super().__init__(f"Schedule {field} {value!r}: {problem}")


class NotPaused(ThodareError):
    """``resume_in_memory`` was given a run that is not paused."""

    def __init__(self, status: str) -> None:
        self.status = status
        super().__init__(f"Only a paused run can be resumed; this run is {status}.")


class BackendUnavailable(ThodareError):
    """The database behind a kit cannot be reached or opened."""

    def __init__(self, url: str, reason: Any) -> None:
        self.url = safe_url(url)
        self.reason = str(reason)
        super().__init__(f"Cannot use the database at {self.url}: {reason}")


class StoreRefused(ThodareError):
    """The database refused a statement (not an outage): the message names only the cause."""

    def __init__(self, error: BaseException) -> None:
        orig = getattr(error, "orig", None) or error
        try:
            first = str(orig).strip().splitlines()[0] if str(orig).strip() else ""
        except Exception:
            first = ""
        self.cause = type(orig).__name__
        super().__init__(
            f"The database refused the statement ({self.cause}"
            + (f": {first[:200]}" if first and "[SQL:" not in first else "")
            + ")."
        )


def listing(names: Iterable[str], limit: int = 30) -> str:
    """A short, sorted, comma-separated list for messages."""
    items = sorted(names)
    more = f", … ({len(items) - limit} more)" if len(items) > limit else ""
    return (", ".join(items[:limit]) or "(none)") + more


def suggest(name: str, choices: Iterable[str]) -> str:
    """`` Did you mean 'x'?`` when one of ``choices`` is close to ``name``, else ``""``."""
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" Did you mean '{close[0]}'?" if close else ""


@dataclass(frozen=True)
class YamlProblem:
    """One mistake in a ``%%workflow`` cell; ``line``/``column`` are 1-based, in the cell."""

    line: int
    column: int
    field: str
    message: str
    choices: tuple[str, ...] = ()

    @property
    def unlisted(self) -> bool:
        """Whether ``choices`` need showing: some, and the message does not list them."""
        return bool(self.choices) and listing(self.choices) not in self.message

    def __str__(self) -> str:
        head = f"line {self.line}, col {self.column}: " + (f"{self.field}: " if self.field else "")
        more = f" (choices: {listing(self.choices)})" if self.unlisted else ""
        return head + self.message + more


class WorkflowYamlError(ThodareError):
    """A ``%%workflow`` cell does not compile; ``problems`` locates every mistake."""

    def __init__(self, name: str, problems: Sequence[YamlProblem]) -> None:
        self.workflow_name = name
        self.problems = list(problems)
        lines = "\n".join(f"  {p}" for p in self.problems)
        super().__init__(
            f"Workflow {name!r}: the YAML has {len(self.problems)} problem(s); fix them and "
            f"run the cell again:\n{lines}"
        )


class AssistantError(ThodareError):
    """The assistant could not get an answer from its model (the message says what to do)."""


class AssistantNotConfigured(AssistantError):
    """No model is configured, or its provider's SDK or key is missing."""


class ProviderUnreachable(AssistantError):
    """The model's server did not answer (connection refused, DNS, timeout)."""


class ProviderRateLimited(AssistantError):
    """The provider kept answering 429 after the retries with backoff."""


class ProviderFailed(AssistantError):
    """The provider answered with an error status (bad key, unknown model, ...)."""


class NothingToUndo(ThodareError):
    """``undo`` was asked of a workflow with no earlier version left."""

    def __init__(self, name: str) -> None:
        self.workflow_name = name
        super().__init__(
            f"Workflow {name!r} has no earlier version to go back to "
            f"(see its versions with %workflow history {name})."
        )


class WorkflowNotDefined(ThodareError, LookupError):
    """No workflow of this name in the notebook session; ``defined`` lists those that are."""

    def __init__(self, name: str, defined: Sequence[str]) -> None:
        self.workflow_name = name
        self.defined = sorted(defined)
        known = ", ".join(self.defined) or "none yet"
        super().__init__(f"No workflow {name!r} in this session (defined: {known}).")


class NoRunsYet(ThodareError):
    """``--run last`` was asked of a workflow that has never run."""

    def __init__(self, name: str) -> None:
        self.workflow_name = name
        super().__init__(f"Workflow {name!r} has no runs yet: drop --run.")


class ProposalAlreadyDecided(ThodareError):
    """An assistant proposal was accepted after it had been accepted or rejected."""

    def __init__(self, key: str) -> None:
        self.key = key
        super().__init__("This proposal was already accepted or rejected.")


class ProposalNotApplied(ThodareError):
    """An assistant proposal whose patch did not apply cannot be accepted."""

    def __init__(self, key: str, summary: str) -> None:
        self.key = key
        self.summary = summary
        super().__init__(f"This proposal did not apply; it cannot be accepted.\n{summary}")


class ProposalOutdated(ThodareError):
    """The workflow changed after the proposal was made; accepting it would lose that work."""

    def __init__(self, name: str) -> None:
        self.workflow_name = name
        super().__init__(
            f"{name} changed after this proposal was made; nothing was applied. Ask again."
        )


class UnknownPanelAction(ThodareError):
    """The lab panel sent an action the kernel does not know (a version mismatch)."""

    def __init__(self, action: object) -> None:
        self.action = action
        super().__init__(f"Unknown panel action {action!r}.")


class ArtifactMissing(ThodareError, LookupError):
    """A step's table, file or large output is not in the artifact store any more."""

    def __init__(self, artifact_id: str, store_url: str) -> None:
        self.artifact_id = artifact_id
        self.store_url = safe_url(store_url)
        super().__init__(
            f"Artifact {artifact_id} is missing from the artifact store at {self.store_url} "
            "(deleted, pruned, or written to a store this process does not use). Re-run the "
            "step that made it (kit.fork(run_id, block_id)), or pass create_wfkit(artifacts=...) "
            "the store that holds it."
        )


class ArtifactStoreError(ThodareError):
    """The artifact store could not be read or written (not a missing artifact)."""

    def __init__(self, action: str, store_url: str, reason: BaseException) -> None:
        self.store_url = safe_url(store_url)
        self.reason = f"{type(reason).__name__}: {reason}" if str(reason) else type(reason).__name__
        super().__init__(f"Cannot {action} the artifact store at {self.store_url}: {self.reason}")


class StepOutputMissing(ThodareError, LookupError):
    """A step has no output to load: it has not completed in that run (or is no block of it)."""

    def __init__(
        self, run_id: str, block_id: str, status: str | None, steps: dict[str, str]
    ) -> None:
        self.run_id, self.block_id, self.status = run_id, block_id, status
        why = f"its step is {status}" if status else "it has no step in that run"
        done = [b for b, s in steps.items() if s == "completed"]
        super().__init__(
            f"Run {run_id} has no output for block {block_id!r}: {why}. "
            f"Blocks with an output: {listing(done)}."
        )


class QueryFailed(ThodareError):
    """The builtin ``sql`` block could not run its query: names the block and the
    database's own error (masked), never the database URL."""

    def __init__(self, block_id: str, problem: str) -> None:
        self.block_id = block_id
        self.problem = problem
        super().__init__(f"Block {block_id!r} (sql): {problem}")


class StepTimedOut(ThodareError):
    """One attempt of a step ran past the block's ``timeout`` (a failed attempt)."""

    def __init__(self, block_id: str, type: str, timeout_s: float) -> None:
        self.block_id, self.type, self.timeout_s = block_id, type, timeout_s
        super().__init__(
            f"Block '{block_id}' ({type}) took longer than its timeout of {seconds(timeout_s)}; "
            "raise `timeout` or make the step faster."
        )


def seconds(value: float) -> str:
    """``30.0`` → ``"30 s"``, ``0.25`` → ``"0.25 s"`` (for messages)."""
    return f"{value:g} s"


class WorkflowNotRegistered(ThodareError, LookupError):
    """``run_workflow`` named a workflow with no stored definition; ``registered`` lists those
    there are (in the run's database and namespace)."""

    def __init__(self, name: str, registered: Sequence[str]) -> None:
        self.workflow_name = name
        self.registered = sorted(registered)
        known = ", ".join(self.registered) or "none yet"
        super().__init__(
            f"No registered workflow {name!r} (registered: {known}). Define it in a "
            "%%workflow cell or keep it with kit.save_version(workflow), then run again."
        )


class NeedsDurableRuntime(ThodareError):
    """A block that only the durable runtime can run (``run_workflow``) ran in memory."""

    def __init__(self, block_id: str, type_: str) -> None:
        self.block_id, self.type = block_id, type_
        super().__init__(
            f"Block {block_id!r} ({type_}) starts a child run of a registered workflow, which "
            "needs the durable runtime: run this workflow with kit.run(...), not run_in_memory."
        )


class ChildRunsTooDeep(ThodareError):
    """``run_workflow`` would nest child runs deeper than the limit (a workflow that runs
    itself, directly or through others)."""

    def __init__(self, block_id: str, workflow: str, limit: int) -> None:
        self.block_id, self.workflow_name, self.limit = block_id, workflow, limit
        super().__init__(
            f"Block {block_id!r} (run_workflow) would start a child of {workflow!r} {limit + 1} "
            f"runs deep; child runs nest at most {limit} deep. Does a workflow run itself? "
            "Give the recursion an end (a `when:` on the run_workflow step) or flatten it."
        )
