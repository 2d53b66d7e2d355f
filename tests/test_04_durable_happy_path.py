"""Seed proof 04 (durable happy path), on SQLite and on PostgreSQL.

Every test takes conftest's ``db_url`` (directly or through ``any_kits``) and
runs twice: on a SQLite file, then on a fresh PostgreSQL schema. The rows are
read straight from the database (``sqlite3`` / ``psycopg``, no package code)
with ``durable_helpers``' readers.

A workflow trigger → http → slack, built once with the builder DSL and once
from the seed's LLM edit ops (``apply_operations``), runs end to end on a
durable kit: the http step calls a real loopback API, the slack step posts to a
loopback fake of the Slack Web API, and the rows in ``thodare_runs`` /
``thodare_steps`` say what happened (and the database holds exactly the
``thodare_*`` tables we expect, ``thodare_workers`` included; on PostgreSQL in
the test's own schema). Around it: an idempotency key returns the same run, and
concurrent ``run()`` calls with one key from two kits make one row; a bad input
(``InputInvalid``) and an invalid workflow (``WorkflowInvalid``) write no row;
two independent branches run at the same time; conditional edges route (the
untaken branch gets ``skipped`` rows); and an env value used through
``{{env.X}}`` never reaches the database: no row of any table (and on SQLite,
no byte of the file or its WAL).

PostgreSQL only (``PG_ONLY``), LISTEN/NOTIFY: a worker that polls only every
10 s picks up a run created by ANOTHER kit (which has no worker) within about a
second, and a signal sent from another kit wakes a waiting run just as fast;
with ``listen=False`` the same worker does not see the run until its next poll
(the control that shows the speed comes from NOTIFY). When the listener's
server backend is killed (``pg_terminate_backend``), runs still complete
(polling) and the listener reconnects: a new LISTEN backend appears and
notifications flow again.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from durable_helpers import (
    PG_ONLY,
    KitFactory,
    block,
    chain_wf,
    dict_rows,
    event_wf,
    is_pg,
    q,
    run_row,
    sqlite_file,
    step_rows,
    steps_of,
    table_names,
    wait_until,
    workflow,
)
from durable_procs import pg_listeners
from pydantic import BaseModel

from thodare_jupyter import (
    Catalog,
    InputInvalid,
    SerializedWorkflow,
    Wfkit,
    WorkflowInvalid,
    apply_operations,
    define_connector,
    define_workflow,
)

HTTP = Catalog().get("http")
SLACK = Catalog().get("slack")
TRANSFORM = Catalog().get("transform")

TABLES = [
    "thodare_alembic_version", "thodare_definitions", "thodare_flow_buckets",
    "thodare_flow_slots", "thodare_runs", "thodare_schedules",
    "thodare_signal_consumptions", "thodare_signals", "thodare_step_logs", "thodare_steps",
    "thodare_workers",
]  # fmt: skip


class Lead(BaseModel):
    email: str


def lead_workflow(api_url: str) -> SerializedWorkflow:
    """trigger → enrich (http) → notify (slack), with the builder DSL; input ``{"email"}``."""
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


def seed_ops(api_url: str) -> list[dict[str, Any]]:
    """The seed's five edit ops (its http tool was mocked; ours calls a loopback API)."""
    return [
        {"operation_type": "add", "block_id": "trg", "type": "trigger_webhook",
         "name": "Webhook", "params": {}},
        {"operation_type": "add", "block_id": "enrich", "type": "http", "name": "Enrich Lead",
         "params": {"url": f"{api_url}/enrich", "method": "POST",
                    "headers": {"X-Api-Key": "{{env.API_SECRET}}"},
                    "body": {"email": "{{trigger.body.email}}"}}},
        {"operation_type": "add", "block_id": "notify", "type": "slack", "name": "Notify Sales",
         "params": {"operation": "send", "channel": "#sales",
                    "text": "New lead: {{enrich.body.name}} ({{trigger.body.email}})"}},
        {"operation_type": "connect", "block_id": "trg", "target_block_id": "enrich"},
        {"operation_type": "connect", "block_id": "enrich", "target_block_id": "notify"},
    ]  # fmt: skip


def ops_workflow(api_url: str) -> SerializedWorkflow:
    """The same workflow built from LLM edit ops; input ``{"body": {"email"}}``."""
    empty = {"version": "1.0.0", "metadata": {"name": "wf-ops-happy"}, "blocks": [],
             "connections": []}  # fmt: skip
    # The seed's ops read {{env.API_SECRET}}, which the empty workflow does not: allow it.
    r = apply_operations(empty, seed_ops(api_url), allow_env={"API_SECRET"})
    assert r.ok, r.summary
    return r.workflow


def lead_run(how: str, api_url: str, email: str) -> tuple[SerializedWorkflow, Any, str]:
    """(workflow, input, workflow name) of the lead workflow built ``how``."""
    if how == "builder":
        return lead_workflow(api_url), {"email": email}, "wf-durable-happy"
    return ops_workflow(api_url), {"body": {"email": email}}, "wf-ops-happy"


BUILT = pytest.mark.parametrize("how", ["builder", "llm-ops"])
# where a run's outputs keep the trigger: the builder's implicit one, or the ops' ``trg`` block
TRIGGER = {"builder": "__trigger__", "llm-ops": "trg"}


def echo_wf(name: str = "wf-echo") -> dict[str, Any]:
    return chain_wf(name, block("t", "transform", {"template": {"x": "{{trigger.x}}"}}))


def count(db_url: str, table: str) -> int:
    return int(q(db_url, f"SELECT count(*) FROM {table}")[0][0])


@BUILT
def test_workflow_runs_trigger_http_slack_and_the_rows_tell_the_same_story(
    any_kits: KitFactory,
    db_url: str,
    how: str,
    api_server: Any,
    slack_server: Any,
    slack_env: dict[str, str],
) -> None:
    api_server.reply = {"name": "Alice Example", "company": "Acme Inc", "score": 87}
    wf, inp, name = lead_run(how, api_server.url, "alice@example.com")
    with any_kits(env={**slack_env, "API_SECRET": "s3cret"}) as kit:
        h = kit.run(wf, inp)
        out = h.result(timeout=15)

    assert out["enrich"]["status"] == 200
    assert out["enrich"]["body"]["name"] == "Alice Example"
    assert out["notify"]["ok"] is True
    assert out[TRIGGER[how]] == inp  # the trigger's output is the input
    # the outside services saw exactly one call each, with resolved params
    assert len(api_server.requests) == 1
    assert api_server.requests[0]["path"] == "/enrich"
    assert api_server.requests[0]["body"] == {"email": "alice@example.com"}
    assert [r["body"] for r in slack_server.requests] == [
        {"channel": "#sales", "text": "New lead: Alice Example (alice@example.com)"}
    ]

    # the database holds our tables (on PostgreSQL: in the test's own schema)
    assert table_names(db_url) == TABLES
    if is_pg(db_url):
        schema = dict_rows(db_url, "SELECT current_schema() AS s")[0]["s"]
        assert schema.startswith("thodare_t_") and schema in db_url
    # and its rows tell the same story
    runs = dict_rows(db_url, "SELECT * FROM thodare_runs")
    assert len(runs) == 1
    run = runs[0]
    assert (run["id"], run["workflow_name"], run["status"], run["namespace"]) == (
        h.id, name, "completed", "default",
    )  # fmt: skip
    assert run["error"] is None and run["lease_owner"] is None
    assert run["created_at"] <= run["started_at"] <= run["ended_at"]
    assert json.loads(run["input_json"]) == inp
    assert json.loads(run["outputs_json"])["enrich"]["body"]["company"] == "Acme Inc"
    assert run_row(db_url, h.id) == run
    steps = step_rows(db_url, h.id)
    assert {b: (s["type"], s["status"], s["attempt"]) for b, s in steps.items()} == {
        "enrich": ("http", "completed", 1),
        "notify": ("slack", "completed", 1),
    }
    assert steps["enrich"]["ended_at"] <= steps["notify"]["started_at"]
    assert json.loads(steps["notify"]["output_json"])["ts"].startswith("17000000.")


def test_idempotency_key_returns_the_same_run(
    any_kits: KitFactory,
    db_url: str,
    api_server: Any,
    slack_server: Any,
    slack_env: dict[str, str],
) -> None:
    api_server.reply = {"name": "Bo"}
    wf = lead_workflow(api_server.url)
    kit = any_kits(env={**slack_env, "API_SECRET": "x"})  # not started: nothing runs yet
    h1 = kit.run(wf, {"email": "bo@example.com"}, idempotency_key="signup:bo")
    h2 = kit.run(wf, {"email": "bo@example.com"}, idempotency_key="signup:bo")
    assert h1.id == h2.id
    assert count(db_url, "thodare_runs") == 1
    h3 = kit.run(wf, {"email": "bo@example.com"}, idempotency_key="signup:bo-2")
    assert h3.id != h1.id

    kit.start()
    h1.result(timeout=15)
    h3.result(timeout=15)
    # a retry of the request after completion still returns the finished run, no new send
    h4 = kit.run(wf, {"email": "bo@example.com"}, idempotency_key="signup:bo")
    assert h4.id == h1.id and h4.status == "completed"
    assert len(slack_server.requests) == 2  # one per distinct key
    assert count(db_url, "thodare_runs") == 2


def test_concurrent_runs_with_one_idempotency_key_make_one_row(
    any_kits: KitFactory, db_url: str
) -> None:
    # Two kits (two connection pools) x 4 threads race the same key through the
    # unique constraint; every caller gets the same run.
    a, b = any_kits(), any_kits()
    barrier = threading.Barrier(8, timeout=10)
    ids: list[str] = []
    errors: list[BaseException] = []

    def go(kit: Wfkit, i: int) -> None:
        try:
            barrier.wait()
            ids.append(kit.run(echo_wf(), {"x": i}, idempotency_key="signup:42").id)
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=go, args=(k, i)) for i, k in enumerate([a, b] * 4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert errors == []
    assert len(ids) == 8 and len(set(ids)) == 1
    rows = dict_rows(db_url, "SELECT id, idempotency_key, status FROM thodare_runs")
    assert rows == [{"id": ids[0], "idempotency_key": "signup:42", "status": "pending"}]
    with a:
        out = a.get_handle(ids[0]).result(timeout=15)
    assert out["t"]["result"]["x"] in range(8)
    assert count(db_url, "thodare_steps") == 1


def test_bad_input_raises_input_invalid_and_writes_no_row(
    any_kits: KitFactory, db_url: str, api_server: Any
) -> None:
    wf = lead_workflow(api_server.url)
    with any_kits() as kit:
        with pytest.raises(InputInvalid) as ei:
            kit.run(wf, {"mail": "typo@example.com"})
        assert "email" in str(ei.value)
        with pytest.raises(InputInvalid):
            kit.run(wf, None)
    assert count(db_url, "thodare_runs") == 0
    assert count(db_url, "thodare_steps") == 0
    assert api_server.requests == []


def test_invalid_workflow_raises_workflow_invalid_and_writes_no_row(
    any_kits: KitFactory, db_url: str
) -> None:
    bad = chain_wf(
        "wf-bad",
        block("t", "transform", {"template": {"x": "{{ghost.field}}"}}),
        block("u", "no_such_connector"),
    )
    with any_kits() as kit:
        with pytest.raises(WorkflowInvalid) as ei:
            kit.run(bad, {})
        text = str(ei.value)
        assert "ghost" in text or "no_such_connector" in text
    assert count(db_url, "thodare_runs") == 0


class Tag(BaseModel):
    tag: str


class TagOut(BaseModel):
    tag: str


def test_independent_branches_overlap_in_time(any_kits: KitFactory, db_url: str) -> None:
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
    with any_kits() as kit:
        kit.register(meet_c)
        out = kit.run(wf, {}).result(timeout=15)
    assert out["join"]["result"] == ["L", "R"]
    rows = {
        r[0]: (r[1], r[2])
        for r in q(db_url, "SELECT block_id, started_at, ended_at FROM thodare_steps")
    }
    (ls, le), (rs, re_) = rows["left"], rows["right"]
    assert ls < re_ and rs < le, (
        f"branches did not overlap: left {rows['left']}, right {rows['right']}"
    )
    # and the join ran after both
    assert rows["join"][0] >= max(le, re_)


def test_conditional_edges_route_and_skip_the_untaken_branch(
    any_kits: KitFactory, db_url: str
) -> None:
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
    with any_kits() as kit:
        yes = kit.run(wf, {"vip": True})
        no = kit.run(wf, {"vip": False})
        out_yes, out_no = yes.result(timeout=15), no.result(timeout=15)

    assert out_yes["vip_after"]["result"] == {"from": "vip"}
    assert "std" not in out_yes
    assert out_no["std"]["result"] == {"lane": "standard"}
    assert "vip" not in out_no and "vip_after" not in out_no

    assert steps_of(db_url, yes.id) == {"is_vip": "completed", "vip": "completed",
                                        "vip_after": "completed", "std": "skipped"}  # fmt: skip
    assert steps_of(db_url, no.id) == {"is_vip": "completed", "std": "completed",
                                       "vip": "skipped", "vip_after": "skipped"}  # fmt: skip


def database_text(db_url: str) -> str:
    """Every value of every row of every thodare table, as text."""
    return "\n".join(
        str(v) for t in table_names(db_url) for r in q(db_url, f"SELECT * FROM {t}") for v in r
    )


@BUILT
def test_env_values_never_reach_the_database(
    any_kits: KitFactory,
    db_url: str,
    how: str,
    api_server: Any,
    slack_server: Any,
    slack_env: dict[str, str],
) -> None:
    secret = f"sk-live-{uuid.uuid4().hex}"
    api_server.reply = {"name": "Carol"}  # not an echo: the API does not hand the key back
    wf, inp, _ = lead_run(how, api_server.url, "carol@example.com")
    with any_kits(env={**slack_env, "API_SECRET": secret}) as kit:
        out = kit.run(wf, inp).result(timeout=15)
        assert out["enrich"]["body"] == {"name": "Carol"}
        kit.signal("audit", {"note": "done"})

    # the secret was really used: the API got it in the header
    assert api_server.requests[0]["headers"]["X-Api-Key"] == secret
    assert slack_server.requests[0]["headers"]["Authorization"] == "Bearer xoxb-test"

    dump = database_text(db_url)
    # we read the right rows: the template, the outputs and the signal are there
    assert "{{env.API_SECRET}}" in dump
    assert "carol@example.com" in dump and "Carol" in dump
    assert "audit" in dump  # the signal's row
    assert secret not in dump
    assert "xoxb-test" not in dump

    if not is_pg(db_url):  # on SQLite: not in any byte of the file or its WAL either
        db = Path(sqlite_file(db_url))
        files = [p for p in (db, Path(f"{db}-wal")) if p.exists()]
        data = b"".join(p.read_bytes() for p in files)
        # we read the right bytes: the workflow's template and the outputs are there
        assert b"{{env.API_SECRET}}" in data
        assert b"carol@example.com" in data
        assert secret.encode() not in data
        assert b"xoxb-test" not in data


# ── LISTEN/NOTIFY (PostgreSQL only) ─────────────────────────────────────────


def _idle_worker(kits: KitFactory, pg_url: str, **kw: Any) -> Wfkit:
    """A started kit whose worker has had its first looks at the (empty) database."""
    kit = kits(**kw).start()
    if kw.get("listen", True):
        wait_until(lambda: pg_listeners(pg_url, kit.store.channel), 10, "the LISTEN backend")
    time.sleep(0.3)  # its first claims are done: from here on it sleeps poll_s
    return kit


def _pickup_delay(pg_url: str, run_id: str) -> float:
    """Seconds between the run's creation and its claim, from the database's own clock."""
    row = dict_rows(pg_url, "SELECT created_at, started_at FROM thodare_runs WHERE id = ?", run_id)
    return float(row[0]["started_at"] - row[0]["created_at"])


@PG_ONLY
def test_notify_wakes_an_idle_worker_for_a_run_created_by_another_kit(
    any_kits: KitFactory, db_url: str
) -> None:
    worker = _idle_worker(any_kits, db_url, poll_s=10)
    client = any_kits()  # never started: it only writes rows (and NOTIFYs)
    assert not client.worker.running
    for i in range(3):
        t0 = time.monotonic()
        h = client.run(echo_wf(), {"x": i})
        assert h.result(timeout=5)["t"]["result"] == {"x": i}
        assert time.monotonic() - t0 < 2.0
        assert _pickup_delay(db_url, h.id) < 1.0
    assert worker.worker.running


@PG_ONLY
def test_without_listen_the_idle_worker_waits_for_its_next_poll(
    any_kits: KitFactory, db_url: str
) -> None:
    # The control of the test above: same worker, LISTEN off. The run sits there.
    _idle_worker(any_kits, db_url, poll_s=10, listen=False)
    assert pg_listeners(db_url, any_kits().store.channel) == []
    h = any_kits().run(echo_wf(), {"x": 1})
    time.sleep(1.5)
    assert h.status == "pending"


@PG_ONLY
def test_polling_alone_picks_up_runs_from_another_kit(any_kits: KitFactory, db_url: str) -> None:
    _idle_worker(any_kits, db_url, poll_s=0.2, listen=False)
    client = any_kits()
    assert pg_listeners(db_url, client.store.channel) == []
    hs = [client.run(echo_wf(), {"x": i}) for i in range(3)]
    assert [h.result(timeout=5)["t"]["result"]["x"] for h in hs] == [0, 1, 2]


@PG_ONLY
def test_signal_from_another_kit_wakes_a_waiting_run_at_once(
    any_kits: KitFactory, db_url: str
) -> None:
    worker = _idle_worker(any_kits, db_url, poll_s=10)
    h = worker.run(event_wf("wf-pg-signal", {"eventName": "order.paid"}, "{{wait.data.id}}"))
    wait_until(
        lambda: dict_rows(db_url, "SELECT status FROM thodare_runs")[0]["status"] == "waiting",
        10,
        "the run to park",
    )
    assert step_rows(db_url, h.id)["wait"]["status"] == "waiting"
    time.sleep(0.3)  # parked with no timer: the worker now sleeps its 10 s poll

    client = any_kits()
    t0 = time.monotonic()
    sid = client.signal("order.paid", {"id": 7})
    assert client.get_handle(h.id).result(timeout=5)["after"]["result"] == 7
    assert time.monotonic() - t0 < 2.0
    sig = dict_rows(db_url, "SELECT created_at FROM thodare_signals WHERE id = ?", sid)[0]
    ended = dict_rows(db_url, "SELECT ended_at FROM thodare_runs WHERE id = ?", h.id)[0]
    assert ended["ended_at"] - sig["created_at"] < 1.0
    assert dict_rows(db_url, "SELECT signal_id, run_id FROM thodare_signal_consumptions") == [
        {"signal_id": sid, "run_id": h.id}
    ]


def _terminate_listeners(pg_url: str, channel: str) -> list[int]:
    killed = dict_rows(
        pg_url,
        "SELECT pid, pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE query = ?",
        f'LISTEN "{channel}"',
    )
    assert killed and all(r["ok"] for r in killed)
    return [r["pid"] for r in killed]


@PG_ONLY
def test_listener_killed_runs_still_complete_and_the_listener_reconnects(
    any_kits: KitFactory, db_url: str
) -> None:
    worker = _idle_worker(any_kits, db_url, poll_s=0.2)
    channel = worker.store.channel
    before = pg_listeners(db_url, channel)
    assert len(before) == 1
    killed = _terminate_listeners(db_url, channel)
    assert killed == before

    client = any_kits()
    hs = [client.run(echo_wf(), {"x": i}) for i in range(5)]  # while the listener is down
    assert [h.result(timeout=10)["t"]["result"]["x"] for h in hs] == list(range(5))
    after = wait_until(
        lambda: [p for p in pg_listeners(db_url, channel) if p not in before],
        10,
        "a new LISTEN backend",
    )
    assert len(after) == 1
    assert worker.worker.running


@PG_ONLY
def test_reconnected_listener_delivers_notifications_again(
    any_kits: KitFactory, db_url: str
) -> None:
    worker = _idle_worker(any_kits, db_url, poll_s=10)
    channel = worker.store.channel
    before = _terminate_listeners(db_url, channel)
    wait_until(
        lambda: [p for p in pg_listeners(db_url, channel) if p not in before],
        10,
        "a new LISTEN backend",
    )
    time.sleep(0.3)  # its catch-up look is done; the worker sleeps its 10 s poll again
    client = any_kits()
    t0 = time.monotonic()
    h = client.run(echo_wf(), {"x": 9})
    assert h.result(timeout=5)["t"]["result"] == {"x": 9}
    assert time.monotonic() - t0 < 2.0
    assert _pickup_delay(db_url, h.id) < 1.0
