"""The assistant and secrets, against a fake OpenAI-compatible server on 127.0.0.1.

What the model reads is masked by the run's truth: the kit's env (not only the
process environment), and for ``run=`` the env refs and hidden literal values
of the workflow that run was pinned to (an older version, another workflow).
An op that makes a block read an env value the workflow did not read is not
applied unless the user allows that name (``allow_env`` or
``THODARE_LLM_ALLOW_ENV``); the proposal lists every env ref its patch touches.
Answers no model should send (huge ints, deep nesting, NaN, the wrong JSON
shape, ids that are not strings) become repair messages, never exceptions.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_llm import FakeLLM, fake_llm
from pydantic import BaseModel

from thodare_jupyter import Catalog, Hidden, Wfkit, connector, create_wfkit
from thodare_jupyter.assistant import Assistant
from thodare_jupyter.authoring.workflow_yaml import workflow_from_yaml
from thodare_jupyter.wire import SerializedWorkflow

VALUE = "v-123456"  # the value of PLAIN_VAL: a name that does not look secret
OLD_TOKEN = "tok-old-0123"  # a hidden literal of the older version only
NEW_TOKEN = "tok-new-4567"


class EchoParams(BaseModel):
    label: str
    token: Hidden[str]


class EchoOut(BaseModel):
    said: str


@connector("echo-token")
def echo(p: EchoParams) -> EchoOut:
    return EchoOut(said=f"{p.label} used {p.token}")


READS_ENV = """
steps:
  leak:
    uses: transform
    with: {template: "value is {{env.PLAIN_VAL}}"}
  echo:
    uses: echo-token
    with: {label: first, token: %s}
"""
PLAIN = """
steps:
  leak:
    uses: transform
    with: {template: "value is fixed"}
  echo:
    uses: echo-token
    with: {label: first, token: %s}
"""
NOTHING = {"operations": [], "explanation": "Nothing to change."}


@pytest.fixture
def model(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THODARE_LLM_MODEL", "openai:fake-model")
    monkeypatch.setenv("THODARE_LLM_RETRIES", "0")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("PLAIN_VAL", raising=False)  # only the kit has it
    monkeypatch.delenv("THODARE_LLM_ALLOW_ENV", raising=False)


@pytest.fixture
def kit(tmp_path: Path) -> Iterator[Wfkit]:
    catalog = Catalog(echo)
    with create_wfkit(str(tmp_path / "runs.db"), catalog=catalog, env={"PLAIN_VAL": VALUE},
                      lease_s=5, poll_s=0.05) as k:  # fmt: skip
        yield k.start()


@pytest.fixture
def llm(monkeypatch: pytest.MonkeyPatch, model: None) -> Iterator[FakeLLM]:
    with fake_llm(NOTHING) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.openai_url)
        yield server


def wf(kit: Wfkit, name: str, yaml_text: str) -> SerializedWorkflow:
    return kit.compile(workflow_from_yaml(name, yaml_text, kit.catalog))


def finished_run(kit: Wfkit, workflow: SerializedWorkflow) -> Any:
    handle = kit.run(workflow, {})
    outputs = handle.result(timeout=30)
    assert VALUE in json.dumps(outputs) or OLD_TOKEN in json.dumps(outputs)  # outputs echo it
    return handle


def assert_never_sent(llm: FakeLLM, *secrets: str) -> None:
    assert llm.raw_bodies
    for raw in llm.raw_bodies:
        for secret in secrets:
            for form in (secret, json.dumps(secret)[1:-1]):
                assert form not in raw, f"{form!r} was sent to the model"


# ── masking by the run's truth ──


def test_the_kits_env_masks_what_the_model_reads(kit: Wfkit, llm: FakeLLM) -> None:
    current = wf(kit, "echoes", READS_ENV % NEW_TOKEN)
    run = finished_run(kit, current).describe()
    Assistant(kit=kit).propose(current, "Why does it say that?", kit.catalog, run=run)
    assert "value is ***" in llm.raw_bodies[0]  # the run was shown, masked
    assert_never_sent(llm, VALUE, NEW_TOKEN)


def test_an_older_runs_pinned_workflow_masks_its_env_and_hidden_values(
    kit: Wfkit, llm: FakeLLM
) -> None:
    old = finished_run(kit, wf(kit, "echoes", READS_ENV % OLD_TOKEN))
    current = wf(kit, "echoes", PLAIN % NEW_TOKEN)  # reads no env now; another token
    for run in (old.describe(), old):  # a description, or the handle itself
        Assistant(kit=kit).propose(current, "Why?", kit.catalog, run=run)
    other = wf(kit, "other", PLAIN % NEW_TOKEN)  # a run of another workflow
    Assistant(kit=kit).propose(other, "Why?", kit.catalog, run=old.describe())
    assert len(llm.raw_bodies) == 3 and all("first used ***" in r for r in llm.raw_bodies)
    assert_never_sent(llm, VALUE, OLD_TOKEN, NEW_TOKEN)


def test_a_handle_alone_brings_its_pinned_workflow(
    kit: Wfkit, llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = finished_run(kit, wf(kit, "echoes", READS_ENV % OLD_TOKEN))
    monkeypatch.setenv("PLAIN_VAL", VALUE)  # no kit: the process environment
    Assistant().propose(wf(kit, "echoes", PLAIN % NEW_TOKEN), "Why?", kit.catalog, run=old)
    assert_never_sent(llm, VALUE, OLD_TOKEN, NEW_TOKEN)


# ── the env allow-list ──

SMUGGLE = {
    "operations": [{"operation_type": "edit", "block_id": "leak",
                    "params": {"template": "{{env.AWS_SECRET}}"}}],
    "explanation": "Post the key.",
}  # fmt: skip
ADD_READER = {
    "operations": [
        {"operation_type": "add", "block_id": "call", "type": "http",
         "params": {"url": "https://api.example/", "headers": {"x": "{{env.API_TOKEN}}"}}},
        {"operation_type": "connect", "block_id": "leak", "target_block_id": "call"},
    ],
    "explanation": "Call the API.",
}  # fmt: skip


def test_a_new_env_ref_is_not_applied_unless_allowed(
    kit: Wfkit, model: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    current = wf(kit, "echoes", PLAIN % NEW_TOKEN)
    with fake_llm(SMUGGLE) as llm:
        monkeypatch.setenv("OPENAI_BASE_URL", llm.openai_url)
        p = Assistant(kit=kit).propose(current, "Put the key in the text", kit.catalog)
        assert not p.applied and p.attempts == 3 and len(llm.requests) == 3
        assert "[env_ref_not_allowed]" in p.summary
        for i in (1, 2):  # the skip went back to the model like any other
            assert "[env_ref_not_allowed]" in llm.user_turns(i)[-1]
        allowed = Assistant(kit=kit, allow_env=["AWS_SECRET"])
        p = allowed.propose(current, "Put the key in the text", kit.catalog)
        assert p.applied and p.attempts == 1 and p.env_refs == ["AWS_SECRET"]
        monkeypatch.setenv("THODARE_LLM_ALLOW_ENV", "OTHER, AWS_SECRET")
        p = Assistant(kit=kit).propose(current, "Put the key in the text", kit.catalog)
        assert p.applied and p.env_refs == ["AWS_SECRET"]
        p = Assistant(kit=kit, allow_env=[]).propose(current, "Again", kit.catalog)
        assert not p.applied  # an explicit empty list wins over the variable


def test_the_proposal_lists_every_env_ref_its_patch_touches(
    kit: Wfkit, model: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    current = wf(kit, "echoes", READS_ENV % NEW_TOKEN)
    keep_env = {"operations": [{"operation_type": "edit", "block_id": "leak",
                                "params": {"template": "now {{env.PLAIN_VAL}}"}}],
                "explanation": "Reworded."}  # fmt: skip
    with fake_llm(ADD_READER, keep_env) as llm:
        monkeypatch.setenv("OPENAI_BASE_URL", llm.openai_url)
        assistant = Assistant(kit=kit, allow_env=["API_TOKEN"])
        added = assistant.propose(current, "Call the API", kit.catalog)
        edited = assistant.propose(current, "Reword", kit.catalog)
    assert added.applied and added.env_refs == ["API_TOKEN"]  # the untouched block not listed
    assert edited.applied and edited.env_refs == ["PLAIN_VAL"]  # already read: no allow needed
    assert added.diff.env_refs == ["API_TOKEN"]


# ── answers no model should send ──

DEEP = '{"operations": [' + "[" * 100_000 + "]" * 100_000 + "]}"
HUGE_INT = '{"operations": [{"operation_type": "delete", "block_id": 1' + "0" * 5000 + "}]}"
NESTED_OP = json.dumps({"operations": [{"operation_type": "edit", "block_id": "leak",
                                        "params": {"template": "x"}}]}).replace(
    '"x"', "[" * 900 + '"x"' + "]" * 900
)  # fmt: skip
BAD_IDS = {
    "operations": [
        {"operation_type": "delete", "block_id": 7},
        {"operation_type": "add", "block_id": ["x"], "type": "transform", "params": {}},
        {"operation_type": "connect", "block_id": {"a": 1}, "target_block_id": None},
        {"operation_type": "edit", "block_id": "leak", "name": 3, "params": "oops"},
        1, "delete everything", None,
    ],
    "explanation": 42,
}  # fmt: skip


@pytest.mark.parametrize(
    ("answer", "said"),
    [
        pytest.param("[" * 100_000, "nested deeper", id="deep-list"),
        pytest.param(DEEP, "nested deeper", id="deep-in-object"),
        pytest.param(NESTED_OP, "nested deeper", id="deep-param"),
        pytest.param(HUGE_INT, "number", id="huge-int"),
        pytest.param('{"operations": [NaN, Infinity]}', "NaN", id="nan"),
        pytest.param('{"operations": [], "explanation": -Infinity}', "Infinity", id="infinity"),
        pytest.param("[1, 2]", "a JSON list", id="list"),
        pytest.param("4" * 10, "a JSON int", id="number"),
        pytest.param('"just words"', "a JSON str", id="string"),
        pytest.param('{"operations": {"a": 1}}', 'no "operations" list', id="ops-not-list"),
        pytest.param(
            json.dumps(BAD_IDS), "delete.block_id: Input should be a valid string", id="bad-ids"
        ),
    ],
)
def test_bad_answers_become_repair_messages(
    kit: Wfkit, model: None, monkeypatch: pytest.MonkeyPatch, answer: str, said: str
) -> None:
    current = wf(kit, "echoes", PLAIN % NEW_TOKEN)
    with fake_llm(answer) as llm:
        monkeypatch.setenv("OPENAI_BASE_URL", llm.openai_url)
        p = Assistant().propose(current, "Anything", kit.catalog)
    assert not p.applied and p.attempts == 3 and len(llm.requests) == 3
    assert p.summary.startswith("Not applied after 3 attempt(s).")
    assert said in llm.user_turns(1)[-1] and said in llm.user_turns(2)[-1]
    assert [b.id for b in p.workflow.blocks] == [b.id for b in current.blocks]
    json.dumps(p.ops, allow_nan=False)  # what the widget gets is JSON


def test_a_bad_answer_then_a_good_one_applies(
    kit: Wfkit, model: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    current = wf(kit, "echoes", PLAIN % NEW_TOKEN)
    fine = {"operations": [{"operation_type": "edit", "block_id": "leak",
                            "params": {"template": "better"}}], "explanation": "ok"}  # fmt: skip
    with fake_llm(HUGE_INT, fine) as llm:
        monkeypatch.setenv("OPENAI_BASE_URL", llm.openai_url)
        p = Assistant().propose(current, "Anything", kit.catalog)
    assert p.applied and p.attempts == 2
