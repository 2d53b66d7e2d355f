"""Seed proof 28 (webhooks): ``create_webhook_router`` turns inbound HTTP into durable runs.

Every seed check, on SQLite and PostgreSQL: a matching route answers 202 with
the run id and the run completes with the expected outputs; ``:param``
captures (URL-decoded, trailing slash ignored) reach ``from_request``; an
unknown path is 404 ``no_route``; matching is method-aware (the seed answered
404 for a known path with another method, we answer 405 with ``Allow``); an
input the spec rejects is 400 ``validation_failed`` with ``{path, message}``
issues and no run row; an idempotency key dedupes duplicate deliveries (also
concurrent ones) to one run; several routes coexist. Beyond the seed: a
``from_request`` or ``idempotency_key`` callback that raises is 500 with a
``ThodareError``'s message or only the exception's type name (the traceback
goes to the log, the request's body and secret headers do not), a spec
without a workflow is 500 ``dispatch_failed``, idempotency keys are scoped by
route and ``:param`` values (two tenants never share a run), a shared secret
and an HMAC signature are enforced (401 and no run otherwise),
``from_request`` may be async, a compiled workflow is a target too, and the
database work leaves the event loop free. Finally the ASGI app runs under a
real uvicorn process (with and without lifespan) on 127.0.0.1: signed JSON in,
202/400/401/404/405/413 out, raw percent-encoding kept for ``:param``
captures, and a kit in this process executes the runs it created; hostile
JSON (100,000 ``[``, NaN, 1e999, a 5,000-digit int, bytes that are not UTF-8)
is 400 ``invalid_json`` naming the problem, before routing and without a
traceback; without ``THODARE_WEBHOOKS`` the server refuses to start and
names the variable.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import webhook_app
from durable_helpers import KitFactory
from pydantic import BaseModel, Field

from thodare_jupyter import (
    ThodareError,
    Wfkit,
    WorkflowBuilder,
    define_connector,
    define_workflow,
    define_workflow_spec,
)
from thodare_jupyter.integrations.asgi import MAX_BODY, load_router
from thodare_jupyter.integrations.webhooks import (
    WebhookRequest,
    WebhookResponse,
    WebhookRouter,
    create_webhook_router,
)

TESTS = Path(__file__).parent


class Msg(BaseModel):
    msg: str


echo = define_connector(type="wh-echo", params=Msg, outputs=Msg, run=lambda p: Msg(msg=p.msg))


class EmailIn(BaseModel):
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class IdIn(BaseModel):
    id: str


class Empty(BaseModel):
    pass


def call(router: WebhookRouter, method: str, path: str, body: Any = None, **kw: Any) -> Any:
    """``router.handle`` on a fabricated request, from sync code."""
    resp = asyncio.run(router.handle(WebhookRequest(method, path, body=body, **kw)))
    assert isinstance(resp, WebhookResponse)
    return resp


def output(kit: Wfkit, resp: WebhookResponse) -> Any:
    """The ``e`` step's message of the run a 202 answer names."""
    assert resp.status == 202, resp.body
    return kit.get_handle(resp.body["runId"]).result(timeout=30)["e"]["msg"]


def kit_with(any_kits: KitFactory, *specs: Any) -> Wfkit:
    """A started kit with ``echo`` and one workflow per ``(spec, message builder)``."""
    kit = any_kits()
    kit.register(echo)
    for spec, msg in specs:
        kit.workflow_from_spec(spec, _one_step(msg))
    return kit.start()


def _one_step(msg: Callable[[Any], Any]) -> Callable[[WorkflowBuilder], WorkflowBuilder]:
    return lambda b: b.step("e", echo, lambda r: {"msg": msg(r)})


# ── the seed's checks, on SQLite and PostgreSQL ─────────────────────────────────


def test_exact_path_dispatches_202_with_run_id_and_the_run_completes(any_kits: KitFactory) -> None:
    spec = define_workflow_spec("wh-leads", "1", input=EmailIn)
    kit = kit_with(any_kits, (spec, lambda r: f"lead:{r.input.email}"))
    router = create_webhook_router(kit)
    router.register("/leads", spec, method="post")
    assert [(r.method, r.path, r.target) for r in router.routes()] == [
        ("POST", "/leads", "wh-leads@1")
    ]

    r = call(router, "POST", "/leads", {"email": "alice@example.com"})
    assert r.status == 202
    assert isinstance(r.body["runId"], str) and len(r.body["runId"]) == 32
    int(r.body["runId"], 16)  # a hex uuid
    assert output(kit, r) == "lead:alice@example.com"

    # A trailing slash is the same path; a longer path is not.
    again = call(router, "POST", "/leads/", {"email": "bob@example.com"})
    assert output(kit, again) == "lead:bob@example.com"
    assert call(router, "POST", "/leads/x", {"email": "c@example.com"}).status == 404
    assert len(kit.runs()) == 2


def test_params_are_captured_url_decoded_and_passed_to_from_request(any_kits: KitFactory) -> None:
    class EventIn(BaseModel):
        tenant: str
        event_id: str

    spec = define_workflow_spec("wh-param", "1", input=EventIn)
    kit = kit_with(any_kits, (spec, lambda r: f"{r.input.tenant}:{r.input.event_id}"))
    router = create_webhook_router(kit)
    seen: list[WebhookRequest] = []

    def from_request(req: WebhookRequest) -> dict[str, str]:
        seen.append(req)
        return {"tenant": req.params["tenant"], "event_id": req.params["eventId"]}

    router.register("/tenants/:tenant/events/:eventId", spec, from_request=from_request)
    r = call(
        router, "POST", "/tenants/ac%20me%2Fx/events/evt-42/", {}, query={"q": "1"},
        headers={"X-Source": "test"},
    )  # fmt: skip
    assert r.status == 202, r.body
    assert seen[0].params == {"tenant": "ac me/x", "eventId": "evt-42"}
    assert seen[0].query == {"q": "1"} and seen[0].headers == {"x-source": "test"}
    assert output(kit, r) == "ac me/x:evt-42"
    # An empty segment does not fill a :param.
    assert call(router, "POST", "/tenants//events/evt-42", {}).status == 404


def test_no_route_is_404_and_creates_nothing(any_kits: KitFactory) -> None:
    kit = any_kits().start()
    router = create_webhook_router(kit)
    r = call(router, "POST", "/nope", {})
    assert (r.status, r.body) == (404, {"error": "no_route"})
    assert kit.runs() == []


def test_matching_is_method_aware(any_kits: KitFactory) -> None:
    post_spec = define_workflow_spec("wh-method", "1", input=Empty)
    get_spec = define_workflow_spec("wh-method-get", "1", input=Empty)
    kit = kit_with(any_kits, (post_spec, lambda r: "post"), (get_spec, lambda r: "get"))
    router = create_webhook_router(kit).register("/leads", post_spec, method="POST")

    assert output(kit, call(router, "POST", "/leads", {})) == "post"
    wrong = call(router, "GET", "/leads")
    assert wrong.status == 405
    assert wrong.body == {"error": "method_not_allowed", "allowed": ["POST"]}
    assert wrong.headers == {"Allow": "POST"}
    assert len(kit.runs()) == 1  # the GET started nothing

    # The same path with another method can lead elsewhere.
    router.register("/leads", get_spec, method="GET")
    assert output(kit, call(router, "get", "/leads")) == "get"
    assert call(router, "DELETE", "/leads").headers == {"Allow": "GET, POST"}
    assert len(kit.runs()) == 2


def test_invalid_input_is_400_with_issues_and_no_run_row(any_kits: KitFactory) -> None:
    spec = define_workflow_spec("wh-invalid", "1", input=EmailIn)
    kit = kit_with(any_kits, (spec, lambda r: r.input.email))
    plain = (
        define_workflow("wh-plain").input(IdIn).step("e", echo, lambda r: {"msg": r.input.id})
    ).build()
    router = create_webhook_router(kit).register("/leads", spec).register("/plain", plain)
    assert router.routes()[1].target == "wh-plain"

    bad = call(router, "POST", "/leads", {"email": "not-an-email"})
    assert bad.status == 400 and bad.body["error"] == "validation_failed"
    assert [i["path"] for i in bad.body["issues"]] == [["email"]]
    assert "pattern" in bad.body["issues"][0]["message"]
    missing = call(router, "POST", "/leads", {})
    assert missing.body["issues"] == [{"path": ["email"], "message": "Field required"}]
    not_object = call(router, "POST", "/leads", ["x"])
    assert not_object.status == 400 and not_object.body["issues"][0]["path"] == []
    plain_bad = call(router, "POST", "/plain", {"id": 7})
    assert plain_bad.status == 400 and plain_bad.body["issues"][0]["path"] == ["id"]
    assert kit.runs() == []  # validation happens before any row exists

    assert output(kit, call(router, "POST", "/plain", {"id": "p1"})) == "p1"
    assert output(kit, call(router, "POST", "/leads", {"email": "a@b.io"})) == "a@b.io"


def test_idempotency_key_dedupes_duplicate_deliveries(any_kits: KitFactory) -> None:
    spec = define_workflow_spec("wh-idempo", "1", input=IdIn)
    kit = kit_with(any_kits, (spec, lambda r: r.input.id))
    router = create_webhook_router(kit)
    router.register("/events", spec, idempotency_key=lambda req: f"evt:{req.body['id']}")

    r1 = call(router, "POST", "/events", {"id": "x"})
    r2 = call(router, "POST", "/events", {"id": "x"})
    assert r1.status == r2.status == 202
    assert r1.body["runId"] == r2.body["runId"]
    r3 = call(router, "POST", "/events", {"id": "y"})
    assert r3.body["runId"] != r1.body["runId"]

    async def burst() -> list[WebhookResponse]:  # concurrent deliveries, DB work on threads
        return await asyncio.gather(
            *(router.handle(WebhookRequest("POST", "/events", body={"id": "z"})) for _ in range(6))
        )

    ids = {r.body["runId"] for r in asyncio.run(burst())}
    assert len(ids) == 1
    assert len(kit.runs()) == 3
    assert [output(kit, r) for r in (r1, r3)] == ["x", "y"]


def test_multiple_routes_coexist(any_kits: KitFactory) -> None:
    a = define_workflow_spec("wh-a", "1", input=Empty)
    b = define_workflow_spec("wh-b", "1", input=Empty)
    kit = kit_with(any_kits, (a, lambda r: "a"), (b, lambda r: "b"))
    router = create_webhook_router(kit)
    router.register("/a", a, from_request=lambda req: {}).register("/b", b)
    assert [(r.path, r.target) for r in router.routes()] == [("/a", "wh-a@1"), ("/b", "wh-b@1")]

    ra, rb = call(router, "POST", "/a", {}), call(router, "POST", "/b", None)
    assert ra.body["runId"] != rb.body["runId"]
    assert (output(kit, ra), output(kit, rb)) == ("a", "b")


# ── beyond the seed ───────────────────────────────────────────────────────────


def test_from_request_errors_and_dispatch_errors_are_500_without_a_run(
    any_kits: KitFactory,
) -> None:
    spec = define_workflow_spec("wh-fr", "1", input=IdIn)
    orphan = define_workflow_spec("wh-orphan", "1", input=IdIn)  # no workflow built for it
    kit = kit_with(any_kits, (spec, lambda r: r.input.id))
    router = create_webhook_router(kit)

    def strict(req: WebhookRequest) -> dict[str, str]:
        if "x-tenant" not in req.headers:
            raise ValueError("missing X-Tenant header")
        return {"id": req.headers["x-tenant"]}

    async def slow(req: WebhookRequest) -> dict[str, str]:
        await asyncio.sleep(0.01)
        return {"id": f"async:{req.body['n']}"}

    router.register("/strict", spec, from_request=strict)
    router.register("/async", spec, from_request=slow)
    router.register("/orphan", orphan)
    router.register("/badkey", spec, idempotency_key=lambda req: req.body["nope"])

    r = call(router, "POST", "/strict", {})
    assert (r.status, r.body) == (500, {"error": "from_request_failed", "message": "ValueError"})
    assert "Traceback" not in json.dumps(r.body)
    d = call(router, "POST", "/orphan", {"id": "1"})
    assert d.status == 500 and d.body["error"] == "dispatch_failed"
    assert "No workflow implements spec 'wh-orphan@1'" in d.body["message"]
    k = call(router, "POST", "/badkey", {"id": "1"})
    assert (k.status, k.body) == (500, {"error": "idempotency_key_failed", "message": "KeyError"})
    assert kit.runs() == []

    assert output(kit, call(router, "POST", "/strict", {}, headers={"X-Tenant": "t1"})) == "t1"
    assert output(kit, call(router, "POST", "/async", {"n": 5})) == "async:5"


def test_a_500_says_a_thodare_message_or_only_the_type_and_logs_no_request_data(
    kits: KitFactory, caplog: pytest.LogCaptureFixture
) -> None:
    spec = define_workflow_spec("wh-500", "1", input=IdIn)
    kit = kit_with(kits, (spec, lambda r: r.input.id))
    router = create_webhook_router(kit, secret="hdr-secret-value")

    def leaky(req: WebhookRequest) -> Any:
        raise ValueError(f"cannot use token {req.headers['authorization']}")

    def told(req: WebhookRequest) -> Any:
        raise ThodareError("Send the tenant in X-Tenant.")

    async def leaky_async(req: WebhookRequest) -> Any:
        raise RuntimeError(f"db password is {req.headers['x-thodare-secret']}")

    router.register("/fr", spec, from_request=leaky)
    router.register("/told", spec, from_request=told)
    router.register("/key", spec, idempotency_key=leaky)
    router.register("/key-async", spec, idempotency_key=leaky_async)
    router.register("/key-told", spec, idempotency_key=told)
    headers = {"X-Thodare-Secret": "hdr-secret-value", "Authorization": "Bearer tok-XYZ"}
    body = {"id": "body-marker-123"}
    caplog.set_level("WARNING", logger="thodare_jupyter.integrations.webhooks")
    answers = {p: call(router, "POST", p, body, headers=headers)
               for p in ("/fr", "/told", "/key", "/key-async", "/key-told")}  # fmt: skip
    assert {p: (r.status, r.body) for p, r in answers.items()} == {
        "/fr": (500, {"error": "from_request_failed", "message": "ValueError"}),
        "/told": (500, {"error": "from_request_failed", "message": "Send the tenant in X-Tenant."}),
        "/key": (500, {"error": "idempotency_key_failed", "message": "ValueError"}),
        "/key-async": (500, {"error": "idempotency_key_failed", "message": "RuntimeError"}),
        "/key-told": (500, {"error": "idempotency_key_failed",
                            "message": "Send the tenant in X-Tenant."}),
    }  # fmt: skip
    assert kit.runs() == []
    # The operator's log has each traceback's frames, and nothing of the request.
    failures = [r.getMessage() for r in caplog.records if "Traceback" in r.getMessage()]
    assert len(failures) == 5
    assert "in leaky\n" in failures[0] and failures[0].endswith("\nValueError")
    assert "Send the tenant in X-Tenant." in failures[1]
    for private in ("body-marker-123", "hdr-secret-value", "tok-XYZ"):
        assert private not in caplog.text


def test_idempotency_keys_are_scoped_by_route_and_params(any_kits: KitFactory) -> None:
    class LeadIn(BaseModel):
        tenant: str

    spec = define_workflow_spec("wh-tenant", "1", input=LeadIn)
    kit = kit_with(any_kits, (spec, lambda r: r.input.tenant))
    router = create_webhook_router(kit)
    delivery = lambda req: req.headers.get("x-delivery")  # noqa: E731
    tenant = lambda req: {"tenant": req.params["tenant"]}  # noqa: E731
    router.register("/tenants/:tenant/leads", spec, from_request=tenant, idempotency_key=delivery)
    router.register("/tenants/:tenant/other", spec, from_request=tenant, idempotency_key=delivery)

    def send(path: str, key: str) -> str:
        r = call(router, "POST", path, {}, headers={"X-Delivery": key})
        assert r.status == 202, r.body
        return str(r.body["runId"])

    a = send("/tenants/a/leads", "d-1")
    b = send("/tenants/b/leads", "d-1")  # another tenant, the same delivery key
    other = send("/tenants/a/other", "d-1")  # another route
    assert len({a, b, other}) == 3
    assert send("/tenants/a/leads/", "d-1") == a  # a redelivery: the first run
    assert send("/tenants/b/leads", "d-1") == b
    assert [output(kit, call(router, "POST", f"/tenants/{t}/leads", {}, headers={"X-Delivery": k}))
            for t, k in (("a", "d-1"), ("b", "d-1"))] == ["a", "b"]  # fmt: skip
    # A key far longer than the database column still dedupes (it is hashed).
    long_key = "k" * 5000
    first = send("/tenants/a/leads", long_key)
    assert send("/tenants/a/leads", long_key) == first not in (a, b, other)
    nul = send("/tenants/a/leads", "d\x00-2")  # PostgreSQL stores no NUL in text: hashed too
    assert send("/tenants/a/leads", "d\x00-2") == nul not in (a, b, other, first)
    assert len(kit.runs()) == 5


def test_shared_secret_and_hmac_signature_are_enforced(any_kits: KitFactory) -> None:
    spec = define_workflow_spec("wh-auth", "1", input=IdIn)
    kit = kit_with(any_kits, (spec, lambda r: r.input.id))
    plain = create_webhook_router(kit, secret="s3cret-value").register("/in", spec)
    signed = create_webhook_router(kit, hmac_secret=b"k3y").register("/in", spec)

    def req(router: WebhookRouter, headers: dict[str, str], raw: bytes | None = None) -> Any:
        payload = {"id": "x"}
        body = json.dumps(payload).encode()
        return call(router, "POST", "/in", payload, raw_body=raw or body, headers=headers)

    good = req(plain, {"X-Thodare-Secret": "s3cret-value"})
    assert output(kit, good) == "x"
    for headers in ({"X-Thodare-Secret": "wrong"}, {}):
        bad = req(plain, headers)
        assert (bad.status, bad.body) == (401, {"error": "unauthorized"})

    raw = json.dumps({"id": "x"}).encode()
    sig = hmac.new(b"k3y", raw, hashlib.sha256).hexdigest()
    assert output(kit, req(signed, {"X-Thodare-Signature": f"sha256={sig}"})) == "x"
    assert req(signed, {"x-thodare-signature": sig}).status == 202  # bare hex, any header case
    wrong_key = hmac.new(b"other", raw, hashlib.sha256).hexdigest()
    for headers, body in (
        ({"X-Thodare-Signature": f"sha256={wrong_key}"}, raw),
        ({"X-Thodare-Signature": f"sha256={sig}"}, raw + b" "),  # body changed after signing
        ({}, raw),
    ):
        bad = req(signed, headers, body)
        assert (bad.status, bad.body) == (401, {"error": "unauthorized"})
    assert len(kit.runs()) == 3  # only the authorized deliveries

    with pytest.raises(ThodareError, match="secret is empty"):
        create_webhook_router(kit, secret="")


def test_database_work_runs_off_the_event_loop(kits: KitFactory, db: Path) -> None:
    spec = define_workflow_spec("wh-loop", "1", input=IdIn)
    kit = kits()  # no worker: nothing else touches the file
    kit.register(echo).workflow_from_spec(
        spec, lambda b: b.step("e", echo, lambda r: {"msg": r.input.id})
    )
    router = create_webhook_router(kit).register("/e", spec)
    lock = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    lock.execute("BEGIN IMMEDIATE")  # the run insert waits for this writer
    threading.Timer(1.0, lambda: lock.execute("ROLLBACK")).start()

    async def scenario() -> tuple[WebhookResponse, int]:
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        task = asyncio.create_task(ticker())
        resp = await router.handle(WebhookRequest("POST", "/e", body={"id": "1"}))
        task.cancel()
        return resp, ticks

    try:
        resp, ticks = asyncio.run(scenario())
    finally:
        lock.close()
    assert resp.status == 202
    assert ticks >= 10, f"the loop ticked {ticks} times while the insert waited ~1 s"


def test_register_refuses_bad_templates_and_duplicate_routes(kits: KitFactory) -> None:
    spec = define_workflow_spec("wh-reg", "1")
    router = create_webhook_router(kits()).register("/t/:id", spec)
    with pytest.raises(ThodareError, match="exists already"):
        router.register("/t/:other/", spec)  # the same shape: one would shadow the other
    with pytest.raises(ThodareError, match="valid :param"):
        router.register("/u/:", spec)
    with pytest.raises(ThodareError, match="twice"):
        router.register("/v/:a/:a", spec)
    router.register("/t/:id", spec, method="PUT")  # another method is another route
    assert [r.method for r in router.routes()] == ["POST", "PUT"]


def test_load_router_names_the_variable_when_unset_or_wrong(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("THODARE_WEBHOOKS", raising=False)
    with pytest.raises(ThodareError, match="THODARE_WEBHOOKS") as ei:
        load_router()
    assert "THODARE_WEBHOOKS is not set" in str(ei.value)
    assert "package.module:attribute" in str(ei.value)
    for ref, why in (
        ("webhook_app", "names no router"),
        ("no_such_module_xyz:router", "importing 'no_such_module_xyz' failed"),
        ("webhook_app:nope", "has no attribute 'nope'"),
        ("webhook_app:SPEC", "is a WorkflowSpec, not a router"),
    ):
        with pytest.raises(ThodareError, match="THODARE_WEBHOOKS") as ei:
            load_router(ref)
        assert why in str(ei.value)


# ── the ASGI app under a real uvicorn ─────────────────────────────────────────


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _uvicorn(tmp: Path, env: dict[str, str], *args: str) -> tuple[subprocess.Popen[bytes], str]:
    """Start uvicorn on a free port, output to ``tmp/uvicorn.log``; returns (process, base URL)."""
    port = _free_port()
    cmd = [sys.executable, "-m", "uvicorn", "thodare_jupyter.integrations.asgi:app"]
    cmd += ["--host", "127.0.0.1", "--port", str(port), *args]
    path = os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])
    base = {k: v for k, v in os.environ.items() if k != "THODARE_WEBHOOKS"}
    with (tmp / "uvicorn.log").open("wb") as log:
        proc = subprocess.Popen(
            cmd, env={**base, **env, "PYTHONPATH": path}, stdout=log,
            stderr=subprocess.STDOUT, cwd=TESTS.parent,
        )  # fmt: skip
    return proc, f"http://127.0.0.1:{port}"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@pytest.fixture
def server(request: pytest.FixtureRequest, tmp_path: Path, db: Path) -> Iterator[str]:
    """uvicorn serving ``webhook_app:make_router`` on the test's SQLite file; yields its URL.

    ``request.param`` is uvicorn's ``--lifespan`` (``off``: loaded on the first request).
    """
    env = {"THODARE_WEBHOOKS": "webhook_app:make_router", "THODARE_DB": f"sqlite:///{db}",
           "WEBHOOK_HMAC": "hook-key"}  # fmt: skip
    proc, base = _uvicorn(tmp_path, env, "--lifespan", request.param)
    try:
        health = _first_answer(proc, f"{base}/healthz", tmp_path)
        assert (health.status_code, health.json()) == (200, {"ok": True})
        yield base
    finally:
        _stop(proc)


def _first_answer(proc: subprocess.Popen[bytes], url: str, tmp: Path) -> httpx.Response:
    """GET ``url`` until the server answers (30 s at most, failing if it exits)."""
    end = time.monotonic() + 30
    while True:
        log = (tmp / "uvicorn.log").read_text()
        assert proc.poll() is None, f"uvicorn exited ({proc.returncode}):\n{log}"
        assert time.monotonic() < end, f"no answer from {url} within 30 s:\n{log}"
        try:
            return httpx.get(url, timeout=5)
        except httpx.TransportError:
            time.sleep(0.1)


@pytest.mark.parametrize("server", ["on", "off"], indirect=True)
def test_uvicorn_serves_the_router_and_a_kit_here_runs_the_work(
    server: str, kits: KitFactory
) -> None:
    def post(
        path: str, raw: bytes, delivery: str | None = None, ctype: str = "application/json"
    ) -> httpx.Response:
        sig = hmac.new(b"hook-key", raw, hashlib.sha256).hexdigest()
        headers = {"content-type": ctype, "x-thodare-signature": f"sha256={sig}"}
        if delivery:
            headers["X-Delivery"] = delivery
        return httpx.post(f"{server}{path}", content=raw, headers=headers, timeout=10)

    body = json.dumps({"id": "x1"}).encode()
    first = post("/events/git%2Fhub/?tag=v1", body, "d-1")
    assert first.status_code == 202, first.text
    run_id = first.json()["runId"]
    dup = post("/events/git%2Fhub?tag=v1", body, "d-1")
    assert (dup.status_code, dup.json()) == (202, {"runId": run_id})

    bad_json = post("/events/gh", b"{not json")
    assert (bad_json.status_code, bad_json.json()["error"]) == (400, "invalid_json")
    assert bad_json.json()["message"].startswith("body: not JSON (Expecting property name")
    invalid = post("/events/gh", json.dumps({"nope": 1}).encode())
    assert invalid.status_code == 400 and invalid.json()["issues"][0]["path"] == ["id"]
    unsigned = httpx.post(f"{server}/events/gh", content=body, timeout=10)
    assert (unsigned.status_code, unsigned.json()) == (401, {"error": "unauthorized"})
    unknown = post("/nowhere", body)
    assert (unknown.status_code, unknown.json()) == (404, {"error": "no_route"})
    get = httpx.get(f"{server}/events/gh", timeout=10)
    assert get.status_code == 405 and get.headers["allow"] == "POST"
    too_big = post("/events/gh", b" " * (MAX_BODY + 1))
    assert (too_big.status_code, too_big.json()) == (413, {
        "error": "payload_too_large",
        "message": f"body: over {MAX_BODY} bytes (1 MiB); send less or raise max_body.",
    })  # fmt: skip
    # A non-JSON content type is not parsed: body is None, so this from_request fails.
    text = post("/events/gh", b"{not json", ctype="text/plain")
    assert (text.status_code, text.json()["error"]) == (500, "from_request_failed")

    kit = kits()  # the same SQLite file; this process's worker runs what the server created
    kit.register(webhook_app.echo).start()
    assert kit.get_handle(run_id).result(timeout=30)["e"]["msg"] == "git/hub:x1:v1"
    assert [r.id for r in kit.runs()] == [run_id]


@pytest.mark.parametrize("server", ["on"], indirect=True)
def test_uvicorn_refuses_hostile_json_with_400_before_routing(server: str, tmp_path: Path) -> None:
    def post(raw: bytes, path: str = "/events/gh") -> httpx.Response:
        headers = {"content-type": "application/json"}  # unsigned: parsing comes first
        return httpx.post(f"{server}{path}", content=raw, headers=headers, timeout=30)

    cases = {
        b"[" * 100_000: "body: nested more than 64 levels deep",
        b'{"id": ' * 70 + b"1" + b"}" * 70: "body: nested more than 64 levels deep",
        b'{"id": NaN}': "body: NaN is not allowed",
        b'{"id": Infinity}': "body: Infinity is not allowed",
        b'{"id": 1e999}': "body: number '1e999' is out of range",
        b'{"id": ' + b"7" * 5000 + b"}": "body: an integer has 5000 digits; at most 4300",
        b'{"id": "caf\xe9"}': "body: not UTF-8 (invalid continuation byte at byte 11)",
        b"\xff\xfe{\x00}\x00": "body: not UTF-8",
        b'{"id": "\\ud800"}': "body: a string holds an unpaired surrogate escape",
    }
    for raw, problem in cases.items():
        for path in ("/events/gh", "/nowhere"):  # before routing: an unknown path too
            r = post(raw, path)
            assert (r.status_code, r.json()["error"]) == (400, "invalid_json"), (raw[:20], r.text)
            assert r.json()["message"].startswith(problem), r.json()
    health = httpx.get(f"{server}/healthz", timeout=10)
    assert health.status_code == 200
    log = (tmp_path / "uvicorn.log").read_text()
    assert "Traceback" not in log and "RecursionError" not in log, log


def test_uvicorn_without_the_variable_refuses_to_start_and_names_it(tmp_path: Path) -> None:
    proc, _ = _uvicorn(tmp_path, {}, "--lifespan", "on")
    try:
        proc.wait(30)
    finally:
        if proc.poll() is None:
            _stop(proc)
    log = (tmp_path / "uvicorn.log").read_text()
    assert proc.returncode != 0, log
    assert "THODARE_WEBHOOKS is not set" in log and "package.module:attribute" in log

    # Without lifespan the server starts; requests get 500 and the reason goes to its log.
    proc, base = _uvicorn(tmp_path, {}, "--lifespan", "off")
    try:
        r = _first_answer(proc, f"{base}/events/gh", tmp_path)
    finally:
        _stop(proc)
    assert (r.status_code, r.json()["error"]) == (500, "no_router")
    assert "THODARE_WEBHOOKS" not in r.text
    assert "THODARE_WEBHOOKS is not set" in (tmp_path / "uvicorn.log").read_text()
