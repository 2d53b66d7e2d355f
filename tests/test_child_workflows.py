"""Child workflows: the builtin ``run_workflow {workflow*, input}`` runs another registered
workflow as a child run, on SQLite and on PostgreSQL.

* the child is a real run of the newest live definition of the named workflow,
  linked to its parent (``parent_run_id``, ``parent_block_id``); its outputs come
  back as the step's ``{runId, workflow, outputs}``;
* the parent parks while the child runs: a worker with one slot runs both;
* a parent walked again after a crash finds its child and starts no second one;
* cancel cascades to children and grandchildren; a child canceled on its own, or
  failing, fails the parent's step with the child named (secrets masked);
* an unregistered name fails the step naming it and the registered ones;
* ``describe()``, ``thodare runs``/``runs show`` and the REST backend show the link;
* ``run_in_memory`` refuses it clearly; YAML, builder-free wire and the catalog accept it.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import sqlalchemy as sa
from durable_helpers import (
    KitFactory,
    block,
    chain_wf,
    db_conn,
    is_pg,
    q,
    run_row,
    steps_of,
    wait_until,
    workflow,
)
from pydantic import BaseModel
from typer.testing import CliRunner

from thodare_jupyter import (
    Catalog,
    RunCanceled,
    RunFailed,
    SerializedWorkflow,
    Wfkit,
    WorkflowInvalid,
    define_connector,
    define_workflow,
    run_in_memory,
)
from thodare_jupyter.authoring.workflow_yaml import workflow_from_yaml
from thodare_jupyter.cli import app
from thodare_jupyter.durable.child_store import MAX_DEPTH
from thodare_jupyter.errors import BuildError
from thodare_jupyter.server.runs import Runs
from thodare_jupyter.validation import compile_workflow

SECRET = "tok-9f8e7d6c5b4a"


def _register(kit: Wfkit, wf: dict[str, Any]) -> SerializedWorkflow:
    """Keep ``wf`` as the newest version of its name (what a %%workflow cell does)."""
    compiled = kit.compile(wf)
    kit.save_version(compiled)
    return compiled


def _double_wf(name: str = "double") -> dict[str, Any]:
    """trigger → calc (transform ``{n, twice: [n, n]}``)."""
    calc = block(
        "calc",
        "transform",
        {"template": {"n": "{{trigger.n}}", "twice": ["{{trigger.n}}", "{{trigger.n}}"]}},
    )
    return chain_wf(name, calc)


def _parent_wf(child: str, name: str = "parent", wait: bool = False) -> dict[str, Any]:
    """trigger → kid (run_workflow ``child``) → after (transform of the child's output)."""
    kid = block("kid", "run_workflow", {"workflow": child, "input": {"n": "{{trigger.n}}"}})
    after = block(
        "after", "transform", {"template": {"got": "{{kid.outputs}}", "id": "{{kid.runId}}"}}
    )
    return chain_wf(name, kid, after)


def _waiting_wf(name: str = "waits") -> dict[str, Any]:
    """trigger → wait (wait_for_event ``go``) → done (transform of the payload)."""
    return chain_wf(
        name,
        block("wait", "wait_for_event", {"eventName": "go"}),
        block("done", "transform", {"template": {"n": "{{trigger.n}}", "data": "{{wait.data}}"}}),
    )


def _write(db_url: str, sql: str, *args: Any) -> None:
    """One write from a separate connection, committed (no package code)."""
    if is_pg(db_url):
        import psycopg

        dsn = db_url.replace("postgresql+psycopg://", "postgresql://", 1)  # search_path kept
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute(sql.replace("?", "%s"), args)
        return
    with db_conn(db_url) as c:
        c.execute(sql, args)
        c.commit()


def _children(db_url: str, parent: str) -> list[tuple[Any, ...]]:
    return q(
        db_url,
        "SELECT id, parent_block_id, status, workflow_name FROM thodare_runs "
        "WHERE parent_run_id = ? ORDER BY created_at",
        parent,
    )


def test_child_runs_and_its_outputs_become_the_step_output(
    any_kits: KitFactory, db_url: str
) -> None:
    kit = any_kits().start()
    _register(kit, _double_wf())
    handle = kit.run(kit.compile(_parent_wf("double")), {"n": 21})
    out = handle.result(timeout=30)

    [(child_id, block_id, status, name)] = _children(db_url, handle.id)
    assert (block_id, status, name) == ("kid", "completed", "double")
    assert out["kid"] == {
        "runId": child_id,
        "workflow": "double",
        "outputs": {"trg": {"n": 21}, "calc": {"result": {"n": 21, "twice": [21, 21]}}},
    }
    assert out["after"]["result"]["id"] == child_id
    assert out["after"]["result"]["got"]["calc"]["result"]["twice"] == [21, 21]
    child = run_row(db_url, child_id)
    assert (child["parent_run_id"], child["parent_block_id"]) == (handle.id, "kid")
    assert kit.get_handle(child_id).result(timeout=5)["calc"]["result"]["n"] == 21

    desc = handle.describe()
    assert desc.parent_run_id is None
    assert [(c.block_id, c.run_id, c.workflow, c.status) for c in desc.children] == [
        ("kid", child_id, "double", "completed")
    ]
    child_desc = kit.get_handle(child_id).describe()
    assert (child_desc.parent_run_id, child_desc.parent_block_id) == (handle.id, "kid")


def test_only_a_run_with_a_parent_wakes_one_when_it_ends(any_kits: KitFactory) -> None:
    """The child's end wakes its parent; the parent (no parent of its own) sends no
    wake-up statement when it ends."""
    kit = any_kits().start()
    _register(kit, _double_wf())
    wakes: list[str] = []

    def heard(conn: Any, cur: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE") and "wake_requested" in statement:
            wakes.append(statement)

    for engine in kit.store.engines:
        sa.event.listen(engine, "before_cursor_execute", heard)
    try:
        kit.run(kit.compile(_parent_wf("double")), {"n": 2}).result(timeout=30)
    finally:
        for engine in kit.store.engines:
            sa.event.remove(engine, "before_cursor_execute", heard)
    assert len([w for w in wakes if "parent_run_id" in w]) == 1, wakes


def test_the_child_pins_the_newest_live_version(any_kits: KitFactory, db_url: str) -> None:
    kit = any_kits().start()
    _register(kit, _double_wf())
    newer = chain_wf("double", block("calc", "transform", {"template": "v2 {{trigger.n}}"}))
    _register(kit, newer)
    out = kit.run(kit.compile(_parent_wf("double")), {"n": 1}).result(timeout=30)
    assert out["kid"]["outputs"]["calc"] == {"result": "v2 1"}
    kit.undo("double")  # the version before is current again
    out = kit.run(kit.compile(_parent_wf("double")), {"n": 2}).result(timeout=30)
    assert out["kid"]["outputs"]["calc"]["result"]["twice"] == [2, 2]


def test_parent_holds_no_slot_while_its_child_runs(any_kits: KitFactory, db_url: str) -> None:
    kit = any_kits(concurrency=1).start()
    _register(kit, _waiting_wf())
    handle = kit.run(kit.compile(_parent_wf("waits")), {"n": 5})

    def child_parked() -> str | None:
        kids = _children(db_url, handle.id)
        return (
            kids[0][0] if kids and steps_of(db_url, kids[0][0]).get("wait") == "waiting" else None
        )

    child_id = wait_until(child_parked, 15, "the child (run by the one slot) to reach its wait")
    parent = run_row(db_url, handle.id)
    assert (parent["status"], parent["lease_owner"]) == ("waiting", None)  # no slot held
    assert steps_of(db_url, handle.id)["kid"] == "waiting"
    step = next(s for s in handle.describe().steps if s.block_id == "kid")
    assert (step.block_id, step.waiting_for) == ("kid", f"child run {child_id}")

    kit.signal("go", {"ok": True})
    out = handle.result(timeout=30)
    assert out["kid"]["outputs"]["done"]["result"] == {"n": 5, "data": {"ok": True}}
    assert run_row(db_url, child_id)["status"] == "completed"


def test_a_parent_walked_again_after_a_crash_starts_no_second_child(
    any_kits: KitFactory, db_url: str
) -> None:
    kit = any_kits().start()
    _register(kit, _waiting_wf())
    handle = kit.run(kit.compile(_parent_wf("waits")), {"n": 3})
    wait_until(lambda: run_row(db_url, handle.id)["status"] == "waiting", 15, "the parent to park")
    [(child_id, *_)] = _children(db_url, handle.id)

    # What a worker dying mid-walk leaves behind: the run held by a dead owner, lease over.
    # (The child was started in the same transaction that marked the step waiting.)
    dead = "UPDATE thodare_runs SET status = 'running', lease_owner = 'dead:1:x', "
    _write(
        db_url,
        dead + "lease_expires_at = ?, wake_at = NULL WHERE id = ?",
        time.time() - 1,
        handle.id,
    )
    wait_until(
        lambda: (
            run_row(db_url, handle.id)["claimed_from"] == "running"
            and run_row(db_url, handle.id)["status"] == "waiting"
        ),
        15,
        "the parent taken over and parked again",
    )
    assert [c[0] for c in _children(db_url, handle.id)] == [child_id]

    kit.signal("go", "later")
    out = handle.result(timeout=30)
    assert out["kid"]["runId"] == child_id
    assert [c[0] for c in _children(db_url, handle.id)] == [child_id]


def test_cancel_cascades_to_children_and_grandchildren(any_kits: KitFactory, db_url: str) -> None:
    kit = any_kits().start()
    _register(kit, _waiting_wf())
    _register(kit, _parent_wf("waits", name="middle"))
    handle = kit.run(kit.compile(_parent_wf("middle", name="top")), {"n": 1})

    def grandchild() -> str | None:
        kids = _children(db_url, handle.id)
        grand = _children(db_url, kids[0][0]) if kids else []
        return (
            grand[0][0] if grand and run_row(db_url, grand[0][0])["status"] == "waiting" else None
        )

    grand_id = wait_until(grandchild, 15, "the grandchild to park")
    child_id = _children(db_url, handle.id)[0][0]
    assert handle.cancel() is True
    for run_id in (handle.id, child_id, grand_id):
        assert run_row(db_url, run_id)["status"] == "canceled", run_id
    assert run_row(db_url, child_id)["error"] == f"Canceled with its parent run {handle.id}."
    assert run_row(db_url, grand_id)["error"] == f"Canceled with its parent run {child_id}."
    with pytest.raises(RunCanceled):
        kit.get_handle(grand_id).result(timeout=5)
    kit.signal("go", None)  # nothing left to wake
    time.sleep(0.3)
    assert run_row(db_url, grand_id)["status"] == "canceled"


def test_a_child_canceled_alone_fails_the_parent_step(any_kits: KitFactory, db_url: str) -> None:
    kit = any_kits().start()
    _register(kit, _waiting_wf())
    handle = kit.run(kit.compile(_parent_wf("waits")), {"n": 1})
    child_id = wait_until(lambda: (_children(db_url, handle.id) or [[None]])[0][0], 15, "a child")
    wait_until(lambda: run_row(db_url, child_id)["status"] == "waiting", 15, "the child to park")
    assert kit.cancel(child_id) is True
    with pytest.raises(RunFailed) as err:
        handle.result(timeout=30)
    assert err.value.block_id == "kid"
    assert f"Child run {child_id} (workflow 'waits') was canceled." in str(err.value)
    assert steps_of(db_url, handle.id)["kid"] == "failed"
    assert "after" not in steps_of(db_url, handle.id)


class NoParams(BaseModel):
    pass


def _leaky(p: NoParams, ctx: Any) -> dict[str, Any]:
    raise RuntimeError(f"upstream refused token {ctx.env['API_TOKEN']}")


LEAKY = define_connector(type="leaky", params=NoParams, outputs=None, run=_leaky)


def test_child_failure_fails_the_parent_step_naming_the_child(
    any_kits: KitFactory, db_url: str
) -> None:
    kit = any_kits(env={"API_TOKEN": SECRET}).start()
    kit.register(LEAKY)
    _register(kit, chain_wf("fragile", block("boom", "leaky")))
    handle = kit.run(kit.compile(_parent_wf("fragile")), {"n": 1})
    with pytest.raises(RunFailed) as err:
        handle.result(timeout=30)
    [(child_id, _, status, _)] = _children(db_url, handle.id)
    assert status == "failed"
    assert err.value.block_id == "kid"
    message = str(err.value)
    assert f"Child run {child_id} (workflow 'fragile') failed at block 'boom'" in message
    assert "upstream refused token ***" in message
    assert SECRET not in message
    stored = q(db_url, "SELECT error FROM thodare_steps WHERE run_id = ? AND block_id = 'kid'",
               handle.id)[0][0]  # fmt: skip
    assert f"Child run {child_id}" in stored and SECRET not in stored


def test_a_parent_failing_elsewhere_cancels_its_unfinished_child(
    any_kits: KitFactory, db_url: str
) -> None:
    kit = any_kits(env={"API_TOKEN": SECRET}).start()
    kit.register(LEAKY)
    _register(kit, _waiting_wf())
    wf = workflow(
        "two-branches",
        [block("kid", "run_workflow", {"workflow": "waits"}), block("boom", "leaky")],
        [{"source": "trg", "target": "kid"}, {"source": "trg", "target": "boom"}],
    )
    handle = kit.run(kit.compile(wf))
    with pytest.raises(RunFailed) as err:
        handle.result(timeout=30)
    assert err.value.block_id == "boom"
    [(child_id, _, status, _)] = _children(db_url, handle.id)
    assert status == "canceled"
    assert run_row(db_url, child_id)["error"] == f"Canceled with its parent run {handle.id}."


def test_an_unregistered_workflow_fails_the_step_naming_the_registered_ones(
    any_kits: KitFactory, db_url: str
) -> None:
    kit = any_kits().start()
    _register(kit, _double_wf("double"))
    _register(kit, _waiting_wf("waits"))
    handle = kit.run(kit.compile(_parent_wf("dubble")), {"n": 1})
    with pytest.raises(RunFailed) as err:
        handle.result(timeout=30)
    assert err.value.block_id == "kid"
    assert "No registered workflow 'dubble' (registered: double, waits)" in str(err.value)
    assert _children(db_url, handle.id) == []
    assert steps_of(db_url, handle.id)["kid"] == "failed"


def test_a_child_input_that_does_not_fit_fails_the_step(kits: KitFactory) -> None:
    kit = kits().start()
    typed = _double_wf("typed")
    typed["metadata"]["inputSchema"] = {
        "type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"],
    }  # fmt: skip
    _register(kit, typed)
    handle = kit.run(kit.compile(_parent_wf("typed")), {"n": "not a number"})
    with pytest.raises(RunFailed) as err:
        handle.result(timeout=30)
    assert "Input for workflow 'typed' is invalid" in str(err.value)


def test_cli_and_rest_show_the_link(kits: KitFactory, db: Any) -> None:
    kit = kits().start()
    _register(kit, _double_wf())
    handle = kit.run(kit.compile(_parent_wf("double")), {"n": 4})
    handle.result(timeout=30)
    child_id = handle.result()["kid"]["runId"]
    runner = CliRunner()
    env = {"THODARE_DB": str(db), "THODARE_NAMESPACE": None}

    shown = runner.invoke(app, ["runs", "show", handle.id], env=env)
    assert shown.exit_code == 0, shown.output
    assert "Children" in shown.output
    assert f"kid    {child_id}  double    completed" in shown.output
    shown = runner.invoke(app, ["runs", "show", child_id], env=env)
    assert f"Parent    {handle.id} (block kid)" in shown.output
    listed = runner.invoke(app, ["runs"], env=env)
    assert listed.exit_code == 0, listed.output
    line = next(ln for ln in listed.output.splitlines() if ln.startswith(child_id[:8]))
    assert f"child of {handle.id[:8]}" in line
    line = next(ln for ln in listed.output.splitlines() if ln.startswith(handle.id[:8]))
    assert "child of" not in line

    rest = Runs(f"sqlite:///{db}", None)
    try:
        assert rest.describe(child_id)["parent_run_id"] == handle.id
        assert rest.describe(handle.id)["children"] == [
            {"block_id": "kid", "run_id": child_id, "workflow": "double", "status": "completed"}
        ]
        listed_rest = {r["id"]: r for r in rest.recent(None, 10)}
        assert listed_rest[child_id]["parent_run_id"] == handle.id
    finally:
        rest.close()


def test_in_memory_refuses_it_clearly(catalog: Catalog) -> None:
    run = run_in_memory(_parent_wf("double"), {"n": 1}, catalog=catalog, env={})
    assert run.status == "failed" and run.failed_block == "kid"
    assert "needs the durable runtime" in (run.error or "")
    assert "kit.run" in (run.error or "")


def test_yaml_and_catalog_accept_it(catalog: Catalog) -> None:
    wf = workflow_from_yaml(
        "parent",
        "steps:\n"
        "  kid:\n"
        "    uses: run_workflow\n"
        "    with: {workflow: double, input: {n: 1}}\n"
        "  after:\n"
        "    uses: transform\n"
        '    with: {template: "{{kid.outputs.calc.result}}"}\n',
        catalog,
    )
    assert [b.type for b in wf.blocks if b.id == "kid"] == ["run_workflow"]
    spec = catalog.get("run_workflow").describe_for_llm()
    assert spec["outputs"] == ["runId", "workflow", "outputs"]
    assert set(spec["params"]) == {"workflow", "input"}
    bad = chain_wf("p", block("kid", "run_workflow", {"input": {}}),
                   block("after", "transform", {"template": "{{kid.nope}}"}))  # fmt: skip
    with pytest.raises(WorkflowInvalid) as err:
        compile_workflow(SerializedWorkflow.model_validate(bad), catalog)
    assert "workflow" in str(err.value) and "does not declare output 'nope'" in str(err.value)


def test_the_dag_widget_names_the_child_run_of_a_step(kits: KitFactory) -> None:
    from thodare_jupyter.notebook.widgets import DagView

    kit = kits().start()
    _register(kit, _double_wf())
    parent = kit.compile(_parent_wf("double"))
    handle = kit.run(parent, {"n": 2})
    child_id = handle.result(timeout=30)["kid"]["runId"]
    view = DagView(parent, kit, handle.id)
    view.selected = "kid"
    assert view.details["child"] == {
        "block_id": "kid", "run_id": child_id, "workflow": "double", "status": "completed",
    }  # fmt: skip
    view.selected = "after"
    assert "child" not in view.details


class N(BaseModel):
    n: int


def test_the_builder_wires_run_workflow_like_any_block(kits: KitFactory) -> None:
    kit = kits().start()
    _register(kit, _double_wf())
    blocks = Catalog()
    wf = (
        define_workflow("built-parent")
        .input(N)
        .step("kid", blocks.get("run_workflow"), lambda r: {"workflow": "double",
                                                            "input": {"n": r.input.n}})
        .step("after", blocks.get("transform"), lambda r: {"template": r.kid.outputs})
        .build()
    )  # fmt: skip
    assert {"source": "kid", "target": "after"} in [
        c.model_dump(exclude_none=True, by_alias=True) for c in wf.connections
    ]
    out = kit.run(wf, {"n": 7}).result(timeout=30)
    assert out["after"]["result"]["calc"]["result"]["twice"] == [7, 7]
    with pytest.raises(BuildError, match="nope"):  # refs are checked against its outputs
        define_workflow("bad").step(
            "kid", blocks.get("run_workflow"), lambda r: {"workflow": "double"}
        ).step("after", blocks.get("transform"), lambda r: {"template": r.kid.nope}).build()


def test_what_the_child_input_came_from_is_stored_before_the_child_starts(
    kits: KitFactory,
) -> None:
    kit = kits().start()
    _register(kit, _double_wf())
    events: list[str] = []

    class Listener:
        def on_step_end(self, e: Any) -> None:
            events.append(f"end {e.block_id}")

        def on_run_create(self, e: Any) -> None:
            events.append(f"create {e.workflow}")

    kit.lifecycle.subscribe(Listener())
    wf = chain_wf(
        "parent",
        block("num", "transform", {"template": 6}),
        block("kid", "run_workflow", {"workflow": "double", "input": {"n": "{{num.result}}"}}),
    )
    out = kit.run(kit.compile(wf)).result(timeout=30)
    assert out["kid"]["outputs"]["calc"]["result"]["n"] == 6
    assert events.index("end num") < events.index("create double"), events


def test_a_workflow_that_runs_itself_stops_at_the_nesting_limit(kits: KitFactory, db: Any) -> None:
    kit = kits().start()
    _register(kit, chain_wf("loop", block("kid", "run_workflow", {"workflow": "loop"})))
    handle = kit.run(
        kit.compile(chain_wf("top", block("kid", "run_workflow", {"workflow": "loop"})))
    )
    with pytest.raises(RunFailed) as err:
        handle.result(timeout=60)
    assert f"child runs nest at most {MAX_DEPTH} deep" in str(err.value)
    assert "Does a workflow run itself?" in str(err.value)
    counts = q(db, "SELECT status, count(*) FROM thodare_runs GROUP BY status")
    assert counts == [("failed", MAX_DEPTH + 1)]  # the top run and MAX_DEPTH nested children
