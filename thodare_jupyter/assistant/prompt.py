# ruff: noqa: E501  (the system prompt keeps one rule per line, as the model reads it)
"""What the model is told: the rules, the catalog and workflow as it may see them, feedback.

Secrets never leave: the catalog and the workflow come redacted (hidden params
have neither name nor value in them), and :func:`masker` scrubs every message
(a run's outputs and errors included) before it is sent.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from ..connectors import Catalog
from ..durable.handle import RunDescription
from ..patch import redact_for_llm
from ..redaction import Redactor, run_redactor
from ..wire import ApplyResult, SerializedWorkflow

SYSTEM = """\
You change workflows of thodare-jupyter by sending edit operations. You never write whole workflows.
Answer with exactly one JSON object and nothing else:
{"operations": [<operation>, ...], "explanation": "<one or two sentences for the user>"}

Operations (the field "operation_type" says which):
- {"operation_type": "add", "block_id": "<new id>", "type": "<connector type>", "name": "<optional>", "params": {...}, <optional step controls, below>}
- {"operation_type": "edit", "block_id": "<id>", "name": "<optional>", "params": {<only the params to change>}, <optional step controls, below>}
- {"operation_type": "delete", "block_id": "<id>"}   (its connections are removed too)
- {"operation_type": "connect", "block_id": "<source id>", "target_block_id": "<target id>", "source_handle": "<optional branch>"}
- {"operation_type": "disconnect", "block_id": "<source id>", "target_block_id": "<target id>"}

Rules:
- Use only connector types from the catalog and only the params it lists for them; required params must be set.
- Data flows through templates: {{trigger.<field>}} is the run input, {{<block id>.<output field>}} an output of an upstream block (only the outputs the catalog lists), {{vars.<name>}} a workflow variable, {{env.<NAME>}} an environment value.
- A block may only read blocks upstream of it. Connect every new block: from "__trigger__" or the block whose output it reads, and to the blocks that must run after it.
- To put B between A and C: disconnect A->C, connect A->B, connect B->C.
- The operations are applied in order to the workflow exactly as it is shown to you. When told they did not apply, send the whole corrected list again, for that same workflow.
- If the request needs no change, send an empty list and say why in the explanation.

Step controls: add and edit may also set these fields of the operation itself (beside "params", not inside it); send null to remove one, leave it out to keep it:
- "forEach": "{{<upstream block>.<field>}}" (a list, or a table: one item per row) runs the block once per item ("send each row", "for every lead"). Only in that block's params: {{item}} is the item, {{item.<field>}} a field of it, {{item_index}} its position from 0. Compute blocks only (not wait blocks).
- "concurrency": <1-1000>, the items of a forEach block in flight at once (default 8).
- A forEach block's output is {"items": [each item's output, null where it failed], "failed": [{"index": <i>, "error": "<text>"}]}: a block after it reads {{<id>.items}} or {{<id>.failed}}, never the connector's own outputs.
- "retries": {"max": <attempts in all, the first included>, "backoff": "<pause before the second attempt, doubling after each failure, e.g. 2s>"}; "retry 3 times" is {"max": 4}. It replaces the connector's own retry policy for that block (for forEach: for each item).
- "when": "{{<upstream block>.<field>}}": the block runs only when that value is truthy; falsy (false, null, 0, "", [], {}) skips it and every block that needs it ("only if approved": "when": "{{approve.approved}}", approve being an upstream human_approval).
- "timeout": "<duration>" (30s, 2m, 500ms): the longest one attempt may take (for forEach: one item's call); past it the attempt fails and is retried if attempts remain.
- Example: {"operation_type": "add", "block_id": "greet_each", "type": "slack", "forEach": "{{query.rows}}", "concurrency": 4, "retries": {"max": 3, "backoff": "2s"}, "timeout": "30s", "when": "{{approve.approved}}", "params": {"operation": "send", "channel": "#sales", "text": "Hi {{item.name}} (row {{item_index}})"}}
"""


def request_message(
    workflow: SerializedWorkflow, ask: str, catalog: Catalog, run: Mapping[str, Any] | None
) -> str:
    """The first user turn: catalog, workflow, optionally a run, then the request."""
    parts = [
        "Connector catalog (JSON):",
        json.dumps(catalog.describe_for_llm(), separators=(",", ":")),
        "",
        "The workflow now (JSON):",
        json.dumps(redact_for_llm(workflow, catalog), indent=1),
    ]
    if run is not None:
        parts += ["", "The run the user is asking about (JSON):", json.dumps(run, indent=1)]
    parts += ["", f"Request: {ask}"]
    return "\n".join(parts)


def repair_message(
    attempt: int, budget: int, result: ApplyResult | None, problems: Iterable[str]
) -> str:
    """A later user turn: why the last answer did not apply, and what to send."""
    said = [result.summary] if result is not None and not result.ok else []
    said += [f"  • {p}" for p in problems]
    return (
        f"Attempt {attempt} of {budget} did not apply cleanly, so nothing was changed. "
        "The engine said:\n" + "\n".join(said) + "\n\nSend the whole corrected list of "
        "operations again, for the workflow as first shown, as the same JSON object."
    )


def not_json_message(attempt: int, budget: int, why: str) -> str:
    """A later user turn after an answer that was not the JSON object asked for."""
    return (
        f"Attempt {attempt} of {budget}: your answer was not the JSON object asked for ({why}). "
        'Answer with exactly one JSON object: {"operations": [...], "explanation": "..."}.'
    )


_NOT_FOR_THE_MODEL = {"started_at", "params"}
"""Step fields left out: ``params`` (what a step ran with) names hidden params too, and the
model sees each block's visible params in the workflow already."""


def run_context(run: RunDescription) -> dict[str, Any]:
    """A run as the model may see it: statuses, outputs and the failing step's error."""
    return {
        "run_id": run.id,
        "status": run.status,
        "error": run.error,
        "failed_block": run.failed_block,
        "steps": [
            {
                k: v
                for k, v in s.model_dump().items()
                if v is not None and k not in _NOT_FOR_THE_MODEL
            }
            for s in run.steps
        ],
    }


def masker(
    workflows: Iterable[Mapping[str, Any]], catalog: Catalog, env: Mapping[str, str]
) -> Redactor:
    """Scrubs every secret of these workflows (as JSON dicts) from outgoing text.

    The secrets: values of the ``env`` entries any of them reads (``{{env.X}}``)
    or whose names look secret (``*KEY*``, ``*TOKEN*``, ...), and the literal
    values of their hidden params (as the catalog says which params are hidden).
    """
    shown = list(workflows)
    hidden = [
        block.get("params", {}).get(name)
        for wf in shown
        for block in wf.get("blocks", [])
        for name in _hidden(catalog, block.get("type"))
    ]
    return run_redactor(shown, env, hidden)


def _hidden(catalog: Catalog, block_type: Any) -> frozenset[str]:
    conn = catalog.find(block_type) if isinstance(block_type, str) else None
    return conn.hidden_params if conn is not None else frozenset()
