"""The lead-notifier of DESIGN §3, run in memory: `make demo`."""

from __future__ import annotations

import asyncio
import json

from pydantic import BaseModel

from thodare_jupyter import (
    Catalog,
    Hidden,
    StepContext,
    connector,
    define_connector,
    define_workflow,
    run_in_memory,
)


class LeadIn(BaseModel):
    email: str


class EnrichParams(BaseModel):
    email: str


class EnrichOut(BaseModel):
    name: str
    company: str
    score: int


@connector("enrich-lead", description="Look up a lead's name and company by email")
async def enrich(params: EnrichParams, ctx: StepContext) -> EnrichOut:
    await asyncio.sleep(0.01)  # a real one would call a CRM here
    user, _, domain = params.email.partition("@")
    return EnrichOut(name=user.title(), company=domain.split(".")[0].title(), score=87)


class SlackParams(BaseModel):
    channel: str
    text: str
    access_token: Hidden[str]  # the LLM can neither see nor set it


class SlackOut(BaseModel):
    ok: bool
    ts: str


def post_message(params: SlackParams, ctx: StepContext) -> SlackOut:
    print(f"  [slack-post] {params.channel}: {params.text}")
    return SlackOut(ok=True, ts="1700000000.000100")


slack = define_connector(
    type="slack-post",
    params=SlackParams,
    outputs=SlackOut,
    run=post_message,
    description="Post to Slack",
)

wf = (
    define_workflow("lead-notifier")
    .input(LeadIn)
    .step("enrich", enrich, lambda r: {"email": r.input.email})
    .step(
        "notify",
        slack,
        lambda r: {
            "channel": "#sales",
            "text": f"Lead {r.enrich.name} at {r.enrich.company} (score {r.enrich.score})",
            "access_token": "{{env.SLACK_TOKEN}}",
        },
    )
    .build()
)


def main() -> None:
    print("Workflow JSON (what the LLM patches):")
    print(wf.to_json(indent=2))
    run = run_in_memory(
        wf,
        {"email": "ada@example.com"},
        catalog=Catalog(enrich, slack),
        env={"SLACK_TOKEN": "xoxb-demo"},
    )
    print(f"\nRun {run.run_id}: {run.status}")
    for step in run.steps:
        print(
            f"  {step.block_id:<12} {step.status:<10} {step.duration_ms:7.1f} ms  "
            f"{json.dumps(step.output)}"
        )


if __name__ == "__main__":
    main()
