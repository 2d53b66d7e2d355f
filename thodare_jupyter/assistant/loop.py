"""The repair loop: ask the model for EditOps, apply them, send the engine's feedback back.

The model answers with ``{"operations": [...], "explanation": "..."}``. Each
answer is applied to the original workflow with :func:`apply_operations` and
the result compiled; skipped items, validation errors and compile problems go
back to the model until the patch applies cleanly or the attempt budget ends.
Nothing is changed until the user accepts the :class:`Proposal`.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..connectors import Catalog
from ..durable.handle import RunDescription, RunHandle
from ..durable.store import Store
from ..errors import WorkflowInvalid
from ..patch import apply_operations
from ..validation import compile_workflow
from ..wire import ApplyResult, SerializedWorkflow
from .diff import WorkflowDiff, workflow_diff
from .prompt import (
    SYSTEM,
    masker,
    not_json_message,
    repair_message,
    request_message,
    run_context,
)
from .providers import ChatModel, Message, model_from_env

if TYPE_CHECKING:
    from ..kit import Wfkit

DEFAULT_ATTEMPTS = 3
ALLOW_ENV_VAR = "THODARE_LLM_ALLOW_ENV"
MAX_DEPTH = 64
"""Deepest nesting of lists and objects read from an answer (EditOps need a handful)."""
Check = Callable[[SerializedWorkflow], list[str]]
"""Extra checks on a proposed workflow (e.g. "can it be written back as YAML?")."""
Progress = Callable[[int, int, str], None]
"""Called as ``(attempt, budget, what)`` while the loop works."""
_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.S)


@dataclass
class Proposal:
    """A change the model proposes; nothing is applied until it is accepted.

    Attributes:
        ask: The user's request.
        ops: The operations of the last attempt (as the model sent them).
        result: ``apply_operations`` on the original workflow with ``ops``.
        attempts: Model calls made (at most the budget).
        explanation: The model's words for the user.
        diff: Blocks added, changed and removed, and the JSON diff text.
        problems: Compile or extra-check problems left after the last attempt.
        before: The workflow the request was about.
        transcript: The conversation (masked), for debugging prompts.
        allow_env: The env names the patch was allowed to start reading.
    """

    ask: str
    ops: list[Any]
    result: ApplyResult
    attempts: int
    explanation: str
    diff: WorkflowDiff
    before: SerializedWorkflow
    problems: list[str] = field(default_factory=list)
    transcript: list[Message] = field(default_factory=list, repr=False)
    allow_env: list[str] = field(default_factory=list)

    @property
    def env_refs(self) -> list[str]:
        """Env names read by the blocks and params the patch adds or changes (to warn about)."""
        return self.diff.env_refs

    @property
    def applied(self) -> bool:
        """True when every op applied, the result compiles and passes the checks."""
        return self.result.ok and not self.problems

    @property
    def workflow(self) -> SerializedWorkflow:
        """The workflow as it would be after accepting."""
        return self.result.workflow

    @property
    def summary(self) -> str:
        """The engine's last word on the patch, for the user."""
        lines = [self.result.summary, *(f"  • {p}" for p in self.problems)]
        if not self.applied:
            lines.insert(0, f"Not applied after {self.attempts} attempt(s).")
        return "\n".join(lines)


class Assistant:
    """Turns a request in words into a validated patch of a workflow.

    Args:
        model: A :class:`ChatModel`, a ``provider:model`` string, or ``None`` for
            ``THODARE_LLM_MODEL`` (read when :meth:`propose` first runs).
        max_attempts: Model calls per request, the repairs included.
        env: The values ``{{env.X}}`` reads, used only to mask them out of every
            request (default: the kit's env, else the process environment).
        kit: The kit the workflows run on: its env masks requests, and a run
            passed to :meth:`propose` is looked up in its store for the workflow
            it was pinned to (whose env values and hidden values are masked too).
        allow_env: Env names the model may make a block read that the workflow
            did not read before (default: ``THODARE_LLM_ALLOW_ENV``, comma-separated;
            none when unset). Any other new ``{{env.X}}`` is refused and sent back.
    """

    def __init__(
        self,
        model: ChatModel | str | None = None,
        *,
        max_attempts: int = DEFAULT_ATTEMPTS,
        env: Mapping[str, str] | None = None,
        kit: Wfkit | None = None,
        allow_env: Collection[str] | None = None,
    ) -> None:
        self._model = model
        self.max_attempts = max_attempts
        self.kit = kit
        self.env = env if env is not None else kit.env if kit is not None else None
        self.allow_env = allow_env

    @property
    def model(self) -> ChatModel:
        """The chat model (raises :class:`AssistantNotConfigured` with what to set)."""
        if self._model is None or isinstance(self._model, str):
            self._model = model_from_env(self._model)
        return self._model

    def propose(
        self,
        workflow: SerializedWorkflow,
        ask: str,
        catalog: Catalog,
        *,
        run: RunDescription | RunHandle | None = None,
        check: Check | None = None,
        progress: Progress | None = None,
        allow_env: Collection[str] | None = None,
    ) -> Proposal:
        """Ask the model for a patch and repair it until it applies (or the budget ends).

        Args:
            workflow: The workflow to change (never mutated).
            ask: The request, in the user's words.
            catalog: The connectors the model may use (shown without hidden params).
            run: A run the request is about ("why did this fail?"): its statuses,
                outputs and error are shown to the model, with the secrets of the
                workflow it ran (found through a handle or the kit) masked as well.
            check: More problems to repair (each a sentence the model can act on).
            progress: Told of each attempt, for a progress line.
            allow_env: For this request, instead of the assistant's ``allow_env``.

        Returns:
            A :class:`Proposal`; ``applied`` is False when the budget ran out
            (``summary`` then says why).

        Raises:
            AssistantError: No model configured, provider unreachable, rate
                limited after retries, or an error status.
        """
        model = self.model
        allowed = sorted(self._allowed(allow_env))
        shown = [workflow.to_dict()]
        if isinstance(run, RunHandle):
            shown += self._pinned(run.store, run.id)
            run = run.describe()
        elif run is not None and self.kit is not None:
            shown += self._pinned(self.kit.store, run.id)
        mask = masker(shown, catalog, self.env if self.env is not None else os.environ)
        first = request_message(workflow, ask, catalog, run_context(run) if run else None)
        messages: list[Message] = [{"role": "user", "content": mask(first)}]
        ops: list[Any] = []
        explanation, problems = "", ["The model sent no answer."]
        result = apply_operations(workflow, [], catalog, allow_env=allowed)
        attempt = 0
        for attempt in range(1, self.max_attempts + 1):
            if progress is not None:
                progress(attempt, self.max_attempts, f"asking {model.name}")
            answer = model.complete(SYSTEM, messages)
            messages.append({"role": "assistant", "content": answer})
            parsed = _parse(answer)
            if isinstance(parsed, str):
                problems = [f"The model's answer was not the JSON object asked for: {parsed}."]
                feedback = not_json_message(attempt, self.max_attempts, parsed)
                messages.append({"role": "user", "content": mask(feedback)})
                continue
            ops, explanation = parsed
            result = apply_operations(workflow, ops, catalog, allow_env=allowed)
            problems = _problems(result, catalog, check)
            if result.ok and not problems:
                break
            feedback = repair_message(attempt, self.max_attempts, result, problems)
            messages.append({"role": "user", "content": mask(feedback)})
        return Proposal(
            ask=ask, ops=ops, result=result, attempts=attempt, explanation=explanation,
            diff=workflow_diff(workflow, result.workflow, catalog), before=workflow,
            problems=problems, transcript=messages, allow_env=allowed,
        )  # fmt: skip

    def _allowed(self, given: Collection[str] | None) -> set[str]:
        """The env names a patch may start reading: given, the assistant's, or the variable's."""
        names = given if given is not None else self.allow_env
        return set(env_names(os.environ.get(ALLOW_ENV_VAR, "") if names is None else names))

    @staticmethod
    def _pinned(store: Store, run_id: str) -> list[dict[str, Any]]:
        """The workflow (as JSON) a stored run started with: its secrets are masked too."""
        row = store.runs.get_run(run_id)
        return [json.loads(row.workflow_json)] if row is not None else []


def env_names(names: Collection[str]) -> list[str]:
    """Env names from a list or a comma-separated string (``"API_TOKEN, REGION"``)."""
    items = names.split(",") if isinstance(names, str) else names
    return [n.strip() for n in items if n.strip()]


class _Unreadable(Exception):
    """Why an answer is not JSON; ``syntax`` when prose around an object may be the cause."""

    def __init__(self, why: str, *, syntax: bool = False) -> None:
        super().__init__(why)
        self.why, self.syntax = why, syntax


def _constant(name: str) -> Any:
    raise _Unreadable(f"{name} is not JSON: write the number as digits, or a string")


def _int(digits: str) -> int:
    limit = sys.get_int_max_str_digits()
    if limit and len(digits.lstrip("-")) > limit:
        raise _Unreadable(f"a number of {len(digits)} digits (at most {limit})")
    return int(digits)


def _loads(text: str) -> Any:
    """``text`` as JSON: standard JSON only, numbers and nesting bounded (never raises else)."""
    try:
        data = json.loads(text, parse_constant=_constant, parse_int=_int)
    except json.JSONDecodeError as e:
        raise _Unreadable(f"not JSON ({e.msg} at line {e.lineno} column {e.colno})",
                          syntax=True) from None  # fmt: skip
    except RecursionError:
        raise _Unreadable(f"lists or objects nested deeper than {MAX_DEPTH} levels") from None
    if _depth_over(data, MAX_DEPTH):
        raise _Unreadable(f"lists or objects nested deeper than {MAX_DEPTH} levels")
    return data


def _depth_over(data: Any, limit: int) -> bool:
    """True when lists and objects in ``data`` nest deeper than ``limit`` (no recursion)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            value = list(value.values())
        if isinstance(value, list):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in value)
    return False


def _parse(answer: str) -> tuple[list[Any], str] | str:
    """The ops and explanation of an answer, or why it is not the object asked for."""
    text = _FENCE.sub("", answer.strip())
    try:
        data = _loads(text)
    except _Unreadable as e:
        start, end = text.find("{"), text.rfind("}")
        if not e.syntax or start < 0 or end <= start:
            return e.why
        try:  # prose around the object: read the outermost braces
            data = _loads(text[start : end + 1])
        except _Unreadable as e2:
            return e2.why
    if not isinstance(data, dict):
        return f"a JSON {type(data).__name__}, not an object"
    ops = data.get("operations")
    if not isinstance(ops, list):
        return 'no "operations" list in the object'
    explanation = data.get("explanation")
    return ops, explanation if isinstance(explanation, str) else ""


def _problems(result: ApplyResult, catalog: Catalog, check: Check | None) -> list[str]:
    """What keeps an applied patch from running: compile problems, then the extra check."""
    try:
        compile_workflow(result.workflow, catalog)
    except WorkflowInvalid as e:
        return e.problems
    return check(result.workflow) if check is not None and result.ok else []
