"""The assistant against a fake OpenAI-compatible server on 127.0.0.1 (the real SDK path).

Right first time, repaired on the second attempt, never valid (budget spent,
last summary kept), a non-JSON answer, no model configured, provider
unreachable, rate limited (retried with backoff, then a clear error), the
Anthropic path, a failed run explained to the model, and secrets: every
request body is read and holds no hidden param's name or value and no env value.
"""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest
from fake_llm import FakeLLM, Http, approval_between, fake_llm
from pydantic import BaseModel

from thodare_jupyter import Catalog, Hidden, connector, create_wfkit, define_workflow
from thodare_jupyter.assistant import Assistant, workflow_diff
from thodare_jupyter.connectors.builtins import BUILTINS
from thodare_jupyter.errors import (
    AssistantNotConfigured,
    ProviderFailed,
    ProviderRateLimited,
    ProviderUnreachable,
)
from thodare_jupyter.wire import SerializedWorkflow

SLACK = next(c for c in BUILTINS if c.type == "slack")
SECRET_KEY = "sk-live-0123456789abcdef"
SLACK_TOKEN = "xoxb-9876-not-for-models"


class LeadIn(BaseModel):
    email: str


class EnrichParams(BaseModel):
    email: str
    api_key: Hidden[str]


class Lead(BaseModel):
    name: str
    company: str


@connector("enrich-lead")
def enrich(p: EnrichParams) -> Lead:
    if p.email.startswith("boom"):
        raise ValueError(f"enrichment API refused {p.email}: quota exceeded")
    return Lead(name="Ada", company="Lovelace")


@pytest.fixture
def catalog() -> Catalog:
    return Catalog(enrich)


@pytest.fixture
def wf() -> SerializedWorkflow:
    return (
        define_workflow("lead-notifier")
        .input(LeadIn)
        .step("enrich", enrich, lambda r: {"email": r.input.email, "api_key": SECRET_KEY})
        .step(
            "notify",
            SLACK,
            lambda r: {
                "operation": "send",
                "channel": "#sales",
                "text": f"Lead {r.enrich.name}",
                "accessToken": "{{env.SLACK_TOKEN}}",
            },
        )
        .build()
    )


@pytest.fixture
def model_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THODARE_LLM_MODEL", "openai:fake-model")
    monkeypatch.setenv("THODARE_LLM_RETRIES", "2")
    monkeypatch.setenv("SLACK_TOKEN", SLACK_TOKEN)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def use(monkeypatch: pytest.MonkeyPatch, llm: FakeLLM) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", llm.openai_url)


APPROVAL = approval_between(
    "enrich",
    "notify",
    "Tell sales about {{enrich.name}}?",
    "An approval now comes before the Slack message.",
)


def assert_no_secrets(llm: FakeLLM) -> None:
    assert llm.raw_bodies
    for raw in llm.raw_bodies:
        for leak in (SECRET_KEY, SLACK_TOKEN, "api_key", "accessToken"):
            assert leak not in raw, f"{leak!r} was sent to the model"


def test_right_first_time(
    model_env: None, monkeypatch: pytest.MonkeyPatch, wf: SerializedWorkflow, catalog: Catalog
) -> None:
    with fake_llm(APPROVAL) as llm:
        use(monkeypatch, llm)
        p = Assistant().propose(wf, "Ask a human before notifying sales", catalog)
    assert p.applied and p.attempts == 1, p.summary
    assert p.explanation == "An approval now comes before the Slack message."
    assert [b.id for b in p.workflow.blocks] == ["__trigger__", "enrich", "notify", "approve"]
    assert p.diff.added == ["approve"] and set(p.diff.changed) == {"enrich", "notify"}
    assert '"id": "approve"' in p.diff.text
    assert [b.id for b in wf.blocks] == ["__trigger__", "enrich", "notify"]  # untouched
    body = llm.requests[0]
    assert body["model"] == "fake-model"
    assert body["response_format"] == {"type": "json_object"}
    assert "tools" not in body
    system, user = body["messages"][0]["content"], body["messages"][1]["content"]
    assert '"operations"' in system and "JSON" in system
    assert '"type":"enrich-lead"' in user and "Request: Ask a human" in user
    assert_no_secrets(llm)


BAD_REF = {
    "operations": [
        {"operation_type": "add", "block_id": "approve", "type": "human_approval",
         "params": {"prompt": "Tell sales about {{enrich.full_name}}?"}},
        {"operation_type": "connect", "block_id": "enrich", "target_block_id": "approve"},
        {"operation_type": "connect", "block_id": "approve", "target_block_id": "notyfy"},
    ],
    "explanation": "first try",
}  # fmt: skip


def test_repaired_on_the_second_attempt(
    model_env: None, monkeypatch: pytest.MonkeyPatch, wf: SerializedWorkflow, catalog: Catalog
) -> None:
    with fake_llm(BAD_REF, APPROVAL) as llm:
        use(monkeypatch, llm)
        p = Assistant().propose(wf, "Ask a human before notifying sales", catalog)
    assert p.applied and p.attempts == 2
    feedback = llm.user_turns(1)[-1]
    assert "Attempt 1 of 3 did not apply cleanly" in feedback
    assert "[invalid_edge_target]" in feedback and "notyfy" in feedback
    assert "full_name" in feedback and "company, name" in feedback  # valid outputs named
    # the second request carries the whole conversation: request, answer, feedback
    roles = [m["role"] for m in llm.requests[1]["messages"]]
    assert roles == ["system", "user", "assistant", "user"]
    assert_no_secrets(llm)


def test_never_valid_spends_the_budget_and_keeps_the_last_summary(
    model_env: None, monkeypatch: pytest.MonkeyPatch, wf: SerializedWorkflow, catalog: Catalog
) -> None:
    with fake_llm(BAD_REF) as llm:
        use(monkeypatch, llm)
        p = Assistant(max_attempts=3).propose(wf, "Ask a human first", catalog)
    assert not p.applied and p.attempts == 3 and len(llm.requests) == 3
    assert p.summary.startswith("Not applied after 3 attempt(s).")
    assert "[invalid_edge_target]" in p.summary
    assert p.ops == BAD_REF["operations"]


def test_a_non_json_answer_is_sent_back(
    model_env: None, monkeypatch: pytest.MonkeyPatch, wf: SerializedWorkflow, catalog: Catalog
) -> None:
    with fake_llm("Sure! I would add an approval step.", APPROVAL) as llm:
        use(monkeypatch, llm)
        p = Assistant().propose(wf, "Ask a human first", catalog)
    assert p.applied and p.attempts == 2
    assert "not the JSON object asked for (not JSON" in llm.user_turns(1)[-1]


def test_a_fenced_answer_is_read(
    model_env: None, monkeypatch: pytest.MonkeyPatch, wf: SerializedWorkflow, catalog: Catalog
) -> None:
    with fake_llm("```json\n" + json.dumps(APPROVAL) + "\n```") as llm:
        use(monkeypatch, llm)
        assert Assistant().propose(wf, "Ask a human first", catalog).attempts == 1


def test_no_model_configured_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, wf: SerializedWorkflow, catalog: Catalog
) -> None:
    monkeypatch.delenv("THODARE_LLM_MODEL", raising=False)
    with pytest.raises(AssistantNotConfigured, match="Set THODARE_LLM_MODEL=openai:gpt-4o-mini"):
        Assistant().propose(wf, "anything", catalog)
    monkeypatch.setenv("THODARE_LLM_MODEL", "gpt-4o")
    with pytest.raises(AssistantNotConfigured, match="is not provider:model"):
        Assistant().propose(wf, "anything", catalog)
    monkeypatch.setenv("THODARE_LLM_MODEL", "openai:gpt-4o")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    with pytest.raises(AssistantNotConfigured, match="OPENAI_API_KEY is not set"):
        Assistant().propose(wf, "anything", catalog)


def test_provider_unreachable(
    model_env: None, monkeypatch: pytest.MonkeyPatch, wf: SerializedWorkflow, catalog: Catalog
) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("OPENAI_BASE_URL", f"http://127.0.0.1:{port}/v1")
    monkeypatch.setenv("THODARE_LLM_RETRIES", "0")
    with pytest.raises(
        ProviderUnreachable, match=rf"Cannot reach openai:fake-model at http://127.0.0.1:{port}/v1"
    ):
        Assistant().propose(wf, "anything", catalog)


def test_rate_limited_is_retried_with_backoff_then_explained(
    model_env: None, monkeypatch: pytest.MonkeyPatch, wf: SerializedWorkflow, catalog: Catalog
) -> None:
    slow_down = Http(429, "Rate limit reached", {"retry-after-ms": "20"})
    with fake_llm(slow_down, slow_down, APPROVAL) as llm:
        use(monkeypatch, llm)
        p = Assistant().propose(wf, "Ask a human first", catalog)
    assert p.applied and len(llm.requests) == 3  # two 429s retried by the SDK
    with fake_llm(slow_down) as llm:
        use(monkeypatch, llm)
        with pytest.raises(ProviderRateLimited, match=r"after 2 retries.*Rate limit reached"):
            Assistant().propose(wf, "Ask a human first", catalog)
    assert len(llm.requests) == 3


def test_an_error_status_names_the_fix(
    model_env: None, monkeypatch: pytest.MonkeyPatch, wf: SerializedWorkflow, catalog: Catalog
) -> None:
    with fake_llm(Http(404, "The model `fake-model` does not exist")) as llm:
        use(monkeypatch, llm)
        with pytest.raises(ProviderFailed, match=r"HTTP 404.*does not exist.*THODARE_LLM_MODEL"):
            Assistant().propose(wf, "anything", catalog)


def test_anthropic_path(
    monkeypatch: pytest.MonkeyPatch, wf: SerializedWorkflow, catalog: Catalog
) -> None:
    with fake_llm(APPROVAL) as llm:
        monkeypatch.setenv("THODARE_LLM_MODEL", "anthropic:claude-fake")
        monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")
        monkeypatch.setenv("ANTHROPIC_BASE_URL", llm.url)
        p = Assistant().propose(wf, "Ask a human first", catalog)
    assert p.applied
    assert llm.requests[0]["model"] == "claude-fake" and "system" in llm.requests[0]


def test_a_failed_run_is_explained_to_the_model_with_secrets_masked(
    model_env: None,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Any,
    wf: SerializedWorkflow,
    catalog: Catalog,
) -> None:
    fix = {"operations": [{"operation_type": "edit", "block_id": "enrich",
                           "params": {"email": "{{trigger.email}}"}}],
           "explanation": "The enrichment API refused the address; ..."}  # fmt: skip
    with create_wfkit(str(tmp_path / "runs.db"), catalog=catalog, lease_s=5, poll_s=0.05) as kit:
        handle = kit.run(wf, {"email": f"boom-{SLACK_TOKEN}@example.com"})
        with pytest.raises(Exception, match="quota exceeded"):
            handle.result(timeout=30)
        run = handle.describe()
    with fake_llm(fix) as llm:
        use(monkeypatch, llm)
        p = Assistant().propose(wf, "Why did this fail? Fix it.", catalog, run=run)
    assert p.applied
    user = llm.user_turns(0)[0]
    assert '"status": "failed"' in user and '"failed_block": "enrich"' in user
    assert "quota exceeded" in user and "boom-***@example.com" in user
    assert_no_secrets(llm)


def test_diff_ignores_positions_and_hides_hidden_params(
    wf: SerializedWorkflow, catalog: Catalog
) -> None:
    same = workflow_diff(wf, wf, catalog)
    assert same.empty and same.text == ""
    other = SerializedWorkflow.from_json(wf.to_json())
    other.blocks[1].params["api_key"] = "sk-other"
    d = workflow_diff(wf, other, catalog)
    assert d.empty and SECRET_KEY not in d.text
