"""The builtin blocks, with the seed's type names, params and outputs.

``trigger_webhook`` (the run input), ``http``, ``slack``, ``transform`` and
the three waits. A workflow JSON written for @thodare/engine runs unchanged.
Ours beyond the seed: ``sql`` (a query through SQLAlchemy, see :mod:`.sql`) and
``run_workflow`` (a child run of a registered workflow, see :mod:`.child`).
"""

from __future__ import annotations

import contextlib
import os
from typing import Annotated, Any, Literal

import httpx
from pydantic import BaseModel, BeforeValidator, Field

from ..redaction import SECRET_NAME
from .child import RUN_WORKFLOW_BLOCK
from .connector import Connector, define_connector
from .context import StepContext
from .sql import SQL
from .visibility import Hidden
from .waits import WAITS

HTTP_TIMEOUT_S = 30.0


def _setting(ctx: StepContext, key: str, default: str | None = None) -> str | None:
    """A setting from the run's env, then the process environment."""
    value = ctx.env.get(key) or os.environ.get(key) or default
    if SECRET_NAME.search(key):
        ctx.redactor.add(value)
    return value


class TriggerParams(BaseModel):
    path: str | None = Field(default=None, description="Webhook path that starts the run.")


def _trigger(p: TriggerParams) -> None:  # never called: executors output the run input
    return None


class HttpParams(BaseModel):
    url: str = Field(min_length=1)
    method: Annotated[
        Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
        BeforeValidator(lambda v: v.upper() if isinstance(v, str) else v),
    ] = "GET"
    headers: dict[str, str] | None = None
    body: Any = None


class HttpOut(BaseModel):
    status: int
    body: Any = Field(description="Parsed JSON when the response is JSON, else text.")
    headers: dict[str, str]


async def _http(p: HttpParams, ctx: StepContext) -> HttpOut:
    headers = dict(p.headers or {})
    kwargs: dict[str, Any] = {}
    if p.body is not None and p.method not in ("GET", "HEAD"):
        if isinstance(p.body, str):
            kwargs["content"] = p.body
        else:
            kwargs["json"] = p.body
    ctx.log.info("http %s %s", p.method, p.url)
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_S) as client:
        res = await client.request(p.method, p.url, headers=headers, **kwargs)
    body: Any = res.text
    if "application/json" in res.headers.get("content-type", ""):
        with contextlib.suppress(ValueError):
            body = res.json()
    return HttpOut(status=res.status_code, body=body, headers=dict(res.headers))


class SlackParams(BaseModel):
    operation: Literal["send"] = Field(description="What to do; only 'send' for now.")
    channel: str = Field(min_length=1)
    text: str
    threadTs: str | None = None
    accessToken: Hidden[str | None] = None


class SlackOut(BaseModel):
    ok: bool
    ts: str
    channel: str


async def _slack(p: SlackParams, ctx: StepContext) -> SlackOut:
    token = p.accessToken or _setting(ctx, "SLACK_BOT_TOKEN")
    if not token:
        raise RuntimeError(
            "No Slack token: set SLACK_BOT_TOKEN in the run's env (or the block's accessToken)."
        )
    base = _setting(ctx, "SLACK_API_URL", "https://slack.com/api")
    payload: dict[str, Any] = {"channel": p.channel, "text": p.text}
    if p.threadTs:
        payload["thread_ts"] = p.threadTs
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT_S) as client:
        res = await client.post(
            f"{str(base).rstrip('/')}/chat.postMessage",
            json=payload,
            headers={"Authorization": f"Bearer {token}"},
        )
    data = res.json()
    if not data.get("ok"):
        raise RuntimeError(f"Slack refused chat.postMessage: {data.get('error', res.status_code)}")
    return SlackOut(
        ok=True, ts=str(data.get("ts", "")), channel=str(data.get("channel", p.channel))
    )


class TransformParams(BaseModel):
    template: Any = Field(description="Any JSON; {{refs}} inside are resolved first.")


class TransformOut(BaseModel):
    result: Any = None


def _transform(p: TransformParams) -> TransformOut:
    return TransformOut(result=p.template)


BUILTINS: tuple[Connector, ...] = (
    define_connector(
        type="trigger_webhook",
        name="Webhook trigger",
        description="Workflow entrypoint; its output is the run input ({{trigger}}).",
        params=TriggerParams,
        outputs=None,
        run=_trigger,
        kind="trigger",
    ),
    define_connector(
        type="http",
        name="HTTP request",
        description="Call any HTTP endpoint; JSON responses are parsed.",
        params=HttpParams,
        outputs=HttpOut,
        run=_http,
    ),
    define_connector(
        type="slack",
        name="Slack",
        description="Send a message to a Slack channel.",
        params=SlackParams,
        outputs=SlackOut,
        run=_slack,
    ),
    define_connector(
        type="transform",
        name="Transform",
        description="Shape data into a new object using a JSON template with {{block.field}} refs.",
        params=TransformParams,
        outputs=TransformOut,
        run=_transform,
    ),
    SQL,
    *WAITS,
    RUN_WORKFLOW_BLOCK,
)
