"""Seed proof 10 (PostgreSQL happy path), on a real PostgreSQL server.

Each test gets a fresh schema (the ``pg_url`` fixture). A workflow built from
LLM edit ops (trigger → http → slack) runs end to end on a durable kit backed
by PostgreSQL: the http step calls a real loopback API, the slack step posts
to a loopback fake of the Slack Web API, and the rows in ``thodare_runs`` /
``thodare_steps`` (read with psycopg in the test's schema) say what happened.
Around it: concurrent ``run()`` calls with one idempotency key make one row,
and an env value never reaches any table.

LISTEN/NOTIFY: a worker that polls only every 10 s picks up a run created by
ANOTHER kit (which has no worker) within about a second, and a signal sent
from another kit wakes a waiting run just as fast; with ``listen=False`` the
same worker does not see the run until its next poll (the control that shows
the speed comes from NOTIFY). When the listener's server backend is killed
(``pg_terminate_backend``), runs still complete (polling) and the listener
reconnects: a new LISTEN backend appears and notifications flow again.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from durable_helpers import block, chain_wf, event_wf, wait_until
from durable_procs import pg_listeners, pg_rows, pg_step_rows

from thodare_jupyter import SerializedWorkflow, Wfkit, apply_operations, create_wfkit

KitFactory = Callable[..., Wfkit]


@pytest.fixture
def kits(pg_url: str) -> Iterator[KitFactory]:
    """Kits on the test's schema (defaults: poll_s=0.05, lease_s=2, env={}); closed at teardown."""
    made: list[Wfkit] = []

    def make(**kw: Any) -> Wfkit:
        kw.setdefault("poll_s", 0.05)
        kw.setdefault("lease_s", 2)
        kw.setdefault("env", {})
        kit = create_wfkit(pg_url, **kw)
        made.append(kit)
        return kit

    yield make
    for kit in made:
        kit.close()


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


def lead_workflow(api_url: str) -> SerializedWorkflow:
    empty = {"version": "1.0.0", "metadata": {"name": "wf-pg-happy"}, "blocks": [],
             "connections": []}  # fmt: skip
    # The seed's ops read {{env.API_SECRET}}, which the empty workflow does not: allow it.
    r = apply_operations(empty, seed_ops(api_url), allow_env={"API_SECRET"})
    assert r.ok, r.summary
    return r.workflow


def echo_wf(name: str = "wf-echo") -> dict[str, Any]:
    return chain_wf(name, block("t", "transform", {"template": {"x": "{{trigger.x}}"}}))


def test_llm_built_workflow_runs_trigger_http_slack_on_postgres(
    kits: KitFactory,
    pg_url: str,
    api_server: Any,
    slack_server: Any,
    slack_env: dict[str, str],
) -> None:
    api_server.reply = {"name": "Alice Example", "company": "Acme Inc", "score": 87}
    with kits(env={**slack_env, "API_SECRET": "k"}) as kit:
        h = kit.run(lead_workflow(api_server.url), {"body": {"email": "alice@example.com"}})
        out = h.result(timeout=15)

    assert out["enrich"]["body"]["name"] == "Alice Example"
    assert out["notify"]["ok"] is True
    assert len(api_server.requests) == 1
    assert api_server.requests[0]["body"] == {"email": "alice@example.com"}
    assert [r["body"] for r in slack_server.requests] == [
        {"channel": "#sales", "text": "New lead: Alice Example (alice@example.com)"}
    ]

    # the rows live in the test's own schema, and tell the same story
    schema = pg_rows(pg_url, "SELECT current_schema() AS s")[0]["s"]
    assert schema.startswith("thodare_t_") and schema in pg_url
    tables = pg_rows(
        pg_url,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
        "AND table_name LIKE 'thodare%%' ORDER BY table_name",
        schema,
    )
    assert [t["table_name"] for t in tables] == [
        "thodare_alembic_version", "thodare_definitions", "thodare_runs", "thodare_schedules",
        "thodare_signal_consumptions", "thodare_signals", "thodare_steps", "thodare_workers",
    ]  # fmt: skip
    runs = pg_rows(pg_url, "SELECT * FROM thodare_runs")
    assert len(runs) == 1
    run = runs[0]
    assert (run["id"], run["workflow_name"], run["status"], run["namespace"]) == (
        h.id, "wf-pg-happy", "completed", "default",
    )  # fmt: skip
    assert run["error"] is None and run["lease_owner"] is None
    assert run["created_at"] <= run["started_at"] <= run["ended_at"]
    assert json.loads(run["input_json"]) == {"body": {"email": "alice@example.com"}}
    assert json.loads(run["outputs_json"])["enrich"]["body"]["company"] == "Acme Inc"
    steps = pg_step_rows(pg_url, h.id)
    assert {b: (s["type"], s["status"], s["attempt"]) for b, s in steps.items()} == {
        "enrich": ("http", "completed", 1),
        "notify": ("slack", "completed", 1),
    }
    assert steps["enrich"]["ended_at"] <= steps["notify"]["started_at"]
    assert json.loads(steps["notify"]["output_json"])["ts"].startswith("17000000.")


def test_concurrent_runs_with_one_idempotency_key_make_one_row(
    kits: KitFactory, pg_url: str
) -> None:
    # Two kits (two connection pools) x 4 threads race the same key through the
    # unique constraint; every caller gets the same run.
    a, b = kits(), kits()
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
    rows = pg_rows(pg_url, "SELECT id, idempotency_key, status FROM thodare_runs")
    assert rows == [{"id": ids[0], "idempotency_key": "signup:42", "status": "pending"}]
    with a:
        out = a.get_handle(ids[0]).result(timeout=15)
    assert out["t"]["result"]["x"] in range(8)
    assert len(pg_rows(pg_url, "SELECT 1 FROM thodare_steps")) == 1


def test_env_values_never_reach_any_table(
    kits: KitFactory,
    pg_url: str,
    api_server: Any,
    slack_server: Any,
    slack_env: dict[str, str],
) -> None:
    secret = f"sk-live-{uuid.uuid4().hex}"
    api_server.reply = {"name": "Carol"}  # not an echo: the API does not hand the key back
    with kits(env={**slack_env, "API_SECRET": secret}) as kit:
        kit.run(lead_workflow(api_server.url), {"body": {"email": "carol@example.com"}}).result(
            timeout=15
        )
        kit.signal("audit", {"note": "done"})
    assert api_server.requests[0]["headers"]["X-Api-Key"] == secret  # it was really used

    dump = "\n".join(
        r["row"]
        for table in ("thodare_runs", "thodare_steps", "thodare_signals",
                      "thodare_signal_consumptions")
        for r in pg_rows(pg_url, f"SELECT t::text AS row FROM {table} t")
    )  # fmt: skip
    # we read the right rows: the template and the outputs are there
    assert "{{env.API_SECRET}}" in dump
    assert "carol@example.com" in dump and "Carol" in dump
    assert secret not in dump
    assert "xoxb-test" not in dump


# ── LISTEN/NOTIFY ───────────────────────────────────────────────────────────


def _idle_worker(kits: KitFactory, pg_url: str, **kw: Any) -> Wfkit:
    """A started kit whose worker has had its first looks at the (empty) database."""
    kit = kits(**kw).start()
    if kw.get("listen", True):
        wait_until(lambda: pg_listeners(pg_url, kit.store.channel), 10, "the LISTEN backend")
    time.sleep(0.3)  # its first claims are done: from here on it sleeps poll_s
    return kit


def _pickup_delay(pg_url: str, run_id: str) -> float:
    """Seconds between the run's creation and its claim, from the database's own clock."""
    row = pg_rows(pg_url, "SELECT created_at, started_at FROM thodare_runs WHERE id = %s", run_id)
    return float(row[0]["started_at"] - row[0]["created_at"])


def test_notify_wakes_an_idle_worker_for_a_run_created_by_another_kit(
    kits: KitFactory, pg_url: str
) -> None:
    worker = _idle_worker(kits, pg_url, poll_s=10)
    client = kits()  # never started: it only writes rows (and NOTIFYs)
    assert not client.worker.running
    for i in range(3):
        t0 = time.monotonic()
        h = client.run(echo_wf(), {"x": i})
        assert h.result(timeout=5)["t"]["result"] == {"x": i}
        assert time.monotonic() - t0 < 2.0
        assert _pickup_delay(pg_url, h.id) < 1.0
    assert worker.worker.running


def test_without_listen_the_idle_worker_waits_for_its_next_poll(
    kits: KitFactory, pg_url: str
) -> None:
    # The control of the test above: same worker, LISTEN off. The run sits there.
    _idle_worker(kits, pg_url, poll_s=10, listen=False)
    assert pg_listeners(pg_url, kits().store.channel) == []
    h = kits().run(echo_wf(), {"x": 1})
    time.sleep(1.5)
    assert h.status == "pending"


def test_polling_alone_picks_up_runs_from_another_kit(kits: KitFactory, pg_url: str) -> None:
    _idle_worker(kits, pg_url, poll_s=0.2, listen=False)
    client = kits()
    assert pg_listeners(pg_url, client.store.channel) == []
    hs = [client.run(echo_wf(), {"x": i}) for i in range(3)]
    assert [h.result(timeout=5)["t"]["result"]["x"] for h in hs] == [0, 1, 2]


def test_signal_from_another_kit_wakes_a_waiting_run_at_once(kits: KitFactory, pg_url: str) -> None:
    worker = _idle_worker(kits, pg_url, poll_s=10)
    h = worker.run(event_wf("wf-pg-signal", {"eventName": "order.paid"}, "{{wait.data.id}}"))
    wait_until(
        lambda: pg_rows(pg_url, "SELECT status FROM thodare_runs")[0]["status"] == "waiting",
        10,
        "the run to park",
    )
    assert pg_step_rows(pg_url, h.id)["wait"]["status"] == "waiting"
    time.sleep(0.3)  # parked with no timer: the worker now sleeps its 10 s poll

    client = kits()
    t0 = time.monotonic()
    sid = client.signal("order.paid", {"id": 7})
    assert client.get_handle(h.id).result(timeout=5)["after"]["result"] == 7
    assert time.monotonic() - t0 < 2.0
    sig = pg_rows(pg_url, "SELECT created_at FROM thodare_signals WHERE id = %s", sid)[0]
    ended = pg_rows(pg_url, "SELECT ended_at FROM thodare_runs WHERE id = %s", h.id)[0]
    assert ended["ended_at"] - sig["created_at"] < 1.0
    assert pg_rows(pg_url, "SELECT signal_id, run_id FROM thodare_signal_consumptions") == [
        {"signal_id": sid, "run_id": h.id}
    ]


def _terminate_listeners(pg_url: str, channel: str) -> list[int]:
    killed = pg_rows(
        pg_url,
        "SELECT pid, pg_terminate_backend(pid) AS ok FROM pg_stat_activity WHERE query = %s",
        f'LISTEN "{channel}"',
    )
    assert killed and all(r["ok"] for r in killed)
    return [r["pid"] for r in killed]


def test_listener_killed_runs_still_complete_and_the_listener_reconnects(
    kits: KitFactory, pg_url: str
) -> None:
    worker = _idle_worker(kits, pg_url, poll_s=0.2)
    channel = worker.store.channel
    before = pg_listeners(pg_url, channel)
    assert len(before) == 1
    killed = _terminate_listeners(pg_url, channel)
    assert killed == before

    client = kits()
    hs = [client.run(echo_wf(), {"x": i}) for i in range(5)]  # while the listener is down
    assert [h.result(timeout=10)["t"]["result"]["x"] for h in hs] == list(range(5))
    after = wait_until(
        lambda: [p for p in pg_listeners(pg_url, channel) if p not in before],
        10,
        "a new LISTEN backend",
    )
    assert len(after) == 1
    assert worker.worker.running


def test_reconnected_listener_delivers_notifications_again(kits: KitFactory, pg_url: str) -> None:
    worker = _idle_worker(kits, pg_url, poll_s=10)
    channel = worker.store.channel
    before = _terminate_listeners(pg_url, channel)
    wait_until(
        lambda: [p for p in pg_listeners(pg_url, channel) if p not in before],
        10,
        "a new LISTEN backend",
    )
    time.sleep(0.3)  # its catch-up look is done; the worker sleeps its 10 s poll again
    client = kits()
    t0 = time.monotonic()
    h = client.run(echo_wf(), {"x": 9})
    assert h.result(timeout=5)["t"]["result"] == {"x": 9}
    assert time.monotonic() - t0 < 2.0
    assert _pickup_delay(pg_url, h.id) < 1.0
