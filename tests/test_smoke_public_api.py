"""The public surface is exactly what __all__ says, sorted, and the demo's flow runs."""

import thodare_jupyter


def test_all_is_sorted_and_importable() -> None:
    names = thodare_jupyter.__all__
    assert names == sorted(names)
    for n in names:
        assert getattr(thodare_jupyter, n) is not None


def test_the_design_contract_names_are_exported() -> None:
    contract = {  # DESIGN.md §3: these names are fixed
        "Hidden", "UserOnly", "Catalog", "define_connector", "connector", "define_workflow",
        "define_workflow_spec", "create_wfkit", "apply_operations", "SerializedWorkflow",
        "EditOp", "run_in_memory", "resume_in_memory", "with_tracing", "create_webhook_router",
    }  # fmt: skip
    assert contract <= set(thodare_jupyter.__all__)


def test_workflow_invalid_issues_are_the_exported_issue() -> None:
    from thodare_jupyter import Issue, SerializedWorkflow, WorkflowInvalid, run_in_memory

    wf = SerializedWorkflow.model_validate(
        {"blocks": [{"id": "t", "type": "trigger_webhook"}, {"id": "x", "type": "nope"}]}
    )
    try:
        run_in_memory(wf)
    except WorkflowInvalid as e:
        (issue,) = e.issues
        assert isinstance(issue, Issue) and (issue.block, issue.code) == ("x", "unknown-connector")
    else:
        raise AssertionError("an unknown connector type must not run")


def test_slack_builtin_posts_to_the_fake(slack_server, slack_env) -> None:
    from thodare_jupyter import apply_operations, run_in_memory

    ops = [
        {"operation_type": "add", "block_id": "trg", "type": "trigger_webhook", "params": {}},
        {
            "operation_type": "add",
            "block_id": "say",
            "type": "slack",
            "params": {"operation": "send", "channel": "#x", "text": "hi {{trigger.who}}"},
        },
        {"operation_type": "connect", "block_id": "trg", "target_block_id": "say"},
    ]
    res = apply_operations({"blocks": [], "connections": []}, ops)
    assert res.ok, res.summary
    run = run_in_memory(res.workflow, {"who": "ada"}, env=slack_env)
    assert run.status == "completed", run.error
    assert run.outputs["say"]["ok"] is True
    assert slack_server.requests[0]["body"] == {"channel": "#x", "text": "hi ada"}
