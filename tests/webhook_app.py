"""A webhook router for the uvicorn test (a module, not a test file).

``THODARE_WEBHOOKS=webhook_app:make_router`` with ``THODARE_DB`` (the database)
and ``WEBHOOK_HMAC`` (the signing secret) in the server's environment. The
server's kit only creates runs; a kit in the test process executes them
(register :data:`echo` there).
"""

from __future__ import annotations

import os
from typing import Any

from pydantic import BaseModel

from thodare_jupyter import Wfkit, create_wfkit, define_connector, define_workflow_spec
from thodare_jupyter.integrations.webhooks import (
    WebhookRequest,
    WebhookRouter,
    create_webhook_router,
)


class EventIn(BaseModel):
    id: str
    source: str
    tag: str = ""


class Msg(BaseModel):
    msg: str


echo = define_connector(type="wh-app-echo", params=Msg, outputs=Msg, run=lambda p: Msg(msg=p.msg))
SPEC = define_workflow_spec("wh-app-event", "1", input=EventIn)


def build(kit: Wfkit) -> None:
    """Register the connector and build the workflow implementing :data:`SPEC`."""
    kit.register(echo)
    kit.workflow_from_spec(
        SPEC,
        lambda b: b.step(
            "e", echo, lambda r: {"msg": f"{r.input.source}:{r.input.id}:{r.input.tag}"}
        ),
    )


def _input(req: WebhookRequest) -> dict[str, Any]:
    return {**req.body, "source": req.params["source"], "tag": req.query.get("tag", "")}


def make_router() -> WebhookRouter:
    """A signed ``POST /events/:source`` route; ``X-Delivery`` is the idempotency key."""
    kit = create_wfkit(os.environ["THODARE_DB"], env={}, poll_s=0.05)
    build(kit)
    router = create_webhook_router(kit, hmac_secret=os.environ["WEBHOOK_HMAC"])
    router.register(
        "/events/:source",
        SPEC,
        from_request=_input,
        idempotency_key=lambda req: req.headers.get("x-delivery"),
    )
    return router
