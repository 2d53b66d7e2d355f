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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..connectors import Catalog
from ..durable.handle import RunDescription
from ..errors import WorkflowInvalid
from ..patch import apply_operations
from ..validation import compile_workflow
from ..wire import ApplyResult, SerializedWorkflow
from .diff import WorkflowDiff, workflow_diff
from .prompt import (
    SYSTEM,
    Masker,
    not_json_message,
    repair_message,
    request_message,
    run_context,
)
from .providers import ChatModel, Message, model_from_env

DEFAULT_ATTEMPTS = 3
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
        env: The values ``{{env.X}}`` reads (default: the process environment);
            used only to mask them out of every request.
    """

    def __init__(
        self,
        model: ChatModel | str | None = None,
        *,
        max_attempts: int = DEFAULT_ATTEMPTS,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self._model = model
        self.max_attempts = max_attempts
        self.env = env

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
        run: RunDescription | None = None,
        check: Check | None = None,
        progress: Progress | None = None,
    ) -> Proposal:
        """Ask the model for a patch and repair it until it applies (or the budget ends).

        Args:
            workflow: The workflow to change (never mutated).
            ask: The request, in the user's words.
            catalog: The connectors the model may use (shown without hidden params).
            run: A run the request is about ("why did this fail?"): its statuses,
                outputs and error are shown to the model, secrets masked.
            check: More problems to repair (each a sentence the model can act on).
            progress: Told of each attempt, for a progress line.

        Returns:
            A :class:`Proposal`; ``applied`` is False when the budget ran out
            (``summary`` then says why).

        Raises:
            AssistantError: No model configured, provider unreachable, rate
                limited after retries, or an error status.
        """
        model = self.model
        mask = Masker(workflow, catalog, self.env if self.env is not None else os.environ)
        first = request_message(workflow, ask, catalog, run_context(run) if run else None)
        messages: list[Message] = [{"role": "user", "content": mask(first)}]
        ops: list[Any] = []
        explanation, problems = "", ["The model sent no answer."]
        result = apply_operations(workflow, [], catalog)
        attempt = 0
        for attempt in range(1, self.max_attempts + 1):
            if progress is not None:
                progress(attempt, self.max_attempts, f"asking {model.name}")
            answer = model.complete(SYSTEM, messages)
            messages.append({"role": "assistant", "content": answer})
            parsed = _parse(answer)
            if isinstance(parsed, str):
                problems = [f"The model's answer was not the JSON object asked for: {parsed}."]
                messages.append(
                    {
                        "role": "user",
                        "content": not_json_message(attempt, self.max_attempts, parsed),
                    }
                )
                continue
            ops, explanation = parsed
            result = apply_operations(workflow, ops, catalog)
            problems = _problems(result, catalog, check)
            if result.ok and not problems:
                break
            feedback = repair_message(attempt, self.max_attempts, result, problems)
            messages.append({"role": "user", "content": mask(feedback)})
        return Proposal(
            ask=ask, ops=ops, result=result, attempts=attempt, explanation=explanation,
            diff=workflow_diff(workflow, result.workflow, catalog), before=workflow,
            problems=problems, transcript=messages,
        )  # fmt: skip


def _parse(answer: str) -> tuple[list[Any], str] | str:
    """The ops and explanation of an answer, or why it is not the object asked for."""
    text = _FENCE.sub("", answer.strip())
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        start, end = text.find("{"), text.rfind("}")
        if start < 0 or end <= start:
            return f"not JSON ({e.msg} at line {e.lineno} column {e.colno})"
        try:
            data = json.loads(text[start : end + 1])
        except json.JSONDecodeError as e2:
            return f"not JSON ({e2.msg} at line {e2.lineno} column {e2.colno})"
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
