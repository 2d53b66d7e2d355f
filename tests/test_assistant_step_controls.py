"""The assistant knows the step controls: ``forEach``/``concurrency``, ``retries``,
``when`` and ``timeout``, through a fake OpenAI-compatible server on 127.0.0.1.

* The system prompt sent documents each field, ``{{item}}``/``{{item.x}}``/
  ``{{item_index}}``, a ``forEach`` step's output, and an example that applies.
* The answers a model gives to "send each row to slack", "retry the http step
  3 times" and "only if approved" apply, validate, are written back into the
  ``%%workflow`` YAML unchanged, and the result runs durably: one Slack message
  per row, and none when the approval is rejected.
* An ``{{item}}`` without ``forEach`` goes back to the model with the fix, and a
  ref to a ``forEach`` step's output reads ``items``/``failed``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from durable_helpers import wait_until
from fake_llm import FakeLLM, fake_llm

from thodare_jupyter import Catalog, apply_operations, create_wfkit
from thodare_jupyter.assistant import Assistant, Proposal
from thodare_jupyter.assistant.prompt import SYSTEM
from thodare_jupyter.authoring.workflow_yaml import workflow_from_yaml
from thodare_jupyter.authoring.yaml_rewrite import rewrite_workflow_yaml, yaml_problems
from thodare_jupyter.wire import SerializedWorkflow, StepRetries

BASE = """\
input: {team: str, api: str}
steps:
  fetch:
    uses: http
    with: {url: "{{trigger.api}}/rows"}
  approve:
    uses: human_approval
    with: {prompt: "Send {{trigger.team}} the rows?"}
  notify:
    uses: slack
    needs: [approve]
    with: {operation: send, channel: "#sales", text: "Rows for {{trigger.team}}: {{fetch.status}}"}
"""


def op(kind: str, block: str, **fields: Any) -> dict[str, Any]:
    return {"operation_type": kind, "block_id": block, **fields}


def answer(*ops: dict[str, Any]) -> dict[str, Any]:
    return {"operations": list(ops), "explanation": "done"}


EACH_TEXT = {"text": "Hi {{item.name}} (row {{item_index}})"}
SEND_EACH = answer(
    op("edit", "notify", forEach="{{fetch.body.rows}}", concurrency=4, params=EACH_TEXT),
    op("add", "report", type="transform", params={"template": {"failed": "{{notify.failed}}"}}),
    op("connect", "notify", target_block_id="report"),
)
RETRY_HTTP = answer(op("edit", "fetch", retries={"max": 4, "backoff": "2s"}, timeout="10s"))
IF_APPROVED = answer(op("edit", "notify", when="{{approve.approved}}"))


@pytest.fixture
def model_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THODARE_LLM_MODEL", "openai:fake-model")
    monkeypatch.setenv("THODARE_LLM_RETRIES", "0")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def ask(llm: FakeLLM, monkeypatch: pytest.MonkeyPatch, wf: SerializedWorkflow, request: str
        ) -> Proposal:  # fmt: skip
    monkeypatch.setenv("OPENAI_BASE_URL", llm.openai_url)
    yaml_check = lambda w: yaml_problems("rows", BASE, w, Catalog())  # noqa: E731
    return Assistant().propose(wf, request, Catalog(), check=yaml_check)


def test_the_prompt_documents_each_step_control(
    model_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    wf = workflow_from_yaml("rows", BASE, Catalog())
    with fake_llm(SEND_EACH) as llm:
        ask(llm, monkeypatch, wf, "send each row to slack")
    system = llm.requests[0]["messages"][0]["content"]
    assert system == SYSTEM
    for said in ('"forEach": "{{<upstream block>.<field>}}"', "{{item}} is the item",
                 "{{item.<field>}} a field of it", "{{item_index}} its position from 0",
                 '"concurrency": <1-1000>', '{{<id>.items}} or {{<id>.failed}}',
                 '"retries": {"max": <attempts in all', '"backoff"',
                 '"retry 3 times" is {"max": 4}',
                 '"when": "{{approve.approved}}"', '"timeout": "<duration>"'):  # fmt: skip
        assert said in system, said


def test_the_prompts_example_applies() -> None:
    """The example op in the prompt is one a real workflow accepts as is."""
    example = json.loads(re.search(r"^- Example: (\{.*\})$", SYSTEM, re.M).group(1))  # type: ignore[union-attr]
    wf = workflow_from_yaml("ex", """\
steps:
  query:
    uses: sql
    with: {query: "select name from leads"}
  approve:
    uses: human_approval
    with: {prompt: "Greet them?"}
    needs: [query]
""", Catalog())  # fmt: skip
    res = apply_operations(
        wf, [example, op("connect", "approve", target_block_id=example["block_id"])], Catalog()
    )
    assert res.ok, res.summary
    block = res.workflow.blocks[-1]
    assert (block.for_each, block.concurrency, block.timeout) == ("{{query.rows}}", 4, 30.0)
    assert block.retries == StepRetries(max=3, backoff=2.0)
    assert block.when == "{{approve.approved}}"


def test_each_row_retry_and_approval_apply_write_back_and_run(
    model_env: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    api_server: Any,
    slack_server: Any,
    slack_env: dict[str, str],
) -> None:
    wf = workflow_from_yaml("rows", BASE, Catalog())
    text = BASE
    for request, reply in (("send each row to slack", SEND_EACH),
                           ("retry the http step 3 times", RETRY_HTTP),
                           ("only if approved", IF_APPROVED)):  # fmt: skip
        with fake_llm(reply) as llm:
            p = ask(llm, monkeypatch, wf, request)
        assert p.applied and p.attempts == 1, p.summary
        assert f"Request: {request}" in llm.user_turns(0)[0]
        text = rewrite_workflow_yaml(text, p.workflow)
        wf = p.workflow
    blocks = {b.id: b for b in wf.blocks}
    assert (blocks["notify"].for_each, blocks["notify"].concurrency) == ("{{fetch.body.rows}}", 4)
    assert blocks["notify"].when == "{{approve.approved}}"
    assert blocks["fetch"].retries == StepRetries(max=4, backoff=2.0)
    assert blocks["fetch"].timeout == 10.0
    assert workflow_from_yaml("rows", text, Catalog()).to_json() == wf.to_json()
    assert "for_each: '{{fetch.body.rows}}'" in text and "concurrency: 4" in text

    api_server.reply = {"rows": [{"name": n} for n in ("Ada", "Grace", "Edsger")]}
    db = f"sqlite:///{tmp_path / 'runs.db'}"
    with create_wfkit(db, env=slack_env, poll_s=0.05, lease_s=5) as kit:
        yes = kit.run(wf, {"team": "eu", "api": api_server.url})
        no = kit.run(wf, {"team": "us", "api": api_server.url})
        for h, approved in ((yes, True), (no, False)):
            wait_until(lambda h=h: h.status == "waiting", 30, f"{h.id} to wait")
            kit.approve(h.id, "approve", approved=approved)
        out = yes.result(timeout=30)
        assert out["report"] == {"result": {"failed": []}}
        assert len(out["notify"]["items"]) == 3
        assert "notify" not in no.result(timeout=30)
    sent = sorted(r["body"]["text"] for r in slack_server.requests)
    assert sent == ["Hi Ada (row 0)", "Hi Edsger (row 2)", "Hi Grace (row 1)"]


def test_an_item_ref_without_for_each_goes_back_with_the_fix(
    model_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    wf = workflow_from_yaml("rows", BASE, Catalog())
    forgot = answer(op("edit", "notify", params=EACH_TEXT))
    with fake_llm(forgot, SEND_EACH) as llm:
        p = ask(llm, monkeypatch, wf, "send each row to slack")
    assert p.applied and p.attempts == 2, p.summary
    feedback = llm.user_turns(1)[-1]
    assert "{{item}} is only known in the params of a for_each step" in feedback


def test_refs_to_a_for_each_step_read_items_and_failed() -> None:
    wf = apply_operations(workflow_from_yaml("rows", BASE, Catalog()), SEND_EACH["operations"],
                          Catalog()).workflow  # fmt: skip
    reads = [op("edit", "report", params={"template": {"ts": "{{notify.ts}}"}})]
    res = apply_operations(wf, reads, Catalog())
    assert not res.ok
    assert "does not declare output 'ts'. Available: failed, items." in res.summary
    yaml = BASE + '  report:\n    uses: transform\n    with: {template: "{{notify.items}}"}\n'
    yaml = yaml.replace(
        "    needs: [approve]\n", '    needs: [approve]\n    for_each: "{{fetch.body.rows}}"\n'
    )
    workflow_from_yaml("rows", yaml, Catalog())  # no error: items is its output
