"""``%%assist`` in IPython and the lab panel's comm in a real kernel, on a fake model server.

A proposal shows the ops, the DAG before and after (changes coloured) and a
JSON diff; Accept rewrites the ``%%workflow`` cell's YAML in place (comments
and key order kept), compiles it and stores a new version; Reject changes
nothing; ``%workflow history`` lists versions and ``%workflow undo`` goes back.
A change YAML cannot say (a branch handle) goes back to the model. ``--run`` of
an older version masks what that version read; a new env ref needs
``--allow-env`` and is flagged in the proposal. In a real
kernel (jupyter_client), the comm ``thodare`` serves propose/accept and sends
the rewritten cell to the front end.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from durable_helpers import wait_until
from fake_llm import FakeLLM, approval_between, fake_llm
from IPython.core.interactiveshell import InteractiveShell

from thodare_jupyter.notebook.proposal import ProposalView

FLOW = """%%workflow digest
# Morning digest for the sales team
input: {email: str}
steps:
  # fetch the lead first
  fetch:
    uses: http   # the CRM
    with: {url: "https://crm.example/leads/{{trigger.email}}"}
  post:
    uses: transform
    with:
      template: {text: "Lead {{fetch.body}}"}  # what sales reads
"""
BODY = FLOW.split("\n", 1)[1]
APPROVE = approval_between(
    "fetch", "post", "Send {{fetch.status}}?", "A human approves before the digest is posted."
)


@pytest.fixture
def ip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[InteractiveShell]:
    monkeypatch.setenv("THODARE_DB", str(tmp_path / "nb.db"))
    monkeypatch.setenv("THODARE_LLM_MODEL", "openai:fake")
    monkeypatch.setenv("THODARE_LLM_RETRIES", "0")
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "thodare_jupyter")
    yield shell
    shell.run_line_magic("unload_ext", "thodare_jupyter")


@pytest.fixture
def llm(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLLM]:
    with fake_llm(APPROVE) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.openai_url)
        yield server


def cell(ip: InteractiveShell, source: str) -> Any:
    result = ip.run_cell(source)
    if result.error_in_exec is not None:
        raise result.error_in_exec
    return result.result


def test_accept_rewrites_the_cell_keeps_comments_and_versions(
    ip: InteractiveShell, llm: FakeLLM, capsys: pytest.CaptureFixture[str]
) -> None:
    cell(ip, FLOW)
    view = cell(ip, "%%assist digest\nAsk a human before posting the digest.")
    assert "asking openai:fake (attempt 1 of 3)…" in capsys.readouterr().out
    assert isinstance(view, ProposalView) and view.state == "pending"
    d = view.data
    assert d["applied"] and d["attempts"] == 1 and d["workflow"] == "digest"
    assert d["explanation"] == "A human approves before the digest is posted."
    assert d["ops"] == APPROVE["operations"]
    assert 'data-block-id="approve" data-status="added"' in d["svg_after"]
    assert 'data-block-id="post" data-status="changed"' in d["svg_before"]
    assert '+   "id": "approve"' in d["diff"]
    bundle, _ = ip.display_formatter.format(view)
    assert bundle["text/plain"] == (
        "<Proposal for digest: 4 operation(s), applies cleanly after 1 attempt(s); pending>"
    )
    assert "human_approval" in bundle["text/html"]
    assert "approve" not in [b.id for b in ip.user_ns["digest"].blocks]  # nothing yet

    view.send_state()
    view._on_action(view, {"action": "accept"}, [])
    assert view.state == "accepted"
    assert view.message.startswith("Accepted as version 2 of digest; no JupyterLab panel")
    wf = ip.user_ns["digest"]
    assert [b.id for b in wf.blocks] == ["__trigger__", "fetch", "post", "approve"]
    source = view.new_source
    assert source.startswith("%%workflow digest\n# Morning digest for the sales team\n")
    kept = ("  # fetch the lead first\n", "    uses: http   # the CRM\n",
            '      template: {text: "Lead {{fetch.body}}"}  # what sales reads\n')  # fmt: skip
    assert all(line in source for line in kept), source
    assert "    needs: [approve]\n" in source and "  approve:\n    uses: human_approval\n" in source
    assert cell(ip, source).blocks == wf.blocks  # the new cell runs as it stands

    history = ip.run_line_magic("workflow", "history digest").data
    assert "<td>2</td>" in history and "assistant" in history
    assert "Ask a human before posting the digest." in history
    ip.run_line_magic("workflow", "undo digest")
    assert "approve" not in [b.id for b in ip.user_ns["digest"].blocks]
    assert "undone" in ip.run_line_magic("workflow", "history digest").data
    with pytest.raises(Exception, match="no earlier version"):
        ip.run_line_magic("workflow", "undo digest")


def test_reject_changes_nothing(ip: InteractiveShell, llm: FakeLLM) -> None:
    wf = cell(ip, FLOW)
    view = cell(ip, "%%assist digest\nAsk a human first.")
    view._on_action(view, {"action": "reject"}, [])
    assert view.state == "rejected" and ip.user_ns["digest"] is wf
    assert [v.version for v in ip.user_ns["wfkit"].history("digest")] == [1]
    view._on_action(view, {"action": "accept"}, [])  # too late: decided
    assert view.state == "rejected"


def test_a_change_yaml_cannot_say_goes_back_to_the_model(
    ip: InteractiveShell, monkeypatch: pytest.MonkeyPatch
) -> None:
    branch = json.loads(json.dumps(APPROVE))
    branch["operations"][-1]["source_handle"] = "approved"
    with fake_llm(branch, APPROVE) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.openai_url)
        cell(ip, FLOW)
        view = cell(ip, "%%assist digest\nAsk a human first.")
    assert view.data["applied"] and view.data["attempts"] == 2
    feedback = server.user_turns(1)[-1]
    assert "approve -> post has a branch handle or condition" in feedback


def test_assist_errors_are_clear(ip: InteractiveShell, monkeypatch: pytest.MonkeyPatch) -> None:
    cell(ip, FLOW)
    monkeypatch.delenv("THODARE_LLM_MODEL")
    with pytest.raises(
        Exception, match=r"could not answer: No model is configured.*THODARE_LLM_MODEL"
    ):
        cell(ip, "%%assist digest\nAsk a human first.")
    with pytest.raises(Exception, match=r"No workflow 'nope'.*digest"):
        cell(ip, "%%assist nope\nAnything.")
    with pytest.raises(Exception, match="Usage: %%assist NAME"):
        cell(ip, "%%assist\nAsk a human first.")


def test_assist_about_the_last_run_shows_its_error(ip: InteractiveShell, llm: FakeLLM) -> None:
    wf = cell(ip, FLOW.replace("https://crm.example", "http://127.0.0.1:9"))
    kit = ip.user_ns["wfkit"]
    kit.run(wf, {"email": "ada@x.io"})
    wait_until(lambda: kit.runs()[0].status == "failed", 30)
    cell(ip, "%%assist digest --run last\nWhy did this fail?")
    asked = llm.user_turns(0)[0]
    assert '"failed_block": "fetch"' in asked and '"status": "failed"' in asked


# ── the lab panel's comm, in a real kernel ──


def _comm_msg(kc: Any, comm_id: str, data: dict[str, Any]) -> None:
    msg = kc.session.msg("comm_msg", {"comm_id": comm_id, "data": data})
    kc.shell_channel.send(msg)


def _next_comm_data(kc: Any, comm_id: str, want: Any, timeout: float = 60) -> dict[str, Any]:
    import time

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        msg = kc.get_iopub_msg(timeout=end - time.monotonic())
        content = msg["content"]
        if (
            msg["msg_type"] == "comm_msg"
            and content["comm_id"] == comm_id
            and want(content["data"])
        ):
            data: dict[str, Any] = content["data"]
            return data
    raise AssertionError("no such comm message")


def test_the_panel_comm_in_a_real_kernel(tmp_path: Path, llm: FakeLLM) -> None:
    from jupyter_client.manager import start_new_kernel

    env = {"THODARE_DB": str(tmp_path / "k.db"), "THODARE_LLM_MODEL": "openai:fake",
           "OPENAI_BASE_URL": llm.openai_url, "THODARE_LLM_RETRIES": "0"}  # fmt: skip
    import os

    km, kc = start_new_kernel(kernel_name="python3", env={**os.environ, **env})
    try:
        seen: list[dict[str, Any]] = []
        kc.execute_interactive("%load_ext thodare_jupyter", timeout=60, output_hook=seen.append)
        opened = next(m["content"] for m in seen if m["msg_type"] == "comm_open")
        assert opened["target_name"] == "thodare" and opened["data"] == {"protocol": 1}
        comm_id = opened["comm_id"]
        reply = kc.execute_interactive(FLOW, timeout=60, output_hook=seen.append)
        assert reply["content"]["status"] == "ok"

        rid = uuid.uuid4().hex
        _comm_msg(kc, comm_id, {"id": rid, "action": "workflows"})
        got = _next_comm_data(kc, comm_id, lambda d: d.get("reply_to") == rid)
        assert got == {"reply_to": rid, "ok": True, "workflows": [{"name": "digest", "steps": 2}]}

        rid = uuid.uuid4().hex
        _comm_msg(kc, comm_id, {"id": rid, "action": "propose", "workflow": "digest",
                                "ask": "Ask a human first.", "run_id": None})  # fmt: skip
        got = _next_comm_data(kc, comm_id, lambda d: d.get("reply_to") == rid)
        assert got["ok"], got
        proposal = got["proposal"]
        assert proposal["applied"] and proposal["changed"] == ["approve", "fetch", "post"]
        assert proposal["env_refs"] == []

        rid = uuid.uuid4().hex
        _comm_msg(kc, comm_id, {"id": rid, "action": "accept", "key": proposal["key"]})
        event = _next_comm_data(kc, comm_id, lambda d: d.get("event") == "rewrite_cell")
        assert event["workflow"] == "digest"
        assert event["source"].startswith("%%workflow digest\n# Morning digest")
        assert "needs: [approve]" in event["source"]
        got = _next_comm_data(kc, comm_id, lambda d: d.get("reply_to") == rid)
        assert got == {"reply_to": rid, "ok": True, "workflow": "digest", "version": 2}

        rid = uuid.uuid4().hex
        _comm_msg(kc, comm_id, {"id": rid, "action": "accept", "key": proposal["key"]})
        got = _next_comm_data(kc, comm_id, lambda d: d.get("reply_to") == rid)
        assert got == {"reply_to": rid, "ok": False,
                       "error": "This proposal was already accepted or rejected."}  # fmt: skip
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


@pytest.mark.parametrize("found", [True, False])
def test_accept_waits_for_the_front_end_to_say_the_cell_was_rewritten(
    ip: InteractiveShell, llm: FakeLLM, found: bool
) -> None:
    from thodare_jupyter.notebook import extension

    assert extension._loaded is not None
    session = extension._loaded.session
    sent: list[tuple[str, str]] = []

    def front_end(name: str, source: str) -> None:  # answers later, as a comm reply would
        sent.append((name, source))
        threading.Timer(0.2, session.cell_rewritten, (name, found)).start()

    session.rewriters.append(front_end)
    cell(ip, FLOW)
    view = cell(ip, "%%assist digest\nAsk a human first.")
    view._on_action(view, {"action": "accept"}, [])
    assert view.message.startswith("Accepted as version 2 of digest; rewriting the %%workflow cell")
    assert [n for n, _ in sent] == ["digest"] and "needs: [approve]" in sent[0][1]
    wait_until(lambda: "rewriting" not in view.message, 10)
    if found:
        assert "the %%workflow cell was rewritten and run again" in view.message
        assert view.new_source == ""
    else:
        assert "this notebook has no such cell: copy the new cell below" in view.message
        assert view.new_source == sent[0][1]


def test_assist_on_a_workflow_built_in_python(ip: InteractiveShell, llm: FakeLLM) -> None:
    cell(ip, FLOW.replace("%%workflow digest", "%%workflow draft"))
    rename = "digest = SerializedWorkflow.from_json(draft.to_json().replace('draft', 'digest'))"
    cell(ip, f"from thodare_jupyter import SerializedWorkflow\n{rename}")
    view = cell(ip, "%%assist digest\nAsk a human first.")
    view._on_action(view, {"action": "accept"}, [])
    assert "digest is rebound (it was not written in a %%workflow cell)" in view.message
    assert "approve" in [b.id for b in ip.user_ns["digest"].blocks]


def test_a_stale_proposal_never_overwrites_newer_work(ip: InteractiveShell, llm: FakeLLM) -> None:
    cell(ip, FLOW)
    view = cell(ip, "%%assist digest\nAsk a human first.")
    edited = cell(ip, FLOW.replace("crm.example", "crm2.example"))  # the analyst edits the cell
    view._on_action(view, {"action": "accept"}, [])
    assert view.message == (
        "ProposalOutdated: digest changed after this proposal was made; nothing was applied. "
        "Ask again."
    )
    assert view.state == "failed" and ip.user_ns["digest"] is edited
    assert [v.origin for v in ip.user_ns["wfkit"].history("digest")] == ["cell", "cell"]


def test_no_change_offers_no_accept(ip: InteractiveShell, monkeypatch: pytest.MonkeyPatch) -> None:
    nothing = {"operations": [], "explanation": "The digest already asks a human first."}
    with fake_llm(nothing) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.openai_url)
        cell(ip, FLOW)
        view = cell(ip, "%%assist digest\nAsk a human first.")
    assert view.state == "empty" and view.message == "Nothing to change."
    assert view.data["explanation"] == "The digest already asks a human first."
    view._on_action(view, {"action": "accept"}, [])
    assert [v.version for v in ip.user_ns["wfkit"].history("digest")] == [1]


# ── secrets ──

SECRET_VALUE = "v-123456"  # PLAIN_VAL: a name that does not look secret
READS_ENV = (
    FLOW.replace('"Lead {{fetch.body}}"', '"Lead {{env.PLAIN_VAL}}"')
    .replace("uses: http   # the CRM", "uses: transform   # the CRM")
    .replace('{url: "https://crm.example/leads/{{trigger.email}}"}', '{template: "{{trigger}}"}')
)


def test_assist_about_an_older_version_masks_what_it_read(
    ip: InteractiveShell, llm: FakeLLM, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PLAIN_VAL", SECRET_VALUE)  # the kit's env is the process's
    kit = ip.user_ns["wfkit"]
    old = kit.run(cell(ip, READS_ENV), {"email": "ada@x.io"})
    assert SECRET_VALUE in json.dumps(old.result(timeout=30))  # its output echoes the value
    cell(ip, FLOW)  # the cell no longer reads PLAIN_VAL
    cell(ip, "%%assist digest --run last\nWhy did it say that?")
    other = cell(ip, FLOW.replace("%%workflow digest", "%%workflow other"))
    assert other.metadata.name == "other"
    cell(ip, f"%%assist other --run {old.id}\nWhy did it say that?")
    assert len(llm.raw_bodies) == 2
    for raw in llm.raw_bodies:
        assert "Lead ***" in raw and SECRET_VALUE not in raw


SMUGGLE = {
    "operations": [{"operation_type": "edit", "block_id": "post",
                    "params": {"template": {"text": "{{env.AWS_SECRET}}"}}}],
    "explanation": "The digest now carries the key.",
}  # fmt: skip


def test_a_new_env_ref_needs_allow_env_and_is_flagged(
    ip: InteractiveShell, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("THODARE_LLM_ALLOW_ENV", raising=False)
    with fake_llm(SMUGGLE) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.openai_url)
        cell(ip, FLOW)
        refused = cell(ip, "%%assist digest\nPut the AWS key in the digest.")
        assert refused.state == "failed" and "[env_ref_not_allowed]" in refused.data["summary"]
        view = cell(ip, "%%assist digest --allow-env OTHER,AWS_SECRET\nPut the key in it.")
        with pytest.raises(Exception, match="--allow-env needs a value"):
            cell(ip, "%%assist digest --allow-env\nPut the key in it.")
    assert view.state == "pending" and view.data["env_refs"] == ["AWS_SECRET"]
    warning = "reads env AWS_SECRET: a secret value will be used when this runs"
    bundle, _ = ip.display_formatter.format(view)
    assert 'class="thodare-env-warning"' in bundle["text/html"] and warning in bundle["text/html"]
