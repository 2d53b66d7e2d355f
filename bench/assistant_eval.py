"""The assistant's repair loop on 25 requests with scripted answers (not a test).

    .venv/bin/python bench/assistant_eval.py [--attempts 3] [--verbose]

Each request comes with the answers a model might plausibly give, imperfect
the way models are: a ref to an output that does not exist, a hallucinated
connector type, a typo in a block id, a missing required param, an enum value
in the wrong form, a ref to a block downstream, a cycle, prose instead of JSON,
an attempt to set a hidden token; and requests for the step controls
("send each row…", "retry the http step", "only if approved", a timeout) answered
with an ``{{item}}`` but no ``forEach``, a retries field that does not exist, a
``when`` on an output the approval does not have, a duration that does not parse,
a connector output read from a ``forEach`` step. The answers are served by a fake
OpenAI-compatible server on 127.0.0.1 through the real provider code path, and
the next scripted answer is the one a model would give after reading the
engine's feedback. It reports, per request, whether the patch ended applied
and in how many attempts, then the share applied within the budget and the
mean attempts, against the peer in the same run: the same answers with no
repair loop (one shot), the way a chat panel that pastes the first answer works.

This measures the loop (feedback, budget, parsing), not a model: the scripts
are ours.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fake_llm import approval_between, fake_llm

from thodare_jupyter import Catalog
from thodare_jupyter.assistant import Assistant
from thodare_jupyter.authoring.workflow_yaml import workflow_from_yaml

BASE = """
input: {email: str}
steps:
  fetch:
    uses: http
    with: {url: "https://crm.example/leads/{{trigger.email}}"}
  score:
    uses: transform
    with: {template: {lead: "{{fetch.body}}", email: "{{trigger.email}}"}}
  notify:
    uses: slack
    with: {operation: send, channel: "#sales", text: "Lead {{trigger.email}}: {{score.result}}"}
  archive:
    uses: http
    with: {url: "https://archive.example/leads", method: PUT, body: "{{fetch.body}}"}
"""


def op(kind: str, block: str, **fields: Any) -> dict[str, Any]:
    return {"operation_type": kind, "block_id": block, **fields}


def answer(*ops: dict[str, Any], why: str = "done") -> dict[str, Any]:
    return {"operations": list(ops), "explanation": why}


SLACK_OPS = {"operation": "send", "channel": "#ops", "text": "Lead {{trigger.email}}"}
WAIT_REPLY = [
    op("add", "reply", type="wait_for_event",
       params={"eventName": "lead.replied", "correlationKey": "{{trigger.email}}"}),
    op("disconnect", "score", target_block_id="notify"),
    op("connect", "score", target_block_id="reply"),
    op("connect", "reply", target_block_id="notify"),
]  # fmt: skip

CASES: list[tuple[str, list[Any]]] = [
    ("Change the Slack channel to #leads",
     [answer(op("edit", "notify", params={"channel": "#leads"}))]),
    ("Wait an hour before notifying sales",
     [answer(op("add", "pause", type="wait_duration", params={"duration": 1, "unit": "hr"}),
             op("disconnect", "score", target_block_id="notify"),
             op("connect", "score", target_block_id="pause"),
             op("connect", "pause", target_block_id="notify")),
      answer(op("add", "pause", type="wait_duration", params={"duration": 1, "unit": "h"}),
             op("disconnect", "score", target_block_id="notify"),
             op("connect", "score", target_block_id="pause"),
             op("connect", "pause", target_block_id="notify"))]),
    ("Put an approval before the Slack message",
     [approval_between("score", "notify", "Notify {{trigger.email}}?", "done")]),
    ("Delete the archive branch",
     [answer(op("delete", "archiv")), answer(op("delete", "archive"))]),
    ("Put the company in the Slack text",
     [answer(op("edit", "notify", params={"text": "{{fetch.company}} via {{trigger.email}}"})),
      answer(op("edit", "notify", params={"text": "{{fetch.body.company}} / {{trigger.email}}"}))]),
    ("Also tell #ops",
     [answer(op("add", "notify_ops", type="slack", params=SLACK_OPS),
             op("connect", "score", target_block_id="notify_ops"))]),
    ("Send the lead an email",
     [answer(op("add", "mail", type="send_email", params={"to": "{{trigger.email}}"}),
             op("connect", "score", target_block_id="mail")),
      answer(op("add", "mail", type="email", params={"to": "{{trigger.email}}"}),
             op("connect", "score", target_block_id="mail")),
      answer(op("add", "mail", type="gmail_send", params={"to": "{{trigger.email}}"}),
             op("connect", "score", target_block_id="mail"))]),
    ("Archive after scoring instead of right after fetching",
     [answer(op("disconnect", "fetch", target_block_id="archive"),
             op("connect", "score", target_block_id="archive"))]),
    ("Wait for the lead to reply before notifying",
     ["I would add a wait_for_event step between score and notify.", answer(*WAIT_REPLY)]),
    ("Put the email in the score too",
     [answer(op("edit", "score", params={"template": {"lead": "{{fetch.body}}",
                                                      "who": "{{trigger.email}}"}}))]),
    ("Post the score to our webhook",
     [answer(op("add", "hook", type="http", params={"method": "POST", "body": "{{score.result}}"}),
             op("connect", "score", target_block_id="hook")),
      answer(op("add", "hook", type="http", params={"url": "https://hooks.example/score",
                                                    "method": "POST", "body": "{{score.result}}"}),
             op("connect", "score", target_block_id="hook"))]),
    ("Make notify run after archive",
     [answer(op("connect", "archive", target_block_id="fetch")),
      answer(op("connect", "archive", target_block_id="notify"))]),
    ("Rename the score step to 'Lead score'",
     [answer(op("edit", "score", name="Lead score"))]),
    ("Approve after fetch, showing what Slack will say",
     [answer(op("add", "check", type="human_approval", params={"prompt": "OK? {{notify.ts}}"}),
             op("connect", "fetch", target_block_id="check")),
      answer(op("add", "check", type="human_approval", params={"prompt": "OK? {{trigger.email}}"}),
             op("connect", "fetch", target_block_id="check"))]),
    ("We don't need the Slack message any more", [answer(op("delete", "notify"))]),
    ("Set the Slack token to xoxb-123",
     [answer(op("edit", "notify", params={"accessToken": "xoxb-123"})),
      answer(why="I cannot set tokens: set SLACK_BOT_TOKEN in the worker's environment.")]),
    ("Wait two days at most for a reply",
     [answer(*WAIT_REPLY[:1], op("edit", "reply", params={"timeoutHours": "two days"}),
             *WAIT_REPLY[1:]),
      answer(*WAIT_REPLY[:1], op("edit", "reply", params={"timeoutHours": 48}), *WAIT_REPLY[1:])]),
    ("Duplicate the notification for #sales-eu",
     [answer(op("add", "notify", type="slack", params={**SLACK_OPS, "channel": "#sales-eu"}),
             op("connect", "score", target_block_id="notify")),
      answer(op("add", "notify_eu", type="slack", params={**SLACK_OPS, "channel": "#sales-eu"}),
             op("connect", "score", target_block_id="notify_eu"))]),
    ("Archive the scored lead with a POST",
     [answer(op("edit", "archive", params={"method": "POST", "body": "{{score.result}}"})),
      answer(op("edit", "archive", params={"method": "POST", "body": "{{score.result}}"}),
             op("connect", "score", target_block_id="archive"))]),
    ("Alert #alerts when fetching fails",
     [answer(op("add", "alert", type="slack",
                params={**SLACK_OPS, "channel": "#alerts", "text": "fetch failed"}),
             op("connect", "fetch", target_block_id="alert", source_handle="error"))]),
    # step controls: forEach (+ {{item}}), retries, when, timeout
    ("Send each row of the fetched leads to Slack",
     [answer(op("add", "each", type="slack", params={**SLACK_OPS, "text": "Hi {{item.name}}"}),
             op("connect", "fetch", target_block_id="each")),
      answer(op("add", "each", type="slack", forEach="{{fetch.body.leads}}", concurrency=4,
                params={**SLACK_OPS, "text": "Hi {{item.name}} (#{{item_index}})"}),
             op("connect", "fetch", target_block_id="each"))]),
    ("Retry the http step 3 times",
     [answer(op("edit", "fetch", retries={"count": 3})),
      answer(op("edit", "fetch", retries={"max": 4, "backoff": "2s"}))]),
    ("Only notify sales if approved",
     [answer(op("add", "approve", type="human_approval", params={"prompt": "Notify?"}),
             op("disconnect", "score", target_block_id="notify"),
             op("connect", "score", target_block_id="approve"),
             op("connect", "approve", target_block_id="notify"),
             op("edit", "notify", when="{{approve.ok}}")),
      answer(op("add", "approve", type="human_approval", params={"prompt": "Notify?"}),
             op("disconnect", "score", target_block_id="notify"),
             op("connect", "score", target_block_id="approve"),
             op("connect", "approve", target_block_id="notify"),
             op("edit", "notify", when="{{approve.approved}}"))]),
    ("Give the fetch at most 10 seconds",
     [answer(op("edit", "fetch", timeout="10 secs")),
      answer(op("edit", "fetch", timeout="10s"))]),
    ("Archive the failed Slack sends of each lead",
     [answer(op("add", "each", type="slack", forEach="{{fetch.body.leads}}",
                params={**SLACK_OPS, "text": "Hi {{item.name}}"}),
             op("connect", "fetch", target_block_id="each"),
             op("edit", "archive", params={"body": "{{each.ts}}"}),
             op("connect", "each", target_block_id="archive")),
      answer(op("add", "each", type="slack", forEach="{{fetch.body.leads}}",
                params={**SLACK_OPS, "text": "Hi {{item.name}}"}),
             op("connect", "fetch", target_block_id="each"),
             op("edit", "archive", params={"body": "{{each.failed}}"}),
             op("connect", "each", target_block_id="archive"))]),
]  # fmt: skip


def run(attempts: int, verbose: bool) -> list[tuple[str, bool, int, float]]:
    """Each case through the loop: (request, applied, attempts, seconds)."""
    catalog = Catalog()
    wf = workflow_from_yaml("lead-router", BASE, catalog)
    rows = []
    for ask, script in CASES:
        with fake_llm(*script) as llm:
            os.environ["OPENAI_BASE_URL"] = llm.openai_url
            t0 = time.perf_counter()
            p = Assistant("openai:scripted", max_attempts=attempts).propose(wf, ask, catalog)
            rows.append((ask, p.applied, p.attempts, time.perf_counter() - t0))
        if verbose and not p.applied:
            print(f"  {ask}: {p.summary}")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--attempts", type=int, default=3)
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    os.environ.setdefault("THODARE_LLM_RETRIES", "0")
    loop = run(args.attempts, args.verbose)
    one_shot = run(1, False)
    print(f"{'request':<56} {'loop':>12} {'one shot':>9}")
    for (ask, ok, n, _), (_, ok1, _, _) in zip(loop, one_shot, strict=True):
        print(f"{ask[:56]:<56} {('applied' if ok else 'FAILED') + f' ({n})':>12} "
              f"{'applied' if ok1 else 'failed':>9}")  # fmt: skip
    applied = sum(ok for _, ok, _, _ in loop)
    applied1 = sum(ok for _, ok, _, _ in one_shot)
    mean = statistics.mean(n for _, _, n, _ in loop)
    ms = statistics.median(t for *_, t in loop) * 1000
    print(
        f"\nrepair loop (budget {args.attempts}): {applied}/{len(loop)} applied, "
        f"mean attempts {mean:.2f}, median {ms:.0f} ms per request (loopback model)"
    )
    print(f"one shot (peer):              {applied1}/{len(one_shot)} applied")
    print(f"ratio applied loop / one shot: {applied / max(applied1, 1):.2f}x")


if __name__ == "__main__":
    main()
