"""Seed proof 04 (durable happy path), on our SQLite durable runtime.

A workflow written with the builder DSL (trigger → http → slack) runs end to
end on a durable kit backed by a real SQLite file: the http step calls a real
loopback API, the slack step posts to a loopback fake of the Slack Web API,
and the rows in ``thodare_runs`` / ``thodare_steps`` (read with ``sqlite3``)
say what happened. Around it: an idempotency key returns the same run; a bad
input (``InputInvalid``) and an invalid workflow (``WorkflowInvalid``) write no
row; two independent branches run at the same time; conditional edges route
(the untaken branch gets ``skipped`` rows); and an env value used through
``{{env.X}}`` never reaches the SQLite file (db + WAL bytes).
"""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest
from durable_helpers import KitFactory, block, chain_wf, q, steps_of, workflow
from pydantic import BaseModel

from thodare_jupyter import (
    Catalog,
    InputInvalid,
    WorkflowInvalid,
    define_connector,
    define_workflow,
)

HTTP = Catalog().get("http")
SLACK = Catalog().get("slack")
TRANSFORM = Catalog().get("transform")


class Lead(BaseModel):
    email: str


def lead_workflow(api_url: str) -> Any:
    return (
        define_workflow("wf-durable-happy")
        .input(Lead)
        .step(
            "enrich",
            HTTP,
            lambda r: {
                "url": f"{api_url}/enrich",
                "method": "POST",
                "headers": {"X-Api-Key": "{{env.API_SECRET}}"},
                "body": {"email": r.input.email},
            },
            name="Enrich Lead",
        )
        .step(
            "notify",
            SLACK,
            lambda r: {
                "operation": "send",
                "channel": "#sales",
                "text": f"New lead: {r.enrich.body.name} ({r.input.email})",
            },
            name="Notify Sales",
        )
        .build()
    )


def test_builder_workflow_runs_trigger_http_slack_on_sqlite(
    kits: KitFactory, db: Path, api_server: Any, slack_server: Any, slack_env: dict[str, str]
) -> None:
    api_server.reply = {"name": "Alice Example", "company": "Acme Inc", "score": 87}
    wf = lead_workflow(api_server.url)
    with kits(env={**slack_env, "API_SECRET": "s3cret"}) as kit:
        h = kit.run(wf, {"email": "alice@example.com"})
        out = h.result(timeout=15)

    assert out["enrich"]["status"] == 200
    assert out["enrich"]["body"]["name"] == "Alice Example"
    assert out["notify"]["ok"] is True
    assert out["__trigger__"] == {"email": "alice@example.com"}
    # the outside services saw exactly one call each, with resolved params
    assert len(api_server.requests) == 1
    assert api_server.requests[0]["path"] == "/enrich"
    assert api_server.requests[0]["body"] == {"email": "alice@example.com"}
    assert len(slack_server.requests) == 1
    assert slack_server.requests[0]["body"] == {
        "channel": "#sales",
        "text": "New lead: Alice Example (alice@example.com)",
    }

    # the database tells the same story
    runs = q(
        db, "SELECT id, workflow_name, status, input_json, outputs_json, error FROM thodare_runs"
    )
    assert len(runs) == 1
    run_id, name, status, input_json, outputs_json, error = runs[0]
    assert (run_id, name, status, error) == (h.id, "wf-durable-happy", "completed", None)
    assert json.loads(input_json) == {"email": "alice@example.com"}
    assert json.loads(outputs_json)["enrich"]["body"]["company"] == "Acme Inc"
    steps = {
        r[0]: r[1:]
        for r in q(
            db,
            "SELECT block_id, type, status, attempt, output_json FROM thodare_steps "
            "WHERE run_id = ?",
            h.id,
        )
    }
    assert set(steps) == {"enrich", "notify"}
    assert steps["enrich"][:3] == ("http", "completed", 1)
    assert steps["notify"][:3] == ("slack", "completed", 1)
    assert json.loads(steps["notify"][3])["ts"].startswith("17000000.")


def test_idempotency_key_returns_the_same_run(
    kits: KitFactory, db: Path, api_server: Any, slack_server: Any, slack_env: dict[str, str]
) -> None:
    api_server.reply = {"name": "Bo"}
    wf = lead_workflow(api_server.url)
    kit = kits(env={**slack_env, "API_SECRET": "x"})  # not started: nothing runs yet
    h1 = kit.run(wf, {"email": "bo@example.com"}, idempotency_key="signup:bo")
    h2 = kit.run(wf, {"email": "bo@example.com"}, idempotency_key="signup:bo")
    assert h1.id == h2.id
    assert q(db, "SELECT count(*) FROM thodare_runs") == [(1,)]
    h3 = kit.run(wf, {"email": "bo@example.com"}, idempotency_key="signup:bo-2")
    assert h3.id != h1.id

    kit.start()
    h1.result(timeout=15)
    h3.result(timeout=15)
    # a retry of the request after completion still returns the finished run, no new send
    h4 = kit.run(wf, {"email": "bo@example.com"}, idempotency_key="signup:bo")
    assert h4.id == h1.id and h4.status == "completed"
    assert len(slack_server.requests) == 2  # one per distinct key
    assert q(db, "SELECT count(*) FROM thodare_runs") == [(2,)]


def test_bad_input_raises_input_invalid_and_writes_no_row(
    kits: KitFactory, db: Path, api_server: Any
) -> None:
    wf = lead_workflow(api_server.url)
    with kits() as kit:
        with pytest.raises(InputInvalid) as ei:
            kit.run(wf, {"mail": "typo@example.com"})
        assert "email" in str(ei.value)
        with pytest.raises(InputInvalid):
            kit.run(wf, None)
    assert q(db, "SELECT count(*) FROM thodare_runs") == [(0,)]
    assert q(db, "SELECT count(*) FROM thodare_steps") == [(0,)]
    assert api_server.requests == []


def test_invalid_workflow_raises_workflow_invalid_and_writes_no_row(
    kits: KitFactory, db: Path
) -> None:
    bad = chain_wf(
        "wf-bad",
        block("t", "transform", {"template": {"x": "{{ghost.field}}"}}),
        block("u", "no_such_connector"),
    )
    with kits() as kit:
        with pytest.raises(WorkflowInvalid) as ei:
            kit.run(bad, {})
        text = str(ei.value)
        assert "ghost" in text or "no_such_connector" in text
    assert q(db, "SELECT count(*) FROM thodare_runs") == [(0,)]


class Tag(BaseModel):
    tag: str


class TagOut(BaseModel):
    tag: str


def test_independent_branches_overlap_in_time(kits: KitFactory, db: Path) -> None:
    # Each branch waits at a barrier for the other one: run one after the other,
    # the first would time out at the barrier and the run would fail.
    barrier = threading.Barrier(2, timeout=10)

    def meet(p: Tag) -> TagOut:
        barrier.wait()
        return TagOut(tag=p.tag)

    meet_c = define_connector(type="meet", params=Tag, outputs=TagOut, run=meet)
    wf = (
        define_workflow("wf-parallel")
        .step("left", meet_c, {"tag": "L"})
        .step("right", meet_c, {"tag": "R"})
        .step("join", TRANSFORM, lambda r: {"template": [r.left.tag, r.right.tag]})
        .build()
    )
    with kits() as kit:
        kit.register(meet_c)
        out = kit.run(wf, {}).result(timeout=15)
    assert out["join"]["result"] == ["L", "R"]
    rows = {
        r[0]: (r[1], r[2])
        for r in q(db, "SELECT block_id, started_at, ended_at FROM thodare_steps")
    }
    (ls, le), (rs, re_) = rows["left"], rows["right"]
    assert ls < re_ and rs < le, (
        f"branches did not overlap: left {rows['left']}, right {rows['right']}"
    )
    # and the join ran after both
    assert rows["join"][0] >= max(le, re_)


def test_conditional_edges_route_and_skip_the_untaken_branch(kits: KitFactory, db: Path) -> None:
    wf = workflow(
        "wf-route",
        [
            block("is_vip", "transform", {"template": "{{trigger.vip}}"}),
            block("vip", "transform", {"template": {"lane": "vip"}}),
            block("vip_after", "transform", {"template": {"from": "{{vip.result.lane}}"}}),
            block("std", "transform", {"template": {"lane": "standard"}}),
        ],
        [
            {"source": "trg", "target": "is_vip"},
            {"source": "is_vip", "target": "vip", "sourceHandle": "true"},
            {"source": "vip", "target": "vip_after"},
            {"source": "is_vip", "target": "std", "sourceHandle": "false"},
        ],
    )
    with kits() as kit:
        yes = kit.run(wf, {"vip": True})
        no = kit.run(wf, {"vip": False})
        out_yes, out_no = yes.result(timeout=15), no.result(timeout=15)

    assert out_yes["vip_after"]["result"] == {"from": "vip"}
    assert "std" not in out_yes
    assert out_no["std"]["result"] == {"lane": "standard"}
    assert "vip" not in out_no and "vip_after" not in out_no

    assert steps_of(db, yes.id) == {"is_vip": "completed", "vip": "completed",
                                    "vip_after": "completed", "std": "skipped"}  # fmt: skip
    assert steps_of(db, no.id) == {"is_vip": "completed", "std": "completed",
                                   "vip": "skipped", "vip_after": "skipped"}  # fmt: skip


def test_env_values_never_reach_the_sqlite_file(
    kits: KitFactory, db: Path, api_server: Any, slack_server: Any, slack_env: dict[str, str]
) -> None:
    secret = f"sk-live-{uuid.uuid4().hex}"
    api_server.reply = {"name": "Carol"}  # not an echo: the API does not hand the key back
    wf = lead_workflow(api_server.url)
    with kits(env={**slack_env, "API_SECRET": secret}) as kit:
        out = kit.run(wf, {"email": "carol@example.com"}).result(timeout=15)
        assert out["enrich"]["body"] == {"name": "Carol"}

    # the secret was really used: the API got it in the header
    assert api_server.requests[0]["headers"]["X-Api-Key"] == secret
    assert slack_server.requests[0]["headers"]["Authorization"] == "Bearer xoxb-test"

    files = [p for p in (db, Path(f"{db}-wal")) if p.exists()]
    data = b"".join(p.read_bytes() for p in files)
    # we read the right bytes: the workflow's template and the outputs are there
    assert b"{{env.API_SECRET}}" in data
    assert b"carol@example.com" in data
    assert secret.encode() not in data
    assert b"xoxb-test" not in data
