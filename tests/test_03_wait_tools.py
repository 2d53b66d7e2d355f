"""Seed proof 03: what each wait block's pause says.

``wait_duration`` pauses with ``resume_at`` in the future (now + duration) and
no event; ``wait_for_event`` names its event, carries the correlation key
(resolved from the trigger) and a ``resume_at`` only when it has a timeout;
``human_approval`` pauses on a signal keyed to the run and block, with a
fresh token, its prompt, a timeout (default 168 h) and, when the user set
``resumeBaseUrl``, a ``resume_url`` ending in the token.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from thodare_jupyter import InMemoryRun, PauseInfo, SerializedWorkflow, run_in_memory

TOKEN = re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}")


def _base_wf(extra: dict[str, Any]) -> SerializedWorkflow:
    return SerializedWorkflow.model_validate(
        {
            "version": "1.0.0",
            "blocks": [
                {"id": "trg", "type": "trigger_webhook", "enabled": True, "params": {"path": "/x"}},
                {"enabled": True, **extra},
            ],
            "connections": [{"source": "trg", "target": extra["id"]}],
        }
    )


def _parse(ts: str | None) -> datetime:
    assert ts is not None
    assert ts.endswith("Z"), ts  # UTC, ISO 8601
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def _paused(
    wf: SerializedWorkflow, catalog: Any, trigger: Any = None
) -> tuple[InMemoryRun, PauseInfo]:
    run = run_in_memory(wf, trigger, catalog=catalog, env={})
    assert run.status == "paused", run.error
    assert run.pause is not None
    return run, run.pause


def test_wait_duration_pauses_with_resume_at_in_the_future(catalog) -> None:
    wf = _base_wf(
        {"id": "wait", "type": "wait_duration", "params": {"duration": 30, "unit": "seconds"}}
    )
    t0 = datetime.now(UTC)
    _, p = _paused(wf, catalog)
    t1 = datetime.now(UTC)
    assert p.block_id == "wait"
    assert p.kind == "duration"
    assert p.resume_on_event is None
    assert p.correlation_key is None
    at = _parse(p.resume_at)
    assert at > datetime.now(UTC)
    assert t0 + timedelta(seconds=30) <= at + timedelta(milliseconds=1)
    assert at <= t1 + timedelta(seconds=30, milliseconds=1)
    assert p.resume_token and TOKEN.fullmatch(p.resume_token)


@pytest.mark.parametrize(
    ("duration", "unit", "seconds"),
    [
        (1500, "ms", 1.5),
        (45, "s", 45),
        (2, "m", 120),
        (3, "h", 3 * 3600),
        (1, "d", 86400),
        (2, "w", 2 * 604800),
        (1.5, "hours", 5400),
    ],
)
def test_wait_duration_units(catalog, duration: float, unit: str, seconds: float) -> None:
    wf = _base_wf(
        {"id": "wait", "type": "wait_duration", "params": {"duration": duration, "unit": unit}}
    )
    t0 = datetime.now(UTC)
    _, p = _paused(wf, catalog)
    delta = (_parse(p.resume_at) - t0).total_seconds()
    assert seconds - 0.01 <= delta <= seconds + 5


def test_wait_duration_tokens_are_fresh_per_run(catalog) -> None:
    wf = _base_wf({"id": "wait", "type": "wait_duration", "params": {"duration": 1, "unit": "s"}})
    _, p1 = _paused(wf, catalog)
    _, p2 = _paused(wf, catalog)
    assert p1.resume_token != p2.resume_token


def test_wait_for_event_with_timeout_and_correlation_key(catalog) -> None:
    wf = _base_wf(
        {
            "id": "wait",
            "type": "wait_for_event",
            "params": {
                "eventName": "subscription.created",
                "correlationKey": "{{trigger.userId}}",
                "timeoutHours": 2,
            },
        }
    )
    t0 = datetime.now(UTC)
    _, p = _paused(wf, catalog, {"userId": "u-42"})
    assert p.block_id == "wait"
    assert p.kind == "event"
    assert p.resume_on_event == "subscription.created"
    assert p.correlation_key == "u-42"
    # The timeout shows as resume_at = now + 2 h.
    delta = (_parse(p.resume_at) - t0).total_seconds()
    assert 2 * 3600 - 0.01 <= delta <= 2 * 3600 + 5


def test_wait_for_event_without_timeout_or_key(catalog) -> None:
    wf = _base_wf({"id": "wait", "type": "wait_for_event", "params": {"eventName": "lead.replied"}})
    _, p = _paused(wf, catalog, {"userId": "u-1"})
    assert p.kind == "event"
    assert p.resume_on_event == "lead.replied"
    assert p.resume_at is None  # waits forever
    assert p.correlation_key is None


def test_wait_for_event_key_embedded_in_text(catalog) -> None:
    """A key built from several refs is resolved as a string before the pause."""
    wf = _base_wf(
        {
            "id": "wait",
            "type": "wait_for_event",
            "params": {
                "eventName": "order.paid",
                "correlationKey": "{{trigger.org}}:{{trigger.id}}",
            },
        }
    )
    _, p = _paused(wf, catalog, {"org": "acme", "id": 17})
    assert p.correlation_key == "acme:17"


def test_human_approval_token_signal_and_resume_url(catalog) -> None:
    # resumeBaseUrl is user-only: a person sets it in the workflow JSON.
    wf = _base_wf(
        {
            "id": "approve",
            "type": "human_approval",
            "params": {
                "prompt": "Approve $50k discount?",
                "timeoutHours": 24,
                "resumeBaseUrl": "https://ops.example.com/api/runs/resume/",
            },
        }
    )
    t0 = datetime.now(UTC)
    run, p = _paused(wf, catalog)
    assert p.block_id == "approve"
    assert p.kind == "approval"
    token = p.resume_token
    assert token and TOKEN.fullmatch(token)
    # The seed keyed the signal as human_approval:<token>; ours names the run
    # and the block (what kit.approve(run_id, block_id) answers).
    assert p.resume_on_event is not None
    assert p.resume_on_event.startswith("human_approval:")
    assert run.run_id in p.resume_on_event
    assert p.resume_on_event.endswith(":approve")
    # The seed's metadata.resumeUrl is metadata["resume_url"] here; the
    # trailing slash of the base is not doubled.
    assert p.metadata["resume_url"] == f"https://ops.example.com/api/runs/resume/{token}"
    assert re.fullmatch(r"https?://.+/[0-9a-f-]+", p.metadata["resume_url"])
    assert p.metadata["prompt"] == "Approve $50k discount?"
    delta = (_parse(p.resume_at) - t0).total_seconds()
    assert 24 * 3600 - 0.01 <= delta <= 24 * 3600 + 5


def test_human_approval_defaults(catalog) -> None:
    wf = _base_wf({"id": "approve", "type": "human_approval", "params": {"prompt": "Ship it?"}})
    t0 = datetime.now(UTC)
    _, p1 = _paused(wf, catalog)
    _, p2 = _paused(wf, catalog)
    assert p1.metadata["prompt"] == "Ship it?"
    # Default timeout: 168 hours (one week).
    delta = (_parse(p1.resume_at) - t0).total_seconds()
    assert 168 * 3600 - 0.01 <= delta <= 168 * 3600 + 5
    # Deliberate difference: without resumeBaseUrl the seed invented a link on
    # a placeholder host; we give no URL rather than a wrong one.
    assert "resume_url" not in p1.metadata
    assert p1.resume_token and p2.resume_token
    assert p1.resume_token != p2.resume_token
    assert p1.resume_on_event != p2.resume_on_event


def test_human_approval_prompt_resolves_refs(catalog) -> None:
    wf = _base_wf(
        {
            "id": "approve",
            "type": "human_approval",
            "params": {"prompt": "Refund {{trigger.amount}} to {{trigger.who}}?"},
        }
    )
    _, p = _paused(wf, catalog, {"amount": 120.5, "who": "ada"})
    assert p.metadata["prompt"] == "Refund 120.5 to ada?"


def test_paused_step_record_carries_the_pause(catalog) -> None:
    wf = _base_wf(
        {
            "id": "wait",
            "type": "wait_for_event",
            "params": {"eventName": "e", "correlationKey": "k", "timeoutHours": 1},
        }
    )
    run, p = _paused(wf, catalog)
    rec = [s for s in run.steps if s.block_id == "wait"]
    assert len(rec) == 1
    assert rec[0].status == "paused"
    assert rec[0].output["resume_on_event"] == "e"
    assert rec[0].output["correlation_key"] == "k"
    assert "wait" not in run.outputs
    # PauseInfo is plain JSON data.
    assert PauseInfo.model_validate_json(p.model_dump_json()) == p


# ── what a human_approval outputs when it wakes ─────────────────────────────


def test_approval_output_always_carries_the_seed_keys() -> None:
    """``approved``, ``by`` and ``note`` (the seed's outputs), ``comment`` and ``timedOut``."""
    from thodare_jupyter.connectors import wait_output

    keys = {"approved", "by", "note", "comment", "timedOut"}
    # kit.approve sends {approved, by, comment}: the comment is the note.
    out = wait_output("approval", {"approved": False, "by": "ada", "comment": "too steep"})
    assert out == {
        "approved": False, "by": "ada", "note": "too steep", "comment": "too steep",
        "timedOut": False,
    }  # fmt: skip
    # The seed's resumer sends {approved, by, note}: the note is the comment.
    assert wait_output("approval", {"approved": True, "note": "fine"})["comment"] == "fine"
    # Both given: each kept as given. Extra answer fields pass through, as in the seed.
    both = wait_output("approval", {"approved": True, "note": "n", "comment": "c", "ticket": 7})
    assert (both["note"], both["comment"], both["ticket"]) == ("n", "c", 7)
    for payload in (None, {}, "yes", {"approved": True}):
        out = wait_output("approval", payload)
        assert keys <= set(out) and out["timedOut"] is False
    late = wait_output("approval", {"approved": True, "by": "late"}, timed_out=True)
    assert late == dict.fromkeys(keys) | {"timedOut": True}


def test_approval_declares_the_keys_it_outputs(catalog) -> None:
    conn = catalog.find("human_approval")
    assert set(conn.output_fields) == {"approved", "by", "note", "comment", "timedOut"}
